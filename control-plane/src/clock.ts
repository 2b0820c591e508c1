/**
 * The time behaviour depends on (when a host counts as lost, when a failed workspace
 * stops counting against quota), injected so tests move it instead of sleeping.
 */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
