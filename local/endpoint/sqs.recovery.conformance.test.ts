/**
 * The SQS behaviours pgfanout's recovery paths depend on, at the deployed settings (FIFO
 * queue, VisibilityTimeout 1800 s = 6 × the 300 s function timeout, maxReceiveCount 10 to a
 * FIFO dead-letter queue, MessageRetentionPeriod 14 days), on a {@link ManualClock}: hours
 * of simulated time pass in one call, and nothing waits in real time. Each test names the
 * AWS behaviour it checks and the page that documents it. Through the real
 * `@aws-sdk/client-sqs` over HTTP.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  ListMessageMoveTasksCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  StartMessageMoveTaskCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Endpoint, ManualClock, startEndpoint } from './index.ts';
import { rejection, sdkClients, waitFor } from './testing.ts';

/** The deployed settings (cdk/): function timeout 300 s, visibility 6 × that. */
const VISIBILITY_S = 1800;
const MAX_RECEIVE_COUNT = 10;
const RETENTION_S = 14 * 24 * 3600;
const SECOND = 1000;
const DAY = 24 * 3600 * SECOND;

/** Developer Guide pages cited below. */
const DOC = {
  redrive: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-configure-dead-letter-queue-redrive.html',
  dlqRetention: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/setting-up-dead-letter-queue-retention.html',
  fifoLogic: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/FIFO-queues-understanding-logic.html',
  visibility: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html',
  changeVisibilityBatch: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibilityBatch.html',
  receive: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ReceiveMessage.html',
  delay: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-delay-queues.html',
};

let clock: ManualClock;
let endpoint: Endpoint;
let clients: ReturnType<typeof sdkClients>;
let sqs: SQSClient;
let counter = 0;

beforeEach(async () => {
  clock = new ManualClock(Date.UTC(2026, 0, 1));
  endpoint = await startEndpoint({ port: 0, clock });
  clients = sdkClients(endpoint.url);
  sqs = clients.sqs;
});

afterEach(async () => {
  clients.destroy();
  await endpoint.close();
});

interface Queue {
  readonly url: string;
  readonly arn: string;
  readonly name: string;
}

async function createQueue(fifo: boolean, attributes: Record<string, string> = {}): Promise<Queue> {
  counter += 1;
  const name = `recovery-${counter}${fifo ? '.fifo' : ''}`;
  const url = (await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { ...(fifo ? { FifoQueue: 'true' } : {}), ...attributes } })))
    .QueueUrl as string;
  const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn as string;
  return { url, arn, name };
}

/** A queue and its dead-letter queue at the deployed settings. */
async function deployedPair(options: { fifo?: boolean; maxReceiveCount?: number } = {}): Promise<{ source: Queue; dlq: Queue }> {
  const fifo = options.fifo ?? true;
  const dlq = await createQueue(fifo, { MessageRetentionPeriod: String(RETENTION_S) });
  const source = await createQueue(fifo, {
    VisibilityTimeout: String(VISIBILITY_S),
    MessageRetentionPeriod: String(RETENTION_S),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: options.maxReceiveCount ?? MAX_RECEIVE_COUNT }),
  });
  return { source, dlq };
}

interface Received {
  readonly Body: string;
  readonly ReceiptHandle: string;
  readonly MessageId: string;
  readonly Attributes: Record<string, string>;
}

async function send(queue: Queue, body: string, group = 'g', deduplicationId = body.replace(/\s/g, '_')): Promise<string> {
  const fifo = queue.name.endsWith('.fifo');
  const out = await sqs.send(
    new SendMessageCommand({ QueueUrl: queue.url, MessageBody: body, ...(fifo ? { MessageGroupId: group, MessageDeduplicationId: deduplicationId } : {}) }),
  );
  return out.MessageId as string;
}

async function receive(queue: Queue, options: { max?: number; visibility?: number } = {}): Promise<Received[]> {
  const out = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: queue.url,
      MaxNumberOfMessages: options.max ?? 10,
      WaitTimeSeconds: 0,
      MessageSystemAttributeNames: ['All'],
      ...(options.visibility !== undefined ? { VisibilityTimeout: options.visibility } : {}),
    }),
  );
  return (out.Messages ?? []) as unknown as Received[];
}

async function depth(queue: Queue): Promise<{ visible: number; inFlight: number }> {
  const out = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: queue.url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
  );
  return { visible: Number(out.Attributes?.ApproximateNumberOfMessages), inFlight: Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible) };
}

/** Receives `body` maxReceiveCount times (never deleting it); the next receive moves it to the dead-letter queue. */
async function exhaust(source: Queue, maxReceiveCount: number): Promise<void> {
  for (let i = 0; i < maxReceiveCount; i++) {
    expect((await receive(source, { visibility: 0 })).length).toBeGreaterThan(0);
  }
  expect(await receive(source)).toEqual([]);
}

async function moveBack(dlq: Queue, rate?: number): Promise<void> {
  await sqs.send(new StartMessageMoveTaskCommand({ SourceArn: dlq.arn, ...(rate !== undefined ? { MaxNumberOfMessagesPerSecond: rate } : {}) }));
  await waitFor('the move task to complete', async () => {
    const out = await sqs.send(new ListMessageMoveTasksCommand({ SourceArn: dlq.arn }));
    return out.Results?.[0]?.Status === 'COMPLETED';
  });
}

async function movedSoFar(dlq: Queue): Promise<number> {
  const out = await sqs.send(new ListMessageMoveTasksCommand({ SourceArn: dlq.arn }));
  return out.Results?.[0]?.ApproximateNumberOfMessagesMoved ?? 0;
}

function waiting(queue: Queue): number {
  return endpoint.stats().queues.find((q) => q.name === queue.name)?.waiting ?? 0;
}

describe('dead-letter queue redrive (StartMessageMoveTask)', () => {
  it(`"All redriven messages are considered new messages and are assigned a new messageID and enqueueTime": new MessageId, SentTimestamp of the move, receive count from 0, no DeadLetterQueueSourceArn (${DOC.redrive})`, async () => {
    const { source, dlq } = await deployedPair({ maxReceiveCount: 1 });
    const originalId = await send(source, 'poison');
    const sentAt = clock.now();
    await exhaust(source, 1);
    clock.advance(2 * 3600 * SECOND);
    const movedAt = clock.now();
    await moveBack(dlq);
    const [back] = await receive(source);
    expect(back?.Body).toBe('poison');
    expect(back?.MessageId).not.toBe(originalId);
    expect(Number(back?.Attributes.SentTimestamp)).toBe(movedAt);
    expect(Number(back?.Attributes.SentTimestamp)).not.toBe(sentAt);
    expect(back?.Attributes.ApproximateReceiveCount).toBe('1');
    expect(back?.Attributes.DeadLetterQueueSourceArn).toBeUndefined();
    expect(back?.Attributes.MessageGroupId).toBe('g');
  });

  it(`FIFO: a redriven message goes behind the messages already in its group, not back to its old place ("the destination queue ingests the redriven messages … according to the order in which it receives them", ${DOC.redrive})`, async () => {
    const { source, dlq } = await deployedPair({ maxReceiveCount: 1 });
    await send(source, 'first (failed)');
    await exhaust(source, 1);
    await send(source, 'second');
    await send(source, 'third');
    await moveBack(dlq);
    const bodies = (await receive(source)).map((m) => m.Body);
    expect(bodies).toEqual(['second', 'third', 'first (failed)']);
  });

  it(`FIFO: "the redriven messages will interweave with the new messages from the producer" — at MaxNumberOfMessagesPerSecond 1 on the endpoint's clock (${DOC.redrive})`, async () => {
    const { source, dlq } = await deployedPair({ maxReceiveCount: 1 });
    for (const body of ['d1', 'd2', 'd3']) {
      await send(source, body);
      await exhaust(source, 1);
    }
    await sqs.send(new StartMessageMoveTaskCommand({ SourceArn: dlq.arn, MaxNumberOfMessagesPerSecond: 1 }));
    await waitFor('the first step of the task', async () => (await movedSoFar(dlq)) === 1);
    await send(source, 'n1');
    clock.advance(SECOND - 1);
    expect(await movedSoFar(dlq)).toBe(1); // the next step is due one second after the last, on the clock
    clock.advance(1); // the step runs inside advance(), not later in real time
    expect(await movedSoFar(dlq)).toBe(2);
    await send(source, 'n2');
    clock.advance(SECOND);
    expect(await movedSoFar(dlq)).toBe(3);
    const bodies = (await receive(source)).map((m) => m.Body);
    expect(bodies).toEqual(['d1', 'n1', 'd2', 'n2', 'd3']);
  });

  it(`the redrive task resets the retention period: a redriven message is kept 14 days from the move, whenever it was first sent (${DOC.redrive})`, async () => {
    const { source, dlq } = await deployedPair({ maxReceiveCount: 1 });
    await send(source, 'old');
    await exhaust(source, 1); // moved to the FIFO DLQ at day 0
    clock.advance(13 * DAY);
    await moveBack(dlq); // back in the source at day 13
    clock.advance(13 * DAY); // day 26: 26 days after the send, 13 after the redrive
    expect(await depth(source)).toEqual({ visible: 1, inFlight: 0 });
    clock.advance(DAY); // day 27: 14 days after the redrive
    expect(await depth(source)).toEqual({ visible: 0, inFlight: 0 });
  });
});

describe('FIFO dead-letter queue', () => {
  it(`"When a message is moved from a FIFO queue to a FIFO DLQ, the original message's deduplication ID will be replaced with the original message's ID" (${DOC.redrive})`, async () => {
    const { source, dlq } = await deployedPair({ maxReceiveCount: 1 });
    const id = await send(source, 'poison', 'g', 'position-42');
    await exhaust(source, 1);
    const [dead] = await receive(dlq);
    expect(dead?.MessageId).toBe(id);
    expect(dead?.Attributes.MessageDeduplicationId).toBe(id);
    expect(dead?.Attributes.MessageGroupId).toBe('g');
    expect(dead?.Attributes.DeadLetterQueueSourceArn).toBe(source.arn);
  });

  it(`two messages that shared a deduplication id are both stored in the FIFO DLQ ("DLQ deduplication will not prevent storing of two independent messages", ${DOC.redrive})`, async () => {
    const { source, dlq } = await deployedPair({ maxReceiveCount: 1 });
    await send(source, 'one', 'g', 'same');
    await exhaust(source, 1);
    clock.advance(5 * 60 * SECOND); // past the source queue's 5-minute deduplication interval
    await send(source, 'two', 'g', 'same');
    await exhaust(source, 1);
    expect((await receive(dlq)).map((m) => m.Body)).toEqual(['one', 'two']);
  });

  it(`"For FIFO queues, the enqueue timestamp resets when the message is moved to a dead-letter queue": retention counts from the move (${DOC.dlqRetention})`, async () => {
    const { source, dlq } = await deployedPair({ maxReceiveCount: 1 });
    await send(source, 'late');
    clock.advance(13 * DAY);
    await exhaust(source, 1); // moved at day 13
    clock.advance(14 * DAY - 1); // day 27, just under 14 days after the move
    expect(await depth(dlq)).toEqual({ visible: 1, inFlight: 0 });
    expect(endpoint.stats().queues.find((q) => q.name === dlq.name)?.oldestAgeSeconds).toBe(14 * 24 * 3600 - 1);
    clock.advance(1);
    expect(await depth(dlq)).toEqual({ visible: 0, inFlight: 0 });
  });

  it(`standard queues: "the expiration of a message is always based on its original enqueue timestamp" (${DOC.dlqRetention})`, async () => {
    const { source, dlq } = await deployedPair({ fifo: false, maxReceiveCount: 1 });
    await send(source, 'late');
    clock.advance(13 * DAY);
    await exhaust(source, 1); // moved at day 13
    expect(await depth(dlq)).toEqual({ visible: 1, inFlight: 0 });
    expect(endpoint.stats().queues.find((q) => q.name === dlq.name)?.oldestAgeSeconds).toBe(0); // the age counts from the move
    clock.advance(DAY); // day 14 after the send
    expect(await depth(dlq)).toEqual({ visible: 0, inFlight: 0 });
  });
});

describe('FIFO in-flight messages block their group', () => {
  it(`changing one in-flight message's visibility to 0 does not release its group while others are in flight ("no more messages for the same message group ID are returned unless you delete the message or it becomes visible", ${DOC.fifoLogic})`, async () => {
    const { source } = await deployedPair();
    for (const body of ['m1', 'm2', 'm3', 'm4']) await send(source, body);
    await send(source, 'other group', 'h');
    const batch = await receive(source, { max: 3 });
    expect(batch.map((m) => m.Body)).toEqual(['m1', 'm2', 'm3']);
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: source.url, ReceiptHandle: batch[1]?.ReceiptHandle, VisibilityTimeout: 0 }));
    expect((await receive(source)).map((m) => m.Body)).toEqual(['other group']);
    expect(await receive(source)).toEqual([]);
    expect(await depth(source)).toEqual({ visible: 2, inFlight: 3 });
  });

  it(`the group is released when its last in-flight message is deleted, and the message made visible comes back in its place (${DOC.fifoLogic})`, async () => {
    const { source } = await deployedPair();
    for (const body of ['m1', 'm2', 'm3', 'm4']) await send(source, body);
    const batch = await receive(source, { max: 3 });
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: source.url, ReceiptHandle: batch[1]?.ReceiptHandle, VisibilityTimeout: 0 }));
    await sqs.send(new DeleteMessageCommand({ QueueUrl: source.url, ReceiptHandle: batch[0]?.ReceiptHandle }));
    expect(await receive(source)).toEqual([]);
    await sqs.send(new DeleteMessageCommand({ QueueUrl: source.url, ReceiptHandle: batch[2]?.ReceiptHandle }));
    const again = await receive(source);
    expect(again.map((m) => `${m.Body}#${m.Attributes.ApproximateReceiveCount}`)).toEqual(['m2#2', 'm4#1']);
  });

  it(`at VisibilityTimeout 1800 a received group comes back after 1800 simulated seconds, not before, and wakes a waiting long poll ("If a message is available, the call returns sooner than WaitTimeSeconds", ${DOC.receive})`, async () => {
    const { source } = await deployedPair();
    for (const body of ['a', 'b']) await send(source, body);
    expect((await receive(source)).map((m) => m.Body)).toEqual(['a', 'b']);
    clock.advance(VISIBILITY_S * SECOND - 10 * SECOND);
    const poll = sqs.send(new ReceiveMessageCommand({ QueueUrl: source.url, WaitTimeSeconds: 20, MaxNumberOfMessages: 10 }));
    await waitFor('the receive to be waiting', () => waiting(source) === 1);
    clock.advance(10 * SECOND - 1);
    expect(waiting(source)).toBe(1);
    expect(await depth(source)).toEqual({ visible: 0, inFlight: 2 });
    clock.advance(1);
    expect(waiting(source)).toBe(0); // answered inside advance(), without real waiting
    const out = await poll;
    expect(out.Messages?.map((m) => m.Body)).toEqual(['a', 'b']);
  });

  it(`a FIFO queue's DelaySeconds runs on the endpoint's clock: a waiting long poll gets the message when the delay ends (${DOC.delay})`, async () => {
    const queue = await createQueue(true, { DelaySeconds: '900' });
    await send(queue, 'delayed');
    clock.advance(890 * SECOND);
    const poll = sqs.send(new ReceiveMessageCommand({ QueueUrl: queue.url, WaitTimeSeconds: 20 }));
    await waitFor('the receive to be waiting', () => waiting(queue) === 1);
    clock.advance(10 * SECOND - 1);
    expect(waiting(queue)).toBe(1);
    clock.advance(1);
    expect(waiting(queue)).toBe(0);
    expect((await poll).Messages?.map((m) => m.Body)).toEqual(['delayed']);
  });

  it(`a long poll with nothing to receive ends after WaitTimeSeconds of the endpoint's clock, with no messages (${DOC.receive})`, async () => {
    const { source } = await deployedPair();
    const poll = sqs.send(new ReceiveMessageCommand({ QueueUrl: source.url, WaitTimeSeconds: 20 }));
    await waitFor('the receive to be waiting', () => waiting(source) === 1);
    clock.advance(20 * SECOND - 1);
    expect(waiting(source)).toBe(1);
    clock.advance(1);
    expect(waiting(source)).toBe(0); // answered inside advance(), without real waiting
    expect((await poll).Messages ?? []).toEqual([]);
  });
});

describe('ChangeMessageVisibilityBatch at the deployed settings', () => {
  it(`"The result of the action on each message is reported individually in the response" (${DOC.changeVisibilityBatch})`, async () => {
    const { source } = await deployedPair();
    for (const group of ['a', 'b', 'c']) await send(source, group, group);
    const [a, b, c] = await receive(source);
    await sqs.send(new DeleteMessageCommand({ QueueUrl: source.url, ReceiptHandle: c?.ReceiptHandle }));
    const out = await sqs.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: source.url,
        Entries: [
          { Id: 'extend', ReceiptHandle: a?.ReceiptHandle, VisibilityTimeout: VISIBILITY_S },
          { Id: 'release', ReceiptHandle: b?.ReceiptHandle, VisibilityTimeout: 0 },
          { Id: 'deleted', ReceiptHandle: c?.ReceiptHandle, VisibilityTimeout: 0 },
          { Id: 'garbage', ReceiptHandle: 'not-a-receipt-handle', VisibilityTimeout: 0 },
          { Id: 'too-long', ReceiptHandle: a?.ReceiptHandle, VisibilityTimeout: 43_201 },
        ],
      }),
    );
    expect(out.Successful?.map((s) => s.Id)).toEqual(['extend', 'release']);
    expect(out.Failed?.map((f) => [f.Id, f.Code, f.SenderFault])).toEqual([
      ['deleted', 'AWS.SimpleQueueService.MessageNotInflight', true],
      ['garbage', 'ReceiptHandleIsInvalid', true],
      ['too-long', 'InvalidParameterValue', true],
    ]);
    expect((await receive(source)).map((m) => m.Body)).toEqual(['b']);
  });

  it(`the new timeout "begin[s] to count from the time that you make the ChangeMessageVisibility call", not from the receive (${DOC.visibility})`, async () => {
    const { source } = await deployedPair();
    for (const group of ['a', 'b']) await send(source, group, group);
    const [a, b] = await receive(source);
    clock.advance(600 * SECOND);
    const out = await sqs.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: source.url,
        Entries: [
          { Id: 'a', ReceiptHandle: a?.ReceiptHandle, VisibilityTimeout: VISIBILITY_S },
          { Id: 'b', ReceiptHandle: b?.ReceiptHandle, VisibilityTimeout: 60 },
        ],
      }),
    );
    expect(out.Failed ?? []).toEqual([]);
    clock.advance(60 * SECOND - 1); // 659.999 s after the receive
    expect(await receive(source)).toEqual([]);
    clock.advance(1); // 60 s after the call
    expect((await receive(source)).map((m) => m.Body)).toEqual(['b']);
    clock.advance((VISIBILITY_S - 60) * SECOND - 1); // just before 1800 s after the call (2400 s after the receive)
    expect(await receive(source)).toEqual([]);
    clock.advance(1);
    expect((await receive(source)).map((m) => m.Body)).toEqual(['a']);
  });

  it(`the 12-hour limit counts from the receive that returned the receipt handle ("the new timeout period applies only to the particular receipt of the message", ${DOC.visibility})`, async () => {
    const { source } = await deployedPair();
    await send(source, 'slow');
    await receive(source); // first receive at hour 0
    clock.advance(13 * 3600 * SECOND); // long expired
    const [again] = await receive(source); // second receive at hour 13
    clock.advance(1000 * SECOND);
    const change = (seconds: number): Promise<unknown> =>
      sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: source.url, ReceiptHandle: again?.ReceiptHandle, VisibilityTimeout: seconds }));
    await change(43_200 - 1000); // up to 12 hours after the second receive
    const error = await rejection(change(43_200 - 1000 + 1));
    expect(error.name).toBe('InvalidParameterValue');
    expect(error.message).toContain('43200');
  });
});
