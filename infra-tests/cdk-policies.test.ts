/**
 * The synthesized resource policies, evaluated as statements (infra-tests/fixtures/iam-policy.ts)
 * rather than matched as JSON: who may publish to the alarm topic, over what transport.
 */
import { Stack, type NestedStack } from 'aws-cdk-lib';
import type { Role } from 'aws-cdk-lib/aws-iam';
import type { Topic } from 'aws-cdk-lib/aws-sns';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import type { PgfanoutStack } from '../cdk/stack.ts';
import { buildStack, replica } from './fixtures/cdk-apps.ts';
import { evaluate, resolveIntrinsics, type IntrinsicEnvironment, type PolicyRequest } from './fixtures/iam-policy.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const ACCOUNT = '123456789012';
const REGION = 'eu-west-1';
const OTHER_ACCOUNT = '999988887777';

let stack: PgfanoutStack;
let parent: Json;
let env: IntrinsicEnvironment;

const TOPIC_ARN = `arn:aws:sns:${REGION}:${ACCOUNT}:pgfanout.fifo`;
const OPERATOR_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/pgfanout-operator`;
const queueArn = (name: string) => `arn:aws:sqs:${REGION}:${ACCOUNT}:${name}`;

/** The template of replica `name`, with the environment that resolves its parameters as the parent passes them. */
function nested(name: string): { template: Json; env: IntrinsicEnvironment } {
  const nestedStack = stack.pgfanout.replicaStacks.get(name) as NestedStack;
  const template = Template.fromStack(nestedStack).toJSON();
  const passed = parent.Resources[stack.getLogicalId(nestedStack.nestedStackResource as never)].Properties.Parameters as Json;
  return { template, env: { account: ACCOUNT, region: REGION, template, refs: resolveIntrinsics(passed, env) } };
}

/** The resolved policy of the AWS::SQS::QueuePolicy of the queue named `queueName` in `t`. */
function queuePolicy(t: { template: Json; env: IntrinsicEnvironment }, queueName: string): Json {
  const [queueId] = Object.entries(t.template.Resources as Json).find(([, r]) => r.Type === 'AWS::SQS::Queue' && r.Properties.QueueName === queueName) as [string, Json];
  const policies = Object.values(t.template.Resources as Json).filter((r) => r.Type === 'AWS::SQS::QueuePolicy' && JSON.stringify(r.Properties.Queues) === JSON.stringify([{ Ref: queueId }]));
  expect(policies).toHaveLength(1);
  return resolveIntrinsics(policies[0].Properties.PolicyDocument, { ...t.env, attributes: { [`${queueId}.Arn`]: queueArn(queueName) } });
}

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
  env = {
    account: ACCOUNT,
    region: REGION,
    template: parent,
    refs: { [logicalIdOf(stack.pgfanout.topic)]: TOPIC_ARN },
    attributes: { [`${logicalIdOf(stack.pgfanout.operatorRole)}.Arn`]: OPERATOR_ROLE_ARN },
  };
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

describe('who may send to a replica queue', () => {
  let policy: Json;
  let operatorPolicy: Json;
  beforeAll(() => {
    policy = queuePolicy(nested('eu'), 'pgfanout-eu.fifo');
    operatorPolicy = resolveIntrinsics(parent.Resources[logicalIdOf(stack.pgfanout.operatorPolicy)].Properties.PolicyDocument, env);
  });
  const send = (principal: PolicyRequest['principal'], context: PolicyRequest['context'] = {}): PolicyRequest => ({
    principal,
    action: 'sqs:SendMessage',
    resource: queueArn('pgfanout-eu.fifo'),
    context: { 'aws:SecureTransport': true, ...context },
  });
  /** An identity policy that allows every SQS action everywhere, as an administrator's would. */
  const admin = { Statement: [{ Effect: 'Allow', Action: ['sqs:*', 'kms:*'], Resource: '*' }] };

  it('lets the topic deliver', () => {
    const d = evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, send({ kind: 'service', service: 'sns.amazonaws.com' }, { 'aws:SourceArn': TOPIC_ARN, 'aws:SourceAccount': ACCOUNT }));
    expect(d.decision).toBe('allow');
  });

  it('refuses another topic delivering, even through SNS', () => {
    const other = `arn:aws:sns:${REGION}:${ACCOUNT}:other.fifo`;
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, send({ kind: 'service', service: 'sns.amazonaws.com' }, { 'aws:SourceArn': other })).decision).not.toBe('allow');
  });

  it('refuses a principal of this account whose own policies allow every SQS action', () => {
    const d = evaluate(
      { resourcePolicy: policy, resourceAccount: ACCOUNT, identityPolicies: [admin] },
      send({ kind: 'aws', arn: `arn:aws:iam::${ACCOUNT}:role/some-admin`, account: ACCOUNT }),
    );
    expect(d.decision).toBe('explicit-deny');
    expect(d.deniedBy).toContain('resource:OnlyTheTopicAndTheOperatorSend');
  });

  it('refuses a principal of another account', () => {
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, send({ kind: 'aws', arn: `arn:aws:iam::${OTHER_ACCOUNT}:role/x`, account: OTHER_ACCOUNT })).decision).not.toBe('allow');
  });

  it('lets the operator role send (a dead-letter redrive sends with its permissions)', () => {
    const d = evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT, identityPolicies: [operatorPolicy] }, send({ kind: 'aws', arn: OPERATOR_ROLE_ARN, account: ACCOUNT }));
    expect(d.decision).toBe('allow');
  });

  it('refuses sending without TLS, to the topic as to anyone', () => {
    const d = evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, send({ kind: 'service', service: 'sns.amazonaws.com' }, { 'aws:SourceArn': TOPIC_ARN, 'aws:SecureTransport': false }));
    expect(d.decision).toBe('explicit-deny');
  });
});

describe('the operator policy', () => {
  let operatorPolicy: Json;
  beforeAll(() => {
    operatorPolicy = resolveIntrinsics(parent.Resources[logicalIdOf(stack.pgfanout.operatorPolicy)].Properties.PolicyDocument, env);
  });
  const operator = { kind: 'aws' as const, arn: OPERATOR_ROLE_ARN, account: ACCOUNT };
  const may = (action: string, resource: string, context: PolicyRequest['context'] = {}) =>
    evaluate({ resourceAccount: ACCOUNT, identityPolicies: [operatorPolicy] }, { principal: operator, action, resource, context }).decision === 'allow';
  const mapping = `arn:aws:lambda:${REGION}:${ACCOUNT}:event-source-mapping:0f2c5f4e-1111-2222-3333-444455556666`;

  it('is attached to the operator role', () => {
    expect(parent.Resources[logicalIdOf(stack.pgfanout.operatorPolicy)].Properties.Roles).toEqual([{ Ref: logicalIdOf(stack.pgfanout.operatorRole) }]);
  });

  it('allows status: reading the queues and dead-letter queues of this deployment', () => {
    for (const q of ['pgfanout-eu.fifo', 'pgfanout-eu-dlq.fifo']) {
      expect(may('sqs:GetQueueUrl', queueArn(q))).toBe(true);
      expect(may('sqs:GetQueueAttributes', queueArn(q))).toBe(true);
    }
  });

  it('allows redrive: listing, moving back and skipping dead letters, sending into the queue', () => {
    for (const action of ['sqs:ReceiveMessage', 'sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:StartMessageMoveTask', 'sqs:ListMessageMoveTasks']) {
      expect(may(action, queueArn('pgfanout-eu-dlq.fifo')), action).toBe(true);
    }
    expect(may('sqs:SendMessage', queueArn('pgfanout-eu.fifo'))).toBe(true);
    expect(may('kms:Decrypt', 'attr:' + stack.getLogicalId(stack.pgfanout.encryptionKey.node.defaultChild as never) + '.Arn')).toBe(true);
  });

  it("allows pausing this deployment's replicas and no one else's", () => {
    expect(may('lambda:UpdateEventSourceMapping', mapping, { 'aws:ResourceTag/pgfanout:deployment': 'pgfanout' })).toBe(true);
    expect(may('lambda:UpdateEventSourceMapping', mapping, { 'aws:ResourceTag/pgfanout:deployment': 'staging' })).toBe(false);
    expect(may('lambda:UpdateEventSourceMapping', mapping)).toBe(false);
    expect(may('lambda:UpdateFunctionCode', `arn:aws:lambda:${REGION}:${ACCOUNT}:function:pgfanout-eu`)).toBe(false);
  });

  it("allows reading this deployment's appliers' settings (redrive's dry runs) and no one else's", () => {
    const fn = `arn:aws:lambda:${REGION}:${ACCOUNT}:function:pgfanout-eu-applier`;
    expect(may('lambda:GetFunctionConfiguration', fn, { 'aws:ResourceTag/pgfanout:deployment': 'pgfanout' })).toBe(true);
    expect(may('lambda:GetFunctionConfiguration', fn, { 'aws:ResourceTag/pgfanout:deployment': 'staging' })).toBe(false);
    expect(may('lambda:GetFunctionConfiguration', fn)).toBe(false);
    expect(may('lambda:UpdateFunctionConfiguration', fn, { 'aws:ResourceTag/pgfanout:deployment': 'pgfanout' })).toBe(false);
  });

  it("refuses what none of the three commands needs: receiving from the live queue, purging, deleting, other deployments' queues", () => {
    expect(may('sqs:ReceiveMessage', queueArn('pgfanout-eu.fifo'))).toBe(false);
    expect(may('sqs:DeleteMessage', queueArn('pgfanout-eu.fifo'))).toBe(false);
    expect(may('sqs:PurgeQueue', queueArn('pgfanout-eu-dlq.fifo'))).toBe(false);
    expect(may('sqs:DeleteQueue', queueArn('pgfanout-eu.fifo'))).toBe(false);
    expect(may('sqs:SetQueueAttributes', queueArn('pgfanout-eu.fifo'))).toBe(false);
    expect(may('sqs:SendMessage', queueArn('staging-eu.fifo'))).toBe(false);
    expect(may('sns:Publish', TOPIC_ARN)).toBe(false);
  });

  it('tags every replica resource with the deployment, the event source mapping included', () => {
    const mappings = Object.values(nested('eu').template.Resources as Json).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping');
    expect(mappings).toHaveLength(1);
    expect(mappings[0].Properties.Tags).toContainEqual({ Key: 'pgfanout:deployment', Value: 'pgfanout' });
  });
});

describe('the delivery dead-letter queue of a subscription', () => {
  let policy: Json;
  beforeAll(() => {
    policy = queuePolicy(nested('eu'), 'pgfanout-eu-sns-dlq.fifo');
  });
  const send = (principal: PolicyRequest['principal'], context: PolicyRequest['context'] = {}): PolicyRequest => ({
    principal,
    action: 'sqs:SendMessage',
    resource: queueArn('pgfanout-eu-sns-dlq.fifo'),
    context: { 'aws:SecureTransport': true, ...context },
  });

  it('lets SNS park what the topic could not deliver', () => {
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, send({ kind: 'service', service: 'sns.amazonaws.com' }, { 'aws:SourceArn': TOPIC_ARN })).decision).toBe('allow');
  });

  it('refuses anyone else, an administrator of the account included', () => {
    const admin = { Statement: [{ Effect: 'Allow', Action: 'sqs:*', Resource: '*' }] };
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT, identityPolicies: [admin] }, send({ kind: 'aws', arn: `arn:aws:iam::${ACCOUNT}:role/admin`, account: ACCOUNT })).decision).toBe('explicit-deny');
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, send({ kind: 'service', service: 'sns.amazonaws.com' }, { 'aws:SourceArn': `arn:aws:sns:${REGION}:${ACCOUNT}:other.fifo` })).decision).not.toBe('allow');
  });
});

describe('topic shards: every topic’s policy the same', () => {
  const TASK_ROLE_ARN = `arn:aws:iam::${ACCOUNT}:role/pgfanout-publisher-task`;
  const shardTopicArn = (shard: number) => `arn:aws:sns:${REGION}:${ACCOUNT}:${shard === 0 ? 'pgfanout.fifo' : `pgfanout-shard${shard}.fifo`}`;
  let sharded: PgfanoutStack;
  let shardedParent: Json;
  let parentEnv: IntrinsicEnvironment;
  let taskPolicy: Json;

  /** The resolved topic policy of shard `shard`, with its template's environment. */
  function shardTopicPolicy(shard: number): Json {
    const topic = sharded.pgfanout.topics.get(shard) as Topic;
    const topicId = Stack.of(topic).getLogicalId(topic.node.defaultChild as never);
    if (shard === 0) return topicPolicy(shardedParent, topicId, { ...parentEnv, refs: { ...parentEnv.refs, [topicId]: shardTopicArn(0) } });
    const shardStack = sharded.pgfanout.shardStacks.get(shard) as NestedStack;
    const template = Template.fromStack(shardStack).toJSON();
    const passed = shardedParent.Resources[sharded.getLogicalId(shardStack.nestedStackResource as never)].Properties.Parameters as Json;
    return topicPolicy(template, topicId, { account: ACCOUNT, region: REGION, template, refs: { ...resolveIntrinsics(passed, parentEnv), [topicId]: shardTopicArn(shard) } });
  }

  beforeAll(() => {
    ({ stack: sharded } = buildStack({ env: { account: ACCOUNT, region: REGION }, replicas: [replica('eu'), replica('us', { shard: 1 }), replica('ap', { shard: 2 })] }));
    shardedParent = Template.fromStack(sharded).toJSON();
    const taskRole = sharded.pgfanout.publisher?.taskDefinition.taskRole as Role;
    const shardTopicOutputs: Record<string, string> = {};
    for (const [shard, shardStack] of sharded.pgfanout.shardStacks) {
      // What a shard's nested stack outputs is its topic's ARN (the only output the parent reads from it here).
      const id = sharded.getLogicalId(shardStack.nestedStackResource as never);
      const outputs = Object.keys(Template.fromStack(shardStack).toJSON().Outputs ?? {});
      for (const output of outputs) shardTopicOutputs[`${id}.Outputs.${output}`] = shardTopicArn(shard);
    }
    parentEnv = {
      account: ACCOUNT,
      region: REGION,
      template: shardedParent,
      refs: { [Stack.of(sharded.pgfanout.topic).getLogicalId(sharded.pgfanout.topic.node.defaultChild as never)]: shardTopicArn(0) },
      attributes: { [`${sharded.getLogicalId(taskRole.node.defaultChild as never)}.Arn`]: TASK_ROLE_ARN, ...shardTopicOutputs },
    };
    const policies = Object.values(shardedParent.Resources as Json).filter(
      (r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles) === JSON.stringify([{ Ref: sharded.getLogicalId(taskRole.node.defaultChild as never) }]),
    );
    expect(policies).toHaveLength(1);
    taskPolicy = resolveIntrinsics(policies[0].Properties.PolicyDocument, parentEnv);
  });

  const publish = (shard: number, principal: PolicyRequest['principal'], context: PolicyRequest['context'] = { 'aws:SecureTransport': true }): PolicyRequest => ({
    principal,
    action: 'sns:Publish',
    resource: shardTopicArn(shard),
    context,
  });
  const publisher = { kind: 'aws' as const, arn: TASK_ROLE_ARN, account: ACCOUNT };
  const admin = { kind: 'aws' as const, arn: `arn:aws:iam::${ACCOUNT}:role/some-admin`, account: ACCOUNT };
  const adminPolicy = { Statement: [{ Effect: 'Allow', Action: 'sns:*', Resource: '*' }] };

  it('has three topics, one per shard in use', () => {
    expect([...sharded.pgfanout.topics.keys()]).toEqual([0, 1, 2]);
  });

  for (const shard of [0, 1, 2]) {
    it(`shard ${shard}: only the publisher's task role publishes, over TLS; an administrator of the account and another account may not`, () => {
      const policy = shardTopicPolicy(shard);
      const decide = (request: PolicyRequest, identityPolicies: Json[] = []) => evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT, identityPolicies }, request).decision;
      expect(decide(publish(shard, publisher), [taskPolicy])).toBe('allow');
      expect(decide(publish(shard, publisher, { 'aws:SecureTransport': false }), [taskPolicy])).toBe('explicit-deny');
      expect(decide(publish(shard, admin), [adminPolicy])).toBe('explicit-deny');
      expect(decide(publish(shard, { kind: 'aws', arn: `arn:aws:iam::${OTHER_ACCOUNT}:role/x`, account: OTHER_ACCOUNT }))).not.toBe('allow');
    });
  }

  it('lets SNS use the key for each shard’s topic, and for no other topic', () => {
    const key = Object.values(shardedParent.Resources as Json).find((r) => r.Type === 'AWS::KMS::Key') as Json;
    const keyPolicy = resolveIntrinsics(key.Properties.KeyPolicy, parentEnv);
    const fromTopic = (topicArn: string): PolicyRequest => ({
      principal: { kind: 'service', service: 'sns.amazonaws.com' },
      action: 'kms:GenerateDataKey',
      resource: `arn:aws:kms:${REGION}:${ACCOUNT}:key/k`,
      context: { 'aws:SourceArn': topicArn },
    });
    for (const shard of [0, 1, 2]) expect(evaluate({ resourcePolicy: keyPolicy, resourceAccount: ACCOUNT }, fromTopic(shardTopicArn(shard))).decision, `shard ${shard}`).toBe('allow');
    expect(evaluate({ resourcePolicy: keyPolicy, resourceAccount: ACCOUNT }, fromTopic(shardTopicArn(3))).decision).not.toBe('allow');
  });
});

describe('grants on the key', () => {
  it('only for AWS resources: a principal of the account may not grant itself the key, an AWS service acting for one may', () => {
    const key = Object.values(parent.Resources as Json).find((r) => r.Type === 'AWS::KMS::Key') as Json;
    const keyPolicy = resolveIntrinsics(key.Properties.KeyPolicy, env);
    const admin = { Statement: [{ Effect: 'Allow', Action: 'kms:*', Resource: '*' }] };
    const createGrant = (context: PolicyRequest['context']): PolicyRequest => ({
      principal: { kind: 'aws', arn: `arn:aws:iam::${ACCOUNT}:role/some-admin`, account: ACCOUNT },
      action: 'kms:CreateGrant',
      resource: `arn:aws:kms:${REGION}:${ACCOUNT}:key/k`,
      context,
    });
    const d = evaluate({ resourcePolicy: keyPolicy, resourceAccount: ACCOUNT, identityPolicies: [admin] }, createGrant({ 'aws:PrincipalIsAWSService': false }));
    expect(d.decision).toBe('explicit-deny');
    expect(d.deniedBy).toContain('resource:GrantsOnlyForAwsResources');
    expect(evaluate({ resourcePolicy: keyPolicy, resourceAccount: ACCOUNT, identityPolicies: [admin] }, createGrant({ 'kms:GrantIsForAWSResource': true })).decision).toBe('allow');
  });
});
