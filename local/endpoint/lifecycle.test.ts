/**
 * Start-up, shutdown and persistence of the local endpoint: what another process (the
 * `pgfanout local` pipeline, end-to-end tests) relies on to start and stop it cleanly.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateTopicCommand, PublishCommand, SubscribeCommand } from '@aws-sdk/client-sns';
import {
  CreateQueueCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ReceiveMessageCommand,
} from '@aws-sdk/client-sqs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EndpointOptionError, PersistenceError, startEndpoint } from './index.ts';
import { rejection, sdkClients, waitFor } from './testing.ts';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pgfanout-endpoint-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function handles(): string[] {
  return process.getActiveResourcesInfo().filter((r) => r === 'TCPServerWrap' || r === 'TCPSocketWrap' || r === 'Timeout').sort();
}

describe('start and stop', () => {
  it('close() ends a waiting long poll with no messages, closes every connection and leaves no timer behind', async () => {
    const before = handles();
    const endpoint = await startEndpoint({ port: 0 });
    const { sqs, destroy } = sdkClients(endpoint.url);
    const url = (await sqs.send(new CreateQueueCommand({ QueueName: 'waiting' }))).QueueUrl as string;
    const waiting = sqs.send(new ReceiveMessageCommand({ QueueUrl: url, WaitTimeSeconds: 20 }));
    await waitFor('the receive to wait', () => endpoint.stats().queues[0]?.waiting === 1);
    await endpoint.close();
    expect((await waiting).Messages ?? []).toEqual([]);
    await endpoint.close();
    destroy();
    // Handles are released by libuv on the next turns of the event loop after close.
    const left = await waitFor('sockets and timers to be released', () => {
      const extra = [...handles()];
      for (const h of before) extra.splice(extra.indexOf(h), extra.includes(h) ? 1 : 0);
      return extra.length === 0 ? extra : undefined;
    }, 2000);
    expect(left).toEqual([]);
  });

  it('a port in use is refused with the port in the message', async () => {
    const first = await startEndpoint({ port: 0 });
    try {
      const error = await rejection(startEndpoint({ port: first.port }));
      expect(error).toBeInstanceOf(EndpointOptionError);
      expect(error.message).toContain(`port ${first.port}`);
    } finally {
      await first.close();
    }
  });

  it('bad options are refused, each with the value received and what is allowed', async () => {
    const error = await rejection(startEndpoint({ port: 70000, accountId: '42', region: 'mars' }));
    expect(error).toBeInstanceOf(EndpointOptionError);
    expect(error.message).toContain('port must be an integer from 0 to 65535, got 70000');
    expect(error.message).toContain('accountId must be 12 digits, got "42"');
    expect(error.message).toContain('region must look like "us-east-1", got "mars"');
  });
});

describe('queue URLs', () => {
  it('follow the origin the client used, so that a client that sends to the queue URL reaches the endpoint', async () => {
    const endpoint = await startEndpoint({ port: 0 });
    const byIp = sdkClients(`http://127.0.0.1:${endpoint.port}`);
    const byName = sdkClients(`http://localhost:${endpoint.port}`);
    try {
      const created = (await byIp.sqs.send(new CreateQueueCommand({ QueueName: 'where' }))).QueueUrl;
      expect(created).toBe(`http://127.0.0.1:${endpoint.port}/000000000000/where`);
      const found = (await byName.sqs.send(new GetQueueUrlCommand({ QueueName: 'where' }))).QueueUrl;
      expect(found).toBe(`http://localhost:${endpoint.port}/000000000000/where`);
      expect(endpoint.url).toBe(`http://127.0.0.1:${endpoint.port}`);
    } finally {
      byIp.destroy();
      byName.destroy();
      await endpoint.close();
    }
  });
});

describe('persistence', () => {
  it('a restarted endpoint keeps topics, subscriptions, queues, messages in flight and deduplication ids', async () => {
    const file = join(dir, 'state.json');
    const first = await startEndpoint({ port: 0, persistFile: file });
    const a = sdkClients(first.url);
    const topicArn = (await a.sns.send(new CreateTopicCommand({ Name: 'changes.fifo', Attributes: { FifoTopic: 'true' } }))).TopicArn as string;
    const url = (await a.sqs.send(new CreateQueueCommand({ QueueName: 'replica.fifo', Attributes: { FifoQueue: 'true' } }))).QueueUrl as string;
    const arn = (await a.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }))).Attributes?.QueueArn;
    await a.sns.send(new SubscribeCommand({ TopicArn: topicArn, Protocol: 'sqs', Endpoint: arn, Attributes: { RawMessageDelivery: 'true' } }));
    for (const n of [1, 2, 3]) {
      await a.sns.send(new PublishCommand({ TopicArn: topicArn, Message: `m${n}`, MessageGroupId: `g${n}`, MessageDeduplicationId: `d${n}` }));
    }
    const inFlight = (await a.sqs.send(new ReceiveMessageCommand({ QueueUrl: url, VisibilityTimeout: 600 }))).Messages?.[0];
    a.destroy();
    await first.close();

    const second = await startEndpoint({ port: 0, persistFile: file });
    const b = sdkClients(second.url);
    try {
      const again = (await b.sqs.send(new GetQueueUrlCommand({ QueueName: 'replica.fifo' }))).QueueUrl as string;
      const depth = await b.sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: again, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
      );
      expect(depth.Attributes).toEqual({ ApproximateNumberOfMessages: '2', ApproximateNumberOfMessagesNotVisible: '1' });
      await b.sqs.send(new DeleteMessageCommand({ QueueUrl: again, ReceiptHandle: inFlight?.ReceiptHandle }));
      await b.sns.send(new PublishCommand({ TopicArn: topicArn, Message: 'duplicate', MessageGroupId: 'g1', MessageDeduplicationId: 'd1' }));
      await b.sns.send(new PublishCommand({ TopicArn: topicArn, Message: 'm4', MessageGroupId: 'g4', MessageDeduplicationId: 'd4' }));
      const rest = (await b.sqs.send(new ReceiveMessageCommand({ QueueUrl: again, MaxNumberOfMessages: 10 }))).Messages ?? [];
      expect(rest.map((m) => m.Body).sort()).toEqual(['m2', 'm3', 'm4']);
      expect(inFlight?.Body).toBe('m1');
    } finally {
      b.destroy();
      await second.close();
    }
  });

  it('a persistence file that is not a saved state is refused, naming the file', async () => {
    const file = join(dir, 'broken.json');
    await writeFile(file, '{"half": ');
    const error = await rejection(startEndpoint({ port: 0, persistFile: file }));
    expect(error).toBeInstanceOf(PersistenceError);
    expect(error.message).toContain(file);
    expect(error.message).toContain('not valid JSON');
  });
});
