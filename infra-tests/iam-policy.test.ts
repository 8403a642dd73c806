/**
 * The policy evaluator the CDK tests rely on, checked against the rules of AWS's policy
 * evaluation logic it implements: explicit deny wins, default deny, wildcards, negated
 * operators on absent keys, cross-account needs the resource policy.
 */
import { describe, expect, it } from 'vitest';
import { evaluate, resolveIntrinsics, type PolicyRequest } from './fixtures/iam-policy.ts';

const ACCOUNT = '111122223333';
const TOPIC = `arn:aws:sns:eu-west-1:${ACCOUNT}:alarms`;
const role = (name: string, account = ACCOUNT) => ({ kind: 'aws' as const, arn: `arn:aws:iam::${account}:role/${name}`, account });
const publish = (principal: PolicyRequest['principal'], context: PolicyRequest['context'] = { 'aws:SecureTransport': true }): PolicyRequest => ({
  principal,
  action: 'sns:Publish',
  resource: TOPIC,
  context,
});

const policy = {
  Statement: [
    { Sid: 'Tls', Effect: 'Deny', Principal: { AWS: '*' }, Action: 'sns:Publish', Resource: TOPIC, Condition: { Bool: { 'aws:SecureTransport': 'false' } } },
    { Sid: 'OnlyPublisher', Effect: 'Deny', Principal: { AWS: '*' }, Action: 'sns:Publish', Resource: TOPIC, Condition: { ArnNotEquals: { 'aws:PrincipalArn': `arn:aws:iam::${ACCOUNT}:role/publisher` } } },
    { Sid: 'Account', Effect: 'Allow', Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` }, Action: 'SNS:*', Resource: TOPIC },
    {
      Sid: 'Alarms',
      Effect: 'Allow',
      Principal: { Service: 'cloudwatch.amazonaws.com' },
      Action: 'sns:Publish',
      Resource: TOPIC,
      Condition: { StringEquals: { 'aws:SourceAccount': ACCOUNT }, ArnLike: { 'aws:SourceArn': `arn:aws:cloudwatch:eu-west-1:${ACCOUNT}:alarm:app-*` } },
    },
  ],
};

describe('the IAM policy evaluator', () => {
  it('allows what an Allow matches and nothing denies', () => {
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, publish(role('publisher'))).decision).toBe('allow');
  });

  it('lets an explicit deny win over an allow', () => {
    const d = evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, publish(role('someone-else')));
    expect(d).toMatchObject({ decision: 'explicit-deny', deniedBy: ['resource:OnlyPublisher'], allowedBy: ['resource:Account'] });
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, publish(role('publisher'), { 'aws:SecureTransport': false })).decision).toBe('explicit-deny');
  });

  it('denies by default what no statement allows', () => {
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, { ...publish(role('publisher')), resource: `${TOPIC}-other` }).decision).toBe('implicit-deny');
  });

  it('matches actions case-insensitively with wildcards, resources case-sensitively', () => {
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, { ...publish(role('publisher')), action: 'sns:subscribe' }).decision).toBe('allow');
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, { ...publish(role('publisher')), resource: TOPIC.toUpperCase() }).decision).toBe('implicit-deny');
  });

  it('applies negated operators to absent keys and positive ones not', () => {
    const service = { kind: 'service' as const, service: 'cloudwatch.amazonaws.com' };
    const alarm = `arn:aws:cloudwatch:eu-west-1:${ACCOUNT}:alarm:app-lag`;
    // A service principal has no aws:PrincipalArn: ArnNotEquals on it holds, so the deny applies.
    expect(evaluate({ resourcePolicy: policy, resourceAccount: ACCOUNT }, publish(service, { 'aws:SecureTransport': true, 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': alarm })).deniedBy).toEqual(['resource:OnlyPublisher']);
    const withoutOnlyPublisher = { Statement: policy.Statement.filter((s) => s.Sid !== 'OnlyPublisher') };
    expect(evaluate({ resourcePolicy: withoutOnlyPublisher, resourceAccount: ACCOUNT }, publish(service, { 'aws:SecureTransport': true, 'aws:SourceAccount': ACCOUNT, 'aws:SourceArn': alarm })).decision).toBe('allow');
    // Without aws:SourceArn the positive ArnLike fails.
    expect(evaluate({ resourcePolicy: withoutOnlyPublisher, resourceAccount: ACCOUNT }, publish(service, { 'aws:SecureTransport': true, 'aws:SourceAccount': ACCOUNT })).decision).toBe('implicit-deny');
  });

  it('needs the resource policy for another account, and allows the same account through its identity policy', () => {
    const queue = `arn:aws:sqs:eu-west-1:${ACCOUNT}:q.fifo`;
    const send = (principal: PolicyRequest['principal']): PolicyRequest => ({ principal, action: 'sqs:SendMessage', resource: queue });
    const identity = { Statement: [{ Effect: 'Allow', Action: 'sqs:*', Resource: '*' }] };
    const empty = { Statement: [{ Effect: 'Allow', Principal: { Service: 'sns.amazonaws.com' }, Action: 'sqs:SendMessage', Resource: queue }] };
    expect(evaluate({ resourcePolicy: empty, resourceAccount: ACCOUNT, identityPolicies: [identity] }, send(role('ops'))).decision).toBe('allow');
    expect(evaluate({ resourcePolicy: empty, resourceAccount: ACCOUNT, identityPolicies: [identity] }, send(role('ops', '999988887777'))).decision).toBe('implicit-deny');
  });

  it('refuses what it does not understand instead of guessing', () => {
    const odd = { Statement: [{ Effect: 'Allow', NotPrincipal: { AWS: '*' }, Action: '*', Resource: '*' }] };
    expect(() => evaluate({ resourcePolicy: odd, resourceAccount: ACCOUNT }, publish(role('x')))).toThrow(/NotPrincipal/);
    const op = { Statement: [{ Effect: 'Allow', Principal: '*', Action: '*', Resource: '*', Condition: { DateGreaterThan: { 'aws:CurrentTime': '2020-01-01' } } }] };
    expect(() => evaluate({ resourcePolicy: op, resourceAccount: ACCOUNT }, publish(role('x')))).toThrow(/DateGreaterThan/);
  });

  it('resolves pseudo parameters, Ref, GetAtt and Fn::Join', () => {
    const env = { account: ACCOUNT, region: 'eu-west-1', refs: { Topic: TOPIC } };
    expect(resolveIntrinsics({ 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':cloudwatch:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':alarm:x-*']] }, env)).toBe(
      `arn:aws:cloudwatch:eu-west-1:${ACCOUNT}:alarm:x-*`,
    );
    expect(resolveIntrinsics([{ Ref: 'Topic' }, { 'Fn::GetAtt': ['Role', 'Arn'] }, { Ref: 'Other' }], env)).toEqual([TOPIC, 'attr:Role.Arn', 'ref:Other']);
  });
});
