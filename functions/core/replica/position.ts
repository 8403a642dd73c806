/**
 * The replica's position per source: what a message means at the recorded position (a pure
 * decision), reading and locking the position row inside the apply transaction, and checking a
 * message against what the replica applied before:
 * - batches are consecutive (the source's `pgfanout.batch` holds `prev_batch_id = batch_id - 1`),
 *   so a message whose batch is not its `prev` + 1 is refused: nothing can move the position
 *   past batches that were never sent;
 * - a message at or below the position is dropped as a duplicate only after it is checked against
 *   the applied batch's record in `pgfanout.replica_applied_batch` (kept for the last
 *   {@link REPLICA_HISTORY_BATCHES} batches): the same origin, or without origins the same part
 *   digest; anything else is a source that went back in time, or a forged message, and stops the
 *   replica. A batch with no record (older, copied by a bootstrap, or skipped) cannot be checked
 *   and is dropped as before;
 * - a new batch of the same source system and timeline must not come from a lower WAL position
 *   than the batch applied last.
 */
import type pg from 'pg';
import { lsnValue, type BatchOrigin, type Envelope } from '../wire/envelope.ts';
import { classifyDatabaseError, NotBootstrappedError, UntrustedMessageError } from '../wire/errors.ts';

/** How many applied batches per source `pgfanout.replica_applied_batch` keeps for checking duplicates. */
export const REPLICA_HISTORY_BATCHES = 1000;

/** Where a replica stands for one source. */
export interface ReplicaPosition {
  /** The batch applied last, or being staged when `part` is not null. */
  readonly batchId: string;
  /** The last staged part of `batchId`, or null when `batchId` is applied whole. */
  readonly part: number | null;
}

/** A replica_position row. */
export interface PositionRow {
  readonly batchId: bigint;
  readonly part: number | null;
  readonly appliedBatchId: bigint;
  readonly partDigest: string | null;
  /** The origin of the batch applied last, when the replica recorded one. */
  readonly appliedOrigin?: BatchOrigin;
}

/** What to do with a message, given the recorded position. */
export type Decision =
  | { readonly kind: 'duplicate' }
  | { readonly kind: 'gap'; readonly expected: string }
  /** The message cannot be genuine (a batch that does not follow its own `prev`). */
  | { readonly kind: 'refuse'; readonly reason: string }
  /** At or below the applied batch: a duplicate once {@link checkDuplicate} agrees. */
  | { readonly kind: 'applied-before' }
  | { readonly kind: 'stage' | 'apply'; readonly restart: boolean };

export function positionText(batch: bigint | string, part: number | null): string {
  return part === null ? `batch ${batch}` : `batch ${batch} part ${part}`;
}

/**
 * Decides, purely, what a message means at a position. `stagedFirstDigest` is the digest of the
 * staged part 0 (needed only when part 0 of the batch being staged arrives again).
 */
export function decide(position: PositionRow | undefined, message: Pick<Envelope, 'batch' | 'prev' | 'part' | 'final' | 'after'>, digest: string, stagedFirstDigest?: string): Decision {
  const batch = BigInt(message.batch);
  const applied = position?.appliedBatchId ?? 0n;
  const go = (restart: boolean): Decision => ({ kind: message.final ? 'apply' : 'stage', restart });
  if (batch !== BigInt(message.prev) + 1n) {
    return { kind: 'refuse', reason: `batch ${message.batch} names batch ${message.prev} as its predecessor, but a source's batches are consecutive (prev = batch - 1)` };
  }
  if (batch <= applied) return { kind: 'applied-before' };
  if (position !== undefined && position.part !== null) {
    const staging = position.batchId;
    const staged = position.part;
    if (batch !== staging) return { kind: 'gap', expected: `${positionText(staging, staged + 1)} (batch ${staging} is being staged)` };
    if (message.part === 0) return digest === stagedFirstDigest ? { kind: 'duplicate' } : go(true);
    if (message.part <= staged) return { kind: 'duplicate' };
    if (message.part > staged + 1) return { kind: 'gap', expected: positionText(staging, staged + 1) };
    if (message.after !== position.partDigest) {
      return { kind: 'gap', expected: `${positionText(staging, staged + 1)} following the staged part ${staged} (digest ${position.partDigest}); this part follows digest ${message.after}, another encoding of the batch` };
    }
    return go(false);
  }
  if (BigInt(message.prev) !== applied) return { kind: 'gap', expected: `the batch after batch ${applied}` };
  if (message.part !== 0) return { kind: 'gap', expected: positionText(batch, 0) };
  return go(false);
}

const POSITION_SQL = `SELECT p.batch_id::pg_catalog.text, p.part, p.applied_batch_id::pg_catalog.text, p.part_digest,
        h.origin_system, h.origin_timeline::pg_catalog.int8::pg_catalog.text AS origin_timeline, h.origin_lsn::pg_catalog.text AS origin_lsn
   FROM pgfanout.replica_position p
   LEFT JOIN pgfanout.replica_applied_batch h ON h.source_id = p.source_id AND h.batch_id = p.applied_batch_id
  WHERE p.source_id = $1 FOR UPDATE OF p`;

type OriginColumns = { origin_system: string | null; origin_timeline: string | null; origin_lsn: string | null };

function originOf(row: OriginColumns): BatchOrigin | undefined {
  if (row.origin_system === null || row.origin_timeline === null || row.origin_lsn === null) return undefined;
  return { system: row.origin_system, timeline: Number(row.origin_timeline), lsn: row.origin_lsn };
}

/** An origin as an error message names it. */
function originText(origin: BatchOrigin | undefined): string {
  return origin === undefined ? 'no origin' : `system ${origin.system}, timeline ${origin.timeline}, LSN ${origin.lsn}`;
}

/** Locks and reads the source's position row, creating it on the source's first message. */
export async function lockPosition(client: pg.ClientBase, sourceId: string): Promise<PositionRow | undefined> {
  type Row = { batch_id: string; part: number | null; applied_batch_id: string; part_digest: string | null } & OriginColumns;
  let { rows } = await client.query<Row>(POSITION_SQL, [sourceId]);
  if (rows.length === 0) {
    await client.query(
      `INSERT INTO pgfanout.replica_position (source_id, batch_id, part, state, applied_batch_id)
       VALUES ($1, 0, NULL, 'applied', 0) ON CONFLICT (source_id) DO NOTHING`,
      [sourceId],
    );
    ({ rows } = await client.query<Row>(POSITION_SQL, [sourceId]));
  }
  const row = rows[0];
  if (row === undefined) return undefined;
  const appliedOrigin = originOf(row);
  return { batchId: BigInt(row.batch_id), part: row.part, appliedBatchId: BigInt(row.applied_batch_id), partDigest: row.part_digest, ...(appliedOrigin ? { appliedOrigin } : {}) };
}

/**
 * Checks a message of a batch at or below the position against the replica's record of that batch.
 * Returns true when it is verified as a duplicate, false when the replica has no record of the
 * batch (it cannot tell, and drops it as before); throws {@link UntrustedMessageError} when it
 * differs from what was applied.
 */
export async function checkDuplicate(client: pg.ClientBase, message: Pick<Envelope, 'source' | 'batch' | 'part' | 'origin'>, digest: string): Promise<boolean> {
  const { rows } = await client.query<{ part_digests: string[] } & OriginColumns>(
    `SELECT part_digests, origin_system, origin_timeline::pg_catalog.int8::pg_catalog.text AS origin_timeline, origin_lsn::pg_catalog.text AS origin_lsn
       FROM pgfanout.replica_applied_batch WHERE source_id = $1 AND batch_id = $2::pg_catalog.int8`,
    [message.source, message.batch],
  );
  const row = rows[0];
  if (row === undefined) return false;
  const at = { batchId: message.batch, part: message.part };
  const applied = originOf(row);
  if (applied !== undefined && message.origin !== undefined) {
    if (applied.system === message.origin.system && applied.timeline === message.origin.timeline && lsnValue(applied.lsn) === lsnValue(message.origin.lsn)) return true;
    throw new UntrustedMessageError(
      message.source,
      `batch ${message.batch} was applied from ${originText(applied)}, and arrives again from ${originText(message.origin)}: the source went back in time ` +
        '(a crash that lost committed batches, a failover to a standby that had not received them, or a restored backup) and reuses batch ids; ' +
        'the replica holds changes the source no longer has: rebuild it from the source (pgfanout bootstrap)',
      at,
    );
  }
  const expected = row.part_digests[message.part];
  if (expected === digest) return true;
  throw new UntrustedMessageError(
    message.source,
    expected === undefined
      ? `batch ${message.batch} was applied in ${row.part_digests.length} part(s), and a part ${message.part} of it arrives: another batch under the same id (a source that went back in time, or a forged message)`
      : `batch ${message.batch} part ${message.part} was applied with digest ${expected}, and arrives again with digest ${digest}: another batch under the same id (a source that went back in time, or a forged message)`,
    at,
  );
}

/**
 * Refuses a new batch whose origin lies before the batch applied last on the same source system
 * and timeline (a lower timeline, or a lower WAL position on the same one).
 */
export function checkOriginForward(position: PositionRow | undefined, message: Pick<Envelope, 'source' | 'batch' | 'part' | 'origin'>): void {
  const last = position?.appliedOrigin;
  const next = message.origin;
  if (last === undefined || next === undefined || last.system !== next.system) return;
  if (next.timeline > last.timeline || (next.timeline === last.timeline && lsnValue(next.lsn) >= lsnValue(last.lsn))) return;
  throw new UntrustedMessageError(
    message.source,
    `batch ${message.batch} comes from ${originText(next)}, before batch ${position?.appliedBatchId} applied last (${originText(last)}): the source went back in time; ` +
      'the replica holds changes the source no longer has: rebuild it from the source (pgfanout bootstrap)',
    { batchId: message.batch, part: message.part },
  );
}

/**
 * Called when the position is 0 with nothing staged. A replica may start at the stream's first
 * batch (prev 0) when nothing recorded a position before, unless a bootstrap is copying its
 * tables; otherwise, where no position was recorded, the message waits (a transient
 * {@link NotBootstrappedError}) until `pgfanout bootstrap` records it, instead of being parked
 * as a gap.
 */
export async function refuseBeforeBootstrap(client: pg.ClientBase, message: Pick<Envelope, 'source' | 'batch' | 'prev'>): Promise<void> {
  const { rows } = await client.query<{ created: boolean; batch_id: string | null; started_at: string; copied: number; tables: number }>(
    `SELECT (SELECT p.xmin = pg_catalog.pg_current_xact_id()::pg_catalog.xid FROM pgfanout.replica_position p WHERE p.source_id = $1) AS created,
            b.batch_id::pg_catalog.text, b.started_at::pg_catalog.text,
            (SELECT pg_catalog.count(t.copied_at)::pg_catalog.int4 FROM pgfanout.replica_bootstrap_table t WHERE t.source_id = $1) AS copied,
            (SELECT pg_catalog.count(*)::pg_catalog.int4 FROM pgfanout.replica_bootstrap_table t WHERE t.source_id = $1) AS tables
       FROM (SELECT 1) AS one LEFT JOIN pgfanout.replica_bootstrap b ON b.source_id = $1`,
    [message.source],
  );
  const row = rows[0];
  const received = `batch ${message.batch} (prev ${message.prev})`;
  if (row?.batch_id != null) {
    throw new NotBootstrappedError(message.source, received, { batchId: row.batch_id, startedAt: row.started_at, tablesCopied: row.copied, tables: row.tables });
  }
  if (row?.created === true && message.prev !== '0') throw new NotBootstrappedError(message.source, received, undefined);
}

/** Where the replica stands for `sourceId`, or null when it has applied nothing of that source. */
export async function replicaPosition(client: pg.ClientBase, sourceId: string): Promise<ReplicaPosition | null> {
  try {
    const { rows } = await client.query<{ batch_id: string; part: number | null }>(
      'SELECT batch_id::pg_catalog.text, part FROM pgfanout.replica_position WHERE source_id = $1',
      [sourceId],
    );
    const row = rows[0];
    return row === undefined ? null : { batchId: row.batch_id, part: row.part };
  } catch (err) {
    throw classifyDatabaseError(err, `reading the replica position of source ${sourceId}`);
  }
}
