/**
 * Creates the SNS and SQS resources of one pgfanout deployment on an endpoint (the local
 * endpoint or LocalStack): a FIFO topic per topic shard in use (`<prefix>.fifo` for shard 0,
 * `<prefix>-shard<N>.fifo`), and per replica a FIFO queue subscribed to its shard's topic with
 * raw delivery plus its FIFO dead-letter queue — the same shape the CDK stack deploys on AWS.
 */
import { CreateTopicCommand, SubscribeCommand, type SNSClient } from '@aws-sdk/client-sns';
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { resourceNames, shardTopicName } from '#core/config.ts';
import type { ReplicaQueues } from '../functions/ops/aws.ts';

export interface Fanout {
  /** The topic of shard 0. */
  readonly topicArn: string;
  /** The topic of every shard in use, shard 0 first: the publisher publishes to each. */
  readonly topicArns: readonly string[];
  readonly replicas: readonly ReplicaQueues[];
}

export interface FanoutOptions {
  readonly prefix: string;
  /** Replica names, or names with the topic shard the queue subscribes to (default 0). */
  readonly replicas: readonly (string | { readonly name: string; readonly shard?: number })[];
  /** Receives before a message moves to the dead-letter queue. @default 1000, as the stack deploys */
  readonly maxReceiveCount?: number;
  /** Queue visibility timeout in seconds. @default 30 */
  readonly visibilityTimeoutSeconds?: number;
}

/** Creates (or finds: the calls are idempotent) the topic, queues and subscriptions. */
export async function createFanout(sns: SNSClient, sqs: SQSClient, options: FanoutOptions): Promise<Fanout> {
  const entries = options.replicas.map((r) => (typeof r === 'string' ? { name: r, shard: 0 } : { name: r.name, shard: r.shard ?? 0 }));
  const topicArns = new Map<number, string>();
  for (const shard of [...new Set([0, ...entries.map((e) => e.shard)])].sort((a, b) => a - b)) {
    const topic = await sns.send(
      new CreateTopicCommand({ Name: shardTopicName(options.prefix, shard), Attributes: { FifoTopic: 'true', ContentBasedDeduplication: 'false' } }),
    );
    topicArns.set(shard, topic.TopicArn as string);
  }
  const replicas: ReplicaQueues[] = [];
  for (const { name: replica, shard } of entries) {
    const n = resourceNames(options.prefix, replica);
    const dlq = await sqs.send(
      new CreateQueueCommand({ QueueName: n.deadLetterQueue, Attributes: { FifoQueue: 'true', MessageRetentionPeriod: '1209600' } }),
    );
    const dlqUrl = dlq.QueueUrl as string;
    const dlqArn = await queueArn(sqs, dlqUrl);
    const queue = await sqs.send(
      new CreateQueueCommand({
        QueueName: n.queue,
        Attributes: {
          FifoQueue: 'true',
          ContentBasedDeduplication: 'false',
          MessageRetentionPeriod: '1209600',
          VisibilityTimeout: String(options.visibilityTimeoutSeconds ?? 30),
          ReceiveMessageWaitTimeSeconds: '20',
          RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: options.maxReceiveCount ?? 1000 }),
        },
      }),
    );
    const queueUrl = queue.QueueUrl as string;
    const arn = await queueArn(sqs, queueUrl);
    await sns.send(
      new SubscribeCommand({ TopicArn: topicArns.get(shard) as string, Protocol: 'sqs', Endpoint: arn, Attributes: { RawMessageDelivery: 'true' } }),
    );
    replicas.push({ name: replica, queueUrl, queueArn: arn, deadLetterQueueUrl: dlqUrl });
  }
  return { topicArn: topicArns.get(0) as string, topicArns: [...topicArns.values()], replicas };
}

async function queueArn(sqs: SQSClient, queueUrl: string): Promise<string> {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }));
  const arn = out.Attributes?.QueueArn;
  if (!arn) throw new Error(`queue ${queueUrl} has no QueueArn attribute`);
  return arn;
}
