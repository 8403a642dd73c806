/**
 * Small factories for the tests of pgfanout's source SQL (capture, batch protocol,
 * rotation, roles): a fresh database with the source side installed, clients that return
 * every value as the server's own text, and a reader of `pgfanout.batch_values` through
 * COPY that keeps the raw bytes (to compare re-served batches byte for byte).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { LocalPostgres } from '#local/postgres.ts';
import { quoteIdent } from '#core/pg/sql.ts';
import { installSource } from '../functions/ops/install.ts';

/** Every column comes back as the text the server sent (its output function's text). */
const RAW_TEXT: pg.CustomTypesConfig = { getTypeParser: () => (value: string) => value };

/** A client of `url` that leaves values as the server's text. */
export async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, types: RAW_TEXT });
  await client.connect();
  return client;
}

/** Creates an empty database on `server`, installs the source side, returns its URL. */
export async function sourceDatabase(server: LocalPostgres): Promise<string> {
  const name = `src_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
  const admin = await connect(server.url('postgres'));
  try {
    await admin.query(`CREATE DATABASE ${quoteIdent(name)}`);
  } finally {
    await admin.end();
  }
  const url = server.url(name);
  const client = await connect(url);
  try {
    await installSource(client);
  } finally {
    await client.end();
  }
  return url;
}

/** Runs `fn` with a new client of `url`, closing it afterwards. */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connect(url);
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A row of `pgfanout.next_batch()`, as text. */
export interface BatchRow {
  readonly batch_id: string;
  readonly prev_batch_id: string;
  readonly event_count: string;
  readonly first_event_time: string | null;
  readonly last_event_time: string | null;
}

/** A row of `pgfanout.batch_values()`, parsed from COPY text. */
export interface ValueRow {
  readonly ev_id: string;
  readonly ev_txid: string;
  readonly ev_time: string;
  readonly ev_op: string;
  readonly ev_schema: string;
  readonly ev_table: string;
  readonly image: string;
  readonly col: string | null;
  readonly value: string | null;
}

/** `pgfanout.next_batch()`: the batch to publish, or undefined when there is none. */
export async function nextBatch(client: pg.ClientBase): Promise<BatchRow | undefined> {
  const { rows } = await client.query<BatchRow>('SELECT * FROM pgfanout.next_batch()');
  return rows[0];
}

const BATCH_SETTING = 'pgfanout.test_batch_id';

/** The raw COPY text of `pgfanout.batch_values(batchId)` (COPY takes no parameters: the id goes through a setting). */
export async function batchValuesCopy(client: pg.ClientBase, batchId: string): Promise<Buffer> {
  await client.query('SELECT pg_catalog.set_config($1, $2, false)', [BATCH_SETTING, batchId]);
  const stream = client.query(
    copyTo(`COPY (SELECT * FROM pgfanout.batch_values(pg_catalog.current_setting('${BATCH_SETTING}')::pg_catalog.int8)) TO STDOUT`),
  );
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Parses COPY text format (tab-separated, `\N` for NULL, backslash escapes). */
function parseCopyText(text: string): (string | null)[][] {
  const rows: (string | null)[][] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    rows.push(line.split('\t').map((field) => (field === '\\N' ? null : unescapeCopy(field))));
  }
  return rows;
}

const ESCAPES: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };

function unescapeCopy(field: string): string {
  return field.replace(/\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))/gs, (_, octal?: string, hex?: string, other?: string) => {
    if (octal !== undefined) return String.fromCharCode(parseInt(octal, 8));
    if (hex !== undefined) return String.fromCharCode(parseInt(hex, 16));
    return ESCAPES[other as string] ?? (other as string);
  });
}

/** `pgfanout.batch_values(batchId)` as rows. */
export async function batchValues(client: pg.ClientBase, batchId: string): Promise<ValueRow[]> {
  const raw = await batchValuesCopy(client, batchId);
  // COPY sends UTF-8; octal/hex escapes never occur for valid UTF-8 text output.
  return parseCopyText(raw.toString('utf8')).map(([ev_id, ev_txid, ev_time, ev_op, ev_schema, ev_table, image, col, value]) => ({
    ev_id: ev_id as string,
    ev_txid: ev_txid as string,
    ev_time: ev_time as string,
    ev_op: ev_op as string,
    ev_schema: ev_schema as string,
    ev_table: ev_table as string,
    image: image as string,
    col: col ?? null,
    value: value ?? null,
  }));
}

/** One event of a batch, its column rows folded into images. */
export interface CapturedEvent {
  readonly id: string;
  readonly txid: string;
  readonly op: string;
  readonly schema: string;
  readonly table: string;
  /** Old identity (key columns, or the whole old row), when the event has one. */
  readonly key?: Readonly<Record<string, string | null>>;
  /** New row, when the event has one. */
  readonly row?: Readonly<Record<string, string | null>>;
}

/** Folds `batch_values` rows into events, in the order they came. */
export function foldEvents(rows: readonly ValueRow[]): CapturedEvent[] {
  const events: CapturedEvent[] = [];
  let current: { id: string; txid: string; op: string; schema: string; table: string; key?: Record<string, string | null>; row?: Record<string, string | null> } | undefined;
  for (const r of rows) {
    if (!current || current.id !== r.ev_id) {
      current = { id: r.ev_id, txid: r.ev_txid, op: r.ev_op, schema: r.ev_schema, table: r.ev_table };
      events.push(current);
    }
    if (r.image === 'k') (current.key ??= {})[r.col as string] = r.value;
    else if (r.image === 'n') (current.row ??= {})[r.col as string] = r.value;
  }
  return events;
}

/** Serves, reads and finishes the next batch; undefined when there is none. */
export async function takeBatch(client: pg.ClientBase): Promise<{ batch: BatchRow; events: CapturedEvent[]; rows: ValueRow[] } | undefined> {
  const batch = await nextBatch(client);
  if (!batch) return undefined;
  const rows = await batchValues(client, batch.batch_id);
  await client.query('SELECT pgfanout.finish_batch($1)', [batch.batch_id]);
  return { batch, events: foldEvents(rows), rows };
}

/** Every event committed so far, taking batches until none is left. */
export async function drainEvents(client: pg.ClientBase): Promise<CapturedEvent[]> {
  const events: CapturedEvent[] = [];
  for (let taken = await takeBatch(client); taken; taken = await takeBatch(client)) events.push(...taken.events);
  return events;
}

/** `schema.table` quoted for SQL text. */
export function qualified(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/**
 * A new source database on `server` with table t (id text primary key, v text) added to
 * capture; returns its URL and a connection factory whose connections are pushed on `open`
 * (the caller ends them after each test).
 */
export async function sourceWithTable(server: LocalPostgres, open: pg.Client[]): Promise<{ url: string; conn: () => Promise<pg.Client> }> {
  const url = await sourceDatabase(server);
  const conn = async () => {
    const c = await connect(url);
    open.push(c);
    return c;
  };
  const c = await conn();
  await c.query('CREATE TABLE t (id text PRIMARY KEY, v text)');
  await c.query("SELECT pgfanout.add_table('t')");
  return { url, conn };
}
