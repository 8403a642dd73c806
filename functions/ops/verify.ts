/**
 * Row-by-row comparison of tables on a source and a replica.
 *
 * Each side streams its rows as text (`ROW(cols…)::text`, columns in the source's order,
 * under identical output settings) sorted the same way through a cursor, and the two
 * sorted streams are merged: memory stays bounded by one fetch per side whatever the
 * table size. Both sides read under one REPEATABLE READ snapshot each.
 */
import type { ClientBase } from 'pg';
import { qualified, quoteIdent, setStableOutput } from './sql.ts';

export interface TableRef {
  readonly schema: string;
  readonly table: string;
}

export interface TableDifference {
  readonly table: string;
  readonly sourceRows: number;
  readonly replicaRows: number;
  /** Up to `maxExamples` rows only on the source ("missing") or only on the replica ("extra"). */
  readonly examples: readonly { readonly kind: 'missing' | 'extra'; readonly row: string }[];
  readonly missing: number;
  readonly extra: number;
}

export interface VerifyReport {
  readonly tables: number;
  readonly rowsCompared: number;
  readonly differences: readonly TableDifference[];
}

export interface VerifyOptions {
  readonly fetchRows?: number;
  readonly maxExamples?: number;
  readonly onTable?: (table: string, rows: number) => void;
}

/** The columns of a table in attnum order (dropped columns excluded). */
export async function tableColumns(client: ClientBase, ref: TableRef): Promise<string[]> {
  const { rows } = await client.query<{ attname: string }>(
    `SELECT a.attname FROM pg_catalog.pg_attribute a
       JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
       JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [ref.schema, ref.table],
  );
  if (rows.length === 0) throw new Error(`table ${ref.schema}.${ref.table} does not exist or has no columns`);
  return rows.map((r) => r.attname);
}

/** Compares every listed table; a table missing on the replica is a difference, not a crash. */
export async function verifyTables(
  source: ClientBase,
  replica: ClientBase,
  tables: readonly TableRef[],
  options: VerifyOptions = {},
): Promise<VerifyReport> {
  const differences: TableDifference[] = [];
  let rowsCompared = 0;
  for (const ref of tables) {
    const result = await compareTable(source, replica, ref, options);
    rowsCompared += result.sourceRows;
    options.onTable?.(`${ref.schema}.${ref.table}`, result.sourceRows);
    if (result.missing > 0 || result.extra > 0) differences.push(result);
  }
  return { tables: tables.length, rowsCompared, differences };
}

async function compareTable(source: ClientBase, replica: ClientBase, ref: TableRef, options: VerifyOptions): Promise<TableDifference> {
  const name = `${ref.schema}.${ref.table}`;
  const fetchRows = options.fetchRows ?? 5000;
  const maxExamples = options.maxExamples ?? 10;
  const columns = await tableColumns(source, ref);
  const replicaColumns = await tableColumns(replica, ref).catch(() => null);
  if (!replicaColumns) {
    return { table: name, sourceRows: -1, replicaRows: 0, missing: 1, extra: 0, examples: [{ kind: 'missing', row: `(table ${name} does not exist on the replica)` }] };
  }
  const absent = columns.filter((c) => !replicaColumns.includes(c));
  if (absent.length > 0) {
    return { table: name, sourceRows: -1, replicaRows: -1, missing: 1, extra: 0, examples: [{ kind: 'missing', row: `(replica lacks column(s) ${absent.map((c) => JSON.stringify(c)).join(', ')})` }] };
  }
  const select = `SELECT r FROM (SELECT ROW(${columns.map(quoteIdent).join(', ')})::text AS r FROM ${qualified(ref.schema, ref.table)}) AS t ORDER BY r COLLATE "C"`;
  const a = new SortedRows(source, select, fetchRows);
  const b = new SortedRows(replica, select, fetchRows);
  await Promise.all([a.open(), b.open()]);
  const examples: { kind: 'missing' | 'extra'; row: string }[] = [];
  let missing = 0;
  let extra = 0;
  let sourceRows = 0;
  let replicaRows = 0;
  try {
    let x = await a.next();
    let y = await b.next();
    while (x !== undefined || y !== undefined) {
      if (x !== undefined && (y === undefined || byteOrder(x, y) < 0)) {
        missing++;
        sourceRows++;
        if (examples.length < maxExamples) examples.push({ kind: 'missing', row: x });
        x = await a.next();
      } else if (y !== undefined && (x === undefined || byteOrder(y, x) < 0)) {
        extra++;
        replicaRows++;
        if (examples.length < maxExamples) examples.push({ kind: 'extra', row: y });
        y = await b.next();
      } else {
        sourceRows++;
        replicaRows++;
        x = await a.next();
        y = await b.next();
      }
    }
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
  return { table: name, sourceRows, replicaRows, missing, extra, examples };
}

/** Orders strings by their UTF-8 bytes, as PostgreSQL's COLLATE "C" does (JS `<` compares UTF-16 units). */
export function byteOrder(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A cursor over text rows sorted by COLLATE "C", fetched `fetchRows` at a time. */
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
    await this.#client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await setStableOutput(this.#client);
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
    await this.#client.query('ROLLBACK').catch(() => undefined);
  }
}
