/**
 * The dead-letter queue tools against the local SQS endpoint (real SDK client over HTTP) and a
 * real PostgreSQL replica: listing never deletes and puts every message back, shows the first 10
 * per FIFO group in stream order with each dry run's verdict; skipping records the skip before
 * deleting; moving back keeps the order; unknown queues and batches are named.
 */
import { CreateEventSourceMappingCommand, CreateFunctionCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import type { SNSClient } from '@aws-sdk/client-sns';
import { GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { installReplica } from './install.ts';
import { encodeBatch } from '#core/source/encoder.ts';
import { collect, tokensOf } from '#testing/batches.ts';
import { createDatabase } from '#testing/servers.ts';
import { awsClients } from './aws.ts';
import { createFanout } from '#local/fanout.ts';
import { startEndpoint, type Endpoint } from '#local/endpoint/index.ts';
import { LocalPostgres } from '#local/postgres.ts';
import { formatListing } from '../cli/redrive.ts';
import { main } from '../cli/main.ts';
import { APPLIER_ENV } from '#core/config.ts';
import { findQueues, listDeadLetters, moveBack, planSkip, skipBatch, type ReplicaQueuePair } from './redrive.ts';

let server: LocalPostgres;
let replica: pg.Client;
let endpoint: Endpoint;
let sqs: SQSClient;
let sns: SNSClient;
let lambda: LambdaClient;
let counter = 0;

beforeAll(async () => {
  [server, endpoint] = await Promise.all([LocalPostgres.start({ major: 18 }), startEndpoint({ port: 0 })]);
  ({ sqs, sns, lambda } = awsClients({ endpoint: endpoint.url }));
  replica = (await createDatabase(server, 'redrive')).client;
  await installReplica(replica);
  await replica.query('CREATE TABLE public.t (id int PRIMARY KEY, note text)');
});

afterAll(async () => {
  sqs?.destroy();
  sns?.destroy();
  lambda?.destroy();
  await replica?.end();
  await endpoint?.close();
  await server?.stop();
});

/** A fresh deployment prefix with one replica "a"; `batches` messages of one source parked in its dead-letter queue. */
async function parked(batches: number): Promise<{ queues: ReplicaQueuePair; sourceId: string }> {
  const prefix = `rt${++counter}`;
  await createFanout(sns, sqs, { prefix, replicas: ['a'] });
  const queues = await findQueues(sqs, prefix, 'a');
  const sourceId = `source-${counter}`;
  // The replica follows this source from its first batch on.
  await replica.query('SELECT pgfanout.replica_start($1, 0)', [sourceId]);
  for (let batch = 1; batch <= batches; batch++) {
    const [message] = await collect(
      encodeBatch({ sourceId, batchId: String(batch), prevBatchId: String(batch - 1) }, tokensOf([{ op: 'I', schema: 'public', table: 't', txid: '9', new: { id: String(counter * 1000 + batch), note: 'n' } }])),
    );
    await sqs.send(new SendMessageCommand({ QueueUrl: queues.deadLetterQueueUrl, MessageBody: message!.body, MessageGroupId: sourceId, MessageDeduplicationId: `${sourceId}-${batch}` }));
  }
  return { queues, sourceId };
}

async function depth(url: string): Promise<{ visible: number; hidden: number }> {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
  return { visible: Number(out.Attributes?.ApproximateNumberOfMessages), hidden: Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible) };
}

describe('listDeadLetters', () => {
  it('shows the first 10 messages of each group in stream order with dry-run verdicts, and puts every message back', async () => {
    // Prepare: 12 batches of one source, and a body that is no pgfanout message in another group.
    const { queues, sourceId } = await parked(12);
    await sqs.send(new SendMessageCommand({ QueueUrl: queues.deadLetterQueueUrl, MessageBody: 'not json', MessageGroupId: 'other', MessageDeduplicationId: 'junk' }));
    // Act
    const listing = await listDeadLetters(sqs, queues, replica);
    // Assess
    expect(listing.approximateDepth).toBe(13);
    expect(listing.messages.map((m) => m.batchId ?? 'junk')).toEqual(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', 'junk']);
    expect(listing.messages[0]).toMatchObject({ sourceId, part: 0, final: true, changes: 1, tables: [{ schema: 'public', table: 't' }], dryRun: { outcome: 'applied', changes: 1 } });
    expect(listing.messages[1]?.dryRun).toEqual({ error: { code: 'GAP', message: expect.stringContaining('expected the batch after batch 0, received batch 2 part 0') } });
    expect(listing.messages[10]?.dryRun).toMatchObject({ error: { code: 'MALFORMED_MESSAGE' } });
    expect(await depth(queues.deadLetterQueueUrl)).toEqual({ visible: 13, hidden: 0 });
    // The dry runs changed nothing.
    expect((await replica.query('SELECT applied_batch_id::int AS n FROM pgfanout.replica_position WHERE source_id = $1', [sourceId])).rows[0].n).toBe(0);
    expect((await replica.query('SELECT count(*)::int AS n FROM public.t')).rows[0].n).toBe(0);
    const text = formatListing(listing);
    expect(text).toContain(`source ${sourceId} batch 1 part 0, 1 change(s) to public.t`);
    expect(text).toContain('would apply now');
    expect(text).toContain('(waits behind the message above)');
    expect(text).toContain('… and about 2 more behind these');
  });

  it('names a queue that does not exist', async () => {
    await expect(findQueues(sqs, 'nowhere', 'a')).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining('queue nowhere-a.fifo does not exist (replica "a", prefix "nowhere")') });
  });
});

describe('skipBatch', () => {
  it('refuses a batch that is not parked, naming what is', async () => {
    const { queues } = await parked(2);
    await expect(planSkip(sqs, queues, replica, '7')).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining('it holds batch(es) 1, 2') });
    await expect(planSkip(sqs, queues, replica, '1; DROP')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await depth(queues.deadLetterQueueUrl)).toEqual({ visible: 2, hidden: 0 });
  });

  it('records the skip on the replica, deletes only that batch\'s message, and the batch after it then applies', async () => {
    const { queues, sourceId } = await parked(3);
    await replica.query(`ALTER TABLE public.t ADD CONSTRAINT no_skip_${counter} CHECK (id <> ${counter * 1000 + 1})`);

    const plan = await planSkip(sqs, queues, replica, '1');
    expect(plan).toMatchObject({ sourceId, batchId: '1', changes: 1, messages: 1, reason: expect.stringContaining(`no_skip_${counter}`) });
    const result = await skipBatch(sqs, queues, replica, '1');

    expect(result).toMatchObject({ sourceId, batchId: '1', deleted: 1, notDeleted: [], tables: [{ schema: 'public', table: 't' }] });
    expect(await depth(queues.deadLetterQueueUrl)).toEqual({ visible: 2, hidden: 0 });
    const recorded = await replica.query('SELECT batch_id::int, tables, reason FROM pgfanout.replica_skipped WHERE source_id = $1', [sourceId]);
    expect(recorded.rows).toEqual([{ batch_id: 1, tables: ['public.t'], reason: expect.stringContaining('DB_ERROR') }]);
    const listing = await listDeadLetters(sqs, queues, replica);
    expect(listing.messages.map((m) => [m.batchId, 'outcome' in m.dryRun ? m.dryRun.outcome : m.dryRun.error.code])).toEqual([
      ['2', 'applied'],
      ['3', 'GAP'],
    ]);
    // Skipping again is refused by the replica: batch 1 is behind it now.
    await expect(skipBatch(sqs, queues, replica, '3')).rejects.toMatchObject({ code: 'REFUSED', message: expect.stringContaining('only the next batch, 2, may be skipped, not 3') });
    expect(await depth(queues.deadLetterQueueUrl)).toEqual({ visible: 2, hidden: 0 });
  });
});

describe('moveBack', () => {
  it('moves every parked message back to the replica\'s queue in order and reports progress', async () => {
    const { queues } = await parked(4);
    const progress: [number, number][] = [];

    const result = await moveBack(sqs, queues, { onProgress: (moved, of) => progress.push([moved, of]) });

    expect(result).toEqual({ moved: 4, toMove: 4 });
    expect(progress.at(-1)).toEqual([4, 4]);
    expect(await depth(queues.deadLetterQueueUrl)).toEqual({ visible: 0, hidden: 0 });
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queues.queueUrl, MaxNumberOfMessages: 10 }));
    expect(out.Messages?.map((m) => (JSON.parse(m.Body as string) as { batch: string }).batch)).toEqual(['1', '2', '3', '4']);
  });
});

describe('pgfanout redrive dry runs', () => {
  /** Runs the real command in this process against the local endpoint; returns its exit code and output. */
  async function redrive(...args: string[]): Promise<{ code: number; out: string }> {
    const out: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
    const error = vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void out.push(a.join(' ')));
    const before = process.env.AWS_ENDPOINT_URL;
    process.env.AWS_ENDPOINT_URL = endpoint.url;
    try {
      return { code: await main(['redrive', ...args]), out: out.join('\n') };
    } finally {
      if (before === undefined) delete process.env.AWS_ENDPOINT_URL;
      else process.env.AWS_ENDPOINT_URL = before;
      log.mockRestore();
      error.mockRestore();
    }
  }

  /** Deployment `prefix` with replica "a" whose applier follows `sources` and runs schema changes; a schema change of `sourceId` parked. */
  async function deployment(sources: string, sourceId: string): Promise<string> {
    const prefix = `rd${++counter}`;
    await createFanout(sns, sqs, { prefix, replicas: ['a'] });
    const queues = await findQueues(sqs, prefix, 'a');
    const env = {
      [APPLIER_ENV.REPLICA_NAME]: 'a',
      [APPLIER_ENV.REPLICA_URL]: server.url('redrive'),
      [APPLIER_ENV.SOURCE_IDS]: sources,
      [APPLIER_ENV.ALLOW_SCHEMA_CHANGES]: 'true',
      [APPLIER_ENV.SIGNING_KEY_SECRET]: `${prefix}-signing-key`,
    };
    await lambda.send(new CreateFunctionCommand({ FunctionName: `${prefix}-applier-a`, Role: 'arn:aws:iam::000000000000:role/r', Code: { ZipFile: new Uint8Array() }, Environment: { Variables: env } }));
    await lambda.send(new CreateEventSourceMappingCommand({ FunctionName: `${prefix}-applier-a`, EventSourceArn: queues.queueArn }));
    const [message] = await collect(
      encodeBatch({ sourceId, batchId: '1', prevBatchId: '0' }, tokensOf([{ op: 'S', schema: '', table: '', txid: '9', new: { search_path: 'public', sql: `CREATE TABLE public.${prefix} (id int)` } }])),
    );
    await sqs.send(new SendMessageCommand({ QueueUrl: queues.deadLetterQueueUrl, MessageBody: message!.body, MessageGroupId: sourceId, MessageDeduplicationId: `${sourceId}-1` }));
    return prefix;
  }

  it('answer for the replica’s applier: the sources it follows and whether it runs schema changes, read from its function', async () => {
    // Prepare: the replica follows its source from the start; one deployment's applier follows it, another's a different source.
    const sourceId = `source-rd-${counter}`;
    await replica.query('SELECT pgfanout.replica_start($1, 0)', [sourceId]);
    const follows = await deployment(sourceId, sourceId);
    const other = await deployment('another-source', sourceId);
    // Act
    const allowed = await redrive('--replica', `a=${server.url('redrive')}`, '--prefix', follows);
    const refused = await redrive('--replica', `a=${server.url('redrive')}`, '--prefix', other);
    // Assess
    expect(allowed.code).toBe(0);
    expect(allowed.out).toContain(`source ${sourceId} batch 1 part 0, 1 change(s)`);
    expect(allowed.out).toMatch(/\n {4}would apply now/);
    expect(refused.code).toBe(0);
    expect(refused.out).toMatch(new RegExp(`fails: UNTRUSTED_MESSAGE: replica refuses the message \\(batch 1, part 0, source ${sourceId}\\): .*another-source`));
    // The dry runs changed nothing.
    expect((await replica.query("SELECT to_regclass($1) AS t", [`public.${follows}`])).rows[0]?.t).toBeNull();
  });

  it('says so when the replica’s applier cannot be found', async () => {
    const prefix = `rd${++counter}`;
    await createFanout(sns, sqs, { prefix, replicas: ['a'] });
    const { code, out } = await redrive('--replica', `a=${server.url('redrive')}`, '--prefix', prefix);
    expect(code).not.toBe(0);
    expect(out).toContain(`replica a: no event source mapping reads arn:aws:sqs:`);
    expect(out).toContain("so its applier's settings cannot be read for the dry runs");
  });
});
