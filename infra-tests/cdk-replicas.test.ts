/**
 * Adding or removing a replica touches only that replica: its nested stack (one queue,
 * one dead-letter queue, one function, one event source and its alarms), its output and
 * its dashboard row. A stack of 100 replicas, the FIFO topic's limit, stays within
 * CloudFormation's and CloudWatch's limits; past it, replicas go to further topic shards, and
 * adding the 101st changes nothing of the first 100.
 */
import { readFileSync } from 'node:fs';
import { Stack } from 'aws-cdk-lib';
import { join } from 'node:path';
import { ContainerImage } from 'aws-cdk-lib/aws-ecs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { ReplicaConfig } from '../cdk/config.ts';
import { buildStack, replica } from './fixtures/cdk-apps.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

interface Synthesized {
  readonly parent: Json;
  readonly parentBytes: number;
  /** Nested template of each replica, by name. */
  readonly nested: Record<string, Json>;
  /** Logical id, in the parent, of each replica's nested stack resource. */
  readonly nestedIds: Record<string, string>;
  /** Each shard's nested template (shards from 1), by shard number. */
  readonly shards: Record<number, Json>;
  /** Paths of the parent template and every nested template. */
  readonly templateFiles: readonly string[];
}

/**
 * The publisher image is taken from a registry here: the Dockerfile build context is the
 * working tree, and an edit to it between the two syntheses compared would show up as a change.
 */
const PUBLISHER_IMAGE = ContainerImage.fromRegistry('public.ecr.aws/docker/library/node:24-bookworm-slim');

function synth(names: readonly (string | ReplicaConfig)[]): Synthesized {
  const { app, stack } = buildStack({ replicas: names.map((n) => (typeof n === 'string' ? replica(n) : n)), publisherImage: PUBLISHER_IMAGE });
  const dir = app.synth().directory;
  const parentText = readFileSync(join(dir, stack.templateFile), 'utf8');
  const nested: Record<string, Json> = {};
  const nestedIds: Record<string, string> = {};
  for (const [name, nestedStack] of stack.pgfanout.replicaStacks) {
    nested[name] = JSON.parse(readFileSync(join(dir, nestedStack.templateFile), 'utf8')) as Json;
    nestedIds[name] = Stack.of(nestedStack.nestedStackResource as never).getLogicalId(nestedStack.nestedStackResource as never);
  }
  const shards: Record<number, Json> = {};
  for (const [shard, shardStack] of stack.pgfanout.shardStacks) shards[shard] = JSON.parse(readFileSync(join(dir, shardStack.templateFile), 'utf8')) as Json;
  const templateFiles = [stack.templateFile, ...[...stack.pgfanout.shardStacks.values(), ...stack.pgfanout.replicaStacks.values()].map((n) => n.templateFile)].map((f) => join(dir, f));
  return { parent: JSON.parse(parentText) as Json, parentBytes: Buffer.byteLength(parentText), nested, nestedIds, shards, templateFiles };
}

/** `count` replicas named r0, r1, …: the first 100 on shard 0 (the default), then 100 a shard. */
function sharded(count: number): ReplicaConfig[] {
  return Array.from({ length: count }, (_, i) => replica(`r${i}`, i < 100 ? {} : { shard: Math.floor(i / 100) }));
}

/** The name of the topic each replica's subscription takes its messages from, by replica. */
function subscribedTopics(s: Synthesized): Record<string, string> {
  const topics: Record<string, string> = {};
  for (const [name, template] of Object.entries(s.nested)) {
    const subscriptions = Object.values(template.Resources as Json).filter((r) => r.Type === 'AWS::SNS::Subscription');
    expect(subscriptions).toHaveLength(1);
    const parameter = subscriptions[0].Properties.TopicArn.Ref as string;
    // The replica's nested stack resource is in the parent (shard 0) or in its shard's template.
    const holder = [s.parent, ...Object.values(s.shards)].find((t) => (t.Resources as Json)[s.nestedIds[name] as string]) as Json;
    const passed = holder.Resources[s.nestedIds[name] as string].Properties.Parameters[parameter];
    expect(Object.keys(passed)).toEqual(['Ref']);
    topics[name] = holder.Resources[passed.Ref as string].Properties.TopicName as string;
  }
  return topics;
}

function resourcesOfType(template: Json, type: string): [string, Json][] {
  return Object.entries(template.Resources as Json).filter(([, r]) => r.Type === type);
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

describe('past 100 replicas: topic shards', () => {
  let hundred: Synthesized;
  let hundredAndOne: Synthesized;
  beforeAll(() => {
    hundred = synth(sharded(100));
    hundredAndOne = synth(sharded(101));
  }, 900_000);

  it('subscribes the 101st replica to a second FIFO topic, in its shard’s nested stack, and the first 100 to the first', () => {
    const subscribed = subscribedTopics(hundredAndOne);
    expect(subscribed.r100).toBe('pgfanout-shard1.fifo');
    for (let i = 0; i < 100; i++) expect(subscribed[`r${i}`]).toBe('pgfanout.fifo');
    expect(Object.keys(hundred.shards)).toEqual([]);
    expect(Object.keys(hundredAndOne.shards)).toEqual(['1']);
    expect(resourcesOfType(hundredAndOne.shards[1] as Json, 'AWS::SNS::Topic').map(([, r]) => [r.Properties.TopicName, r.Properties.FifoTopic])).toEqual([['pgfanout-shard1.fifo', true]]);
  });

  it('leaves the first 100 replicas’ nested templates and their parameters as they were', () => {
    for (let i = 0; i < 100; i++) {
      expect(hundredAndOne.nested[`r${i}`]).toEqual(hundred.nested[`r${i}`]);
      const id = hundred.nestedIds[`r${i}`] as string;
      expect(hundredAndOne.nestedIds[`r${i}`]).toBe(id);
      expect(hundredAndOne.parent.Resources[id]).toEqual(hundred.parent.Resources[id]);
    }
  });

  it('adds one nested stack to the parent and changes only the key (a statement for the new topic) and the publisher (its topic list)', () => {
    const resources = diff(hundred.parent.Resources, hundredAndOne.parent.Resources);
    expect(resources.removed).toEqual([]);
    expect(resources.added.map((id) => hundredAndOne.parent.Resources[id].Type)).toEqual(['AWS::CloudFormation::Stack']);
    expect(resources.changed.map((id) => hundredAndOne.parent.Resources[id].Type).sort()).toEqual(['AWS::ECS::TaskDefinition', 'AWS::IAM::Policy', 'AWS::KMS::Key']);
    // The shard-0 dashboard (publisher and the first 100 rows) is untouched: the new replica is on its shard's dashboard.
    expect(resourcesOfType(hundredAndOne.shards[1] as Json, 'AWS::CloudWatch::Dashboard').map(([, r]) => r.Properties.DashboardName)).toEqual(['pgfanout-shard1']);
    expect(resourcesOfType(hundredAndOne.shards[1] as Json, 'AWS::CloudWatch::Alarm').map(([, r]) => r.Properties.AlarmName)).toEqual(['pgfanout-shard1-notifications-lost']);
    const outputs = diff(hundred.parent.Outputs, hundredAndOne.parent.Outputs);
    expect(outputs.removed).toEqual([]);
    expect(outputs.changed).toEqual([]);
    expect(outputs.added.map((id) => hundredAndOne.parent.Outputs[id].Description)).toEqual(['The SNS FIFO topic of shard 1, which the publisher publishes to as well']);
    // The new replica's queue URL is an output of its own nested stack: the parent's 200 outputs would not hold 400.
    expect(Object.values(hundredAndOne.nested.r100?.Outputs as Json).map((o) => o.Description)).toContain('Queue of replica r100');
  });

  it('gives the publisher every topic, shard 0 first, and the right to publish to each', () => {
    const [, task] = resourcesOfType(hundredAndOne.parent, 'AWS::ECS::TaskDefinition')[0] as [string, Json];
    const env = task.Properties.ContainerDefinitions[0].Environment as { Name: string; Value: unknown }[];
    const [topicId] = resourcesOfType(hundredAndOne.parent, 'AWS::SNS::Topic').find(([, r]) => r.Properties.TopicName === 'pgfanout.fifo') as [string, Json];
    const [shardId] = resourcesOfType(hundredAndOne.parent, 'AWS::CloudFormation::Stack').find(([id]) => id.startsWith('PgfanoutShard1')) as [string, Json];
    const shardTopic = { 'Fn::GetAtt': [shardId, expect.stringMatching(/^Outputs\./)] };
    expect(env.find((e) => e.Name === 'PGFANOUT_TOPIC_ARN')?.Value).toEqual({ 'Fn::Join': [',', [{ Ref: topicId }, shardTopic]] });
    const before = resourcesOfType(hundred.parent, 'AWS::ECS::TaskDefinition')[0]?.[1] as Json;
    expect(before.Properties.ContainerDefinitions[0].Environment.find((e: Json) => e.Name === 'PGFANOUT_TOPIC_ARN').Value).toEqual({ Ref: topicId });
    const policies = resourcesOfType(hundredAndOne.parent, 'AWS::IAM::Policy').map(([, r]) => r.Properties.PolicyDocument.Statement as Json[]);
    const publish = policies.flat().find((st) => st.Action === 'sns:Publish') as Json;
    expect(publish.Resource).toHaveLength(2);
    expect(publish.Resource).toEqual(expect.arrayContaining([{ Ref: topicId }, shardTopic]));
  });
});

describe('250 replicas on three topic shards', () => {
  let big: Synthesized;
  beforeAll(() => {
    big = synth(sharded(250));
  }, 900_000);

  it('has three FIFO topics of at most 100 subscriptions each', () => {
    const counts: Record<string, number> = {};
    for (const topic of Object.values(subscribedTopics(big))) counts[topic] = (counts[topic] ?? 0) + 1;
    expect(counts).toEqual({ 'pgfanout.fifo': 100, 'pgfanout-shard1.fifo': 100, 'pgfanout-shard2.fifo': 50 });
  });

  it('keeps every template within CloudFormation’s limits: 500 resources, 200 outputs, 1 MB', () => {
    for (const template of [big.parent, ...Object.values(big.shards)]) {
      expect(Object.keys(template.Resources).length).toBeLessThan(500);
      expect(Object.keys(template.Outputs ?? {}).length).toBeLessThanOrEqual(200);
      expect(Buffer.byteLength(JSON.stringify(template, null, 1))).toBeLessThan(1_000_000);
    }
    expect(big.parentBytes).toBeLessThan(1_000_000);
    expect(Object.keys(big.nested)).toHaveLength(250);
  });

  it('has one dashboard per shard, each under 500 widgets', () => {
    const dashboards = [big.parent, ...Object.values(big.shards)].flatMap((t) => resourcesOfType(t, 'AWS::CloudWatch::Dashboard'));
    expect(dashboards.map(([, r]) => r.Properties.DashboardName).sort()).toEqual(['pgfanout', 'pgfanout-shard1', 'pgfanout-shard2']);
    for (const [, dashboard] of dashboards) expect(widgets({ Resources: { d: dashboard } }).length).toBeLessThanOrEqual(500);
  });
});
