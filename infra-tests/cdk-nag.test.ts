/**
 * cdk-nag's AwsSolutions pack over the whole app (parent and every replica's nested
 * stack): no finding is left unacknowledged, every acknowledgement gives its reason,
 * and every acknowledgement answers a finding the pack really reports.
 */
import { Validations, type App } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';
import nag from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildStack, replica, SOURCE_ID } from './fixtures/cdk-apps.ts';

interface Finding {
  readonly rule: string;
  readonly path: string;
}

interface Acknowledgement {
  readonly rule: string;
  readonly path: string;
  readonly reason: string;
}

function findings(app: App, honourAcknowledgements: boolean): Finding[] {
  const pack = new nag.AwsSolutionsChecks();
  // The pack's check of acknowledgements, switched off to see what they answer.
  if (!honourAcknowledgements) (pack as unknown as { isAcknowledged: () => boolean }).isAcknowledged = () => false;
  const report = pack.validateScope(app);
  return report.violations.flatMap((v) => v.violatingResources.map((r) => ({ rule: v.ruleName, path: (r as { constructPath?: string }).constructPath ?? '' })));
}

function acknowledgements(root: IConstruct): Acknowledgement[] {
  return root.node.findAll().flatMap((c) =>
    c.node.metadata
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) => Object.entries(m.data as Record<string, string>).map(([rule, reason]) => ({ rule: rule.replace(/^annotation::/i, ''), path: c.node.path, reason }))),
  );
}

/** The apps checked: a new VPC with every optional feature, and an existing network. */
const variants: Record<string, () => App> = {
  'a new VPC': () =>
    buildStack({
      replicas: [
        replica('eu', { include: ['public.orders'], maxConcurrency: 5 }),
        { name: 'us', secretName: 'pgfanout/us', secretKeyArn: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab', sources: [SOURCE_ID] },
      ],
      alarmEmail: 'ops@example.com',
    }).app,
  'the publisher run outside the stack': () => buildStack({ publisherService: false, source: undefined, replicas: [replica('eu')] }).app,
  'an existing network': () =>
    buildStack({
      replicas: [replica('eu')],
      network: { vpcId: 'vpc-0123456789abcdef0', subnetIds: ['subnet-0123456789abcdef0'], securityGroupIds: ['sg-0123456789abcdef0'] },
    }).app,
};

describe.each(Object.keys(variants))('AwsSolutions over the app with %s', (variant) => {
  let app: App;
  beforeAll(() => {
    app = (variants[variant] as () => App)();
  });

  it('reports no unacknowledged finding', () => {
    expect(findings(app, true)).toEqual([]);
  });

  it('gives a reason with every acknowledgement', () => {
    const acks = acknowledgements(app);
    expect(acks.length).toBeGreaterThan(0);
    for (const ack of acks) expect(ack.reason.length, `${ack.rule} at ${ack.path}`).toBeGreaterThanOrEqual(40);
  });

  it('acknowledges only findings the pack really reports', () => {
    const raw = findings(app, false);
    expect(raw.length).toBeGreaterThan(0);
    // CDK records acknowledgements of its own built-in CloudFormation checks too; these are cdk-nag's.
    const nagAcks = acknowledgements(app).filter((a) => a.rule.startsWith('AwsSolutions-'));
    expect(nagAcks.length).toBeGreaterThan(0);
    for (const ack of nagAcks) {
      const answered = raw.filter((f) => f.rule === ack.rule && (f.path === ack.path || f.path.startsWith(`${ack.path}/`)));
      expect(answered.length, `${ack.rule} acknowledged at ${ack.path}`).toBeGreaterThan(0);
    }
  });
});
