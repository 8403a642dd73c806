/**
 * The publisher's metrics as CloudWatch receives them (EMF lines on stdout): the heartbeat in
 * every state, and every metric, errors before any source is known included, with the one
 * dimension set the dashboard and the alarms read. Against a real PostgreSQL server.
 */
import { SNSClient } from '@aws-sdk/client-sns';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DIMENSIONS, METRIC_NAMESPACE, METRICS } from '#core/config.ts';
import { LocalPostgres } from '#local/postgres.ts';
import { waitFor } from '#testing/wait.ts';
import { publisherMetrics, PUBLISHER_SERVICE } from './metrics.ts';
import { Publisher, PUBLISHER_LOCK } from './publisher.ts';
import { FixedSigningKeys } from '#testing/signing.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

let server: LocalPostgres;
const lines: string[] = [];
const originalWrite = process.stdout.write.bind(process.stdout);

const metricsDisabled = process.env.POWERTOOLS_METRICS_DISABLED;

beforeAll(async () => {
  // The test configuration turns Powertools metrics off; these tests are about them.
  process.env.POWERTOOLS_METRICS_DISABLED = 'false';
  server = await LocalPostgres.start({ major: 18 });
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    if (text.includes('"_aws"')) lines.push(...text.split('\n').filter((l) => l.includes('"_aws"')));
    else return (originalWrite as (...a: unknown[]) => boolean)(chunk, ...rest);
    return true;
  }) as typeof process.stdout.write;
}, 120_000);

afterAll(async () => {
  process.stdout.write = originalWrite;
  process.env.POWERTOOLS_METRICS_DISABLED = metricsDisabled;
  await server?.stop();
});

const quiet = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

function emitted(deployment: string): Json[] {
  return lines.map((l) => JSON.parse(l) as Json).filter((m) => m[DIMENSIONS.deployment] === deployment);
}

function names(m: Json): string[] {
  return (m._aws.CloudWatchMetrics[0].Metrics as { Name: string }[]).map((x) => x.Name);
}

function expectDashboardDimensions(metrics: readonly Json[], deployment: string): void {
  for (const m of metrics) {
    const directive = m._aws.CloudWatchMetrics[0] as Json;
    expect(directive.Namespace).toBe(METRIC_NAMESPACE);
    expect((directive.Dimensions as string[][]).map((set) => [...set].sort())).toEqual([[DIMENSIONS.deployment, 'service'].sort()]);
    expect(m.service).toBe(PUBLISHER_SERVICE);
    expect(m[DIMENSIONS.deployment]).toBe(deployment);
  }
}

async function runUntil(publisher: Publisher, done: () => boolean, what: string): Promise<void> {
  const stop = new AbortController();
  const running = publisher.run(stop.signal);
  try {
    await waitFor(what, done, 60_000, 20);
  } finally {
    stop.abort();
    await running;
  }
}

describe('publisher metrics', () => {
  it('beats and counts errors, with the dashboard dimensions, while it cannot reach the source', async () => {
    const deployment = 'unreachable';
    const m = publisherMetrics({ deployment, heartbeatMs: 20 });
    const sns = new SNSClient({ region: 'eu-west-1' });
    const publisher = new Publisher({
      connectSource: async () => {
        const client = new pg.Client({ host: '127.0.0.1', port: 9, user: 'x', database: 'x', connectionTimeoutMillis: 2000 });
        await client.connect();
        return client;
      },
      sns,
      topicArns: ['arn:aws:sns:eu-west-1:123456789012:pgfanout.fifo'],
      signingKeys: new FixedSigningKeys(),
      logger: quiet,
      metrics: m.metrics,
      backoffMs: { initial: 10, max: 20 },
    });
    const count = (name: string) => emitted(deployment).filter((x) => names(x).includes(name)).length;
    await runUntil(publisher, () => count(METRICS.publisher.publishErrors) >= 2 && count(METRICS.publisher.heartbeat) >= 3, 'errors and heartbeats');
    m.stop();
    sns.destroy();
    expect(publisher.health().sourceId).toBeNull();
    expectDashboardDimensions(emitted(deployment), deployment);
    expect(count(METRICS.publisher.oldestUnpublishedSeconds)).toBe(0);
  });

  it('beats while it waits for the lock another publisher holds', async () => {
    const deployment = 'standby';
    const holder = new pg.Client({ connectionString: server.url() });
    holder.on('error', () => {});
    await holder.connect();
    await holder.query('SELECT pg_advisory_lock($1, $2)', [PUBLISHER_LOCK.classId, PUBLISHER_LOCK.objectId]);
    const m = publisherMetrics({ deployment, heartbeatMs: 20 });
    const sns = new SNSClient({ region: 'eu-west-1' });
    const publisher = new Publisher({
      connectSource: async () => {
        const client = new pg.Client({ connectionString: server.url() });
        await client.connect();
        return client;
      },
      sns,
      topicArns: ['arn:aws:sns:eu-west-1:123456789012:pgfanout.fifo'],
      signingKeys: new FixedSigningKeys(),
      logger: quiet,
      metrics: m.metrics,
      standbyPollMs: 20,
    });
    let beatsInStandby = 0;
    await runUntil(
      publisher,
      () => {
        if (publisher.health().state === 'standby') beatsInStandby = beatsInStandby || emitted(deployment).length;
        return beatsInStandby > 0 && emitted(deployment).length >= beatsInStandby + 2;
      },
      'heartbeats in standby',
    );
    m.stop();
    sns.destroy();
    await holder.end();
    const all = emitted(deployment);
    expect(all.every((x) => names(x).includes(METRICS.publisher.heartbeat))).toBe(true);
    expectDashboardDimensions(all, deployment);
  });
});
