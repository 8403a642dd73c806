/**
 * SNS conformance of the local endpoint (and SNS → SQS delivery), through the real
 * `@aws-sdk/client-sns` and `@aws-sdk/client-sqs` over HTTP. Each test names the
 * documented behaviour it checks (SNS API reference / Developer Guide; error codes from
 * the SNS model in @aws-sdk/client-sns).
 */
import {
  BatchEntryIdsNotDistinctException,
  BatchRequestTooLongException,
  CreateTopicCommand,
  DeleteTopicCommand,
  EmptyBatchRequestException,
  GetSubscriptionAttributesCommand,
  GetTopicAttributesCommand,
  InvalidParameterException,
  InvalidParameterValueException,
  ListSubscriptionsByTopicCommand,
  NotFoundException,
  PublishBatchCommand,
  type PublishBatchRequestEntry,
  PublishCommand,
  type SNSClient,
  SubscribeCommand,
  TooManyEntriesInBatchRequestException,
  UnsubscribeCommand,
} from '@aws-sdk/client-sns';
import { CreateQueueCommand, DeleteMessageBatchCommand, GetQueueAttributesCommand, type Message, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Endpoint, startEndpoint } from './index.ts';
import { ManualClock, rejection, sdkClients } from './testing.ts';

let endpoint: Endpoint;
let clients: ReturnType<typeof sdkClients>;
let sns: SNSClient;
let sqs: SQSClient;
let counter = 0;

beforeAll(async () => {
  endpoint = await startEndpoint({ port: 0 });
  clients = sdkClients(endpoint.url);
  sns = clients.sns;
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

async function fifoTopic(attributes: Record<string, string> = {}): Promise<string> {
  const out = await sns.send(new CreateTopicCommand({ Name: `${unique('t')}.fifo`, Attributes: { FifoTopic: 'true', ...attributes } }));
  return out.TopicArn as string;
}

async function queue(fifo = true): Promise<{ url: string; arn: string }> {
  const name = fifo ? `${unique('q')}.fifo` : unique('q');
  const url = (await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: fifo ? { FifoQueue: 'true' } : {} }))).QueueUrl as string;
  const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn as string;
  return { url, arn };
}

async function subscribe(topicArn: string, queueArn: string, attributes: Record<string, string> = { RawMessageDelivery: 'true' }): Promise<string> {
  return (await sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: 'sqs', Endpoint: queueArn, Attributes: attributes }))).SubscriptionArn as string;
}

/** Receives (and deletes) everything in a queue, in the order SQS hands it out. */
async function drain(url: string): Promise<Message[]> {
  const all: Message[] = [];
  for (;;) {
    const out = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ['All'], MessageAttributeNames: ['All'] }),
    );
    const messages = out.Messages ?? [];
    if (messages.length === 0) return all;
    all.push(...messages);
    await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: url, Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle })) }));
  }
}

describe('topics', () => {
  it('CreateTopic: "For a FIFO topic, the name must end with the .fifo suffix" — both mismatches are InvalidParameter', async () => {
    expect(await rejection(sns.send(new CreateTopicCommand({ Name: unique('t'), Attributes: { FifoTopic: 'true' } })))).toBeInstanceOf(
      InvalidParameterException,
    );
    expect(await rejection(sns.send(new CreateTopicCommand({ Name: `${unique('t')}.fifo` })))).toBeInstanceOf(InvalidParameterException);
  });

  it('CreateTopic "is idempotent": the same name returns the same ARN; GetTopicAttributes reports FIFO settings', async () => {
    const name = `${unique('same')}.fifo`;
    const a = await sns.send(new CreateTopicCommand({ Name: name, Attributes: { FifoTopic: 'true', ContentBasedDeduplication: 'true' } }));
    const b = await sns.send(new CreateTopicCommand({ Name: name, Attributes: { FifoTopic: 'true', ContentBasedDeduplication: 'true' } }));
    expect(b.TopicArn).toBe(a.TopicArn);
    expect(a.TopicArn).toBe(`arn:aws:sns:us-east-1:000000000000:${name}`);
    const attributes = (await sns.send(new GetTopicAttributesCommand({ TopicArn: a.TopicArn }))).Attributes;
    expect(attributes).toMatchObject({ FifoTopic: 'true', ContentBasedDeduplication: 'true', TopicArn: a.TopicArn, SubscriptionsConfirmed: '0' });
  });

  it('Publish to a topic that does not exist is NotFound (HTTP 404)', async () => {
    const error = await rejection(sns.send(new PublishCommand({ TopicArn: 'arn:aws:sns:us-east-1:000000000000:nope', Message: 'x' })));
    expect(error).toBeInstanceOf(NotFoundException);
    expect(error.$metadata?.httpStatusCode).toBe(404);
  });

  it('DeleteTopic "is idempotent" and removes the topic', async () => {
    const arn = await fifoTopic();
    await sns.send(new DeleteTopicCommand({ TopicArn: arn }));
    await sns.send(new DeleteTopicCommand({ TopicArn: arn }));
    expect(await rejection(sns.send(new GetTopicAttributesCommand({ TopicArn: arn })))).toBeInstanceOf(NotFoundException);
  });
});

describe('subscriptions', () => {
  it('Subscribe an SQS queue; ListSubscriptionsByTopic lists it; Unsubscribe stops delivery', async () => {
    const topic = await fifoTopic({ ContentBasedDeduplication: 'true' });
    const q = await queue();
    const arn = await subscribe(topic, q.arn);
    const listed = await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topic }));
    expect(listed.Subscriptions).toEqual([{ SubscriptionArn: arn, Owner: '000000000000', Protocol: 'sqs', Endpoint: q.arn, TopicArn: topic }]);
    const attributes = (await sns.send(new GetSubscriptionAttributesCommand({ SubscriptionArn: arn }))).Attributes;
    expect(attributes).toMatchObject({ RawMessageDelivery: 'true', PendingConfirmation: 'false', Endpoint: q.arn });
    await sns.send(new PublishCommand({ TopicArn: topic, Message: 'before', MessageGroupId: 'g' }));
    await sns.send(new UnsubscribeCommand({ SubscriptionArn: arn }));
    await sns.send(new PublishCommand({ TopicArn: topic, Message: 'after', MessageGroupId: 'g' }));
    expect((await drain(q.url)).map((m) => m.Body)).toEqual(['before']);
    expect((await sns.send(new ListSubscriptionsByTopicCommand({ TopicArn: topic }))).Subscriptions).toEqual([]);
  });

  it('a FIFO SQS queue cannot be subscribed to a standard topic', async () => {
    const topic = (await sns.send(new CreateTopicCommand({ Name: unique('std') }))).TopicArn as string;
    const q = await queue(true);
    expect(await rejection(subscribe(topic, q.arn))).toBeInstanceOf(InvalidParameterException);
  });

  it('a filter policy that is not valid is refused at Subscribe, naming the problem', async () => {
    const topic = await fifoTopic();
    const q = await queue();
    const error = await rejection(subscribe(topic, q.arn, { FilterPolicy: JSON.stringify({ table: [{ regex: '.*' }] }) }));
    expect(error).toBeInstanceOf(InvalidParameterException);
    expect(error.message).toContain('unknown operator "regex"');
  });
});

describe('publishing and delivery', () => {
  it('fan-out to 3 FIFO queues keeps the order within each message group ("processed in a FIFO manner")', async () => {
    const topic = await fifoTopic();
    const queues = [await queue(), await queue(), await queue()];
    for (const q of queues) await subscribe(topic, q.arn);
    const published: { group: string; body: string }[] = [];
    for (let i = 0; i < 60; i++) published.push({ group: `g${i % 3}`, body: `event-${i}` });
    const sequenceNumbers: bigint[] = [];
    for (let i = 0; i < published.length; i += 10) {
      const entries: PublishBatchRequestEntry[] = published.slice(i, i + 10).map((p, n) => ({
        Id: `e${n}`,
        Message: p.body,
        MessageGroupId: p.group,
        MessageDeduplicationId: p.body,
      }));
      const out = await sns.send(new PublishBatchCommand({ TopicArn: topic, PublishBatchRequestEntries: entries }));
      expect(out.Failed ?? []).toEqual([]);
      sequenceNumbers.push(...(out.Successful ?? []).map((s) => BigInt(s.SequenceNumber as string)));
    }
    expect(sequenceNumbers).toEqual([...sequenceNumbers].sort((a, b) => (a < b ? -1 : 1)));
    for (const q of queues) {
      const got = await drain(q.url);
      expect(got).toHaveLength(60);
      for (const group of ['g0', 'g1', 'g2']) {
        const expected = published.filter((p) => p.group === group).map((p) => p.body);
        expect(got.filter((m) => m.Attributes?.MessageGroupId === group).map((m) => m.Body)).toEqual(expected);
      }
    }
  });

  it('FIFO topics drop duplicates within the 5-minute interval: "accepted successfully but aren\'t delivered"', async () => {
    const topic = await fifoTopic();
    const q = await queue();
    await subscribe(topic, q.arn);
    const a = await sns.send(new PublishCommand({ TopicArn: topic, Message: 'once', MessageGroupId: 'g', MessageDeduplicationId: 'dup' }));
    const b = await sns.send(new PublishCommand({ TopicArn: topic, Message: 'twice', MessageGroupId: 'g', MessageDeduplicationId: 'dup' }));
    expect(b.MessageId).toBe(a.MessageId);
    expect(b.SequenceNumber).toBe(a.SequenceNumber);
    const batch = await sns.send(
      new PublishBatchCommand({
        TopicArn: topic,
        PublishBatchRequestEntries: [
          { Id: 'x', Message: 'in batch', MessageGroupId: 'g', MessageDeduplicationId: 'dup' },
          { Id: 'y', Message: 'new', MessageGroupId: 'g', MessageDeduplicationId: 'fresh' },
        ],
      }),
    );
    expect(batch.Successful?.map((s) => s.MessageId)[0]).toBe(a.MessageId);
    expect((await drain(q.url)).map((m) => m.Body)).toEqual(['once', 'new']);
  });

  it('a message with U+FFFF is accepted by SNS but not delivered to an SQS queue, which refuses that character', async () => {
    // SQS accepts only #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF
    // (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html); SNS discards a
    // message its endpoint refuses with a client-side error unless the subscription has a dead-letter queue
    // (https://docs.aws.amazon.com/sns/latest/dg/sns-dead-letter-queues.html, "Why do message deliveries fail?").
    const topic = await fifoTopic();
    const q = await queue();
    await subscribe(topic, q.arn);
    await sns.send(new PublishCommand({ TopicArn: topic, Message: 'bad \uFFFF', MessageGroupId: 'g', MessageDeduplicationId: 'bad' }));
    await sns.send(new PublishCommand({ TopicArn: topic, Message: 'escaped \\uffff', MessageGroupId: 'g', MessageDeduplicationId: 'ok' }));
    expect((await drain(q.url)).map((m) => m.Body)).toEqual(['escaped \\uffff']);
  });

  it('the topic\'s deduplication interval is 5 minutes: the same MessageDeduplicationId is delivered again after it', async () => {
    const clock = new ManualClock();
    const local = await startEndpoint({ port: 0, clock });
    const c = sdkClients(local.url);
    try {
      const topic = (await c.sns.send(new CreateTopicCommand({ Name: 'window.fifo', Attributes: { FifoTopic: 'true' } }))).TopicArn as string;
      const url = (await c.sqs.send(new CreateQueueCommand({ QueueName: 'window.fifo', Attributes: { FifoQueue: 'true', DeduplicationScope: 'messageGroup' } })))
        .QueueUrl as string;
      const arn = (await c.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
      await c.sns.send(new SubscribeCommand({ TopicArn: topic, Protocol: 'sqs', Endpoint: arn, Attributes: { RawMessageDelivery: 'true' } }));
      const publish = (body: string) =>
        c.sns.send(new PublishCommand({ TopicArn: topic, Message: body, MessageGroupId: 'g', MessageDeduplicationId: 'same' }));
      const first = await publish('first');
      clock.advance(5 * 60 * 1000 - 1);
      expect((await publish('inside the interval')).MessageId).toBe(first.MessageId);
      clock.advance(1);
      const third = await publish('after the interval');
      expect(third.MessageId).not.toBe(first.MessageId);
      const bodies = ((await c.sqs.send(new ReceiveMessageCommand({ QueueUrl: url, MaxNumberOfMessages: 10 }))).Messages ?? []).map((m) => m.Body);
      // The queue applies its own 5-minute interval too; both ran out at the same time here.
      expect(bodies).toEqual(['first', 'after the interval']);
    } finally {
      c.destroy();
      await local.close();
    }
  });

  it('FIFO topics: "The MessageGroupId parameter is required"; without ContentBasedDeduplication a MessageDeduplicationId is required', async () => {
    const topic = await fifoTopic();
    const noGroup = await rejection(sns.send(new PublishCommand({ TopicArn: topic, Message: 'x', MessageDeduplicationId: 'd' })));
    expect(noGroup).toBeInstanceOf(InvalidParameterException);
    expect(noGroup.message).toContain('MessageGroupId');
    const noDedup = await rejection(sns.send(new PublishCommand({ TopicArn: topic, Message: 'x', MessageGroupId: 'g' })));
    expect(noDedup).toBeInstanceOf(InvalidParameterException);
    expect(noDedup.message).toContain('ContentBasedDeduplication');
  });

  it('raw delivery carries the body unchanged and the message attributes as SQS message attributes', async () => {
    const topic = await fifoTopic({ ContentBasedDeduplication: 'true' });
    const q = await queue();
    await subscribe(topic, q.arn, { RawMessageDelivery: 'true' });
    const body = '{"op":"U","new":{"note":"tab\\there, quote \\" and ünïcödé 🐘"}}\n  trailing spaces  ';
    await sns.send(
      new PublishCommand({
        TopicArn: topic,
        Message: body,
        MessageGroupId: 'g',
        MessageAttributes: {
          table: { DataType: 'String', StringValue: 'public.orders' },
          position: { DataType: 'Number', StringValue: '42' },
          tags: { DataType: 'String.Array', StringValue: '["a","b"]' },
          raw: { DataType: 'Binary', BinaryValue: Buffer.from([0xde, 0xad]) },
        },
      }),
    );
    const [m] = await drain(q.url);
    expect(m?.Body).toBe(body);
    expect(m?.MessageAttributes?.table).toMatchObject({ DataType: 'String', StringValue: 'public.orders' });
    expect(m?.MessageAttributes?.position).toMatchObject({ DataType: 'Number', StringValue: '42' });
    expect(m?.MessageAttributes?.tags).toMatchObject({ DataType: 'String.Array', StringValue: '["a","b"]' });
    expect([...(m?.MessageAttributes?.raw?.BinaryValue ?? [])]).toEqual([0xde, 0xad]);
  });

  it('without raw delivery the SQS body is the JSON notification (Type, MessageId, TopicArn, Message, Timestamp, MessageAttributes)', async () => {
    const topic = await fifoTopic({ ContentBasedDeduplication: 'true' });
    const q = await queue();
    await subscribe(topic, q.arn, { RawMessageDelivery: 'false' });
    const out = await sns.send(
      new PublishCommand({
        TopicArn: topic,
        Message: 'payload',
        Subject: 'hello',
        MessageGroupId: 'g',
        MessageAttributes: { k: { DataType: 'String', StringValue: 'v' } },
      }),
    );
    const [m] = await drain(q.url);
    const notification = JSON.parse(m?.Body as string) as Record<string, unknown>;
    expect(notification).toMatchObject({
      Type: 'Notification',
      MessageId: out.MessageId,
      SequenceNumber: out.SequenceNumber,
      TopicArn: topic,
      Subject: 'hello',
      Message: 'payload',
      MessageAttributes: { k: { Type: 'String', Value: 'v' } },
    });
    expect(new Date(notification.Timestamp as string).toISOString()).toBe(notification.Timestamp);
    expect(m?.MessageAttributes).toBeUndefined();
  });

  it('filter policies on message attributes: exact, prefix, anything-but, numeric, exists; keys AND-ed, values OR-ed', async () => {
    const topic = await fifoTopic({ ContentBasedDeduplication: 'true' });
    const orders = await queue();
    const big = await queue();
    const notAudit = await queue();
    await subscribe(topic, orders.arn, { RawMessageDelivery: 'true', FilterPolicy: JSON.stringify({ table: ['public.orders', { prefix: 'sales.' }] }) });
    await subscribe(topic, big.arn, {
      RawMessageDelivery: 'true',
      FilterPolicy: JSON.stringify({ rows: [{ numeric: ['>=', 100] }], table: [{ exists: true }] }),
    });
    await subscribe(topic, notAudit.arn, { RawMessageDelivery: 'true', FilterPolicy: JSON.stringify({ table: [{ 'anything-but': { prefix: 'audit.' } }] }) });
    const publish = (body: string, table: string | undefined, rows: number) =>
      sns.send(
        new PublishCommand({
          TopicArn: topic,
          Message: body,
          MessageGroupId: 'g',
          MessageAttributes: {
            ...(table ? { table: { DataType: 'String', StringValue: table } } : {}),
            rows: { DataType: 'Number', StringValue: String(rows) },
          },
        }),
      );
    await publish('1 orders small', 'public.orders', 5);
    await publish('2 sales big', 'sales.invoices', 500);
    await publish('3 audit big', 'audit.log', 1000);
    await publish('4 no table big', undefined, 100);
    expect((await drain(orders.url)).map((m) => m.Body)).toEqual(['1 orders small', '2 sales big']);
    expect((await drain(big.url)).map((m) => m.Body)).toEqual(['2 sales big', '3 audit big']);
    expect((await drain(notAudit.url)).map((m) => m.Body)).toEqual(['1 orders small', '2 sales big']);
  });

  it('filter policy with FilterPolicyScope MessageBody matches the JSON body', async () => {
    const topic = await fifoTopic({ ContentBasedDeduplication: 'true' });
    const q = await queue();
    await subscribe(topic, q.arn, {
      RawMessageDelivery: 'true',
      FilterPolicyScope: 'MessageBody',
      FilterPolicy: JSON.stringify({ change: { op: ['I', 'U'] } }),
    });
    for (const op of ['I', 'D', 'U']) await sns.send(new PublishCommand({ TopicArn: topic, Message: JSON.stringify({ change: { op } }), MessageGroupId: 'g' }));
    expect((await drain(q.url)).map((m) => (JSON.parse(m.Body as string) as { change: { op: string } }).change.op)).toEqual(['I', 'U']);
  });
});

describe('limits', () => {
  /** Bytes the attribute {a: String "x"} counts: name 1 + type 6 + value 1. */
  const attribute = { a: { DataType: 'String', StringValue: 'x' } };

  it('"a message can be at most 256 KiB in size (262,144 bytes, not 262,144 characters)", attributes included', async () => {
    const topic = await fifoTopic({ ContentBasedDeduplication: 'true' });
    const q = await queue();
    await subscribe(topic, q.arn);
    const fits = 'é'.repeat((262_144 - 8) / 2); // 2 bytes each: 262,136 bytes of body + 8 of attribute
    await sns.send(new PublishCommand({ TopicArn: topic, Message: fits, MessageGroupId: 'g', MessageAttributes: attribute }));
    const error = await rejection(sns.send(new PublishCommand({ TopicArn: topic, Message: `${fits}!`, MessageGroupId: 'g', MessageAttributes: attribute })));
    expect(error).toBeInstanceOf(InvalidParameterException);
    expect(error.message).toContain('262145 bytes');
    const euros = '€'.repeat(87_382); // 87,382 characters but 262,146 bytes
    expect(await rejection(sns.send(new PublishCommand({ TopicArn: topic, Message: euros, MessageGroupId: 'g' })))).toBeInstanceOf(InvalidParameterException);
    const [delivered] = await drain(q.url);
    expect(delivered?.Body).toBe(fits);
  });

  it('PublishBatch: more than 10 entries is TooManyEntriesInBatchRequest, none is EmptyBatchRequest, repeated Ids BatchEntryIdsNotDistinct', async () => {
    const topic = await fifoTopic({ ContentBasedDeduplication: 'true' });
    const entries = Array.from({ length: 11 }, (_, i) => ({ Id: `e${i}`, Message: `m${i}`, MessageGroupId: 'g' }));
    expect(await rejection(sns.send(new PublishBatchCommand({ TopicArn: topic, PublishBatchRequestEntries: entries })))).toBeInstanceOf(
      TooManyEntriesInBatchRequestException,
    );
    expect(await rejection(sns.send(new PublishBatchCommand({ TopicArn: topic, PublishBatchRequestEntries: [] })))).toBeInstanceOf(EmptyBatchRequestException);
    const twins = [
      { Id: 'same', Message: 'a', MessageGroupId: 'g' },
      { Id: 'same', Message: 'b', MessageGroupId: 'g' },
    ];
    expect(await rejection(sns.send(new PublishBatchCommand({ TopicArn: topic, PublishBatchRequestEntries: twins })))).toBeInstanceOf(
      BatchEntryIdsNotDistinctException,
    );
  });

  it('PublishBatch: "the maximum total payload size (the sum of the individual lengths of all of the batched messages)" is 256 KiB — BatchRequestTooLong', async () => {
    const topic = await fifoTopic({ ContentBasedDeduplication: 'true' });
    const q = await queue();
    await subscribe(topic, q.arn);
    const half = 'ß'.repeat(65_536); // 131,072 bytes each; two of them are exactly 262,144
    const ok = await sns.send(
      new PublishBatchCommand({
        TopicArn: topic,
        PublishBatchRequestEntries: [
          { Id: 'a', Message: half, MessageGroupId: 'g' },
          { Id: 'b', Message: `${half.slice(1)}x`, MessageGroupId: 'g' },
        ],
      }),
    );
    expect(ok.Successful).toHaveLength(2);
    const error = await rejection(
      sns.send(
        new PublishBatchCommand({
          TopicArn: topic,
          PublishBatchRequestEntries: [
            { Id: 'a', Message: half, MessageGroupId: 'g', MessageAttributes: attribute },
            { Id: 'b', Message: `${half}x`, MessageGroupId: 'g' },
          ],
        }),
      ),
    );
    expect(error).toBeInstanceOf(BatchRequestTooLongException);
    expect(error.message).toContain('262153 bytes');
    expect(await drain(q.url)).toHaveLength(2);
  });

  it('PublishBatch reports a bad entry in Failed with its code and publishes the others', async () => {
    const topic = await fifoTopic({ ContentBasedDeduplication: 'true' });
    const out = await sns.send(
      new PublishBatchCommand({
        TopicArn: topic,
        PublishBatchRequestEntries: [
          { Id: 'good', Message: 'fine', MessageGroupId: 'g' },
          { Id: 'bad', Message: 'no group' },
        ],
      }),
    );
    expect(out.Successful?.map((s) => s.Id)).toEqual(['good']);
    expect(out.Failed).toEqual([expect.objectContaining({ Id: 'bad', Code: 'InvalidParameter', SenderFault: true })]);
  });

  it('a message attribute of an unknown data type is InvalidParameterValue ("String, String.Array, Number, and Binary")', async () => {
    const topic = await fifoTopic({ ContentBasedDeduplication: 'true' });
    const error = await rejection(
      sns.send(new PublishCommand({ TopicArn: topic, Message: 'x', MessageGroupId: 'g', MessageAttributes: { a: { DataType: 'Date', StringValue: 'x' } } })),
    );
    expect(error).toBeInstanceOf(InvalidParameterValueException);
    expect(error.message).toContain('Date');
  });
});

describe('wire format', () => {
  it('errors are query-protocol XML: <ErrorResponse><Error><Type>Sender</Type><Code>NotFound</Code>…', async () => {
    const response = await fetch(endpoint.url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: 'Action=GetTopicAttributes&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A000000000000%3Amissing',
    });
    expect(response.status).toBe(404);
    const text = await response.text();
    expect(text).toMatch(/^<ErrorResponse xmlns="http:\/\/sns\.amazonaws\.com\/doc\/2010-03-31\/"><Error><Type>Sender<\/Type><Code>NotFound<\/Code><Message>Topic does not exist/);
    expect(text).toMatch(/<RequestId>[0-9a-f-]{36}<\/RequestId><\/ErrorResponse>$/);
  });
});
