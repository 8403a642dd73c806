/**
 * The applier's retry policy and what an invocation does with its failed tail: every failure,
 * including one to connect, defers the first failed record and every record behind it together,
 * with the delay measured from the head's first receive.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import type { Context, SQSEvent, SQSRecord } from 'aws-lambda';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { freePort } from '#local/postgres.ts';
import { METRICS } from '#core/config.ts';
import { FixedSigningKeys, signedRecordAttributes, testSigningKey, TEST_SIGNING_KEY } from '#testing/signing.ts';
import type { SigningKey } from '#core/wire';
import { createApplierHandler, PERMANENT_RETRY_MAX_SECONDS, retryDelaySeconds, RETRY_MIN_SECONDS, TRANSIENT_RETRY_MAX_SECONDS } from './app.ts';

/** A record as Lambda hands it over, signed with `key` (null: unsigned). */
function record(i: number, firstReceiveMs: number, body = '{}', key: SigningKey | null = TEST_SIGNING_KEY): SQSRecord {
  return {
    messageId: `m${i}`,
    receiptHandle: `rh${i}`,
    body,
    attributes: {
      ApproximateReceiveCount: '3',
      SentTimestamp: String(firstReceiveMs),
      SenderId: 'x',
      ApproximateFirstReceiveTimestamp: String(firstReceiveMs),
      MessageGroupId: 'g',
      MessageDeduplicationId: `d${i}`,
      SequenceNumber: String(i),
    },
    messageAttributes: key === null ? {} : signedRecordAttributes(body, key),
    md5OfBody: '',
    eventSource: 'aws:sqs',
    eventSourceARN: 'arn:aws:sqs:us-east-1:000000000000:q.fifo',
    awsRegion: 'us-east-1',
  };
}

const context = { functionName: 'f', awsRequestId: 'r', getRemainingTimeInMillis: () => 300_000 } as unknown as Context;

describe('retryDelaySeconds', () => {
  it('starts at the minimum and grows with the time the head has been failing, up to each kind\'s cap', () => {
    expect(retryDelaySeconds('transient', 0)).toBe(RETRY_MIN_SECONDS);
    expect(retryDelaySeconds('transient', 120)).toBe(30);
    expect(retryDelaySeconds('transient', 24 * 3600)).toBe(TRANSIENT_RETRY_MAX_SECONDS);
    expect(retryDelaySeconds('permanent', 24 * 3600)).toBe(PERMANENT_RETRY_MAX_SECONDS);
    expect(retryDelaySeconds('permanent', Number.NaN)).toBe(RETRY_MIN_SECONDS);
  });

  it('brings a replica back within 2 minutes of a 60-second outage, and retries a day-long one about 100 times', () => {
    // Simulate the retries of the head: each failure defers it by retryDelaySeconds(elapsed).
    const retries = (outage: number) => {
      let t = 0;
      let n = 0;
      while (t < outage) {
        t += retryDelaySeconds('transient', t);
        n++;
      }
      return { back: t - outage, n };
    };
    expect(retries(60).back).toBeLessThanOrEqual(120);
    expect(retries(60).back).toBeLessThanOrEqual(20);
    const day = retries(24 * 3600);
    expect(day.n).toBeLessThan(120);
    // maxReceiveCount 1000 lasts far longer than the queue's 14-day retention at the cap.
    expect(1000 * TRANSIENT_RETRY_MAX_SECONDS).toBeGreaterThan(14 * 24 * 3600 / 2);
  });
});

describe('createApplierHandler', () => {
  it('defers the whole invocation when the replica cannot be reached, measured from the head\'s first receive, and logs why', async () => {
    const port = await freePort();
    const deferred: { ids: string[]; delay: number }[] = [];
    const now = 1_000_000_000_000;
    const handler = createApplierHandler({
      replicaName: 'r',
      connect: async () => {
        const client = new pg.Client({ connectionString: `postgres://nobody:x@127.0.0.1:${port}/nothing`, connectionTimeoutMillis: 5000 });
        await client.connect();
        return client;
      },
      apply: {},
      signingKeys: new FixedSigningKeys(),
      logger: new Logger({ logLevel: 'SILENT' }),
      metrics: new Metrics({ namespace: 'test' }),
      deferRecords: async (records, delay) => void deferred.push({ ids: records.map((r) => r.messageId), delay }),
      now: () => now,
    });
    // The head has been failing for 400 s: a quarter of that.
    const event: SQSEvent = { Records: [0, 1, 2].map((i) => record(i, now - 400_000)) };
    const response = await handler(event, context);
    expect(response.batchItemFailures.map((f) => f.itemIdentifier)).toEqual(['m0', 'm1', 'm2']);
    expect(deferred).toEqual([{ ids: ['m0', 'm1', 'm2'], delay: 100 }]);
    expect(handler.applier.lastFailure).toMatchObject({ kind: 'transient', messageId: 'm0' });
    expect(handler.applier.lastFailure?.message).toMatch(/ECONNREFUSED|connect/);
  });

  it('defers a permanent failure (a malformed message) with the permanent cap, and the records behind it too', async () => {
    const deferred: { ids: string[]; delay: number }[] = [];
    const now = 2_000_000_000_000;
    const handler = createApplierHandler({
      replicaName: 'r',
      // A client that is never used: the message is refused before the database is touched.
      connect: async () => new pg.Client(),
      apply: {},
      signingKeys: new FixedSigningKeys(),
      logger: new Logger({ logLevel: 'SILENT' }),
      metrics: new Metrics({ namespace: 'test' }),
      deferRecords: async (records, delay) => void deferred.push({ ids: records.map((r) => r.messageId), delay }),
      now: () => now,
    });
    const event: SQSEvent = { Records: [record(0, now - 3 * 3600_000, 'not json'), record(1, now)] };
    const response = await handler(event, context);
    expect(response.batchItemFailures.map((f) => f.itemIdentifier)).toEqual(['m0', 'm1']);
    expect(deferred).toEqual([{ ids: ['m0', 'm1'], delay: PERMANENT_RETRY_MAX_SECONDS }]);
    expect(handler.applier.lastFailure).toMatchObject({ kind: 'permanent', code: 'MALFORMED_MESSAGE' });
    expect(handler.applier.failureCounts.permanent).toBe(1);
  });

  it('refuses a message of a source the replica does not follow before touching the replica, and counts it in MessagesRefused', async () => {
    const added: string[] = [];
    class RecordingMetrics extends Metrics {
      override addMetric(...args: Parameters<Metrics['addMetric']>): this {
        added.push(args[0]);
        super.addMetric(...args);
        return this;
      }
    }
    const now = 2_000_000_000_000;
    const handler = createApplierHandler({
      replicaName: 'r',
      // A client that is never used: the message is refused before the database is touched.
      connect: async () => new pg.Client(),
      apply: { sources: ['the-source'] },
      signingKeys: new FixedSigningKeys(),
      logger: new Logger({ logLevel: 'SILENT' }),
      metrics: new RecordingMetrics({ namespace: 'test' }),
      deferRecords: async () => undefined,
      now: () => now,
    });
    const forged = JSON.stringify({ pgfanout: 1, source: 'someone-else', batch: '1', prev: '0', part: 0, changes: [], final: true, count: 0 });
    const response = await handler({ Records: [record(0, now, forged)] }, context);
    expect(response.batchItemFailures.map((f) => f.itemIdentifier)).toEqual(['m0']);
    expect(handler.applier.lastFailure).toMatchObject({ kind: 'permanent', code: 'UNTRUSTED_MESSAGE' });
    expect(handler.applier.lastFailure?.message).toMatch(/replica refuses the message \(batch 1, part 0, source someone-else\): this replica follows only source the-source/);
    expect(added).toContain(METRICS.applier.messagesRefused);
  });
});

describe('message authentication', () => {
  const now = 3_000_000_000_000;
  const body = JSON.stringify({ pgfanout: 1, source: 'the-source', batch: '7', prev: '6', part: 0, changes: [], final: true, count: 0 });

  /** A handler whose replica is never queried: an authenticated message fails after the signature check, at the source check. */
  function refusingHandler(keys: FixedSigningKeys) {
    const added: string[] = [];
    class RecordingMetrics extends Metrics {
      override addMetric(...args: Parameters<Metrics['addMetric']>): this {
        added.push(args[0]);
        super.addMetric(...args);
        return this;
      }
    }
    const deferred: { ids: string[]; delay: number }[] = [];
    const handler = createApplierHandler({
      replicaName: 'r',
      // A client that is never connected: every message is refused before the database is used.
      connect: async () => new pg.Client(),
      apply: { sources: ['another-source'] },
      signingKeys: keys,
      logger: new Logger({ logLevel: 'SILENT' }),
      metrics: new RecordingMetrics({ namespace: 'test' }),
      deferRecords: async (records, delay) => void deferred.push({ ids: records.map((r) => r.messageId), delay }),
      now: () => now,
    });
    return { handler, added, deferred };
  }

  it('refuses an unsigned message permanently, naming the message, its batch and the missing key id, and keeps it and everything behind it at the head', async () => {
    const { handler, added, deferred } = refusingHandler(new FixedSigningKeys());
    const response = await handler({ Records: [record(0, now - 3600_000, body, null), record(1, now, body)] }, context);
    expect(response.batchItemFailures.map((f) => f.itemIdentifier)).toEqual(['m0', 'm1']);
    expect(deferred).toEqual([{ ids: ['m0', 'm1'], delay: PERMANENT_RETRY_MAX_SECONDS }]);
    expect(handler.applier.lastFailure).toMatchObject({ kind: 'permanent', code: 'UNAUTHENTICATED_MESSAGE', messageId: 'm0' });
    expect(handler.applier.lastFailure?.message).toBe(
      'replica refuses message m0 (claiming batch "7", part 0, source "the-source"), key id (none): it is not signed (no pgfanout-key-id and pgfanout-signature message attributes): ' +
        'only the publisher, which holds the signing key, sends messages a replica applies; nothing applied',
    );
    expect(added).toContain(METRICS.applier.messagesRefused);
    expect(added).toContain(METRICS.applier.permanentFailures);
  });

  it('refuses a forged message: a body altered after signing, or signed with a key of the same id that is not the real one', async () => {
    const { handler } = refusingHandler(new FixedSigningKeys());
    const altered = { ...record(0, now, body), body: body.replace('"7"', '"8"').replace('"6"', '"7"') };
    await handler({ Records: [altered] }, context);
    expect(handler.applier.lastFailure).toMatchObject({ kind: 'permanent', code: 'UNAUTHENTICATED_MESSAGE' });
    expect(handler.applier.lastFailure?.message).toContain(`claiming batch "8", part 0, source "the-source"), key id "${TEST_SIGNING_KEY.id}": its signature does not match its body`);
    const impostor = record(1, now, body, { id: TEST_SIGNING_KEY.id, key: Buffer.alloc(32, 7) });
    await handler({ Records: [impostor] }, context);
    expect(handler.applier.lastFailure?.message).toMatch(/^replica refuses message m1 .*its signature does not match its body/);
  });

  it('refuses a message signed with a key it does not accept, after reading the keys once more', async () => {
    const keys = new FixedSigningKeys();
    const { handler } = refusingHandler(keys);
    const stranger = testSigningKey('some-other-key-id');
    await handler({ Records: [record(0, now, body, stranger)] }, context);
    expect(keys.refreshes).toBe(1);
    expect(handler.applier.lastFailure).toMatchObject({ kind: 'permanent', code: 'UNAUTHENTICATED_MESSAGE' });
    expect(handler.applier.lastFailure?.message).toContain(
      `key id "some-other-key-id": it is signed with a key this replica does not accept: the signing secret's AWSCURRENT version is "${TEST_SIGNING_KEY.id}" and it has no AWSPREVIOUS version`,
    );
  });

  it('accepts a message signed with the previous key after a rotation, and one with the new key (it reaches the source check)', async () => {
    const keys = new FixedSigningKeys(TEST_SIGNING_KEY);
    const { handler } = refusingHandler(keys);
    const next = keys.rotate();
    await handler({ Records: [record(0, now, body, TEST_SIGNING_KEY)] }, context);
    expect(handler.applier.lastFailure).toMatchObject({ code: 'UNTRUSTED_MESSAGE' });
    expect(handler.applier.lastFailure?.message).toMatch(/this replica follows only source another-source/);
    await handler({ Records: [record(1, now, body, next)] }, context);
    expect(handler.applier.lastFailure).toMatchObject({ code: 'UNTRUSTED_MESSAGE', messageId: 'm1' });
    expect(keys.refreshes).toBe(0);
    // Two rotations later the first key is no longer accepted.
    keys.rotate();
    await handler({ Records: [record(2, now, body, TEST_SIGNING_KEY)] }, context);
    expect(handler.applier.lastFailure).toMatchObject({ code: 'UNAUTHENTICATED_MESSAGE', messageId: 'm2' });
  });
});
