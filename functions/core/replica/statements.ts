/**
 * The SQL the applier runs: a replica table and column as the applier sees them, the shape of a
 * run of changes (one table, one operation, one column layout), where its rows come from
 * (parameter arrays, or staged pieces of split values) and the set-based statement that applies
 * them. Identifiers are always quoted; values are always parameters, converted by the replica
 * server with the column type's input function.
 */
import { createHash } from 'node:crypto';
import { quoteIdent } from '../pg/sql.ts';

/** A replica column as the applier needs it. */
export interface ColumnInfo {
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
export interface TableInfo {
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
  /**
   * User triggers of the table and its partitions that fire when session_replication_role is
   * not `replica` (enabled the default way), each `schema.table trigger` quoted; pgfanout's
   * capture triggers and foreign-key triggers are not among them.
   */
  readonly originTriggers: readonly string[];
  /** When this was read (performance.now()), to read it again after CATALOG_MAX_AGE_MS. */
  readonly readAt: number;
}


/** Where a statement reads its rows: a FROM item aliased `u` with text columns v0…vN and `ord`. */
export interface RowSource {
  readonly fromItem: string;
  readonly params: unknown[];
  /** Parameter number of the first value column ($n). */
  readonly rows: number;
}

export function unnestSource(columns: readonly (readonly (string | null)[])[], rows: number): RowSource {
  const args = columns.map((_, i) => `pg_catalog.unnest($${i + 1}::pg_catalog.text[])`);
  const names = columns.map((_, i) => `v${i}`);
  if (columns.length === 0) {
    return { fromItem: `pg_catalog.generate_series(1, $1::pg_catalog.int4) AS u(ord)`, params: [rows], rows };
  }
  return { fromItem: `ROWS FROM (${args.join(', ')}) WITH ORDINALITY AS u(${names.join(', ')}, ord)`, params: [...columns], rows };
}

export function stagedSource(slots: number, sourceId: string, batchId: string): RowSource {
  const values = Array.from(
    { length: slots },
    (_, i) =>
      `(SELECT pg_catalog.string_agg(s.value, '' ORDER BY s.seq) FROM pgfanout.replica_staged_value s WHERE s.source_id = $1 AND s.batch_id = $2::pg_catalog.int8 AND s.slot = ${i}) AS v${i}`,
  );
  return { fromItem: `(SELECT ${[...values, '1::pg_catalog.int8 AS ord'].join(', ')}) AS u`, params: [sourceId, batchId], rows: 1 };
}

/** The statement shape of a run: one table, one operation, one column layout. */
export interface Shape {
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

export function cast(ref: string, column: ColumnInfo): string {
  return `${ref}::${column.castType}`;
}

export function column(shape: Shape, name: string): ColumnInfo {
  return shape.table.columns.get(name) as ColumnInfo;
}

/** SQL of a statement applying every row of `source` for `shape`. */
export function statementSql(shape: Shape, source: RowSource): string {
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
export function placementOf(op: 'I' | 'U' | 'D', table: TableInfo, oldColumns: readonly string[], newColumns: readonly string[]): Pick<Shape, 'placement' | 'commuteKey'> {
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
export function statementName(sql: string): string {
  return `pgfanout_${createHash('sha1').update(sql).digest('hex').slice(0, 24)}`;
}
