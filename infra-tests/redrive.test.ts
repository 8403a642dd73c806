/**
 * End-to-end: `pgfanout redrive` against the whole pipeline on this machine (real PostgreSQL
 * servers, the local SNS/SQS endpoint, real SDK clients). A poison message parks in replica a's
 * dead-letter queue with the batch behind it; redrive lists both with the replica's real error,
 * refuses to move them while the cause is there, moves them back once it is fixed, and the
 * replicas converge. Or the poison batch is skipped: later batches apply, and the comparison
 * shows exactly the skipped row.
 */
import { GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { waitForCatchUp } from '#local/command.ts';
import { DEMO_SCHEMA_SQL, DEMO_TABLES } from '#local/workload.ts';
import { replicatedTables, statusReport } from '#ops/status.ts';
import { runCli } from '#testing/cli.ts';
import { findQueues, moveBacklogBehind } from '../functions/ops/redrive.ts';
import { verifyTables } from '../functions/ops/verify.ts';
import { waitFor } from '#testing/wait.ts';

let pipeline: Pipeline | undefined;
const savedEndpoint = process.env.AWS_ENDPOINT_URL;

beforeEach(() => {
  delete process.env.AWS_ENDPOINT_URL;
});

afterEach(async () => {
  vi.restoreAllMocks();
  if (savedEndpoint === undefined) delete process.env.AWS_ENDPOINT_URL;
  else process.env.AWS_ENDPOINT_URL = savedEndpoint;
  await pipeline?.stop();
  pipeline = undefined;
});

const ITEMS_SQL = 'CREATE TABLE demo.items (id int PRIMARY KEY, note text)';

async function start(): Promise<Pipeline> {
  const p = await Pipeline.start({ startPublisher: false, tickMs: 200, visibilityTimeoutSeconds: 2, maxReceiveCount: 2, maxRetryDelaySeconds: 2 });
  for (const url of [p.sourceUrl, ...p.replicas.map((r) => r.url)]) await withClient(url, (c) => c.query(`${DEMO_SCHEMA_SQL}; ${ITEMS_SQL}`));
  await withClient(p.sourceUrl, async (c) => {
    for (const t of [...DEMO_TABLES, 'demo.items']) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
  });
  process.env.AWS_ENDPOINT_URL = p.endpointUrl;
  return p;
}

const pgfanout = runCli;

async function finishedBatch(p: Pipeline): Promise<number> {
  const report = await statusReport(p.sourceUrl, [], { prefix: 'pgfanout-local', endpoint: p.endpointUrl });
  return Number(report.source.finishedBatchId ?? 0);
}

/** Commits `sql` on the source and waits until it is published in a batch of its own; returns that batch. */
async function commitOwnBatch(p: Pipeline, sql: string): Promise<number> {
  const before = await finishedBatch(p);
  await withClient(p.sourceUrl, (c) => c.query(sql));
  return waitFor(`a batch after ${before} to be published`, async () => {
    const now = await finishedBatch(p);
    return now > before ? now : undefined;
  });
}

async function deadLetterDepth(p: Pipeline, replica: number): Promise<{ visible: number; hidden: number }> {
  const out = await p.sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: p.replicas[replica]!.deadLetterQueueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
  );
  return { visible: Number(out.Attributes?.ApproximateNumberOfMessages), hidden: Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible) };
}

async function compare(p: Pipeline, replica: number) {
  const tables = await withClient(p.sourceUrl, replicatedTables);
  return withClient(p.sourceUrl, (s) => withClient(p.replicas[replica]!.url, (c) => verifyTables(s, c, tables)));
}

describe('pgfanout redrive', () => {
  it('lists the parked batches with the replica\'s error, refuses to move them before the fix, moves them after it, and the replicas converge', async () => {
    pipeline = await start();
    const a = pipeline.replicas[0]!;
    // Replica a lacks a column the source has: that change cannot apply there.
    await withClient(pipeline.sourceUrl, (c) => c.query('ALTER TABLE demo.audit ADD COLUMN severity int'));
    await withClient(pipeline.replicas[1]!.url, (c) => c.query('ALTER TABLE demo.audit ADD COLUMN severity int'));
    pipeline.startPublisher();
    await commitOwnBatch(pipeline, `INSERT INTO demo.customers (name) VALUES ('before the poison')`);
    const poison = await commitOwnBatch(pipeline, `INSERT INTO demo.audit (kind, note, severity) VALUES ('poison', 'x', 3)`);
    const after = await commitOwnBatch(pipeline, `INSERT INTO demo.customers (name) VALUES ('after the poison')`);
    await waitFor('both batches to park in replica a\'s dead-letter queue', async () => (await deadLetterDepth(pipeline!, 0)).visible >= 2, 60_000);

    const listed = await pgfanout('redrive', '--replica', `a=${a.url}`);

    expect(listed.code).toBe(0);
    const lines = listed.out.split('\n');
    const first = lines.findIndex((l) => l.includes(`batch ${poison} part 0`));
    const second = lines.findIndex((l) => l.includes(`batch ${after} part 0`));
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(first);
    expect(lines[first]).toContain('1 change(s) to demo.audit');
    expect(lines[first + 1]).toContain('fails: SCHEMA_MISMATCH: replica table "demo"."audit" has no column "severity"');
    expect(lines[second + 1]).toMatch(/fails: GAP: .*expected the batch after batch \d+.*\(waits behind the message above\)/);
    // Listing put every message back: nothing deleted, nothing left hidden.
    expect(await deadLetterDepth(pipeline, 0)).toEqual({ visible: 2, hidden: 0 });

    const refused = await pgfanout('redrive', '--replica', `a=${a.url}`, '--move');
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(new RegExp(`not moving: the first parked message of source \\S+ \\(batch ${poison}\\) still fails: replica table "demo"\\."audit" has no column "severity"`));
    expect(await deadLetterDepth(pipeline, 0)).toEqual({ visible: 2, hidden: 0 });

    await withClient(a.url, (c) => c.query('ALTER TABLE demo.audit ADD COLUMN severity int'));
    const moved = await pgfanout('redrive', '--replica', `a=${a.url}`, '--move');
    expect(moved.code).toBe(0);
    expect(moved.out).toMatch(/would apply now/);
    expect(moved.out).toContain('moved 2 message(s) from pgfanout-local-a-dlq.fifo back to pgfanout-local-a.fifo');

    await waitForCatchUp(pipeline, 120_000);
    for (const r of [0, 1]) expect((await compare(pipeline, r)).differences).toEqual([]);
    const emptied = await pgfanout('redrive', '--replica', `a=${a.url}`);
    expect(emptied.out).toBe('replica a: pgfanout-local-a-dlq.fifo is empty');
  });

  it('skips a poison batch: only with --yes, later batches apply, and the comparison shows the skipped row by key', async () => {
    pipeline = await start();
    const a = pipeline.replicas[0]!;
    // Replica a refuses one value: the batch carrying it cannot apply there.
    await withClient(a.url, (c) => c.query(`ALTER TABLE demo.items ADD CONSTRAINT no_poison CHECK (note IS DISTINCT FROM 'poison')`));
    pipeline.startPublisher();
    await commitOwnBatch(pipeline, `INSERT INTO demo.items VALUES (1, 'fine')`);
    const poison = await commitOwnBatch(pipeline, `INSERT INTO demo.items VALUES (2, 'poison')`);
    await commitOwnBatch(pipeline, `INSERT INTO demo.items VALUES (3, 'after')`);
    await waitFor('both batches to park in replica a\'s dead-letter queue', async () => (await deadLetterDepth(pipeline!, 0)).visible >= 2, 60_000);

    const unconfirmed = await pgfanout('redrive', '--replica', `a=${a.url}`, '--skip', String(poison), '--source', pipeline.sourceUrl);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.err).toContain(`refusing to skip without --yes. With --yes, batch ${poison} of source`);
    expect(unconfirmed.err).toContain('1 change(s) to demo.items are then lost on this replica');
    expect(unconfirmed.err).toContain('no_poison');
    expect(await deadLetterDepth(pipeline, 0)).toEqual({ visible: 2, hidden: 0 });
    const notNext = await pgfanout('redrive', '--replica', `a=${a.url}`, '--skip', String(poison + 1), '--source', pipeline.sourceUrl, '--yes');
    expect(notNext.code).toBe(1);
    expect(notNext.err).toContain(`only the next batch, ${poison}, may be skipped, not ${poison + 1}`);

    const skipped = await pgfanout('redrive', '--replica', `a=${a.url}`, '--skip', String(poison), '--source', pipeline.sourceUrl, '--yes', '--move', '--timeout', '60');

    expect(skipped.code).toBe(0);
    expect(skipped.out).toContain(`replica a: skipped batch ${poison} of source`);
    expect(skipped.out).toContain('deleted 1 message(s) from pgfanout-local-a-dlq.fifo');
    expect(skipped.out).toContain('moved 1 message(s)');
    expect(skipped.out).toContain('demo.items: 1 row(s) missing, 0 extra, 0 changed');
    expect(skipped.out).toContain('missing (id)=(2): (2,poison)');
    // Later batches apply on replica a; the skip is recorded there.
    await commitOwnBatch(pipeline, `INSERT INTO demo.items VALUES (4, 'later')`);
    await waitForCatchUp(pipeline, 120_000);
    const report = await compare(pipeline, 0);
    expect(report.differences).toEqual([
      expect.objectContaining({ table: 'demo.items', method: 'chunked', missing: 1, extra: 0, changed: 0, examples: [{ kind: 'missing', key: '(id)=(2)', row: '(2,poison)' }] }),
    ]);
    expect((await compare(pipeline, 1)).differences).toEqual([]);
    const recorded = await withClient(a.url, (c) => c.query('SELECT batch_id::int, tables, reason FROM pgfanout.replica_skipped'));
    expect(recorded.rows).toEqual([{ batch_id: poison, tables: ['demo.items'], reason: expect.stringMatching(/no_poison/) }]);
  });

  it('moves the parked batches back in stream order when more batches wait in the queue behind them: the backlog goes behind the parked ones first, and the replica applies every batch once, in order', async () => {
    pipeline = await start();
    const a = pipeline.replicas[0]!;
    await withClient(pipeline.sourceUrl, (c) => c.query('ALTER TABLE demo.audit ADD COLUMN severity int'));
    await withClient(pipeline.replicas[1]!.url, (c) => c.query('ALTER TABLE demo.audit ADD COLUMN severity int'));
    pipeline.startPublisher();
    await commitOwnBatch(pipeline, `INSERT INTO demo.customers (name) VALUES ('before the poison')`);
    await commitOwnBatch(pipeline, `INSERT INTO demo.audit (kind, note, severity) VALUES ('poison', 'x', 3)`);
    await commitOwnBatch(pipeline, `INSERT INTO demo.customers (name) VALUES ('after the poison')`);
    await waitFor('both batches to park in replica a\'s dead-letter queue', async () => (await deadLetterDepth(pipeline!, 0)).visible >= 2, 60_000);

    // While the cause is being fixed the replica's applier is paused, and the stream goes on: these
    // batches wait in its queue. Moved back without care, the parked ones would land behind them.
    const paused = await pgfanout('pause', '--replica', 'a');
    expect(paused.code, paused.err).toBe(0);
    const backlog: number[] = [];
    for (let i = 1; i <= 3; i++) backlog.push(await commitOwnBatch(pipeline, `INSERT INTO demo.customers (name) VALUES ('waiting ${i}')`));
    await waitFor('the backlog to wait in replica a\'s queue', async () => {
      const out = await pipeline!.sqs.send(new GetQueueAttributesCommand({ QueueUrl: a.queueUrl, AttributeNames: ['ApproximateNumberOfMessages'] }));
      return Number(out.Attributes?.ApproximateNumberOfMessages) === 3;
    });

    await withClient(a.url, (c) => c.query('ALTER TABLE demo.audit ADD COLUMN severity int'));
    // A redrive killed after moving the first message of the backlog: nothing is lost, and running
    // it again finishes the job in order.
    const queues = await findQueues(pipeline.sqs, 'pgfanout-local', 'a');
    const killed = new Error('killed');
    await expect(
      moveBacklogBehind(pipeline.sqs, queues, {
        onProgress: () => {
          throw killed;
        },
      }),
    ).rejects.toBe(killed);
    const moved = await pgfanout('redrive', '--replica', `a=${a.url}`, '--move');
    expect(moved.code, moved.err).toBe(0);
    // However the backlog reached the dead-letter queue (moved by the redrive, or parked by SQS
    // itself after maxReceiveCount 2 receives: a poll already waiting when the mapping was disabled,
    // the interrupted run), it sits behind the parked batches, in order: all five go back.
    expect(moved.out).toContain('moved 5 message(s) from pgfanout-local-a-dlq.fifo back to pgfanout-local-a.fifo');
    expect(moved.err).toContain("resumed replica a's applier");

    await waitForCatchUp(pipeline, 120_000);
    for (const r of [0, 1]) expect((await compare(pipeline, r)).differences).toEqual([]);
    expect(await deadLetterDepth(pipeline, 0)).toEqual({ visible: 0, hidden: 0 });
    const applied = await withClient(a.url, async (c) => (await c.query<{ b: string }>('SELECT max(applied_batch_id)::text AS b FROM pgfanout.replica_position')).rows[0]?.b);
    expect(Number(applied)).toBe(backlog.at(-1));
  });
});
