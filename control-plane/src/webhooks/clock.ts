/** Where webhook delivery reads the time: retries, ages and leases depend on it; tests pass their own. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };
