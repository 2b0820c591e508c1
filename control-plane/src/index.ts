export { loadConfig, type ControlPlaneConfig } from './config.js';
export { startControlPlane, type ControlPlane } from './server.js';
