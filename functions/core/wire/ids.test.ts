import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bodyDigest } from './digest.ts';
import { isValidFifoId, MAX_ID_LENGTH, messageDeduplicationId, messageGroupId } from './ids.ts';

const anySource = fc.string({ unit: 'binary', minLength: 1, maxLength: 300 });
const anyBatch = fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }).map(String);
const anyPart = fc.integer({ min: 0, max: 2 ** 31 - 1 });
const anyDigest = fc.constantFrom(bodyDigest('a'), bodyDigest('b'));

describe('FIFO ids', () => {
  it('always fit AWS length and character rules, for any source id', () => {
    fc.assert(
      fc.property(anySource, anyBatch, anyPart, anyDigest, (source, batch, part, digest) => {
        const group = messageGroupId(source);
        const dedup = messageDeduplicationId(source, batch, part, digest);
        expect(group.length).toBeLessThanOrEqual(MAX_ID_LENGTH);
        expect(dedup.length).toBeLessThanOrEqual(MAX_ID_LENGTH);
        expect(isValidFifoId(group)).toBe(true);
        expect(isValidFifoId(dedup)).toBe(true);
      }),
    );
  });

  it('are deterministic', () => {
    fc.assert(
      fc.property(anySource, anyBatch, anyPart, anyDigest, (source, batch, part, digest) => {
        expect(messageGroupId(source)).toBe(messageGroupId(source));
        expect(messageDeduplicationId(source, batch, part, digest)).toBe(messageDeduplicationId(source, batch, part, digest));
      }),
    );
  });

  it('give one group per source and distinct dedup ids per (source, batch, part, content)', () => {
    fc.assert(
      fc.property(fc.tuple(anySource, anyBatch, anyPart, anyDigest), fc.tuple(anySource, anyBatch, anyPart, anyDigest), ([s1, b1, p1, d1], [s2, b2, p2, d2]) => {
        expect(messageGroupId(s1) === messageGroupId(s2)).toBe(s1 === s2);
        const same = s1 === s2 && b1 === b2 && p1 === p2 && d1 === d2;
        expect(messageDeduplicationId(s1, b1, p1, d1) === messageDeduplicationId(s2, b2, p2, d2)).toBe(same);
      }),
    );
  });

  it('do not collide when fields shift between source, batch and part', () => {
    const d = bodyDigest('body');
    expect(messageDeduplicationId('a1', '2', 3, d)).not.toBe(messageDeduplicationId('a', '12', 3, d));
    expect(messageDeduplicationId('a', '1', 23, d)).not.toBe(messageDeduplicationId('a', '12', 3, d));
  });

  it('differ for two encodings of the same part of the same batch', () => {
    expect(messageDeduplicationId('s', '7', 1, bodyDigest('{"part":1,"a":1}'))).not.toBe(messageDeduplicationId('s', '7', 1, bodyDigest('{"part":1,"b":2}')));
  });

  it('isValidFifoId rejects what AWS rejects', () => {
    expect(isValidFifoId('')).toBe(false);
    expect(isValidFifoId('a'.repeat(129))).toBe(false);
    expect(isValidFifoId('has space')).toBe(false);
    expect(isValidFifoId('é')).toBe(false);
    expect(isValidFifoId('a'.repeat(128))).toBe(true);
    expect(isValidFifoId('!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~')).toBe(true);
  });
});
