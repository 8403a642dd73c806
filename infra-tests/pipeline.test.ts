/**
 * End-to-end: source → publisher process → SNS FIFO → SQS FIFO per replica → applier
 * handler driven like Lambda's event source mapping → replicas, all on this machine
 * (real PostgreSQL servers, the local SNS/SQS endpoint, real SDK clients over HTTP).
 * Every scenario ends with a row-by-row comparison of the source and each replica.
 */
import { SendMessageCommand, StartMessageMoveTaskCommand, ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { afterEach, describe, expect, it } from 'vitest';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { waitForCatchUp } from '#local/command.ts';
import { DEMO_SCHEMA_SQL, DEMO_TABLES, runDemoWorkload } from '#local/workload.ts';
import { replicatedTables, statusReport } from '#ops/status.ts';
import { verifyTables } from '../functions/ops/verify.ts';
import { pause, waitFor } from '#testing/wait.ts';
import { freePort } from '#local/postgres.ts';

let pipeline: Pipeline | undefined;

afterEach(async () => {
  await pipeline?.stop();
  pipeline = undefined;
});

async function startDemo(options: Parameters<typeof Pipeline.start>[0] = {}): Promise<Pipeline> {
  const p = await Pipeline.start({ startPublisher: false, tickMs: 200, visibilityTimeoutSeconds: 10, maxRetryDelaySeconds: 2, ...options });
  for (const url of [p.sourceUrl, ...p.replicas.map((r) => r.url)]) await withClient(url, (c) => c.query(DEMO_SCHEMA_SQL));
  await withClient(p.sourceUrl, async (c) => {
    for (const t of DEMO_TABLES) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
  });
  return p;
}

/** Asserts that every replica holds exactly the source's rows in every replicated table. */
async function expectConverged(p: Pipeline): Promise<void> {
  await waitForCatchUp(p, 120_000);
  const tables = await withClient(p.sourceUrl, replicatedTables);
  expect(tables.length).toBeGreaterThan(0);
  for (const r of p.replicas) {
    const report = await withClient(p.sourceUrl, (s) => withClient(r.url, (c) => verifyTables(s, c, tables)));
    expect(report.differences, `replica ${r.name} differs`).toEqual([]);
    expect(report.rowsCompared).toBeGreaterThan(0);
  }
}

async function appliedBatch(p: Pipeline, replica: number): Promise<number> {
  const report = await statusReport(p.sourceUrl, [{ name: p.replicas[replica]!.name, url: p.replicas[replica]!.url }], { prefix: 'pgfanout-local', endpoint: p.endpointUrl });
  return Number(report.replicas[0]?.appliedBatchId ?? 0);
}

describe('pipeline end to end', () => {
  it('concurrent INSERT/UPDATE/DELETE/TRUNCATE across tables with foreign keys reaches both replicas', async () => {
    pipeline = await startDemo();
    pipeline.startPublisher();
    const committed = await runDemoWorkload(pipeline.sourceUrl, { clients: 4, transactionsPerClient: 150, truncatePercent: 3 });
    expect(committed).toBeGreaterThan(500);
    await expectConverged(pipeline);
  });

  it('survives the publisher being killed with SIGKILL 10 times during load, applying nothing twice', async () => {
    pipeline = await startDemo();
    pipeline.startPublisher();
    const stopLoad = new AbortController();
    const load = runDemoWorkload(pipeline.sourceUrl, { clients: 3, signal: stopLoad.signal, truncatePercent: 1 });
    for (let i = 0; i < 10; i++) {
      await pause(200 + Math.floor(Math.random() * 800));
      await pipeline.stopPublisher('SIGKILL');
      pipeline.startPublisher();
    }
    stopLoad.abort();
    expect(await load).toBeGreaterThan(0);
    await expectConverged(pipeline);
  });

  it('keeps one publisher active; a standby takes over when the active one dies', async () => {
    pipeline = await startDemo();
    pipeline.startPublisher();
    await waitFor('the first publisher to be active', async () => (await pipeline!.publisherHealth())?.state === 'active');
    const standbyPort = await freePort();
    const standby = pipeline.startPublisher({ healthPort: standbyPort });
    await waitFor('the second publisher to stand by', async () => (await pipeline!.publisherHealth(standbyPort))?.state === 'standby');
    const stopLoad = new AbortController();
    const load = runDemoWorkload(pipeline.sourceUrl, { clients: 2, signal: stopLoad.signal });
    await pause(500);
    await pipeline.stopPublisher('SIGKILL');
    await waitFor('the standby to take over', async () => (await pipeline!.publisherHealth(standbyPort))?.state === 'active', 30_000);
    await pause(500);
    stopLoad.abort();
    await load;
    await expectConverged(pipeline);
    expect(standby.exitCode).toBeNull();
  });

  it('delivers changes committed while no publisher runs (no NOTIFY reaches anyone) once one starts', async () => {
    pipeline = await startDemo();
    await runDemoWorkload(pipeline.sourceUrl, { clients: 2, transactionsPerClient: 50 });
    expect(await appliedBatch(pipeline, 0)).toBe(0);
    pipeline.startPublisher();
    await expectConverged(pipeline);
  });

  it('lets a replica server stop during load and catch up after it restarts, without holding up the other', async () => {
    pipeline = await startDemo();
    pipeline.startPublisher();
    const stopLoad = new AbortController();
    const load = runDemoWorkload(pipeline.sourceUrl, { clients: 2, signal: stopLoad.signal });
    await waitFor('replica a to apply something', async () => (await appliedBatch(pipeline!, 0)) > 0);
    const down = pipeline.replicas[0]!.server!;
    await down.halt('immediate');
    const bBefore = await appliedBatch(pipeline, 1);
    await waitFor('replica b to keep applying while a is down', async () => (await appliedBatch(pipeline!, 1)) > bBefore + 3, 60_000);
    await down.restart();
    stopLoad.abort();
    await load;
    await expectConverged(pipeline);
  });

  it('parks a poison message in the dead-letter queue, stops at the gap, and converges after the fix and a redrive', async () => {
    pipeline = await startDemo({ maxReceiveCount: 2, visibilityTimeoutSeconds: 2 });
    // Replica a lacks a column the source has: changes to that table cannot apply there.
    await withClient(pipeline.sourceUrl, (c) => c.query('ALTER TABLE demo.audit ADD COLUMN severity int'));
    await withClient(pipeline.replicas[1]!.url, (c) => c.query('ALTER TABLE demo.audit ADD COLUMN severity int'));
    pipeline.startPublisher();
    await withClient(pipeline.sourceUrl, (c) => c.query(`INSERT INTO demo.audit (kind, note, severity) VALUES ('poison', 'x', 3)`));
    // The next change goes in a later batch (its own message), after the poison one was published.
    await waitFor('the poison batch to be published', async () => {
      const report = await statusReport(pipeline!.sourceUrl, [], { prefix: 'pgfanout-local', endpoint: pipeline!.endpointUrl });
      return Number(report.source.finishedBatchId ?? 0) >= 1;
    });
    await withClient(pipeline.sourceUrl, (c) => c.query(`INSERT INTO demo.customers (name) VALUES ('after the poison')`));
    const a = pipeline.replicas[0]!;
    await waitFor('both messages to be parked in replica a\'s dead-letter queue', async () => {
      const report = await statusReport(pipeline!.sourceUrl, [{ name: a.name, url: a.url }], { prefix: 'pgfanout-local', endpoint: pipeline!.endpointUrl });
      return (report.replicas[0]?.queue?.deadLetter ?? 0) >= 2;
    }, 60_000);
    // The later change was not applied past the gap.
    const seen = await withClient(a.url, (c) => c.query(`SELECT count(*)::int AS n FROM demo.customers WHERE name = 'after the poison'`));
    expect(seen.rows[0].n).toBe(0);
    // Fix the schema, move the parked messages back in order, and everything converges.
    await withClient(a.url, (c) => c.query('ALTER TABLE demo.audit ADD COLUMN severity int'));
    const dlqArn = `arn:aws:sqs:us-east-1:000000000000:${a.deadLetterQueueUrl.split('/').pop()}`;
    await pipeline.sqs.send(new StartMessageMoveTaskCommand({ SourceArn: dlqArn, DestinationArn: a.queueArn }));
    await expectConverged(pipeline);
  });

  it('applies a message delivered twice only once', async () => {
    pipeline = await startDemo({ startPublisher: false });
    const b = pipeline.replicas[1]!;
    await b.stopRunner();
    pipeline.startPublisher();
    await withClient(pipeline.sourceUrl, (c) => c.query(`INSERT INTO demo.audit (kind, note) VALUES ('once', 'only')`));
    // Take the message off replica b's queue by hand, then deliver its body twice more.
    const received = await waitFor('the message on replica b\'s queue', async () => {
      const out = await pipeline!.sqs.send(new ReceiveMessageCommand({ QueueUrl: b.queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageAttributeNames: ['All'] }));
      return out.Messages && out.Messages.length > 0 ? out.Messages : undefined;
    });
    const body = received[0]!.Body as string;
    // The copies carry the publisher's signature (its message attributes) with the body.
    const attributes = received[0]!.MessageAttributes;
    for (const copy of ['copy-1', 'copy-2']) {
      await pipeline.sqs.send(new SendMessageCommand({ QueueUrl: b.queueUrl, MessageBody: body, MessageAttributes: attributes, MessageGroupId: 'redelivery', MessageDeduplicationId: copy }));
    }
    b.startRunner();
    await expectConverged(pipeline);
    const rows = await withClient(b.url, (c) => c.query(`SELECT count(*)::int AS n FROM demo.audit WHERE kind = 'once'`));
    expect(rows.rows[0].n).toBe(1);
  });
});
