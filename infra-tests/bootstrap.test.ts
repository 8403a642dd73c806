/**
 * `pgfanout bootstrap` end to end: a replica added while the source keeps writing (its queue
 * subscribed first, so its applier already receives messages it must not apply yet) is copied
 * under one snapshot, attached at the batch that snapshot corresponds to, and converges; a copy
 * interrupted half way is resumed with the same snapshot; an aborted bootstrap started again
 * begins anew; a replica table that does not match is refused before anything changes. Real
 * PostgreSQL servers, the local SNS/SQS endpoint, real SDK clients over HTTP.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { installReplica, installSource } from '#ops/install.ts';
import { METRIC_NAMESPACE } from '#core/config.ts';
import { createApplierHandler } from '../functions/applier/app.ts';
import { replicatedTables, statusReport } from '#ops/status.ts';
import { bootstrapReplica, BootstrapError, COPY_APPLICATION_NAME, type BootstrapEvent } from '#ops/bootstrap/index.ts';
import { verifyTables } from '../functions/ops/verify.ts';
import { createFanout } from '#local/fanout.ts';
import { waitForCatchUp } from '#local/command.ts';
import { Pipeline, withClient, type ReplicaSpec } from '#local/pipeline.ts';
import { LocalPostgres } from '#local/postgres.ts';
import { startEventSourceRunner } from '#local/runner/index.ts';
import { DEMO_SCHEMA_SQL, DEMO_TABLES, runDemoWorkload } from '#local/workload.ts';
import { waitFor } from '#testing/wait.ts';
import { visibilityDeferral } from '../functions/applier/defer.ts';

const PREFIX = 'pgfanout-local';
/** Messages wait (transient retries) while a replica is bootstrapped: never park them here. */
const MAX_RECEIVE_COUNT = 1000;

/** A replica added to a running pipeline: its own server, queue subscribed now, an applier runner. */
interface LateReplica {
  readonly name: string;
  readonly url: string;
  /** What the applier logged for messages it did not apply (code and error). */
  readonly refusals: string[];
  startRunner(): void;
  stop(): Promise<void>;
}

const started: { stop(): Promise<void> }[] = [];

afterEach(async () => {
  for (const s of started.splice(0).reverse()) await s.stop().catch(() => undefined);
});

async function startDemo(replicas: readonly ReplicaSpec[]): Promise<Pipeline> {
  const p = await Pipeline.start({ startPublisher: false, tickMs: 200, visibilityTimeoutSeconds: 10, maxRetryDelaySeconds: 1, maxReceiveCount: MAX_RECEIVE_COUNT, replicas });
  started.push(p);
  for (const url of [p.sourceUrl, ...p.replicas.map((r) => r.url)]) await withClient(url, (c) => c.query(DEMO_SCHEMA_SQL));
  await withClient(p.sourceUrl, async (c) => {
    for (const t of DEMO_TABLES) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
  });
  return p;
}

async function addLateReplica(p: Pipeline, name: string): Promise<LateReplica> {
  const server = await LocalPostgres.start({ major: 18 });
  started.push(server);
  const url = server.url();
  await withClient(url, (c) => installReplica(c));
  const fanout = await createFanout(p.sns, p.sqs, { prefix: PREFIX, replicas: [name], maxReceiveCount: MAX_RECEIVE_COUNT, visibilityTimeoutSeconds: 10 });
  const queues = fanout.replicas[0]!;
  const refusals: string[] = [];
  const logger = new Logger({ serviceName: 'pgfanout-applier', logLevel: 'SILENT' });
  const logError = logger.error.bind(logger);
  Object.assign(logger, {
    error: (message: string, ...extra: unknown[]) => {
      refusals.push(JSON.stringify(extra));
      logError(message);
    },
  });
  const handler = createApplierHandler({
    replicaName: name,
    connect: async () => {
      const client = new pg.Client({ connectionString: url, application_name: `pgfanout-applier-${name}` });
      await client.connect();
      return client;
    },
    apply: { replicationRole: 'auto' },
    signingKeys: p.signingKeys(),
    logger,
    metrics: new Metrics({ namespace: METRIC_NAMESPACE, serviceName: 'pgfanout-applier' }),
    deferRecords: visibilityDeferral(p.sqs, () => queues.queueUrl, 1),
  });
  let runner: { stop(): Promise<void> } | undefined;
  const late: LateReplica = {
    name,
    url,
    refusals,
    startRunner() {
      runner ??= startEventSourceRunner({ sqs: p.sqs, queueUrl: queues.queueUrl, handler, batchSize: 10, functionTimeoutMs: 10_000, functionName: `pgfanout-applier-${name}`, onError: () => {} });
    },
    async stop() {
      await runner?.stop();
      await handler.applier.close();
    },
  };
  started.push(late);
  return late;
}

async function replicaStatus(p: Pipeline, r: { name: string; url: string }) {
  const report = await statusReport(p.sourceUrl, [{ name: r.name, url: r.url }], { prefix: PREFIX, endpoint: p.endpointUrl });
  return { source: report.source, replica: report.replicas[0]! };
}

/** Waits until `r` has applied the source's last batch with its queue empty, then compares every replicated table row by row. */
async function expectConverged(p: Pipeline, r: { name: string; url: string }): Promise<void> {
  await waitForCatchUp(p, 120_000);
  await waitFor(`replica ${r.name} to apply the last batch`, async () => {
    const { source, replica } = await replicaStatus(p, r);
    return source.pendingEvents === '0' && replica.appliedBatchId === source.lastBatchId && replica.queue?.visible === 0 && replica.queue.inFlight === 0;
  }, 120_000);
  const tables = await withClient(p.sourceUrl, replicatedTables);
  const report = await withClient(p.sourceUrl, (s) => withClient(r.url, (c) => verifyTables(s, c, tables)));
  expect(report.differences, `replica ${r.name} differs`).toEqual([]);
  expect(report.rowsCompared).toBeGreaterThan(0);
}

const appliedBatch = async (url: string, sourceId: string) =>
  withClient(url, async (c) => {
    const { rows } = await c.query<{ b: string }>('SELECT applied_batch_id::text AS b FROM pgfanout.replica_position WHERE source_id = $1', [sourceId]);
    return rows[0] ? Number(rows[0].b) : undefined;
  });

describe('pgfanout bootstrap', () => {
  it('attaches a third, empty replica while the workload writes: messages wait, batches up to B are skipped, it converges', async () => {
    // Prepare: two replicas following, load running, batches published
    const p = await startDemo([{ name: 'a' }, { name: 'b' }]);
    p.startPublisher();
    const stopLoad = new AbortController();
    const load = runDemoWorkload(p.sourceUrl, { clients: 3, signal: stopLoad.signal, truncatePercent: 1 });
    const sourceId = await withClient(p.sourceUrl, async (c) => (await c.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]!.id);
    await waitFor('replica a to apply a few batches', async () => ((await appliedBatch(p.replicas[0]!.url, sourceId)) ?? 0) > 5);
    // a new replica: queue subscribed and applier running before the bootstrap
    const c = await addLateReplica(p, 'c');
    c.startRunner();
    await waitFor('replica c to receive a message and let it wait', () => c.refusals.some((r) => r.includes('NOT_BOOTSTRAPPED') && r.includes('never bootstrapped')));
    // Act
    const lines: string[] = [];
    const events: BootstrapEvent[] = [];
    const result = await bootstrapReplica({ sourceUrl: p.sourceUrl, replicaName: 'c', replicaUrl: c.url, jobs: 2, log: (l) => lines.push(l), onEvent: (e) => events.push(e), progressEveryMs: 50 });
    const b = Number(result.batchId);
    await waitFor('replica c to apply batches after B while the load runs', async () => ((await appliedBatch(c.url, sourceId)) ?? 0) > b + 2, 120_000);
    stopLoad.abort();
    expect(await load).toBeGreaterThan(0);
    // Assess
    expect(b).toBeGreaterThan(5);
    expect(result).toMatchObject({ sourceId, resumed: false, restarted: false });
    expect(result.tables.map((t) => [t.table, t.created, t.attempts])).toEqual([
      ['demo.audit', true, 1],
      ['demo.customers', true, 1],
      ['demo.orders', true, 1],
    ]);
    expect(events.filter((e) => e.kind === 'snapshot')).toEqual([{ kind: 'snapshot', batchId: result.batchId, resumed: false }]);
    expect(lines.some((l) => /^copied demo\.orders: [\d,]+ rows/.test(l))).toBe(true);
    await expectConverged(p, c);
    for (const r of p.replicas) await expectConverged(p, r);
    expect((await replicaStatus(p, c)).replica.queue?.deadLetter).toBe(0);
    expect(c.refusals.every((r) => r.includes('NOT_BOOTSTRAPPED'))).toBe(true);
  }, 300_000);

  it('resumes a copy interrupted half way with the same snapshot; an aborted bootstrap run again starts over and says so', async () => {
    // Prepare: no replica yet; a source table big enough to be caught mid-copy
    const p = await startDemo([]);
    await withClient(p.sourceUrl, async (s) => {
      await s.query('CREATE TABLE demo.big (id bigint PRIMARY KEY, payload text NOT NULL, doubled bigint GENERATED ALWAYS AS (id * 2) STORED)');
      await s.query("INSERT INTO demo.big (id, payload) SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 50000) g");
      await s.query("SELECT pgfanout.add_table('demo.big')");
    });
    p.startPublisher();
    const stopLoad = new AbortController();
    const load = runDemoWorkload(p.sourceUrl, { clients: 2, signal: stopLoad.signal });
    const c = await addLateReplica(p, 'c');
    // demo.big exists on c (empty); a lock that only writers wait for holds its copy back
    await withClient(c.url, (r) => r.query('CREATE SCHEMA demo; CREATE TABLE demo.big (id bigint PRIMARY KEY, payload text NOT NULL, doubled bigint GENERATED ALWAYS AS (id * 2) STORED)'));
    const locker = new pg.Client(c.url);
    await locker.connect();
    started.push({ stop: () => locker.end() });
    await locker.query('BEGIN; LOCK TABLE demo.big IN SHARE MODE');
    // Act 1: the copy of demo.big waits for the lock; its replica session is killed there
    const lines: string[] = [];
    const events: BootstrapEvent[] = [];
    const running = bootstrapReplica({ sourceUrl: p.sourceUrl, replicaName: 'c', replicaUrl: c.url, log: (l) => lines.push(l), onEvent: (e) => events.push(e), retryDelayMs: 50 });
    // (from another session: a transaction sees pg_stat_activity as it was at its first look)
    const victim = await waitFor('the copy of demo.big to wait for the lock', async () =>
      withClient(c.url, async (w) => {
        const { rows } = await w.query<{ pid: number }>(
          "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock' AND query LIKE 'COPY%demo%big%'",
          [COPY_APPLICATION_NAME],
        );
        return rows[0]?.pid;
      }),
    );
    await locker.query('SELECT pg_terminate_backend($1)', [victim]);
    await locker.query('COMMIT');
    const result = await running;
    // Assess 1
    expect(result.tables.map((t) => [t.table, t.attempts])).toEqual([
      ['demo.audit', 1],
      ['demo.big', 2],
      ['demo.customers', 1],
      ['demo.orders', 1],
    ]);
    expect(result.tables.find((t) => t.table === 'demo.big')).toMatchObject({ rows: 50000, created: false });
    expect(events.filter((e) => e.kind === 'snapshot')).toHaveLength(1);
    expect(lines.some((l) => /^copying demo\.big failed \(.*\); copying it again with the same snapshot/.test(l))).toBe(true);
    c.startRunner();
    await waitFor('replica c to apply batches after B', async () => ((await appliedBatch(c.url, result.sourceId)) ?? 0) > Number(result.batchId) + 2, 120_000);

    // Act 2: another replica; its first bootstrap is aborted after one table, its applier waits
    const d = await addLateReplica(p, 'd');
    d.startRunner();
    const stop = new AbortController();
    const aborted = await bootstrapReplica({
      sourceUrl: p.sourceUrl,
      replicaName: 'd',
      replicaUrl: d.url,
      signal: stop.signal,
      onEvent: (e) => {
        if (e.kind === 'table-done') stop.abort();
      },
    }).catch((err: unknown) => err);
    expect(aborted).toBeInstanceOf(BootstrapError);
    expect(aborted).toMatchObject({ code: 'ABORTED' });
    const state = await withClient(d.url, async (r) => (await r.query('SELECT count(*)::int AS tables, count(copied_at)::int AS copied FROM pgfanout.replica_bootstrap_table')).rows[0]);
    expect(state).toEqual({ tables: 4, copied: 1 });
    await waitFor('replica d to let messages wait while the bootstrap is unfinished', () => d.refusals.some((r) => r.includes('NOT_BOOTSTRAPPED') && r.includes('in progress')));
    const again: string[] = [];
    const second = await bootstrapReplica({ sourceUrl: p.sourceUrl, replicaName: 'd', replicaUrl: d.url, jobs: 2, log: (l) => again.push(l) });
    stopLoad.abort();
    await load;
    // Assess 2
    expect(second).toMatchObject({ resumed: false, restarted: true });
    expect(second.tables.every((t) => t.attempts === 1)).toBe(true);
    expect(again.some((l) => l.includes('is gone') && l.includes('Starting over with a new snapshot'))).toBe(true);
    await expectConverged(p, d);
    await expectConverged(p, c);
  }, 300_000);

  it('refuses a replica table whose columns differ, or that holds rows, naming them, and changes nothing', async () => {
    // Prepare: a source with the demo tables captured, a replica with mismatching ones
    const [source, replica] = await Promise.all([LocalPostgres.start({ major: 18 }), LocalPostgres.start({ major: 13 })]);
    started.push(source, replica);
    await withClient(source.url(), async (s) => {
      await installSource(s);
      await s.query(DEMO_SCHEMA_SQL);
      for (const t of DEMO_TABLES) await s.query('SELECT pgfanout.add_table($1::regclass)', [t]);
      await s.query("INSERT INTO demo.customers (name) VALUES ('x')");
    });
    await withClient(replica.url(), async (r) => {
      await installReplica(r);
      await r.query(DEMO_SCHEMA_SQL);
      await r.query('ALTER TABLE demo.orders ALTER COLUMN amount TYPE integer, ADD COLUMN extra text NOT NULL');
      await r.query('ALTER TABLE demo.audit DROP COLUMN note');
    });
    const run = (force = false) =>
      bootstrapReplica({ sourceUrl: source.url(), replicaName: 'r', replicaUrl: replica.url(), force }).catch((err: unknown) => err as BootstrapError);
    // Act + Assess: columns
    const mismatch = await run(true);
    expect(mismatch).toBeInstanceOf(BootstrapError);
    expect(mismatch).toMatchObject({ code: 'SCHEMA_MISMATCH' });
    expect((mismatch as Error).message).toBe(
      'replica r: table demo.audit has no column "note" (source: text); ' +
        'table demo.orders column "amount" is integer on the replica, numeric(12,2) on the source; ' +
        'table demo.orders column "extra" exists only on the replica and is NOT NULL without a default, so no source row fits; nothing was changed on the replica',
    );
    // rows
    await withClient(replica.url(), (r) => r.query('DROP TABLE demo.orders; ALTER TABLE demo.audit ADD COLUMN note text'));
    await withClient(replica.url(), (r) => r.query("INSERT INTO demo.audit (kind) VALUES ('mine')"));
    const notEmpty = await run();
    expect(notEmpty).toMatchObject({ code: 'NOT_EMPTY', message: 'replica r: table(s) demo.audit hold rows; bootstrap copies into empty tables: pass --force to empty them first' });
    const untouched = await withClient(replica.url(), async (r) => ({
      audit: (await r.query('SELECT kind FROM demo.audit')).rows,
      orders: (await r.query("SELECT to_regclass('demo.orders') AS t")).rows[0].t,
      state: (await r.query('SELECT (SELECT count(*) FROM pgfanout.replica_bootstrap)::int AS b, (SELECT count(*) FROM pgfanout.replica_position)::int AS p')).rows[0],
    }));
    expect(untouched).toEqual({ audit: [{ kind: 'mine' }], orders: null, state: { b: 0, p: 0 } });
    // with --force: emptied, orders created (PostgreSQL 18 source, 13 replica), copied, position recorded
    // at batch 1, which holds the one captured insert
    const forced = await run(true);
    expect(forced).toMatchObject({ batchId: '1', tables: [{ table: 'demo.audit', rows: 0 }, { table: 'demo.customers', rows: 1 }, { table: 'demo.orders', created: true }] });
    const again = await run();
    expect(again).toMatchObject({ code: 'ALREADY_FOLLOWING' });
    expect((again as Error).message).toMatch(/^replica r already follows source [0-9a-f-]+ \(applied batch 1\); bootstrap is for a new or empty replica: pass --force/);
  });
});
