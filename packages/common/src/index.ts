export * from './arch.js';
export * from './container-user.js';
export * from './env.js';
export * from './errors.js';
export * from './labels.js';
export * from './log.js';
export * from './model.js';
export * from './tiers.js';
