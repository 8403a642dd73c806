/**
 * The replica's position per source: what a message means at the recorded position (a pure
 * decision), and reading and locking the position row inside the apply transaction.
 */
import type pg from 'pg';
import type { Envelope } from '../wire/envelope.ts';
import { classifyDatabaseError, NotBootstrappedError } from '../wire/errors.ts';

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
}

/** What to do with a message, given the recorded position. */
export type Decision =
  | { readonly kind: 'duplicate' }
  | { readonly kind: 'gap'; readonly expected: string }
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
  if (batch <= applied) return { kind: 'duplicate' };
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

const POSITION_SQL =
  'SELECT batch_id::pg_catalog.text, part, applied_batch_id::pg_catalog.text, part_digest FROM pgfanout.replica_position WHERE source_id = $1 FOR UPDATE';

/** Locks and reads the source's position row, creating it on the source's first message. */
export async function lockPosition(client: pg.ClientBase, sourceId: string): Promise<PositionRow | undefined> {
  type Row = { batch_id: string; part: number | null; applied_batch_id: string; part_digest: string | null };
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
  return { batchId: BigInt(row.batch_id), part: row.part, appliedBatchId: BigInt(row.applied_batch_id), partDigest: row.part_digest };
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
