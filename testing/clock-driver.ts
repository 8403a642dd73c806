/**
 * Moves a {@link ManualClock} forward in proportion to real time, but never while work is in
 * progress: an applier invocation running against a real database takes no simulated time,
 * so the function timeout (300 s deployed) never fires on a busy machine, while retries,
 * visibility timeouts and long polls at their deployed values (1800 s, 20 s) pass in seconds.
 */
import type { ManualClock } from '#local/endpoint/index.ts';

export interface ClockDriverOptions {
  /** Simulated milliseconds per real millisecond. Can be changed later through `speed`. */
  readonly speed: number;
  /** True while the clock must stand still (e.g. an applier invocation is running). */
  readonly busy: () => boolean;
  /** Real milliseconds between steps. @default 10 */
  readonly stepMs?: number;
}

export class ClockDriver {
  readonly #clock: ManualClock;
  readonly #busy: () => boolean;
  readonly #timer: NodeJS.Timeout;
  #last = performance.now();
  /** Simulated milliseconds per real millisecond. */
  speed: number;

  constructor(clock: ManualClock, options: ClockDriverOptions) {
    this.#clock = clock;
    this.#busy = options.busy;
    this.speed = options.speed;
    this.#timer = setInterval(() => this.#step(), options.stepMs ?? 10);
  }

  #step(): void {
    const now = performance.now();
    const real = now - this.#last;
    this.#last = now;
    if (this.#busy()) return;
    this.#clock.advance(Math.round(real * this.speed));
  }

  /** Simulated time now, in milliseconds since the epoch. */
  now(): number {
    return this.#clock.now();
  }

  /** Resolves once simulated time reaches `at` (ms since the epoch). */
  async until(at: number): Promise<void> {
    while (this.#clock.now() < at) await new Promise((resolve) => setTimeout(resolve, 10));
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}

/** True while an event-source runner has an invocation that has not finished. */
export function invocationRunning(stats: { invocations: number; succeeded: number; partialFailures: number; failed: number; timedOut: number; invalidResponses: number } | undefined): boolean {
  if (stats === undefined) return false;
  return stats.invocations > stats.succeeded + stats.partialFailures + stats.failed + stats.timedOut + stats.invalidResponses;
}
