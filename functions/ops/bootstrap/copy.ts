/**
 * Copying: each table under the snapshot, `COPY … TO STDOUT` on a source session that imported it
 * streamed into `COPY … FROM STDIN` on the replica in one replica transaction that also marks the
 * table copied; `jobs` tables at a time, transient failures retried with the same snapshot.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { qualified, setStableOutput } from '#core/pg/sql.ts';
import { beginTableCopy, tableCopied } from '#core/replica/protocol.ts';
import { BOOTSTRAP_ERROR_CODES, BootstrapError, isTransient, messageOf, snapshotGone } from './errors.ts';
import { duration, integer, megabytes, progressLine } from './format.ts';
import { forEachLimited } from './pool.ts';
import { copyColumns, type SourceTable } from './schema.ts';
import { COPY_APPLICATION_NAME, open, quietTriggers } from './session.ts';
import type { Snapshot } from './snapshot.ts';
import type { BootstrapEvent, BootstrapOptions } from './types.ts';

/** Counts COPY text rows (each ends with a newline; newlines inside values are escaped) and bytes. */
class RowCounter extends Transform {
  rows = 0;
  bytes = 0;
  readonly #onChunk: () => void;
  constructor(onChunk: () => void) {
    super();
    this.#onChunk = onChunk;
  }
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) this.rows++;
    this.bytes += chunk.length;
    this.#onChunk();
    callback(null, chunk);
  }
}

export interface CopyState {
  readonly table: SourceTable;
  attempts: number;
  rows: number;
  bytes: number;
  started: number;
  seconds: number;
  done: boolean;
}

/** Copies one table under the snapshot into the replica, in one replica transaction. */
async function copyTable(state: CopyState, snap: Snapshot, o: BootstrapOptions, emit: (e: BootstrapEvent) => void): Promise<void> {
  const table = state.table;
  const source = await open(o.sourceUrl, 'source', COPY_APPLICATION_NAME);
  let replica: pg.Client | undefined;
  try {
    await source.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      await source.query(`SET TRANSACTION SNAPSHOT ${pg.escapeLiteral(snap.name)}`);
    } catch (err) {
      if (snapshotGone(err)) {
        throw new BootstrapError(
          BOOTSTRAP_ERROR_CODES.snapshotLost,
          `the source session holding the bootstrap's snapshot ended (snapshot ${snap.name}, batch ${snap.batchId}); run the bootstrap again: it starts over with a new snapshot`,
          err,
        );
      }
      throw err;
    }
    await setStableOutput(source);
    replica = await open(o.replicaUrl, `replica ${o.replicaName}`, COPY_APPLICATION_NAME);
    await replica.query('BEGIN');
    await setStableOutput(replica);
    await quietTriggers(replica, snap.sourceId);
    const copiedBefore = await beginTableCopy(replica, snap.sourceId, table.ref);
    if (copiedBefore === undefined) {
      throw new BootstrapError(BOOTSTRAP_ERROR_CODES.aborted, `replica ${o.replicaName}: the bootstrap record of table ${table.name} is gone (another bootstrap took over?)`);
    }
    const target = qualified(table.ref.schema, table.ref.table);
    const columns = copyColumns(table);
    // A table that failed half way was rolled back whole; one that was copied and is copied again is emptied first.
    if (copiedBefore) await replica.query(`TRUNCATE TABLE ${target}`);
    const read = table.partitioned ? `COPY (SELECT ${columns} FROM ${target}) TO STDOUT` : `COPY ${target} (${columns}) TO STDOUT`;
    state.rows = 0;
    state.bytes = 0;
    state.started = Date.now();
    const counter = new RowCounter(() => {
      state.rows = counter.rows;
      state.bytes = counter.bytes;
      emit({ kind: 'table-progress', table: table.name, rows: counter.rows, bytes: counter.bytes });
    });
    await pipeline(source.query(copyTo(read)), counter, replica.query(copyFrom(`COPY ${target} (${columns}) FROM STDIN`)), o.signal ? { signal: o.signal } : {});
    await tableCopied(replica, snap.sourceId, table.ref, counter.rows);
    await replica.query('COMMIT');
    state.rows = counter.rows;
    state.bytes = counter.bytes;
    state.seconds = (Date.now() - state.started) / 1000;
    state.done = true;
  } finally {
    await source.end().catch(() => undefined);
    await replica?.end().catch(() => undefined);
  }
}

/** Copies every table not copied yet, `jobs` at a time, retrying transient failures. */
export async function copyAll(states: CopyState[], snap: Snapshot, o: BootstrapOptions, log: (line: string) => void, emit: (e: BootstrapEvent) => void): Promise<void> {
  const queue = states.filter((s) => !s.done);
  const active = new Set<CopyState>();
  const attempts = o.attemptsPerTable ?? 5;
  const progress = setInterval(() => {
    for (const s of active) log(progressLine(s));
  }, o.progressEveryMs ?? 2000);
  progress.unref();
  const copyOne = async (s: CopyState): Promise<void> => {
    for (;;) {
      if (o.signal?.aborted) throw new BootstrapError(BOOTSTRAP_ERROR_CODES.aborted, 'bootstrap aborted; run it again to resume');
      s.attempts++;
      emit({ kind: 'table-start', table: s.table.name, attempt: s.attempts });
      active.add(s);
      try {
        await copyTable(s, snap, o, emit);
        active.delete(s);
        const rate = s.seconds > 0 ? `, ${integer.format(Math.round(s.rows / s.seconds))} rows/s` : '';
        log(`copied ${s.table.name}: ${integer.format(s.rows)} rows, ${megabytes(s.bytes)} in ${duration(s.seconds)}${rate}`);
        emit({ kind: 'table-done', table: s.table.name, rows: s.rows });
        return;
      } catch (err) {
        active.delete(s);
        if (o.signal?.aborted) throw new BootstrapError(BOOTSTRAP_ERROR_CODES.aborted, 'bootstrap aborted; run it again to resume', err);
        if (err instanceof BootstrapError || !isTransient(err) || s.attempts >= attempts) {
          throw err instanceof BootstrapError
            ? err
            : new BootstrapError(BOOTSTRAP_ERROR_CODES.copyFailed, `copying ${s.table.name} failed (attempt ${s.attempts} of ${attempts}): ${messageOf(err)}`, err);
        }
        const delay = (o.retryDelayMs ?? 1000) * 2 ** (s.attempts - 1);
        log(`copying ${s.table.name} failed (${messageOf(err)}); copying it again with the same snapshot in ${duration(delay / 1000)} (attempt ${s.attempts + 1} of ${attempts})`);
        emit({ kind: 'table-retry', table: s.table.name, attempt: s.attempts + 1, error: messageOf(err) });
        // An abort ends the wait early; the loop's check then stops.
        await sleep(delay, undefined, o.signal ? { signal: o.signal } : {}).catch(() => undefined);
      }
    }
  };
  try {
    await forEachLimited(queue, o.jobs ?? 1, copyOne);
  } finally {
    clearInterval(progress);
  }
}

