/**
 * Bootstrap: brings a new or empty replica in line with a source that keeps writing.
 *
 * 1. On the source, a REPEATABLE READ transaction takes a snapshot S (`pg_current_snapshot()`)
 *    and exports it (`pg_export_snapshot()`); a second session closes a batch boundary exactly at
 *    S with `pgfanout.mark_snapshot_batch(S)`, which returns B: batches 1..B hold exactly the
 *    transactions visible in S. (When the publisher moved the boundary past S in between, the
 *    function refuses and a new snapshot is taken.)
 * 2. On the replica, one transaction checks every table (created from the source's definition
 *    when missing; an existing one must have the source's columns and be empty, or `force`),
 *    empties them, and records the bootstrap (`pgfanout.replica_bootstrap`, with B) and its tables.
 *    While that row exists the applier lets the source's messages wait in the queue.
 * 3. Each table is copied under S: `COPY … TO STDOUT` on a source session that imported the
 *    snapshot, streamed (bounded memory, backpressure) into `COPY … FROM STDIN` on the replica
 *    with `session_replication_role = replica` (or the `pgfanout.origin` guard where the role
 *    may not set it), in one replica transaction that also marks the table copied. `jobs`
 *    tables are copied at once.
 * 4. One replica transaction records the position, `pgfanout.replica_start(source, B)`, and
 *    forgets the bootstrap: the applier then skips every message at or below B and applies B+1.
 *
 * A copy that fails for a transient reason (a replica or source connection lost) is retried
 * with the same snapshot and B; tables already copied are not copied again. A bootstrap that
 * was interrupted (process killed, aborted) is resumed by running it again: with the same B
 * when its exported snapshot still exists, else from a new snapshot, copying every table again
 * (said so in the log). Progress per table (rows, rows/s, ETA from `pg_class.reltuples`) goes
 * to `log`.
 */
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { describeConnectError, redactUrl } from '#core/pg/db.ts';
import { qualified, quoteIdent, setStableOutput } from '#core/pg/sql.ts';
import type { TableRef } from './verify.ts';
import { OpsError } from './errors.ts';

/** Stable codes of {@link BootstrapError}. */
export const BOOTSTRAP_ERROR_CODES = {
  invalidArgument: 'INVALID_ARGUMENT',
  /** pgfanout missing on the source or the replica, or a named table not captured. */
  notReady: 'NOT_READY',
  /** Another bootstrap holds this replica. */
  busy: 'BUSY',
  /** The replica already follows the source (has a position) and `force` was not given. */
  alreadyFollowing: 'ALREADY_FOLLOWING',
  /** Replica tables hold rows and `force` was not given. */
  notEmpty: 'NOT_EMPTY',
  /** A replica table does not match the source's columns. */
  schemaMismatch: 'SCHEMA_MISMATCH',
  /** The publisher kept moving the boundary past every snapshot taken. */
  snapshotRace: 'SNAPSHOT_RACE',
  /** The source session holding the exported snapshot ended during the copy. */
  snapshotLost: 'SNAPSHOT_LOST',
  /** A table could not be copied, after retries for transient failures. */
  copyFailed: 'COPY_FAILED',
  aborted: 'ABORTED',
} as const;

/** One of {@link BOOTSTRAP_ERROR_CODES}. */
export type BootstrapErrorCode = (typeof BOOTSTRAP_ERROR_CODES)[keyof typeof BOOTSTRAP_ERROR_CODES];

/** Why a bootstrap stopped; `cause` keeps the underlying error. */
export class BootstrapError extends OpsError<BootstrapErrorCode> {
  constructor(code: BootstrapErrorCode, message: string, cause?: unknown) {
    super(code, message, cause);
    this.name = 'BootstrapError';
  }
}

/** Something that happened during a bootstrap, for callers that watch it (tests, UIs). */
export type BootstrapEvent =
  | { readonly kind: 'snapshot'; readonly batchId: string; readonly resumed: boolean }
  | { readonly kind: 'table-start'; readonly table: string; readonly attempt: number }
  | { readonly kind: 'table-progress'; readonly table: string; readonly rows: number; readonly bytes: number }
  | { readonly kind: 'table-done'; readonly table: string; readonly rows: number }
  | { readonly kind: 'table-retry'; readonly table: string; readonly attempt: number; readonly error: string };

export interface BootstrapOptions {
  readonly sourceUrl: string;
  /** The replica's name, for messages. */
  readonly replicaName: string;
  readonly replicaUrl: string;
  /** Tables to copy (each must be captured on the source). @default every table of pgfanout.show_tables() */
  readonly tables?: readonly TableRef[];
  /** Tables copied at once, each with its own source and replica session. @default 1 */
  readonly jobs?: number;
  /** Empty replica tables that hold rows, and re-bootstrap a replica that already follows the source. @default false */
  readonly force?: boolean;
  /** Receives progress lines. @default discarded */
  readonly log?: (line: string) => void;
  /** Receives structured events. */
  readonly onEvent?: (event: BootstrapEvent) => void;
  /** How often a progress line is written per table being copied (ms). @default 2000 */
  readonly progressEveryMs?: number;
  /** Attempts per table when copies fail for transient reasons. @default 5 */
  readonly attemptsPerTable?: number;
  /** Delay before the first retry of a table, doubled each time (ms). @default 1000 */
  readonly retryDelayMs?: number;
  /** Stops the bootstrap; what was copied stays recorded for the next run. */
  readonly signal?: AbortSignal;
}

/** One copied table. */
export interface CopiedTable {
  readonly table: string;
  readonly rows: number;
  readonly bytes: number;
  readonly seconds: number;
  /** Created on the replica from the source's definition. */
  readonly created: boolean;
  /** Copies started (more than 1 after transient failures). */
  readonly attempts: number;
}

export interface BootstrapResult {
  readonly sourceId: string;
  /** The replica holds batches 1..batchId; the applier starts after it. */
  readonly batchId: string;
  /** True when an interrupted bootstrap's snapshot was still there and its copied tables were kept. */
  readonly resumed: boolean;
  /** True when an interrupted bootstrap was found whose snapshot was gone, so everything was copied again. */
  readonly restarted: boolean;
  readonly tables: readonly CopiedTable[];
  readonly rows: number;
  readonly bytes: number;
  readonly seconds: number;
}

/** Session-level advisory lock on the replica, held for the whole bootstrap (class 'pgfa', object 3). */
export const BOOTSTRAP_LOCK = { classId: 0x70676661, objectId: 3 } as const;

const APPLICATION_NAME = 'pgfanout-bootstrap';
/** application_name of the copying sessions. */
export const COPY_APPLICATION_NAME = 'pgfanout-bootstrap-copy';
const MARK_ATTEMPTS = 20;

/** A column as the source defines it. */
interface SourceColumn {
  readonly name: string;
  /** format_type() under search_path = pg_catalog: schema-qualified outside pg_catalog. */
  readonly type: string;
  readonly notNull: boolean;
  /** '' | 's' (stored) | 'v' (virtual, PostgreSQL 18). */
  readonly generated: string;
  readonly expression: string | null;
  readonly usesSequence: boolean;
  readonly collation: string | null;
}

/** A replicated table as the source defines it, read under the snapshot. */
interface SourceTable {
  readonly ref: TableRef;
  readonly name: string;
  readonly partitioned: boolean;
  readonly estimate: number | null;
  readonly columns: readonly SourceColumn[];
  /** PRIMARY KEY / UNIQUE constraints: name and pg_get_constraintdef. */
  readonly constraints: readonly { readonly name: string; readonly definition: string }[];
  /** Unique indexes not backing a constraint: pg_get_indexdef. */
  readonly uniqueIndexes: readonly string[];
}

/** Opens a session; connection failures name the server (password redacted) and the reason. */
async function open(url: string, role: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw new BootstrapError(BOOTSTRAP_ERROR_CODES.notReady, `${role} ${redactUrl(url)}: ${describeConnectError(err)}`, err);
  }
  client.on('error', () => {
    // A lost session fails its next query; that is where it is handled.
  });
  return client;
}

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** SET TRANSACTION SNAPSHOT refused: the exporting transaction ended (42704), or the name is not one (22023). */
function snapshotGone(err: unknown): boolean {
  return sqlState(err) === '42704' || sqlState(err) === '22023';
}

/** Connection-level trouble a new session may get past. */
function isTransient(err: unknown): boolean {
  const code = sqlState(err);
  if (code === undefined) return /Connection terminated|connection timeout|not queryable|ECONNRESET|ECONNREFUSED|EPIPE|socket hang up/i.test(messageOf(err));
  return ['08', '57', '53'].includes(code.slice(0, 2)) || ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', '40001', '40P01'].includes(code);
}

const integer = new Intl.NumberFormat('en-US');

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  return m < 60 ? `${m} min ${Math.round(seconds % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function megabytes(bytes: number): string {
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

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

// ---------------------------------------------------------------- source side

const SOURCE_TABLES_SQL = `
SELECT t.table_schema AS schema, t.table_name AS table, c.oid::pg_catalog.int8 AS oid, c.relkind = 'p' AS partitioned,
       (SELECT pg_catalog.sum(GREATEST(k.reltuples, 0))::pg_catalog.float8
          FROM pg_catalog.pg_class k
         WHERE k.oid = c.oid OR k.oid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid)) AS estimate
  FROM pgfanout.show_tables() t
  JOIN pg_catalog.pg_namespace n ON n.nspname = t.table_schema
  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
 ORDER BY 1, 2`;

const COLUMNS_SQL = `
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.attgenerated::pg_catalog.text AS generated, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS expression,
       EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep JOIN pg_catalog.pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S'
                WHERE dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dep.objid = d.oid) AS uses_sequence,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation
            THEN pg_catalog.format('%I.%I', cn.nspname, co.collname) END AS collation
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
 WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`;

const CONSTRAINTS_SQL = `
SELECT conname AS name, pg_catalog.pg_get_constraintdef(oid) AS definition
  FROM pg_catalog.pg_constraint WHERE conrelid = $1::pg_catalog.oid AND contype IN ('p', 'u')
 ORDER BY contype, conname`;

const UNIQUE_INDEXES_SQL = `
SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_catalog.pg_index i
 WHERE i.indrelid = $1::pg_catalog.oid AND i.indisunique AND i.indisvalid
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid)
 ORDER BY i.indexrelid`;

/** Reads the replicated tables and their definitions (inside the snapshot's transaction). */
async function readSourceTables(client: pg.ClientBase, wanted: readonly TableRef[] | undefined): Promise<SourceTable[]> {
  // Everything format_type / pg_get_expr print is schema-qualified outside pg_catalog.
  await client.query("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)");
  const { rows } = await client.query<{ schema: string; table: string; oid: string; partitioned: boolean; estimate: number | null }>(SOURCE_TABLES_SQL);
  let chosen = rows;
  if (wanted !== undefined) {
    const captured = new Map(rows.map((r) => [`${r.schema}.${r.table}`, r]));
    const missing = wanted.filter((t) => !captured.has(`${t.schema}.${t.table}`));
    if (missing.length > 0) {
      throw new BootstrapError(
        BOOTSTRAP_ERROR_CODES.notReady,
        `table(s) ${missing.map((t) => qualified(t.schema, t.table)).join(', ')} are not captured on the source; captured tables: ${rows.map((r) => qualified(r.schema, r.table)).join(', ') || 'none'} (pgfanout add-table adds one)`,
      );
    }
    chosen = wanted.map((t) => captured.get(`${t.schema}.${t.table}`) as (typeof rows)[number]);
  }
  if (chosen.length === 0) throw new BootstrapError(BOOTSTRAP_ERROR_CODES.notReady, 'the source captures no tables: nothing to copy (pgfanout add-table adds one)');
  const tables: SourceTable[] = [];
  for (const r of chosen) {
    const columns = await client.query<{ name: string; type: string; not_null: boolean; generated: string; expression: string | null; uses_sequence: boolean; collation: string | null }>(COLUMNS_SQL, [r.oid]);
    const constraints = await client.query<{ name: string; definition: string }>(CONSTRAINTS_SQL, [r.oid]);
    const indexes = await client.query<{ definition: string }>(UNIQUE_INDEXES_SQL, [r.oid]);
    tables.push({
      ref: { schema: r.schema, table: r.table },
      name: `${r.schema}.${r.table}`,
      partitioned: r.partitioned,
      estimate: r.estimate !== null && r.estimate > 0 ? r.estimate : null,
      columns: columns.rows.map((c) => ({
        name: c.name,
        type: c.type,
        notNull: c.not_null,
        generated: c.generated,
        expression: c.expression,
        usesSequence: c.uses_sequence,
        collation: c.collation,
      })),
      constraints: constraints.rows,
      uniqueIndexes: indexes.rows.map((i) => i.definition),
    });
  }
  return tables;
}

/** The snapshot every copy reads, and the batch it corresponds to. */
interface Snapshot {
  readonly sourceId: string;
  readonly batchId: string;
  /** pg_export_snapshot() name, importable while `holder`'s transaction is open. */
  readonly name: string;
  readonly tables: readonly SourceTable[];
  readonly resumed: boolean;
}

/**
 * Opens the snapshot transaction on `holder`: the interrupted bootstrap's snapshot when it still
 * exists (`previous`), else a new one whose boundary `marker` closes with mark_snapshot_batch.
 */
async function takeSnapshot(
  holder: pg.Client,
  marker: pg.Client,
  sourceId: string,
  previous: { batchId: string; snapshotName: string } | undefined,
  o: BootstrapOptions,
  log: (line: string) => void,
): Promise<Snapshot> {
  if (previous !== undefined) {
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      await holder.query(`SET TRANSACTION SNAPSHOT ${pg.escapeLiteral(previous.snapshotName)}`);
      const name = (await holder.query<{ name: string }>('SELECT pg_catalog.pg_export_snapshot() AS name')).rows[0]?.name as string;
      const tables = await readSourceTables(holder, o.tables);
      return { sourceId, batchId: previous.batchId, name, tables, resumed: true };
    } catch (err) {
      await holder.query('ROLLBACK');
      if (!snapshotGone(err)) throw err;
      log(
        `the snapshot of the interrupted bootstrap (batch ${previous.batchId}) is gone: its source session ended. ` +
          'Starting over with a new snapshot; every table is copied again.',
      );
    }
  }
  for (let attempt = 1; ; attempt++) {
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows } = await holder.query<{ snapshot: string; name: string }>(
      'SELECT pg_catalog.pg_current_snapshot()::pg_catalog.text AS snapshot, pg_catalog.pg_export_snapshot() AS name',
    );
    const { snapshot, name } = rows[0] as { snapshot: string; name: string };
    try {
      const marked = await marker.query<{ b: string }>('SELECT pgfanout.mark_snapshot_batch($1::pg_catalog.pg_snapshot)::pg_catalog.text AS b', [snapshot]);
      const tables = await readSourceTables(holder, o.tables);
      return { sourceId, batchId: marked.rows[0]?.b as string, name, tables, resumed: false };
    } catch (err) {
      await holder.query('ROLLBACK');
      if (sqlState(err) !== '40001') {
        if (sqlState(err) === '42883' || sqlState(err) === '42501') {
          throw new BootstrapError(
            BOOTSTRAP_ERROR_CODES.notReady,
            `the source cannot mark a snapshot batch: ${messageOf(err)} (install the current pgfanout on the source; the bootstrapping role needs EXECUTE on pgfanout.mark_snapshot_batch(pg_snapshot))`,
            err,
          );
        }
        throw err;
      }
      if (attempt >= MARK_ATTEMPTS) {
        throw new BootstrapError(
          BOOTSTRAP_ERROR_CODES.snapshotRace,
          `the publisher moved the batch boundary past each of ${attempt} snapshots taken; try again (last refusal: ${messageOf(err)})`,
          err,
        );
      }
    }
  }
}

// ---------------------------------------------------------------- replica side

interface ReplicaColumn {
  readonly name: string;
  readonly type: string;
  readonly notNull: boolean;
  readonly generated: string;
  readonly hasDefault: boolean;
}

const REPLICA_COLUMNS_SQL = `
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.attgenerated::pg_catalog.text AS generated, (a.atthasdef OR a.attidentity <> '') AS has_default
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`;

/** Why an existing replica table cannot take the source's rows; empty when it can. */
function columnProblems(table: SourceTable, replica: readonly ReplicaColumn[]): string[] {
  const problems: string[] = [];
  const byName = new Map(replica.map((c) => [c.name, c]));
  for (const c of table.columns) {
    const r = byName.get(c.name);
    if (r === undefined) problems.push(`has no column ${quoteIdent(c.name)} (source: ${c.type})`);
    else if (r.type !== c.type) problems.push(`column ${quoteIdent(c.name)} is ${r.type} on the replica, ${c.type} on the source`);
    else if ((r.generated === '') !== (c.generated === '')) {
      problems.push(`column ${quoteIdent(c.name)} is ${r.generated === '' ? 'not generated' : 'generated'} on the replica, ${c.generated === '' ? 'not generated' : 'generated'} on the source`);
    }
  }
  const source = new Set(table.columns.map((c) => c.name));
  for (const r of replica) {
    if (!source.has(r.name) && r.notNull && !r.hasDefault && r.generated === '') {
      problems.push(`column ${quoteIdent(r.name)} exists only on the replica and is NOT NULL without a default, so no source row fits`);
    }
  }
  return problems.map((p) => `table ${table.name} ${p}`);
}

/** CREATE TABLE (+ unique indexes) for the replica, from the source's definition. */
function createStatements(table: SourceTable): string[] {
  const columns = table.columns.map((c) => {
    let def = `${quoteIdent(c.name)} ${c.type}`;
    if (c.collation) def += ` COLLATE ${c.collation}`;
    if (c.generated === 's') def += ` GENERATED ALWAYS AS (${c.expression ?? 'NULL'}) STORED`;
    else if (c.generated === 'v') def += ` GENERATED ALWAYS AS (${c.expression ?? 'NULL'}) VIRTUAL`;
    else if (c.expression !== null && !c.usesSequence) def += ` DEFAULT ${c.expression}`;
    if (c.notNull) def += ' NOT NULL';
    return def;
  });
  const constraints = table.constraints.map((k) => `CONSTRAINT ${quoteIdent(k.name)} ${k.definition}`);
  return [
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(table.ref.schema)}`,
    `CREATE TABLE ${qualified(table.ref.schema, table.ref.table)} (${[...columns, ...constraints].join(', ')})`,
    ...table.uniqueIndexes,
  ];
}

/** The copyable (not generated) columns, quoted and comma-separated. */
function copyColumns(table: SourceTable): string {
  return table.columns
    .filter((c) => c.generated === '')
    .map((c) => quoteIdent(c.name))
    .join(', ');
}

/** Sets, for the replica transaction, what keeps triggers quiet: replica role, else the origin guard. */
async function quietTriggers(client: pg.ClientBase, sourceId: string): Promise<void> {
  try {
    await client.query('SAVEPOINT pgfanout_role; SET LOCAL session_replication_role = replica; RELEASE SAVEPOINT pgfanout_role');
  } catch (err) {
    if (sqlState(err) !== '42501') throw err;
    await client.query('ROLLBACK TO SAVEPOINT pgfanout_role; RELEASE SAVEPOINT pgfanout_role');
    await client.query("SELECT pg_catalog.set_config('pgfanout.origin', $1, true)", [sourceId]);
  }
}

/**
 * Checks and prepares the replica in one transaction (nothing changes when a check fails) and
 * records the bootstrap. Returns the tables it created and those an interrupted run already
 * copied under the same snapshot.
 */
async function prepareReplica(ctl: pg.Client, snap: Snapshot, o: BootstrapOptions, previousExists: boolean): Promise<{ created: Set<string>; copied: Set<string> }> {
  const name = o.replicaName;
  await ctl.query('BEGIN');
  try {
    await ctl.query("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)");
    const position = await ctl.query<{ applied: string }>(
      'SELECT applied_batch_id::pg_catalog.text AS applied FROM pgfanout.replica_position WHERE source_id = $1 FOR UPDATE',
      [snap.sourceId],
    );
    const following = position.rows[0];
    if (following !== undefined && !o.force) {
      throw new BootstrapError(
        BOOTSTRAP_ERROR_CODES.alreadyFollowing,
        `replica ${name} already follows source ${snap.sourceId} (applied batch ${following.applied}); bootstrap is for a new or empty replica: pass --force to empty its tables and copy them again`,
      );
    }
    const created = new Set<string>();
    const problems: string[] = [];
    const nonEmpty: string[] = [];
    const existing: SourceTable[] = [];
    for (const table of snap.tables) {
      const { rows } = await ctl.query<{ name: string; type: string; not_null: boolean; generated: string; has_default: boolean }>(REPLICA_COLUMNS_SQL, [table.ref.schema, table.ref.table]);
      if (rows.length === 0) {
        created.add(table.name);
        continue;
      }
      existing.push(table);
      problems.push(...columnProblems(table, rows.map((r) => ({ name: r.name, type: r.type, notNull: r.not_null, generated: r.generated, hasDefault: r.has_default }))));
      const { rows: any } = await ctl.query(`SELECT 1 FROM ${qualified(table.ref.schema, table.ref.table)} LIMIT 1`);
      if (any.length > 0) nonEmpty.push(table.name);
    }
    if (problems.length > 0) {
      throw new BootstrapError(BOOTSTRAP_ERROR_CODES.schemaMismatch, `replica ${name}: ${problems.join('; ')}; nothing was changed on the replica`);
    }
    if (nonEmpty.length > 0 && !o.force && !previousExists) {
      throw new BootstrapError(
        BOOTSTRAP_ERROR_CODES.notEmpty,
        `replica ${name}: table(s) ${nonEmpty.join(', ')} hold rows; bootstrap copies into empty tables: pass --force to empty them first`,
      );
    }
    if (following !== undefined) {
      for (const t of ['replica_position', 'replica_staged_part', 'replica_staged_value']) {
        await ctl.query(`DELETE FROM pgfanout.${quoteIdent(t)} WHERE source_id = $1`, [snap.sourceId]);
      }
    }
    await quietTriggers(ctl, snap.sourceId);
    for (const table of snap.tables) {
      if (!created.has(table.name)) continue;
      for (const statement of createStatements(table)) {
        await ctl.query(statement).catch((err: unknown) => {
          throw new BootstrapError(BOOTSTRAP_ERROR_CODES.schemaMismatch, `replica ${name}: could not create table ${table.name} from the source's definition: ${messageOf(err)}`, err);
        });
      }
    }
    let copied = new Set<string>();
    if (snap.resumed) {
      const { rows } = await ctl.query<{ schema: string; table: string }>(
        'SELECT table_schema AS schema, table_name AS table FROM pgfanout.replica_bootstrap_table WHERE source_id = $1 AND copied_at IS NOT NULL',
        [snap.sourceId],
      );
      copied = new Set(rows.map((r) => `${r.schema}.${r.table}`));
      await ctl.query('UPDATE pgfanout.replica_bootstrap SET snapshot_name = $2 WHERE source_id = $1', [snap.sourceId, snap.name]);
    } else {
      await ctl.query('DELETE FROM pgfanout.replica_bootstrap WHERE source_id = $1', [snap.sourceId]);
      await ctl.query('INSERT INTO pgfanout.replica_bootstrap (source_id, batch_id, snapshot_name) VALUES ($1, $2::pg_catalog.int8, $3)', [snap.sourceId, snap.batchId, snap.name]);
    }
    for (const table of snap.tables) {
      await ctl.query(
        'INSERT INTO pgfanout.replica_bootstrap_table (source_id, table_schema, table_name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
        [snap.sourceId, table.ref.schema, table.ref.table],
      );
    }
    const toEmpty = existing.filter((t) => nonEmpty.includes(t.name) && !copied.has(t.name));
    if (toEmpty.length > 0) {
      // One statement, so foreign keys among the copied tables do not stand in the way.
      await ctl.query(`TRUNCATE TABLE ${toEmpty.map((t) => qualified(t.ref.schema, t.ref.table)).join(', ')}`).catch((err: unknown) => {
        throw new BootstrapError(BOOTSTRAP_ERROR_CODES.notReady, `replica ${name}: could not empty ${toEmpty.map((t) => t.name).join(', ')}: ${messageOf(err)}`, err);
      });
    }
    await ctl.query('COMMIT');
    return { created, copied };
  } catch (err) {
    await ctl.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

// ---------------------------------------------------------------- copying

interface CopyState {
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
    const { rows: marked } = await replica.query<{ copied: boolean }>(
      'SELECT copied_at IS NOT NULL AS copied FROM pgfanout.replica_bootstrap_table WHERE source_id = $1 AND table_schema = $2 AND table_name = $3 FOR UPDATE',
      [snap.sourceId, table.ref.schema, table.ref.table],
    );
    if (marked[0] === undefined) {
      throw new BootstrapError(BOOTSTRAP_ERROR_CODES.aborted, `replica ${o.replicaName}: the bootstrap record of table ${table.name} is gone (another bootstrap took over?)`);
    }
    const target = qualified(table.ref.schema, table.ref.table);
    const columns = copyColumns(table);
    // A table that failed half way was rolled back whole; one that was copied and is copied again is emptied first.
    if (marked[0].copied) await replica.query(`TRUNCATE TABLE ${target}`);
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
    await replica.query(
      'UPDATE pgfanout.replica_bootstrap_table SET rows_copied = $4, copied_at = pg_catalog.now() WHERE source_id = $1 AND table_schema = $2 AND table_name = $3',
      [snap.sourceId, table.ref.schema, table.ref.table, counter.rows],
    );
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

function progressLine(s: CopyState): string {
  const elapsed = (Date.now() - s.started) / 1000;
  const rate = elapsed > 0 ? s.rows / elapsed : 0;
  const estimate = s.table.estimate;
  const of = estimate !== null ? ` of ~${integer.format(Math.round(estimate))}` : '';
  const percent = estimate !== null ? ` (${Math.min(99, Math.floor((100 * s.rows) / estimate))} %)` : '';
  const eta = estimate !== null && rate > 0 ? `, ETA ${duration(Math.max(0, estimate - s.rows) / rate)}` : '';
  return `  ${s.table.name}: ${integer.format(s.rows)}${of} rows${percent}, ${integer.format(Math.round(rate))} rows/s${eta}`;
}

function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Copies every table not copied yet, `jobs` at a time, retrying transient failures. */
async function copyAll(states: CopyState[], snap: Snapshot, o: BootstrapOptions, log: (line: string) => void, emit: (e: BootstrapEvent) => void): Promise<void> {
  const queue = states.filter((s) => !s.done);
  const active = new Set<CopyState>();
  const attempts = o.attemptsPerTable ?? 5;
  const progress = setInterval(() => {
    for (const s of active) log(progressLine(s));
  }, o.progressEveryMs ?? 2000);
  progress.unref();
  const failures: Error[] = [];
  const worker = async () => {
    for (let s = queue.shift(); s !== undefined && failures.length === 0; s = queue.shift()) {
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
          break;
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
          await pause(delay, o.signal);
        }
      }
    }
  };
  try {
    const jobs = Math.min(o.jobs ?? 1, Math.max(queue.length, 1));
    const results = await Promise.allSettled(Array.from({ length: jobs }, () => worker().catch((err: Error) => {
      failures.push(err);
      throw err;
    })));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  } finally {
    clearInterval(progress);
  }
}

// ---------------------------------------------------------------- the whole bootstrap

/** Copies the source's replicated tables into the replica under one snapshot and records the position. See the module comment. */
export async function bootstrapReplica(o: BootstrapOptions): Promise<BootstrapResult> {
  const jobs = o.jobs ?? 1;
  if (!Number.isInteger(jobs) || jobs < 1 || jobs > 32) {
    throw new BootstrapError(BOOTSTRAP_ERROR_CODES.invalidArgument, `jobs ${String(o.jobs)} is not allowed; expected a whole number from 1 to 32`);
  }
  const log = o.log ?? (() => {});
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
    const previous = await ctl
      .query<{ batch_id: string; snapshot_name: string; started_at: string }>(
        'SELECT batch_id::pg_catalog.text, snapshot_name, started_at::pg_catalog.text FROM pgfanout.replica_bootstrap WHERE source_id = $1',
        [sourceId],
      )
      .then(
        (r) => r.rows[0],
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
    const { created, copied } = await prepareReplica(ctl, snap, o, previous !== undefined);
    const states: CopyState[] = snap.tables.map((table) => ({ table, attempts: 0, rows: 0, bytes: 0, started: 0, seconds: 0, done: copied.has(table.name) }));
    for (const s of states) if (s.done) log(`kept ${s.table.name}: copied by the interrupted run under the same snapshot`);
    await copyAll(states, snap, { ...o, jobs }, log, emit);

    await ctl.query('BEGIN');
    try {
      const { rows } = await ctl.query<{ schema: string; table: string }>(
        'SELECT table_schema AS schema, table_name AS table FROM pgfanout.replica_bootstrap_table WHERE source_id = $1 AND copied_at IS NULL',
        [sourceId],
      );
      if (rows.length > 0) {
        throw new BootstrapError(BOOTSTRAP_ERROR_CODES.copyFailed, `replica ${o.replicaName}: table(s) ${rows.map((r) => `${r.schema}.${r.table}`).join(', ')} are not copied; nothing recorded`);
      }
      await ctl.query('SELECT pgfanout.replica_start($1, $2::pg_catalog.int8)', [sourceId, snap.batchId]);
      await ctl.query('DELETE FROM pgfanout.replica_bootstrap WHERE source_id = $1', [sourceId]);
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

/** A short summary of a finished bootstrap. */
export function formatBootstrap(replicaName: string, r: BootstrapResult): string {
  const lines = [
    `replica ${replicaName} bootstrapped from source ${r.sourceId}: ${r.tables.length} table(s), ${integer.format(r.rows)} rows, ${megabytes(r.bytes)} in ${duration(r.seconds)}` +
      `${r.resumed ? ' (resumed)' : r.restarted ? ' (started over: the interrupted run\'s snapshot was gone)' : ''}`,
    `position recorded: batch ${r.batchId}; the applier skips batches up to ${r.batchId} and applies from ${BigInt(r.batchId) + 1n} on`,
  ];
  for (const t of r.tables) {
    lines.push(`  ${t.table}: ${integer.format(t.rows)} rows${t.created ? ', table created' : ''}${t.attempts > 1 ? `, ${t.attempts} attempts` : t.attempts === 0 ? ', kept from the interrupted run' : ''}`);
  }
  return lines.join('\n');
}
