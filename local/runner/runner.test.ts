/**
 * The event-source runner against the local endpoint, through the real SQS client.
 * Behaviour checked is Lambda's SQS event source mapping as documented in the Lambda
 * Developer Guide ("Using Lambda with Amazon SQS", "Handling errors for an SQS event
 * source", partial batch responses).
 */
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSEvent, SQSRecord } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Endpoint, startEndpoint } from '../endpoint/index.ts';
import { rejection, sdkClients, waitFor } from '../endpoint/testing.ts';
import { type EventSourceRunner, RunnerConfigError, type SqsHandler, startEventSourceRunner } from './index.ts';

let endpoint: Endpoint;
let clients: ReturnType<typeof sdkClients>;
let sqs: SQSClient;
let counter = 0;
const running: EventSourceRunner[] = [];

beforeAll(async () => {
  endpoint = await startEndpoint({ port: 0 });
  clients = sdkClients(endpoint.url);
  sqs = clients.sqs;
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});

afterAll(async () => {
  clients.destroy();
  await endpoint.close();
});

async function queue(attributes: Record<string, string> = {}): Promise<{ url: string; arn: string }> {
  counter += 1;
  const name = `runner-${process.pid}-${counter}.fifo`;
  const url = (await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { FifoQueue: 'true', VisibilityTimeout: '1', ...attributes } })))
    .QueueUrl as string;
  const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn as string;
  return { url, arn };
}

async function send(url: string, bodies: readonly string[], group = 'g'): Promise<void> {
  for (let i = 0; i < bodies.length; i += 10) {
    const chunk = bodies.slice(i, i + 10);
    await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl: url,
        Entries: chunk.map((body, n) => ({
          Id: String(n),
          MessageBody: body,
          MessageGroupId: group,
          MessageDeduplicationId: `${group}-${body}`,
          MessageAttributes: { n: { DataType: 'Number', StringValue: String(i + n) } },
        })),
      }),
    );
  }
}

async function depth(url: string): Promise<{ visible: number; inFlight: number }> {
  const out = await sqs.send(
    new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
  );
  return { visible: Number(out.Attributes?.ApproximateNumberOfMessages), inFlight: Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible) };
}

function run(url: string, handler: SqsHandler, extra: Partial<Parameters<typeof startEventSourceRunner>[0]> = {}): EventSourceRunner {
  const runner = startEventSourceRunner({ sqs, queueUrl: url, handler, functionTimeoutMs: 1000, waitTimeSeconds: 1, onError: () => {}, ...extra });
  running.push(runner);
  return runner;
}

describe('event source runner', () => {
  it('invokes the handler with SQSEvent records of up to batchSize messages and deletes them on success', async () => {
    const q = await queue();
    const bodies = Array.from({ length: 23 }, (_, i) => `m${i}`);
    await send(q.url, bodies);
    const batches: SQSRecord[][] = [];
    const runner = run(q.url, async (event) => {
      batches.push(event.Records);
    }, { batchSize: 10 });
    await runner.ready();
    await waitFor('all messages handled', () => batches.flat().length >= 23);
    await waitFor('all messages deleted', () => runner.stats.messagesDeleted === 23);
    expect(batches.every((b) => b.length <= 10)).toBe(true);
    expect(batches.flat().map((r) => r.body)).toEqual(bodies);
    const first = batches[0]?.[0] as SQSRecord;
    expect(first).toMatchObject({ eventSource: 'aws:sqs', eventSourceARN: q.arn, awsRegion: 'us-east-1' });
    expect(first.attributes).toMatchObject({ MessageGroupId: 'g', MessageDeduplicationId: 'g-m0', ApproximateReceiveCount: '1' });
    expect(first.messageAttributes.n).toMatchObject({ dataType: 'Number', stringValue: '0' });
    expect(await depth(q.url)).toEqual({ visible: 0, inFlight: 0 });
    expect(runner.stats).toMatchObject({ failed: 0, timedOut: 0, partialFailures: 0 });
  });

  it('partial batch response on FIFO: everything from the first reported failure on is retried, in order', async () => {
    const q = await queue();
    await send(q.url, ['a', 'b', 'c', 'd']);
    const seen: string[][] = [];
    let failOnce = true;
    const runner = run(q.url, async (event: SQSEvent) => {
      seen.push(event.Records.map((r) => `${r.body}#${r.attributes.ApproximateReceiveCount}`));
      if (failOnce) {
        failOnce = false;
        // Reports only "b"; the FIFO rule retries c and d as well.
        const b = event.Records.find((r) => r.body === 'b') as SQSRecord;
        return { batchItemFailures: [{ itemIdentifier: b.messageId }] };
      }
      return { batchItemFailures: [] };
    });
    await waitFor('the retried records to be handled', () => seen.length >= 2, 15_000);
    await waitFor('everything deleted', async () => (await depth(q.url)).visible + (await depth(q.url)).inFlight === 0);
    expect(seen[0]).toEqual(['a#1', 'b#1', 'c#1', 'd#1']);
    expect(seen[1]).toEqual(['b#2', 'c#2', 'd#2']);
    expect(runner.stats).toMatchObject({ partialFailures: 1, messagesRetried: 3, messagesDeleted: 4 });
  });

  it('partial batch response on a standard queue retries exactly the reported messages', async () => {
    counter += 1;
    const url = (await sqs.send(new CreateQueueCommand({ QueueName: `runner-std-${process.pid}-${counter}`, Attributes: { VisibilityTimeout: '1' } })))
      .QueueUrl as string;
    await sqs.send(new SendMessageBatchCommand({ QueueUrl: url, Entries: ['a', 'b', 'c'].map((b) => ({ Id: b, MessageBody: b })) }));
    const handled: string[] = [];
    let first = true;
    run(url, async (event) => {
      handled.push(...event.Records.map((r) => r.body));
      if (!first) return;
      first = false;
      const b = event.Records.find((r) => r.body === 'b');
      return b ? { batchItemFailures: [{ itemIdentifier: b.messageId }] } : undefined;
    }, { batchSize: 10 });
    await waitFor('b handled twice', () => handled.filter((h) => h === 'b').length === 2, 15_000);
    await waitFor('queue empty', async () => (await depth(url)).visible + (await depth(url)).inFlight === 0);
    expect(handled.filter((h) => h === 'a')).toHaveLength(1);
    expect(handled.filter((h) => h === 'c')).toHaveLength(1);
  });

  it('a thrown error makes the whole batch visible again after the visibility timeout', async () => {
    const q = await queue();
    await send(q.url, ['x', 'y']);
    const attempts: string[][] = [];
    const runner = run(q.url, async (event) => {
      attempts.push(event.Records.map((r) => `${r.body}#${r.attributes.ApproximateReceiveCount}`));
      if (attempts.length === 1) throw new Error('replica unavailable');
    });
    await waitFor('the second attempt', () => attempts.length >= 2, 15_000);
    await waitFor('messages deleted', () => runner.stats.messagesDeleted === 2);
    expect(attempts.slice(0, 2)).toEqual([['x#1', 'y#1'], ['x#2', 'y#2']]);
    expect(runner.stats.failed).toBe(1);
    expect(runner.stats.lastFailure).toContain('replica unavailable');
  });

  it('a handler that outlives the function timeout fails its batch, which is delivered again', async () => {
    const q = await queue();
    await send(q.url, ['slow']);
    let release: (() => void) | undefined;
    const hung = new Promise<void>((resolve) => {
      release = resolve;
    });
    const attempts: string[] = [];
    const runner = run(
      q.url,
      async (event, context) => {
        const record = event.Records[0] as SQSRecord;
        attempts.push(record.attributes.ApproximateReceiveCount);
        expect(context.getRemainingTimeInMillis()).toBeLessThanOrEqual(300);
        if (attempts.length === 1) await hung;
      },
      { functionTimeoutMs: 300 },
    );
    await waitFor('the retry after the timeout', () => attempts.length >= 2, 15_000);
    await waitFor('the message deleted', () => runner.stats.messagesDeleted === 1);
    release?.();
    expect(attempts.slice(0, 2)).toEqual(['1', '2']);
    expect(runner.stats.timedOut).toBe(1);
  });

  it('an itemIdentifier that is not in the batch makes the whole batch fail', async () => {
    const q = await queue();
    await send(q.url, ['p', 'q']);
    const attempts: number[] = [];
    const runner = run(q.url, async (event) => {
      attempts.push(event.Records.length);
      if (attempts.length === 1) return { batchItemFailures: [{ itemIdentifier: 'no-such-message' }] };
      return undefined;
    });
    await waitFor('the retry', () => runner.stats.messagesDeleted === 2, 15_000);
    expect(attempts.slice(0, 2)).toEqual([2, 2]);
    expect(runner.stats.invalidResponses).toBe(1);
  });

  it('a message that keeps failing moves to the dead-letter queue after maxReceiveCount receives', async () => {
    const dlq = await queue();
    const q = await queue({ RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: 2 }) });
    await send(q.url, ['poison']);
    let calls = 0;
    run(q.url, async () => {
      calls += 1;
      throw new Error('cannot apply');
    });
    const dead = await waitFor(
      'the message in the dead-letter queue',
      async () => (await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlq.url, MessageSystemAttributeNames: ['All'] }))).Messages?.[0],
      15_000,
    );
    expect(dead.Body).toBe('poison');
    expect(dead.Attributes?.DeadLetterQueueSourceArn).toBe(q.arn);
    expect(calls).toBe(2);
  });

  it('concurrent pollers never hold two batches of one message group, and each group is handled in order', async () => {
    const q = await queue();
    await send(q.url, ['a0', 'a1', 'a2', 'a3', 'a4'], 'A');
    await send(q.url, ['b0', 'b1', 'b2', 'b3', 'b4'], 'B');
    const active = new Set<string>();
    const overlaps: string[] = [];
    const handled: string[] = [];
    run(
      q.url,
      async (event) => {
        const groups = new Set(event.Records.map((r) => r.attributes.MessageGroupId as string));
        for (const g of groups) {
          if (active.has(g)) overlaps.push(g);
          active.add(g);
        }
        await new Promise((resolve) => setImmediate(resolve));
        handled.push(...event.Records.map((r) => r.body));
        for (const g of groups) active.delete(g);
      },
      { batchSize: 2, maxConcurrency: 4 },
    );
    await waitFor('all ten handled', () => handled.length >= 10, 15_000);
    expect(overlaps).toEqual([]);
    expect(handled.filter((h) => h.startsWith('a'))).toEqual(['a0', 'a1', 'a2', 'a3', 'a4']);
    expect(handled.filter((h) => h.startsWith('b'))).toEqual(['b0', 'b1', 'b2', 'b3', 'b4']);
  });

  it('start-up refuses a function timeout longer than the queue visibility timeout, like CreateEventSourceMapping', async () => {
    const q = await queue({ VisibilityTimeout: '1' });
    const runner = run(q.url, async () => undefined, { functionTimeoutMs: 5000 });
    const error = await rejection(runner.ready());
    expect(error).toBeInstanceOf(RunnerConfigError);
    expect(error.message).toContain('Queue visibility timeout: 1 seconds is less than Function timeout: 5 seconds');
  });

  it('without a function timeout, the queue visibility timeout is used as one', async () => {
    const q = await queue({ VisibilityTimeout: '2' });
    let remaining = 0;
    const runner = startEventSourceRunner({
      sqs,
      queueUrl: q.url,
      handler: async (_event, context) => {
        remaining = context.getRemainingTimeInMillis();
      },
      waitTimeSeconds: 1,
    });
    running.push(runner);
    await runner.ready();
    await send(q.url, ['t']);
    await waitFor('the invocation', () => remaining > 0);
    expect(remaining).toBeGreaterThan(1000);
    expect(remaining).toBeLessThanOrEqual(2000);
  });

  it('options out of range are refused with the value received and what is allowed', () => {
    expect(() => startEventSourceRunner({ sqs, queueUrl: 'x', handler: async () => undefined, batchSize: 11 })).toThrow(
      'batchSize must be an integer from 1 to 10, got 11',
    );
  });

  it('stop() ends a waiting long poll at once and leaves no waiting receive behind', async () => {
    const q = await queue();
    const runner = startEventSourceRunner({ sqs: endpoint.url, queueUrl: q.url, handler: async () => undefined, functionTimeoutMs: 1000, waitTimeSeconds: 20 });
    await runner.ready();
    const name = q.url.split('/').at(-1);
    await waitFor('the runner to be long polling', () => (endpoint.stats().queues.find((s) => s.name === name)?.waiting ?? 0) > 0);
    await runner.stop();
    await waitFor('no receive waiting', () => endpoint.stats().queues.find((s) => s.name === name)?.waiting === 0);
    expect(runner.stats.pollErrors).toBe(0);
  });
});
