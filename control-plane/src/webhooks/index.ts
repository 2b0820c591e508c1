// What tests and tools import of webhook delivery (@a4c/control-plane/webhooks).
export { decide, clientError, parseRetryAfter, type AttemptOutcome, type Decision, type RetryPolicy } from './retry.js';
export { sign, verify, REPLAY_WINDOW_SECONDS } from './signature.js';
export { kindPatternProblem, kindMatches } from './kinds.js';
export { loadWebhookConfig } from './config.js';
