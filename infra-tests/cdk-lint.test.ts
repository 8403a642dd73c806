/**
 * AWS's own template linter, cfn-lint (https://github.com/aws-cloudformation/cfn-lint), over
 * every synthesized template (the parent and each replica's nested stack): no error, and no
 * warning but W3005 ("dependency already enforced"), which CDK itself writes: a DependsOn
 * beside a GetAtt of the same resource (the applier's role, CDK's VPC custom resource).
 * Where cfn-lint is not installed (`pip install cfn-lint`), the test is skipped and its name
 * says so.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { describe, expect, it } from 'vitest';
import { buildStack, replica, SOURCE_ID } from './fixtures/cdk-apps.ts';

const CFN_LINT = process.env.CFN_LINT ?? 'cfn-lint';
const version = spawnSync(CFN_LINT, ['--version'], { encoding: 'utf8' });
const available = version.status === 0;
const skipped = available ? '' : ` (skipped: ${CFN_LINT} is not installed; pip install cfn-lint)`;

/** Warnings CDK's own output raises, which pgfanout cannot change. */
const ACCEPTED = ['W3005'];

function lint(templates: readonly string[]): { status: number | null; output: string; findings: string[] } {
  const run = spawnSync(CFN_LINT, ['--format', 'parseable', '--', ...templates], { encoding: 'utf8', timeout: 300_000 });
  const output = `${run.stdout}${run.stderr}`;
  const findings = output.split('\n').filter((line) => line.trim() !== '' && !ACCEPTED.some((rule) => line.includes(`:${rule}:`)));
  return { status: run.status, output, findings };
}

describe('cfn-lint', () => {
  it.skipIf(!available)(`finds nothing in the parent and the replica templates, new VPC and every option${skipped}`, () => {
    const { app, stack } = buildStack({
      replicas: [
        replica('eu', { include: ['public.orders'], maxConcurrency: 5, enabled: false, databaseTls: 'require', architecture: 'x86_64' }),
        { name: 'us', secretName: 'pgfanout/us', secretKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab', sources: [SOURCE_ID] },
      ],
      alarmEmail: 'ops@example.com',
      publisherImage: ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:24-bookworm-slim'),
    });
    const dir = app.synth().directory;
    const templates = [stack.templateFile, ...[...stack.pgfanout.replicaStacks.values()].map((n) => n.templateFile)].map((f) => join(dir, f));
    expect(templates).toHaveLength(3);
    const result = lint(templates);
    expect(result.findings, `cfn-lint ${version.stdout.trim()}`).toEqual([]);
    expect(result.output).not.toMatch(/:E\d{4}:/);
  });

  it.skipIf(!available)(`finds nothing in the stack without the publisher service, in an existing network${skipped}`, () => {
    const { app, stack } = buildStack({
      publisherService: false,
      source: undefined,
      replicas: [replica('eu')],
      network: { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'], securityGroupIds: ['sg-0123456789abcdef0'] },
    });
    const dir = app.synth().directory;
    const result = lint([stack.templateFile, ...[...stack.pgfanout.replicaStacks.values()].map((n) => n.templateFile)].map((f) => join(dir, f)));
    expect(result.findings).toEqual([]);
    expect(result.output).not.toMatch(/:E\d{4}:/);
  });

  it.skipIf(!available)(`reports a template error, so that silence means something${skipped}`, () => {
    const { app, stack } = buildStack({ replicas: [replica('eu')], publisherImage: ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:24-bookworm-slim') });
    const queue = stack.pgfanout.replicas.get('eu')?.queue.node.defaultChild as unknown as { addPropertyOverride(path: string, value: unknown): void };
    queue.addPropertyOverride('MessageRetentionPeriod', 99_999_999);
    const dir = app.synth().directory;
    const nested = stack.pgfanout.replicaStacks.get('eu')?.templateFile as string;
    const result = lint([join(dir, nested)]);
    expect(result.findings).toEqual([expect.stringMatching(/:E3034:99999999 is greater than the maximum of 1209600/)]);
    expect(result.status).not.toBe(0);
  });
});
