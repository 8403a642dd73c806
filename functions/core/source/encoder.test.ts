import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bodyDigest } from '../wire/digest.ts';
import { encodeBatch, fittingPrefix, type BatchMeta, type OutgoingMessage } from './encoder.ts';
import { mergeChangeItems, parseEnvelope, type Change, type Envelope } from '../wire/envelope.ts';
import { InvalidArgumentError, InvalidStreamError } from '../wire/errors.ts';
import { isValidFifoId, messageGroupId } from '../wire/ids.ts';
import type { ValueToken } from './reader.ts';
import { anyChange, anyText, collect, tokensOf } from '#testing/batches.ts';

/** A character outside `#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF` (SQS SendMessage). */
const SQS_REFUSED = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

/** JSON text of a string as the envelope writes it: U+FFFE and U+FFFF as escapes. */
const sqsSafeJson = (text: string) => JSON.stringify(text).replaceAll('\uFFFE', '\\ufffe').replaceAll('\uFFFF', '\\uffff');

const META: BatchMeta = { sourceId: '3f2c7e9a-0000-4000-8000-000000000001', batchId: '412', prevBatchId: '411', lastEventTime: '2024-05-01T12:00:00.123Z' };

async function encode(changes: readonly Change[], maxMessageBytes?: number, cuts?: (text: string) => readonly number[], meta: BatchMeta = META) {
  return collect(encodeBatch(meta, tokensOf(changes, cuts), maxMessageBytes === undefined ? {} : { maxMessageBytes }));
}

/** Checks every rule a message sequence must follow and returns the parsed envelopes. */
function checkMessages(messages: readonly OutgoingMessage[], maxBytes: number, meta: BatchMeta = META): Envelope[] {
  const envelopes: Envelope[] = [];
  let previous: string | undefined;
  messages.forEach((m, i) => {
    expect(m.bytes).toBe(Buffer.byteLength(m.body));
    // Only characters SQS accepts in a body (API_SendMessage): U+FFFE and U+FFFF travel escaped.
    expect(m.body).not.toMatch(SQS_REFUSED);
    expect(m.bytes).toBeLessThanOrEqual(maxBytes);
    expect(m.part).toBe(i);
    expect(m.final).toBe(i === messages.length - 1);
    expect(m.groupId).toBe(messageGroupId(meta.sourceId));
    expect(isValidFifoId(m.dedupId)).toBe(true);
    const envelope = parseEnvelope(m.body);
    expect(envelope).toMatchObject({ source: meta.sourceId, batch: meta.batchId, prev: meta.prevBatchId, part: i, final: m.final });
    expect(envelope.after).toBe(previous === undefined ? undefined : bodyDigest(previous));
    expect(m.changes).toBe(envelope.changes.filter((c) => c.op !== '+').length);
    previous = m.body;
    envelopes.push(envelope);
  });
  expect(new Set(messages.map((m) => m.dedupId)).size).toBe(messages.length);
  return envelopes;
}

describe('encodeBatch', () => {
  it('writes the batch origin on every part', async () => {
    const origin = { system: '7301234567890123456', timeline: 2, lsn: '16/B374D848' };
    const meta: BatchMeta = { ...META, origin };
    const changes: Change[] = Array.from({ length: 40 }, (_, i) => ({ op: 'I', schema: 'public', table: 't', txid: '1', new: { id: String(i), v: 'x'.repeat(100) } }));
    const messages = await encode(changes, 1024, undefined, meta);
    expect(messages.length).toBeGreaterThan(3);
    const envelopes = checkMessages(messages, 1024, meta);
    for (const e of envelopes) expect(e.origin).toEqual(origin);
    expect(messages[0]?.body).toContain(`"time":"${META.lastEventTime}","origin":{"system":"7301234567890123456","timeline":2,"lsn":"16/B374D848"},"changes":[`);
    await expect(encode(changes, 1024, undefined, { ...META, origin: { ...origin, lsn: 'nope' } })).rejects.toThrow(/origin is .*origin\.lsn/);
  });

  it('escapes U+FFFE and U+FFFF, which SQS refuses, and the parsed envelope holds them again exactly', async () => {
    const odd = 'a\uFFFEb\uFFFFc';
    const changes: Change[] = [
      { op: 'I', schema: 's\uFFFF', table: 't\uFFFE', txid: '1', new: { ['c\uFFFF']: odd, big: '\uFFFF\uFFFE'.repeat(3000) } },
    ];
    const messages = await encode(changes, 4096);
    expect(messages.length).toBeGreaterThan(3);
    expect(messages[0]?.body).toContain('"s\\uffff"');
    const envelopes = checkMessages(messages, 4096);
    expect(mergeChangeItems(envelopes.flatMap((e) => e.changes))).toEqual(changes);
  });

  it('writes a small batch as one final message in the documented format', async () => {
    const changes: Change[] = [
      { op: 'I', schema: 'public', table: 'orders', txid: '7301', new: { id: '1', note: 'hi', total: '12.50' } },
      { op: 'U', schema: 'public', table: 'orders', txid: '7302', old: { id: '1' }, new: { id: '1', note: null, total: '13.00' } },
      { op: 'D', schema: 'public', table: 'orders', txid: '7303', old: { id: '1' } },
      { op: 'T', schema: 'public', table: 'orders', txid: '7304' },
    ];

    const messages = await encode(changes);

    expect(messages).toHaveLength(1);
    expect(messages[0]?.body).toBe(
      '{"pgfanout":1,"source":"3f2c7e9a-0000-4000-8000-000000000001","batch":"412","prev":"411","part":0,"time":"2024-05-01T12:00:00.123Z","changes":[' +
        '{"op":"I","schema":"public","table":"orders","txid":"7301","new":{"id":"1","note":"hi","total":"12.50"}},' +
        '{"op":"U","schema":"public","table":"orders","txid":"7302","old":{"id":"1"},"new":{"id":"1","note":null,"total":"13.00"}},' +
        '{"op":"D","schema":"public","table":"orders","txid":"7303","old":{"id":"1"}},' +
        '{"op":"T","schema":"public","table":"orders","txid":"7304"}],"final":true,"count":4}',
    );
    expect(messages[0]).toMatchObject({ batchId: '412', part: 0, final: true, changes: 4 });
  });

  it('encodes an empty batch as one final message with no changes', async () => {
    const messages = await encode([]);
    expect(messages).toHaveLength(1);
    expect(parseEnvelope(messages[0]?.body)).toMatchObject({ changes: [], final: true, count: 0 });
  });

  it('splits a batch into parts, each within the limit, that reassemble to the same changes', async () => {
    const changes: Change[] = Array.from({ length: 200 }, (_, i) => ({ op: 'I' as const, schema: 'public', table: 'items', txid: '9', new: { id: String(i), label: `item ${i} ✓` } }));

    const messages = await encode(changes, 1024);

    expect(messages.length).toBeGreaterThan(5);
    const envelopes = checkMessages(messages, 1024);
    expect(envelopes.flatMap((e) => e.changes).every((c) => c.op !== '+')).toBe(true);
    expect(mergeChangeItems(envelopes.flatMap((e) => e.changes))).toEqual(changes);
  });

  it('splits a value larger than a message into fragments that concatenate back', async () => {
    const big = '😀"\\\n'.repeat(3000) + 'x'.repeat(5000);
    const changes: Change[] = [
      { op: 'I', schema: 'public', table: 'docs', txid: '5', new: { id: '1', body: big, tail: 'end' } },
      { op: 'I', schema: 'public', table: 'docs', txid: '5', new: { id: '2', body: 'small' } },
    ];

    const messages = await encode(changes, 2048);

    const envelopes = checkMessages(messages, 2048);
    expect(messages.length).toBeGreaterThan(10);
    expect(envelopes[1]?.changes[0]?.op).toBe('+');
    expect(mergeChangeItems(envelopes.flatMap((e) => e.changes))).toEqual(changes);
    // Messages before the last are filled close to the limit.
    for (const m of messages.slice(0, -2)) expect(m.bytes).toBeGreaterThan(2048 - 64);
  });

  it('is deterministic whatever the pieces the values arrive in', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(anyChange(300), { maxLength: 12 }),
        fc.integer({ min: 1024, max: 3000 }),
        fc.array(fc.nat(400), { maxLength: 8 }),
        async (changes, maxBytes, cutPoints) => {
          const whole = await encode(changes, maxBytes);
          const cut = await encode(changes, maxBytes, () => cutPoints);
          const single = await encode(changes, maxBytes, (text) => Array.from({ length: text.length }, (_, i) => i));
          expect(cut.map((m) => m.body)).toEqual(whole.map((m) => m.body));
          expect(single.map((m) => m.body)).toEqual(whole.map((m) => m.body));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('keeps every message within the limit and loses nothing, for any changes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(anyChange(2500), { maxLength: 10 }), fc.integer({ min: 1024, max: 4096 }), async (changes, maxBytes) => {
        const messages = await encode(changes, maxBytes);
        const envelopes = checkMessages(messages, maxBytes);
        expect(envelopes.at(-1)?.count).toBe(changes.length);
        expect(mergeChangeItems(envelopes.flatMap((e) => e.changes))).toEqual(changes);
      }),
      { numRuns: 200 },
    );
  });

  it('never cuts a surrogate pair, even when the pieces do', async () => {
    const value = '😀'.repeat(2000);
    const changes: Change[] = [{ op: 'I', schema: 's', table: 't', txid: '1', new: { v: value } }];
    const messages = await encode(changes, 1024, (text) => Array.from({ length: text.length }, (_, i) => i));
    for (const m of messages) expect(m.body).not.toMatch(/\\ud[89ab]/i);
    expect(mergeChangeItems(checkMessages(messages, 1024).flatMap((e) => e.changes))).toEqual(changes);
  });

  it('refuses bad arguments with a message naming the value and what is allowed', async () => {
    await expect(encode([], 100)).rejects.toThrow(InvalidArgumentError);
    await expect(encode([], 100)).rejects.toThrow(/maxMessageBytes is 100; allowed: an integer from 1024/);
    await expect(encode([], undefined, undefined, { ...META, batchId: '12a' })).rejects.toThrow(/batchId is "12a"; allowed: a positive decimal bigint/);
    await expect(encode([], undefined, undefined, { ...META, prevBatchId: '412' })).rejects.toThrow(/prevBatchId is "412"/);
  });

  it('refuses a stream whose change count differs from next_batch', async () => {
    const changes: Change[] = [{ op: 'T', schema: 's', table: 't', txid: '1' }];
    await expect(encode(changes, undefined, undefined, { ...META, eventCount: '2' })).rejects.toThrow(InvalidStreamError);
    await expect(encode(changes, undefined, undefined, { ...META, eventCount: '1' })).resolves.toHaveLength(1);
  });

  it('refuses token streams that break the batch_values order', async () => {
    const stream = async (tokens: Parameters<typeof tokensOf>[0], mutate: (t: ReturnType<typeof tokensOf>) => ReturnType<typeof tokensOf>) =>
      collect(encodeBatch(META, mutate(tokensOf(tokens))));
    const update: Change = { op: 'U', schema: 's', table: 't', txid: '1', old: { id: '1' }, new: { id: '1', v: 'x' } };
    await expect(stream([update], (t) => [t[0]!, t[2]!, t[1]!, t[3]!])).rejects.toThrow(/image old of a U change is out of order/);
    await expect(stream([update], (t) => t.slice(1))).rejects.toThrow(/before any change/);
    await expect(stream([update], (t) => t.slice(0, 2))).rejects.toThrow(/no new image/);
    await expect(stream([{ op: 'D', schema: 's', table: 't', txid: '1', old: { id: '1' } }], (t) => [t[0]!, { ...(t[1] as ValueToken), image: 'new' }])).rejects.toThrow(
      /a D change has a new image/,
    );
  });

  it('fittingPrefix measures escaped UTF-8 exactly', () => {
    fc.assert(
      fc.property(anyText(60), fc.nat(200), (text, room) => {
        const { length, bytes } = fittingPrefix(text, room);
        const escaped = sqsSafeJson(text.slice(0, length)).slice(1, -1);
        expect(Buffer.byteLength(escaped)).toBe(bytes);
        expect(bytes).toBeLessThanOrEqual(room);
        if (length < text.length) {
          const next = fittingPrefix(text, room + 0);
          expect(next.length).toBe(length);
          const one = text.codePointAt(length) as number > 0xffff ? 2 : 1;
          expect(Buffer.byteLength(sqsSafeJson(text.slice(0, length + one)).slice(1, -1))).toBeGreaterThan(room);
        }
      }),
    );
  });
});
