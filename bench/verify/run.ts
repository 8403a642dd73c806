/**
 * Benchmark of `verifyTables`: `node bench/verify/run.ts [rows] [rounds]`.
 *
 * On two local PostgreSQL 18 servers (source, replica), the same keyed table of `rows` rows
 * (default 1,000,000) is created on both. Then, in the same run and alternating so both see the
 * same machine load, `rounds` times (default 3):
 *   - identical tables: the chunked comparison (the default for a keyed table) and the full
 *     sorted merge of every row (the baseline: what verify did for every table before);
 *   - the replica with a few differences (2 rows missing, 2 extra, 3 changed): both again, and
 *     both must find exactly those.
 * Reports seconds, rows/s and the baseline's time as a multiple of the chunked time, plus what
 * the chunked comparison read (ranges hashed, rows fetched). Writes results.json and results.md.
 */
import { writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { LocalPostgres } from '#local/postgres.ts';
import { verifyTables, type VerifyOptions, type VerifyReport } from '../../functions/ops/verify.ts';

const here = dirname(fileURLToPath(import.meta.url));
const rows = Number(process.argv[2] ?? 1_000_000);
const rounds = Number(process.argv[3] ?? 3);

const DDL = 'CREATE TABLE public.orders (id bigint PRIMARY KEY, customer int NOT NULL, note text, total numeric(12,2), created timestamptz NOT NULL)';
const FILL = `INSERT INTO public.orders SELECT g, g % 1000, 'order ' || g || CASE WHEN g % 10 = 0 THEN ' "gift" é' ELSE '' END, (g % 100000) / 100.0,
  '2024-01-01 00:00+00'::timestamptz + g * interval '1 second' FROM generate_series(1, $1::int) g`;
const TABLES = [{ schema: 'public', table: 'orders' }];

interface Run {
  readonly seconds: number;
  readonly report: VerifyReport;
}

async function timed(source: pg.Client, replica: pg.Client, options: VerifyOptions): Promise<Run> {
  const started = performance.now();
  const report = await verifyTables(source, replica, TABLES, options);
  return { seconds: (performance.now() - started) / 1000, report };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const [sourceServer, replicaServer] = await Promise.all([LocalPostgres.start({ major: 18 }), LocalPostgres.start({ major: 18 })]);
try {
  const source = new pg.Client(sourceServer.url());
  const replica = new pg.Client(replicaServer.url());
  await Promise.all([source.connect(), replica.connect()]);
  console.log(`creating ${rows} rows on both servers…`);
  for (const c of [source, replica]) {
    await c.query(DDL);
    await c.query(FILL, [rows]);
    await c.query('VACUUM ANALYZE public.orders');
  }
  const load = [loadavg()[0] as number];
  const measure = async (label: string, expect: { missing: number; extra: number; changed: number }) => {
    const chunked: Run[] = [];
    const full: Run[] = [];
    for (let round = 0; round < rounds; round++) {
      console.log(`${label}, round ${round + 1}: chunked…`);
      chunked.push(await timed(source, replica, {}));
      console.log(`${label}, round ${round + 1}: full merge…`);
      full.push(await timed(source, replica, { method: 'full' }));
      load.push(loadavg()[0] as number);
    }
    for (const run of [...chunked, ...full]) {
      const d = run.report.differences[0];
      const found = { missing: d?.missing ?? 0, extra: d?.extra ?? 0, changed: d?.changed ?? 0 };
      // The full merge sees a changed row as one missing and one extra.
      const wanted = run.report.summaries[0]?.method === 'full' ? { missing: expect.missing + expect.changed, extra: expect.extra + expect.changed, changed: 0 } : expect;
      if (JSON.stringify(found) !== JSON.stringify(wanted)) throw new Error(`${label}: found ${JSON.stringify(found)}, expected ${JSON.stringify(wanted)}`);
    }
    const c = median(chunked.map((r) => r.seconds));
    const f = median(full.map((r) => r.seconds));
    const summary = chunked[0]?.report.summaries[0];
    return {
      chunkedSeconds: chunked.map((r) => r.seconds),
      fullSeconds: full.map((r) => r.seconds),
      chunkedMedianSeconds: c,
      fullMedianSeconds: f,
      fullVsChunked: f / c,
      chunkedRowsPerSecond: rows / c,
      fullRowsPerSecond: rows / f,
      rangesHashed: summary?.chunksCompared,
      rowsFetched: summary?.rowsFetched,
      found: chunked[0]?.report.differences[0] ?? null,
    };
  };

  const identical = await measure('identical', { missing: 0, extra: 0, changed: 0 });
  await replica.query(`DELETE FROM public.orders WHERE id IN (17, $1::int)`, [Math.floor(rows / 2)]);
  await replica.query(`INSERT INTO public.orders VALUES ($1::int + 1, 1, 'extra', 1, now()), ($1::int + 2, 2, 'extra', 2, now())`, [rows]);
  await replica.query(`UPDATE public.orders SET note = note || '!' WHERE id IN (1, $1::int, $2::int)`, [Math.floor(rows / 3), rows]);
  const differing = await measure('7 differences', { missing: 2, extra: 2, changed: 3 });
  await Promise.all([source.end(), replica.end()]);

  const results = {
    date: new Date().toISOString(),
    rows,
    rounds,
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '?', memoryBytes: totalmem(), node: process.version, loadAverage1m: load },
    settings: { chunkRows: 10_000, leafRows: 1000, fanout: 10, fullMergeFetchRows: 5000 },
    identical: { ...identical, found: undefined },
    differing: { ...differing, found: differing.found && { missing: differing.found.missing, extra: differing.found.extra, changed: differing.found.changed, examples: differing.found.examples } },
  };
  await writeFile(join(here, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const s = (x: number) => x.toFixed(1);
  const r = (x: number) => Math.round(x).toLocaleString('en-US');
  const row = (label: string, m: typeof identical) =>
    `| ${label} | ${s(m.chunkedMedianSeconds)} (${m.chunkedSeconds.map(s).join(', ')}) | ${r(m.chunkedRowsPerSecond)} | ${s(m.fullMedianSeconds)} (${m.fullSeconds.map(s).join(', ')}) | ${r(m.fullRowsPerSecond)} | ${m.fullVsChunked.toFixed(2)} | ${m.rangesHashed} | ${m.rowsFetched} |`;
  const md = `# Verify benchmark

\`node bench/verify/run.ts\` (${rows.toLocaleString('en-US')} rows, ${rounds} rounds), ${results.date}, ${results.machine.cpus} × ${results.machine.cpuModel}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, PostgreSQL 18 (two local servers: source and replica). Shared machine: other work ran at the same time (1-minute load average ${load.map((x) => x.toFixed(1)).join(' → ')}), so compare the ratio of the two methods, measured alternately in the same run, rather than absolute times.

Table: \`public.orders (id bigint PRIMARY KEY, customer int, note text, total numeric(12,2), created timestamptz)\`. Chunked: ranges of 10,000 rows, differing ranges cut in 10 down to 1,000 rows, then compared row by row. Full merge: every row's text sorted by bytes on each server and merged in the client (what verify did before, and still does for tables without a key).

| replica | chunked s (median; each round) | rows/s | full merge s (median; each round) | rows/s | full ÷ chunked | ranges hashed | rows fetched |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
${row('identical', identical)}
${row('2 missing, 2 extra, 3 changed rows', differing)}

- Both methods found exactly the differences made (the full merge sees a changed row as one missing and one extra); the chunked comparison reports them by key: ${(differing.found?.examples ?? []).map((e) => `${e.kind} ${e.key}`).join(', ')}.
- "rows fetched" is how many (key, md5) pairs the chunked comparison read to find the differing rows, from both sides; the full merge moves every row of both sides to the client.
`;
  await writeFile(join(here, 'results.md'), md);
  console.log(md);
} finally {
  await Promise.all([sourceServer.stop(), replicaServer.stop()]);
}
