/**
 * pgfanout next to PostgreSQL's native logical replication, in one run on one workload.
 *
 * One source server carries both a publication (native, to its own subscriber server)
 * and pgfanout capture (to two replica servers through the local SNS/SQS endpoint, with
 * the publisher and each applier as their own processes). Every system replicates the
 * same tables at the same time, so each sees exactly the same write stream:
 *
 *   sustained   pgbench TPC-B at full speed for DURATION s; a heartbeat row on the source
 *               is stamped every 100 ms and read on every replica every 100 ms: lag =
 *               replica clock − stamp (one machine, one clock); p50/p99, and catch-up
 *               time after the load stops.
 *   bulk        one transaction inserting 1,000,000 rows: time from commit until the last
 *               row is visible on each replica → changes/s, and the ratio to native.
 *   idle        single-row commits, one every 100 ms: commit → visible latency p50/p99.
 *   memory      peak RSS (VmHWM) of the publisher and applier processes.
 *   volume      messages and bytes published per million changes, and the AWS list-price
 *               cost of that for 3 replicas.
 *
 * Usage: node bench/pipeline/run.ts [--duration 60] [--bulk-rows 1000000] [--idle-samples 100]
 * Writes bench/pipeline/results.json, results.md and lag.svg.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { APPLIER_ENV } from '#core/config.ts';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { LocalPostgres } from '#local/postgres.ts';
import { pgbench } from '#local/workload.ts';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '60' },
    'bulk-rows': { type: 'string', default: '1000000' },
    'idle-samples': { type: 'string', default: '100' },
  },
});
const DURATION = Number(values.duration);
const BULK_ROWS = Number(values['bulk-rows']);
const IDLE_SAMPLES = Number(values['idle-samples']);

const TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history', 'bench_heartbeat', 'bench_bulk', 'bench_idle'];
const EXTRA_SCHEMA = `
CREATE TABLE IF NOT EXISTS bench_heartbeat (id int PRIMARY KEY, at timestamptz NOT NULL);
CREATE TABLE IF NOT EXISTS bench_bulk (id bigint PRIMARY KEY, payload text NOT NULL);
CREATE TABLE IF NOT EXISTS bench_idle (id bigint PRIMARY KEY, at timestamptz NOT NULL);`;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function peakRssMiB(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  const settings = { wal_level: 'logical', max_wal_senders: 10, max_replication_slots: 10, synchronous_commit: 'on' };
  const pipeline = await Pipeline.start({ startPublisher: false, tickMs: 1000 });
  const source = pipeline.sourceServer as LocalPostgres;
  // The pipeline's source was started without wal_level=logical: set it and restart.
  await withClient(pipeline.sourceUrl, async (c) => {
    for (const [k, v] of Object.entries(settings)) await c.query(`SELECT set_config($1, $2, false)`, [k, String(v)]).catch(() => undefined);
    await c.query(`ALTER SYSTEM SET wal_level = 'logical'`);
  });
  await source.halt('fast');
  await source.restart();
  const native = await LocalPostgres.start({ major: source.major });
  const appliers: ChildProcess[] = [];
  const results: Record<string, unknown> = {
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, postgres: source.major },
    parameters: { durationSeconds: DURATION, bulkRows: BULK_ROWS, idleSamples: IDLE_SAMPLES, pgbench: 'TPC-B scale 10, 4 clients, 2 threads' },
  };
  try {
    // Same schema everywhere; data loaded after capture and the subscription start, so every system sees it.
    for (const url of [pipeline.sourceUrl, ...pipeline.replicas.map((r) => r.url), native.url()]) {
      await pgbench(url, ['-i', '-I', 'dtp', '-s', '10']);
      await withClient(url, (c) => c.query(EXTRA_SCHEMA));
    }
    await withClient(pipeline.sourceUrl, async (c) => {
      for (const t of TABLES) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
      await c.query(`CREATE PUBLICATION bench_pub FOR TABLE ${TABLES.join(', ')}`);
    });
    await withClient(native.url(), (c) =>
      c.query(`CREATE SUBSCRIPTION bench_sub CONNECTION '${pipeline.sourceUrl.replace(/'/g, "''")}' PUBLICATION bench_pub WITH (copy_data = false)`),
    );
    pipeline.startPublisher();
    for (const r of pipeline.replicas) {
      await r.stopRunner();
      await r.handler.applier.close();
      const child = spawn(process.execPath, [here('../../local/applier-process.ts')], {
        env: {
          ...process.env,
          [APPLIER_ENV.REPLICA_NAME]: r.name,
          [APPLIER_ENV.REPLICA_URL]: r.url,
          [APPLIER_ENV.SOURCE_IDS]: pipeline.sourceId,
          [APPLIER_ENV.SIGNING_KEY_SECRET]: pipeline.signingKeySecret,
          PGFANOUT_QUEUE_URL: r.queueUrl,
          AWS_ENDPOINT_URL: pipeline.endpointUrl,
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: 'test',
          AWS_SECRET_ACCESS_KEY: 'test',
          POWERTOOLS_METRICS_DISABLED: 'true',
          POWERTOOLS_LOG_LEVEL: 'WARN',
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      appliers.push(child);
    }
    const targets = [
      ...pipeline.replicas.map((r) => ({ name: `pgfanout ${r.name}`, url: r.url })),
      { name: 'native', url: native.url() },
    ];
    console.log('loading pgbench data (captured and replicated by both systems)…');
    await pgbench(pipeline.sourceUrl, ['-i', '-I', 'g', '-s', '10']);
    await withClient(pipeline.sourceUrl, (c) => c.query(`INSERT INTO bench_heartbeat VALUES (1, clock_timestamp())`));
    await waitAllSee(targets, `SELECT count(*) = 1000000 AS ok FROM pgbench_accounts`, 900_000);
    console.log('initial data replicated everywhere');

    const h0 = await pipeline.publisherHealth();
    results.sustained = await sustained(pipeline.sourceUrl, targets);
    const h1 = await pipeline.publisherHealth();
    results.bulk = await bulk(pipeline.sourceUrl, targets);
    const h2 = await pipeline.publisherHealth();
    // Lambda time per million changes: the replicas kept up with the sustained load, so its apply rate is at least the
    // source's change rate; the bulk apply rate is measured directly (commit → visible).
    const sustainedRate = Math.max(1, ((results.sustained as Json).tps as number) * 4);
    const bulkRate = Math.min(...Object.entries(results.bulk as Json).filter(([n]) => n !== 'native').map(([, v]) => (v as Json).applyChangesPerSecondAfterCommit as number));
    results.volume = {
      sustained: volume(h0, h1, 1e6 / sustainedRate),
      bulk: volume(h1, h2, 1e6 / bulkRate),
    };
    results.idle = await idle(pipeline.sourceUrl, targets);
    results.memory = {
      publisherPeakRssMiB: peakRssMiB(pipeline.publisher?.pid),
      applierPeakRssMiB: appliers.map((a) => peakRssMiB(a.pid)),
    };
  } finally {
    for (const a of appliers) a.kill('SIGTERM');
    await native.stop();
    await pipeline.stop();
  }
  writeFileSync(here('results.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(here('results.md'), markdown(results));
  console.log(JSON.stringify(results, null, 2));
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

function markdown(r: Json): string {
  const f = (n: unknown, d = 2) => (typeof n === 'number' && Number.isFinite(n) ? n.toFixed(d) : String(n));
  const sys = Object.keys(r.sustained?.systems ?? {});
  const lines = [
    '# Pipeline benchmark: pgfanout next to native logical replication',
    '',
    `\`node bench/pipeline/run.ts --duration ${r.parameters.durationSeconds} --bulk-rows ${r.parameters.bulkRows} --idle-samples ${r.parameters.idleSamples}\`, ` +
      `${new Date().toISOString()}, ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memoryGiB} GiB, Node ${r.machine.node}, PostgreSQL ${r.machine.postgres}. ` +
      'One source server carries both a publication (to a native subscriber server) and pgfanout capture (to two replica servers through the local SNS/SQS endpoint, publisher and appliers as their own processes), so both systems replicate the same write stream at the same time. Lag is read from a heartbeat row stamped every 100 ms. Shared machine: compare pgfanout with native in the same run.',
    '',
    `## Sustained: pgbench TPC-B scale 10, 4 clients, ${r.parameters.durationSeconds} s at full speed (${f(r.sustained?.tps, 0)} TPS with capture on)`,
    '',
    '| system | lag p50 (s) | lag p99 (s) | lag max (s) | catch-up after load (s) |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...sys.map((n) => { const x = r.sustained.systems[n]; return `| ${n} | ${f(x.lagP50Seconds)} | ${f(x.lagP99Seconds)} | ${f(x.lagMaxSeconds)} | ${f(x.catchUpSeconds)} |`; }),
    '',
    '![lag over time](lag.svg)',
    '',
    `## Bulk: one transaction of ${r.parameters.bulkRows} inserted rows, commit → last row visible`,
    '',
    '| system | INSERT on the source (s) | commit → visible (s) | start → visible (s) | changes/s (start → visible) | ratio to native | apply changes/s after commit |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...Object.entries(r.bulk ?? {}).map(([n, x]) => { const v = x as Json; return `| ${n} | ${f(v.sourceInsertSeconds)} | ${f(v.commitToVisibleSeconds)} | ${f(v.startToVisibleSeconds)} | ${f(v.changesPerSecond, 0)} | ${f(v.ratioToNative)} | ${f(v.applyChangesPerSecondAfterCommit, 0)} |`; }),
    '',
    'Native logical replication (PostgreSQL 16+) streams a large transaction to the subscriber while it runs, so its commit → visible is nearly instant; pgfanout captures inside the source transaction (the source INSERT takes longer with capture on, for both systems alike) and ships the batch after the commit. The ratio compares start → visible.',
    '',
    `## Idle: ${r.parameters.idleSamples} single-row commits, commit → visible`,
    '',
    '| system | p50 (ms) | p99 (ms) |',
    '| --- | ---: | ---: |',
    ...Object.entries(r.idle ?? {}).map(([n, x]) => { const v = x as Json; return `| ${n} | ${f(v.p50Ms, 0)} | ${f(v.p99Ms, 0)} |`; }),
    '',
    '## Memory (peak RSS, whole process)',
    '',
    `publisher ${f(r.memory?.publisherPeakRssMiB, 0)} MiB; appliers ${(r.memory?.applierPeakRssMiB ?? []).map((m: number) => `${f(m, 0)} MiB`).join(', ')}`,
    '',
    '## Volume and AWS cost per million changes (3 replicas)',
    '',
    '| workload | messages | MB | cost, typical (USD) | cost, worst case (USD) |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...Object.entries(r.volume ?? {}).map(([n, x]) => { const v = x as Json; return `| ${n} | ${f(v.perMillionChanges.messages, 0)} | ${f(v.perMillionChanges.bytes / 1e6, 1)} | ${f(v.costPerMillionChangesUsd3Replicas.typical.total, 4)} | ${f(v.costPerMillionChangesUsd3Replicas.worstCase.total, 4)} |`; }),
    '',
    `Typical: ${(Object.values(r.volume ?? {})[0] as Json)?.costPerMillionChangesUsd3Replicas?.typical?.assumptions ?? ''}. Worst case: one message per receive and invocation, at least 100 ms of 1 GB Lambda time per message. Prices: PRICES in \`bench/pipeline/run.ts\` (us-east-1 list prices; check the pricing pages).`,
    '',
  ];
  return lines.join('\n');
}

/** Messages and bytes the publisher sent per million changes between two health reports, and what that costs. */
function volume(before: Record<string, unknown> | undefined, after: Record<string, unknown> | undefined, lambdaSecondsPerMillion: number) {
  const d = (k: string) => Number(after?.[k] ?? Number.NaN) - Number(before?.[k] ?? Number.NaN);
  const events = d('eventsPublished');
  const messages = d('messagesPublished');
  const bytes = d('bytesPublished');
  const perMillion = { messages: (messages / events) * 1e6, bytes: (bytes / events) * 1e6 };
  return { events, messages, bytes, perMillionChanges: perMillion, costPerMillionChangesUsd3Replicas: awsCost(perMillion.messages, perMillion.bytes, 3, lambdaSecondsPerMillion) };
}

/**
 * AWS list prices (us-east-1) used for the cost estimate; check the pricing pages before relying on them.
 * SNS FIFO: publish $0.30 per million requests + $0.017 per GB published; delivery to SQS FIFO $0.01 per
 * million + $0.001 per GB. SQS FIFO: $0.50 per million requests; every 64 KiB of a request's payload is
 * billed as one request. Lambda (arm64): $0.20 per million requests + $0.0000133334 per GB-second.
 */
const PRICES = {
  snsPublishPerMillion: 0.3,
  snsPublishPerGb: 0.017,
  snsDeliveryPerMillion: 0.01,
  snsDeliveryPerGb: 0.001,
  sqsPerMillion: 0.5,
  lambdaPerMillion: 0.2,
  lambdaPerGbSecond: 0.0000133334,
};

function awsCost(messages: number, bytes: number, replicas: number, lambdaSecondsPerMillion: number) {
  const chunks = (b: number) => Math.ceil(b / 65_536);
  const requestsPerMessage = chunks(bytes / messages);
  const gb = bytes / 1e9;
  const publish = (messages * requestsPerMessage * PRICES.snsPublishPerMillion) / 1e6 + gb * PRICES.snsPublishPerGb;
  const delivery = replicas * ((messages * PRICES.snsDeliveryPerMillion) / 1e6 + gb * PRICES.snsDeliveryPerGb);
  const scenario = (perReceive: number, lambdaSeconds: number) => {
    // Per replica: the SQS send by SNS per message, and one receive and one delete request per `perReceive` messages.
    const sqs = replicas * ((messages * requestsPerMessage * (1 + 2 / perReceive) * PRICES.sqsPerMillion) / 1e6);
    const lambda = replicas * ((messages / perReceive) * PRICES.lambdaPerMillion / 1e6 + lambdaSeconds * 1 * PRICES.lambdaPerGbSecond);
    return { publish, delivery, sqs, lambda, total: publish + delivery + sqs + lambda };
  };
  return {
    // Under load Lambda receives full batches of 10; duration from the apply rate measured here, at 1 GB.
    typical: { ...scenario(10, lambdaSecondsPerMillion), assumptions: `batches of 10 messages per receive and invocation; ${Math.round(lambdaSecondsPerMillion)} s of 1 GB Lambda time per million changes and replica` },
    worstCase: { ...scenario(1, Math.max(lambdaSecondsPerMillion, (messages * 0.1))), assumptions: 'one message per receive and invocation, at least 100 ms of 1 GB Lambda time per message' },
  };
}

async function waitAllSee(targets: { name: string; url: string }[], sql: string, timeoutMs: number): Promise<Record<string, number>> {
  const started = Date.now();
  const seenAt: Record<string, number> = {};
  const clients = await Promise.all(targets.map(async (t) => { const c = new pg.Client(t.url); await c.connect(); return c; }));
  try {
    while (Object.keys(seenAt).length < targets.length) {
      if (Date.now() - started > timeoutMs) throw new Error(`not everyone saw "${sql}" within ${timeoutMs} ms: ${JSON.stringify(seenAt)}`);
      await Promise.all(targets.map(async (t, i) => {
        if (seenAt[t.name] !== undefined) return;
        const { rows } = await (clients[i] as pg.Client).query<{ ok: boolean }>(sql);
        if (rows[0]?.ok) seenAt[t.name] = Date.now() - started;
      }));
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    await Promise.all(clients.map((c) => c.end()));
  }
  return seenAt;
}

async function sustained(sourceUrl: string, targets: { name: string; url: string }[]) {
  console.log(`sustained: pgbench for ${DURATION} s at full speed…`);
  const stamp = new pg.Client(sourceUrl);
  await stamp.connect();
  // A fresh stamp everyone has seen, so the first samples measure replication, not the idle time before.
  const fresh = await stamp.query<{ at: string }>(`UPDATE bench_heartbeat SET at = clock_timestamp() WHERE id = 1 RETURNING at::text`);
  await waitAllSee(targets, `SELECT at >= '${fresh.rows[0]?.at}'::timestamptz AS ok FROM bench_heartbeat`, 600_000);
  const readers = await Promise.all(targets.map(async (t) => { const c = new pg.Client(t.url); await c.connect(); return c; }));
  const samples: Record<string, { t: number; lag: number }[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
  const t0 = Date.now();
  let running = true;
  const stamper = (async () => {
    while (running) {
      await stamp.query(`UPDATE bench_heartbeat SET at = clock_timestamp() WHERE id = 1`);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const sampler = (async () => {
    while (running) {
      await Promise.all(targets.map(async (t, i) => {
        const { rows } = await (readers[i] as pg.Client).query<{ lag: number }>(`SELECT extract(epoch FROM clock_timestamp() - at)::float8 AS lag FROM bench_heartbeat`);
        samples[t.name]?.push({ t: (Date.now() - t0) / 1000, lag: rows[0]?.lag ?? Number.NaN });
      }));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const out = await pgbench(sourceUrl, ['-c', '4', '-j', '2', '-T', String(DURATION), '-n']);
  const loadEnded = Date.now();
  const tps = Number(/tps = ([\d.]+)/.exec(out)?.[1] ?? Number.NaN);
  // Catch-up: the last stamp written after the load ended must reach each replica.
  running = false;
  await stamper;
  await sampler;
  const { rows } = await stamp.query<{ at: string }>(`UPDATE bench_heartbeat SET at = clock_timestamp() WHERE id = 1 RETURNING at::text`);
  const last = rows[0]?.at as string;
  const waitStarted = Date.now();
  const caughtUp = await waitAllSee(targets, `SELECT at >= '${last}'::timestamptz AS ok FROM bench_heartbeat`, 600_000);
  await stamp.end();
  await Promise.all(readers.map((r) => r.end()));
  const summary = Object.fromEntries(
    Object.entries(samples).map(([name, s]) => {
      const lags = s.filter((x) => x.t <= (loadEnded - t0) / 1000).map((x) => x.lag).sort((a, b) => a - b);
      return [name, { lagP50Seconds: percentile(lags, 50), lagP99Seconds: percentile(lags, 99), lagMaxSeconds: lags.at(-1), catchUpSeconds: ((caughtUp[name] ?? Number.NaN) + (waitStarted - loadEnded)) / 1000 }];
    }),
  );
  writeFileSync(here('lag.svg'), lagPlot(samples, (loadEnded - t0) / 1000));
  return { tps, systems: summary };
}

async function bulk(sourceUrl: string, targets: { name: string; url: string }[]) {
  console.log(`bulk: one transaction of ${BULK_ROWS} inserted rows…`);
  const started = Date.now();
  await withClient(sourceUrl, (c) => c.query(`INSERT INTO bench_bulk SELECT g, md5(g::text) FROM generate_series(1, $1::bigint) g`, [BULK_ROWS]));
  const committedAfter = Date.now() - started;
  const seen = await waitAllSee(targets, `SELECT EXISTS (SELECT 1 FROM bench_bulk WHERE id = ${BULK_ROWS}) AS ok`, 1_800_000);
  // Throughput counts from the start of the INSERT: native logical replication streams a large
  // transaction to the subscriber while it runs (PostgreSQL 16+), pgfanout captures it in the
  // source transaction and ships it after the commit, so "commit → visible" alone would compare
  // different amounts of work.
  const perSystem = Object.fromEntries(
    Object.entries(seen).map(([name, ms]) => {
      const total = (committedAfter + ms) / 1000;
      return [name, { sourceInsertSeconds: committedAfter / 1000, commitToVisibleSeconds: ms / 1000, startToVisibleSeconds: total, changesPerSecond: Math.round(BULK_ROWS / total), applyChangesPerSecondAfterCommit: Math.round(BULK_ROWS / (ms / 1000)) }];
    }),
  );
  const nativeRate = perSystem.native?.changesPerSecond ?? Number.NaN;
  return Object.fromEntries(Object.entries(perSystem).map(([name, v]) => [name, { ...v, ratioToNative: v.changesPerSecond / nativeRate }]));
}

async function idle(sourceUrl: string, targets: { name: string; url: string }[]) {
  console.log(`idle: ${IDLE_SAMPLES} single-row commits…`);
  const latencies: Record<string, number[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
  for (let i = 1; i <= IDLE_SAMPLES; i++) {
    await withClient(sourceUrl, (c) => c.query(`INSERT INTO bench_idle VALUES ($1, clock_timestamp())`, [i]));
    const seen = await waitAllSee(targets, `SELECT EXISTS (SELECT 1 FROM bench_idle WHERE id = ${i}) AS ok`, 60_000);
    for (const [name, ms] of Object.entries(seen)) latencies[name]?.push(ms);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Object.fromEntries(Object.entries(latencies).map(([name, l]) => {
    const s = [...l].sort((a, b) => a - b);
    return [name, { p50Ms: percentile(s, 50), p99Ms: percentile(s, 99) }];
  }));
}

function lagPlot(samples: Record<string, { t: number; lag: number }[]>, loadEnd: number): string {
  const W = 800, H = 360, L = 60, B = 40, T = 30, R = 150;
  const all = Object.values(samples).flat();
  const maxT = Math.max(1, ...all.map((s) => s.t));
  const maxLag = Math.max(0.1, ...all.map((s) => (Number.isFinite(s.lag) ? s.lag : 0)));
  const x = (t: number) => L + (t / maxT) * (W - L - R);
  const y = (v: number) => H - B - (v / maxLag) * (H - B - T);
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728'];
  const lines = Object.entries(samples).map(([name, s], i) => {
    const d = s.filter((p) => Number.isFinite(p.lag)).map((p, j) => `${j === 0 ? 'M' : 'L'}${x(p.t).toFixed(1)},${y(p.lag).toFixed(1)}`).join(' ');
    return `<path d="${d}" fill="none" stroke="${colors[i % colors.length]}" stroke-width="1.5"/><text x="${W - R + 10}" y="${T + 20 * i + 10}" fill="${colors[i % colors.length]}" font-size="12">${name}</text>`;
  });
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => `<text x="${L - 8}" y="${y(f * maxLag) + 4}" font-size="11" text-anchor="end">${(f * maxLag).toFixed(2)}</text>`);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="${L}" y="18" font-size="14">Replica lag during pgbench at full speed (s); load ends at the dashed line</text>
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>
<line x1="${x(loadEnd)}" y1="${T}" x2="${x(loadEnd)}" y2="${H - B}" stroke="gray" stroke-dasharray="4"/>
<text x="${(W - R + L) / 2}" y="${H - 8}" font-size="12" text-anchor="middle">time (s)</text>
${ticks.join('\n')}
${lines.join('\n')}
</svg>
`;
}

await main();
