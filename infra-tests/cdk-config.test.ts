/**
 * Validation of the deployment's configuration and of the app's CDK context: each rule
 * fails with a message naming the setting, the value received and what is allowed, and
 * every problem is reported in one error.
 */
import { Token } from 'aws-cdk-lib';
import { describe, expect, it } from 'vitest';
import { configProblems, validatePgfanoutConfig, type PgfanoutConfig, type ReplicaConfig } from '../cdk/config.ts';
import { readAppSettings } from '../cdk/context.ts';
import { CDK_ERROR_CODES, PgfanoutConfigError } from '../cdk/errors.ts';
import { buildStack, replica, secretArn, SOURCE_ID } from './fixtures/cdk-apps.ts';

function config(overrides: Partial<PgfanoutConfig> = {}): PgfanoutConfig {
  return { source: { secretArn: secretArn('pgfanout/source') }, replicas: [replica('eu'), replica('us')], namePrefix: 'pgfanout', ...overrides };
}

function withReplica(entry: Partial<ReplicaConfig> & Record<string, unknown>): PgfanoutConfig {
  return config({ replicas: [entry as ReplicaConfig] });
}

function thrown(fn: () => unknown): PgfanoutConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof PgfanoutConfigError) return err;
    throw err;
  }
  throw new Error('expected a PgfanoutConfigError, nothing was thrown');
}

describe('configuration validation', () => {
  it('accepts a valid configuration', () => {
    expect(configProblems(config())).toEqual([]);
    expect(() => validatePgfanoutConfig(config())).not.toThrow();
  });

  it('rejects duplicate replica names', () => {
    expect(() => validatePgfanoutConfig(config({ replicas: [replica('eu'), replica('us'), replica('eu')] }))).toThrow(
      'replicas[2]: name "eu" is already used by replicas[0] ("eu"); each replica needs its own name',
    );
  });

  it.each([
    ['EU', 'uppercase'],
    ['eu_1', 'underscore'],
    ['1eu', 'leading digit'],
    ['eu west', 'space'],
    ['a'.repeat(41), 'longer than 40'],
  ])('rejects the replica name %j (%s)', (name) => {
    expect(() => validatePgfanoutConfig(config({ replicas: [replica(name)] }))).toThrow(
      `name ${JSON.stringify(name)} must be a lowercase letter followed by up to 39 lowercase letters, digits or "-"`,
    );
  });

  it('rejects a missing replica name', () => {
    expect(() => validatePgfanoutConfig(withReplica({ secretArn: secretArn('x') }))).toThrow('replicas[0]: name is required');
  });

  it('rejects a name that makes a queue name longer than 80 characters, saying how long it may be', () => {
    const prefix = 'p'.repeat(40);
    // The longest, "<prefix>-<name>-sns-dlq.fifo": 40 + 1 + name + 13 must fit in 80.
    expect(configProblems(config({ namePrefix: prefix, replicas: [replica('a'.repeat(26))] }))).toEqual([]);
    expect(() => validatePgfanoutConfig(config({ namePrefix: prefix, replicas: [replica('a'.repeat(27))] }))).toThrow(
      `queue name "${prefix}-${'a'.repeat(27)}-sns-dlq.fifo" is 81 characters, SQS allows 80; with prefix "${prefix}" a replica name may have at most 26 characters`,
    );
  });

  it('requires the source ids a replica follows, which the applier cannot start without', () => {
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu', secretArn: secretArn('eu') }))).toThrow(
      'replicas[0] ("eu"): sources is required: the source ids this replica follows (SELECT pgfanout.source_id() on the source)',
    );
  });

  it('takes up to 100 replicas on one topic, and names the ones past 100 with the shards that have room', () => {
    const replicas = Array.from({ length: 103 }, (_, i) => replica(`r${i}`));
    expect(configProblems(config({ replicas: replicas.slice(0, 100) }))).toEqual([]);
    expect(configProblems(config({ replicas }))).toEqual([
      'shard 0 has 103 replicas, but an SNS FIFO topic takes at most 100 subscriptions (https://docs.aws.amazon.com/general/latest/gr/sns.html): ' +
        'give "r100", "r101", "r102" an explicit "shard" with room: 1 (room for 100), 2 (room for 100), 3 (room for 100)',
    ]);
    const sharded = replicas.map((r, i) => (i >= 100 ? { ...r, shard: 1 } : r));
    expect(configProblems(config({ replicas: sharded }))).toEqual([]);
  });

  it('takes at most 4 shards and 400 replicas, and a shard is an integer in range', () => {
    expect(configProblems(config({ replicas: [replica('eu', { shard: 4 })] }))).toEqual(['replicas[0] ("eu"): shard must be an integer from 0 to 3 (the topic shard its queue subscribes to), got 4']);
    expect(configProblems(config({ replicas: [replica('eu', { shard: 1.5 })] }))).toEqual(['replicas[0] ("eu"): shard must be an integer from 0 to 3 (the topic shard its queue subscribes to), got 1.5']);
    expect(configProblems(config({ replicas: [replica('eu', { shard: '1' as unknown as number })] }))).toEqual([
      'replicas[0] ("eu"): shard must be an integer from 0 to 3 (the topic shard its queue subscribes to), got "1"',
    ]);
    const full = Array.from({ length: 400 }, (_, i) => replica(`r${i}`, { shard: Math.floor(i / 100) }));
    expect(configProblems(config({ replicas: full }))).toEqual([]);
    expect(configProblems(config({ replicas: [...full, replica('one-more', { shard: 3 })] }))).toEqual([
      'replicas: 401 given, but one stack takes at most 400 (4 topic shards of 100 subscriptions, one nested stack each within CloudFormation\'s 500 resources per template)',
    ]);
  });

  it('rejects a replica without a secret', () => {
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu' }))).toThrow('replicas[0] ("eu"): secretArn or secretName is required');
  });

  it('rejects a replica with both a secret ARN and a secret name', () => {
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu', secretArn: secretArn('eu'), secretName: 'eu' }))).toThrow(
      'replicas[0] ("eu"): give exactly one of secret, secretArn, secretName; got secretArn and secretName',
    );
  });

  it('accepts replicaTriggers "refuse" or "fire" and rejects anything else', () => {
    expect(configProblems(withReplica({ name: 'eu', secretArn: secretArn('eu'), sources: [SOURCE_ID], replicaTriggers: 'fire' }))).toEqual([]);
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu', secretArn: secretArn('eu'), replicaTriggers: 'yes' as 'fire' }))).toThrow(
      'replicas[0] ("eu"): replicaTriggers must be "refuse" or "fire", got "yes"',
    );
  });

  it('rejects a malformed secret ARN', () => {
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu', secretArn: 'arn:aws:s3:::bucket' }))).toThrow(
      'replicas[0] ("eu"): secretArn "arn:aws:s3:::bucket" is not a Secrets Manager secret ARN',
    );
  });

  it('rejects a malformed secret name', () => {
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu', secretName: 'has space' }))).toThrow('secretName "has space" is not a secret name');
  });

  it('rejects a malformed KMS key ARN for the secret', () => {
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu', secretArn: secretArn('eu'), secretKeyArn: 'alias/mine' }))).toThrow(
      'secretKeyArn "alias/mine" is not a KMS key ARN',
    );
  });

  it('rejects source ids the applier could not read, and a non-boolean allowSchemaChanges', () => {
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu', secretArn: secretArn('eu'), sources: [] }))).toThrow('replicas[0] ("eu"): sources must be a non-empty list of source ids');
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu', secretArn: secretArn('eu'), sources: ['a,b'] }))).toThrow('replicas[0] ("eu"): sources[0] "a,b" is not a source id');
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu', secretArn: secretArn('eu'), allowSchemaChanges: 'yes' as unknown as boolean }))).toThrow(
      'replicas[0] ("eu"): allowSchemaChanges must be true or false, got "yes"',
    );
    expect(() => validatePgfanoutConfig(withReplica({ name: 'eu', secretArn: secretArn('eu'), sources: ['3f2c0a1e-7b6d-4e5f-8a9b-0c1d2e3f4a5b'], allowSchemaChanges: true }))).not.toThrow();
  });

  it('rejects a source without a secret', () => {
    expect(() => validatePgfanoutConfig(config({ source: {} }))).toThrow('source: secretArn or secretName is required');
  });

  it('requires the source when the stack deploys the publisher service, and not otherwise', () => {
    expect(() => validatePgfanoutConfig(config({ source: undefined }))).toThrow('source is required: the Secrets Manager secret of the source database');
    expect(configProblems(config({ source: undefined, publisherService: false }))).toEqual([]);
  });

  it('rejects include entries that are not schema.table', () => {
    expect(() => validatePgfanoutConfig(withReplica({ ...replica('eu'), include: ['public.orders', 'orders', 'a.b.c', 'x,y.z'] }))).toThrow(
      /include\[1\] "orders" is not a "schema.table" name[\s\S]*include\[2\] "a.b.c"[\s\S]*include\[3\] "x,y.z"/,
    );
  });

  it('rejects an include that is not a list', () => {
    expect(() => validatePgfanoutConfig(withReplica({ ...replica('eu'), include: 'public.orders' as unknown as string[] }))).toThrow(
      'replicas[0] ("eu"): include must be a list of "schema.table" names, got "public.orders"',
    );
  });

  it('rejects a table both included and excluded', () => {
    expect(() => validatePgfanoutConfig(withReplica({ ...replica('eu'), include: ['public.orders'], exclude: ['public.orders'] }))).toThrow(
      '"public.orders" is in both include and exclude',
    );
  });

  it('rejects table lists too long for the Lambda environment', () => {
    const include = Array.from({ length: 200 }, (_, i) => `public.table_with_a_long_name_${i}`);
    expect(() => validatePgfanoutConfig(withReplica({ ...replica('eu'), include }))).toThrow(/include and exclude together take \d+ bytes, more than the 3072/);
  });

  it.each([
    ['lagAlarmSeconds', 0, 'from 1 to 86400'],
    ['lagAlarmSeconds', 1.5, 'from 1 to 86400'],
    ['timeoutSeconds', 901, 'from 1 to 900'],
    ['memoryMiB', 64, 'from 128 to 10240'],
    ['maxReceiveCount', 0, 'from 1 to 1000'],
    ['maxConcurrency', 1, 'from 2 to 1000'],
  ])('rejects %s = %j', (field, value, allowed) => {
    expect(() => validatePgfanoutConfig(withReplica({ ...replica('eu'), [field]: value }))).toThrow(
      `replicas[0] ("eu"): ${field} must be an integer ${allowed}, got ${JSON.stringify(value)}`,
    );
  });

  it('rejects per-replica options outside what they allow', () => {
    const problems = configProblems(config({ replicas: [replica('eu', { enabled: 'no' as unknown as boolean, databaseTls: 'on' as never, architecture: 'x86' as never, oldestMessageAlarmSeconds: 30 })] }));
    expect(problems).toEqual([
      'replicas[0] ("eu"): oldestMessageAlarmSeconds must be an integer from 60 to 1123200, got 30',
      'replicas[0] ("eu"): enabled must be true or false, got "no"',
      'replicas[0] ("eu"): databaseTls "on" must be one of verify-full, require, disable',
      'replicas[0] ("eu"): architecture "x86" must be one of arm64, x86_64',
    ]);
    expect(configProblems(config({ replicas: [replica('eu', { enabled: false, databaseTls: 'disable', architecture: 'x86_64', maxReceiveCount: 1000 })] }))).toEqual([]);
    expect(configProblems(config({ replicas: [replica('eu', { maxReceiveCount: 1001 })] }))).toEqual(['replicas[0] ("eu"): maxReceiveCount must be an integer from 1 to 1000, got 1001']);
  });

  it('rejects a replica entry that is not an object', () => {
    expect(() => validatePgfanoutConfig(config({ replicas: ['eu' as unknown as ReplicaConfig] }))).toThrow('replicas[0] must be an object like');
  });

  it('rejects a replica list that is not a list', () => {
    expect(() => validatePgfanoutConfig(config({ replicas: { name: 'eu' } as unknown as ReplicaConfig[] }))).toThrow('replicas must be a list, got {"name":"eu"}');
  });

  it('rejects a Fargate CPU size that does not exist', () => {
    expect(() => validatePgfanoutConfig(config({ publisher: { cpu: 300 } }))).toThrow('publisher: cpu 300 is not a Fargate CPU size (allowed: 256, 512, 1024, 2048, 4096)');
  });

  it('rejects a memory size Fargate does not pair with the CPU size', () => {
    expect(() => validatePgfanoutConfig(config({ publisher: { cpu: 256, memoryMiB: 4096 } }))).toThrow(
      'publisher: memoryMiB 4096 is not allowed with cpu 256 (Fargate allows 512-2048 MiB: 512, 1024, 2048)',
    );
    expect(configProblems(config({ publisher: { cpu: 512, memoryMiB: 4096 } }))).toEqual([]);
  });

  it.each([
    ['logLevel', 'TRACE', 'must be one of DEBUG, INFO, WARN, ERROR'],
    ['tickMs', 50, 'must be an integer from 100 to 600000'],
    ['stalledAlarmSeconds', 10, 'must be an integer from 60 to 86400'],
    ['healthPort', 80, 'must be an integer from 1024 to 65535'],
  ])('rejects publisher %s = %j', (field, value, allowed) => {
    expect(() => validatePgfanoutConfig(config({ publisher: { [field]: value } }))).toThrow(`publisher: ${field} ${field === 'logLevel' ? `"${String(value)}" ` : ''}${allowed}`);
  });

  it('rejects an alarm email that is not an address, and accepts an empty one', () => {
    expect(() => validatePgfanoutConfig(config({ alarmEmail: 'ops' }))).toThrow('alarmEmail "ops" is not an email address');
    expect(configProblems(config({ alarmEmail: '' }))).toEqual([]);
  });

  it('rejects a name prefix that cannot name queues', () => {
    expect(() => validatePgfanoutConfig(config({ namePrefix: 'my stack' }))).toThrow('namePrefix "my stack" must start with a letter or digit');
  });

  it('does not format-check values known only at deploy time', () => {
    const arn = Token.asString({ Ref: 'ReplicaSecretArn' });
    expect(configProblems(config({ replicas: [{ name: 'eu', secretArn: arn, sources: [SOURCE_ID] }], alarmEmail: Token.asString({ Ref: 'AlarmEmail' }) }))).toEqual([]);
  });

  it('reports every problem in one error, with a code', () => {
    const err = thrown(() =>
      validatePgfanoutConfig(
        config({
          source: {},
          replicas: [replica('eu'), replica('eu'), { name: 'Bad', sources: [SOURCE_ID] } as ReplicaConfig],
          publisher: { cpu: 3 },
          alarmEmail: 'nope',
        }),
      ),
    );
    expect(err.code).toBe(CDK_ERROR_CODES.invalidConfig);
    expect(err.problems).toHaveLength(6);
    expect(err.message).toMatch(/^pgfanout configuration has 6 problems:\n {2}- source: secretArn or secretName is required/);
  });
});

describe('the construct validates before building anything', () => {
  it('throws for duplicate replicas', () => {
    expect(() => buildStack({ replicas: [replica('eu'), replica('eu')] })).toThrow(PgfanoutConfigError);
  });

  it('throws for a stack name too long for queue names', () => {
    expect(() => buildStack({ replicas: [replica('eu')] }, `s${'x'.repeat(65)}`)).toThrow(
      `namePrefix "s${'x'.repeat(65)}" (the stack name unless given) has 66 characters; queue names "<prefix>-<replica>-sns-dlq.fifo" must fit in 80, so it may have at most 65`,
    );
  });
});

describe('CDK context', () => {
  const source = JSON.stringify({ secretArn: secretArn('pgfanout/source') });
  const replicas = JSON.stringify([replica('eu')]);
  const from = (values: Record<string, unknown>) => (key: string) => values[key];

  it('reads JSON given on the command line', () => {
    const settings = readAppSettings(from({ source, replicas, subnetIds: 'subnet-0123456789abcdef0, subnet-0123456789abcdef1', vpcId: 'vpc-0123456789abcdef0' }));
    expect(settings.stackName).toBe('pgfanout');
    expect(settings.replicas).toEqual([replica('eu')]);
    expect(settings.network).toEqual({ vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0', 'subnet-0123456789abcdef1'] });
  });

  it('reads objects and lists given in cdk.json', () => {
    const settings = readAppSettings(
      from({ source: JSON.parse(source), replicas: [replica('eu')], vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'], securityGroupIds: '["sg-0123456789abcdef0"]', logRetentionDays: 90 }),
    );
    expect(settings.network?.securityGroupIds).toEqual(['sg-0123456789abcdef0']);
    expect(settings.logRetentionDays).toBe(90);
  });

  it('requires the source', () => {
    expect(() => readAppSettings(from({ replicas }))).toThrow('context source is required');
  });

  it('names the key holding invalid JSON', () => {
    expect(() => readAppSettings(from({ source, replicas: '[{"name":"eu",}]' }))).toThrow(/context replicas: not valid JSON .*expected \[\{"name":"eu"/);
  });

  it('requires the replica list, naming cdk.json as its place, and accepts an explicit empty one', () => {
    const err = thrown(() => readAppSettings(from({ source })));
    expect(err.code).toBe(CDK_ERROR_CODES.invalidContext);
    expect(err.problems).toHaveLength(1);
    expect(err.problems[0]).toMatch(/^context replicas is required: the list of replicas, \[\] for none\. Keep it in cdk\.json's "context"/);
    expect(err.problems[0]).toContain('a deploy without it would remove every replica');
    expect(() => readAppSettings(from({ source, replicas: '' }))).toThrow('context replicas is required');
    expect(readAppSettings(from({ source, replicas: '[]' })).replicas).toEqual([]);
    expect(readAppSettings(from({ source, replicas: [] })).replicas).toEqual([]);
  });

  it('retains data and protects the stack by default, and takes both settings from context', () => {
    expect(readAppSettings(from({ source, replicas }))).toMatchObject({ dataRemovalPolicy: 'retain', terminationProtection: true });
    expect(readAppSettings(from({ source, replicas, dataRemovalPolicy: 'destroy', terminationProtection: 'false' }))).toMatchObject({ dataRemovalPolicy: 'destroy', terminationProtection: false });
    const err = thrown(() => readAppSettings(from({ source, replicas, dataRemovalPolicy: 'delete', terminationProtection: 'off' })));
    expect(err.problems).toEqual(['context terminationProtection must be true or false, got "off"', 'context dataRemovalPolicy must be one of retain, destroy, got "delete"']);
  });

  it('requires subnets with a VPC id', () => {
    expect(() => readAppSettings(from({ source, vpcId: 'vpc-0123456789abcdef0' }))).toThrow('context subnetIds is required with vpcId');
  });

  it('rejects subnets without a VPC id', () => {
    expect(() => readAppSettings(from({ source, subnetIds: 'subnet-0123456789abcdef0' }))).toThrow('context subnetIds needs vpcId');
  });

  it('rejects malformed ids', () => {
    const err = thrown(() => readAppSettings(from({ source, replicas: '[]', vpcId: 'vpc-xyz', subnetIds: 'subnet-1,net-2', securityGroupIds: 'sg-zz' })));
    expect(err.code).toBe(CDK_ERROR_CODES.invalidContext);
    expect(err.problems).toEqual([
      'context subnetIds: "subnet-1", "net-2" rejected; each must be a subnet id (subnet- and 8 or 17 hex digits)',
      'context securityGroupIds: "sg-zz" rejected; each must be a security group id (sg- and 8 or 17 hex digits)',
      'context vpcId "vpc-xyz" is not a VPC id (vpc- and 8 or 17 hex digits)',
    ]);
  });

  it('rejects a log retention CloudWatch does not offer', () => {
    expect(() => readAppSettings(from({ source, logRetentionDays: 10 }))).toThrow('context logRetentionDays 10 is not a CloudWatch Logs retention');
  });

  it('needs no source when the publisher runs outside the stack', () => {
    const settings = readAppSettings(from({ replicas, publisherService: 'false' }));
    expect(settings.publisherService).toBe(false);
    expect(settings.source).toBeUndefined();
  });

  it('rejects a publisherService that is not true or false', () => {
    expect(() => readAppSettings(from({ source, publisherService: 'no' }))).toThrow('context publisherService must be true or false, got "no"');
  });

  it('rejects a stack name CloudFormation does not accept', () => {
    expect(() => readAppSettings(from({ source, stackName: 'my_stack' }))).toThrow('context stackName "my_stack" is not a CloudFormation stack name');
  });

  it('reports context problems and configuration problems together', () => {
    const err = thrown(() => readAppSettings(from({ source, replicas: JSON.stringify([replica('eu'), replica('eu')]), vpcId: 'vpc-0123456789abcdef0' })));
    expect(err.problems).toEqual([
      'context subnetIds is required with vpcId: the private subnets the publisher and the appliers run in',
      'replicas[1]: name "eu" is already used by replicas[0] ("eu"); each replica needs its own name',
    ]);
  });
});
