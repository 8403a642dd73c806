/**
 * The message signing key in the stack: one generated secret, encrypted with the stack's key, named
 * to the publisher and every applier, and readable by them and nothing more. The roles' policies
 * are evaluated as statements (infra-tests/fixtures/iam-policy.ts); the secret has no resource
 * policy and the key's policy delegates to IAM, so the roles' own policies decide.
 */
import { Stack, type CfnElement, type NestedStack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { APPLIER_ENV, PUBLISHER_ENV } from '#core/config.ts';
import type { PgfanoutStack } from '../cdk/stack.ts';
import { buildStack, secretArn } from './fixtures/cdk-apps.ts';
import { evaluate, resolveIntrinsics, type IntrinsicEnvironment, type PolicyRequest } from './fixtures/iam-policy.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const ACCOUNT = '123456789012';
const REGION = 'eu-west-1';
const SIGNING_SECRET_ARN = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:SigningKey-Zz9Yy8`;
const KEY_ARN = `arn:aws:kms:${REGION}:${ACCOUNT}:key/0000aaaa-1111-2222-3333-444455556666`;
const VIA_SECRETS_MANAGER = { 'kms:ViaService': `secretsmanager.${REGION}.amazonaws.com` };

let stack: PgfanoutStack;
let parent: Json;
let env: IntrinsicEnvironment;

const logicalIdOf = (construct: { node: { defaultChild?: unknown } }) => stack.getLogicalId(construct.node.defaultChild as never);

/** The resolved documents of every AWS::IAM::Policy attached to the role `roleId` in `template`. */
function rolePolicies(template: Json, roleId: string, e: IntrinsicEnvironment): Json[] {
  return Object.values(template.Resources as Json)
    .filter((r) => r.Type === 'AWS::IAM::Policy' && (r.Properties.Roles as Json[]).some((ref) => ref.Ref === roleId))
    .map((r) => resolveIntrinsics(r.Properties.PolicyDocument, e));
}

/** Replica `name`'s template, with its parameters resolved as the parent passes them. */
function nested(name: string): { template: Json; env: IntrinsicEnvironment } {
  const nestedStack = stack.pgfanout.replicaStacks.get(name) as NestedStack;
  const template = Template.fromStack(nestedStack).toJSON();
  const passed = parent.Resources[stack.getLogicalId(nestedStack.nestedStackResource as never)].Properties.Parameters as Json;
  return { template, env: { account: ACCOUNT, region: REGION, template, refs: resolveIntrinsics(passed, env) } };
}

beforeAll(() => {
  ({ stack } = buildStack({ env: { account: ACCOUNT, region: REGION } }));
  parent = Template.fromStack(stack).toJSON();
  env = {
    account: ACCOUNT,
    region: REGION,
    template: parent,
    refs: { [logicalIdOf(stack.pgfanout.signingKey)]: SIGNING_SECRET_ARN },
    attributes: { [`${logicalIdOf(stack.pgfanout.encryptionKey)}.Arn`]: KEY_ARN },
  };
});

describe('the signing key secret', () => {
  it('is generated in the stack (64 letters and digits), encrypted with the stack key, and kept like the queues', () => {
    const secrets = Object.entries(parent.Resources as Json).filter(([, r]) => r.Type === 'AWS::SecretsManager::Secret');
    expect(secrets).toHaveLength(1);
    const [id, secret] = secrets[0] as [string, Json];
    expect(id).toBe(logicalIdOf(stack.pgfanout.signingKey));
    expect(secret.Properties.GenerateSecretString).toMatchObject({ PasswordLength: 64, ExcludePunctuation: true, IncludeSpace: false });
    expect(secret.Properties.SecretString).toBeUndefined();
    expect(resolveIntrinsics(secret.Properties.KmsKeyId, env)).toBe(KEY_ARN);
    expect(secret.DeletionPolicy).toBe('Retain');
  });

  it('is named to the publisher and to every applier', () => {
    const task = Object.values(parent.Resources as Json).find((r) => r.Type === 'AWS::ECS::TaskDefinition') as Json;
    const environment = resolveIntrinsics(task.Properties.ContainerDefinitions[0].Environment, env) as { Name: string; Value: string }[];
    expect(environment).toContainEqual({ Name: PUBLISHER_ENV.SIGNING_KEY_SECRET, Value: SIGNING_SECRET_ARN });
    for (const name of ['eu', 'us']) {
      const t = nested(name);
      const fn = Object.values(t.template.Resources as Json).find((r) => r.Type === 'AWS::Lambda::Function' && r.Properties.Environment?.Variables?.[APPLIER_ENV.REPLICA_NAME] === name) as Json;
      expect(resolveIntrinsics(fn.Properties.Environment.Variables[APPLIER_ENV.SIGNING_KEY_SECRET], t.env)).toBe(SIGNING_SECRET_ARN);
    }
  });
});

describe.each([
  ['the publisher task role', () => ({ policies: rolePolicies(parent, stack.getLogicalId(stack.pgfanout.publisher!.taskDefinition.taskRole.node.defaultChild as never), env), arn: `arn:aws:iam::${ACCOUNT}:role/publisher-task` })],
  [
    "replica eu's applier role",
    () => {
      const t = nested('eu');
      const replica = stack.pgfanout.replicas.get('eu')!;
      const roleId = Stack.of(replica.role).getLogicalId(replica.role.node.defaultChild as CfnElement);
      return { policies: rolePolicies(t.template, roleId, t.env), arn: `arn:aws:iam::${ACCOUNT}:role/applier-eu` };
    },
  ],
] as const)('%s', (_name, role) => {
  let policies: Json[];
  let principal: PolicyRequest['principal'];
  beforeAll(() => {
    const r = role();
    policies = r.policies;
    principal = { kind: 'aws', arn: r.arn, account: ACCOUNT };
    expect(policies.length).toBeGreaterThan(0);
  });
  const decide = (action: string, resource: string, context: PolicyRequest['context'] = {}) =>
    evaluate({ resourceAccount: ACCOUNT, identityPolicies: policies }, { principal, action, resource, context }).decision;

  it('may read the signing key, and decrypt it through Secrets Manager', () => {
    expect(decide('secretsmanager:GetSecretValue', SIGNING_SECRET_ARN)).toBe('allow');
    expect(decide('kms:Decrypt', KEY_ARN, VIA_SECRETS_MANAGER)).toBe('allow');
  });

  // (Both roles decrypt with the stack key anyway, for the topic and the queues it encrypts.)
  it('may not change or rotate it, nor read another secret', () => {
    for (const action of ['secretsmanager:PutSecretValue', 'secretsmanager:UpdateSecret', 'secretsmanager:UpdateSecretVersionStage', 'secretsmanager:DeleteSecret', 'secretsmanager:ListSecretVersionIds']) {
      expect(decide(action, SIGNING_SECRET_ARN), action).toBe('implicit-deny');
    }
    expect(decide('secretsmanager:GetSecretValue', secretArn('pgfanout/us'))).toBe('implicit-deny');
    expect(decide('secretsmanager:GetSecretValue', secretArn('pgfanout/source'))).toBe('implicit-deny');
    expect(decide('secretsmanager:GetSecretValue', `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:someone-elses-Qq1Ww2`)).toBe('implicit-deny');
  });
});
