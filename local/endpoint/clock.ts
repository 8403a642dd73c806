/**
 * The time source of the endpoint's services and of the event-source runner, replaceable
 * in tests. Every timer whose moment is part of SQS's behaviour (a long poll's
 * WaitTimeSeconds, a hidden message becoming visible again, a delayed message becoming
 * available, a rate-limited message move task's next step, a function timeout in the
 * runner) is set on the clock, not with `setTimeout` directly, so that a test with a
 * {@link ManualClock} can move time by 30 simulated minutes and see at once what AWS would
 * do after 30 minutes, without waiting.
 */

/** A time source with timers on its own time. */
export interface Clock {
  /** Current time in epoch milliseconds. */
  now(): number;
  /**
   * Calls `callback` once, when the clock reads `at` (epoch milliseconds) or later.
   * Returns a function that cancels the timer (a no-op after it fired).
   */
  setTimer(at: number, callback: () => void): () => void;
}

/** Longest delay `setTimeout` accepts (about 24.8 days); longer timers are re-armed. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/** The system clock: `Date.now()` and `setTimeout`. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(at, callback) {
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      const delay = at - Date.now();
      if (delay > MAX_TIMEOUT_MS) {
        timer = setTimeout(arm, MAX_TIMEOUT_MS);
        return;
      }
      timer = setTimeout(callback, Math.max(0, delay));
    };
    arm();
    return () => clearTimeout(timer);
  },
};

interface ManualTimer {
  readonly at: number;
  readonly seq: number;
  readonly callback: () => void;
}

/**
 * A clock that only moves when told to. `advance` fires the timers that fall due, in the
 * order of their times (and of their creation for equal times), with `now()` reading each
 * timer's own time while it runs, then leaves the clock at the target time. Timers fire
 * synchronously inside `advance`; what they start (an HTTP reply, a promise) completes
 * afterwards as usual. A timer set for a time that has already come fires on a microtask.
 */
export class ManualClock implements Clock {
  #now: number;
  #timers: ManualTimer[] = [];
  #seq = 0;

  constructor(start = Date.now()) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(at: number, callback: () => void): () => void {
    const timer: ManualTimer = { at, seq: ++this.#seq, callback };
    this.#timers.push(timer);
    // A timer that is already due fires soon without waiting for the next advance(), as a
    // zero-delay setTimeout would.
    if (at <= this.#now) queueMicrotask(() => this.advance(0));
    return () => {
      const index = this.#timers.indexOf(timer);
      if (index >= 0) this.#timers.splice(index, 1);
    };
  }

  /** Number of timers not yet fired or cancelled (for tests that wait for a poll to start). */
  get pendingTimers(): number {
    return this.#timers.length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`ManualClock.advance: ms must be a finite number >= 0, got ${ms}`);
    const target = this.#now + ms;
    let firstError: unknown;
    for (;;) {
      let next: ManualTimer | undefined;
      for (const timer of this.#timers) {
        if (timer.at <= target && (!next || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))) next = timer;
      }
      if (!next) break;
      this.#timers.splice(this.#timers.indexOf(next), 1);
      this.#now = Math.max(this.#now, next.at);
      try {
        next.callback();
      } catch (error) {
        firstError ??= error;
      }
    }
    this.#now = target;
    if (firstError !== undefined) throw firstError;
  }
}
