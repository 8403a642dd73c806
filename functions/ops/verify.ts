/**
 * Comparison of tables on a source and a replica.
 *
 * Both sides are read under one REPEATABLE READ READ ONLY snapshot each, for all the tables of
 * one call, with identical text output settings (see `setStableOutput`), and every row is
 * compared as its text (`ROW(columns…)::text`, columns in the source's order).
 *
 * **Chunked, for tables with a key** (the primary key, else a unique index over NOT NULL
 * columns, present with the same columns, types and collations on the replica): the source's
 * key range is cut into chunks of `chunkRows` rows (every `chunkRows`-th key, read from the
 * source's index). For each chunk each server computes, by itself, the row count and the sum of
 * a 64-bit hash of each row's text (order-independent, so no sort and bounded memory whatever
 * the rows' width); only these two numbers travel. The hash is `hashtextextended`, the function
 * hash partitioning routes text with, which pg_upgrade of hash-partitioned tables relies on
 * staying the same across major versions (the tests compare a PostgreSQL 13 and an 18 server);
 * it costs about a third of md5 turned into a number. Were it ever to differ between two servers, every chunk would differ and be compared
 * row by row: slower, never wrong. A chunk whose numbers differ is cut
 * again (`fanout` sub-ranges, at keys of the side holding more rows in it) until both sides hold
 * at most `leafRows` rows in it; then its keys and per-row md5 are fetched from both sides and
 * compared, and each differing row is reported with its key as missing, extra or changed.
 * Ranges are compared with each server's own key order, so the key columns must sort the same
 * on both (same types and collations; for libc collations the same C library version); when
 * they do not, rows show as differences (missing on one range, extra on another), never hidden.
 *
 * **Full merge, for tables without a usable key**: each side streams its row texts sorted by
 * bytes (`COLLATE "C"`) through a cursor and the two streams are merged; memory is bounded by
 * one fetch per side, but every row travels.
 *
 * Verifying while changes flow compares two different moments: rows changed since the replica's
 * position show as differences. {@link waitForReplicaPosition} waits until the replica has
 * applied every batch the source had published when it started; changes committed after that can
 * still differ.
 */
import type { ClientBase } from 'pg';
import { replicaState } from '#core/replica/protocol.ts';
import { OPS_ERROR_CODES, OpsError } from './errors.ts';
import { qualified, quoteIdent, setStableOutput } from '#core/pg/sql.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { isIntegerIn } from '#core/integer.ts';

export interface TableRef {
  readonly schema: string;
  readonly table: string;
}

/** One row that differs. */
export interface RowDifference {
  /** `missing`: only on the source; `extra`: only on the replica; `changed`: same key, other values. */
  readonly kind: 'missing' | 'extra' | 'changed';
  /** The row as text: the source's for missing and changed rows, the replica's for extra rows. */
  readonly row: string;
  /** The key, as `(col, …)=(value, …)`, for tables compared by key. */
  readonly key?: string;
  /** The replica's row, for changed rows. */
  readonly replicaRow?: string;
}

/** How a table was compared. */
export type VerifyMethod = 'chunked' | 'full';

export interface TableDifference {
  readonly table: string;
  readonly method: VerifyMethod;
  readonly sourceRows: number;
  readonly replicaRows: number;
  /** Up to `maxExamples` differing rows, in key order for chunked tables. */
  readonly examples: readonly RowDifference[];
  readonly missing: number;
  readonly extra: number;
  readonly changed: number;
  /** Why the table could not be compared at all (absent on the replica, columns missing). */
  readonly problem?: string;
}

/** What was done for one table, different or not. */
export interface TableSummary {
  readonly table: string;
  readonly method: VerifyMethod;
  /** Why the full merge was used, when it was. */
  readonly reason?: string;
  readonly sourceRows: number;
  readonly replicaRows: number;
  /** Chunks whose count and hash were compared (chunked method, all levels). */
  readonly chunksCompared: number;
  /** Rows whose key and md5 were fetched to find the differing ones (chunked method). */
  readonly rowsFetched: number;
}

export interface VerifyReport {
  readonly tables: number;
  readonly rowsCompared: number;
  readonly differences: readonly TableDifference[];
  /** One entry per table, in the order compared. */
  readonly summaries: readonly TableSummary[];
}

/** Progress of one table, reported after each top-level chunk (or fetch, for the full merge). */
export interface VerifyProgress {
  readonly table: string;
  readonly method: VerifyMethod;
  /** Source rows compared so far. */
  readonly rowsDone: number;
  /** Top-level chunks done and in all (chunked method). */
  readonly chunksDone?: number;
  readonly chunks?: number;
}

export interface VerifyOptions {
  /** Rows per fetch of the full merge. @default 5000 */
  readonly fetchRows?: number;
  /** Differing rows reported per table (all are counted). @default 10 */
  readonly maxExamples?: number;
  readonly onTable?: (table: string, rows: number, summary: TableSummary) => void;
  /** Rows per top-level chunk of the chunked method. @default 10000 */
  readonly chunkRows?: number;
  /** A differing range with at most this many rows on each side is compared row by row. @default 1000 */
  readonly leafRows?: number;
  /** Sub-ranges a differing range is cut into. @default 10 */
  readonly fanout?: number;
  /** `auto`: chunked where a table has a usable key; `full`: always the full merge. @default 'auto' */
  readonly method?: 'auto' | 'full';
  readonly onProgress?: (progress: VerifyProgress) => void;
}

function positiveInteger(name: string, value: number | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!isIntegerIn(value, min)) {
    throw new OpsError(OPS_ERROR_CODES.invalidArgument, `${name} is ${String(value)}; allowed: an integer >= ${min}`);
  }
  return value;
}

/** The columns of a table in attnum order (dropped columns excluded). */
async function tableColumns(client: ClientBase, ref: TableRef): Promise<string[]> {
  const { rows } = await client.query<{ attname: string }>(
    `SELECT a.attname FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [ref.schema, ref.table],
  );
  if (rows.length === 0) throw new OpsError(OPS_ERROR_CODES.notFound, `table ${ref.schema}.${ref.table} does not exist or has no columns`);
  return rows.map((r) => r.attname);
}

/** A unique key over NOT NULL columns, with what range predicates need on one server. */
interface Key {
  readonly columns: readonly string[];
  /** Per column: `schema.type` (quoted, no typmod) for `$n::type`. */
  readonly castTypes: readonly string[];
  /** Per column: the collation (`schema.name`), or '' for types without one. */
  readonly collations: readonly string[];
}

/** Unique keys usable for ranges: primary key first, then unique indexes over NOT NULL columns, fewest columns first. */
async function uniqueKeys(client: ClientBase, ref: TableRef): Promise<Key[]> {
  const { rows } = await client.query<{ columns: string[]; cast_types: string[]; collations: string[] }>(
    `SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY k.ord) AS columns,
            pg_catalog.array_agg(pg_catalog.format('%I.%I', tn.nspname, t.typname) ORDER BY k.ord) AS cast_types,
            pg_catalog.array_agg(CASE WHEN co.oid IS NULL THEN '' ELSE pg_catalog.format('%I.%I', cn.nspname, co.collname) END ORDER BY k.ord) AS collations
       FROM pg_catalog.pg_class c
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_catalog.pg_index i ON i.indrelid = c.oid
      CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)
       JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
       JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
       JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
       LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
       LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
      WHERE n.nspname = $1 AND c.relname = $2
        AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL AND k.ord <= i.indnkeyatts
      GROUP BY i.indexrelid, i.indisprimary
     HAVING pg_catalog.bool_and(a.attnotnull)
      ORDER BY i.indisprimary DESC, pg_catalog.count(*), i.indexrelid`,
    [ref.schema, ref.table],
  );
  return rows.map((r) => ({ columns: r.columns, castTypes: r.cast_types, collations: r.collations }));
}

/**
 * The key to compare `ref` by: the source's best key that the replica also has as a unique
 * NOT NULL key with the same columns, types and collations; or why there is none.
 */
async function chooseKey(source: ClientBase, replica: ClientBase, ref: TableRef): Promise<{ source: Key; replica: Key } | { reason: string }> {
  const [sourceKeys, replicaKeys] = await Promise.all([uniqueKeys(source, ref), uniqueKeys(replica, ref)]);
  if (sourceKeys.length === 0) return { reason: 'no primary key or unique index over NOT NULL columns on the source' };
  const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);
  let mismatch: string | undefined;
  for (const key of sourceKeys) {
    const match = replicaKeys.find((r) => same(r.columns, key.columns));
    if (!match) continue;
    if (same(match.castTypes, key.castTypes) && same(match.collations, key.collations)) return { source: key, replica: match };
    mismatch ??= `key (${key.columns.join(', ')}) has other types or collations on the replica (${match.castTypes.join(', ')} ${match.collations.join(', ')} vs ${key.castTypes.join(', ')} ${key.collations.join(', ')})`;
  }
  return { reason: mismatch ?? `the replica has no unique NOT NULL index over the source's key columns (${sourceKeys.map((k) => `(${k.columns.join(', ')})`).join(' or ')})` };
}

/** Opens the snapshot a comparison reads: REPEATABLE READ, read only, stable text output. */
async function beginSnapshot(client: ClientBase): Promise<void> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  await setStableOutput(client);
}

/**
 * Compares every listed table; a table missing on the replica is a difference, not a crash.
 * The clients must not be inside a transaction; each side reads one snapshot for all tables.
 */
export async function verifyTables(source: ClientBase, replica: ClientBase, tables: readonly TableRef[], options: VerifyOptions = {}): Promise<VerifyReport> {
  const settings: Settings = {
    fetchRows: positiveInteger('fetchRows', options.fetchRows, 5000),
    maxExamples: positiveInteger('maxExamples', options.maxExamples, 10, 0),
    chunkRows: positiveInteger('chunkRows', options.chunkRows, 10_000),
    leafRows: positiveInteger('leafRows', options.leafRows, 1000),
    fanout: positiveInteger('fanout', options.fanout, 10, 2),
    method: options.method ?? 'auto',
    onProgress: options.onProgress,
  };
  if (settings.method !== 'auto' && settings.method !== 'full') {
    throw new OpsError(OPS_ERROR_CODES.invalidArgument, `method is ${JSON.stringify(settings.method)}; allowed: 'auto' or 'full'`);
  }
  const differences: TableDifference[] = [];
  const summaries: TableSummary[] = [];
  let rowsCompared = 0;
  await Promise.all([beginSnapshot(source), beginSnapshot(replica)]);
  try {
    for (const ref of tables) {
      const { difference, summary } = await compareTable(source, replica, ref, settings);
      rowsCompared += Math.max(0, summary.sourceRows);
      summaries.push(summary);
      options.onTable?.(summary.table, summary.sourceRows, summary);
      if (difference.problem !== undefined || difference.missing > 0 || difference.extra > 0 || difference.changed > 0) differences.push(difference);
    }
  } finally {
    await Promise.all([source.query('ROLLBACK').catch(() => undefined), replica.query('ROLLBACK').catch(() => undefined)]);
  }
  return { tables: tables.length, rowsCompared, differences, summaries };
}

interface Settings {
  readonly fetchRows: number;
  readonly maxExamples: number;
  readonly chunkRows: number;
  readonly leafRows: number;
  readonly fanout: number;
  readonly method: 'auto' | 'full';
  readonly onProgress: ((progress: VerifyProgress) => void) | undefined;
}

async function compareTable(source: ClientBase, replica: ClientBase, ref: TableRef, settings: Settings): Promise<{ difference: TableDifference; summary: TableSummary }> {
  const name = `${ref.schema}.${ref.table}`;
  const columns = await tableColumns(source, ref);
  const replicaColumns = await tableColumns(replica, ref).catch((err: unknown) => {
    if (err instanceof OpsError && err.code === OPS_ERROR_CODES.notFound) return null;
    throw err;
  });
  const unusable = (problem: string) => ({
    difference: { table: name, method: 'full' as const, sourceRows: -1, replicaRows: -1, missing: 0, extra: 0, changed: 0, examples: [], problem },
    summary: { table: name, method: 'full' as const, reason: problem, sourceRows: -1, replicaRows: -1, chunksCompared: 0, rowsFetched: 0 },
  });
  if (!replicaColumns) return unusable(`table ${name} does not exist on the replica`);
  const absent = columns.filter((c) => !replicaColumns.includes(c));
  if (absent.length > 0) return unusable(`the replica's table ${name} lacks column(s) ${absent.map((c) => JSON.stringify(c)).join(', ')}`);

  if (settings.method === 'auto') {
    const key = await chooseKey(source, replica, ref);
    if ('source' in key) return new ChunkedComparison(source, replica, ref, columns, key, settings).run();
    return fullMerge(source, replica, ref, columns, settings, key.reason);
  }
  return fullMerge(source, replica, ref, columns, settings, 'the full merge was asked for');
}

// ---------------------------------------------------------------- chunked comparison

/** A key range (lo, hi]; an absent end is open. Bounds are the key columns' text. */
interface Range {
  readonly lo?: readonly string[];
  readonly hi?: readonly string[];
}

interface Side {
  readonly client: ClientBase;
  readonly key: Key;
  readonly label: 'source' | 'replica';
}

/** A leaf row: key texts and the md5 of the row text. */
interface LeafRow {
  readonly key: string[];
  readonly id: string;
  readonly hash: string;
}

class ChunkedComparison {
  readonly #source: Side;
  readonly #replica: Side;
  readonly #name: string;
  readonly #table: string;
  readonly #rowText: string;
  readonly #keyList: string;
  readonly #settings: Settings;
  readonly #examples: RowDifference[] = [];
  #missing = 0;
  #extra = 0;
  #changed = 0;
  #chunks = 0;
  #fetched = 0;

  constructor(source: ClientBase, replica: ClientBase, ref: TableRef, columns: readonly string[], key: { source: Key; replica: Key }, settings: Settings) {
    this.#source = { client: source, key: key.source, label: 'source' };
    this.#replica = { client: replica, key: key.replica, label: 'replica' };
    this.#name = `${ref.schema}.${ref.table}`;
    this.#table = qualified(ref.schema, ref.table);
    this.#rowText = `ROW(${columns.map((c) => `t.${quoteIdent(c)}`).join(', ')})::pg_catalog.text`;
    this.#keyList = key.source.columns.map((c) => `t.${quoteIdent(c)}`).join(', ');
    this.#settings = settings;
  }

  async run(): Promise<{ difference: TableDifference; summary: TableSummary }> {
    const top = await this.#bounds(this.#source, {}, this.#settings.chunkRows);
    const ranges = splitAt({}, top);
    let sourceRows = 0;
    let replicaRows = 0;
    for (const [i, range] of ranges.entries()) {
      const [s, r] = await this.#hashes(range);
      sourceRows += s.rows;
      replicaRows += r.rows;
      if (s.rows !== r.rows || s.sum !== r.sum) await this.#drill(range, s.rows, r.rows);
      this.#settings.onProgress?.({ table: this.#name, method: 'chunked', rowsDone: sourceRows, chunksDone: i + 1, chunks: ranges.length });
    }
    const summary: TableSummary = { table: this.#name, method: 'chunked', sourceRows, replicaRows, chunksCompared: this.#chunks, rowsFetched: this.#fetched };
    return {
      difference: { table: this.#name, method: 'chunked', sourceRows, replicaRows, examples: this.#examples, missing: this.#missing, extra: this.#extra, changed: this.#changed },
      summary,
    };
  }

  /** Narrows a differing range down to its differing rows. */
  async #drill(range: Range, sourceRows: number, replicaRows: number): Promise<void> {
    if (sourceRows <= this.#settings.leafRows && replicaRows <= this.#settings.leafRows) return this.#compareRows(range);
    // Cut at keys of the side holding more rows here, so each piece holds at most `step` of them.
    const side = sourceRows >= replicaRows ? this.#source : this.#replica;
    const step = Math.ceil(Math.max(sourceRows, replicaRows) / this.#settings.fanout);
    const cuts = await this.#bounds(side, range, step);
    for (const piece of splitAt(range, cuts)) {
      const [s, r] = await this.#hashes(piece);
      if (s.rows !== r.rows || s.sum !== r.sum) await this.#drill(piece, s.rows, r.rows);
    }
  }

  /** `WHERE` text for `range` on `side`, parameters from `$first`. */
  #where(side: Side, range: Range, first: number): { sql: string; params: string[] } {
    const parts: string[] = [];
    const params: string[] = [];
    const tuple = () => `(${side.key.castTypes.map((type, i) => `$${first + params.length - side.key.castTypes.length + i}::${type}`).join(', ')})`;
    if (range.lo) {
      params.push(...range.lo);
      parts.push(`(${this.#keyList}) > ${tuple()}`);
    }
    if (range.hi) {
      params.push(...range.hi);
      parts.push(`(${this.#keyList}) <= ${tuple()}`);
    }
    return { sql: parts.length === 0 ? 'true' : parts.join(' AND '), params };
  }

  /** Every `step`-th key of `range` on `side`, in key order. */
  async #bounds(side: Side, range: Range, step: number): Promise<string[][]> {
    const where = this.#where(side, range, 2);
    const texts = side.key.columns.map((c) => `t.${quoteIdent(c)}::pg_catalog.text`);
    const { rows } = await side.client.query<{ k: string[] }>({
      text: `SELECT s.k FROM (SELECT ARRAY[${texts.join(', ')}] AS k, pg_catalog.row_number() OVER (ORDER BY ${this.#keyList}) AS rn
               FROM ${this.#table} AS t WHERE ${where.sql}) AS s
              WHERE s.rn % $1 = 0 ORDER BY s.rn`,
      values: [step, ...where.params],
    });
    return rows.map((r) => r.k);
  }

  /** Both sides' count and hash of `range`, computed at the same time. */
  #hashes(range: Range): Promise<[{ rows: number; sum: string }, { rows: number; sum: string }]> {
    this.#chunks++;
    return Promise.all([this.#hash(this.#source, range), this.#hash(this.#replica, range)]);
  }

  /** Row count and order-independent hash of `range` on `side`, computed by that server. */
  async #hash(side: Side, range: Range): Promise<{ rows: number; sum: string }> {
    const where = this.#where(side, range, 1);
    const { rows } = await side.client.query<{ n: string; h: string }>({
      text: `SELECT pg_catalog.count(*)::pg_catalog.text AS n,
                    COALESCE(pg_catalog.sum(pg_catalog.hashtextextended(${this.#rowText}, 0)), 0)::pg_catalog.text AS h
               FROM ${this.#table} AS t WHERE ${where.sql}`,
      values: where.params,
    });
    const row = rows[0] as { n: string; h: string };
    return { rows: Number(row.n), sum: row.h };
  }

  /** Keys and md5 of each row of a small range on `side`, in key order. */
  async #leaf(side: Side, range: Range): Promise<LeafRow[]> {
    const where = this.#where(side, range, 1);
    const texts = side.key.columns.map((c) => `t.${quoteIdent(c)}::pg_catalog.text`);
    const { rows } = await side.client.query<{ k: string[]; h: string }>({
      text: `SELECT ARRAY[${texts.join(', ')}] AS k, pg_catalog.md5(${this.#rowText}) AS h FROM ${this.#table} AS t WHERE ${where.sql} ORDER BY ${this.#keyList}`,
      values: where.params,
    });
    this.#fetched += rows.length;
    return rows.map((r) => ({ key: r.k, id: JSON.stringify(r.k), hash: r.h }));
  }

  /** Compares the rows of a small range by key and md5, in key order. */
  async #compareRows(range: Range): Promise<void> {
    const [sourceRows, replicaRows] = await Promise.all([this.#leaf(this.#source, range), this.#leaf(this.#replica, range)]);
    const onSource = new Map(sourceRows.map((r) => [r.id, r]));
    const onReplica = new Map(replicaRows.map((r) => [r.id, r]));
    const consumed = new Set<string>();
    let i = 0;
    let j = 0;
    // Merge in key order; a key both sides hold but meet out of step (key order not the same on
    // both servers) is still compared through the maps, so nothing is skipped.
    while (i < sourceRows.length || j < replicaRows.length) {
      const a = sourceRows[i];
      const b = replicaRows[j];
      if (b !== undefined && consumed.has(b.id)) {
        j++;
      } else if (a !== undefined && b !== undefined && a.id === b.id) {
        if (a.hash !== b.hash) await this.#record('changed', a.key);
        i++;
        j++;
      } else if (a !== undefined && !onReplica.has(a.id)) {
        await this.#record('missing', a.key);
        i++;
      } else if (b !== undefined && !onSource.has(b.id)) {
        await this.#record('extra', b.key);
        j++;
      } else if (a !== undefined) {
        if ((onReplica.get(a.id) as LeafRow).hash !== a.hash) await this.#record('changed', a.key);
        consumed.add(a.id);
        i++;
      } else {
        j++;
      }
    }
  }

  async #record(kind: RowDifference['kind'], key: readonly string[]): Promise<void> {
    if (kind === 'missing') this.#missing++;
    else if (kind === 'extra') this.#extra++;
    else this.#changed++;
    if (this.#examples.length >= this.#settings.maxExamples) return;
    const display = `(${this.#source.key.columns.join(', ')})=(${key.join(', ')})`;
    const [row, replicaRow] = await Promise.all([
      kind === 'extra' ? this.#row(this.#replica, key) : this.#row(this.#source, key),
      kind === 'changed' ? this.#row(this.#replica, key) : Promise.resolve(undefined),
    ]);
    this.#examples.push({ kind, key: display, row: row ?? '', ...(replicaRow === undefined ? {} : { replicaRow }) });
  }

  async #row(side: Side, key: readonly string[]): Promise<string | undefined> {
    const match = side.key.columns.map((c, i) => `t.${quoteIdent(c)} = $${i + 1}::${side.key.castTypes[i] as string}`).join(' AND ');
    const { rows } = await side.client.query<{ r: string }>({ text: `SELECT ${this.#rowText} AS r FROM ${this.#table} AS t WHERE ${match}`, values: [...key] });
    return rows[0]?.r;
  }
}

/** Cuts `range` at `cuts` (keys inside it, ascending) into consecutive ranges covering it. */
function splitAt(range: Range, cuts: readonly (readonly string[])[]): Range[] {
  const out: Range[] = [];
  let lo = range.lo;
  for (const cut of cuts) {
    out.push({ ...(lo ? { lo } : {}), hi: cut });
    lo = cut;
  }
  out.push({ ...(lo ? { lo } : {}), ...(range.hi ? { hi: range.hi } : {}) });
  return out;
}

// ---------------------------------------------------------------- full merge

async function fullMerge(
  source: ClientBase,
  replica: ClientBase,
  ref: TableRef,
  columns: readonly string[],
  settings: Settings,
  reason: string,
): Promise<{ difference: TableDifference; summary: TableSummary }> {
  const name = `${ref.schema}.${ref.table}`;
  const select = `SELECT r FROM (SELECT ROW(${columns.map((c) => `t.${quoteIdent(c)}`).join(', ')})::pg_catalog.text AS r FROM ${qualified(ref.schema, ref.table)} AS t) AS s ORDER BY r COLLATE "C"`;
  const a = new SortedRows(source, select, settings.fetchRows);
  const b = new SortedRows(replica, select, settings.fetchRows);
  await Promise.all([a.open(), b.open()]);
  const examples: RowDifference[] = [];
  let missing = 0;
  let extra = 0;
  let sourceRows = 0;
  let replicaRows = 0;
  let reported = 0;
  const progressEvery = Math.max(settings.fetchRows, 50_000);
  try {
    let x = await a.next();
    let y = await b.next();
    while (x !== undefined || y !== undefined) {
      if (x !== undefined && (y === undefined || byteOrder(x, y) < 0)) {
        missing++;
        sourceRows++;
        if (examples.length < settings.maxExamples) examples.push({ kind: 'missing', row: x });
        x = await a.next();
      } else if (y !== undefined && (x === undefined || byteOrder(y, x) < 0)) {
        extra++;
        replicaRows++;
        if (examples.length < settings.maxExamples) examples.push({ kind: 'extra', row: y });
        y = await b.next();
      } else {
        sourceRows++;
        replicaRows++;
        x = await a.next();
        y = await b.next();
      }
      if (sourceRows - reported >= progressEvery) {
        reported = sourceRows;
        settings.onProgress?.({ table: name, method: 'full', rowsDone: sourceRows });
      }
    }
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
  return {
    difference: { table: name, method: 'full', sourceRows, replicaRows, missing, extra, changed: 0, examples },
    summary: { table: name, method: 'full', reason, sourceRows, replicaRows, chunksCompared: 0, rowsFetched: sourceRows + replicaRows },
  };
}

/** Orders strings by their UTF-8 bytes, as PostgreSQL's COLLATE "C" does (JS `<` compares UTF-16 units). */
function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A cursor over text rows sorted by COLLATE "C", fetched `fetchRows` at a time, inside the caller's transaction. */
class SortedRows {
  readonly #client: ClientBase;
  readonly #sql: string;
  readonly #fetch: number;
  #buffer: string[] = [];
  #index = 0;
  #done = false;

  constructor(client: ClientBase, sql: string, fetch: number) {
    this.#client = client;
    this.#sql = sql;
    this.#fetch = fetch;
  }

  async open(): Promise<void> {
    await this.#client.query(`DECLARE pgfanout_verify NO SCROLL CURSOR FOR ${this.#sql}`);
  }

  async next(): Promise<string | undefined> {
    if (this.#index >= this.#buffer.length) {
      if (this.#done) return undefined;
      const { rows } = await this.#client.query<{ r: string }>(`FETCH ${this.#fetch} FROM pgfanout_verify`);
      this.#buffer = rows.map((row) => row.r);
      this.#index = 0;
      if (rows.length < this.#fetch) this.#done = true;
      if (this.#buffer.length === 0) return undefined;
    }
    return this.#buffer[this.#index++];
  }

  async close(): Promise<void> {
    await this.#client.query('CLOSE pgfanout_verify').catch(() => undefined);
  }
}

// ---------------------------------------------------------------- waiting for the replica

/** Where {@link waitForReplicaPosition} found the replica. */
export interface ReplicaAtPosition {
  readonly sourceId: string;
  /** The source's last finished (published) batch when the wait started; 0 when none. */
  readonly targetBatchId: string;
  readonly appliedBatchId: string;
}

/**
 * Waits until the replica has applied every batch the source had finished (published) when
 * this was called (`pgfanout.replica_state(source).applied_batch_id` ≥ `pgfanout.status().finished_batch_id`),
 * polling every `pollMs`; throws an {@link OpsError} `TIMEOUT` naming both positions after
 * `timeoutMs`. Neither client may be inside a transaction.
 */
export async function waitForReplicaPosition(
  source: ClientBase,
  replica: ClientBase,
  options: { readonly timeoutMs?: number; readonly pollMs?: number; readonly onWait?: (at: ReplicaAtPosition) => void } = {},
): Promise<ReplicaAtPosition> {
  const timeoutMs = positiveInteger('timeoutMs', options.timeoutMs, 300_000, 0);
  const pollMs = positiveInteger('pollMs', options.pollMs, 500);
  const { rows } = await source.query<{ id: string; finished: string | null }>(
    'SELECT pgfanout.source_id() AS id, (SELECT s.finished_batch_id::pg_catalog.text FROM pgfanout.status() AS s) AS finished',
  );
  const sourceId = rows[0]?.id as string;
  const target = BigInt(rows[0]?.finished ?? '0');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { position } = await replicaState(replica, sourceId);
    const at: ReplicaAtPosition = { sourceId, targetBatchId: String(target), appliedBatchId: position?.appliedBatchId ?? '0' };
    if (BigInt(at.appliedBatchId) >= target) return at;
    if (Date.now() >= deadline) {
      throw new OpsError(
        OPS_ERROR_CODES.timeout,
        `the replica has applied batch ${at.appliedBatchId} of source ${sourceId}; waited ${timeoutMs / 1000} s for batch ${String(target)}, which the source had published (is its applier running, or its dead-letter queue holding a batch? see pgfanout redrive)`,
      );
    }
    options.onWait?.(at);
    await sleep(pollMs);
  }
}
