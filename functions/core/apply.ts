/**
 * The apply core: writes one message into a replica, exactly once and in order.
 *
 * `applyMessage` runs in one transaction on the replica:
 * 1. validate the envelope (malformed or unknown-version messages never reach the database);
 * 2. lock the source's row of `pgfanout.replica_position`;
 * 3. a message at or below the recorded position is a duplicate (nothing happens); one that does
 *    not follow it is a gap (refused with both positions named);
 * 4. a part that is not final is staged; the final part applies every staged part (read back one
 *    at a time), then itself, and records the batch as applied, all in the same transaction.
 *
 * Changes are applied with set-based statements over runs of changes to one table with one
 * operation (split wherever a later change touches a row an earlier one in the run touched, so the
 * result is the same as applying them one by one). Which changes share a run is planned per batch:
 * - in the batch's order (`planning: 'in-order'`, and always under the origin guard, where
 *   foreign keys and the replica's triggers fire): a run is consecutive changes;
 * - per table (the default under `session_replication_role = replica`, where neither fires):
 *   changes to different tables commute, so each table collects its own runs, written in the
 *   batch's order within the table. A change may also join an earlier run of its table past other
 *   changes of that table when it provably commutes with them: the table's only unique (or
 *   exclusion) index is the identity, the change carries it in every image, no change passed over
 *   touches the same identity value, and an INSERT leaves no column to a default. A table with
 *   triggers that fire in replica mode, rules, inheritance or partitions keeps its exact place in
 *   the batch; TRUNCATE, split changes and schema changes are barriers for every table.
 *
 * What the applier reads from the replica's catalog (columns, types, identities) is kept per
 * connection across messages ({@link replicaCatalog}), forgotten on any failed apply, after a
 * schema change, and after a minute (CATALOG_MAX_AGE_MS), so changes made on the replica by hand
 * are seen.
 *
 * Values travel as text and are converted by the replica server with the column type's input
 * function (`$1::text` cast to the type named from the catalog, without typmod, then assigned, so
 * a too long varchar is an error, never silently cut). Identifiers are always quoted; values are
 * always parameters.
 *
 * Rows are matched by a replica unique identity (primary key, or a unique, non-partial,
 * non-expression index over NOT NULL columns) whose columns the change's old image carries;
 * otherwise by the whole old row, compared as text after a round trip through the column type,
 * touching exactly one matching row (by tableoid and ctid), so duplicate rows work.
 *
 * The replica's own triggers and foreign-key triggers do not fire: `session_replication_role =
 * replica` for the transaction, or where the role may not set it, the fallback
 * `pgfanout.origin = <source id>` that pgfanout's capture trigger honours (the replica's other
 * triggers then do fire).
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { checkImages, checkSchemaChange, parseEnvelope, type ChangeHead, type ChangeItem, type Envelope, type RowImage } from './envelope.ts';
import { applyChecked, checkConflictMode, type ConflictMode } from './conflicts.ts';
import { runSchemaChange } from './schema-change.ts';
import { bodyDigest } from './encoder.ts';
import {
  classifyDatabaseError,
  describeValue,
  GapError,
  InvalidArgumentError,
  NotBootstrappedError,
  MalformedMessageError,
  RowNotFoundError,
  SchemaMismatchError,
  UnknownTableError,
  type ApplyContext,
} from './errors.ts';

/** How the applier keeps the replica's triggers from firing. */
export type ReplicationRole = 'replica' | 'origin-guard' | 'auto';

/** How {@link applyMessage} groups changes into statements. */
export type Planning = 'per-table' | 'in-order';

/** Options of {@link applyMessage}. */
export interface ApplyOptions {
  /** Tables to apply (`schema.table`, `"schema"."table"` or `schema.*`); empty or absent means all. */
  readonly include?: readonly string[];
  /** Tables never to apply, same forms; wins over `include`. */
  readonly exclude?: readonly string[];
  /**
   * `replica`: `SET LOCAL session_replication_role = replica` (fails without the privilege);
   * `origin-guard`: `SET LOCAL pgfanout.origin = <source id>`; `auto`: the first that works.
   * @default 'auto'
   */
  readonly replicationRole?: ReplicationRole;
  /**
   * How changes are grouped into set-based statements (see the module comment): `per-table`
   * groups changes by table where that provably gives the same result (only under
   * `session_replication_role = replica`); `in-order` keeps the batch's order across tables.
   * @default 'per-table'
   */
  readonly planning?: Planning;
  /**
   * Run every check and write of the apply, then roll the transaction back instead of committing:
   * the result (or the error) says what applying the message would do now, and nothing changes.
   * @default false
   */
  readonly dryRun?: boolean;
  /**
   * What a change that does not fit the replica's row does (see conflicts.ts): `error` stops the
   * apply (an UPDATE or DELETE of a missing row, an INSERT of an existing key), for one-way
   * replicas that must never differ; `apply-remote` applies the incoming change and
   * `keep-local` keeps the replica's row, both recording the conflict in
   * `pgfanout.replica_conflict`, for databases that are each other's replica.
   * @default 'error'
   */
  readonly conflicts?: ConflictMode;
}

/** What {@link applyMessage} did. */
export interface ApplyResult {
  /** `applied`: the batch is applied; `staged`: a non-final part was stored; `duplicate`: nothing to do. */
  readonly outcome: 'applied' | 'staged' | 'duplicate';
  readonly sourceId: string;
  readonly batchId: string;
  readonly part: number;
  /** Changes written to the replica by this call (0 unless `applied`). */
  readonly changes: number;
  /** Changes of the batch left out by include/exclude (0 unless `applied`). */
  readonly skipped: number;
  /** The message's source time, as the publisher sent it. */
  readonly sourceTime?: string;
  /** How triggers were kept quiet: `replica` or `origin-guard` (absent for duplicates). */
  readonly replicationRole?: 'replica' | 'origin-guard';
  /** Conflicts detected and resolved (absent unless `applied` with a conflict mode other than `error`). */
  readonly conflicts?: number;
}

/** Where a replica stands for one source. */
export interface ReplicaPosition {
  /** The batch applied last, or being staged when `part` is not null. */
  readonly batchId: string;
  /** The last staged part of `batchId`, or null when `batchId` is applied whole. */
  readonly part: number | null;
}

/** Rows per set-based statement, and text bytes, before a run is written. */
const RUN_MAX_ROWS = 5000;
const RUN_MAX_BYTES = 8 * 1024 * 1024;

/** Quotes an SQL identifier. */
export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** `schema.table` quoted. */
export function quoteTable(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

// ---------------------------------------------------------------- table filter

/** Decides which tables a replica applies; built once from include/exclude lists. */
export class TableFilter {
  readonly #include: readonly ((schema: string, table: string) => boolean)[];
  readonly #exclude: readonly ((schema: string, table: string) => boolean)[];

  constructor(include: readonly string[] = [], exclude: readonly string[] = []) {
    this.#include = include.map((e) => TableFilter.#pattern(e, 'include'));
    this.#exclude = exclude.map((e) => TableFilter.#pattern(e, 'exclude'));
  }

  static #pattern(entry: unknown, list: string): (schema: string, table: string) => boolean {
    if (typeof entry !== 'string' || entry.trim() === '') {
      throw new InvalidArgumentError(`${list} entry ${describeValue(entry)} is not allowed; expected schema.table, "schema"."table" or schema.*`);
    }
    const quoted = /^"((?:[^"]|"")+)"\."((?:[^"]|"")+)"$/.exec(entry);
    if (quoted) {
      const [schema, table] = [(quoted[1] as string).replaceAll('""', '"'), (quoted[2] as string).replaceAll('""', '"')];
      return (s, t) => s === schema && t === table;
    }
    if (entry.endsWith('.*') && entry.length > 2) {
      const schema = entry.slice(0, -2);
      return (s) => s === schema;
    }
    if (!entry.includes('.')) {
      throw new InvalidArgumentError(`${list} entry ${describeValue(entry)} is not allowed; expected schema.table, "schema"."table" or schema.*`);
    }
    return (s, t) => `${s}.${t}` === entry;
  }

  /** True when changes to `schema.table` are applied. */
  applies(schema: string, table: string): boolean {
    if (this.#include.length > 0 && !this.#include.some((m) => m(schema, table))) return false;
    return !this.#exclude.some((m) => m(schema, table));
  }
}

// ---------------------------------------------------------------- position decisions

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

function positionText(batch: bigint | string, part: number | null): string {
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

// ---------------------------------------------------------------- catalog

/** A replica column as the applier needs it. */
interface ColumnInfo {
  readonly name: string;
  /** Quoted type name without typmod, for `$n::type`. */
  readonly castType: string;
  readonly generated: boolean;
  readonly identityAlways: boolean;
  readonly identity: boolean;
  /** The column has a default expression (an INSERT that leaves it out evaluates it). */
  readonly hasDefault: boolean;
}

/** A replica table. */
interface TableInfo {
  readonly schema: string;
  readonly table: string;
  readonly display: string;
  readonly quoted: string;
  readonly columns: ReadonlyMap<string, ColumnInfo>;
  /** Unique identities, best first (primary key, then fewest columns). */
  readonly identities: readonly (readonly string[])[];
  /**
   * Unique and exclusion indexes of any kind (partial, on expressions, not yet valid): when this
   * is 1 and `identities` has 1 entry, two changes with different identity values can never
   * collide on a constraint, whatever their order.
   */
  readonly uniqueIndexes: number;
  /**
   * Writes to this table affect no other table and read no other table under
   * `session_replication_role = replica`: a plain table (not partitioned, no partition, no
   * inheritance), no rules, no trigger enabled ALWAYS or REPLICA.
   */
  readonly independent: boolean;
  /** When this was read (performance.now()), to read it again after CATALOG_MAX_AGE_MS. */
  readonly readAt: number;
}

/** How long what was read of a replica table is trusted without an error saying otherwise. */
const CATALOG_MAX_AGE_MS = 60_000;

const CATALOG_SQL = `
SELECT c.oid::pg_catalog.int8 AS oid,
       c.relkind = 'r' AND NOT c.relispartition AND NOT c.relhasrules
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits h WHERE h.inhrelid = c.oid OR h.inhparent = c.oid)
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid = c.oid AND g.tgenabled IN ('A', 'R')) AS independent,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND (i.indisunique OR i.indisexclusion))::pg_catalog.int4 AS unique_indexes,
       a.attname::pg_catalog.text AS name,
       pg_catalog.format('%I.%I', tn.nspname, t.typname) AS cast_type,
       a.attgenerated::pg_catalog.text <> '' AS generated,
       a.attidentity::pg_catalog.text AS identity,
       a.atthasdef AS has_default
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
 ORDER BY a.attnum`;

const IDENTITIES_SQL = `
SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY k.ord) AS columns
  FROM pg_catalog.pg_index i
 CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = $1::pg_catalog.oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
   AND k.ord <= i.indnkeyatts
 GROUP BY i.indexrelid, i.indisprimary
HAVING pg_catalog.bool_and(a.attnotnull)
 ORDER BY i.indisprimary DESC, pg_catalog.count(*), i.indexrelid`;

/**
 * What the applier knows of one replica connection's tables: read from the catalog on first use
 * and kept across messages, so a message of small changes does not read the catalog again.
 * Get it with {@link replicaCatalog}. The apply forgets it all when an apply fails (the error may
 * be a schema the applier misread, and a rolled-back schema change must not be remembered) and
 * after a schema change; call {@link ReplicaCatalog.invalidate} after changing a replica table by
 * other means on the same connection.
 */
export class ReplicaCatalog {
  /** Tables by `schema\0table`. */
  readonly tables = new Map<string, TableInfo>();
  /** Statement shapes by signature (operation, table and column layout of a change). */
  readonly shapes = new Map<string, Shape>();

  /** Forgets one table (and every statement shape for it), or everything when no table is named. */
  invalidate(schema?: string, table?: string): void {
    if (schema === undefined || table === undefined) {
      this.tables.clear();
      this.shapes.clear();
      return;
    }
    this.tables.delete(`${schema}\u0000${table}`);
    for (const [signature, shape] of this.shapes) {
      if (shape.table.schema === schema && shape.table.table === table) this.shapes.delete(signature);
    }
  }
}

const catalogs = new WeakMap<pg.ClientBase, ReplicaCatalog>();

/** The catalog knowledge kept for `client` (a new, empty one for a connection not seen yet). */
export function replicaCatalog(client: pg.ClientBase): ReplicaCatalog {
  let catalog = catalogs.get(client);
  if (catalog === undefined) {
    catalog = new ReplicaCatalog();
    catalogs.set(client, catalog);
  }
  return catalog;
}

// ---------------------------------------------------------------- row sources and statements

/** Where a statement reads its rows: a FROM item aliased `u` with text columns v0…vN and `ord`. */
interface RowSource {
  readonly fromItem: string;
  readonly params: unknown[];
  /** Parameter number of the first value column ($n). */
  readonly rows: number;
}

function unnestSource(columns: readonly (readonly (string | null)[])[], rows: number): RowSource {
  const args = columns.map((_, i) => `pg_catalog.unnest($${i + 1}::pg_catalog.text[])`);
  const names = columns.map((_, i) => `v${i}`);
  if (columns.length === 0) {
    return { fromItem: `pg_catalog.generate_series(1, $1::pg_catalog.int4) AS u(ord)`, params: [rows], rows };
  }
  return { fromItem: `ROWS FROM (${args.join(', ')}) WITH ORDINALITY AS u(${names.join(', ')}, ord)`, params: [...columns], rows };
}

function stagedSource(slots: number, sourceId: string, batchId: string): RowSource {
  const values = Array.from(
    { length: slots },
    (_, i) =>
      `(SELECT pg_catalog.string_agg(s.value, '' ORDER BY s.seq) FROM pgfanout.replica_staged_value s WHERE s.source_id = $1 AND s.batch_id = $2::pg_catalog.int8 AND s.slot = ${i}) AS v${i}`,
  );
  return { fromItem: `(SELECT ${[...values, '1::pg_catalog.int8 AS ord'].join(', ')}) AS u`, params: [sourceId, batchId], rows: 1 };
}

/** The statement shape of a run: one table, one operation, one column layout. */
interface Shape {
  readonly op: 'I' | 'U' | 'D';
  readonly table: TableInfo;
  /** Old image columns in value order (v0…), then new image columns. */
  readonly oldColumns: readonly string[];
  readonly newColumns: readonly string[];
  /** Key columns (a replica identity) when matching by key; undefined: match the whole old row. */
  readonly key: readonly string[] | undefined;
  /**
   * Under per-table planning: `table` when the change commutes with changes to other tables,
   * `ordered` when it must keep its place in the batch (see TableInfo.independent, and an INSERT
   * that leaves a column with a default out: defaults such as nextval() depend on order).
   */
  readonly placement: 'table' | 'ordered';
  /**
   * The columns whose values decide whether this change commutes with other changes of its
   * table (the table's only unique index, carried by every image of the change), or undefined
   * when it never moves past them.
   */
  readonly commuteKey: readonly string[] | undefined;
}

function cast(ref: string, column: ColumnInfo): string {
  return `${ref}::${column.castType}`;
}

function column(shape: Shape, name: string): ColumnInfo {
  return shape.table.columns.get(name) as ColumnInfo;
}

/** SQL of a statement applying every row of `source` for `shape`. */
function statementSql(shape: Shape, source: RowSource): string {
  const t = shape.table.quoted;
  const oldRef = (name: string) => `u.v${shape.oldColumns.indexOf(name)}`;
  const newRef = (name: string) => `u.v${shape.oldColumns.length + shape.newColumns.indexOf(name)}`;
  if (shape.op === 'I') {
    const writable = shape.newColumns.filter((c) => !column(shape, c).generated);
    if (writable.length === 0) return `INSERT INTO ${t} SELECT FROM ${source.fromItem}`;
    const overriding = writable.some((c) => column(shape, c).identity) ? ' OVERRIDING SYSTEM VALUE' : '';
    return `INSERT INTO ${t} AS t (${writable.map(quoteIdent).join(', ')})${overriding} SELECT ${writable
      .map((c) => cast(newRef(c), column(shape, c)))
      .join(', ')} FROM ${source.fromItem} ORDER BY u.ord`;
  }
  const settable = shape.op === 'U' ? shape.newColumns.filter((c) => !column(shape, c).generated && !column(shape, c).identityAlways) : [];
  const set = settable.map((c) => `${quoteIdent(c)} = ${cast(newRef(c), column(shape, c))}`).join(', ');
  if (shape.key !== undefined) {
    const match = shape.key.map((c) => `t.${quoteIdent(c)} = ${cast(oldRef(c), column(shape, c))}`).join(' AND ');
    if (shape.op === 'D') return `DELETE FROM ${t} AS t USING ${source.fromItem} WHERE ${match}`;
    if (settable.length === 0) return `SELECT 1 FROM ${t} AS t, ${source.fromItem} WHERE ${match}`;
    return `UPDATE ${t} AS t SET ${set} FROM ${source.fromItem} WHERE ${match}`;
  }
  // Whole old row: exactly one matching row, compared as text after a round trip through the type.
  const match = shape.oldColumns
    .map((c) => `t.${quoteIdent(c)}::pg_catalog.text IS NOT DISTINCT FROM (${cast(oldRef(c), column(shape, c))})::pg_catalog.text`)
    .join(' AND ');
  const pick = `WITH u AS MATERIALIZED (SELECT * FROM ${source.fromItem}), m AS (SELECT t.tableoid AS m_oid, t.ctid AS m_ctid FROM ${t} AS t, u WHERE ${match} LIMIT 1)`;
  if (shape.op === 'D') return `${pick} DELETE FROM ${t} AS t USING m WHERE t.tableoid = m.m_oid AND t.ctid = m.m_ctid`;
  if (settable.length === 0) return `${pick} SELECT 1 FROM m`;
  return `${pick} UPDATE ${t} AS t SET ${set} FROM u, m WHERE t.tableoid = m.m_oid AND t.ctid = m.m_ctid`;
}

/**
 * Where a change of this shape may go under per-table planning (see Shape.placement and
 * Shape.commuteKey). Conservative: anything not shown to commute keeps its place.
 */
function placementOf(op: 'I' | 'U' | 'D', table: TableInfo, oldColumns: readonly string[], newColumns: readonly string[]): Pick<Shape, 'placement' | 'commuteKey'> {
  const inNew = new Set(newColumns);
  // An INSERT that leaves a column out evaluates its default (nextval(), now(), …) in statement order.
  const defaultsLeft = op === 'I' && [...table.columns.values()].some((c) => !c.generated && !inNew.has(c.name) && (c.hasDefault || c.identity));
  if (!table.independent || defaultsLeft) return { placement: 'ordered', commuteKey: undefined };
  const only = table.uniqueIndexes === 1 && table.identities.length === 1 ? table.identities[0] : undefined;
  if (only === undefined) return { placement: 'table', commuteKey: undefined };
  const inOld = new Set(oldColumns);
  const carried = (image: ReadonlySet<string>) => only.every((c) => image.has(c));
  const commutes = op === 'I' ? carried(inNew) : op === 'D' ? carried(inOld) : carried(inOld) && carried(inNew);
  return { placement: 'table', commuteKey: commutes ? only : undefined };
}

/** A prepared-statement name for `sql` (node-pg prepares each name once per connection). */
function statementName(sql: string): string {
  return `pgfanout_${createHash('sha1').update(sql).digest('hex').slice(0, 24)}`;
}

// ---------------------------------------------------------------- batch application

/** Changes written together by one set-based statement. */
interface Run {
  readonly shape: Shape;
  readonly signature: string;
  /** The lane the run belongs to: a table (`Shape.table.quoted`) or ORDERED. */
  readonly lane: string;
  /** Order of creation in the batch; runs are written in this order. */
  readonly seq: number;
  readonly columns: (string | null)[][];
  rows: number;
  bytes: number;
  /** Identity values touched by the run (old and new keys), to keep a row to one change per run. */
  readonly touched: Set<string>;
  /** Where the run's first and last changes are in the batch, for error messages. */
  readonly first: string;
  last: string;
}

/** The lane of changes that keep their place in the batch (every change, under in-order planning). */
const ORDERED = '';

/** The runs buffered for one table under per-table planning. */
interface Lane {
  /** In creation order. */
  readonly runs: Run[];
  /** The latest run of each statement shape. */
  readonly bySignature: Map<string, Run>;
  /** For each identity value (of Shape.commuteKey), the seq of the last run that touched it. */
  readonly lastTouch: Map<string, number>;
  /** The seq of the last run holding a change that must not be passed (no commute key); 0: none. */
  fence: number;
}

interface Pending {
  readonly head: ChangeHead;
  readonly index: string;
  readonly slots: Map<string, number>;
  readonly columns: { old: string[]; new: string[] };
  readonly nullSlots: Set<number>;
}

/** Applies the changes of one batch, in order, inside the caller's transaction. */
class BatchApplier {
  readonly #client: pg.ClientBase;
  readonly #context: ApplyContext;
  readonly #filter: TableFilter;
  /** The connection's catalog knowledge, shared with the next messages; its maps, for short. */
  readonly #catalog: ReplicaCatalog;
  readonly #tables: Map<string, TableInfo>;
  readonly #shapes: Map<string, Shape>;
  /** Runs not written yet, in creation order; the lanes of per-table planning; rows and bytes they hold. */
  #runs: Run[] = [];
  readonly #lanes = new Map<string, Lane>();
  #runSeq = 0;
  #bufferedRows = 0;
  #bufferedBytes = 0;
  /**
   * Group changes per table (see the module comment). Only valid while
   * `session_replication_role = replica` is in effect; set by the caller.
   */
  perTable = false;
  #truncate: { txid: string; tables: TableInfo[] } | undefined;
  #pending: Pending | undefined;
  #seq = 0;
  /** Changes seen (the envelope's count), applied, and skipped by the filter. */
  seen = 0;
  applied = 0;
  skipped = 0;

  /** How conflicts are handled, and how many were. */
  readonly #conflicts: ConflictMode;
  conflictCount = 0;

  constructor(client: pg.ClientBase, context: ApplyContext, filter: TableFilter, conflicts: ConflictMode = 'error') {
    this.#client = client;
    this.#context = context;
    this.#filter = filter;
    this.#catalog = replicaCatalog(client);
    this.#tables = this.#catalog.tables;
    this.#shapes = this.#catalog.shapes;
    this.#conflicts = conflicts;
  }

  /** Runs a schema change at its place in the batch, then forgets what it knew of the replica's tables. */
  async #schemaChange(head: ChangeHead, neu: RowImage | undefined, where: string): Promise<void> {
    const { sql, searchPath } = checkSchemaChange(neu, `${where}.new`);
    await this.#flush();
    if (head.table !== '' && !this.#filter.applies(head.schema, head.table)) {
      this.skipped++;
      return;
    }
    await runSchemaChange(this.#client, sql, searchPath, where, this.#context);
    // Any table may have changed (and statements may name several): forget them all.
    this.#catalog.invalidate();
    this.applied++;
  }

  /** Applies the items of one part. */
  async part(items: readonly ChangeItem[], part: number): Promise<void> {
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as ChangeItem;
      const where = `part ${part} changes[${i}]`;
      if (item.op === '+') {
        if (this.#pending === undefined) throw new MalformedMessageError(`${where}.op`, '"+"', 'a continuation only while a split change is open');
        await this.#stage(item, where);
        if (!item.more) await this.#finishPending(where);
        continue;
      }
      if (this.#pending !== undefined) throw new MalformedMessageError(`${where}.op`, describeValue(item.op), `"+", continuing the split change ${this.#pending.index}`);
      this.seen++;
      if (item.more) {
        await this.#flush();
        this.#pending = { head: item, index: where, slots: new Map(), columns: { old: [], new: [] }, nullSlots: new Set() };
        await this.#stage(item, where);
        continue;
      }
      checkImages(item.op, item.old !== undefined, item.new !== undefined, where);
      await this.#change(item, item.old, item.new, where);
    }
  }

  /** Writes what is still buffered; checks nothing is left open. */
  async finish(): Promise<void> {
    if (this.#pending !== undefined) throw new MalformedMessageError(this.#pending.index, 'a split change never finished', 'a last "+" item without "more"');
    await this.#flush();
  }

  async #query(sql: string, params: unknown[], what: string): Promise<pg.QueryResult> {
    try {
      return await this.#client.query({ name: statementName(sql), text: sql, values: params });
    } catch (err) {
      throw classifyDatabaseError(err, `${what} (batch ${this.#context.batchId}, part ${this.#context.part}, source ${this.#context.sourceId})`);
    }
  }

  async #table(schema: string, table: string): Promise<TableInfo> {
    const cacheKey = `${schema}\u0000${table}`;
    const cached = this.#tables.get(cacheKey);
    if (cached && performance.now() - cached.readAt < CATALOG_MAX_AGE_MS) return cached;
    if (cached) this.#catalog.invalidate(schema, table);
    const display = `${quoteIdent(schema)}.${quoteIdent(table)}`;
    const { rows } = await this.#query(CATALOG_SQL, [schema, table], `reading the catalog of replica table ${display}`);
    if (rows.length === 0) throw new UnknownTableError(display, this.#context);
    const columns = new Map<string, ColumnInfo>();
    const first = rows[0] as { oid: string; independent: boolean; unique_indexes: number };
    for (const row of rows as { name: string | null; cast_type: string; generated: boolean; identity: string; has_default: boolean }[]) {
      if (row.name === null) continue;
      columns.set(row.name, {
        name: row.name,
        castType: row.cast_type,
        generated: row.generated,
        identity: row.identity !== '',
        identityAlways: row.identity === 'a',
        hasDefault: row.has_default,
      });
    }
    const ids = await this.#query(IDENTITIES_SQL, [first.oid], `reading the unique indexes of replica table ${display}`);
    const info: TableInfo = {
      schema,
      table,
      display,
      quoted: quoteTable(schema, table),
      columns,
      identities: (ids.rows as { columns: string[] }[]).map((r) => r.columns),
      uniqueIndexes: first.unique_indexes,
      independent: first.independent,
      readAt: performance.now(),
    };
    this.#tables.set(cacheKey, info);
    return info;
  }

  /** The statement shape of a change, checked against the replica table (cached by layout). */
  async #shape(op: 'I' | 'U' | 'D', head: ChangeHead, oldColumns: readonly string[], newColumns: readonly string[], signature: string): Promise<Shape> {
    const cached = this.#shapes.get(signature);
    if (cached && performance.now() - cached.table.readAt < CATALOG_MAX_AGE_MS) return cached;
    const table = await this.#table(head.schema, head.table);
    for (const [image, names] of [['old', oldColumns], ['new', newColumns]] as const) {
      for (const name of names) {
        if (!table.columns.has(name)) {
          throw new SchemaMismatchError(table.display, name, `has no column ${quoteIdent(name)} (in the change's ${image} image)`, this.#context);
        }
      }
    }
    let key: readonly string[] | undefined;
    if (op !== 'I') {
      const old = new Set(oldColumns);
      key = table.identities.find((identity) => identity.every((c) => old.has(c)));
    }
    const shape: Shape = { op, table, oldColumns, newColumns, key, ...placementOf(op, table, oldColumns, newColumns) };
    this.#shapes.set(signature, shape);
    return shape;
  }

  async #change(head: ChangeHead, old: RowImage | undefined, neu: RowImage | undefined, where: string): Promise<void> {
    if (head.op === 'S') return this.#schemaChange(head, neu, where);
    if (!this.#filter.applies(head.schema, head.table)) {
      this.skipped++;
      return;
    }
    if (head.op === 'T') {
      await this.#flushRun();
      const table = await this.#table(head.schema, head.table);
      if (this.#truncate && this.#truncate.txid !== head.txid) await this.#flushTruncate();
      this.#truncate ??= { txid: head.txid, tables: [] };
      if (!this.#truncate.tables.includes(table)) this.#truncate.tables.push(table);
      this.applied++;
      return;
    }
    await this.#flushTruncate();
    const op = head.op;
    const oldColumns = old ? Object.keys(old) : [];
    const newColumns = neu ? Object.keys(neu) : [];
    const signature = `${op}\u0000${head.schema}\u0000${head.table}\u0000${oldColumns.join('\u0000')}\u0001${newColumns.join('\u0000')}`;
    const shape = await this.#shape(op, head, oldColumns, newColumns, signature);
    if (this.#conflicts !== 'error') {
      // One change at a time, each looking at the row it touches first.
      await this.#flushRun();
      const position = { sourceId: this.#context.sourceId, batchId: this.#context.batchId, change: where };
      const checked = await applyChecked((sql, params, what) => this.#query(sql, params, `${what} (${where})`), shape.table, op, old, neu, this.#conflicts, position);
      if (checked.conflict !== undefined) this.conflictCount++;
      this.applied++;
      return;
    }
    await this.#add(shape, signature, old, neu, where);
  }

  /** Puts one change into a run (which one: see the module comment), writing runs as needed. */
  async #add(shape: Shape, signature: string, old: RowImage | undefined, neu: RowImage | undefined, where: string): Promise<void> {
    const lane = this.perTable && shape.placement === 'table' ? shape.table.quoted : ORDERED;
    const last = this.#runs.at(-1);
    // A change of the ordered lane keeps its exact place, so when one is buffered it is the only
    // buffered run: whatever comes next, of any lane, writes it first (unless it joins it).
    if (lane !== ORDERED && last?.lane === ORDERED) await this.#flushRun();
    if (shape.op !== 'I' && shape.key === undefined) {
      // Whole-row matching touches one row per statement, written now, after its lane.
      if (lane === ORDERED) await this.#flushRun();
      else await this.#flushLane(lane);
      await this.#execute(shape, unnestSource([...shape.oldColumns.map((c) => [old?.[c] ?? null]), ...shape.newColumns.map((c) => [neu?.[c] ?? null])], 1), where);
      this.applied++;
      return;
    }
    const keyColumns = shape.commuteKey ?? shape.key;
    const keys: string[] = [];
    if (keyColumns !== undefined) {
      if (shape.op !== 'I') keys.push(JSON.stringify(keyColumns.map((c) => old?.[c] ?? null)));
      // An INSERT's key matters only where changes pass each other by key.
      if (shape.op === 'U' || (shape.op === 'I' && shape.commuteKey !== undefined)) keys.push(JSON.stringify(keyColumns.map((c) => neu?.[c] ?? null)));
    }
    let run: Run | undefined;
    let tableLane: Lane | undefined;
    if (lane === ORDERED) {
      if (last?.lane === ORDERED && last.signature === signature && !keys.some((k) => last.touched.has(k))) run = last;
      else await this.#flushRun();
    } else {
      tableLane = this.#lanes.get(lane);
      if (tableLane === undefined) {
        tableLane = { runs: [], bySignature: new Map(), lastTouch: new Map(), fence: 0 };
        this.#lanes.set(lane, tableLane);
      }
      if (shape.commuteKey !== undefined) {
        // The table's latest run of this shape, if no change after it in the table (nor in it)
        // touches the same identity value and none of them may not be passed.
        const candidate = tableLane.bySignature.get(signature);
        const lastTouch = tableLane.lastTouch;
        if (candidate !== undefined && candidate.seq > tableLane.fence && keys.every((k) => (lastTouch.get(k) ?? 0) < candidate.seq)) run = candidate;
      } else {
        const candidate = tableLane.runs.at(-1);
        if (candidate !== undefined && candidate.signature === signature && !keys.some((k) => candidate.touched.has(k))) run = candidate;
      }
    }
    if (run === undefined) {
      run = { shape, signature, lane, seq: ++this.#runSeq, columns: [...shape.oldColumns, ...shape.newColumns].map(() => []), rows: 0, bytes: 0, touched: new Set(), first: where, last: where };
      this.#runs.push(run);
      if (tableLane !== undefined) {
        tableLane.runs.push(run);
        tableLane.bySignature.set(signature, run);
      }
    }
    let i = 0;
    const before = run.bytes;
    for (const c of shape.oldColumns) {
      const v = (old as RowImage)[c] ?? null;
      (run.columns[i++] as (string | null)[]).push(v);
      if (v !== null) run.bytes += v.length;
    }
    for (const c of shape.newColumns) {
      const v = (neu as RowImage)[c] ?? null;
      (run.columns[i++] as (string | null)[]).push(v);
      if (v !== null) run.bytes += v.length;
    }
    for (const k of keys) run.touched.add(k);
    if (tableLane !== undefined) {
      if (shape.commuteKey !== undefined) for (const k of keys) tableLane.lastTouch.set(k, run.seq);
      else tableLane.fence = run.seq;
    }
    run.rows++;
    run.last = where;
    this.applied++;
    this.#bufferedRows++;
    this.#bufferedBytes += run.bytes - before;
    if (this.#bufferedRows >= RUN_MAX_ROWS || this.#bufferedBytes >= RUN_MAX_BYTES) await this.#flushRun();
  }

  async #flush(): Promise<void> {
    await this.#flushRun();
    await this.#flushTruncate();
  }

  async #flushTruncate(): Promise<void> {
    const truncate = this.#truncate;
    if (truncate === undefined) return;
    this.#truncate = undefined;
    const names = truncate.tables.map((t) => t.quoted).join(', ');
    await this.#query(`TRUNCATE TABLE ${names}`, [], `truncating replica table${truncate.tables.length > 1 ? 's' : ''} ${truncate.tables.map((t) => t.display).join(', ')}`);
  }

  /** Writes every buffered run, in creation order. */
  async #flushRun(): Promise<void> {
    const runs = this.#runs;
    this.#runs = [];
    this.#lanes.clear();
    this.#bufferedRows = 0;
    this.#bufferedBytes = 0;
    for (const run of runs) await this.#write(run);
  }

  /** Writes the buffered runs of one table, in order, leaving other tables' runs buffered. */
  async #flushLane(lane: string): Promise<void> {
    const tableLane = this.#lanes.get(lane);
    if (tableLane === undefined) return;
    this.#lanes.delete(lane);
    this.#runs = this.#runs.filter((run) => run.lane !== lane);
    for (const run of tableLane.runs) {
      this.#bufferedRows -= run.rows;
      this.#bufferedBytes -= run.bytes;
      await this.#write(run);
    }
  }

  async #write(run: Run): Promise<void> {
    await this.#execute(run.shape, unnestSource(run.columns, run.rows), run.rows === 1 ? run.first : `one of the changes ${run.first} … ${run.last}`);
  }

  /** Runs one statement for `source` and checks it touched exactly one row per change. */
  async #execute(shape: Shape, source: RowSource, where: string): Promise<void> {
    const sql = statementSql(shape, source);
    const verb = { I: 'inserting into', U: 'updating', D: 'deleting from' }[shape.op];
    const result = await this.#query(sql, source.params, `${verb} replica table ${shape.table.display}`);
    if (result.rowCount !== source.rows) {
      const how = shape.key ? `by ${shape.key.map(quoteIdent).join(', ')}` : 'matching the whole old row';
      throw new RowNotFoundError(shape.table.display, `${source.rows - (result.rowCount ?? 0)} of ${source.rows} rows to ${shape.op === 'U' ? 'update' : 'delete'} not found ${how} (${where})`, this.#context);
    }
  }

  /** Stores the values of one item of a split change in replica_staged_value. */
  async #stage(item: ChangeItem, where: string): Promise<void> {
    const pending = this.#pending as Pending;
    const slots: number[] = [];
    const seqs: number[] = [];
    const values: (string | null)[] = [];
    for (const image of ['old', 'new'] as const) {
      const row = item[image];
      if (row === undefined) continue;
      for (const [name, value] of Object.entries(row)) {
        const slotKey = `${image}\u0000${name}`;
        let slot = pending.slots.get(slotKey);
        if (slot === undefined) {
          slot = pending.slots.size;
          pending.slots.set(slotKey, slot);
          pending.columns[image].push(name);
          if (value === null) pending.nullSlots.add(slot);
        } else if (value === null || pending.nullSlots.has(slot)) {
          throw new MalformedMessageError(`${where}.${image}[${JSON.stringify(name)}]`, 'a continued NULL', 'continuations of string values only');
        }
        slots.push(slot);
        seqs.push(this.#seq++);
        values.push(value);
      }
    }
    if (slots.length === 0) return;
    await this.#query(
      `INSERT INTO pgfanout.replica_staged_value (source_id, batch_id, slot, seq, value)
       SELECT $1, $2::pg_catalog.int8, x.slot, x.seq, x.value
         FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.int4[]), pg_catalog.unnest($4::pg_catalog.int4[]), pg_catalog.unnest($5::pg_catalog.text[])) AS x(slot, seq, value)`,
      [this.#context.sourceId, this.#context.batchId, slots, seqs, values],
      'staging the pieces of a split change',
    );
  }

  /** Applies a split change from its staged pieces, then forgets them. */
  async #finishPending(where: string): Promise<void> {
    const pending = this.#pending as Pending;
    this.#pending = undefined;
    const head = pending.head;
    const { old: oldColumns, new: newColumns } = pending.columns;
    checkImages(head.op, oldColumns.length > 0, newColumns.length > 0, pending.index);
    if (head.op === 'S') {
      // A statement must be whole to run: read it back from its pieces.
      const { rows } = await this.#query(
        `SELECT s.slot, pg_catalog.string_agg(s.value, '' ORDER BY s.seq) AS value FROM pgfanout.replica_staged_value s
          WHERE s.source_id = $1 AND s.batch_id = $2::pg_catalog.int8 GROUP BY s.slot`,
        [this.#context.sourceId, this.#context.batchId],
        'reading back the pieces of a split schema change',
      );
      const values = new Map((rows as { slot: number; value: string | null }[]).map((r) => [r.slot, r.value]));
      await this.#schemaChange(head, Object.fromEntries(newColumns.map((c) => [c, values.get(pending.slots.get(`new\u0000${c}`) as number) ?? null])), pending.index);
    } else if (!this.#filter.applies(head.schema, head.table)) this.skipped++;
    else {
      const op = head.op as 'I' | 'U' | 'D';
      const signature = `${op}\u0000${head.schema}\u0000${head.table}\u0000${oldColumns.join('\u0000')}\u0001${newColumns.join('\u0000')}`;
      const shape = await this.#shape(op, head, oldColumns, newColumns, signature);
      // Slots were numbered in arrival order, old image first: make v0… follow the shape's order.
      const order = [...oldColumns.map((c) => pending.slots.get(`old\u0000${c}`)), ...newColumns.map((c) => pending.slots.get(`new\u0000${c}`))] as number[];
      const identity = order.every((slot, i) => slot === i);
      if (!identity) throw new MalformedMessageError(pending.index, 'a split change whose old image continues after its new image', 'the old image first, then the new image');
      await this.#execute(shape, stagedSource(order.length, this.#context.sourceId, this.#context.batchId), where);
      this.applied++;
    }
    await this.#query(
      'DELETE FROM pgfanout.replica_staged_value WHERE source_id = $1 AND batch_id = $2::pg_catalog.int8',
      [this.#context.sourceId, this.#context.batchId],
      'clearing the pieces of a split change',
    );
  }
}

// ---------------------------------------------------------------- the transaction

/** The setting pgfanout's capture trigger checks before logging a change. */
export const ORIGIN_SETTING = 'pgfanout.origin';

/**
 * Starts the apply transaction. Values arrive in the source's output style (ISO dates, postgres
 * intervals): they are read the same way.
 */
const BEGIN_SESSION = `BEGIN; SET LOCAL datestyle = 'ISO, YMD'; SET LOCAL intervalstyle = 'postgres'`;
const REPLICA_ROLE = 'SET LOCAL session_replication_role = replica';

/**
 * Begins the apply transaction and keeps the replica's triggers quiet, in one round trip when
 * `session_replication_role = replica` may be set. On failure, nothing is left open.
 */
async function beginSession(client: pg.ClientBase, mode: ReplicationRole, sourceId: string): Promise<'replica' | 'origin-guard'> {
  try {
    if (mode === 'replica') {
      await client.query(`${BEGIN_SESSION}; ${REPLICA_ROLE}`);
      return 'replica';
    }
    if (mode === 'auto') {
      try {
        // If the role may not set it, the savepoint undoes just the failed SET.
        await client.query(`${BEGIN_SESSION}; SAVEPOINT pgfanout_role; ${REPLICA_ROLE}; RELEASE SAVEPOINT pgfanout_role`);
        return 'replica';
      } catch (err) {
        if ((err as { code?: string }).code !== '42501') throw err;
        await client.query('ROLLBACK TO SAVEPOINT pgfanout_role; RELEASE SAVEPOINT pgfanout_role');
      }
    } else {
      await client.query(BEGIN_SESSION);
    }
    await client.query('SELECT pg_catalog.set_config($1, $2, true)', [ORIGIN_SETTING, sourceId]);
    return 'origin-guard';
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

const POSITION_SQL =
  'SELECT batch_id::pg_catalog.text, part, applied_batch_id::pg_catalog.text, part_digest FROM pgfanout.replica_position WHERE source_id = $1 FOR UPDATE';

/** Locks and reads the source's position row, creating it on the source's first message. */
async function lockPosition(client: pg.ClientBase, sourceId: string): Promise<PositionRow | undefined> {
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
async function refuseBeforeBootstrap(client: pg.ClientBase, message: Pick<Envelope, 'source' | 'batch' | 'prev'>): Promise<void> {
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

/**
 * Applies one message body to the replica. See the module comment for the steps. Throws a
 * `PgfanoutError`: permanent for malformed messages, unknown versions, gaps, schema
 * mismatches and data errors; transient for connection loss, serialization failures and the
 * like. A failed apply leaves nothing applied and the position unchanged. The client must not be
 * inside a transaction.
 */
export async function applyMessage(client: pg.ClientBase, body: string, options: ApplyOptions = {}): Promise<ApplyResult> {
  const envelope = parseEnvelope(body);
  const filter = new TableFilter(options.include, options.exclude);
  const mode = options.replicationRole ?? 'auto';
  if (mode !== 'auto' && mode !== 'replica' && mode !== 'origin-guard') {
    throw new InvalidArgumentError(`replicationRole ${describeValue(mode)} is not allowed; expected 'replica', 'origin-guard' or 'auto'`);
  }
  const conflicts = checkConflictMode(options.conflicts ?? 'error');
  const planning = options.planning ?? 'per-table';
  if (planning !== 'per-table' && planning !== 'in-order') {
    throw new InvalidArgumentError(`planning ${describeValue(planning)} is not allowed; expected 'per-table' or 'in-order'`);
  }
  const context: ApplyContext = { sourceId: envelope.source, batchId: envelope.batch, part: envelope.part };
  const base = {
    sourceId: envelope.source,
    batchId: envelope.batch,
    part: envelope.part,
    ...(envelope.time === undefined ? {} : { sourceTime: envelope.time }),
  };
  const where = `(batch ${envelope.batch}, part ${envelope.part}, source ${envelope.source})`;
  let role: 'replica' | 'origin-guard';
  try {
    role = await beginSession(client, mode, envelope.source);
  } catch (err) {
    throw classifyDatabaseError(err, `starting the apply transaction ${where}`);
  }
  try {
    const position = await lockPosition(client, envelope.source);
    if (position?.appliedBatchId === 0n && position.part === null) await refuseBeforeBootstrap(client, envelope);
    const digest = bodyDigest(body);
    let stagedFirst: string | undefined;
    if (position?.part !== null && position !== undefined && BigInt(envelope.batch) === position.batchId && envelope.part === 0) {
      const { rows } = await client.query<{ digest: string }>(
        'SELECT digest FROM pgfanout.replica_staged_part WHERE source_id = $1 AND batch_id = $2::pg_catalog.int8 AND part = 0',
        [envelope.source, envelope.batch],
      );
      stagedFirst = rows[0]?.digest;
    }
    const decision = decide(position, envelope, digest, stagedFirst);
    if (decision.kind === 'duplicate') {
      await client.query('ROLLBACK');
      return { outcome: 'duplicate', ...base, changes: 0, skipped: 0 };
    }
    if (decision.kind === 'gap') {
      throw new GapError(envelope.source, decision.expected, `${positionText(envelope.batch, envelope.part)} (prev ${envelope.prev})`);
    }
    if (decision.restart) {
      await client.query('DELETE FROM pgfanout.replica_staged_part WHERE source_id = $1', [envelope.source]);
    }
    if (decision.kind === 'stage') {
      await client.query('INSERT INTO pgfanout.replica_staged_part (source_id, batch_id, part, digest, body) VALUES ($1, $2::pg_catalog.int8, $3, $4, $5)', [
        envelope.source,
        envelope.batch,
        envelope.part,
        digest,
        body,
      ]);
      await client.query(
        `UPDATE pgfanout.replica_position
            SET batch_id = $2::pg_catalog.int8, part = $3, state = 'staging', part_digest = $4, applied_at = pg_catalog.now()
          WHERE source_id = $1`,
        [envelope.source, envelope.batch, envelope.part, digest],
      );
      await client.query(options.dryRun === true ? 'ROLLBACK' : 'COMMIT');
      return { outcome: 'staged', ...base, changes: 0, skipped: 0, replicationRole: role };
    }

    const applier = new BatchApplier(client, context, filter, conflicts);
    applier.perTable = role === 'replica' && planning === 'per-table';
    for (let part = 0; part < envelope.part; part++) {
      const { rows } = await client.query<{ body: string }>(
        'SELECT body FROM pgfanout.replica_staged_part WHERE source_id = $1 AND batch_id = $2::pg_catalog.int8 AND part = $3',
        [envelope.source, envelope.batch, part],
      );
      const staged = rows[0];
      if (staged === undefined) throw new GapError(envelope.source, `staged ${positionText(envelope.batch, part)}`, `the final ${positionText(envelope.batch, envelope.part)} without it`);
      await applier.part(parseEnvelope(staged.body).changes, part);
    }
    await applier.part(envelope.changes, envelope.part);
    await applier.finish();
    if (applier.seen !== envelope.count) {
      throw new MalformedMessageError('count', String(envelope.count), `the number of changes in batch ${envelope.batch}'s parts, ${applier.seen}`);
    }
    // A batch of one part has nothing staged (a restarted one was cleared above).
    if (envelope.part > 0) {
      await client.query('DELETE FROM pgfanout.replica_staged_part WHERE source_id = $1 AND batch_id = $2::pg_catalog.int8', [envelope.source, envelope.batch]);
    }
    await client.query(
      `UPDATE pgfanout.replica_position
          SET batch_id = $2::pg_catalog.int8, part = NULL, state = 'applied', applied_batch_id = $2::pg_catalog.int8, part_digest = NULL,
              applied_at = pg_catalog.now(), source_time = COALESCE($3::pg_catalog.timestamptz, source_time)
        WHERE source_id = $1`,
      [envelope.source, envelope.batch, envelope.time ?? null],
    );
    await client.query(options.dryRun === true ? 'ROLLBACK' : 'COMMIT');
    // A schema change rolled back by a dry run must not stay in what was read of the catalog.
    if (options.dryRun === true) replicaCatalog(client).invalidate();
    return {
      outcome: 'applied',
      ...base,
      changes: applier.applied,
      skipped: applier.skipped,
      replicationRole: role,
      ...(applier.conflictCount > 0 ? { conflicts: applier.conflictCount } : {}),
    };
  } catch (err) {
    // What was read of the catalog may be what the error is about, or from a rolled-back schema change.
    replicaCatalog(client).invalidate();
    try {
      await client.query('ROLLBACK');
    } catch {
      // The connection is gone; the server rolls the transaction back itself. The original error says why.
    }
    const e = err as { code?: string; message?: string };
    if (e.code === '42P01' && /pgfanout\.replica_/.test(e.message ?? '')) {
      throw classifyDatabaseError(err, `applying ${where}: this database has no pgfanout replica tables; install them first (installReplica)`);
    }
    throw classifyDatabaseError(err, `applying ${where}`);
  }
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

