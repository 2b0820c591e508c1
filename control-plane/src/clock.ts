/**
 * The time behaviour depends on (idle autostop, dormancy). Injected so that tests move
 * it forward instead of sleeping; production uses the system clock.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
