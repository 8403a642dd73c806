/**
 * The replica's protocol, TypeScript side: the one module that talks to pgfanout's replica_*
 * tables, and only through the SQL functions of `sql/replica` (1.2.0), as the publisher talks to
 * the source through `next_batch` and `finish_batch`. The apply (apply.ts, batch-applier.ts,
 * statements.ts, conflicts.ts), bootstrap, redrive, verify, status and the CLI call these
 * functions; no other module writes or locks those tables (protocol.test.ts checks the sources).
 *
 * In the apply transaction: {@link lockPosition} → {@link appliedBatch} (a message at or below the
 * position) or {@link stagePart} (a part that is not final) or, at the final part,
 * {@link stagedPart} for each staged part, {@link stageValues}/{@link stagedValueSql}/
 * {@link clearValues} for split changes, {@link recordConflict}, then {@link advance}. The SQL
 * functions refuse what would break the position's invariants (a jump, going back, a part that
 * does not follow, a source without a position) whoever calls them; the decisions with their
 * errors are made before, in position.ts.
 */
import type pg from 'pg';
import type { BatchOrigin } from '../wire/envelope.ts';
import { classifyDatabaseError, type BootstrapInProgress } from '../wire/errors.ts';

/**
 * How many applied batches per source the replica keeps a record of (`replica_applied_batch`),
 * for checking duplicates; `pgfanout.replica_advance` forgets older ones. Not read by the code:
 * the SQL scripts name it, and it is kept so that what they name exists.
 * @public
 */
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

/** What {@link lockPosition} found. */
export interface LockedPosition {
  readonly position: PositionRow;
  /** True when this transaction created the position (the source's first message here). */
  readonly created: boolean;
  /** The digest of the staged part 0 while a batch is being staged. */
  readonly stagedFirstDigest: string | undefined;
  /** The bootstrap in progress, when the position is 0 and one is. */
  readonly bootstrap: BootstrapInProgress | undefined;
}

type OriginColumns = { origin_system: string | null; origin_timeline: string | null; origin_lsn: string | null };

function originOf(row: OriginColumns): BatchOrigin | undefined {
  if (row.origin_system === null || row.origin_timeline === null || row.origin_lsn === null) return undefined;
  return { system: row.origin_system, timeline: Number(row.origin_timeline), lsn: row.origin_lsn };
}

/** Runs one query, classifying its errors and naming what was done (the batch applier's own). */
type Query = (sql: string, params: unknown[], what: string) => Promise<pg.QueryResult>;

// ------------------------------------------------------------------------------- apply

/**
 * Locks and reads the source's position (`pgfanout.replica_lock`), creating it on the source's
 * first message; the lock holds until the transaction ends. Errors are the database's, unclassified.
 */
export async function lockPosition(client: pg.ClientBase, sourceId: string): Promise<LockedPosition> {
  type Row = {
    batch_id: string;
    part: number | null;
    applied_batch_id: string;
    part_digest: string | null;
    staged_first_digest: string | null;
    created: boolean;
    bootstrap_batch_id: string | null;
    bootstrap_started_at: string | null;
    bootstrap_tables_copied: number | null;
    bootstrap_tables: number | null;
  } & OriginColumns;
  const { rows } = await client.query<Row>(
    `SELECT l.batch_id::pg_catalog.text, l.part, l.applied_batch_id::pg_catalog.text, l.part_digest, l.staged_first_digest,
            l.origin_system, l.origin_timeline::pg_catalog.text, l.origin_lsn::pg_catalog.text, l.created,
            l.bootstrap_batch_id::pg_catalog.text, l.bootstrap_started_at::pg_catalog.text, l.bootstrap_tables_copied, l.bootstrap_tables
       FROM pgfanout.replica_lock($1) AS l`,
    [sourceId],
  );
  const row = rows[0] as Row;
  const appliedOrigin = originOf(row);
  return {
    position: {
      batchId: BigInt(row.batch_id),
      part: row.part,
      appliedBatchId: BigInt(row.applied_batch_id),
      partDigest: row.part_digest,
      ...(appliedOrigin ? { appliedOrigin } : {}),
    },
    created: row.created,
    stagedFirstDigest: row.staged_first_digest ?? undefined,
    bootstrap:
      row.bootstrap_batch_id === null
        ? undefined
        : { batchId: row.bootstrap_batch_id, startedAt: row.bootstrap_started_at as string, tablesCopied: row.bootstrap_tables_copied ?? 0, tables: row.bootstrap_tables ?? 0 },
  };
}

/** The replica's record of an applied batch (`pgfanout.replica_applied_batch`). */
export interface AppliedBatch {
  readonly partDigests: readonly string[];
  readonly origin: BatchOrigin | undefined;
}

/** The record of batch `batchId`, or undefined when the replica keeps none. */
export async function appliedBatch(client: pg.ClientBase, sourceId: string, batchId: string): Promise<AppliedBatch | undefined> {
  const { rows } = await client.query<{ part_digests: string[] } & OriginColumns>(
    `SELECT h.part_digests, h.origin_system, h.origin_timeline::pg_catalog.text, h.origin_lsn::pg_catalog.text
       FROM pgfanout.replica_applied_batch($1, $2::pg_catalog.int8) AS h`,
    [sourceId, batchId],
  );
  const row = rows[0];
  return row === undefined ? undefined : { partDigests: row.part_digests, origin: originOf(row) };
}

/** Where a part sits in its stream. */
export interface PartAt {
  readonly source: string;
  readonly batch: string;
  readonly part: number;
  /** The digest of the part before (parts after 0). */
  readonly after?: string | undefined;
}

/** Stages a part that is not final and moves the position to it (`pgfanout.replica_stage_part`). */
export async function stagePart(client: pg.ClientBase, at: PartAt, digest: string, body: string): Promise<void> {
  await client.query('SELECT pgfanout.replica_stage_part($1, $2::pg_catalog.int8, $3, $4, $5, $6)', [at.source, at.batch, at.part, at.part === 0 ? null : (at.after ?? null), digest, body]);
}

/** A staged part read back (`pgfanout.replica_staged_part`), or undefined when it is not staged. */
export async function stagedPart(client: pg.ClientBase, sourceId: string, batchId: string, part: number): Promise<{ body: string; digest: string } | undefined> {
  const { rows } = await client.query<{ body: string; digest: string }>('SELECT s.body, s.digest FROM pgfanout.replica_staged_part($1, $2::pg_catalog.int8, $3) AS s', [sourceId, batchId, part]);
  return rows[0];
}

/** What {@link advance} records about the batch applied. */
export interface AppliedRecord {
  readonly source: string;
  readonly batch: string;
  /** The digest of each part, in order (the staged ones, then the final part). */
  readonly partDigests: readonly string[];
  /** The source time the publisher sent, if any. */
  readonly time?: string | undefined;
  readonly origin?: BatchOrigin | undefined;
}

/**
 * Records the batch as applied, in the transaction that applied it (`pgfanout.replica_advance`):
 * the position, its staged parts dropped, its record and the end of the kept history.
 */
export async function advance(client: pg.ClientBase, record: AppliedRecord): Promise<void> {
  const origin = record.origin;
  await client.query(
    'SELECT pgfanout.replica_advance($1, $2::pg_catalog.int8, $3::pg_catalog.text[], $4::pg_catalog.timestamptz, $5, $6::pg_catalog.int8, $7::pg_catalog.pg_lsn)',
    [record.source, record.batch, record.partDigests, record.time ?? null, origin?.system ?? null, origin?.timeline ?? null, origin?.lsn ?? null],
  );
}

/** Where the pieces of a split change belong: the batch being applied. */
export interface ValuesAt {
  readonly sourceId: string;
  readonly batchId: string;
}

/** Stores pieces of the values of a split change (`pgfanout.replica_stage_value`). */
export async function stageValues(query: Query, at: ValuesAt, slots: readonly number[], seqs: readonly number[], values: readonly (string | null)[]): Promise<void> {
  await query(
    'SELECT pgfanout.replica_stage_value($1, $2::pg_catalog.int8, $3::pg_catalog.int4[], $4::pg_catalog.int4[], $5::pg_catalog.text[])',
    [at.sourceId, at.batchId, slots, seqs, values],
    'staging the pieces of a split change',
  );
}

/**
 * The SQL expression of one staged value of a split change, concatenated by the replica
 * (`pgfanout.replica_staged_value`), for statements whose parameters $1 and $2 are the
 * source id and the batch id.
 */
export function stagedValueSql(slot: number): string {
  if (!Number.isSafeInteger(slot) || slot < 0) throw new RangeError(`slot ${slot} is not allowed; expected a whole number >= 0`);
  return `pgfanout.replica_staged_value($1, $2::pg_catalog.int8, ${slot})`;
}

/** The staged values of `slots`, concatenated by the replica, by slot. */
export async function stagedValues(query: Query, at: ValuesAt, slots: readonly number[]): Promise<Map<number, string | null>> {
  const { rows } = await query(
    'SELECT s.slot, pgfanout.replica_staged_value($1, $2::pg_catalog.int8, s.slot) AS value FROM pg_catalog.unnest($3::pg_catalog.int4[]) AS s(slot)',
    [at.sourceId, at.batchId, slots],
    'reading back the pieces of a split schema change',
  );
  return new Map((rows as { slot: number; value: string | null }[]).map((r) => [r.slot, r.value]));
}

/** Forgets the pieces of a split change once it is applied (`pgfanout.replica_clear_values`). */
export async function clearValues(query: Query, at: ValuesAt): Promise<void> {
  await query('SELECT pgfanout.replica_clear_values($1, $2::pg_catalog.int8)', [at.sourceId, at.batchId], 'clearing the pieces of a split change');
}

/** A conflict to record (`pgfanout.replica_conflict`). */
export interface ConflictRecord {
  readonly sourceId: string;
  readonly batchId: string;
  readonly change: string;
  readonly schema: string;
  readonly table: string;
  readonly op: 'I' | 'U' | 'D';
  readonly kind: string;
  readonly resolution: string;
  /** JSON texts, or null. */
  readonly key: string | null;
  readonly localRow: string | null;
  readonly oldRow: string | null;
  readonly newRow: string | null;
}

/** Records a conflict detected and resolved (`pgfanout.replica_record_conflict`). */
export async function recordConflict(query: Query, c: ConflictRecord, what: string): Promise<void> {
  await query(
    `SELECT pgfanout.replica_record_conflict($1, $2::pg_catalog.int8, $3, $4, $5, $6, $7, $8, $9::pg_catalog.jsonb, $10::pg_catalog.jsonb, $11::pg_catalog.jsonb, $12::pg_catalog.jsonb)`,
    [c.sourceId, c.batchId, c.change, c.schema, c.table, c.op, c.kind, c.resolution, c.key, c.localRow, c.oldRow, c.newRow],
    what,
  );
}

// ------------------------------------------------------------------------------- reading

/** Where the replica stands for `sourceId`, or null when it has applied nothing of that source. */
export async function replicaPosition(client: pg.ClientBase, sourceId: string): Promise<ReplicaPosition | null> {
  try {
    const { rows } = await client.query<{ batch_id: string | null; part: number | null }>('SELECT s.batch_id::pg_catalog.text, s.part FROM pgfanout.replica_state($1) AS s', [sourceId]);
    const row = rows[0];
    return row === undefined || row.batch_id === null ? null : { batchId: row.batch_id, part: row.part };
  } catch (err) {
    throw classifyDatabaseError(err, `reading the replica position of source ${sourceId}`);
  }
}

/** Where a replica stands for a source, for operators (`pgfanout.replica_state`). */
export interface ReplicaState {
  /** The position, or undefined when the replica has none for the source. */
  readonly position?: {
    readonly batchId: string;
    readonly part: number | null;
    readonly appliedBatchId: string;
    /** Seconds since the source committed the batch applied last, when the publisher sent its time. */
    readonly lagSeconds: number | null;
    /** While a batch is staged: how many changes its part 0 holds. */
    readonly firstPartChanges: number | null;
  };
  /** The bootstrap in progress, with its snapshot's name. */
  readonly bootstrap?: BootstrapInProgress & { readonly snapshotName: string };
}

/** Reads where the replica stands for `sourceId`. Errors are the database's, unclassified (callers name the replica). */
export async function replicaState(client: pg.ClientBase, sourceId: string): Promise<ReplicaState> {
  type Row = {
    batch_id: string | null;
    part: number | null;
    applied: string | null;
    lag: number | null;
    first_part_changes: number | null;
    bootstrap_batch_id: string | null;
    bootstrap_snapshot_name: string | null;
    bootstrap_started_at: string | null;
    bootstrap_tables_copied: number | null;
    bootstrap_tables: number | null;
  };
  const { rows } = await client.query<Row>(
    `SELECT s.batch_id::pg_catalog.text, s.part, s.applied_batch_id::pg_catalog.text AS applied,
            pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - s.source_time)::pg_catalog.float8 AS lag,
            CASE WHEN s.state = 'staging' THEN
              (SELECT pg_catalog.json_array_length(p.body::pg_catalog.json -> 'changes') FROM pgfanout.replica_staged_part($1, s.batch_id, 0) AS p) END AS first_part_changes,
            s.bootstrap_batch_id::pg_catalog.text, s.bootstrap_snapshot_name, s.bootstrap_started_at::pg_catalog.text, s.bootstrap_tables_copied, s.bootstrap_tables
       FROM pgfanout.replica_state($1) AS s`,
    [sourceId],
  );
  const row = rows[0] as Row;
  return {
    ...(row.batch_id === null
      ? {}
      : { position: { batchId: row.batch_id, part: row.part, appliedBatchId: row.applied as string, lagSeconds: row.lag, firstPartChanges: row.first_part_changes } }),
    ...(row.bootstrap_batch_id === null
      ? {}
      : {
          bootstrap: {
            batchId: row.bootstrap_batch_id,
            snapshotName: row.bootstrap_snapshot_name as string,
            startedAt: row.bootstrap_started_at as string,
            tablesCopied: row.bootstrap_tables_copied ?? 0,
            tables: row.bootstrap_tables ?? 0,
          },
        }),
  };
}

/** The bodies of the parts of `batchId` staged on the replica, in order (redrive reads what a parked batch holds). */
export async function stagedBodies(client: pg.ClientBase, sourceId: string, batchId: string): Promise<string[]> {
  const bodies: string[] = [];
  for (let part = 0; ; part++) {
    const staged = await stagedPart(client, sourceId, batchId, part);
    if (staged === undefined) return bodies;
    bodies.push(staged.body);
  }
}

// ------------------------------------------------------------------------------- operators

/**
 * Records batch `batchId` as applied without applying it (`pgfanout.replica_skip`: only the next
 * batch the replica expects; recorded in `replica_skipped`). Errors are the database's.
 */
export async function skipBatch(client: pg.ClientBase, sourceId: string, batchId: string, reason: string | null, tables: readonly string[] | null): Promise<void> {
  await client.query('SELECT 1 FROM pgfanout.replica_skip($1, $2::pg_catalog.int8, $3, $4::pg_catalog.text[])', [sourceId, batchId, reason, tables]);
}

/**
 * The bootstrap's first step (`pgfanout.replica_bootstrap_begin`): locks the source's position and
 * returns the batch it has applied (null: the replica does not follow the source); with `force`,
 * the replica forgets the source (position, staging, record of applied batches).
 */
export async function beginBootstrap(client: pg.ClientBase, sourceId: string, force: boolean): Promise<string | null> {
  const { rows } = await client.query<{ applied: string | null }>('SELECT pgfanout.replica_bootstrap_begin($1, $2)::pg_catalog.text AS applied', [sourceId, force]);
  return rows[0]?.applied ?? null;
}

/** A replica table by schema and name. */
export interface TableRef {
  readonly schema: string;
  readonly table: string;
}

/**
 * Records the bootstrap at `batchId` with its tables (`pgfanout.replica_bootstrap_record`);
 * resuming keeps what was copied. Returns the tables already copied.
 */
export async function recordBootstrap(client: pg.ClientBase, sourceId: string, batchId: string, snapshotName: string, resume: boolean, tables: readonly TableRef[]): Promise<TableRef[]> {
  const { rows } = await client.query<{ schema: string; table: string }>(
    'SELECT r.table_schema AS schema, r.table_name AS table FROM pgfanout.replica_bootstrap_record($1, $2::pg_catalog.int8, $3, $4, $5::pg_catalog.text[], $6::pg_catalog.text[]) AS r',
    [sourceId, batchId, snapshotName, resume, tables.map((t) => t.schema), tables.map((t) => t.table)],
  );
  return rows;
}

/** The bootstrap's tables not copied yet (`pgfanout.replica_bootstrap_tables`). */
export async function uncopiedTables(client: pg.ClientBase, sourceId: string): Promise<TableRef[]> {
  const { rows } = await client.query<{ schema: string; table: string }>(
    'SELECT t.table_schema AS schema, t.table_name AS table FROM pgfanout.replica_bootstrap_tables($1) AS t WHERE t.copied_at IS NULL',
    [sourceId],
  );
  return rows;
}

/**
 * Starts copying one table (`pgfanout.replica_bootstrap_copy_begin`): locks its record until the
 * transaction ends. Returns whether it was copied before, or undefined when the bootstrap has no
 * such table.
 */
export async function beginTableCopy(client: pg.ClientBase, sourceId: string, table: TableRef): Promise<boolean | undefined> {
  const { rows } = await client.query<{ copied: boolean | null }>('SELECT pgfanout.replica_bootstrap_copy_begin($1, $2, $3) AS copied', [sourceId, table.schema, table.table]);
  const copied = rows[0]?.copied;
  return copied === null || copied === undefined ? undefined : copied;
}

/** Marks one table copied, in the transaction that copied it (`pgfanout.replica_bootstrap_copy_done`). */
export async function tableCopied(client: pg.ClientBase, sourceId: string, table: TableRef, rows: number): Promise<void> {
  await client.query('SELECT pgfanout.replica_bootstrap_copy_done($1, $2, $3, $4::pg_catalog.int8)', [sourceId, table.schema, table.table, rows]);
}

/** Records the position at the bootstrap's batch and forgets the bootstrap (`pgfanout.replica_bootstrap_finish`). */
export async function finishBootstrap(client: pg.ClientBase, sourceId: string): Promise<string> {
  const { rows } = await client.query<{ batch: string }>('SELECT pgfanout.replica_bootstrap_finish($1)::pg_catalog.text AS batch', [sourceId]);
  return rows[0]?.batch as string;
}
