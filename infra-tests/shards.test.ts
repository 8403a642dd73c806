/**
 * Topic shards end to end, on this machine (real PostgreSQL servers, the local SNS/SQS
 * endpoint, real SDK clients over HTTP): past 100 replicas the publisher publishes every part
 * of every batch to each shard's FIFO topic, with the same group and deduplication ids, and
 * finishes a batch only once every topic took all of it. Each replica's queue, whatever its
 * shard, receives every message once, in order.
 */
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { waitForCatchUp } from '#local/command.ts';
import { createFanout } from '#local/fanout.ts';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { DEMO_SCHEMA_SQL, DEMO_TABLES, runDemoWorkload } from '#local/workload.ts';
import { replicatedTables } from '#ops/status.ts';
import { waitFor } from '#testing/wait.ts';
import { FIELDS } from '#core/wire/envelope.ts';
import { awsClients } from '../functions/ops/aws.ts';
import { verifyTables } from '../functions/ops/verify.ts';
import { Publisher } from '../functions/publisher/publisher.ts';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

let pipeline: Pipeline | undefined;
afterEach(async () => {
  await pipeline?.stop();
  pipeline = undefined;
});

/** Receives and deletes every message of `queueUrl` until `expected` have come, then checks that no more do. */
async function drain(sqs: SQSClient, queueUrl: string, expected: number): Promise<string[]> {
  const bodies: string[] = [];
  const receive = async () => {
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0, VisibilityTimeout: 300 }));
    const messages = out.Messages ?? [];
    if (messages.length > 0) {
      await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: messages.map((m, i) => ({ Id: `d${i}`, ReceiptHandle: m.ReceiptHandle as string })) }));
    }
    bodies.push(...messages.map((m) => m.Body as string));
    return messages.length;
  };
  await waitFor(`${expected} messages in ${queueUrl}`, async () => {
    await receive();
    return bodies.length >= expected;
  }, 60_000);
  expect(await receive(), `nothing more in ${queueUrl}`).toBe(0);
  return bodies;
}

describe('topic shards', () => {
  it('250 queues over three topics: every part of every batch reaches each queue once, in order, also when one topic refused a part and the batch was published again', async () => {
    const p = (pipeline = await Pipeline.start({ replicas: [], startPublisher: false }));
    const names = Array.from({ length: 250 }, (_, i) => ({ name: `r${i}`, shard: Math.floor(i / 100) }));
    const fanout = await createFanout(p.sns, p.sqs, { prefix: 'pgfanout-wide', replicas: names, visibilityTimeoutSeconds: 300 });
    expect(fanout.topicArns.map((arn) => arn.split(':').at(-1))).toEqual(['pgfanout-wide.fifo', 'pgfanout-wide-shard1.fifo', 'pgfanout-wide-shard2.fifo']);

    await withClient(p.sourceUrl, async (c) => {
      await c.query('CREATE TABLE public.wide (id int PRIMARY KEY, note text)');
      await c.query("SELECT pgfanout.add_table('public.wide')");
      // One transaction large enough for several PublishBatch calls of 4 KiB messages, then two small ones.
      await c.query("INSERT INTO public.wide SELECT i, repeat('x', 300) || i FROM generate_series(1, 400) i");
      await c.query("UPDATE public.wide SET note = 'changed' WHERE id = 7");
      await c.query('DELETE FROM public.wide WHERE id > 390');
    });

    // Shard 1's topic refuses the second PublishBatch it gets (a permanent error, which the
    // publisher does not retry in place): parts of the batch are already on every topic.
    const sns = awsClients({ endpoint: p.endpointUrl }).sns;
    let shard1Calls = 0;
    let refused = 0;
    sns.middlewareStack.add(
      (next) => async (args) => {
        if ((args.input as { TopicArn?: string }).TopicArn === fanout.topicArns[1] && ++shard1Calls === 2) {
          refused += 1;
          throw Object.assign(new Error('shard 1 refuses this part'), { name: 'AuthorizationErrorException' });
        }
        return next(args);
      },
      { step: 'initialize', name: 'refuseOnShard1Once' },
    );
    const publisher = new Publisher({
      connectSource: async () => {
        const client = new pg.Client({ connectionString: p.sourceUrl, application_name: 'pgfanout-publisher-test' });
        await client.connect();
        return client;
      },
      sns,
      topicArns: fanout.topicArns,
      signingKeys: p.signingKeys(),
      logger: quiet,
      tickMs: 100,
      standbyPollMs: 100,
      backoffMs: { initial: 50, max: 500 },
      maxMessageBytes: 4096,
    });
    const controller = new AbortController();
    const done = publisher.run(controller.signal);
    try {
      await waitFor('every event published', () => publisher.health().eventsPublished >= 411, 60_000);
    } finally {
      controller.abort();
      await done;
      sns.destroy();
    }
    expect(refused).toBe(1);
    expect(publisher.health().lastError).toContain('shard 1 refuses this part');
    const expected = publisher.health().messagesPublished;
    expect(expected).toBeGreaterThan(10);

    const received: string[][] = [];
    for (let i = 0; i < fanout.replicas.length; i += 25) {
      received.push(...(await Promise.all(fanout.replicas.slice(i, i + 25).map((q) => drain(p.sqs, q.queueUrl, expected)))));
    }
    expect(received).toHaveLength(250);
    const first = received[0] as string[];
    expect(first).toHaveLength(expected);
    for (const [i, bodies] of received.entries()) expect(bodies, `queue of r${i}`).toEqual(first);
    // In stream order: batch by batch, part by part, no part twice.
    const positions = first.map((b) => JSON.parse(b) as Record<string, unknown>).map((m) => [BigInt(m[FIELDS.batch] as string), Number(m[FIELDS.part])] as const);
    for (let i = 1; i < positions.length; i++) {
      const [batch, part] = positions[i] as readonly [bigint, number];
      const [prevBatch, prevPart] = positions[i - 1] as readonly [bigint, number];
      expect(batch > prevBatch || (batch === prevBatch && part > prevPart), `message ${i} after message ${i - 1}`).toBe(true);
    }
  }, 600_000);

  it('a replica on each of three topics, applied by real appliers from the publisher process: each converges, receiving every message once', async () => {
    const p = (pipeline = await Pipeline.start({
      replicas: [{ name: 'a' }, { name: 'b', shard: 1 }, { name: 'c', shard: 2 }],
      startPublisher: false,
      tickMs: 200,
      visibilityTimeoutSeconds: 10,
      maxRetryDelaySeconds: 2,
    }));
    expect(p.topicArns).toHaveLength(3);
    for (const url of [p.sourceUrl, ...p.replicas.map((r) => r.url)]) await withClient(url, (c) => c.query(DEMO_SCHEMA_SQL));
    await withClient(p.sourceUrl, async (c) => {
      for (const t of DEMO_TABLES) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
    });
    // The publisher process gets every topic in PGFANOUT_TOPIC_ARN, as the ECS task does.
    expect(p.publisherEnv().PGFANOUT_TOPIC_ARN).toBe(p.topicArns.join(','));
    p.startPublisher();
    expect(await runDemoWorkload(p.sourceUrl, { clients: 2, transactionsPerClient: 60, truncatePercent: 3 })).toBeGreaterThan(100);

    await waitForCatchUp(p, 120_000);
    const tables = await withClient(p.sourceUrl, replicatedTables);
    for (const r of p.replicas) {
      const report = await withClient(p.sourceUrl, (s) => withClient(r.url, (c) => verifyTables(s, c, tables)));
      expect(report.differences, `replica ${r.name} differs`).toEqual([]);
      expect(report.rowsCompared).toBeGreaterThan(0);
    }
    const published = await waitFor('the publisher to have finished every batch', async () => {
      const health = await p.publisherHealth();
      const pending = await withClient(p.sourceUrl, async (c) => (await c.query<{ n: string }>('SELECT count(*)::text AS n FROM pgfanout.status() WHERE oldest_pending_event_time IS NOT NULL')).rows[0]?.n);
      return pending === '0' && health ? Number(health.messagesPublished) : undefined;
    });
    for (const r of p.replicas) {
      await waitFor(`replica ${r.name}'s runner to delete every message`, () => r.runnerStats()?.messagesDeleted === published);
      expect(r.runnerStats()?.messagesReceived, `messages replica ${r.name} received`).toBe(published);
    }
  }, 600_000);
});
