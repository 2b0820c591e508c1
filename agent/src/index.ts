export { startAgent, type Agent, AGENT_VERSION } from './agent.js';
export { loadConfig, type AgentConfig } from './config.js';
export { DockerRuntime, type DockerRuntimeOptions } from './runtime/docker.js';
export type { CreateSpec } from './runtime/runtime.js';
export type { ImageConfig } from './runtime/confinement.js';
