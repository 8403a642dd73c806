/**
 * The synthesized resource policies, evaluated as statements (infra-tests/fixtures/iam-policy.ts)
 * rather than matched as JSON: who may publish to the alarm topic, over what transport.
 */
import type { NestedStack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PgfanoutStack } from '../cdk/stack.ts';
import { buildStack } from './fixtures/cdk-apps.ts';
import { evaluate, resolveIntrinsics, type IntrinsicEnvironment, type PolicyRequest } from './fixtures/iam-policy.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const ACCOUNT = '123456789012';
const REGION = 'eu-west-1';
const OTHER_ACCOUNT = '999988887777';

let stack: PgfanoutStack;
let parent: Json;
let env: IntrinsicEnvironment;

function logicalIdOf(construct: { node: { defaultChild?: unknown } }): string {
  return stack.getLogicalId(construct.node.defaultChild as never);
}

/** The resolved policy document of the AWS::SNS::TopicPolicy attached to the topic `topicId`. */
function topicPolicy(template: Json, topicId: string, e: IntrinsicEnvironment): Json {
  const found = Object.values(template.Resources as Json).filter(
    (r) => r.Type === 'AWS::SNS::TopicPolicy' && JSON.stringify(r.Properties.Topics) === JSON.stringify([{ Ref: topicId }]),
  );
  expect(found).toHaveLength(1);
  return resolveIntrinsics(found[0].Properties.PolicyDocument, e);
}

beforeAll(() => {
  ({ stack } = buildStack({ env: { account: ACCOUNT, region: REGION } }));
  parent = Template.fromStack(stack).toJSON();
  env = { account: ACCOUNT, region: REGION, template: parent };
  void (stack.pgfanout.replicaStacks.get('eu') as NestedStack);
});

describe('the alarm topic', () => {
  const alarmTopicArn = () => `ref:${logicalIdOf(stack.pgfanout.alarmTopic)}`;
  const alarmArn = (name: string, account = ACCOUNT) => `arn:aws:cloudwatch:${REGION}:${account}:alarm:${name}`;
  const fromCloudWatch = (context: PolicyRequest['context']): PolicyRequest => ({
    principal: { kind: 'service', service: 'cloudwatch.amazonaws.com' },
    action: 'sns:Publish',
    resource: alarmTopicArn(),
    context: { 'aws:SecureTransport': true, ...context },
  });
  const decide = (request: PolicyRequest) => evaluate({ resourcePolicy: topicPolicy(parent, logicalIdOf(stack.pgfanout.alarmTopic), env), resourceAccount: ACCOUNT }, request);

  // https://repost.aws/knowledge-center/cloudwatch-receive-sns-for-alarm-trigger: without this, CloudWatch
  // is "not authorized to perform: SNS:Publish", and the alarm e-mails never arrive.
  it("lets CloudWatch publish the notifications of this stack's alarms", () => {
    expect(decide(fromCloudWatch({ 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': alarmArn('pgfanout-eu-lag') })).decision).toBe('allow');
    expect(decide(fromCloudWatch({ 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': alarmArn('pgfanout-publisher-stalled') })).decision).toBe('allow');
  });

  it("refuses CloudWatch acting for another account's alarms, or for alarms outside the prefix", () => {
    expect(decide(fromCloudWatch({ 'aws:SourceAccount': OTHER_ACCOUNT, 'aws:SourceArn': alarmArn('pgfanout-eu-lag', OTHER_ACCOUNT) })).decision).not.toBe('allow');
    expect(decide(fromCloudWatch({ 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': alarmArn('someone-elses-alarm') })).decision).not.toBe('allow');
    expect(decide(fromCloudWatch({})).decision).not.toBe('allow');
  });

  it('refuses a principal of another account', () => {
    const request: PolicyRequest = {
      principal: { kind: 'aws', arn: `arn:aws:iam::${OTHER_ACCOUNT}:role/intruder`, account: OTHER_ACCOUNT },
      action: 'sns:Publish',
      resource: alarmTopicArn(),
      context: { 'aws:SecureTransport': true },
    };
    expect(decide(request).decision).not.toBe('allow');
  });

  it("lets CloudWatch use the key to encrypt this stack's notifications, and no other account's", () => {
    const key = Object.values(parent.Resources as Json).find((r) => r.Type === 'AWS::KMS::Key') as Json;
    const keyPolicy = resolveIntrinsics(key.Properties.KeyPolicy, env);
    const request = (account: string): PolicyRequest => ({
      principal: { kind: 'service', service: 'cloudwatch.amazonaws.com' },
      action: 'kms:GenerateDataKey',
      resource: `arn:aws:kms:${REGION}:${ACCOUNT}:key/k`,
      context: { 'aws:SourceAccount': account, 'aws:SourceArn': alarmArn('pgfanout-eu-lag', account) },
    });
    expect(evaluate({ resourcePolicy: keyPolicy, resourceAccount: ACCOUNT }, request(ACCOUNT)).decision).toBe('allow');
    expect(evaluate({ resourcePolicy: keyPolicy, resourceAccount: ACCOUNT }, request(OTHER_ACCOUNT)).decision).not.toBe('allow');
  });

  it('refuses publishing without TLS, even from CloudWatch', () => {
    const d = decide(fromCloudWatch({ 'aws:SecureTransport': false, 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': alarmArn('pgfanout-eu-lag') }));
    expect(d.decision).toBe('explicit-deny');
  });
});
