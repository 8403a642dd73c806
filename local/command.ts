/**
 * `pgfanout local`: the whole pipeline on one machine, with a workload and a live status
 * display per replica. See `pgfanout local --help`.
 *
 * With local servers (no --source) it starts everything itself and removes it all on exit.
 * With your own databases it does only what was asked: no workload unless one is named,
 * nothing installed on them; every replica is checked at start (pgfanout installed, the
 * source's tables present, bootstrapped) and what to run is printed when one is not ready.
 * The SNS/SQS endpoint then keeps its state in a file, so nothing published is lost between
 * runs. Ctrl-C at any moment stops everything and removes what this run started.
 */
import { createWriteStream, mkdirSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type pg from 'pg';
import { DEFAULT_LOCAL_PREFIX, UsageError, parse, parseReplicaArg } from '../functions/cli/args.ts';
import { formatStaging, formatVerify } from '../functions/cli/format.ts';
import { replicatedTables, statusReport, type StatusReport } from '../functions/ops/status.ts';
import { installReplica } from '../functions/ops/install.ts';
import { connect, redactUrl } from '#core/pg/db.ts';
import { qualified } from '#core/pg/sql.ts';
import { parseTableName, type TableName } from '#core/pg/table-name.ts';
import { verifyTables } from '../functions/ops/verify.ts';
import { replicaState } from '#core/replica/protocol.ts';
import { Pipeline, withClient, type RunningReplica } from './pipeline.ts';
import { DEMO_SCHEMA_SQL, DEMO_TABLES, pgbench, runDemoWorkload } from './workload.ts';
import { SUPERUSER, type Major } from './postgres.ts';
import { setTimeout as sleep } from 'node:timers/promises';

const PGBENCH_TABLES = ['public.pgbench_accounts', 'public.pgbench_branches', 'public.pgbench_tellers', 'public.pgbench_history'];

/** Why the run stopped early: the signal that stopped it. */
class Interrupted extends Error {
  readonly signal: NodeJS.Signals;
  constructor(signal: NodeJS.Signals) {
    super(`stopped by ${signal}`);
    this.signal = signal;
  }
}

export async function localCommand(args: readonly string[]): Promise<number> {
  const { values } = parse(args, {
    source: { type: 'string' },
    replica: { type: 'string', multiple: true },
    tables: { type: 'string' },
    workload: { type: 'string' },
    duration: { type: 'string' },
    verify: { type: 'boolean', default: false },
    major: { type: 'string', default: '18' },
    log: { type: 'string' },
    state: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  const replicaArgs = (values.replica ?? []).map(parseReplicaArg);
  const ownSource = values.source;
  const own = ownSource !== undefined || replicaArgs.length > 0;
  if (replicaArgs.length > 0 && !ownSource) throw new UsageError('--replica needs --source: replicas of your own follow a source of your own');
  // Your own databases get a workload only when one is named.
  const workload = values.workload ?? (own ? 'none' : 'demo');
  if (!['none', 'demo', 'pgbench'].includes(workload)) throw new UsageError(`--workload must be none, demo or pgbench, got "${workload}"`);
  const duration = values.duration === undefined ? undefined : Number(values.duration);
  if (duration !== undefined && (!Number.isFinite(duration) || duration <= 0)) throw new UsageError(`--duration must be a positive number of seconds, got "${values.duration}"`);
  const major = Number(values.major);
  if (![13, 15, 18].includes(major)) throw new UsageError(`--major must be 13, 15 or 18, got "${values.major}"`);
  const tables = (
    values.tables ? values.tables.split(',') : workload === 'pgbench' ? PGBENCH_TABLES : workload === 'demo' ? [...DEMO_TABLES] : []
  ).map((t) => {
    try {
      return parseTableName(t.trim());
    } catch (err) {
      throw new UsageError(`--tables: ${(err as Error).message}`);
    }
  });
  const endpointUrl = process.env.AWS_ENDPOINT_URL;
  if (values.state && (endpointUrl || replicaArgs.length === 0)) {
    throw new UsageError('--state applies to the built-in endpoint with your own --source and --replica databases');
  }

  // Appliers run in this process: Powertools' metric output (EMF lines) is not for the terminal.
  process.env.POWERTOOLS_METRICS_DISABLED = 'true';
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (!stop.signal.aborted) process.stdout.write('\nstopping…\n');
    stop.abort(new Interrupted(signal));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const logFile = values.log ?? join(tmpdir(), `pgfanout-local-${new Date().toISOString().replace(/[:.]/g, '-')}-${process.pid}.log`);
  mkdirSync(dirname(logFile), { recursive: true });
  const logStream = createWriteStream(logFile, { flags: 'a' });
  const log = (line: string) => void logStream.write(`${line}\n`);
  let pipeline: Pipeline | undefined;
  let exitCode = 0;
  try {
    // Your own databases: checked before anything starts.
    let sourceId: string | undefined;
    if (ownSource) {
      sourceId = await prepareOwnSource(ownSource, replicaArgs, workload, tables, stop.signal);
      const problems = await checkReplicas(ownSource, replicaArgs);
      if (problems.length > 0) {
        console.error(`pgfanout local: ${problems.length === 1 ? 'a replica is' : 'replicas are'} not ready:\n${problems.map((p) => `  ${p}`).join('\n')}`);
        return 1;
      }
    }
    const stateFile =
      replicaArgs.length > 0 && !endpointUrl ? (values.state ?? join(homedir(), '.pgfanout', 'local', `endpoint-${sourceId ?? 'local'}.json`)) : undefined;
    if (stateFile) mkdirSync(dirname(stateFile), { recursive: true });

    console.log(
      `starting: ${ownSource ? 'your source' : `a local PostgreSQL ${major} source`}, ` +
        `${replicaArgs.length > 0 ? `your ${replicaArgs.length} replica(s)` : `two local PostgreSQL ${major} replicas`}, ` +
        `${endpointUrl ? `SNS/SQS at ${endpointUrl}` : 'the built-in SNS/SQS endpoint'}…`,
    );
    pipeline = await Pipeline.start({
      ...(ownSource ? { sourceUrl: ownSource } : {}),
      ...(replicaArgs.length > 0 ? { replicas: replicaArgs } : {}),
      ...(endpointUrl ? { endpointUrl } : {}),
      ...(stateFile ? { endpointStateFile: stateFile } : {}),
      major: major as Major,
      startPublisher: false,
      install: !own,
      tickMs: 500,
      log,
      signal: stop.signal,
    });
    const p = pipeline;

    if (!own) {
      // Everything is local: the workload's tables are loaded on every database before their
      // capture starts, so the run shows the replication of the workload, not of the load.
      if (workload === 'demo') {
        for (const [role, url] of databases(p)) await withClient(url, (c) => c.query(DEMO_SCHEMA_SQL), role);
      } else if (workload === 'pgbench') {
        for (const [, url] of databases(p)) await pgbench(url, ['-i', '-I', 'dtgp', '-s', '1', '-q'], stop.signal);
      }
      await addTables(p.sourceUrl, tables);
    } else if (p.replicas.some((r) => r.server)) {
      // Your source with local replicas: install on them and copy the source's tables.
      const { bootstrapReplica } = await import('../functions/ops/bootstrap/index.ts');
      for (const r of p.replicas) {
        await withClient(r.url, (c) => installReplica(c), `replica ${r.name}`);
        console.log(`copying the source's tables into local replica ${r.name}…`);
        await bootstrapReplica({ sourceUrl: p.sourceUrl, replicaName: r.name, replicaUrl: r.url, log, signal: stop.signal });
      }
    }
    stop.signal.throwIfAborted();
    p.startPublisher();
    printHeader(p, { ownSource: ownSource !== undefined, logFile, stateFile, workload, endpointUrl });
    if (duration !== undefined) setTimeout(() => stop.abort(), duration * 1000).unref();

    const work =
      workload === 'demo'
        ? runDemoWorkload(p.sourceUrl, { clients: 4, signal: stop.signal })
        : workload === 'pgbench'
          ? pgbench(p.sourceUrl, ['-c', '4', '-j', '2', '-T', String(Math.max(1, Math.floor(duration ?? 86_400) - 5)), '-n'], stop.signal)
          : Promise.resolve(0);
    const workDone = work.then(
      () => undefined,
      (err: unknown) => {
        // Stopping ends the workload too: that is no failure.
        if (stop.signal.aborted) return;
        console.error(`\nworkload failed: ${(err as Error).message}`);
        exitCode = 1;
      },
    );
    await showStatus(p, stop.signal);
    await workDone;
    if (values.verify && !(stop.signal.reason instanceof Interrupted)) {
      console.log('\nwaiting for the replicas to catch up…');
      await waitForCatchUp(p, 120_000);
      const sourceTables = await withClient(p.sourceUrl, replicatedTables, 'source');
      for (const r of p.replicas) {
        const report = await withClient(p.sourceUrl, (s) => withClient(r.url, (c) => verifyTables(s, c, sourceTables), `replica ${r.name}`), 'source');
        console.log(formatVerify(r.name, report));
        if (report.differences.length > 0) exitCode = 1;
      }
    }
  } catch (err) {
    if (!(stop.signal.reason instanceof Interrupted)) throw err;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (pipeline) await pipeline.stop();
    await new Promise((resolve) => logStream.end(resolve));
    if (pipeline || stop.signal.aborted) console.log(`stopped${pipeline?.sourceServer || pipeline?.replicas.some((r) => r.server) ? ': local servers and their data removed' : ''}`);
  }
  const reason: unknown = stop.signal.reason;
  if (reason instanceof Interrupted) return reason.signal === 'SIGINT' ? 130 : 143;
  return exitCode;
}

function databases(p: Pipeline): [string, string][] {
  return [['source', p.sourceUrl], ...p.replicas.map((r): [string, string] => [`replica ${r.name}`, r.url])];
}

/** Starts capturing `tables` on the source, where not captured yet. */
async function addTables(sourceUrl: string, tables: readonly TableName[]): Promise<void> {
  await withClient(
    sourceUrl,
    async (c) => {
      const present = new Set((await replicatedTables(c)).map((t) => `${t.schema}.${t.table}`));
      for (const t of tables) {
        if (present.has(`${t.schema}.${t.table}`)) continue;
        await c.query('SELECT pgfanout.add_table($1::regclass)', [qualified(t.schema, t.table)]).catch((err: { code?: string; message?: string }) => {
          if (err.code === '42P01' || err.code === '3F000') throw new Error(`source: table ${t.schema}.${t.table} does not exist`);
          throw new Error(`source: capturing ${t.schema}.${t.table}: ${err.message ?? String(err)}`);
        });
      }
    },
    'source',
  );
}

/**
 * Your source: pgfanout must be installed; a named workload's tables are created (and, for
 * pgbench, loaded before their capture starts) on the source and your replicas; the tables
 * named (or the workload's) are captured. Returns the source's id.
 */
async function prepareOwnSource(
  sourceUrl: string,
  replicas: readonly { name: string; url: string }[],
  workload: string,
  tables: readonly TableName[],
  signal: AbortSignal,
): Promise<string> {
  const sourceId = await withClient(
    sourceUrl,
    async (c) => {
      const { rows } = await c.query<{ ok: boolean }>("SELECT to_regprocedure('pgfanout.source_id()') IS NOT NULL AS ok");
      if (rows[0]?.ok !== true) {
        throw new Error(`source ${redactUrl(sourceUrl)}: pgfanout is not installed there: run pgfanout install --source URL, then start again`);
      }
      return (await c.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]?.id as string;
    },
    'source',
  );
  if (workload !== 'none') {
    const captured = await withClient(sourceUrl, replicatedTables, 'source');
    const alreadyCaptured = captured.some((t) => tables.some((w) => w.schema === t.schema && w.table === t.table));
    if (!alreadyCaptured) {
      const all: [string, string][] = [['source', sourceUrl], ...replicas.map((r): [string, string] => [`replica ${r.name}`, r.url])];
      if (workload === 'demo') for (const [role, url] of all) await withClient(url, (c) => c.query(DEMO_SCHEMA_SQL), role);
      else for (const [, url] of all) await pgbench(url, ['-i', '-I', 'dtgp', '-s', '1', '-q'], signal);
    }
  }
  signal.throwIfAborted();
  await addTables(sourceUrl, tables);
  return sourceId;
}

/**
 * What keeps each replica from following the source, with what to run: pgfanout not installed,
 * tables the source captures missing, or no recorded position while the source has published
 * batches or its tables hold rows (the replica needs `pgfanout bootstrap`).
 */
export async function checkReplicas(sourceUrl: string, replicas: readonly { name: string; url: string }[]): Promise<string[]> {
  const problems: string[] = [];
  const source = await connect(sourceUrl, 'source');
  try {
    const sourceId = (await source.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]?.id as string;
    const tables = await replicatedTables(source);
    const published = (await source.query<{ n: string }>('SELECT coalesce(finished_batch_id, 0)::text AS n FROM pgfanout.status()')).rows[0]?.n ?? '0';
    let sourceHasRows: boolean | undefined;
    const bootstrap = (name: string, url: string) => `pgfanout bootstrap --source ${redactUrl(sourceUrl)} --replica ${name}=${redactUrl(url)}`;
    for (const r of replicas) {
      let replica: pg.Client;
      try {
        replica = await connect(r.url, `replica ${r.name}`);
      } catch (err) {
        problems.push((err as Error).message);
        continue;
      }
      try {
        const installed = await replica.query<{ ok: boolean }>("SELECT to_regprocedure('pgfanout.replica_version()') IS NOT NULL AS ok");
        if (installed.rows[0]?.ok !== true) {
          problems.push(`replica ${r.name}: pgfanout is not installed: run pgfanout install --replica ${redactUrl(r.url)}, then ${bootstrap(r.name, r.url)}`);
          continue;
        }
        const missing: string[] = [];
        for (const t of tables) {
          const { rows } = await replica.query<{ ok: boolean }>('SELECT to_regclass($1) IS NOT NULL AS ok', [qualified(t.schema, t.table)]);
          if (rows[0]?.ok !== true) missing.push(`${t.schema}.${t.table}`);
        }
        const state = await replicaState(replica, sourceId);
        const position = state.position !== undefined;
        const bootstrapping = state.bootstrap !== undefined;
        if (bootstrapping) {
          problems.push(`replica ${r.name}: a bootstrap was interrupted: run ${bootstrap(r.name, r.url)} again`);
        } else if (missing.length > 0) {
          problems.push(`replica ${r.name}: the source's table(s) ${missing.join(', ')} do not exist there: run ${bootstrap(r.name, r.url)} (it creates them and copies their rows)`);
        } else if (!position) {
          sourceHasRows ??= await anyRows(source, tables);
          if (published !== '0' || sourceHasRows) {
            problems.push(
              `replica ${r.name}: not bootstrapped (the source ${published !== '0' ? `has published ${published} batch(es)` : 'tables hold rows'} it has not seen): run ${bootstrap(r.name, r.url)}`,
            );
          }
        }
      } finally {
        await replica.end();
      }
    }
  } finally {
    await source.end();
  }
  return problems;
}

async function anyRows(client: pg.ClientBase, tables: readonly { schema: string; table: string }[]): Promise<boolean> {
  for (const t of tables) {
    const { rows } = await client.query<{ any: boolean }>(`SELECT EXISTS (SELECT FROM ${qualified(t.schema, t.table)}) AS any`);
    if (rows[0]?.any === true) return true;
  }
  return false;
}

function printHeader(
  p: Pipeline,
  o: { ownSource: boolean; logFile: string; stateFile: string | undefined; workload: string; endpointUrl: string | undefined },
): void {
  const width = Math.max(6, ...p.replicas.map((r) => `replica ${r.name}`.length));
  const row = (label: string, text: string) => console.log(`  ${label.padEnd(width)}  ${text}`);
  console.log('');
  row('source', `${redactUrl(p.sourceUrl)}${p.sourceServer ? ` (local PostgreSQL ${p.sourceServer.major})` : ''}`);
  for (const r of p.replicas) row(`replica ${r.name}`, `${redactUrl(r.url)}${r.server ? ` (local PostgreSQL ${r.server.major})` : ''}, queue ${r.queueUrl}`);
  if (p.sourceServer || p.replicas.some((r) => r.server)) {
    row('', `local servers: user ${SUPERUSER}, password ${decodeURIComponent(new URL(p.sourceServer?.url() ?? p.replicas.find((r) => r.server)?.url ?? '').password)}; removed with their data on exit`);
  }
  row('SNS/SQS', o.endpointUrl ? `${p.endpointUrl}` : `built-in endpoint ${p.endpointUrl}, ${o.stateFile ? `state kept in ${o.stateFile} between runs` : 'in memory'}`);
  row('logs', `${o.logFile} (publisher and appliers)`);
  row('workload', o.workload === 'demo' ? 'demo: 4 clients writing to the demo schema' : o.workload === 'pgbench' ? 'pgbench TPC-B, 4 clients (tables loaded before capture started)' : 'none: changes come from you');
  console.log(`
  Every second, per replica:
    applied B/P   B: the last batch the replica applied; P: the last batch the source published
    lag           seconds from the source's commit of batch B until now (0: nothing pending)
    queue         messages waiting in the replica's queue or being applied
    dlq           messages parked in its dead-letter queue (pgfanout redrive)
    staging       a batch too large for one message, arriving part by part
    last error    the applier's latest failure since the replica last advanced
  Ctrl-C stops everything this run started.
`);
}

/** The status lines, redrawn in place on a terminal (else printed when they change, at most every 5 s). */
async function showStatus(p: Pipeline, signal: AbortSignal): Promise<void> {
  const names = p.replicas.map((r) => ({ name: r.name, url: r.url }));
  const interactive = process.stdout.isTTY === true;
  const advancedAt = new Map<string, { batch: string | null; at: number }>();
  let shown = 0;
  let lastPrinted = '';
  let lastPrintedAt = 0;
  while (!signal.aborted) {
    let lines: string[];
    try {
      const report = await statusReport(p.sourceUrl, names, { prefix: DEFAULT_LOCAL_PREFIX, endpoint: p.endpointUrl });
      lines = statusLines(report, p.replicas, advancedAt);
    } catch (err) {
      lines = [`status unavailable: ${(err as Error).message}`];
    }
    if (interactive) {
      process.stdout.write(`${shown > 0 ? `\u001b[${shown}F` : ''}${lines.map((l) => `\u001b[2K${l}`).join('\n')}\n`);
      shown = lines.length;
    } else {
      const text = lines.join('\n');
      if (text !== lastPrinted && Date.now() - lastPrintedAt >= 5000) {
        console.log(text);
        lastPrinted = text;
        lastPrintedAt = Date.now();
      }
    }
    await sleep(1000, undefined, { signal }).catch(() => undefined);
  }
}

function statusLines(report: StatusReport, replicas: readonly RunningReplica[], advancedAt: Map<string, { batch: string | null; at: number }>): string[] {
  const s = report.source;
  const lines = [`source      published batch ${s.finishedBatchId ?? '-'}, ${s.pendingEvents ?? '0'} change(s) not yet in a batch`];
  const width = Math.max(...report.replicas.map((r) => r.name.length));
  for (const r of report.replicas) {
    const seen = advancedAt.get(r.name);
    if (!seen || seen.batch !== r.appliedBatchId) advancedAt.set(r.name, { batch: r.appliedBatchId, at: Date.now() });
    if (r.error) {
      lines.push(`replica ${r.name.padEnd(width)}  error: ${cut(r.error, 160)}`);
      continue;
    }
    let line =
      `replica ${r.name.padEnd(width)}  applied ${r.appliedBatchId ?? '-'}/${s.finishedBatchId ?? '-'}` +
      `  lag ${r.lagSeconds === null ? '-' : `${r.lagSeconds.toFixed(1)} s`}` +
      `  queue ${r.queue ? r.queue.visible + r.queue.inFlight : '?'}  dlq ${r.queue?.deadLetter ?? '?'}`;
    if (r.stagingBatch) line += `  ${formatStaging(r.stagingBatch)}`;
    if (r.queueError) line += `  queue unknown: ${cut(r.queueError, 100)}`;
    const failure = replicas.find((x) => x.name === r.name)?.handler.applier.lastFailure;
    const since = advancedAt.get(r.name)?.at ?? 0;
    if (failure && failure.at >= since) {
      line += `\n${' '.repeat(10 + width)}last error ${Math.round((Date.now() - failure.at) / 1000)} s ago: ${failure.code}: ${cut(failure.message, 140)}`;
    }
    lines.push(...line.split('\n'));
  }
  return lines;
}

function cut(text: string, max: number): string {
  const one = text.replace(/\s+/g, ' ');
  return one.length > max ? `${one.slice(0, max - 1)}…` : one;
}

/** Waits until every replica has applied the source's last batch and the queues are empty. */
export async function waitForCatchUp(pipeline: Pipeline, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const names = pipeline.replicas.map((r) => ({ name: r.name, url: r.url }));
  for (;;) {
    const report = await statusReport(pipeline.sourceUrl, names, { prefix: DEFAULT_LOCAL_PREFIX, endpoint: pipeline.endpointUrl });
    const pending = Number(report.source.pendingEvents ?? 0);
    const last = report.source.lastBatchId;
    const caughtUp = report.replicas.every((r) => (last === null || r.appliedBatchId === last) && r.queue?.visible === 0 && r.queue.inFlight === 0);
    if (pending === 0 && report.source.finishedBatchId === last && caughtUp) return;
    if (Date.now() > deadline) throw new Error(`replicas did not catch up within ${timeoutMs / 1000} s: ${JSON.stringify(report)}`);
    await sleep(250);
  }
}
