/**
 * SNS and SQS resources for one pgfanout deployment on an endpoint (the local endpoint,
 * LocalStack, or AWS): a FIFO topic, and per replica a FIFO queue subscribed with raw
 * delivery plus its FIFO dead-letter queue — the same shape the CDK stack deploys.
 */
import { CreateTopicCommand, SNSClient, SubscribeCommand } from '@aws-sdk/client-sns';
import { CreateQueueCommand, GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';
import { resourceNames } from '#core/config.ts';

export interface AwsEndpoint {
  readonly endpoint?: string;
  readonly region?: string;
}

/** Clients for `endpoint` (or the SDK's default resolution when none is given). */
export function awsClients(where: AwsEndpoint = {}): { sns: SNSClient; sqs: SQSClient } {
  const common = {
    region: where.region ?? process.env.AWS_REGION ?? 'us-east-1',
    ...(where.endpoint
      ? {
          endpoint: where.endpoint,
          // Local endpoints accept any credentials; AWS needs real ones from the environment.
          credentials: {
            accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'test',
            secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'test',
          },
        }
      : {}),
  };
  return { sns: new SNSClient(common), sqs: new SQSClient(common) };
}

export interface ReplicaQueues {
  readonly name: string;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly deadLetterQueueUrl: string;
}

export interface Fanout {
  readonly topicArn: string;
  readonly replicas: readonly ReplicaQueues[];
}

export interface FanoutOptions {
  readonly prefix: string;
  readonly replicas: readonly string[];
  /** Receives before a message moves to the dead-letter queue. @default 5 */
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
          RedrivePolicy: JSON.stringify({ deadLetterTargetArn: dlqArn, maxReceiveCount: options.maxReceiveCount ?? 5 }),
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

/** Visible, in-flight and dead-letter message counts of one replica's queues. */
export async function queueDepths(
  sqs: SQSClient,
  queues: ReplicaQueues,
): Promise<{ visible: number; inFlight: number; deadLetter: number; oldestAgeSeconds: number | null }> {
  const [main, dlq] = await Promise.all([
    sqs.send(
      new GetQueueAttributesCommand({
        QueueUrl: queues.queueUrl,
        AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'],
      }),
    ),
    sqs.send(new GetQueueAttributesCommand({ QueueUrl: queues.deadLetterQueueUrl, AttributeNames: ['ApproximateNumberOfMessages'] })),
  ]);
  return {
    visible: Number(main.Attributes?.ApproximateNumberOfMessages ?? 0),
    inFlight: Number(main.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0),
    deadLetter: Number(dlq.Attributes?.ApproximateNumberOfMessages ?? 0),
    oldestAgeSeconds: null,
  };
}
