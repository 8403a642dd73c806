/**
 * End-to-end: schema changes through the stream while a workload writes, and two databases
 * that are each other's replica (lazy multi-master), over the whole local pipeline (publisher
 * processes, SNS/SQS endpoint, applier handlers driven like Lambda, real PostgreSQL servers).
 */
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { waitForCatchUp } from '#local/command.ts';
import { DEMO_SCHEMA_SQL, DEMO_TABLES, runDemoWorkload } from '#local/workload.ts';
import { replicatedTables, statusReport } from '#ops/status.ts';
import { verifyTables } from '../functions/ops/verify.ts';
import { waitFor } from '#testing/wait.ts';

const pipelines: Pipeline[] = [];
const servers: LocalPostgres[] = [];

afterEach(async () => {
  for (const p of pipelines.splice(0).reverse()) await p.stop();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

/** Rows of a query as text, for comparing databases. */
async function rows(url: string, sql: string): Promise<string[]> {
  return withClient(url, async (c) => (await c.query<{ r: string }>(`SELECT t::text AS r FROM (${sql}) AS t ORDER BY 1`)).rows.map((r) => r.r));
}

describe('schema changes end to end', () => {
  it('a column and a table added while the workload writes reach every replica, through replicate_ddl and through DDL capture', async () => {
    // Prepare
    const replicas = [{ name: 'a', allowSchemaChanges: true }, { name: 'b', allowSchemaChanges: true }];
    const p = await Pipeline.start({ replicas, startPublisher: false, tickMs: 200, visibilityTimeoutSeconds: 10, maxRetryDelaySeconds: 2 });
    pipelines.push(p);
    for (const url of [p.sourceUrl, ...p.replicas.map((r) => r.url)]) await withClient(url, (c) => c.query(DEMO_SCHEMA_SQL));
    await withClient(p.sourceUrl, async (c) => {
      for (const t of DEMO_TABLES) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
      await c.query("SELECT pgfanout.auto_add_schema('demo'); SELECT pgfanout.enable_ddl_capture()");
    });
    p.startPublisher();
    const stopLoad = new AbortController();
    const load = runDemoWorkload(p.sourceUrl, { clients: 2, signal: stopLoad.signal, truncatePercent: 1 });
    await waitFor('both replicas to apply some of the workload', async () => {
      const report = await statusReport(p.sourceUrl, p.replicas.map((r) => ({ name: r.name, url: r.url })), { prefix: 'pgfanout-local', endpoint: p.endpointUrl });
      return report.replicas.every((r) => Number(r.appliedBatchId ?? 0) > 2);
    });
    // Act: schema changes in the middle of the load, then rows that use them
    await withClient(p.sourceUrl, async (c) => {
      await c.query(`SELECT pgfanout.replicate_ddl($1)`, [
        "ALTER TABLE demo.customers ADD COLUMN tier text NOT NULL DEFAULT 'basic'; CREATE TABLE demo.loyalty (customer_id bigint PRIMARY KEY, points int NOT NULL)",
      ]);
      await c.query('ALTER TABLE demo.orders ADD COLUMN channel text');
      for (let i = 0; i < 20; i++) {
        await c.query(`WITH n AS (INSERT INTO demo.customers (name, tier) VALUES ($1, 'gold') RETURNING id)
                       INSERT INTO demo.loyalty SELECT id, $2 FROM n`, [`gold ${i}`, i * 10]);
        await c.query(`INSERT INTO demo.orders (customer_id, amount, channel) SELECT max(id), 1.5, 'web' FROM demo.customers`);
      }
    });
    stopLoad.abort();
    expect(await load).toBeGreaterThan(0);
    // Assess
    await waitForCatchUp(p, 120_000);
    const tables = await withClient(p.sourceUrl, replicatedTables);
    expect(tables.map((t) => `${t.schema}.${t.table}`)).toContain('demo.loyalty');
    // (The workload may have deleted some of those rows since: compare with the source.)
    const uses = "SELECT (SELECT count(*) FROM demo.customers WHERE tier = 'gold') AS gold, (SELECT count(*) FROM demo.orders WHERE channel = 'web') AS web, (SELECT count(*) FROM demo.loyalty) AS loyal";
    const used = await rows(p.sourceUrl, uses);
    expect(used[0]).not.toMatch(/\b0\b/);
    for (const r of p.replicas) {
      const report = await withClient(p.sourceUrl, (s) => withClient(r.url, (c) => verifyTables(s, c, tables)));
      expect(report.differences, `replica ${r.name} differs`).toEqual([]);
      expect(await rows(r.url, uses)).toEqual(used);
    }
  });
});

describe('lazy multi-master', () => {
  /** Waits until `p`'s source has published everything and its replica applied it, queue empty. */
  async function caughtUp(p: Pipeline, prefix: string): Promise<void> {
    const replica = p.replicas[0]!;
    await waitFor(`${prefix} to catch up`, async () => {
      const report = await statusReport(p.sourceUrl, [{ name: replica.name, url: replica.url }], { prefix, endpoint: p.endpointUrl });
      const last = report.source.lastBatchId;
      const r = report.replicas[0];
      return Number(report.source.pendingEvents ?? 0) === 0 && report.source.finishedBatchId === last && (last === null || r?.appliedBatchId === last) && r?.queue?.visible === 0 && r.queue.inFlight === 0;
    }, 120_000);
  }

  async function eventsLogged(url: string): Promise<number> {
    return withClient(url, async (c) => Number((await c.query('SELECT coalesce(sum(event_count), 0)::int AS n FROM pgfanout.batch')).rows[0].n));
  }

  it('two databases replicate into each other without echo, converge, and resolve a deliberate conflict by the stated rule', async () => {
    // Prepare: servers A and B; A → B applies A's changes ("apply-remote"), B → A keeps A's rows ("keep-local"): A wins conflicts.
    const [a, b] = await Promise.all([LocalPostgres.start({ major: 18 }), LocalPostgres.start({ major: 18 })]);
    servers.push(a, b);
    const schema = 'CREATE SCHEMA mm; CREATE TABLE mm.accounts (id int PRIMARY KEY, owner text NOT NULL, balance int NOT NULL)';
    for (const s of [a, b]) await withClient(s.url(), (c) => c.query(schema));
    const ab = await Pipeline.start({ sourceUrl: a.url(), replicas: [{ name: 'b', url: b.url(), conflicts: 'apply-remote', allowSchemaChanges: true }], prefix: 'mm-ab', tickMs: 200, visibilityTimeoutSeconds: 10, maxRetryDelaySeconds: 2 });
    pipelines.push(ab);
    const ba = await Pipeline.start({ sourceUrl: b.url(), replicas: [{ name: 'a', url: a.url(), conflicts: 'keep-local', allowSchemaChanges: true }], prefix: 'mm-ba', tickMs: 200, visibilityTimeoutSeconds: 10, maxRetryDelaySeconds: 2 });
    pipelines.push(ba);
    for (const s of [a, b]) await withClient(s.url(), (c) => c.query("SELECT pgfanout.add_table('mm.accounts'); SELECT pgfanout.set_old_image('mm.accounts', 'full')"));

    // Act 1: concurrent writes on both, to rows each side owns
    const writer = async (url: string, owner: string, base: number): Promise<number> => {
      const c = new pg.Client(url);
      await c.connect();
      let statements = 0;
      try {
        for (let i = 1; i <= 100; i++) {
          await c.query('INSERT INTO mm.accounts VALUES ($1, $2, $3)', [base + i, owner, i]);
          statements++;
          if (i % 2 === 0) {
            await c.query('UPDATE mm.accounts SET balance = balance + 1000 WHERE id = $1', [base + i - 1]);
            statements++;
          }
        }
      } finally {
        await c.end();
      }
      return statements;
    };
    const [writtenA, writtenB] = await Promise.all([writer(a.url(), 'A', 0), writer(b.url(), 'B', 1000)]);
    await Promise.all([caughtUp(ab, 'mm-ab'), caughtUp(ba, 'mm-ba')]);

    // Assess 1: converged, and each side logged only its own writes (the appliers' writes are not captured)
    const all = 'SELECT * FROM mm.accounts';
    expect(await rows(b.url(), all)).toEqual(await rows(a.url(), all));
    expect(await rows(a.url(), 'SELECT count(*) FROM mm.accounts')).toEqual(['(200)']);
    expect([await eventsLogged(a.url()), await eventsLogged(b.url())]).toEqual([writtenA, writtenB]);

    // Act 2: a deliberate conflict while both publishers are stopped: the same row updated on both
    // sides, and the same new key inserted on both
    await Promise.all([ab.stopPublisher(), ba.stopPublisher()]);
    await withClient(a.url(), (c) => c.query("UPDATE mm.accounts SET balance = 111 WHERE id = 1; INSERT INTO mm.accounts VALUES (5000, 'A', 1)"));
    await withClient(b.url(), (c) => c.query("UPDATE mm.accounts SET balance = 222 WHERE id = 1; INSERT INTO mm.accounts VALUES (5000, 'B', 2)"));
    ab.startPublisher();
    ba.startPublisher();
    await Promise.all([caughtUp(ab, 'mm-ab'), caughtUp(ba, 'mm-ba')]);

    // Assess 2: A's writes won on both sides; each side recorded both conflicts with how it resolved them
    expect(await rows(b.url(), all)).toEqual(await rows(a.url(), all));
    expect(await rows(a.url(), 'SELECT * FROM mm.accounts WHERE id IN (1, 5000)')).toEqual(['(1,A,111)', '(5000,A,1)']);
    const recorded = 'SELECT kind, resolution, table_schema, table_name, key::text, local_row::text, new_row::text FROM pgfanout.replica_conflict';
    expect(await rows(b.url(), recorded)).toEqual([
      '(insert_exists,apply-remote,mm,accounts,"{""id"": ""5000""}","{""id"": 5000, ""owner"": ""B"", ""balance"": 2}","{""id"": ""5000"", ""owner"": ""A"", ""balance"": ""1""}")',
      '(update_differs,apply-remote,mm,accounts,"{""id"": ""1""}","{""id"": 1, ""owner"": ""A"", ""balance"": 222}","{""id"": ""1"", ""owner"": ""A"", ""balance"": ""111""}")',
    ]);
    expect(await rows(a.url(), 'SELECT kind, resolution FROM pgfanout.replica_conflict')).toEqual(['(insert_exists,keep-local)', '(update_differs,keep-local)']);
    // Still no echo: each side logged its own writes only.
    expect([await eventsLogged(a.url()), await eventsLogged(b.url())]).toEqual([writtenA + 2, writtenB + 2]);
  });
});
