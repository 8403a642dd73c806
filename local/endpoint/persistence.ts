/**
 * Optional persistence of the endpoint's state to one JSON file, so that a restarted
 * endpoint keeps its topics, subscriptions, queues and messages, and its secrets (in-flight messages keep
 * their visibility deadline; deduplication records their expiry).
 *
 * Writes are coalesced: a change schedules a save within `delayMs`; each save writes a
 * temporary file and renames it over the old one, so a crash leaves either the previous
 * or the new state, never a torn file. `close` writes the final state. What happened in
 * the last `delayMs` before a crash (not a clean close) is lost.
 */
import { readFile, rename, writeFile } from 'node:fs/promises';
import { PersistenceError } from './errors.ts';
import type { SecretsManagerSnapshot } from './secretsmanager/service.ts';
import type { SnsSnapshot } from './sns/service.ts';
import type { SqsSnapshot } from './sqs/service.ts';

/** Version of the file format. */
export const STATE_FORMAT_VERSION = 1;

/** The content of the persistence file. */
export interface PersistedState {
  readonly version: number;
  readonly savedAt: string;
  readonly sqs: SqsSnapshot;
  readonly sns: SnsSnapshot;
  /** Absent in files saved before the endpoint kept secrets. */
  readonly secretsmanager?: SecretsManagerSnapshot;
}

/** Reads the state saved in `file`, or undefined when the file does not exist. */
export async function loadState(file: string): Promise<PersistedState | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new PersistenceError(file, `cannot be read: ${(err as Error).message}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new PersistenceError(file, `is not valid JSON (${(err as Error).message}); move it away to start with an empty endpoint`, { cause: err });
  }
  const state = parsed as Partial<PersistedState> | null;
  if (!state || typeof state !== 'object' || state.version !== STATE_FORMAT_VERSION || !state.sqs || !state.sns) {
    throw new PersistenceError(
      file,
      `is not a local endpoint state of format version ${STATE_FORMAT_VERSION} (found version ${JSON.stringify(state?.version)})`,
    );
  }
  return state as PersistedState;
}

/** Saves the state to a file, coalescing changes. */
export class StateFile {
  readonly #file: string;
  readonly #snapshot: () => PersistedState;
  readonly #onError: (error: PersistenceError) => void;
  readonly #delayMs: number;
  #timer: NodeJS.Timeout | undefined;
  #dirty = false;
  #writing: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(file: string, snapshot: () => PersistedState, onError: (error: PersistenceError) => void, delayMs = 100) {
    this.#file = file;
    this.#snapshot = snapshot;
    this.#onError = onError;
    this.#delayMs = delayMs;
  }

  /** Records that the state changed; a save follows within the delay. */
  changed(): void {
    if (this.#closed) return;
    this.#dirty = true;
    if (!this.#timer) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.flush().catch((error: unknown) => this.#onError(error as PersistenceError));
      }, this.#delayMs);
    }
  }

  /** Writes the current state now if it changed since the last save. */
  flush(): Promise<void> {
    const next = this.#writing.then(async () => {
      if (!this.#dirty) return;
      this.#dirty = false;
      const text = JSON.stringify(this.#snapshot());
      const temporary = `${this.#file}.${process.pid}.tmp`;
      try {
        await writeFile(temporary, text, 'utf8');
        await rename(temporary, this.#file);
      } catch (err) {
        this.#dirty = true;
        throw new PersistenceError(this.#file, `cannot be written: ${(err as Error).message}`, { cause: err });
      }
    });
    this.#writing = next.catch(() => undefined);
    return next;
  }

  /** Stops scheduling saves and writes the final state. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#dirty = true;
    await this.flush();
  }
}
