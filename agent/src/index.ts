export { startAgent, type Agent, AGENT_VERSION } from './agent.js';
export { loadConfig, type AgentConfig } from './config.js';
export { DockerRuntime, type DockerRuntimeOptions } from './runtime/docker.js';
export type { CreateSpec } from './runtime/runtime.js';
export type { ImageConfig } from './runtime/confinement.js';
export { serveSsh, type SshTarget, type SshSummary, type SshChannelSummary } from './access/ssh.js';
export { loadOrCreateHostKey, type HostKey } from './access/host-key.js';
export { ImageGc, type ImageGcOptions, type ImageGcDeps } from './images/gc.js';
