/**
 * SNS, SQS and Lambda clients for the operator commands, and what they read of a replica's queues: the
 * same code against the local endpoint, LocalStack or AWS (`AWS_ENDPOINT_URL` or the SDK's own
 * resolution).
 */
import { LambdaClient } from '@aws-sdk/client-lambda';
import { SNSClient } from '@aws-sdk/client-sns';
import { GetQueueAttributesCommand, SQSClient } from '@aws-sdk/client-sqs';

export interface AwsEndpoint {
  readonly endpoint?: string;
  readonly region?: string;
}

/** Clients for `endpoint` (or the SDK's default resolution when none is given). */
export function awsClients(where: AwsEndpoint = {}): { sns: SNSClient; sqs: SQSClient; lambda: LambdaClient } {
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
  return { sns: new SNSClient(common), sqs: new SQSClient(common), lambda: new LambdaClient(common) };
}

export interface ReplicaQueues {
  readonly name: string;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly deadLetterQueueUrl: string;
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
