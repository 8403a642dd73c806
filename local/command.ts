/**
 * `pgfanout local`: the whole pipeline on one machine, with a workload and a live
 * status line per replica. See `pgfanout local --help`.
 */
import { UsageError, parse, parseReplicaArg } from '../functions/cli/args.ts';
import { formatVerify } from '../functions/cli/format.ts';
import { replicatedTables, statusReport } from '../functions/ops/status.ts';
import { qualified } from '#core/pg/sql.ts';
import { parseTableName } from '#core/pg/table-name.ts';
import { verifyTables } from '../functions/ops/verify.ts';
import { Pipeline, withClient } from './pipeline.ts';
import { DEMO_SCHEMA_SQL, DEMO_TABLES, pgbench, runDemoWorkload } from './workload.ts';
import type { Major } from './postgres.ts';

const PGBENCH_TABLES = ['public.pgbench_accounts', 'public.pgbench_branches', 'public.pgbench_tellers', 'public.pgbench_history'];

export async function localCommand(args: readonly string[]): Promise<number> {
  const { values } = parse(args, {
    source: { type: 'string' },
    replica: { type: 'string', multiple: true },
    tables: { type: 'string' },
    workload: { type: 'string', default: 'demo' },
    duration: { type: 'string' },
    verify: { type: 'boolean', default: false },
    major: { type: 'string', default: '18' },
    help: { type: 'boolean', short: 'h' },
  });
  const workload = values.workload as string;
  if (!['none', 'demo', 'pgbench'].includes(workload)) throw new UsageError(`--workload must be none, demo or pgbench, got "${workload}"`);
  const duration = values.duration === undefined ? undefined : Number(values.duration);
  if (duration !== undefined && (!Number.isFinite(duration) || duration <= 0)) throw new UsageError(`--duration must be a positive number of seconds, got "${values.duration}"`);
  const major = Number(values.major);
  if (![13, 15, 18].includes(major)) throw new UsageError(`--major must be 13, 15 or 18, got "${values.major}"`);
  const replicas = (values.replica ?? []).map(parseReplicaArg);
  const tables = values.tables
    ? values.tables.split(',').map(parseTableName)
    : (workload === 'pgbench' ? PGBENCH_TABLES : workload === 'demo' ? [...DEMO_TABLES] : []).map(parseTableName);

  // Appliers run in this process: keep Powertools' metric output out of the terminal.
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  const endpointUrl = process.env.AWS_ENDPOINT_URL;
  console.log(`starting: ${values.source ? 'source from --source' : `a local PostgreSQL ${major} source`}, ` +
    `${replicas.length > 0 ? `${replicas.length} replica(s) from --replica` : `two local PostgreSQL ${major} replicas`}, ` +
    `${endpointUrl ? `SNS/SQS at ${endpointUrl}` : 'the local SNS/SQS endpoint'}…`);
  const pipeline = await Pipeline.start({
    ...(values.source ? { sourceUrl: values.source } : {}),
    ...(replicas.length > 0 ? { replicas } : {}),
    ...(endpointUrl ? { endpointUrl } : {}),
    major: major as Major,
    startPublisher: false,
    tickMs: 500,
  });
  const stop = new AbortController();
  const onSignal = () => {
    if (!stop.signal.aborted) console.log('\nstopping…');
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let exitCode = 0;
  try {
    if (workload === 'demo') {
      for (const url of [pipeline.sourceUrl, ...pipeline.replicas.map((r) => r.url)]) await withClient(url, (c) => c.query(DEMO_SCHEMA_SQL));
    } else if (workload === 'pgbench') {
      for (const url of [pipeline.sourceUrl, ...pipeline.replicas.map((r) => r.url)]) await pgbench(url, ['-i', '-I', 'dtp', '-s', '1']);
    }
    await withClient(pipeline.sourceUrl, async (c) => {
      const present = new Set((await replicatedTables(c)).map((t) => `${t.schema}.${t.table}`));
      for (const t of tables) {
        if (present.has(`${t.schema}.${t.table}`)) continue;
        await c.query('SELECT pgfanout.add_table($1::regclass)', [qualified(t.schema, t.table)]);
      }
    });
    pipeline.startPublisher();
    console.log(`endpoint ${pipeline.endpointUrl}, topic ${pipeline.topicArn}`);
    for (const r of pipeline.replicas) console.log(`replica ${r.name}: ${r.queueUrl}`);
    if (duration !== undefined) setTimeout(() => stop.abort(), duration * 1000).unref();

    const work =
      workload === 'demo'
        ? runDemoWorkload(pipeline.sourceUrl, { clients: 4, signal: stop.signal })
        : workload === 'pgbench'
          ? pgbench(pipeline.sourceUrl, ['-i', '-I', 'g', '-s', '1']).then(() =>
              pgbench(pipeline.sourceUrl, ['-c', '4', '-j', '2', '-T', String(Math.max(1, Math.floor(duration ?? 3600) - 5)), '-n']),
            )
          : Promise.resolve(0);
    const workDone = work.then(
      () => undefined,
      (err: unknown) => {
        console.error(`workload failed: ${(err as Error).message}`);
        exitCode = 1;
      },
    );
    const names = pipeline.replicas.map((r) => ({ name: r.name, url: r.url }));
    const interactive = process.stdout.isTTY === true;
    while (!stop.signal.aborted) {
      const report = await statusReport(pipeline.sourceUrl, names, { prefix: 'pgfanout-local', endpoint: pipeline.endpointUrl }).catch(() => undefined);
      if (report) {
        const line = report.replicas
          .map(
            (r) =>
              `${r.name}: batch ${r.appliedBatchId ?? '-'}/${report.source.lastBatchId ?? '-'} lag ${r.lagSeconds === null ? '?' : `${r.lagSeconds.toFixed(1)}s`}` +
              ` queue ${r.queue ? r.queue.visible + r.queue.inFlight : '?'} dlq ${r.queue?.deadLetter ?? '?'}`,
          )
          .join(' | ');
        if (interactive) process.stdout.write(`\r\u001b[2K${line}`);
        else console.log(line);
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    await workDone;
    if (values.verify) {
      console.log('\nwaiting for the replicas to catch up…');
      await waitForCatchUp(pipeline, 120_000);
      const sourceTables = await withClient(pipeline.sourceUrl, replicatedTables);
      for (const r of pipeline.replicas) {
        const report = await withClient(pipeline.sourceUrl, (s) => withClient(r.url, (c) => verifyTables(s, c, sourceTables)));
        console.log(formatVerify(r.name, report));
        if (report.differences.length > 0) exitCode = 1;
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await pipeline.stop();
    console.log('\nstopped');
  }
  return exitCode;
}

/** Waits until every replica has applied the source's last batch and the queues are empty. */
export async function waitForCatchUp(pipeline: Pipeline, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const names = pipeline.replicas.map((r) => ({ name: r.name, url: r.url }));
  for (;;) {
    const report = await statusReport(pipeline.sourceUrl, names, { prefix: 'pgfanout-local', endpoint: pipeline.endpointUrl });
    const pending = Number(report.source.pendingEvents ?? 0);
    const last = report.source.lastBatchId;
    const caughtUp = report.replicas.every((r) => (last === null || r.appliedBatchId === last) && r.queue?.visible === 0 && r.queue.inFlight === 0);
    if (pending === 0 && report.source.finishedBatchId === last && caughtUp) return;
    if (Date.now() > deadline) throw new Error(`replicas did not catch up within ${timeoutMs / 1000} s: ${JSON.stringify(report)}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
