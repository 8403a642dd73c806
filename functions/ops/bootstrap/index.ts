/**
 * Bootstrap: brings a new or empty replica in line with a source that keeps writing.
 *
 * 1. On the source, a REPEATABLE READ transaction takes a snapshot S (`pg_current_snapshot()`)
 *    and exports it (`pg_export_snapshot()`); a second session closes a batch boundary exactly at
 *    S with `pgfanout.mark_snapshot_batch(S)`, which returns B: batches 1..B hold exactly the
 *    transactions visible in S. (When the publisher moved the boundary past S in between, the
 *    function refuses and a new snapshot is taken.)
 * 2. `pause` is called (when given). On the replica, one transaction checks every table; creates
 *    what is missing from the source's definitions (schemas, enum and domain types, sequences,
 *    tables with partitions, constraints and indexes, see schema.ts); sets the sequences to the
 *    source's values; drops the foreign keys among the copied tables; empties the tables in one
 *    TRUNCATE (an existing one must have the source's columns and be empty, or `force`); and
 *    records the bootstrap (`pgfanout.replica_bootstrap`, with B) and its tables. While that row
 *    exists the applier lets the source's messages wait in the queue.
 * 3. Each table is copied under S: `COPY … TO STDOUT` on a source session that imported the
 *    snapshot, streamed (bounded memory, backpressure) into `COPY … FROM STDIN` on the replica
 *    with `session_replication_role = replica` (or the `pgfanout.origin` guard where the role
 *    may not set it), in one replica transaction that also marks the table copied. `jobs`
 *    tables are copied at once.
 * 4. One replica transaction creates the source's foreign keys among the copied tables, records
 *    the position at B and forgets the bootstrap (`pgfanout.replica_bootstrap_finish`): the applier
 *    then skips every message at or below B and applies B+1. `resume` is called (also when the
 *    bootstrap failed).
 *
 * A copy that fails for a transient reason (a replica or source connection lost) is retried
 * with the same snapshot and B; tables already copied are not copied again. A bootstrap that
 * was interrupted (process killed, aborted) is resumed by running it again: with the same B
 * when its exported snapshot still exists, else from a new snapshot, copying every table again
 * (said so in the log). Progress per table (rows, rows/s, ETA from `pg_class.reltuples`) goes
 * to `log`.
 *
 * The rooms: snapshot.ts (step 1), schema.ts (the source's catalog and the DDL made from it),
 * replica.ts (step 2), copy.ts with pool.ts (step 3), session.ts (sessions, lock, quiet
 * triggers), errors.ts, types.ts and format.ts; this module runs the steps in order.
 */
import type pg from 'pg';
import { redactUrl } from '#core/pg/db.ts';
import { finishBootstrap, replicaState, uncopiedTables } from '#core/replica/protocol.ts';
import { BOOTSTRAP_ERROR_CODES, BootstrapError, messageOf } from './errors.ts';
import { copyAll, type CopyState } from './copy.ts';
import { addForeignKeys, prepareReplica } from './replica.ts';
import { APPLICATION_NAME, BOOTSTRAP_LOCK, open } from './session.ts';
import { takeSnapshot } from './snapshot.ts';
import type { BootstrapOptions, BootstrapResult } from './types.ts';
import { isIntegerIn } from '#core/integer.ts';

export { BootstrapError } from './errors.ts';
export { formatBootstrap } from './format.ts';
export { COPY_APPLICATION_NAME } from './session.ts';
export type { BootstrapEvent, BootstrapOptions, BootstrapResult } from './types.ts';

/** Copies the source's replicated tables into the replica under one snapshot and records the position. See the module comment. */
export async function bootstrapReplica(o: BootstrapOptions): Promise<BootstrapResult> {
  const jobs = o.jobs ?? 1;
  if (!isIntegerIn(jobs, 1, 32)) {
    throw new BootstrapError(BOOTSTRAP_ERROR_CODES.invalidArgument, `jobs ${String(o.jobs)} is not allowed; expected a whole number from 1 to 32`);
  }
  if (o.replicaTriggers !== undefined && o.replicaTriggers !== 'refuse' && o.replicaTriggers !== 'fire') {
    throw new BootstrapError(BOOTSTRAP_ERROR_CODES.invalidArgument, `replicaTriggers ${JSON.stringify(o.replicaTriggers)} is not allowed; expected 'refuse' or 'fire'`);
  }
  if ((o.pause === undefined) !== (o.resume === undefined)) {
    throw new BootstrapError(BOOTSTRAP_ERROR_CODES.invalidArgument, `pause and resume go together; got only ${o.pause ? 'pause' : 'resume'}`);
  }
  const log = o.log ?? (() => {});
  const pause = { paused: false };
  let result: BootstrapResult;
  try {
    result = await run(o, jobs, log, pause);
  } catch (err) {
    // The bootstrap's own error says more than a failed resume after it.
    if (pause.paused) await (async () => o.resume?.())().catch((e: unknown) => log(`resuming after the failed bootstrap failed too: ${messageOf(e)}`));
    throw err;
  }
  if (pause.paused) await o.resume?.();
  return result;
}

/** The bootstrap's steps (see the module comment); `pause.paused` says whether `o.pause` was called. */
async function run(o: BootstrapOptions, jobs: number, log: (line: string) => void, pause: { paused: boolean }): Promise<BootstrapResult> {
  const emit = o.onEvent ?? (() => {});
  const started = Date.now();
  const ctl = await open(o.replicaUrl, `replica ${o.replicaName}`, APPLICATION_NAME);
  let holder: pg.Client | undefined;
  let marker: pg.Client | undefined;
  try {
    const lock = await ctl.query<{ locked: boolean }>('SELECT pg_catalog.pg_try_advisory_lock($1, $2) AS locked', [BOOTSTRAP_LOCK.classId, BOOTSTRAP_LOCK.objectId]);
    if (!lock.rows[0]?.locked) throw new BootstrapError(BOOTSTRAP_ERROR_CODES.busy, `replica ${o.replicaName}: another pgfanout bootstrap is running on this database`);
    holder = await open(o.sourceUrl, 'source', APPLICATION_NAME);
    marker = await open(o.sourceUrl, 'source', APPLICATION_NAME);
    const sourceId = await holder.query<{ id: string }>('SELECT pgfanout.source_id() AS id').then(
      (r) => r.rows[0]?.id as string,
      (err: unknown) => {
        throw new BootstrapError(BOOTSTRAP_ERROR_CODES.notReady, `source ${redactUrl(o.sourceUrl)}: pgfanout is not installed or not readable (${messageOf(err)}); run pgfanout install --source URL`, err);
      },
    );
    const previous = await replicaState(ctl, sourceId)
      .then(
        (r) => r.bootstrap && { batch_id: r.bootstrap.batchId, snapshot_name: r.bootstrap.snapshotName, started_at: r.bootstrap.startedAt },
        (err: unknown) => {
          throw new BootstrapError(
            BOOTSTRAP_ERROR_CODES.notReady,
            `replica ${o.replicaName}: the pgfanout replica tables are missing or old (${messageOf(err)}); run pgfanout install --replica URL`,
            err,
          );
        },
      );
    if (previous) log(`found an interrupted bootstrap of source ${sourceId} (batch ${previous.batch_id}, started ${previous.started_at})`);
    const snap = await takeSnapshot(holder, marker, sourceId, previous && { batchId: previous.batch_id, snapshotName: previous.snapshot_name }, o, log);
    await marker.end();
    marker = undefined;
    emit({ kind: 'snapshot', batchId: snap.batchId, resumed: snap.resumed });
    log(
      `${snap.resumed ? 'resuming with the interrupted bootstrap\'s snapshot' : 'snapshot taken'}: the copy holds source ${sourceId} up to batch ${snap.batchId}; ` +
        `${snap.tables.length} table(s), ${jobs} at a time`,
    );
    if (o.pause) {
      await o.pause();
      pause.paused = true;
    }
    const { created, copied } = await prepareReplica(ctl, snap, o, previous !== undefined, log);
    const states: CopyState[] = snap.tables.map((table) => ({ table, attempts: 0, rows: 0, bytes: 0, started: 0, seconds: 0, done: copied.has(table.name) }));
    for (const s of states) if (s.done) log(`kept ${s.table.name}: copied by the interrupted run under the same snapshot`);
    await copyAll(states, snap, { ...o, jobs }, log, emit);

    await ctl.query('BEGIN');
    try {
      const rows = await uncopiedTables(ctl, sourceId);
      if (rows.length > 0) {
        throw new BootstrapError(BOOTSTRAP_ERROR_CODES.copyFailed, `replica ${o.replicaName}: table(s) ${rows.map((r) => `${r.schema}.${r.table}`).join(', ')} are not copied; nothing recorded`);
      }
      await ctl.query("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)");
      await addForeignKeys(ctl, snap, o.replicaName, log);
      await finishBootstrap(ctl, sourceId);
      await ctl.query('COMMIT');
    } catch (err) {
      await ctl.query('ROLLBACK').catch(() => undefined);
      throw err;
    }
    await holder.query('COMMIT');
    const tables = states.map((s) => ({
      table: s.table.name,
      rows: s.rows,
      bytes: s.bytes,
      seconds: s.seconds,
      created: created.has(s.table.name),
      attempts: s.attempts,
    }));
    const result: BootstrapResult = {
      sourceId,
      batchId: snap.batchId,
      resumed: snap.resumed,
      restarted: previous !== undefined && !snap.resumed,
      tables,
      rows: tables.reduce((a, t) => a + t.rows, 0),
      bytes: tables.reduce((a, t) => a + t.bytes, 0),
      seconds: (Date.now() - started) / 1000,
    };
    return result;
  } finally {
    await marker?.end().catch(() => undefined);
    await holder?.end().catch(() => undefined);
    await ctl.end().catch(() => undefined);
  }
}

