/**
 * The event-source runner at the deployed settings — FIFO queue with VisibilityTimeout
 * 1800 s (6 × the 300 s function timeout), batch size 10, ReportBatchItemFailures,
 * maxReceiveCount 10 to a FIFO dead-letter queue — with the endpoint and the runner on one
 * {@link ManualClock}: half an hour of simulated time passes in one call and redeliveries
 * happen at once, without real waiting. Behaviour checked is Lambda's SQS event source
 * mapping as the Lambda Developer Guide documents it; each test cites its page.
 */
import {
  ChangeMessageVisibilityBatchCommand,
  CreateQueueCommand,
  GetQueueAttributesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Endpoint, ManualClock, startEndpoint } from '../endpoint/index.ts';
import { sdkClients, waitFor } from '../endpoint/testing.ts';
import { type EventSourceRunner, type SqsHandler, startEventSourceRunner } from './index.ts';

const FUNCTION_TIMEOUT_S = 300;
const VISIBILITY_S = 6 * FUNCTION_TIMEOUT_S;
const MAX_RECEIVE_COUNT = 10;
const SECOND = 1000;

const DOC = {
  errorHandling: 'https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html',
  scaling: 'https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html',
  configure: 'https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html',
  fifoLogic: 'https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/FIFO-queues-understanding-logic.html',
};

let clock: ManualClock;
let endpoint: Endpoint;
let clients: ReturnType<typeof sdkClients>;
let sqs: SQSClient;
let runner: EventSourceRunner | undefined;
let counter = 0;

beforeEach(async () => {
  clock = new ManualClock(Date.UTC(2026, 0, 1));
  endpoint = await startEndpoint({ port: 0, clock });
  clients = sdkClients(endpoint.url);
  sqs = clients.sqs;
});

afterEach(async () => {
  await runner?.stop();
  runner = undefined;
  clients.destroy();
  await endpoint.close();
});

interface Queue {
  readonly url: string;
  readonly arn: string;
  readonly name: string;
}

async function createQueue(attributes: Record<string, string>): Promise<Queue> {
  counter += 1;
  const name = `deployed-${counter}.fifo`;
  const url = (await sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: { FifoQueue: 'true', MessageRetentionPeriod: '1209600', ...attributes } })))
    .QueueUrl as string;
  const arn = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn as string;
  return { url, arn, name };
}

/** The replica queue and its dead-letter queue, as the stack creates them. */
async function deployedQueues(): Promise<{ queue: Queue; dlq: Queue }> {
  const dlq = await createQueue({});
  const queue = await createQueue({
    VisibilityTimeout: String(VISIBILITY_S),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlq.arn, maxReceiveCount: MAX_RECEIVE_COUNT }),
  });
  return { queue, dlq };
}

async function send(queue: Queue, bodies: readonly string[], group = 'source-1'): Promise<void> {
  for (const body of bodies) {
    await sqs.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: body, MessageGroupId: group, MessageDeduplicationId: body }));
  }
}

/** The event source mapping of the stack: batch 10, ReportBatchItemFailures, function timeout 300 s. */
function startDeployed(queue: Queue, handler: SqsHandler): EventSourceRunner {
  runner = startEventSourceRunner({
    sqs,
    queueUrl: queue.url,
    handler,
    batchSize: 10,
    functionTimeoutMs: FUNCTION_TIMEOUT_S * SECOND,
    reportBatchItemFailures: true,
    clock,
    onError: () => {},
  });
  return runner;
}

function queueStats(queue: Queue): { visible: number; inFlight: number } {
  const stats = endpoint.stats().queues.find((q) => q.name === queue.name);
  return { visible: stats?.visible ?? -1, inFlight: stats?.inFlight ?? -1 };
}

/** Bodies and receive counts of every invocation, in order. */
function recorder(respond: (event: SQSEvent, call: number) => Promise<SQSBatchResponse | void> | SQSBatchResponse | void): {
  calls: string[][];
  handler: SqsHandler;
} {
  const calls: string[][] = [];
  return {
    calls,
    handler: async (event) => {
      calls.push(event.Records.map((r) => `${r.body}#${r.attributes.ApproximateReceiveCount}`));
      return respond(event, calls.length);
    },
  };
}

/** A partial batch response naming the record with body `body`. */
function failing(event: SQSEvent, body: string): SQSBatchResponse {
  const record = event.Records.find((r) => r.body === body);
  return { batchItemFailures: record ? [{ itemIdentifier: record.messageId }] : [] };
}

describe('the runner at the deployed settings, on the endpoint clock', () => {
  it(`a reported failure and every record behind it come back after the 1800 s visibility timeout, not before (${DOC.errorHandling}; ${DOC.scaling})`, async () => {
    const { queue } = await deployedQueues();
    await send(queue, ['e1', 'e2', 'e3', 'e4', 'e5']);
    const { calls, handler } = recorder((event, call) => (call === 1 ? failing(event, 'e3') : undefined));
    const running = startDeployed(queue, handler);
    await waitFor('the first invocation and its deletes', () => calls.length === 1 && running.stats.messagesDeleted === 2);
    expect(calls[0]).toEqual(['e1#1', 'e2#1', 'e3#1', 'e4#1', 'e5#1']);
    expect(queueStats(queue)).toEqual({ visible: 0, inFlight: 3 });

    clock.advance(VISIBILITY_S * SECOND - 1);
    expect(queueStats(queue)).toEqual({ visible: 0, inFlight: 3 });
    expect(calls).toHaveLength(1);

    clock.advance(1);
    await waitFor('the redelivery', () => calls.length === 2);
    expect(calls[1]).toEqual(['e3#2', 'e4#2', 'e5#2']);
    await waitFor('everything deleted', () => running.stats.messagesDeleted === 5);
    expect(running.stats).toMatchObject({ partialFailures: 1, messagesRetried: 3, succeeded: 1 });
  });

  it(`messages sent to the group behind a failed batch wait for it: the group is blocked until the failed records come back and succeed (${DOC.scaling}; ${DOC.fifoLogic})`, async () => {
    const { queue } = await deployedQueues();
    await send(queue, ['a1', 'a2']);
    const { calls, handler } = recorder((event, call) => (call === 1 ? failing(event, 'a1') : undefined));
    const running = startDeployed(queue, handler);
    await waitFor('the first invocation', () => calls.length === 1);
    await send(queue, ['a3']);
    await send(queue, ['b1'], 'source-2');
    await waitFor('the other group to be handled and deleted', () => calls.flat().includes('b1#1') && running.stats.messagesDeleted === 1);
    expect(queueStats(queue)).toEqual({ visible: 1, inFlight: 2 }); // a3 waits behind a1 and a2
    clock.advance(VISIBILITY_S * SECOND - 1);
    expect(calls.flat().some((c) => c.startsWith('a3'))).toBe(false);
    clock.advance(1);
    await waitFor('the blocked group', () => calls.flat().includes('a3#1'));
    expect(calls.flat().filter((c) => c.startsWith('a'))).toEqual(['a1#1', 'a2#1', 'a1#2', 'a2#2', 'a3#1']);
  });

  it(`a thrown error fails the whole batch; after maxReceiveCount (10) receives, 1800 s apart, the records move to the FIFO dead-letter queue and the group moves on (${DOC.configure})`, async () => {
    const { queue, dlq } = await deployedQueues();
    await send(queue, ['p1', 'p2']);
    const { calls, handler } = recorder(() => {
      throw new Error('replica schema does not match');
    });
    const running = startDeployed(queue, handler);
    for (let receive = 1; receive <= MAX_RECEIVE_COUNT; receive++) {
      await waitFor(`invocation ${receive}`, () => calls.length === receive);
      expect(calls[receive - 1]).toEqual([`p1#${receive}`, `p2#${receive}`]);
      clock.advance(VISIBILITY_S * SECOND);
    }
    await waitFor('both records in the dead-letter queue', () => endpoint.stats().queues.find((q) => q.name === dlq.name)?.visible === 2);
    expect(calls).toHaveLength(MAX_RECEIVE_COUNT);
    expect(running.stats.failed).toBe(MAX_RECEIVE_COUNT);
    const dead = await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlq.url, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ['All'] }));
    expect(dead.Messages?.map((m) => [m.Body, m.Attributes?.DeadLetterQueueSourceArn])).toEqual([
      ['p1', queue.arn],
      ['p2', queue.arn],
    ]);
    await send(queue, ['p3']);
    await waitFor('the next message of the group', () => calls.length === MAX_RECEIVE_COUNT + 1);
    expect(calls.at(-1)).toEqual(['p3#1']);
  });

  it(`a handler that outlives the 300 s function timeout (on the clock) fails its batch, which comes back 1800 s after the receive (${DOC.errorHandling})`, async () => {
    const { queue } = await deployedQueues();
    await send(queue, ['slow']);
    let release: (() => void) | undefined;
    const hung = new Promise<void>((resolve) => {
      release = resolve;
    });
    const remaining: number[] = [];
    const { calls, handler } = recorder(async (_event, call) => {
      if (call === 1) await hung;
    });
    const running = startDeployed(queue, async (event, context) => {
      remaining.push(context.getRemainingTimeInMillis());
      return handler(event, context);
    });
    await waitFor('the first invocation', () => calls.length === 1);
    expect(remaining[0]).toBe(FUNCTION_TIMEOUT_S * SECOND);
    clock.advance(FUNCTION_TIMEOUT_S * SECOND - 1);
    expect(running.stats.timedOut).toBe(0);
    clock.advance(1);
    await waitFor('the timeout', () => running.stats.timedOut === 1);
    expect(queueStats(queue)).toEqual({ visible: 0, inFlight: 1 });
    clock.advance((VISIBILITY_S - FUNCTION_TIMEOUT_S) * SECOND);
    await waitFor('the retry', () => calls.length === 2);
    expect(calls[1]).toEqual(['slow#2']);
    release?.();
  });

  it(`records the function makes visible itself (ChangeMessageVisibilityBatch, all failed and unprocessed ones) come back then, not after 1800 s (${DOC.errorHandling})`, async () => {
    const { queue } = await deployedQueues();
    await send(queue, ['c1', 'c2', 'c3']);
    const { calls, handler } = recorder(async (event, call) => {
      if (call !== 1) return undefined;
      const rest = event.Records.slice(1);
      await sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: queue.url,
          Entries: rest.map((r, i) => ({ Id: String(i), ReceiptHandle: r.receiptHandle, VisibilityTimeout: 60 })),
        }),
      );
      return failing(event, 'c2');
    });
    startDeployed(queue, handler);
    await waitFor('the first invocation', () => calls.length === 1);
    clock.advance(60 * SECOND - 1);
    expect(calls).toHaveLength(1);
    clock.advance(1);
    await waitFor('the early retry', () => calls.length === 2);
    expect(calls[1]).toEqual(['c2#2', 'c3#2']);
  });

  it(`changing the visibility of the failed record alone does not bring it back early: the records behind it, still in flight, block the group (${DOC.fifoLogic})`, async () => {
    const { queue } = await deployedQueues();
    await send(queue, ['d1', 'd2', 'd3']);
    const { calls, handler } = recorder(async (event, call) => {
      if (call !== 1) return undefined;
      const failed = event.Records.find((r) => r.body === 'd2');
      await sqs.send(
        new ChangeMessageVisibilityBatchCommand({ QueueUrl: queue.url, Entries: [{ Id: 'd2', ReceiptHandle: failed?.receiptHandle, VisibilityTimeout: 0 }] }),
      );
      return failing(event, 'd2');
    });
    const running = startDeployed(queue, handler);
    await waitFor('the first invocation and its delete', () => calls.length === 1 && running.stats.messagesDeleted === 1);
    expect(queueStats(queue)).toEqual({ visible: 1, inFlight: 1 });
    clock.advance(VISIBILITY_S * SECOND - 1);
    expect(calls).toHaveLength(1);
    clock.advance(1);
    await waitFor('the retry after the visibility timeout', () => calls.length === 2);
    expect(calls[1]).toEqual(['d2#2', 'd3#2']);
  });
});
