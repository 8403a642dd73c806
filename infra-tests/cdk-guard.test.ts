/**
 * AWS's own rules over every synthesized template, in every run (CI has no cfn-lint, which
 * needs PyPI): AWS Control Tower's proactive controls as cfn-guard rules, through
 * `@cdklabs/cdk-validator-cfnguard` (which ships the cfn-guard binary) as a policy validation
 * plugin of the app. CDK hands a plugin the top-level templates only; the plugin here also
 * gets every nested template (the shards' and the replicas'). A violation fails the synth;
 * what pgfanout does not follow is acknowledged where it arises (cdk/guard.ts and beside the
 * resources), each with its reason.
 *
 * Two rules are left out for nested templates only, because the plugin cannot read their
 * result when the checked value is a parameter passed from the parent (it fails with
 * "Cannot read properties of undefined"): CT.LAMBDA.PR.3 (a function in a VPC: the subnets and
 * security groups are parameters) and CT.SQS.PR.2 (queue encryption: the key is a parameter).
 * This file checks those two properties of every nested template itself.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CfnGuardValidator } from '@cdklabs/cdk-validator-cfnguard';
import { App, type IPolicyValidationContextBeta1, type IPolicyValidationPluginBeta1, type PolicyValidationPluginReportBeta1 } from 'aws-cdk-lib';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { describe, expect, it } from 'vitest';
import { PgfanoutStack, type PgfanoutStackProps } from '../cdk/stack.ts';
import { CDK_CONTEXT, FIXTURE_APPLIER, replica, secretArn, SOURCE_ID } from './fixtures/cdk-apps.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Rules the plugin cannot evaluate on parameters of a nested template (see the header). */
const NESTED_ONLY_DISABLED = ['ct-lambda-pr-3', 'ct-sqs-pr-2'];

/** The cfn-guard plugin over the top-level templates and, but for two rules, every nested one. */
class GuardEveryTemplate implements IPolicyValidationPluginBeta1 {
  readonly #all = new CfnGuardValidator({ maxBuffer: 64 * 1024 * 1024 });
  readonly #nested = new CfnGuardValidator({ maxBuffer: 64 * 1024 * 1024, disabledRules: NESTED_ONLY_DISABLED });
  readonly name = this.#all.name;
  readonly version = this.#all.version;
  readonly ruleIds = this.#all.ruleIds;
  /** Every template validated, by file name. */
  readonly validated: string[] = [];

  validate(context: IPolicyValidationContextBeta1): PolicyValidationPluginReportBeta1 {
    const dir = dirname(context.templatePaths[0] as string);
    const nested = readdirSync(dir).filter((f) => f.endsWith('.nested.template.json')).map((f) => join(dir, f));
    this.validated.push(...[...context.templatePaths, ...nested].map((p) => basename(p)));
    const top = this.#all.validate(context);
    const inner = nested.length > 0 ? this.#nested.validate({ ...context, templatePaths: nested }) : { success: true, violations: [] };
    // The plugin leaves a violation's severity unset, and CDK (2.275), once it has suppressed an
    // acknowledged violation of a report, recomputes the report's success as "no violation of
    // severity error": every violation left would then pass. Each is an error.
    const violations = [...top.violations, ...inner.violations].map((v) => ({ ...v, severity: v.severity ?? 'error' }));
    return { success: violations.length === 0, violations };
  }
}

const PUBLISHER_IMAGE = ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:24-bookworm-slim');

function synthWithGuard(props: Partial<PgfanoutStackProps>, change: (stack: PgfanoutStack) => void = () => {}) {
  const guard = new GuardEveryTemplate();
  const app = new App({ context: { ...CDK_CONTEXT }, policyValidationBeta1: [guard] });
  const stack = new PgfanoutStack(app, 'pgfanout', {
    source: { secretArn: secretArn('pgfanout/source') },
    replicas: [replica('eu'), replica('us', { shard: 1 })],
    applierEntry: FIXTURE_APPLIER,
    publisherImage: PUBLISHER_IMAGE,
    ...props,
  });
  change(stack);
  let error: Error | undefined;
  try {
    app.synth();
  } catch (e) {
    error = e as Error;
  }
  const report = JSON.parse(readFileSync(join(app.outdir, 'validation-report.json'), 'utf8')) as Json;
  return { app, stack, guard, error, report };
}

/** Every violation of a cfn-guard rule in the report, as `rule: construct path` (CDK's own annotations are in another report). */
function violations(report: Json): string[] {
  const guard = (report.pluginReports as Json[]).filter((p) => p.pluginName === 'cdk-validator-cfnguard');
  expect(guard).toHaveLength(1);
  return guard.flatMap((p) =>
    (p.violations as Json[]).flatMap((v) => ((v.violatingConstructs as Json[] | undefined) ?? []).map((c) => `${v.ruleName}: ${c.constructPath ?? c.cloudFormationResource?.logicalId}`)),
  );
}

describe('AWS Control Tower controls (cfn-guard) over every template', () => {
  it('finds nothing unacknowledged: new VPC, the publisher service, two topic shards, every replica option', { timeout: 600_000 }, () => {
    const { error, report, guard, stack } = synthWithGuard({
      replicas: [
        replica('eu', { include: ['public.orders'], maxConcurrency: 5, enabled: false, databaseTls: 'require', architecture: 'x86_64' }),
        { name: 'us', secretName: 'pgfanout/us', secretKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab', sources: [SOURCE_ID], shard: 1 },
      ],
      alarmEmail: 'ops@example.com',
    });
    expect(violations(report)).toEqual([]);
    expect(error).toBeUndefined();
    // The parent, the shard's template and both replicas' templates were all validated.
    expect(guard.validated).toHaveLength(1 + 1 + 2);
    expect(guard.validated).toContain(stack.templateFile);
  });

  it('finds nothing unacknowledged without the publisher service, in an existing network', { timeout: 600_000 }, () => {
    const { error, report } = synthWithGuard({
      publisherService: false,
      source: undefined,
      replicas: [replica('eu')],
      network: { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'], securityGroupIds: ['sg-0123456789abcdef0'] },
    });
    expect(violations(report)).toEqual([]);
    expect(error).toBeUndefined();
  });

  it('fails the synth on a violation in a nested template, so that silence means something', { timeout: 600_000 }, () => {
    const { error, report } = synthWithGuard({}, (stack) => {
      const dlq = stack.pgfanout.replicas.get('us')?.deadLetterQueue.node.defaultChild as unknown as { addPropertyDeletionOverride(path: string): void };
      dlq.addPropertyDeletionOverride('RedriveAllowPolicy');
    });
    expect(error?.message).toMatch(/\[CT\.SQS\.PR\.1\]/);
    expect(violations(report)).toEqual([expect.stringMatching(/^sqs_dlq_check: pgfanout\/Pgfanout\/Shard1\/Replica-us\/Replica\/DeadLetterQueue/)]);
  });

  it('has, in every nested template, what the two rules left out there check: functions in the VPC, queues encrypted with a key', { timeout: 600_000 }, () => {
    const { app, error } = synthWithGuard({});
    expect(error).toBeUndefined();
    const nested = readdirSync(app.outdir).filter((f) => f.endsWith('.nested.template.json')).map((f) => JSON.parse(readFileSync(join(app.outdir, f), 'utf8')) as Json);
    const resources = nested.flatMap((t) => Object.values(t.Resources as Json));
    const functions = resources.filter((r) => r.Type === 'AWS::Lambda::Function');
    const queues = resources.filter((r) => r.Type === 'AWS::SQS::Queue');
    expect(functions).toHaveLength(2);
    expect(queues).toHaveLength(6);
    for (const f of functions) {
      expect(f.Properties.VpcConfig.SubnetIds.length).toBeGreaterThan(0);
      expect(f.Properties.VpcConfig.SecurityGroupIds.length).toBeGreaterThan(0);
    }
    for (const q of queues) expect(q.Properties.KmsMasterKeyId).toEqual({ Ref: expect.stringMatching(/Key.*Arn$/) });
  });
});
