export { loadConfig, type ControlPlaneConfig } from './config.js';
export { startControlPlane, type ControlPlane } from './server.js';
export type { ControlPlaneDeps } from './server.js';
export type { Clock } from './drains/drainer.js';
