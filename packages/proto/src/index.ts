// The generated contract (see proto/a4c/v1/agent.proto); regenerate with `npm run proto`.
export * from './a4c/v1/agent.js';
