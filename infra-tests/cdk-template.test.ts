/**
 * The synthesized templates: topic, key, queues, functions, event sources, publisher
 * service, alarms, dashboard and outputs, one behaviour per test. The stack is built
 * once (bundling the fixture handler with the local esbuild) and inspected.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RemovalPolicy, Stack, type NestedStack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import type { CloudAssembly } from 'aws-cdk-lib/cx-api';
import { beforeAll, describe, expect, it } from 'vitest';
import { APPLIER_ENV, DIMENSIONS, METRIC_NAMESPACE, METRICS, PUBLISHER_ENV } from '#core/config.ts';
import { applierDimensions, publisherDimensions } from '../cdk/metrics.ts';
import { Pgfanout } from '../cdk/pgfanout.ts';
import type { PgfanoutPublisher } from '../cdk/publisher.ts';
import type { PgfanoutStack } from '../cdk/stack.ts';
import { buildStack, FIXTURE_APPLIER, replica, secretArn, SOURCE_ID, testApp } from './fixtures/cdk-apps.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let stack: PgfanoutStack;
let assembly: CloudAssembly;
let parent: Template;
let eu: Template;
let us: Template;

function sortedDimensions(dimensions: Record<string, string>): { Name: string; Value: string }[] {
  return Object.entries(dimensions).map(([Name, Value]) => ({ Name, Value })).sort((a, b) => a.Name.localeCompare(b.Name));
}

function logicalId(template: Template, type: string, props: Json = {}): string {
  const found = Object.keys(template.findResources(type, props));
  expect(found, `${type} ${JSON.stringify(props)}`).toHaveLength(1);
  return found[0] as string;
}

function resource(template: Template, type: string, props: Json = {}): Json {
  return template.findResources(type, props)[logicalId(template, type, props)] as Json;
}

/** The value the parent stack passes to a nested stack's parameter referenced as `{ Ref }`. */
function passedToNested(nested: NestedStack, ref: unknown): unknown {
  const param = (ref as { Ref: string }).Ref;
  const id = stack.getLogicalId(nested.nestedStackResource as never);
  return (parent.toJSON().Resources[id] as Json).Properties.Parameters[param];
}

const keyId = () => logicalId(parent, 'AWS::KMS::Key');
const euStack = () => stack.pgfanout.replicaStacks.get('eu') as NestedStack;

beforeAll(() => {
  ({ stack } = buildStack({
    replicas: [
      replica('eu', {
        include: ['public.orders', 'public.lines'],
        exclude: ['public.audit'],
        lagAlarmSeconds: 120,
        timeoutSeconds: 60,
        memoryMiB: 1024,
        sources: ['3f2c0a1e-7b6d-4e5f-8a9b-0c1d2e3f4a5b'],
        allowSchemaChanges: true,
      }),
      { name: 'us', secretName: 'pgfanout/us', sources: [SOURCE_ID] },
    ],
    publisher: { tickMs: 500 },
  }));
  assembly = (stack.node.root as unknown as { synth(): CloudAssembly }).synth();
  parent = Template.fromStack(stack);
  eu = Template.fromStack(euStack());
  us = Template.fromStack(stack.pgfanout.replicaStacks.get('us') as NestedStack);
});

describe('topic and key', () => {
  it('is an SNS FIFO topic named after the prefix, encrypted with the customer-managed key, ids from the publisher', () => {
    parent.hasResourceProperties('AWS::SNS::Topic', {
      TopicName: 'pgfanout.fifo',
      FifoTopic: true,
      ContentBasedDeduplication: false,
      KmsMasterKeyId: { 'Fn::GetAtt': [keyId(), 'Arn'] },
    });
  });

  it('rotates the key', () => {
    parent.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
  });

  it('refuses publishing without TLS and by anyone but the publisher task role', () => {
    const topicId = logicalId(parent, 'AWS::SNS::Topic', { Properties: { FifoTopic: true } });
    const taskRole = stack.getLogicalId((stack.pgfanout.publisher as PgfanoutPublisher).taskDefinition.taskRole.node.defaultChild as never);
    parent.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [{ Ref: topicId }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Action: 'sns:Publish', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({
            Effect: 'Deny',
            Action: 'sns:Publish',
            Principal: { AWS: '*' },
            Condition: { ArnNotEquals: { 'aws:PrincipalArn': { 'Fn::GetAtt': [taskRole, 'Arn'] } } },
          }),
        ]),
      },
    });
  });

  it('lets SNS use the key to deliver into the encrypted queues, for this topic only', () => {
    const statements = (resource(parent, 'AWS::KMS::Key').Properties.KeyPolicy.Statement as Json[]).filter((s) => s.Principal?.Service === 'sns.amazonaws.com');
    expect(statements).toHaveLength(1);
    expect(statements[0]).toMatchObject({ Effect: 'Allow', Action: ['kms:Decrypt', 'kms:GenerateDataKey'] });
    expect(JSON.stringify(statements[0]?.Condition.ArnEquals['aws:SourceArn'])).toContain(':pgfanout.fifo');
  });

  it('lets CloudWatch use the key to notify the encrypted alarm topic', () => {
    const statements = (resource(parent, 'AWS::KMS::Key').Properties.KeyPolicy.Statement as Json[]).filter((s) => s.Principal?.Service === 'cloudwatch.amazonaws.com');
    expect(statements).toHaveLength(1);
    expect(statements[0]?.Action).toEqual(['kms:Decrypt', 'kms:GenerateDataKey*']);
  });
});

describe('a replica', () => {
  it('has a FIFO queue encrypted with the key, kept 14 days, visibility six times the function timeout, dead letters only after 1000 receives (the most SQS allows)', () => {
    const dlq = logicalId(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu-dlq.fifo' } });
    const queue = resource(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu.fifo' } }).Properties;
    expect(queue).toMatchObject({
      FifoQueue: true,
      ContentBasedDeduplication: false,
      MessageRetentionPeriod: 1_209_600,
      VisibilityTimeout: 360,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlq, 'Arn'] }, maxReceiveCount: 1000 },
    });
    expect(passedToNested(euStack(), queue.KmsMasterKeyId)).toEqual({ 'Fn::GetAtt': [keyId(), 'Arn'] });
  });

  it('has a FIFO dead-letter queue encrypted with the key, kept 14 days', () => {
    const dlq = resource(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu-dlq.fifo' } }).Properties;
    expect(dlq).toMatchObject({ FifoQueue: true, MessageRetentionPeriod: 1_209_600 });
    expect(passedToNested(euStack(), dlq.KmsMasterKeyId)).toEqual({ 'Fn::GetAtt': [keyId(), 'Arn'] });
  });

  it('subscribes the queue to the topic with raw message delivery', () => {
    const queue = logicalId(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu.fifo' } });
    const sub = resource(eu, 'AWS::SNS::Subscription').Properties;
    expect(sub).toMatchObject({ Protocol: 'sqs', RawMessageDelivery: true, Endpoint: { 'Fn::GetAtt': [queue, 'Arn'] } });
    expect(passedToNested(euStack(), sub.TopicArn)).toEqual({ Ref: logicalId(parent, 'AWS::SNS::Topic', { Properties: { FifoTopic: true } }) });
  });

  it('lets only the topic send to the queue, and only over TLS', () => {
    const queue = logicalId(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu.fifo' } });
    eu.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: queue }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          Match.objectLike({ Effect: 'Allow', Action: 'sqs:SendMessage', Principal: { Service: 'sns.amazonaws.com' }, Condition: { ArnEquals: { 'aws:SourceArn': Match.anyValue() } } }),
        ]),
      },
    });
    const dlq = logicalId(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu-dlq.fifo' } });
    eu.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: dlq }],
      PolicyDocument: { Statement: [Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })] },
    });
  });

  it("gives the subscription a FIFO dead-letter queue, encrypted with the key, so that SNS parks what it cannot deliver", () => {
    const sdlq = logicalId(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu-sns-dlq.fifo' } });
    const props = resource(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu-sns-dlq.fifo' } }).Properties;
    expect(props).toMatchObject({ FifoQueue: true, MessageRetentionPeriod: 1_209_600 });
    expect(passedToNested(euStack(), props.KmsMasterKeyId)).toEqual({ 'Fn::GetAtt': [keyId(), 'Arn'] });
    expect(resource(eu, 'AWS::SNS::Subscription').Properties.RedrivePolicy).toEqual({ deadLetterTargetArn: { 'Fn::GetAtt': [sdlq, 'Arn'] } });
  });

  it('alarms when SNS parks a message in the delivery dead-letter queue', () => {
    const sdlq = logicalId(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu-sns-dlq.fifo' } });
    eu.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: 'pgfanout-eu-undelivered',
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [sdlq, 'QueueName'] } }],
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 0,
    });
  });

  it('alarms when SNS could not even park a message (the notification is lost)', () => {
    const topicId = logicalId(parent, 'AWS::SNS::Topic', { Properties: { FifoTopic: true } });
    const alarm = resource(parent, 'AWS::CloudWatch::Alarm', { Properties: { AlarmName: 'pgfanout-notifications-lost' } }).Properties;
    expect(alarm).toMatchObject({ Namespace: 'AWS/SNS', MetricName: 'NumberOfNotificationsFailedToRedriveToDlq', Statistic: 'Sum', Threshold: 0, ComparisonOperator: 'GreaterThanThreshold' });
    expect(alarm.Dimensions).toEqual([{ Name: 'TopicName', Value: { 'Fn::GetAtt': [topicId, 'TopicName'] } }]);
  });

  it('runs the applier on nodejs24.x, arm64, in the VPC, with the timeout and memory asked for', () => {
    const fn = resource(eu, 'AWS::Lambda::Function').Properties;
    expect(fn).toMatchObject({ Runtime: 'nodejs24.x', Architectures: ['arm64'], Handler: 'index.handler', Timeout: 60, MemorySize: 1024 });
    expect(fn.VpcConfig.SubnetIds).toHaveLength(2);
    expect(passedToNested(euStack(), fn.VpcConfig.SecurityGroupIds[0])).toEqual({
      'Fn::GetAtt': [logicalId(parent, 'AWS::EC2::SecurityGroup', { Properties: { GroupDescription: Match.stringLikeRegexp('appliers') } }), 'GroupId'],
    });
  });

  it('configures the applier through the shared environment variable names', () => {
    expect(resource(eu, 'AWS::Lambda::Function').Properties.Environment.Variables).toMatchObject({
      [APPLIER_ENV.REPLICA_NAME]: 'eu',
      [APPLIER_ENV.REPLICA_SECRET_ARN]: secretArn('pgfanout/eu'),
      [APPLIER_ENV.INCLUDE_TABLES]: 'public.orders,public.lines',
      [APPLIER_ENV.EXCLUDE_TABLES]: 'public.audit',
      [APPLIER_ENV.SOURCE_IDS]: '3f2c0a1e-7b6d-4e5f-8a9b-0c1d2e3f4a5b',
      [APPLIER_ENV.ALLOW_SCHEMA_CHANGES]: 'true',
    });
    const usEnv = resource(us, 'AWS::Lambda::Function').Properties.Environment.Variables;
    expect(usEnv[APPLIER_ENV.REPLICA_SECRET_ARN]).toBe('pgfanout/us');
    expect(usEnv).not.toHaveProperty(APPLIER_ENV.INCLUDE_TABLES);
    expect(usEnv).not.toHaveProperty(APPLIER_ENV.ALLOW_SCHEMA_CHANGES);
    expect(usEnv).not.toHaveProperty(APPLIER_ENV.REPLICA_URL);
  });

  it('lets the applier verify RDS certificates with the CA file the Lambda runtime ships', () => {
    const env = resource(eu, 'AWS::Lambda::Function').Properties.Environment.Variables;
    expect(env.NODE_EXTRA_CA_CERTS).toBe('/var/runtime/ca-cert.pem');
    expect(env).not.toHaveProperty(APPLIER_ENV.DB_TLS);
  });

  it('feeds the applier batches of 10 with partial batch responses', () => {
    const queue = logicalId(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu.fifo' } });
    eu.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [queue, 'Arn'] },
      FunctionName: { Ref: logicalId(eu, 'AWS::Lambda::Function') },
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('grants the applier its queue, its secret, its log group and nothing else', () => {
    const queue = logicalId(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu.fifo' } });
    const logs = logicalId(eu, 'AWS::Logs::LogGroup');
    const statements = resource(eu, 'AWS::IAM::Policy').Properties.PolicyDocument.Statement as Json[];
    const byResource = statements.map((s) => ({ actions: [s.Action].flat().sort(), resource: s.Resource }));
    expect(byResource).toHaveLength(5);
    expect(byResource).toContainEqual({ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resource: { 'Fn::GetAtt': [logs, 'Arn'] } });
    expect(byResource).toContainEqual({ actions: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'], resource: secretArn('pgfanout/eu') });
    expect(byResource).toContainEqual({
      actions: ['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage'],
      resource: { 'Fn::GetAtt': [queue, 'Arn'] },
    });
    const kms = byResource.find((s) => s.actions[0] === 'kms:Decrypt');
    expect(kms?.actions).toEqual(['kms:Decrypt']);
    expect(passedToNested(euStack(), kms?.resource)).toEqual({ 'Fn::GetAtt': [keyId(), 'Arn'] });
    const eni = byResource.find((s) => s.resource === '*');
    expect(eni?.actions.every((a: string) => a.startsWith('ec2:'))).toBe(true);
    expect(resource(eu, 'AWS::IAM::Role').Properties.ManagedPolicyArns).toBeUndefined();
  });

  it('keeps the applier logs for a month', () => {
    eu.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
    expect(resource(eu, 'AWS::Lambda::Function').Properties.LoggingConfig.LogGroup).toEqual({ Ref: logicalId(eu, 'AWS::Logs::LogGroup') });
  });

  it('alarms when a message is parked in the dead-letter queue', () => {
    const dlq = logicalId(eu, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu-dlq.fifo' } });
    eu.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmName: 'pgfanout-eu-dead-letters',
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [dlq, 'QueueName'] } }],
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 0,
    });
  });

  it("alarms when the replica lags more than its threshold, from the applier's lag or the queue's oldest message", () => {
    const alarm = resource(eu, 'AWS::CloudWatch::Alarm', { Properties: { AlarmName: 'pgfanout-eu-lag' } }).Properties;
    expect(alarm).toMatchObject({ Threshold: 120, ComparisonOperator: 'GreaterThanThreshold', EvaluationPeriods: 3 });
    const metrics = alarm.Metrics as Json[];
    expect(metrics.find((m) => m.ReturnData)?.Expression).toBe('MAX([FILL(lag, 0), FILL(age, 0)])');
    expect(metrics.find((m) => m.Id === 'lag')?.MetricStat.Metric).toEqual({
      Namespace: METRIC_NAMESPACE,
      MetricName: METRICS.applier.applyLagSeconds,
      Dimensions: Object.entries(applierDimensions('eu', 'pgfanout')).map(([Name, Value]) => ({ Name, Value })).sort((a, b) => a.Name.localeCompare(b.Name)),
    });
    expect(metrics.find((m) => m.Id === 'age')?.MetricStat.Metric.MetricName).toBe('ApproximateAgeOfOldestMessage');
  });

  it('alarms on applier errors, on gaps in the stream and on refused messages', () => {
    eu.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmName: 'pgfanout-eu-applier-errors', Namespace: 'AWS/Lambda', MetricName: 'Errors', Threshold: 0 });
    eu.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmName: 'pgfanout-eu-gap', Namespace: METRIC_NAMESPACE, MetricName: METRICS.applier.gapsDetected, Threshold: 0 });
    eu.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmName: 'pgfanout-eu-refused', Namespace: METRIC_NAMESPACE, MetricName: METRICS.applier.messagesRefused, Threshold: 0 });
  });

  it('sends every alarm to the alarm topic, and the recovery only of alarms on metrics that arrive every minute', () => {
    const alarms = Object.values(eu.findResources('AWS::CloudWatch::Alarm')) as Json[];
    expect(alarms).toHaveLength(8);
    const alarmTopic = { Ref: logicalId(parent, 'AWS::SNS::Topic', { Properties: { FifoTopic: Match.absent() } }) };
    const withRecovery: string[] = [];
    for (const alarm of alarms) {
      expect(passedToNested(euStack(), alarm.Properties.AlarmActions[0])).toEqual(alarmTopic);
      if (alarm.Properties.OKActions) {
        expect(alarm.Properties.OKActions).toEqual(alarm.Properties.AlarmActions);
        withRecovery.push(alarm.Properties.AlarmName);
      }
    }
    expect(withRecovery.sort()).toEqual(['pgfanout-eu-dead-letters', 'pgfanout-eu-lag', 'pgfanout-eu-oldest-message', 'pgfanout-eu-undelivered']);
  });

  it('treats the missing data of sparse metrics (errors, gaps) as no news, so that those alarms do not flap', () => {
    for (const name of ['pgfanout-eu-applier-errors', 'pgfanout-eu-gap', 'pgfanout-eu-permanent-failures']) {
      const alarm = resource(eu, 'AWS::CloudWatch::Alarm', { Properties: { AlarmName: name } }).Properties;
      expect(alarm.TreatMissingData, name).toBe('notBreaching');
      expect(alarm.OKActions, name).toBeUndefined();
    }
  });

  it('bundles the applier with the local esbuild into one ESM file', () => {
    const code = resource(eu, 'AWS::Lambda::Function').Properties.Code;
    const hash = String(code.S3Key).replace(/\.zip$/, '');
    const dir = join(assembly.directory, `asset.${hash}`);
    expect(existsSync(join(dir, 'index.mjs'))).toBe(true);
    expect(readFileSync(join(dir, 'index.mjs'), 'utf8')).toContain('createRequire');
  });
});

describe('the publisher', () => {
  const task = () => resource(parent, 'AWS::ECS::TaskDefinition').Properties;
  const container = () => task().ContainerDefinitions[0] as Json;

  it('is an ARM64 Fargate task of 0.25 vCPU and 512 MiB', () => {
    expect(task()).toMatchObject({ Cpu: '256', Memory: '512', RequiresCompatibilities: ['FARGATE'], RuntimePlatform: { CpuArchitecture: 'ARM64', OperatingSystemFamily: 'LINUX' } });
  });

  it('runs one task, starting the new one before stopping the old one (a lock handover, not a gap), with a rolling-back circuit breaker', () => {
    parent.hasResourceProperties('AWS::ECS::Service', {
      DesiredCount: 1,
      LaunchType: 'FARGATE',
      DeploymentConfiguration: { MinimumHealthyPercent: 100, MaximumPercent: 200, DeploymentCircuitBreaker: { Enable: true, Rollback: true } },
      NetworkConfiguration: { AwsvpcConfiguration: { AssignPublicIp: 'DISABLED' } },
    });
  });

  it('gets the source credentials from Secrets Manager, never as a plain environment value', () => {
    expect(container().Secrets).toEqual([{ Name: PUBLISHER_ENV.SOURCE_SECRET, ValueFrom: secretArn('pgfanout/source') }]);
    const env = Object.fromEntries((container().Environment as Json[]).map((e) => [e.Name, e.Value]));
    expect(Object.keys(env).sort()).toEqual([PUBLISHER_ENV.DB_TLS, PUBLISHER_ENV.DEPLOYMENT, PUBLISHER_ENV.HEALTH_PORT, PUBLISHER_ENV.LOG_LEVEL, PUBLISHER_ENV.TICK_MS, PUBLISHER_ENV.TOPIC_ARN].sort());
    expect(env[PUBLISHER_ENV.DB_TLS]).toBe('verify-full');
    expect(env[PUBLISHER_ENV.TOPIC_ARN]).toEqual({ Ref: logicalId(parent, 'AWS::SNS::Topic', { Properties: { FifoTopic: true } }) });
    expect(env[PUBLISHER_ENV.TICK_MS]).toBe('500');
  });

  it("checks the container's health on the publisher's health endpoint", () => {
    const check = container().HealthCheck;
    expect(check.Command.slice(0, 3)).toEqual(['CMD', 'node', '-e']);
    expect(check.Command[3]).toContain("fetch('http://127.0.0.1:8080/health')");
    // Replaced within a minute of getting stuck: 30 s without progress, then two failed checks 10 s apart.
    expect({ Interval: check.Interval, Retries: check.Retries, Timeout: check.Timeout }).toEqual({ Interval: 10, Retries: 2, Timeout: 5 });
    const env = Object.fromEntries((container().Environment as Json[]).map((e) => [e.Name, e.Value]));
    expect(env[PUBLISHER_ENV.HEALTH_PORT]).toBe('8080');
  });

  it('logs to a log group kept a month', () => {
    expect(container().LogConfiguration.LogDriver).toBe('awslogs');
    const logs = (container().LogConfiguration.Options['awslogs-group'] as { Ref: string }).Ref;
    expect((parent.toJSON().Resources[logs] as Json).Properties.RetentionInDays).toBe(30);
  });

  it('may publish to the topic and use its key, nothing more', () => {
    const role = stack.getLogicalId((stack.pgfanout.publisher as PgfanoutPublisher).taskDefinition.taskRole.node.defaultChild as never);
    const policy = Object.values(parent.findResources('AWS::IAM::Policy')).find((p) => JSON.stringify((p as Json).Properties.Roles) === JSON.stringify([{ Ref: role }])) as Json;
    expect(policy.Properties.PolicyDocument.Statement).toEqual([
      { Action: 'sns:Publish', Effect: 'Allow', Resource: { Ref: logicalId(parent, 'AWS::SNS::Topic', { Properties: { FifoTopic: true } }) } },
      { Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Effect: 'Allow', Resource: { 'Fn::GetAtt': [keyId(), 'Arn'] } },
    ]);
  });

  it('turns Container Insights on, for the running-task metric', () => {
    parent.hasResourceProperties('AWS::ECS::Cluster', { ClusterSettings: [{ Name: 'containerInsights', Value: 'enabled' }] });
  });

  it('builds its image from functions/publisher/Dockerfile for linux/arm64', () => {
    const manifest = JSON.parse(readFileSync(join(assembly.directory, `${stack.artifactId}.assets.json`), 'utf8')) as Json;
    const images = Object.values(manifest.dockerImages as Json) as Json[];
    expect(images).toHaveLength(1);
    expect(images[0]?.source).toMatchObject({ dockerFile: 'functions/publisher/Dockerfile', platform: 'linux/arm64' });
    const context = join(assembly.directory, images[0]?.source.directory as string);
    expect(existsSync(join(context, 'functions/publisher/main.ts'))).toBe(true);
    expect(existsSync(join(context, 'node_modules'))).toBe(false);
  });

  it('alarms when no task runs (no data counts as not running)', () => {
    const alarm = resource(parent, 'AWS::CloudWatch::Alarm', { Properties: { AlarmName: 'pgfanout-publisher-not-running' } }).Properties;
    expect(alarm).toMatchObject({ ComparisonOperator: 'LessThanThreshold', Threshold: 1, TreatMissingData: 'breaching' });
    expect(alarm.Metrics[0].MetricStat).toMatchObject({ Metric: { Namespace: 'ECS/ContainerInsights', MetricName: 'RunningTaskCount' }, Stat: 'Minimum' });
  });

  it('alarms when events wait unpublished longer than the threshold', () => {
    const alarm = resource(parent, 'AWS::CloudWatch::Alarm', { Properties: { AlarmName: 'pgfanout-publisher-stalled' } }).Properties;
    expect(alarm).toMatchObject({ Threshold: 300, Namespace: METRIC_NAMESPACE, MetricName: METRICS.publisher.oldestUnpublishedSeconds, Statistic: 'Maximum' });
    expect(alarm.Dimensions).toEqual(sortedDimensions(publisherDimensions('pgfanout')));
  });

  it('treats a publisher that reports nothing (cannot connect, not running) as stalled', () => {
    const alarm = resource(parent, 'AWS::CloudWatch::Alarm', { Properties: { AlarmName: 'pgfanout-publisher-stalled' } }).Properties;
    expect(alarm.TreatMissingData).toBe('breaching');
  });

  it('alarms when no publisher heartbeat arrives, with the dimensions the publisher emits', () => {
    const alarm = resource(parent, 'AWS::CloudWatch::Alarm', { Properties: { AlarmName: 'pgfanout-publisher-silent' } }).Properties;
    expect(alarm).toMatchObject({ MetricName: METRICS.publisher.heartbeat, Statistic: 'SampleCount', Threshold: 1, ComparisonOperator: 'LessThanThreshold', TreatMissingData: 'breaching' });
    expect(alarm.Dimensions).toEqual(sortedDimensions(publisherDimensions('pgfanout')));
  });

  it("tells the publisher and the appliers the deployment, so that another stack's metrics stay apart", () => {
    const env = Object.fromEntries((container().Environment as Json[]).map((e) => [e.Name, e.Value]));
    expect(env[PUBLISHER_ENV.DEPLOYMENT]).toBe('pgfanout');
    expect(resource(eu, 'AWS::Lambda::Function').Properties.Environment.Variables[APPLIER_ENV.DEPLOYMENT]).toBe('pgfanout');
    const { stack: staging } = buildStack({ replicas: [replica('eu')], namePrefix: 'staging' });
    const alarm = Object.values(Template.fromStack(staging).findResources('AWS::CloudWatch::Alarm')).find((a) => (a as Json).Properties.AlarmName === 'staging-publisher-stalled') as Json;
    expect(alarm.Properties.Dimensions).toContainEqual({ Name: DIMENSIONS.deployment, Value: 'staging' });
  });
});

describe('dashboard', () => {
  let widgets: Json[];
  beforeAll(() => {
    const body = resource(parent, 'AWS::CloudWatch::Dashboard').Properties.DashboardBody['Fn::Join'][1] as unknown[];
    widgets = JSON.parse(body.map((part) => (typeof part === 'string' ? part : 'TOKEN')).join('')).widgets as Json[];
  });
  const titles = () => widgets.map((w) => w.properties.title).filter(Boolean);
  const metricsOf = (title: string) => JSON.stringify(widgets.find((w) => w.properties.title === title)?.properties.metrics);

  it('shows per replica lag, applied changes per second, queue and applier', () => {
    for (const name of ['eu', 'us']) {
      expect(titles()).toEqual(expect.arrayContaining([`${name}: lag (s)`, `${name}: applied changes per second`, `${name}: queue`, `${name}: applier`]));
    }
    expect(metricsOf('eu: lag (s)')).toContain(METRICS.applier.applyLagSeconds);
    expect(metricsOf('eu: lag (s)')).toContain('ApproximateAgeOfOldestMessage');
    expect(metricsOf('eu: applied changes per second')).toContain(METRICS.applier.changesApplied);
    for (const metric of ['ApproximateNumberOfMessagesVisible', 'ApproximateNumberOfMessagesNotVisible']) expect(metricsOf('eu: queue')).toContain(metric);
    for (const metric of ['Errors', 'Throttles', 'Duration']) expect(metricsOf('eu: applier')).toContain(metric);
  });

  it('shows the publisher: events per second, lag, oldest unpublished event, task health', () => {
    expect(metricsOf('publisher: events per second')).toContain(METRICS.publisher.eventsPublished);
    expect(metricsOf('publisher: lag (s)')).toContain(METRICS.publisher.publishLagSeconds);
    expect(metricsOf('publisher: oldest unpublished event (s)')).toContain(METRICS.publisher.oldestUnpublishedSeconds);
    expect(metricsOf('publisher: task health')).toContain('RunningTaskCount');
  });
});

describe('per-replica options', () => {
  let t: Template;
  beforeAll(() => {
    const { stack: local } = buildStack({
      replicas: [replica('eu', { enabled: false, databaseTls: 'disable', architecture: 'x86_64', maxReceiveCount: 5, oldestMessageAlarmSeconds: 7200 })],
    });
    t = Template.fromStack(local.pgfanout.replicaStacks.get('eu') as NestedStack);
  });

  it('feeds the applier by default, and not when the replica is disabled (paused)', () => {
    eu.hasResourceProperties('AWS::Lambda::EventSourceMapping', { Enabled: true });
    t.hasResourceProperties('AWS::Lambda::EventSourceMapping', { Enabled: false });
  });

  it("sets the applier's TLS mode and architecture when asked (LocalStack on x86, a local PostgreSQL)", () => {
    const fn = resource(t, 'AWS::Lambda::Function').Properties;
    expect(fn.Architectures).toEqual(['x86_64']);
    expect(fn.Environment.Variables[APPLIER_ENV.DB_TLS]).toBe('disable');
  });

  it('takes the receive count and the oldest-message threshold', () => {
    expect(resource(t, 'AWS::SQS::Queue', { Properties: { QueueName: 'pgfanout-eu.fifo' } }).Properties.RedrivePolicy.maxReceiveCount).toBe(5);
    expect(resource(t, 'AWS::CloudWatch::Alarm', { Properties: { AlarmName: 'pgfanout-eu-oldest-message' } }).Properties.Threshold).toBe(7200);
  });

  it('alarms when the oldest message has waited an hour, long before SQS drops it after 14 days', () => {
    const alarm = resource(eu, 'AWS::CloudWatch::Alarm', { Properties: { AlarmName: 'pgfanout-eu-oldest-message' } }).Properties;
    expect(alarm).toMatchObject({ Namespace: 'AWS/SQS', MetricName: 'ApproximateAgeOfOldestMessage', Statistic: 'Maximum', Threshold: 3600, ComparisonOperator: 'GreaterThanThreshold' });
  });

  it("alarms on the applier's permanent failures", () => {
    const alarm = resource(eu, 'AWS::CloudWatch::Alarm', { Properties: { AlarmName: 'pgfanout-eu-permanent-failures' } }).Properties;
    expect(alarm).toMatchObject({ Namespace: METRIC_NAMESPACE, MetricName: METRICS.applier.permanentFailures, Statistic: 'Sum', Threshold: 0 });
    expect(alarm.Dimensions).toEqual(sortedDimensions(applierDimensions('eu', 'pgfanout')));
  });
});

describe('nothing deleted by accident', () => {
  it('retains the queues, the dead-letter queues and the key when they leave the stack', () => {
    for (const template of [eu, us]) {
      const queues = Object.values(template.findResources('AWS::SQS::Queue')) as Json[];
      expect(queues).toHaveLength(3);
      for (const q of queues) expect(q).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    }
    expect(resource(parent, 'AWS::KMS::Key')).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
  });

  it('deletes them with the stack when told to', () => {
    const { stack: disposable } = buildStack({ replicas: [replica('eu')], dataRemovalPolicy: RemovalPolicy.DESTROY });
    const nested = Template.fromStack(disposable.pgfanout.replicaStacks.get('eu') as NestedStack);
    for (const q of Object.values(nested.findResources('AWS::SQS::Queue')) as Json[]) expect(q.DeletionPolicy).toBe('Delete');
    expect(Object.values(Template.fromStack(disposable).findResources('AWS::KMS::Key'))[0]).toMatchObject({ DeletionPolicy: 'Delete' });
  });

  it('turns termination protection on unless told otherwise', () => {
    expect(stack.terminationProtection).toBe(true);
    expect(assembly.getStackArtifact(stack.artifactId).terminationProtection).toBe(true);
    expect(buildStack({ replicas: [], terminationProtection: false }).stack.terminationProtection).toBe(false);
  });
});

describe('alarm topic, network and outputs', () => {
  it('subscribes the AlarmEmail parameter to the encrypted alarm topic only when it is not empty', () => {
    parent.hasParameter('AlarmEmail', { Type: 'String', Default: '' });
    const sub = resource(parent, 'AWS::SNS::Subscription', { Properties: { Protocol: 'email' } });
    expect(sub.Properties.Endpoint).toEqual({ Ref: 'AlarmEmail' });
    expect(parent.toJSON().Conditions[sub.Condition]).toEqual({ 'Fn::Not': [{ 'Fn::Equals': [{ Ref: 'AlarmEmail' }, ''] }] });
    parent.hasResourceProperties('AWS::SNS::Topic', { FifoTopic: Match.absent(), KmsMasterKeyId: { 'Fn::GetAtt': [keyId(), 'Arn'] } });
  });

  it('creates a VPC over two zones with one NAT gateway and flow logs when none is given', () => {
    parent.resourceCountIs('AWS::EC2::VPC', 1);
    parent.resourceCountIs('AWS::EC2::NatGateway', 1);
    parent.resourceCountIs('AWS::EC2::Subnet', 4);
    parent.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'REJECT' });
  });

  it('outputs the topic ARN, each queue URL and the dashboard URL', () => {
    const outputs = parent.toJSON().Outputs as Json;
    expect(outputs.TopicArn.Value).toEqual({ Ref: logicalId(parent, 'AWS::SNS::Topic', { Properties: { FifoTopic: true } }) });
    expect(JSON.stringify(outputs.DashboardUrl.Value)).toContain('#dashboards:name=');
    const queueUrls = Object.entries(outputs).filter(([id]) => id.includes('QueueUrl'));
    expect(queueUrls.map(([, o]) => (o as Json).Description).sort()).toEqual(['Queue of replica eu', 'Queue of replica us']);
  });

  it('uses an existing VPC, subnets and security groups by id, with no lookup and no new network', () => {
    const { stack: existing } = buildStack({
      replicas: [replica('eu')],
      network: { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'], securityGroupIds: ['sg-0123456789abcdef0'] },
    });
    const t = Template.fromStack(existing);
    t.resourceCountIs('AWS::EC2::VPC', 0);
    t.resourceCountIs('AWS::EC2::SecurityGroup', 0);
    t.hasResourceProperties('AWS::ECS::Service', {
      NetworkConfiguration: { AwsvpcConfiguration: { Subnets: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'], SecurityGroups: ['sg-0123456789abcdef0'] } },
    });
    const nested = Template.fromStack(existing.pgfanout.replicaStacks.get('eu') as NestedStack);
    nested.hasResourceProperties('AWS::Lambda::Function', { VpcConfig: { SubnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'] } });
  });

  it("grants decryption with a secret's customer-managed key when one is named", () => {
    const key = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    const { stack: keyed } = buildStack({ replicas: [replica('eu', { secretKeyArn: key })] });
    const nested = Template.fromStack(keyed.pgfanout.replicaStacks.get('eu') as NestedStack);
    const statements = resource(nested, 'AWS::IAM::Policy').Properties.PolicyDocument.Statement as Json[];
    expect(statements).toContainEqual({
      Action: 'kms:Decrypt',
      Effect: 'Allow',
      Resource: key,
      Condition: { StringEquals: { 'kms:ViaService': { 'Fn::Join': ['', ['secretsmanager.', { Ref: 'AWS::Region' }, '.amazonaws.com']] } } },
    });
  });

  it('without the publisher service, deploys no ECS resources, lets IAM decide who publishes, and still alarms on a stalled publisher', () => {
    const { stack: local } = buildStack({ publisherService: false, source: undefined, replicas: [replica('eu')] });
    const t = Template.fromStack(local);
    for (const type of ['AWS::ECS::Cluster', 'AWS::ECS::Service', 'AWS::ECS::TaskDefinition']) t.resourceCountIs(type, 0);
    t.resourceCountIs('AWS::EC2::SecurityGroup', 1);
    const topic = logicalId(t, 'AWS::SNS::Topic', { Properties: { FifoTopic: true } });
    const statements = resource(t, 'AWS::SNS::TopicPolicy', { Properties: { Topics: [{ Ref: topic }] } }).Properties.PolicyDocument.Statement as Json[];
    expect(statements.map((st) => st.Condition)).toEqual([{ Bool: { 'aws:SecureTransport': 'false' } }]);
    t.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmName: 'pgfanout-publisher-stalled' });
    expect(Object.values(t.findResources('AWS::CloudWatch::Alarm')).map((a) => (a as Json).Properties.AlarmName)).not.toContain('pgfanout-publisher-not-running');
    expect(JSON.stringify(resource(t, 'AWS::CloudWatch::Dashboard').Properties.DashboardBody)).toContain('publisher: publish errors');
    expect(Object.keys(t.toJSON().Outputs as Json)).not.toContain('PublisherSecurityGroupId');
  });

  it('used as a construct, subscribes a literal alarm email unconditionally, and none when absent', () => {
    const withEmail = new Stack(testApp(), 'WithEmail');
    new Pgfanout(withEmail, 'Pgfanout', { source: { secretArn: secretArn('s') }, replicas: [], alarmEmail: 'ops@example.com', applierEntry: FIXTURE_APPLIER });
    const t = Template.fromStack(withEmail);
    expect(resource(t, 'AWS::SNS::Subscription', { Properties: { Protocol: 'email' } })).toMatchObject({ Properties: { Endpoint: 'ops@example.com' } });
    expect(t.toJSON().Conditions).toBeUndefined();
    const without = new Stack(testApp(), 'WithoutEmail');
    new Pgfanout(without, 'Pgfanout', { source: { secretArn: secretArn('s') }, replicas: [], applierEntry: FIXTURE_APPLIER });
    Template.fromStack(without).resourceCountIs('AWS::SNS::Subscription', 0);
  });
});
