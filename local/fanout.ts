/**
 * Creates the SNS and SQS resources of one pgfanout deployment on an endpoint (the local
 * endpoint or LocalStack): a FIFO topic, and per replica a FIFO queue subscribed with raw
 * delivery plus its FIFO dead-letter queue — the same shape the CDK stack deploys on AWS.
 */
import { CreateTopicCommand, SubscribeCommand, type SNSClient } from '@aws-sdk/client-sns';
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { resourceNames } from '#core/config.ts';
import type { ReplicaQueues } from '../functions/ops/aws.ts';

export interface Fanout {
  readonly topicArn: string;
  readonly replicas: readonly ReplicaQueues[];
}

export interface FanoutOptions {
  readonly prefix: string;
  readonly replicas: readonly string[];
  /** Receives before a message moves to the dead-letter queue. @default 1000, as the stack deploys */
  readonly maxReceiveCount?: number;
  /** Queue visibility timeout in seconds. @default 30 */
  readonly visibilityTimeoutSeconds?: number;
}

/** Creates (or finds: the calls are idempotent) the topic, queues and subscriptions. */
export async function createFanout(sns: SNSClient, sqs: SQSClient, options: FanoutOptions): Promise<Fanout> {
  const names = resourceNames(options.prefix);
  const topic = await sns.send(
    new CreateTopicCommand({ Name: names.topic, Attributes: { FifoTopic: 'true', ContentBasedDeduplication: 'false' } }),
  );
  const topicArn = topic.TopicArn as string;
  const replicas: ReplicaQueues[] = [];
  for (const replica of options.replicas) {
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
      new SubscribeCommand({ TopicArn: topicArn, Protocol: 'sqs', Endpoint: arn, Attributes: { RawMessageDelivery: 'true' } }),
    );
    replicas.push({ name: replica, queueUrl, queueArn: arn, deadLetterQueueUrl: dlqUrl });
  }
  return { topicArn, replicas };
}

async function queueArn(sqs: SQSClient, queueUrl: string): Promise<string> {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }));
  const arn = out.Attributes?.QueueArn;
  if (!arn) throw new Error(`queue ${queueUrl} has no QueueArn attribute`);
  return arn;
}
