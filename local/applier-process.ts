/**
 * One replica's applier as its own process, exactly as deployed: the Lambda handler
 * module (`functions/applier/handler.ts`, configured by the same environment variables
 * the CDK stack sets) driven by the local event-source runner. Used where the applier's
 * own memory is measured, and by LocalStack users who run appliers outside Lambda.
 *
 * Environment: the applier's (PGFANOUT_REPLICA_NAME, PGFANOUT_REPLICA_URL,
 * PGFANOUT_SIGNING_KEY_SECRET, …) plus
 * PGFANOUT_QUEUE_URL and AWS_ENDPOINT_URL.
 */
import { SQSClient } from '@aws-sdk/client-sqs';
import { handler } from '../functions/applier/handler.ts';
import { startEventSourceRunner } from './runner/index.ts';

const queueUrl = process.env.PGFANOUT_QUEUE_URL;
if (!queueUrl) {
  console.error('environment variable PGFANOUT_QUEUE_URL is required');
  process.exit(2);
}
const sqs = new SQSClient({});
const runner = startEventSourceRunner({ sqs, queueUrl, handler, batchSize: 10, functionName: `pgfanout-applier-${process.env.PGFANOUT_REPLICA_NAME ?? ''}` });
const stop = async () => {
  await runner.stop();
  await handler.applier.close();
  sqs.destroy();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
