/**
 * Benchmark of the core's encode and apply paths: `node bench/apply/run.ts [rows]`.
 *
 * On two local PostgreSQL 18 servers (source, replica), one source transaction inserts
 * `rows` rows (default 1,000,000) into a captured table; then, each in its own process:
 *   - encode: next_batch → readBatch (COPY) → encodeBatch, messages written to a file;
 *   - apply: every message applied to the replica with applyMessage;
 *   - baseline, in the same run: the table copied source → replica with COPY TO piped into
 *     COPY FROM (the fastest way PostgreSQL moves those rows), so throughput is also reported as
 *     a ratio that does not depend on the machine;
 * and the same encode and apply for one 100 MB value, to show memory stays bounded.
 * Writes results.json and results.md beside this file.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, totalmem, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { installReplica, installSource } from '#ops/install.ts';
import { qualified as quoteTable } from '#core/pg/sql.ts';
import { LocalPostgres } from '#local/postgres.ts';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const rows = Number(process.argv[2] ?? 1_000_000);
const BIG_VALUE_MB = 100;
/** Every phase runs with a V8 heap this small: a phase that held a batch or a value whole would die. */
const HEAP_LIMIT_MB = 64;
/** In the 100 MB value phases, held memory is also measured after a full GC this often. */
const LIVE_SAMPLE_MS = 100;

const TABLE_DDL = `
CREATE TABLE public.orders (id bigint PRIMARY KEY, customer int NOT NULL, note text, total numeric(12,2), created timestamptz NOT NULL);
CREATE TABLE public.blobs (id int PRIMARY KEY, body text);`;
const ORDERS = quoteTable('public', 'orders');
const BLOBS = quoteTable('public', 'blobs');

async function phase(args: string[], liveEveryMs?: number): Promise<Record<string, unknown>> {
  const env = { ...process.env, ...(liveEveryMs ? { PGFANOUT_BENCH_LIVE_MS: String(liveEveryMs) } : {}) };
  const { stdout } = await run(process.execPath, ['--expose-gc', `--max-old-space-size=${HEAP_LIMIT_MB}`, join(here, 'phase.ts'), ...args], {
    maxBuffer: 16 * 1024 * 1024,
    cwd: join(here, '..', '..'),
    env,
  });
  return JSON.parse(stdout.trim().split('\n').at(-1) as string) as Record<string, unknown>;
}

const settings = { max_wal_size: '8GB', checkpoint_timeout: '30min' };
const [source, replica] = await Promise.all([LocalPostgres.start({ major: 18, settings }), LocalPostgres.start({ major: 18, settings })]);
const work = await mkdtemp(join(tmpdir(), 'pgfanout-bench-'));
try {
  const src = new pg.Client(source.url());
  const rep = new pg.Client(replica.url());
  await Promise.all([src.connect(), rep.connect()]);
  await installSource(src);
  await installReplica(rep);
  await src.query(TABLE_DDL);
  await rep.query(TABLE_DDL);
  await src.query(`SELECT pgfanout.add_table($1::regclass)`, [ORDERS]);
  await src.query(`SELECT pgfanout.add_table($1::regclass)`, [BLOBS]);
  const sourceId = (await src.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]?.id as string;

  console.log(`inserting ${rows} rows in one transaction on the source…`);
  let started = performance.now();
  await src.query(
    `INSERT INTO ${ORDERS} SELECT g, g % 1000, 'order ' || g || CASE WHEN g % 10 = 0 THEN ' "gift" é' ELSE '' END, (g % 100000) / 100.0, '2024-01-01 00:00+00'::timestamptz + g * interval '1 second' FROM generate_series(1, $1::int) g`,
    [rows],
  );
  const captureSeconds = (performance.now() - started) / 1000;

  console.log('baseline: COPY source → replica…');
  const copy = await phase(['copy', source.url(), replica.url(), ORDERS]);
  console.log('baseline: the batch COPY alone…');
  const read = await phase(['read', source.url()]);
  console.log('encode…');
  const rowsFile = join(work, 'rows');
  const encode = await phase(['encode', source.url(), sourceId, rowsFile]);
    console.log('apply…');
  const apply = await phase(['apply', replica.url(), rowsFile]);
  started = performance.now();
  const check = await Promise.all(
    [src, rep].map((c) => c.query<{ n: string; h: string }>(`SELECT count(*)::text AS n, md5(string_agg(t::text, ',' ORDER BY id)) AS h FROM ${ORDERS} AS t`)),
  );
  const same = check[0]?.rows[0]?.n === check[1]?.rows[0]?.n && check[0]?.rows[0]?.h === check[1]?.rows[0]?.h;
  if (!same) throw new Error(`replica differs from source after apply: ${JSON.stringify(check.map((c) => c.rows[0]))}`);
  const compareSeconds = (performance.now() - started) / 1000;

  console.log(`one ${BIG_VALUE_MB} MB value…`);
  await src.query(`INSERT INTO ${BLOBS} VALUES (1, repeat('pgfanout é "\\ 😀' || chr(10), $1::int))`, [Math.floor((BIG_VALUE_MB * 1024 * 1024) / 21)]);
  const bigFile = join(work, 'big');
  const bigEncode = await phase(['encode', source.url(), sourceId, bigFile], LIVE_SAMPLE_MS);
  const bigApply = await phase(['apply', replica.url(), bigFile], LIVE_SAMPLE_MS);
  const bigCheck = await Promise.all([src, rep].map((c) => c.query<{ h: string }>(`SELECT md5(body) AS h, octet_length(body) AS n FROM ${BLOBS} WHERE id = 1`)));
  if (bigCheck[0]?.rows[0]?.h !== bigCheck[1]?.rows[0]?.h) throw new Error('the 100 MB value differs on the replica');
  const bigValueBytes = Number((bigCheck[0]?.rows[0] as unknown as { n: number }).n);
  await Promise.all([src.end(), rep.end()]);

  const perMillion = (n: number) => Math.round((n * 1_000_000) / rows);
  const results = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryBytes: totalmem(), node: process.version, postgres: 18 },
    rows,
    captureSeconds,
    baselineCopy: copy,
    baselineBatchRead: read,
    encode,
    apply,
    verifySeconds: compareSeconds,
    messagesPerMillionChanges: perMillion(Number(encode.messages)),
    bytesPerMillionChanges: perMillion(Number(encode.bytes)),
    encodeVsCopy: Number(encode.changesPerSecond) / Number(copy.rowsPerSecond),
    encodeVsBatchRead: Number(read.seconds) / Number(encode.seconds),
    applyVsCopy: Number(apply.changesPerSecond) / Number(copy.rowsPerSecond),
    bigValue: { bytes: bigValueBytes, encode: bigEncode, apply: bigApply },
  };
  await writeFile(join(here, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const mb = (n: unknown) => `${(Number(n) / 1024 / 1024).toFixed(1)} MB`;
  const rate = (n: unknown) => Math.round(Number(n)).toLocaleString('en-US');
  const md = `# Apply benchmark

\`node bench/apply/run.ts\` (${rows.toLocaleString('en-US')} rows), ${results.date}, ${results.machine.cpus} × ${results.machine.cpuModel}, ${mb(results.machine.memoryBytes)}, Node ${process.version}, PostgreSQL 18 (two local servers). Shared machine: other work ran at the same time, so compare the ratios to the baseline measured in the same run rather than absolute rates.

## One source transaction of ${rows.toLocaleString('en-US')} inserted rows (5 columns)

| phase | seconds | changes/s | vs. baseline COPY | peak RSS | peak heap growth | peak live growth |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
| baseline: COPY TO → COPY FROM (same rows, same run) | ${Number(copy.seconds).toFixed(1)} | ${rate(copy.rowsPerSecond)} | 1.00 | | | |
| baseline: the batch's COPY (batch_values) alone, bytes discarded | ${Number(read.seconds).toFixed(1)} | ${rate(rows / Number(read.seconds))} | ${(rows / Number(read.seconds) / Number(copy.rowsPerSecond)).toFixed(2)} | | | |
| encode (next_batch, readBatch over COPY, encodeBatch) | ${Number(encode.seconds).toFixed(1)} | ${rate(encode.changesPerSecond)} | ${results.encodeVsCopy.toFixed(2)} | ${mb(encode.maxRssBytes)} | ${mb(encode.heapGrowthBytes)} | ${mb(encode.liveGrowthBytes)} |
| apply (applyMessage per message, staged parts, final part applies) | ${Number(apply.seconds).toFixed(1)} | ${rate(apply.changesPerSecond)} | ${results.applyVsCopy.toFixed(2)} | ${mb(apply.maxRssBytes)} | ${mb(apply.heapGrowthBytes)} | ${mb(apply.liveGrowthBytes)} |

- Of the encode time, ${(results.encodeVsBatchRead * 100).toFixed(0)} % is the source producing the batch's COPY (${mb(read.bytes)} of COPY text for ${rows.toLocaleString('en-US')} changes); the rest is parsing and encoding.
- Messages per million changes: ${rate(results.messagesPerMillionChanges)}; bytes per million changes: ${mb(results.bytesPerMillionChanges)} (limit 262,144 bytes per message).
- Apply outcomes: ${JSON.stringify(apply.outcomes)} — the whole transaction is one batch, so every part but the last is staged and the last applies all of it in one replica transaction.
- Replica verified equal to the source (row count and md5 of every row's text) after apply.
- Capturing the rows on the source (trigger into the event log) took ${captureSeconds.toFixed(1)} s (not part of the pipeline measured here).

## One ${mb(bigValueBytes)} value

| phase | seconds | messages | peak RSS | peak heap growth | peak live growth |
| --- | ---: | ---: | ---: | ---: | ---: |
| encode | ${Number(bigEncode.seconds).toFixed(1)} | ${rate(bigEncode.messages)} | ${mb(bigEncode.maxRssBytes)} | ${mb(bigEncode.heapGrowthBytes)} | ${mb(bigEncode.liveGrowthBytes)} |
| apply | ${Number(bigApply.seconds).toFixed(1)} | ${rate(bigApply.messages)} | ${mb(bigApply.maxRssBytes)} | ${mb(bigApply.heapGrowthBytes)} | ${mb(bigApply.liveGrowthBytes)} |

Every phase ran in its own Node process started with \`--max-old-space-size=${HEAP_LIMIT_MB}\`: a phase that held the batch or the value whole could not have finished. Peak heap growth is heap + external + array buffers (garbage included) above the level at the start of the phase, sampled every 5 ms; peak live growth is the same measured right after a full garbage collection at every message (and, in the 100 MB value phases, also every ${LIVE_SAMPLE_MS} ms, including inside the final part's apply), i.e. what the phase actually holds; peak RSS is the phase process's maximum resident set (it includes Node itself, about 50–60 MB).
`;
  await writeFile(join(here, 'results.md'), md);
  console.log(md);
} finally {
  await rm(work, { recursive: true, force: true });
  await Promise.all([source.stop(), replica.stop()]);
}
