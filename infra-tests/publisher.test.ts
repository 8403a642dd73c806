/**
 * The publisher against real PostgreSQL servers (13 and 18), the local SNS/SQS endpoint and
 * an applier: what it publishes must reach a replica exactly, whatever the values, the
 * publisher's settings between restarts, locks on the source, or a crash of the source.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { freePort, LocalPostgres } from '#local/postgres.ts';
import { describeEachMajor } from '#testing/servers.ts';
import { waitFor } from '#testing/wait.ts';
import { appliedBatch, runPublisher } from '#testing/publisher.ts';
import { isHealthy } from '../functions/publisher/health.ts';
import { awsClients } from '../functions/ops/aws.ts';


/** A source and one replica as databases of `server` (the source of `sourceServer`), with the fan-out and an applier running. */
async function startPipeline(server: LocalPostgres, sourceServer = server): Promise<Pipeline> {
  const names = [`src_${randomUUID().slice(0, 8)}`, `rep_${randomUUID().slice(0, 8)}`];
  await withClient(sourceServer.url(), (c) => c.query(`CREATE DATABASE ${names[0]}`));
  await withClient(server.url(), (c) => c.query(`CREATE DATABASE ${names[1]}`));
  return Pipeline.start({
    sourceUrl: sourceServer.url(names[0]),
    replicas: [{ name: 'a', url: server.url(names[1]) }],
    startPublisher: false,
    visibilityTimeoutSeconds: 5,
    maxRetryDelaySeconds: 1,
  });
}



/** Rows of `table` on `url`, each value as the hex of its UTF-8 bytes (exact, whatever the characters). */
async function rowBytes(url: string, table: string): Promise<string[]> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ r: string }>(`SELECT encode(convert_to(t::text, 'UTF8'), 'hex') AS r FROM ${table} t ORDER BY 1`);
    return rows.map((row) => row.r);
  });
}

describeEachMajor('publisher on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let pipeline: Pipeline | undefined;
  const publishers: { stop(): Promise<void> }[] = [];

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
  });
  afterEach(async () => {
    for (const p of publishers.splice(0)) await p.stop();
    await pipeline?.stop();
    pipeline = undefined;
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('carries U+FFFE and U+FFFF (which SQS does not accept) to the replica exactly, in values and names', async () => {
    const p = (pipeline = await startPipeline(server));
    const ddl = 'CREATE TABLE public.odd (id int PRIMARY KEY, body text, "c\uFFFFol\uFFFE" text)';
    for (const url of [p.sourceUrl, p.replicas[0]!.url]) await withClient(url, (c) => c.query(ddl));
    await withClient(p.sourceUrl, async (c) => {
      await c.query("SELECT pgfanout.add_table('public.odd')");
      const values = ['\uFFFE', '\uFFFF', 'a\uFFFFb\uFFFEc', '\uFFFD\uFFFE\uFFFF\u{10FFFF}\u{1FFFE}', 'é"\\\n\uFFFF'.repeat(2000)];
      for (const [i, v] of values.entries()) await c.query('INSERT INTO public.odd VALUES ($1, $2, $3)', [i, v, `${v}!`]);
    });
    publishers.push(runPublisher(p, { maxMessageBytes: 4096 }));
    await waitFor('the replica to apply the batch', async () => (await appliedBatch(p)) >= 1, 30_000);
    expect(await rowBytes(p.replicas[0]!.url, 'public.odd')).toEqual(await rowBytes(p.sourceUrl, 'public.odd'));
  });

  it('a publisher restarted with another message size in the middle of a multi-part batch republishes it so the replica converges', async () => {
    const p = (pipeline = await startPipeline(server));
    const ddl = 'CREATE TABLE public.wide (id int PRIMARY KEY, note text)';
    for (const url of [p.sourceUrl, p.replicas[0]!.url]) await withClient(url, (c) => c.query(ddl));
    await withClient(p.sourceUrl, async (c) => {
      await c.query("SELECT pgfanout.add_table('public.wide')");
      await c.query("INSERT INTO public.wide SELECT i, repeat('x', 200) || i FROM generate_series(1, 150) i");
    });
    // The first publisher (1 KiB messages) stops right after its first PublishBatch: ten parts of
    // the batch are on the topic, the batch is not finished on the source.
    const sns = awsClients({ endpoint: p.endpointUrl }).sns;
    const first = new AbortController();
    let calls = 0;
    sns.middlewareStack.add(
      (next) => async (args) => {
        const out = await next(args);
        if (++calls === 1) first.abort();
        return out;
      },
      { step: 'initialize', name: 'stopAfterFirstPublishBatch' },
    );
    const crashed = runPublisher(p, { sns, maxMessageBytes: 1024 }, first);
    await crashed.done;
    sns.destroy();
    expect(calls).toBe(1);
    expect(await withClient(p.sourceUrl, async (c) => (await c.query('SELECT finished_batch_id::int AS n FROM pgfanout.batch_cursor')).rows[0].n)).toBe(0);
    // The next publisher is configured with 4 KiB messages.
    publishers.push(runPublisher(p, { maxMessageBytes: 4096 }));
    await waitFor('the replica to apply the batch', async () => (await appliedBatch(p)) >= 1, 30_000);
    await withClient(p.sourceUrl, (c) => c.query("INSERT INTO public.wide VALUES (1000, 'after')"));
    await waitFor('the replica to apply the next batch', async () => (await appliedBatch(p)) >= 2, 30_000);
    expect(await rowBytes(p.replicas[0]!.url, 'public.wide')).toEqual(await rowBytes(p.sourceUrl, 'public.wide'));
  });

  it('a publisher blocked on a lock reports unhealthy and gives its lock up to the standby', async () => {
    const p = (pipeline = await startPipeline(server));
    for (const url of [p.sourceUrl, p.replicas[0]!.url]) await withClient(url, (c) => c.query('CREATE TABLE public.t (id int PRIMARY KEY)'));
    await withClient(p.sourceUrl, (c) => c.query("SELECT pgfanout.add_table('public.t')"));
    const a = runPublisher(p, { progressTimeoutMs: 5000 });
    publishers.push(a);
    await waitFor('the first publisher to be active', () => a.publisher.health().state === 'active');
    const b = runPublisher(p, { progressTimeoutMs: 5000 });
    publishers.push(b);
    await waitFor('the second publisher to stand by', () => b.publisher.health().state === 'standby');
    // A test session holds a lock the active publisher's next statement needs.
    const locker = new pg.Client({ connectionString: p.sourceUrl });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE pgfanout.batch_cursor IN ACCESS EXCLUSIVE MODE');
      await withClient(p.sourceUrl, (c) => c.query('INSERT INTO public.t VALUES (1)'));
      await waitFor('the blocked publisher to report unhealthy', () => !isHealthy(a.publisher.health(), Date.now(), a.publisher.progressTimeoutMs), 60_000);
      await waitFor('the standby to take the lock over', () => b.publisher.health().state === 'active', 60_000);
      await locker.query('ROLLBACK');
    } finally {
      await locker.end();
    }
    await waitFor('the replica to apply the batch', async () => (await appliedBatch(p)) >= 1, 60_000);
    expect(await rowBytes(p.replicas[0]!.url, 'public.t')).toEqual(await rowBytes(p.sourceUrl, 'public.t'));
  });

  // idle_session_timeout exists from PostgreSQL 14; on 13 only replacing the task frees the lock.
  it.runIf(major >= 14)('a stopped (SIGSTOP) publisher process loses its lock to the standby process within a minute', async () => {
    const p = (pipeline = await startPipeline(server));
    for (const url of [p.sourceUrl, p.replicas[0]!.url]) await withClient(url, (c) => c.query('CREATE TABLE public.t (id int PRIMARY KEY)'));
    await withClient(p.sourceUrl, (c) => c.query("SELECT pgfanout.add_table('public.t')"));
    const active = p.startPublisher();
    await waitFor('the first publisher to be active', async () => (await p.publisherHealth())?.state === 'active');
    const standbyPort = await freePort();
    p.startPublisher({ healthPort: standbyPort });
    await waitFor('the second publisher to stand by', async () => (await p.publisherHealth(standbyPort))?.state === 'standby');
    active.kill('SIGSTOP');
    try {
      await withClient(p.sourceUrl, (c) => c.query('INSERT INTO public.t VALUES (1)'));
      await waitFor('the standby to take over', async () => (await p.publisherHealth(standbyPort))?.state === 'active', 60_000);
      await waitFor('the replica to apply the batch', async () => (await appliedBatch(p)) >= 1, 30_000);
    } finally {
      active.kill('SIGCONT');
    }
    expect(await rowBytes(p.replicas[0]!.url, 'public.t')).toEqual(await rowBytes(p.sourceUrl, 'public.t'));
  });

  it('publishes only what is durable on the source: a crash right after a publish loses nothing the replica applied, with synchronous_commit off', async () => {
    // Asynchronous commits everywhere, and a WAL writer that flushes them only every 10 s.
    const crashy = await LocalPostgres.start({ major, settings: { synchronous_commit: 'off', wal_writer_delay: '10s', wal_writer_flush_after: '1GB', autovacuum: 'off' } });
    try {
      const p = (pipeline = await startPipeline(server, crashy));
      for (const url of [p.sourceUrl, p.replicas[0]!.url]) await withClient(url, (c) => c.query('CREATE TABLE public.t (id int PRIMARY KEY, v text)'));
      await withClient(p.sourceUrl, (c) => c.query("SELECT pgfanout.add_table('public.t')"));
      await withClient(crashy.url(), (c) => c.query('CHECKPOINT'));
      const publisher = runPublisher(p);
      await withClient(p.sourceUrl, (c) => c.query("INSERT INTO public.t SELECT i, 'v' || i FROM generate_series(1, 20) i"));
      await waitFor('the replica to apply the batch', async () => (await appliedBatch(p)) >= 1, 30_000);
      await publisher.stop();
      await crashy.halt('immediate');
      await crashy.restart();
      expect(await rowBytes(p.sourceUrl, 'public.t')).toEqual(await rowBytes(p.replicas[0]!.url, 'public.t'));
      const cursor = await withClient(p.sourceUrl, async (c) => (await c.query('SELECT last_batch_id::int AS n FROM pgfanout.batch_cursor')).rows[0].n);
      expect(cursor).toBeGreaterThanOrEqual(1);
    } finally {
      await pipeline?.stop();
      pipeline = undefined;
      await crashy.stop();
    }
  });
});
