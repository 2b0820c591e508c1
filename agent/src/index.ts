export { startAgent, type Agent, AGENT_VERSION } from './agent.js';
export { loadConfig, type AgentConfig } from './config.js';
