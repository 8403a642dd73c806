/**
 * The ready-made pgfanout CDK app. Its settings belong in cdk.json's `context`, the one
 * place every deploy reads them from (`-c key=value` does not persist between deploys). Runs the cdk-nag AwsSolutions checks on
 * every synth; an unacknowledged finding stops it.
 */
import { App, RemovalPolicy, Validations } from 'aws-cdk-lib';
import type { RetentionDays } from 'aws-cdk-lib/aws-logs';
import nag from 'cdk-nag';
import { readAppSettings } from './context.ts';
import { PgfanoutStack } from './stack.ts';

const app = new App();
const settings = readAppSettings((key) => app.node.tryGetContext(key));
new PgfanoutStack(app, settings.stackName, {
  description: 'pgfanout: PostgreSQL changes fanned out to replica databases through SNS FIFO and SQS FIFO',
  ...(settings.source ? { source: settings.source } : {}),
  publisherService: settings.publisherService,
  replicas: settings.replicas,
  ...(settings.network ? { network: settings.network } : {}),
  ...(settings.alarmEmail ? { alarmEmail: settings.alarmEmail } : {}),
  ...(settings.namePrefix ? { namePrefix: settings.namePrefix } : {}),
  ...(settings.publisher ? { publisher: settings.publisher } : {}),
  ...(settings.logRetentionDays ? { logRetention: settings.logRetentionDays as RetentionDays } : {}),
  dataRemovalPolicy: settings.dataRemovalPolicy === 'destroy' ? RemovalPolicy.DESTROY : RemovalPolicy.RETAIN,
  terminationProtection: settings.terminationProtection,
});
Validations.of(app).addPlugins(new nag.AwsSolutionsChecks(app));
app.synth();
