import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isValidFifoId, MAX_ID_LENGTH, messageDeduplicationId, messageGroupId } from './ids.ts';

const anySource = fc.string({ unit: 'binary', minLength: 1, maxLength: 300 });
const anyBatch = fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }).map(String);
const anyPart = fc.integer({ min: 0, max: 2 ** 31 - 1 });

describe('FIFO ids', () => {
  it('always fit AWS length and character rules, for any source id', () => {
    fc.assert(
      fc.property(anySource, anyBatch, anyPart, (source, batch, part) => {
        const group = messageGroupId(source);
        const dedup = messageDeduplicationId(source, batch, part);
        expect(group.length).toBeLessThanOrEqual(MAX_ID_LENGTH);
        expect(dedup.length).toBeLessThanOrEqual(MAX_ID_LENGTH);
        expect(isValidFifoId(group)).toBe(true);
        expect(isValidFifoId(dedup)).toBe(true);
      }),
    );
  });

  it('are deterministic', () => {
    fc.assert(
      fc.property(anySource, anyBatch, anyPart, (source, batch, part) => {
        expect(messageGroupId(source)).toBe(messageGroupId(source));
        expect(messageDeduplicationId(source, batch, part)).toBe(messageDeduplicationId(source, batch, part));
      }),
    );
  });

  it('give one group per source and distinct dedup ids per (source, batch, part)', () => {
    fc.assert(
      fc.property(fc.tuple(anySource, anyBatch, anyPart), fc.tuple(anySource, anyBatch, anyPart), ([s1, b1, p1], [s2, b2, p2]) => {
        expect(messageGroupId(s1) === messageGroupId(s2)).toBe(s1 === s2);
        const same = s1 === s2 && b1 === b2 && p1 === p2;
        expect(messageDeduplicationId(s1, b1, p1) === messageDeduplicationId(s2, b2, p2)).toBe(same);
      }),
    );
  });

  it('do not collide when fields shift between source, batch and part', () => {
    expect(messageDeduplicationId('a1', '2', 3)).not.toBe(messageDeduplicationId('a', '12', 3));
    expect(messageDeduplicationId('a', '1', 23)).not.toBe(messageDeduplicationId('a', '12', 3));
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
