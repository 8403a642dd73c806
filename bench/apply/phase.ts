/**
 * One measured phase of the apply benchmark, run in its own process (started by run.ts with
 * --expose-gc) so that its peak RSS and heap are its own:
 *
 *   phase.ts encode <sourceUrl> <sourceId> <messagesDir> [maxMessageBytes]
 *   phase.ts apply <replicaUrl> <messagesDir>
 *   phase.ts copy <sourceUrl> <replicaUrl> <table>      (baseline: COPY TO piped into COPY FROM)
 *   phase.ts read <sourceUrl>                           (baseline: the open batch's COPY, bytes discarded)
 *
 * Messages go through a folder, one file per message, so that neither phase ever holds more
 * than one of them. Prints one JSON line with the phase's measurements.
 */
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { applyMessage } from '#core/replica';
import { encodeBatch, readBatch } from '#core/source';
import { READ_BATCH_SETTING, READ_BATCH_SQL } from '#core/source/reader.ts';

/** Peak memory seen by sampling during a phase. */
class MemoryPeak {
  readonly baseline = process.memoryUsage();
  peakHeap = 0;
  peakRss = 0;
  /** Peak of heap + external + array buffers right after a full GC: memory actually held. */
  peakLive = 0;
  readonly #timer: NodeJS.Timeout;
  /** With `liveEveryMs`, a full GC also runs that often, so `peakLive` covers long messages too. */
  constructor(liveEveryMs?: number) {
    let last = performance.now();
    this.#timer = setInterval(() => {
      if (liveEveryMs !== undefined && performance.now() - last >= liveEveryMs) {
        last = performance.now();
        this.live();
      } else this.sample();
    }, 5);
    this.sample();
  }
  sample(): void {
    const m = process.memoryUsage();
    this.peakHeap = Math.max(this.peakHeap, m.heapUsed + m.external + m.arrayBuffers);
    this.peakRss = Math.max(this.peakRss, m.rss);
  }
  /** Collects garbage, then records what is still held (called once per message). */
  live(): void {
    gc();
    const m = process.memoryUsage();
    this.peakLive = Math.max(this.peakLive, m.heapUsed + m.external + m.arrayBuffers);
    this.sample();
  }
  stop(): { heapGrowthBytes: number; liveGrowthBytes: number; peakHeapBytes: number; peakRssBytes: number; maxRssBytes: number } {
    clearInterval(this.#timer);
    this.sample();
    const base = this.baseline.heapUsed + this.baseline.external + this.baseline.arrayBuffers;
    return {
      heapGrowthBytes: this.peakHeap - base,
      liveGrowthBytes: this.peakLive - base,
      peakHeapBytes: this.peakHeap,
      peakRssBytes: this.peakRss,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
    };
  }
}

/** `PGFANOUT_BENCH_LIVE_MS`: also collect garbage and measure held memory this often (slows the phase). */
const LIVE_EVERY_MS = process.env.PGFANOUT_BENCH_LIVE_MS ? Number(process.env.PGFANOUT_BENCH_LIVE_MS) : undefined;

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

async function encode(url: string, sourceId: string, dir: string, maxMessageBytes: number | undefined): Promise<object> {
  const client = new pg.Client(url);
  await client.connect();
  const { rows } = await client.query<{ batch_id: string; prev_batch_id: string; event_count: string }>(
    'SELECT batch_id::text, prev_batch_id::text, event_count::text FROM pgfanout.next_batch()',
  );
  const batch = rows[0];
  if (!batch) throw new Error('no batch to encode');
  await mkdir(dir, { recursive: true });
  gc();
  const memory = new MemoryPeak(LIVE_EVERY_MS);
  const started = performance.now();
  let messages = 0;
  let bytes = 0;
  let changes = 0;
  for await (const message of encodeBatch(
    { sourceId, batchId: batch.batch_id, prevBatchId: batch.prev_batch_id, eventCount: batch.event_count },
    readBatch(client, batch.batch_id),
    maxMessageBytes ? { maxMessageBytes } : {},
  )) {
    messages++;
    bytes += message.bytes;
    changes += message.changes;
    memory.live();
    await writeFile(join(dir, `${String(message.part).padStart(8, '0')}.json`), message.body);
  }
  const seconds = (performance.now() - started) / 1000;
  const mem = memory.stop();
  await client.query('SELECT pgfanout.finish_batch($1)', [batch.batch_id]);
  await client.end();
  return { phase: 'encode', batchId: batch.batch_id, changes, messages, bytes, seconds, changesPerSecond: changes / seconds, ...mem };
}

async function apply(url: string, dir: string): Promise<object> {
  const client = new pg.Client(url);
  await client.connect();
  const files = (await readdir(dir)).sort();
  gc();
  const memory = new MemoryPeak(LIVE_EVERY_MS);
  const started = performance.now();
  let changes = 0;
  let messages = 0;
  const outcomes: Record<string, number> = {};
  for (const file of files) {
    const body = await readFile(join(dir, file), 'utf8');
    const result = await applyMessage(client, body, { replicationRole: 'auto' });
    memory.live();
    messages++;
    changes += result.changes;
    outcomes[result.outcome] = (outcomes[result.outcome] ?? 0) + 1;
  }
  const seconds = (performance.now() - started) / 1000;
  const mem = memory.stop();
  await client.end();
  return { phase: 'apply', changes, messages, outcomes, seconds, changesPerSecond: changes / seconds, ...mem };
}

async function copy(sourceUrl: string, replicaUrl: string, table: string): Promise<object> {
  const source = new pg.Client(sourceUrl);
  const replica = new pg.Client(replicaUrl);
  await Promise.all([source.connect(), replica.connect()]);
  const { rows } = await source.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`);
  await replica.query(`TRUNCATE ${table}`);
  const started = performance.now();
  await replica.query('BEGIN');
  await pipeline(source.query(copyTo(`COPY ${table} TO STDOUT`)), replica.query(copyFrom(`COPY ${table} FROM STDIN`)));
  await replica.query('COMMIT');
  const seconds = (performance.now() - started) / 1000;
  await replica.query(`TRUNCATE ${table}`);
  await Promise.all([source.end(), replica.end()]);
  const n = Number(rows[0]?.n);
  return { phase: 'copy', rows: n, seconds, rowsPerSecond: n / seconds };
}

async function read(url: string): Promise<object> {
  const client = new pg.Client(url);
  await client.connect();
  const { rows } = await client.query<{ batch_id: string }>('SELECT batch_id::text FROM pgfanout.next_batch()');
  const batch = rows[0];
  if (!batch) throw new Error('no batch to read');
  await client.query('SELECT pg_catalog.set_config($1, $2, false)', [READ_BATCH_SETTING, batch.batch_id]);
  const started = performance.now();
  let bytes = 0;
  for await (const chunk of client.query(copyTo(READ_BATCH_SQL)) as AsyncIterable<Buffer>) bytes += chunk.length;
  const seconds = (performance.now() - started) / 1000;
  await client.end();
  return { phase: 'read', batchId: batch.batch_id, bytes, seconds };
}

const [phase, ...args] = process.argv.slice(2);
let result: object;
if (phase === 'encode') result = await encode(args[0] as string, args[1] as string, args[2] as string, args[3] ? Number(args[3]) : undefined);
else if (phase === 'apply') result = await apply(args[0] as string, args[1] as string);
else if (phase === 'read') result = await read(args[0] as string);
else if (phase === 'copy') result = await copy(args[0] as string, args[1] as string, args[2] as string);
else throw new Error(`unknown phase ${String(phase)}; expected encode, apply, read or copy`);
process.stdout.write(`${JSON.stringify(result)}\n`);
