/**
 * Adding or removing a replica touches only that replica: its nested stack (one queue,
 * one dead-letter queue, one function, one event source and its alarms), its output and
 * its dashboard row. And a stack of 100 replicas, the FIFO topic's limit, stays within
 * CloudFormation's and CloudWatch's limits.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildStack, replica } from './fixtures/cdk-apps.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Synthesized {
  readonly parent: Json;
  readonly parentBytes: number;
  /** Nested template of each replica, by name. */
  readonly nested: Record<string, Json>;
}

/**
 * The publisher image is taken from a registry here: the Dockerfile build context is the
 * working tree, and an edit to it between the two syntheses compared would show up as a change.
 */
const PUBLISHER_IMAGE = ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:24-bookworm-slim');

function synth(names: readonly string[]): Synthesized {
  const { app, stack } = buildStack({ replicas: names.map((n) => replica(n)), publisherImage: PUBLISHER_IMAGE });
  const dir = app.synth().directory;
  const parentText = readFileSync(join(dir, stack.templateFile), 'utf8');
  const nested: Record<string, Json> = {};
  for (const [name, nestedStack] of stack.pgfanout.replicaStacks) nested[name] = JSON.parse(readFileSync(join(dir, nestedStack.templateFile), 'utf8')) as Json;
  return { parent: JSON.parse(parentText) as Json, parentBytes: Buffer.byteLength(parentText), nested };
}

function diff(before: Json = {}, after: Json = {}): { added: string[]; removed: string[]; changed: string[] } {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)]);
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  for (const key of keys) {
    if (!(key in before)) added.push(key);
    else if (!(key in after)) removed.push(key);
    else if (JSON.stringify(before[key]) !== JSON.stringify(after[key])) changed.push(key);
  }
  return { added, removed, changed };
}

function typeCounts(template: Json): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of Object.values(template.Resources as Json)) counts[r.Type] = (counts[r.Type] ?? 0) + 1;
  return counts;
}

/** The dashboard's widgets, tokens kept as their JSON so that equal references compare equal. */
function widgets(parent: Json): Json[] {
  const dashboard = Object.values(parent.Resources as Json).find((r) => r.Type === 'AWS::CloudWatch::Dashboard');
  const parts = dashboard.Properties.DashboardBody['Fn::Join'][1] as unknown[];
  const text = parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(JSON.stringify(p)).slice(1, -1))).join('');
  return JSON.parse(text).widgets as Json[];
}

describe('adding a replica', () => {
  let before: Synthesized;
  let after: Synthesized;
  beforeAll(() => {
    before = synth(['eu', 'us']);
    after = synth(['eu', 'us', 'ap']);
  });

  it('adds one nested stack to the parent and changes no other resource but the dashboard', () => {
    const resources = diff(before.parent.Resources, after.parent.Resources);
    expect(resources.removed).toEqual([]);
    expect(resources.added).toHaveLength(1);
    expect(after.parent.Resources[resources.added[0] as string].Type).toBe('AWS::CloudFormation::Stack');
    expect(resources.changed.map((id) => after.parent.Resources[id].Type)).toEqual(['AWS::CloudWatch::Dashboard']);
  });

  it('adds exactly one queue, its two dead-letter queues, one function, one event source and its alarms', () => {
    const ap = after.nested.ap as Json;
    expect(typeCounts(ap)).toEqual({
      'AWS::SQS::Queue': 3,
      'AWS::SQS::QueuePolicy': 3,
      'AWS::SNS::Subscription': 1,
      'AWS::Logs::LogGroup': 1,
      'AWS::IAM::Role': 1,
      'AWS::IAM::Policy': 1,
      'AWS::Lambda::Function': 1,
      'AWS::Lambda::EventSourceMapping': 1,
      'AWS::CloudWatch::Alarm': 8,
    });
    const queues = Object.values(ap.Resources as Json).filter((r) => r.Type === 'AWS::SQS::Queue');
    expect(queues.map((q) => q.Properties.QueueName).sort()).toEqual(['pgfanout-ap-dlq.fifo', 'pgfanout-ap-sns-dlq.fifo', 'pgfanout-ap.fifo']);
    expect(queues.filter((q) => q.Properties.RedrivePolicy)).toHaveLength(1);
  });

  it('leaves the other replicas’ templates byte for byte as they were', () => {
    expect(after.nested.eu).toEqual(before.nested.eu);
    expect(after.nested.us).toEqual(before.nested.us);
  });

  it('adds one output, the new queue URL, and no parameter', () => {
    const outputs = diff(before.parent.Outputs, after.parent.Outputs);
    expect(outputs.removed).toEqual([]);
    expect(outputs.changed).toEqual([]);
    expect(outputs.added.map((id) => after.parent.Outputs[id].Description)).toEqual(['Queue of replica ap']);
    expect(diff(before.parent.Parameters, after.parent.Parameters)).toEqual({ added: [], removed: [], changed: [] });
  });

  it('appends one dashboard row and keeps the existing widgets where they were', () => {
    const old = widgets(before.parent);
    const now = widgets(after.parent);
    expect(now.slice(0, old.length)).toEqual(old);
    expect(now.slice(old.length).map((w) => w.properties.title)).toEqual(['ap: lag (s)', 'ap: applied changes per second', 'ap: queue', 'ap: applier']);
  });
});

describe('removing a replica', () => {
  it('removes its nested stack and output and nothing of the others', () => {
    const before = synth(['eu', 'us']);
    const after = synth(['eu']);
    const resources = diff(before.parent.Resources, after.parent.Resources);
    expect(resources.added).toEqual([]);
    expect(resources.removed.map((id) => before.parent.Resources[id].Type)).toEqual(['AWS::CloudFormation::Stack']);
    expect(resources.changed.map((id) => after.parent.Resources[id].Type)).toEqual(['AWS::CloudWatch::Dashboard']);
    expect(diff(before.parent.Outputs, after.parent.Outputs).removed.map((id) => before.parent.Outputs[id].Description)).toEqual(['Queue of replica us']);
    expect(after.nested.eu).toEqual(before.nested.eu);
  });
});

describe('100 replicas, the FIFO topic limit', () => {
  let big: Synthesized;
  beforeAll(() => {
    big = synth(Array.from({ length: 100 }, (_, i) => `r${i}`));
  });

  it('keeps every template under 500 resources and the parent under 200 outputs', () => {
    expect(Object.keys(big.parent.Resources).length).toBeLessThan(500);
    expect(Object.keys(big.parent.Outputs).length).toBeLessThanOrEqual(200);
    for (const nested of Object.values(big.nested)) expect(Object.keys(nested.Resources).length).toBeLessThan(500);
    expect(Object.keys(big.nested)).toHaveLength(100);
  });

  it('keeps the parent template under the 1 MB CloudFormation accepts from S3', () => {
    expect(big.parentBytes).toBeLessThan(1_000_000);
  });

  it('keeps the dashboard under 500 widgets', () => {
    expect(widgets(big.parent).length).toBeLessThanOrEqual(500);
  });
});
