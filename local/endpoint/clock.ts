/** The time source of the endpoint's services, replaceable in tests. */
export interface Clock {
  /** Current time in epoch milliseconds. */
  now(): number;
}

/** The system clock. */
export const systemClock: Clock = { now: () => Date.now() };
