export { loadConfig, type ControlPlaneConfig } from './config.js';
export { startControlPlane, type ControlPlane, type ControlPlaneOptions } from './server.js';
export { systemClock, type Clock } from './clock.js';
