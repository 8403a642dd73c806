/**
 * SQS conformance of the local endpoint, through the real `@aws-sdk/client-sqs` over HTTP.
 * Each test names the documented behaviour it checks (SQS API reference / Developer
 * Guide; error codes from the SQS model in @aws-sdk/client-sqs).
 */
import {
  BatchEntryIdsNotDistinct,
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  InvalidAttributeName,
  InvalidMessageContents,
  ListMessageMoveTasksCommand,
  ListQueuesCommand,
  PurgeQueueCommand,
  PurgeQueueInProgress,
  QueueDeletedRecently,
  QueueDoesNotExist,
  QueueNameExists,
  ReceiveMessageCommand,
  ReceiptHandleIsInvalid,
  SendMessageBatchCommand,
  SendMessageCommand,
  StartMessageMoveTaskCommand,
  TooManyEntriesInBatchRequest,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { md5OfText } from './digest.ts';
import { type Endpoint, startEndpoint } from './index.ts';
import { ManualClock, rejection, sdkClients, waitFor } from './testing.ts';

let endpoint: Endpoint;
let clients: ReturnType<typeof sdkClients>;
let sqs: SQSClient;
let counter = 0;

beforeAll(async () => {
  endpoint = await startEndpoint({ port: 0 });
  clients = sdkClients(endpoint.url);
  sqs = clients.sqs;
});

afterAll(async () => {
  clients.destroy();
  await endpoint.close();
});

function unique(prefix: string): string {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}

async function fifoQueue(attributes: Record<string, string> = {}): Promise<{ url: string; arn: string }> {
  const created = await sqs.send(
    new CreateQueueCommand({ QueueName: `${unique('q')}.fifo`, Attributes: { FifoQueue: 'true', ...attributes } }),
  );
  const url = created.QueueUrl as string;
  const got = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
  return { url, arn: got.Attributes?.QueueArn as string };
}

async function receive(url: string, max = 10, visibility?: number): Promise<Received[]> {
  const out = await sqs.send(
    new ReceiveMessageCommand({
      QueueUrl: url,
      MaxNumberOfMessages: max,
      WaitTimeSeconds: 0,
      MessageSystemAttributeNames: ['All'],
      MessageAttributeNames: ['All'],
      ...(visibility !== undefined ? { VisibilityTimeout: visibility } : {}),
    }),
  );
  return (out.Messages ?? []) as unknown as Received[];
}

interface Received {
  readonly Body: string;
  readonly ReceiptHandle: string;
  readonly MessageId: string;
  readonly MD5OfBody: string;
  readonly Attributes: Record<string, string>;
  readonly MessageAttributes?: Record<string, { StringValue?: string; BinaryValue?: Uint8Array }>;
}

describe('queues', () => {
  it('CreateQueue: "A FIFO queue name must end with the .fifo suffix" — FifoQueue=true without it is InvalidParameterValue', async () => {
    const error = await rejection(sqs.send(new CreateQueueCommand({ QueueName: unique('nofifo'), Attributes: { FifoQueue: 'true' } })));
    expect(error.name).toBe('InvalidParameterValue');
    expect(error.message).toMatch(/\.fifo/);
  });

  it('CreateQueue: a name ending in .fifo without FifoQueue=true is rejected', async () => {
    const error = await rejection(sqs.send(new CreateQueueCommand({ QueueName: `${unique('x')}.fifo` })));
    expect(error.name).toBe('InvalidParameterValue');
  });

  it('CreateQueue: same name and same attributes returns the existing URL; a different value is QueueNameExists', async () => {
    const name = unique('idem');
    const first = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '40' } }));
    const again = await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '40' } }));
    expect(again.QueueUrl).toBe(first.QueueUrl);
    const error = await rejection(sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { VisibilityTimeout: '41' } })));
    expect(error).toBeInstanceOf(QueueNameExists);
  });

  it('CreateQueue: an unknown attribute is InvalidAttributeName; VisibilityTimeout above 43,200 is InvalidAttributeValue', async () => {
    const unknown = await rejection(sqs.send(new CreateQueueCommand({ QueueName: unique('bad'), Attributes: { Colour: 'red' } as never })));
    expect(unknown).toBeInstanceOf(InvalidAttributeName);
    const range = await rejection(sqs.send(new CreateQueueCommand({ QueueName: unique('bad'), Attributes: { VisibilityTimeout: '43201' } })));
    expect(range.name).toBe('InvalidAttributeValue');
    expect(range.message).toContain('43201');
  });

  it('GetQueueUrl of a queue that does not exist raises QueueDoesNotExist (AWS.SimpleQueueService.NonExistentQueue)', async () => {
    const error = await rejection(sqs.send(new GetQueueUrlCommand({ QueueName: unique('missing') })));
    expect(error).toBeInstanceOf(QueueDoesNotExist);
    expect(error.$metadata?.httpStatusCode).toBe(400);
  });

  it('ListQueues filters by QueueNamePrefix', async () => {
    const prefix = unique('list');
    await sqs.send(new CreateQueueCommand({ QueueName: `${prefix}-a` }));
    await sqs.send(new CreateQueueCommand({ QueueName: `${prefix}-b` }));
    const out = await sqs.send(new ListQueuesCommand({ QueueNamePrefix: prefix }));
    expect(out.QueueUrls?.map((u) => u.split('/').at(-1))).toEqual([`${prefix}-a`, `${prefix}-b`]);
  });

  it('GetQueueAttributes counts visible and in-flight messages (ApproximateNumberOfMessages / …NotVisible)', async () => {
    const { url } = await fifoQueue();
    for (const n of [1, 2, 3]) {
      await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: `m${n}`, MessageGroupId: `g${n}`, MessageDeduplicationId: `d${n}` }));
    }
    await receive(url, 1);
    const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['All'] }));
    expect(out.Attributes?.ApproximateNumberOfMessages).toBe('2');
    expect(out.Attributes?.ApproximateNumberOfMessagesNotVisible).toBe('1');
    expect(out.Attributes?.FifoQueue).toBe('true');
    expect(out.Attributes?.VisibilityTimeout).toBe('30');
  });

  it('"You must wait 60 seconds after deleting a queue before you can create another queue with the same name" (QueueDeletedRecently)', async () => {
    const clock = new ManualClock();
    const local = await startEndpoint({ port: 0, clock });
    const c = sdkClients(local.url);
    try {
      const name = unique('reuse');
      const created = await c.sqs.send(new CreateQueueCommand({ QueueName: name }));
      await c.sqs.send(new DeleteQueueCommand({ QueueUrl: created.QueueUrl }));
      expect(await rejection(c.sqs.send(new CreateQueueCommand({ QueueName: name })))).toBeInstanceOf(QueueDeletedRecently);
      clock.advance(60_000);
      const again = await c.sqs.send(new CreateQueueCommand({ QueueName: name }));
      expect(again.QueueUrl).toBe(created.QueueUrl);
    } finally {
      c.destroy();
      await local.close();
    }
  });

  it('MessageRetentionPeriod: messages older than the retention period (from their original send) are deleted', async () => {
    const clock = new ManualClock();
    const local = await startEndpoint({ port: 0, clock });
    const c = sdkClients(local.url);
    try {
      const url = (await c.sqs.send(new CreateQueueCommand({ QueueName: unique('ret'), Attributes: { MessageRetentionPeriod: '60' } }))).QueueUrl as string;
      await c.sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'old' }));
      clock.advance(30_000);
      await c.sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'young' }));
      clock.advance(31_000);
      const out = await c.sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }));
      expect(out.Messages?.map((m) => m.Body)).toEqual(['young']);
    } finally {
      c.destroy();
      await local.close();
    }
  });

  it('PurgeQueue deletes every message; a second purge within 60 seconds is PurgeQueueInProgress', async () => {
    const { url } = await fifoQueue();
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'x', MessageGroupId: 'g', MessageDeduplicationId: 'd' }));
    await sqs.send(new PurgeQueueCommand({ QueueUrl: url }));
    expect(await receive(url)).toEqual([]);
    expect(await rejection(sqs.send(new PurgeQueueCommand({ QueueUrl: url })))).toBeInstanceOf(PurgeQueueInProgress);
  });
});

describe('sending', () => {
  it('SendMessage to a FIFO queue without MessageGroupId fails: "If you do not provide a MessageGroupId … the action fails" (MissingParameter)', async () => {
    const { url } = await fifoQueue();
    const error = await rejection(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'x', MessageDeduplicationId: 'd' })));
    expect(error.name).toBe('MissingParameter');
    expect(error.message).toContain('MessageGroupId');
  });

  it('FIFO without ContentBasedDeduplication needs a MessageDeduplicationId, else "the action fails with an error"', async () => {
    const { url } = await fifoQueue();
    const error = await rejection(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'x', MessageGroupId: 'g' })));
    expect(error.name).toBe('InvalidParameterValue');
    expect(error.message).toContain('ContentBasedDeduplication');
  });

  it('duplicates within the 5-minute deduplication interval "are accepted successfully but aren\'t delivered"', async () => {
    const { url } = await fifoQueue();
    const first = await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'one', MessageGroupId: 'g', MessageDeduplicationId: 'same' }));
    const second = await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'two', MessageGroupId: 'g', MessageDeduplicationId: 'same' }));
    expect(second.MessageId).toBe(first.MessageId);
    expect(second.SequenceNumber).toBe(first.SequenceNumber);
    const got = (await receive(url));
    expect(got.map((m) => m.Body)).toEqual(['one']);
  });

  it('ContentBasedDeduplication uses "a SHA-256 hash … of the body of the message (but not the attributes)"', async () => {
    const { url } = await fifoQueue({ ContentBasedDeduplication: 'true' });
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'same body', MessageGroupId: 'g' }));
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: url,
        MessageBody: 'same body',
        MessageGroupId: 'g',
        MessageAttributes: { a: { DataType: 'String', StringValue: 'differs' } },
      }),
    );
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'other body', MessageGroupId: 'g' }));
    const got = (await receive(url));
    expect(got.map((m) => m.Body)).toEqual(['same body', 'other body']);
  });

  it('the deduplication id is remembered after the message is deleted, and forgotten after 5 minutes', async () => {
    const clock = new ManualClock();
    const local = await startEndpoint({ port: 0, clock });
    const c = sdkClients(local.url);
    try {
      const url = (await c.sqs.send(new CreateQueueCommand({ QueueName: `${unique('dd')}.fifo`, Attributes: { FifoQueue: 'true' } }))).QueueUrl as string;
      const send = (body: string): Promise<unknown> =>
        c.sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: body, MessageGroupId: 'g', MessageDeduplicationId: 'once' }));
      const take = async (): Promise<string[]> => {
        const out = await c.sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }));
        for (const m of out.Messages ?? []) await c.sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle }));
        return (out.Messages ?? []).map((m) => m.Body as string);
      };
      await send('first');
      expect(await take()).toEqual(['first']);
      clock.advance(5 * 60 * 1000 - 1);
      await send('still a duplicate');
      expect(await take()).toEqual([]);
      clock.advance(1);
      await send('after the interval');
      expect(await take()).toEqual(['after the interval']);
    } finally {
      c.destroy();
      await local.close();
    }
  });

  it('sequence numbers increase within a message group', async () => {
    const { url } = await fifoQueue();
    const numbers: bigint[] = [];
    for (let i = 0; i < 5; i++) {
      const out = await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: `m${i}`, MessageGroupId: 'g', MessageDeduplicationId: `d${i}` }));
      numbers.push(BigInt(out.SequenceNumber as string));
    }
    expect(numbers).toEqual([...numbers].sort((a, b) => (a < b ? -1 : 1)));
    expect(new Set(numbers).size).toBe(5);
  });

  it('the size limit counts bytes of body plus attributes (name, type, value): MaximumMessageSize 1024 accepts 1024 bytes, not 1025', async () => {
    const { url } = await fifoQueue({ MaximumMessageSize: '1024' });
    const attribute = { n: { DataType: 'String', StringValue: 'v' } }; // 1 + 6 + 1 = 8 bytes
    const euro = '€'; // 3 bytes in UTF-8
    const body = euro.repeat(338) + 'ab'; // 1016 bytes, 340 characters
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: body, MessageAttributes: attribute, MessageGroupId: 'g', MessageDeduplicationId: 'a' }));
    const error = await rejection(
      sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: `${body}c`, MessageAttributes: attribute, MessageGroupId: 'g', MessageDeduplicationId: 'b' })),
    );
    expect(error.name).toBe('InvalidParameterValue');
    expect(error.message).toContain('1025 bytes');
  });

  it('characters outside #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF are InvalidMessageContents', async () => {
    const { url } = await fifoQueue();
    const error = await rejection(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'bell\u0007', MessageGroupId: 'g', MessageDeduplicationId: 'd' })));
    expect(error).toBeInstanceOf(InvalidMessageContents);
    expect(error.message).toContain('#x7');
  });

  it('U+FFFE and U+FFFF (beyond #xFFFD) are InvalidMessageContents; the same text JSON-escaped is accepted', async () => {
    // https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html: "If a message
    // contains characters outside the allowed set, Amazon SQS rejects the message and returns an InvalidMessageContents error."
    const { url } = await fifoQueue();
    for (const [char, name] of [['\uFFFE', '#xFFFE'], ['\uFFFF', '#xFFFF']] as const) {
      const error = await rejection(sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: `{"v":"a${char}"}`, MessageGroupId: 'g', MessageDeduplicationId: name })));
      expect(error).toBeInstanceOf(InvalidMessageContents);
      expect(error.message).toContain(name);
    }
    const escaped = '{"v":"a\\ufffe\\uffff\uFFFD"}';
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: escaped, MessageGroupId: 'g', MessageDeduplicationId: 'ok' }));
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url }));
    expect(out.Messages?.[0]?.Body).toBe(escaped);
    expect(JSON.parse(escaped).v).toBe('a\uFFFE\uFFFF\uFFFD');
  });

  it('SendMessageBatch: more than 10 entries is TooManyEntriesInBatchRequest; repeated Ids are BatchEntryIdsNotDistinct', async () => {
    const { url } = await fifoQueue();
    const entry = (i: number, id = `e${i}`) => ({ Id: id, MessageBody: `m${i}`, MessageGroupId: 'g', MessageDeduplicationId: `d${i}` });
    const many = Array.from({ length: 11 }, (_, i) => entry(i));
    expect(await rejection(sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: many })))).toBeInstanceOf(TooManyEntriesInBatchRequest);
    const twins = [entry(1, 'same'), entry(2, 'same')];
    expect(await rejection(sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: twins })))).toBeInstanceOf(BatchEntryIdsNotDistinct);
  });

  it('SendMessageBatch reports a bad entry in Failed and stores the others', async () => {
    const { url } = await fifoQueue();
    const out = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: url,
        Entries: [
          { Id: 'ok', MessageBody: 'fine', MessageGroupId: 'g', MessageDeduplicationId: 'a' },
          { Id: 'bad', MessageBody: 'no group', MessageDeduplicationId: 'b' },
        ],
      }),
    );
    expect(out.Successful?.map((s) => s.Id)).toEqual(['ok']);
    expect(out.Failed).toEqual([expect.objectContaining({ Id: 'bad', Code: 'MissingParameter', SenderFault: true })]);
  });
});

describe('receiving', () => {
  it('a receive returns the body with its MD5, the system attributes and the message attributes', async () => {
    const { url } = await fifoQueue();
    await sqs.send(
      new SendMessageCommand({
        QueueUrl: url,
        MessageBody: 'hello ✓',
        MessageGroupId: 'grp',
        MessageDeduplicationId: 'dd',
        MessageAttributes: { kind: { DataType: 'String', StringValue: 'greeting' }, blob: { DataType: 'Binary', BinaryValue: Buffer.from([0, 1, 2]) } },
      }),
    );
    const [m] = await receive(url);
    expect(m?.Body).toBe('hello ✓');
    expect(m?.MD5OfBody).toBe(md5OfText('hello ✓'));
    expect(m?.Attributes).toMatchObject({ MessageGroupId: 'grp', MessageDeduplicationId: 'dd', ApproximateReceiveCount: '1' });
    expect(m?.Attributes.SequenceNumber).toMatch(/^\d{20,}$/);
    expect(m?.MessageAttributes?.kind?.StringValue).toBe('greeting');
    expect([...(m?.MessageAttributes?.blob?.BinaryValue ?? [])]).toEqual([0, 1, 2]);
  });

  it('FIFO: "Inflight messages block delivery of available messages within the same message group"; other groups stay available', async () => {
    const { url } = await fifoQueue();
    const send = (body: string, group: string) =>
      sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: body, MessageGroupId: group, MessageDeduplicationId: body }));
    await send('a1', 'A');
    await send('a2', 'A');
    await send('b1', 'B');
    const [first] = (await receive(url, 1));
    expect(first?.Body).toBe('a1');
    const second = (await receive(url, 10));
    expect(second.map((m) => m.Body)).toEqual(['b1']);
    expect(await receive(url, 10)).toEqual([]);
    await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: first?.ReceiptHandle }));
    const third = (await receive(url, 10));
    expect(third.map((m) => m.Body)).toEqual(['a2']);
  });

  it('FIFO: a receive returns "as many messages with the same message group ID as possible", in order', async () => {
    const { url } = await fifoQueue();
    for (let i = 0; i < 7; i++) {
      await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: `m${i}`, MessageGroupId: 'one', MessageDeduplicationId: `d${i}` }));
    }
    const got = (await receive(url, 10));
    expect(got.map((m) => m.Body)).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6']);
  });

  it('a message whose visibility timeout expires is received again with a higher ApproximateReceiveCount', async () => {
    const { url } = await fifoQueue();
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'again', MessageGroupId: 'g', MessageDeduplicationId: 'd' }));
    const [first] = (await receive(url, 1, 1));
    expect(first?.Attributes.ApproximateReceiveCount).toBe('1');
    const [second] = await waitFor('the message to become visible again', async () => {
      const got = (await receive(url, 1));
      return got.length > 0 ? got : undefined;
    });
    expect(second?.MessageId).toBe(first?.MessageId);
    expect(second?.Attributes.ApproximateReceiveCount).toBe('2');
    expect(second?.ReceiptHandle).not.toBe(first?.ReceiptHandle);
  });

  it('ChangeMessageVisibility to 0 makes the message visible at once', async () => {
    const { url } = await fifoQueue();
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'x', MessageGroupId: 'g', MessageDeduplicationId: 'd' }));
    const [m] = (await receive(url, 1));
    expect(await receive(url, 1)).toEqual([]);
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: m?.ReceiptHandle, VisibilityTimeout: 0 }));
    expect(((await receive(url, 1))).map((r) => r.Body)).toEqual(['x']);
  });

  it('FIFO: deleting with the receipt handle of an earlier receive fails ("The receipt handle has expired")', async () => {
    const { url } = await fifoQueue();
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'x', MessageGroupId: 'g', MessageDeduplicationId: 'd' }));
    const [old] = (await receive(url, 1, 0));
    const [current] = (await receive(url, 1));
    expect(current?.MessageId).toBe(old?.MessageId);
    const error = await rejection(sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: old?.ReceiptHandle })));
    expect(error.name).toBe('InvalidParameterValue');
    expect(error.message).toContain('expired');
    await sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: current?.ReceiptHandle }));
  });

  it('FIFO: "subsequent calls with the same ReceiveRequestAttemptId return the same messages and receipt handles"', async () => {
    const { url } = await fifoQueue();
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'once', MessageGroupId: 'g', MessageDeduplicationId: 'd' }));
    const first = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, ReceiveRequestAttemptId: 'attempt-1' }));
    const retry = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, ReceiveRequestAttemptId: 'attempt-1' }));
    expect(retry.Messages?.map((m) => m.ReceiptHandle)).toEqual(first.Messages?.map((m) => m.ReceiptHandle));
    const other = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, ReceiveRequestAttemptId: 'attempt-2' }));
    expect(other.Messages ?? []).toEqual([]);
  });

  it('a receipt handle that is not one is ReceiptHandleIsInvalid', async () => {
    const { url } = await fifoQueue();
    expect(await rejection(sqs.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: 'not-a-handle' })))).toBeInstanceOf(ReceiptHandleIsInvalid);
  });

  it('MaxNumberOfMessages must be from 1 to 10', async () => {
    const { url } = await fifoQueue();
    const error = await rejection(sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 11 })));
    expect(error.name).toBe('InvalidParameterValue');
    expect(error.message).toContain('11');
  });

  it('long polling: "If a message is available, the call returns sooner than WaitTimeSeconds"', async () => {
    const { url } = await fifoQueue();
    const waiting = sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 20, MaxNumberOfMessages: 10 }));
    const name = url.split('/').at(-1);
    await waitFor('the receive to be waiting', () => endpoint.stats().queues.find((q) => q.name === name)?.waiting === 1);
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'arrived', MessageGroupId: 'g', MessageDeduplicationId: 'd' }));
    const out = await waiting;
    expect(out.Messages?.map((m) => m.Body)).toEqual(['arrived']);
  });

  it('DelaySeconds: "Messages with a positive DelaySeconds value become available for processing after the delay period is finished"', async () => {
    const url = (await sqs.send(new CreateQueueCommand({ QueueName: unique('delay') }))).QueueUrl as string;
    await sqs.send(new SendMessageCommand({ QueueUrl: url, MessageBody: 'later', DelaySeconds: 1 }));
    const counts = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesDelayed'] }),
    );
    expect(counts.Attributes).toEqual({ ApproximateNumberOfMessages: '0', ApproximateNumberOfMessagesDelayed: '1' });
    // A long poll that starts while the message is delayed returns it once the delay has passed.
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 10 }));
    expect(out.Messages?.map((m) => m.Body)).toEqual(['later']);
  });

  it('long polling: with no message the call ends after WaitTimeSeconds with no messages', async () => {
    const { url } = await fifoQueue();
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 1 }));
    expect(out.Messages ?? []).toEqual([]);
  });
});

describe('dead-letter queues', () => {
  async function withDeadLetter(maxReceiveCount: number): Promise<{ source: { url: string; arn: string }; dlq: { url: string; arn: string } }> {
    const dlq = await fifoQueue();
    const source = await fifoQueue({ RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount }) });
    return { source, dlq };
  }

  it('RedrivePolicy: the dead-letter queue of a FIFO queue must be a FIFO queue', async () => {
    const standard = await sqs.send(new CreateQueueCommand({ QueueName: unique('std') }));
    const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: standard.QueueUrl, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
    const error = await rejection(fifoQueue({ RedrivePolicy: JSON.stringify({ deadLetterTargetArn: arn, maxReceiveCount: 3 }) }));
    expect(error.name).toBe('InvalidParameterValue');
    expect(error.message).toContain('FIFO');
  });

  it('"When the ReceiveCount for a message exceeds the maxReceiveCount … SQS moves the message to the dead-letter-queue": received exactly maxReceiveCount times', async () => {
    const { source, dlq } = await withDeadLetter(3);
    await sqs.send(new SendMessageCommand({ QueueUrl: source.url, MessageBody: 'poison', MessageGroupId: 'g', MessageDeduplicationId: 'p' }));
    await sqs.send(new SendMessageCommand({ QueueUrl: source.url, MessageBody: 'next', MessageGroupId: 'g', MessageDeduplicationId: 'n' }));
    const counts: string[] = [];
    for (let i = 0; i < 3; i++) {
      const [m] = (await receive(source.url, 1, 0));
      expect(m?.Body).toBe('poison');
      counts.push(m?.Attributes.ApproximateReceiveCount as string);
    }
    expect(counts).toEqual(['1', '2', '3']);
    const [after] = (await receive(source.url, 1));
    expect(after?.Body).toBe('next');
    const [dead] = (await receive(dlq.url, 1));
    expect(dead?.Body).toBe('poison');
    expect(dead?.Attributes.DeadLetterQueueSourceArn).toBe(source.arn);
    expect(dead?.Attributes.MessageGroupId).toBe('g');
  });

  it('StartMessageMoveTask moves the messages of a dead-letter queue back to their source queue, in order', async () => {
    const { source, dlq } = await withDeadLetter(1);
    for (const body of ['m1', 'm2', 'm3']) {
      await sqs.send(new SendMessageCommand({ QueueUrl: source.url, MessageBody: body, MessageGroupId: 'g', MessageDeduplicationId: body }));
      const [m] = (await receive(source.url, 1, 0));
      expect(m?.Body).toBe(body);
      expect(await receive(source.url, 1)).toEqual([]); // second receive moved it
    }
    const depth = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: dlq.url, AttributeNames: ['ApproximateNumberOfMessages'] }));
    expect(depth.Attributes?.ApproximateNumberOfMessages).toBe('3');
    const started = await sqs.send(new StartMessageMoveTaskCommand({ SourceArn: dlq.arn }));
    expect(started.TaskHandle).toBeTruthy();
    const task = await waitFor('the move task to complete', async () => {
      const out = await sqs.send(new ListMessageMoveTasksCommand({ SourceArn: dlq.arn }));
      const latest = out.Results?.[0];
      return latest?.Status === 'COMPLETED' ? latest : undefined;
    });
    expect(task).toMatchObject({ ApproximateNumberOfMessagesMoved: 3, ApproximateNumberOfMessagesToMove: 3, SourceArn: dlq.arn });
    const back = (await receive(source.url, 10));
    expect(back.map((m) => m.Body)).toEqual(['m1', 'm2', 'm3']);
    expect(back.map((m) => m.Attributes.ApproximateReceiveCount)).toEqual(['1', '1', '1']);
  });

  it('StartMessageMoveTask from a queue that is no queue\'s dead-letter queue is rejected', async () => {
    const lonely = await fifoQueue();
    const error = await rejection(sqs.send(new StartMessageMoveTaskCommand({ SourceArn: lonely.arn })));
    expect(error.name).toBe('InvalidParameterValue');
    expect(error.message).toContain('Dead Letter Queue');
  });
});

describe('wire format', () => {
  it('errors carry x-amzn-query-error and a __type body ("Interpreting Amazon SQS JSON API responses")', async () => {
    const response = await fetch(endpoint.url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-amz-json-1.0', 'x-amz-target': 'AmazonSQS.GetQueueUrl' },
      body: JSON.stringify({ QueueName: 'does-not-exist' }),
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('x-amzn-query-error')).toBe('AWS.SimpleQueueService.NonExistentQueue;Sender');
    expect(response.headers.get('x-amzn-requestid')).toMatch(/^[0-9a-f-]{36}$/);
    const body = (await response.json()) as { __type: string; message: string };
    expect(body.__type).toBe('com.amazonaws.sqs#QueueDoesNotExist');
    expect(body.message).toContain('does-not-exist');
  });
});
