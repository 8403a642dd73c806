/**
 * The SQL the applier runs: a replica table and column as the applier sees them, the shape of a
 * run of changes (one table, one operation, one column layout), where its rows come from
 * (parameter arrays, or staged pieces of split values) and the set-based statement that applies
 * them. Identifiers are always quoted; values are always parameters, converted by the replica
 * server with the column type's input function.
 */
import { createHash } from 'node:crypto';
import { quoteIdent } from '../pg/sql.ts';
import { stagedValueSql } from './protocol.ts';

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
  /** Quoted collation of the column (`"schema"."name"`), for comparisons as the column compares; undefined: not collatable. */
  readonly collation: string | undefined;
  /**
   * Two values of the column are equal exactly when their texts (as the source writes them) are:
   * a type of catalog.ts's EXACT_TEXT_TYPES, or an enum, under a deterministic collation.
   */
  readonly exactText: boolean;
}

/** A DEFERRABLE unique constraint of a replica table (its index, its key columns). */
export interface DeferrableUnique {
  readonly name: string;
  readonly columns: readonly string[];
  /** NULLS NOT DISTINCT (PostgreSQL 15+): NULLs collide like values. */
  readonly nullsNotDistinct: boolean;
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
  /** Unique and exclusion indexes checked at once, row by row (not DEFERRABLE). */
  readonly immediateIndexes: number;
  /**
   * DEFERRABLE unique constraints: under `session_replication_role = replica` PostgreSQL does not
   * check them at all (their check is a trigger, which does not fire), so the applier does.
   */
  readonly deferrableUniques: readonly DeferrableUnique[];
  /** A DEFERRABLE exclusion constraint exists (not checked under `session_replication_role = replica`). */
  readonly deferrableExclusion: boolean;
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
  const values = Array.from({ length: slots }, (_, i) => `${stagedValueSql(i)} AS v${i}`);
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
  /** How later changes of this shape may join a run of it (see {@link Joining}). */
  readonly joining: Joining;
}

/**
 * How changes of one shape share a run (one set-based statement, matched against the table as
 * it was before the statement, its rows written in an order PostgreSQL chooses):
 * - `touched`: a change joins unless it touches a key value (old or new) the run touched; key
 *   texts decide, which is exact for {@link ColumnInfo.exactText} keys that are checked at once;
 * - `key-text`: the key's texts do not decide equality (numeric 1.0 and 1.00, a nondeterministic
 *   collation): as `touched`, but an UPDATE that writes a key text other than its old one is a
 *   run of its own, so equal keys written differently are never in one statement unless they
 *   are one row's unchanged key;
 * - `alone`: every change is its own statement: an UPDATE of a table with a unique constraint
 *   checked at once besides its key (a run's row order could collide on it for a moment, as a
 *   swap through a temporary value would);
 * - `snapshot`: the key is DEFERRABLE, so two rows may hold one key value for a while and a
 *   change's old key names the row that held it before the statement (a swap, a shift): UPDATEs
 *   and DELETEs join whatever they touch, and an UPDATE run is cut where the replica's own
 *   equality shows a later change needs an earlier one's result ({@link snapshotCuts}).
 */
export type Joining = 'touched' | 'key-text' | 'alone' | 'snapshot';

const sameColumns = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((c) => b.includes(c));

/** How changes of a shape join runs (see {@link Joining}); `key` is the shape's matching key. */
export function joiningOf(op: 'I' | 'U' | 'D', table: TableInfo, key: readonly string[] | undefined): Joining {
  if (op === 'I' || key === undefined) return 'touched';
  const keyDeferrable = table.deferrableUniques.some((u) => sameColumns(u.columns, key));
  if (op === 'U' && table.immediateIndexes > (keyDeferrable ? 0 : 1)) return 'alone';
  if (keyDeferrable) return 'snapshot';
  if (!key.every((c) => table.columns.get(c)?.exactText === true)) return 'key-text';
  return 'touched';
}

function cast(ref: string, column: ColumnInfo): string {
  return `${ref}::${column.castType}`;
}

/** `ref` as a value of `column`, compared with the column's collation. */
function typed(ref: string, column: ColumnInfo): string {
  return column.collation === undefined ? `(${cast(ref, column)})` : `(${cast(ref, column)} COLLATE ${column.collation})`;
}

function column(shape: Shape, name: string): ColumnInfo {
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
  // Commuting is decided by comparing key texts: only for a key whose texts are its values, checked at once.
  const only = table.uniqueIndexes === 1 && table.immediateIndexes === 1 && table.identities.length === 1 ? table.identities[0] : undefined;
  if (only !== undefined && !only.every((c) => table.columns.get(c)?.exactText === true)) return { placement: 'table', commuteKey: undefined };
  if (only === undefined) return { placement: 'table', commuteKey: undefined };
  const inOld = new Set(oldColumns);
  const carried = (image: ReadonlySet<string>) => only.every((c) => image.has(c));
  const commutes = op === 'I' ? carried(inNew) : op === 'D' ? carried(inOld) : carried(inOld) && carried(inNew);
  return { placement: 'table', commuteKey: commutes ? only : undefined };
}

/**
 * For a run of UPDATEs matched by a DEFERRABLE key (see {@link Joining}): each change's old and
 * new key as a class of equal values (`o`, `n`: numbers equal exactly when the replica's own
 * equality, the key's type and collation, says the keys are), and whether a row of the table
 * holds them now (`oh`, `nh`), in the run's order. {@link snapshotCuts} plans the statements.
 */
export function keyClassesSql(shape: Shape, source: RowSource): string {
  const key = shape.key as readonly string[];
  const oldRef = (name: string) => `u.v${shape.oldColumns.indexOf(name)}`;
  const newRef = (name: string) => (shape.newColumns.includes(name) ? `u.v${shape.oldColumns.length + shape.newColumns.indexOf(name)}` : oldRef(name));
  const ks = key.map((_, i) => `k${i}`);
  const typedKeys = (ref: (name: string) => string) => key.map((c, i) => `${typed(ref(c), column(shape, c))} AS k${i}`).join(', ');
  const eq = (a: string, b: string) => ks.map((k) => `${a}.${k} = ${b}.${k}`).join(' AND ');
  const held = key.map((c, i) => `t.${quoteIdent(c)} = k.k${i}`).join(' AND ');
  // UNION keeps one of each class of equal keys (the type's equality, the column's collation).
  return `WITH w AS MATERIALIZED (SELECT u.ord, ${typedKeys(oldRef)}, ${key.map((c, i) => `${typed(newRef(c), column(shape, c))} AS n${i}`).join(', ')} FROM ${source.fromItem}),
k AS MATERIALIZED (SELECT k.*, pg_catalog.row_number() OVER () AS id, EXISTS (SELECT FROM ${shape.table.quoted} AS t WHERE ${held}) AS held
                     FROM (SELECT ${ks.join(', ')} FROM w UNION SELECT ${key.map((_, i) => `n${i}`).join(', ')} FROM w) AS k)
SELECT w.ord, ko.id AS o, kn.id AS n, ko.held AS oh, kn.held AS nh
  FROM w JOIN k AS ko ON ${eq('ko', 'w')} JOIN k AS kn ON ${key.map((_, i) => `kn.k${i} = w.n${i}`).join(' AND ')}
 ORDER BY w.ord`;
}

/** One change of a run of UPDATEs as {@link keyClassesSql} reports it. */
export interface KeyClasses {
  readonly o: number;
  readonly n: number;
  readonly oh: boolean;
  readonly nh: boolean;
}

/**
 * Where to cut a run of UPDATEs matched by a DEFERRABLE key into statements (indexes in the run
 * where a new statement starts, ascending, without 0). One statement matches every change
 * against the table as it was before the statement, which is how the source applies one
 * statement: a change's old key names the row that held it before the statement, even when an
 * earlier change wrote that key since (a swap, a shift). A change whose old key no such row holds
 * any more (it moved, or never held it) names a row an earlier statement wrote: the first one
 * still holding the key. The cut before it goes where the table's keys are unique again (the end
 * of a source statement, when the key is checked at each statement's end), after that row's
 * change and before any later change writing the same key; failing that, right before it.
 */
export function snapshotCuts(changes: readonly KeyClasses[]): number[] {
  const cuts: number[] = [];
  /** Rows holding each key class before the current statement. */
  const holders = new Map<number, number>();
  for (const c of changes) {
    if (!holders.has(c.o)) holders.set(c.o, c.oh ? 1 : 0);
    if (!holders.has(c.n)) holders.set(c.n, c.nh ? 1 : 0);
  }
  let start = 0;
  while (start < changes.length) {
    // Within the statement from `start`: which rows held before it were taken, who wrote each key.
    const taken = new Map<number, number>();
    const writers = new Map<number, number[]>();
    let bad = -1;
    for (let j = start; j < changes.length; j++) {
      const c = changes[j] as KeyClasses;
      if ((holders.get(c.o) ?? 0) > (taken.get(c.o) ?? 0)) {
        taken.set(c.o, (taken.get(c.o) ?? 0) + 1);
        const list = writers.get(c.n) ?? [];
        list.push(j);
        writers.set(c.n, list);
        continue;
      }
      bad = j;
      break;
    }
    if (bad < 0) break;
    const o = (changes[bad] as KeyClasses).o;
    const written = writers.get(o) ?? [];
    // After the first writer of the key (and whatever took the key's old row), before the second writer.
    let lastTaker = -1;
    for (let j = start; j < bad; j++) if ((changes[j] as KeyClasses).o === o) lastTaker = j;
    const floor = Math.max(written[0] ?? start, lastTaker) + 1;
    const ceiling = written.find((j) => j >= floor) ?? bad;
    // The last place in [floor, ceiling] where no key is held by two rows; else the ceiling.
    const counts = new Map(holders);
    let duplicated = 0;
    for (const v of counts.values()) if (v > 1) duplicated++;
    let cut = ceiling;
    let best = -1;
    const move = (k: number, by: number) => {
      const before = counts.get(k) ?? 0;
      const after = before + by;
      counts.set(k, after);
      if (before > 1 && after <= 1) duplicated--;
      if (before <= 1 && after > 1) duplicated++;
    };
    for (let j = start; j < ceiling; j++) {
      const c = changes[j] as KeyClasses;
      move(c.o, -1);
      move(c.n, +1);
      if (j + 1 >= floor && duplicated === 0) best = j + 1;
    }
    if (best >= floor) cut = best;
    if (cut <= start) cut = start + 1;
    // The table after the statement [start, cut).
    for (let j = start; j < cut; j++) {
      const c = changes[j] as KeyClasses;
      holders.set(c.o, (holders.get(c.o) ?? 0) - 1);
      holders.set(c.n, (holders.get(c.n) ?? 0) + 1);
    }
    cuts.push(cut);
    start = cut;
  }
  return cuts;
}

/**
 * A check that `unique` holds for the key values in `source` (v0… in the constraint's column
 * order): the first value held by more than one row, or none. With no source, the whole table
 * is checked (for a batch that wrote more keys than are kept in memory).
 */
export function deferredCheckSql(table: TableInfo, unique: DeferrableUnique, source: RowSource | undefined): string {
  const col = (c: string) => table.columns.get(c) as ColumnInfo;
  if (source === undefined) {
    const cols = unique.columns.map((c) => `t.${quoteIdent(c)}`);
    const notNull = unique.nullsNotDistinct ? '' : ` WHERE ${cols.map((c) => `${c} IS NOT NULL`).join(' AND ')}`;
    return `SELECT ${cols.map((c, i) => `${c}::pg_catalog.text AS v${i}`).join(', ')} FROM ${table.quoted} AS t${notNull} GROUP BY ${cols.join(', ')} HAVING pg_catalog.count(*) > 1 LIMIT 1`;
  }
  const op = unique.nullsNotDistinct ? 'IS NOT DISTINCT FROM' : '=';
  const match = unique.columns.map((c, i) => `t.${quoteIdent(c)} ${op} ${cast(`u.v${i}`, col(c))}`).join(' AND ');
  return `SELECT ${unique.columns.map((_, i) => `u.v${i}`).join(', ')} FROM ${source.fromItem}
 WHERE (SELECT pg_catalog.count(*) FROM ${table.quoted} AS t WHERE ${match}) > 1 LIMIT 1`;
}

/** A prepared-statement name for `sql` (node-pg prepares each name once per connection). */
export function statementName(sql: string): string {
  return `pgfanout_${createHash('sha1').update(sql).digest('hex').slice(0, 24)}`;
}
