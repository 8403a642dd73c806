/**
 * Digests SQS returns. Vectors: MD5OfMessageAttributes values for the algorithm of the
 * SQS Developer Guide ("Calculating the MD5 message digest for message attributes"), as
 * published with the `aws-md5-of-message-attributes` npm package's documentation.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type AttributeValue, md5OfAttributes, md5OfText, sha256OfText } from './digest.ts';

const stringAttribute: [string, AttributeValue] = ['attribName1', { dataType: 'String', stringValue: 'attribValue 1' }];
const customNumber: [string, AttributeValue] = ['customNumberTypeAttrib', { dataType: 'Number.float', stringValue: '4563442423554324324264524243.32543234' }];
const binary: [string, AttributeValue] = ['binaryAttribute', { dataType: 'Binary', binaryValue: Buffer.from('Hello binary world!') }];

describe('MD5OfMessageAttributes', () => {
  it('matches the published digest of one String attribute', () => {
    expect(md5OfAttributes(new Map([stringAttribute]))).toBe('19e27d4e946b072f3f58da80d94fd778');
  });

  it('matches the published digest of a Number attribute with a custom type label', () => {
    expect(md5OfAttributes(new Map([customNumber]))).toBe('9fe1b90bbd9965bdf77bac517c7d2495');
  });

  it('matches the published digest of a Binary attribute (transport type 2)', () => {
    expect(md5OfAttributes(new Map([binary]))).toBe('31a92b15d92f8db860eda32aceb656c3');
  });

  it('matches the published digest of the three together', () => {
    expect(md5OfAttributes(new Map([stringAttribute, customNumber, binary]))).toBe('c932db14a896c663f83c260297d594ff');
  });

  it('is undefined without attributes (SQS then omits MD5OfMessageAttributes)', () => {
    expect(md5OfAttributes(new Map())).toBeUndefined();
  });

  it('does not depend on the order attributes were given in ("sort all message attributes by name")', () => {
    const attribute = fc.record({ name: fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/), value: fc.string({ minLength: 1 }) });
    fc.assert(
      fc.property(fc.uniqueArray(attribute, { selector: (a) => a.name, minLength: 1, maxLength: 10 }), (list) => {
        const entries = list.map((a): [string, AttributeValue] => [a.name, { dataType: 'String', stringValue: a.value }]);
        expect(md5OfAttributes(new Map(entries))).toBe(md5OfAttributes(new Map([...entries].reverse())));
      }),
    );
  });
});

describe('body digests', () => {
  it('MD5 of the UTF-8 bytes (RFC 1321 test vector "abc")', () => {
    expect(md5OfText('abc')).toBe('900150983cd24fb0d6963f7d28e17f72');
  });

  it('SHA-256 of the UTF-8 bytes (FIPS 180-2 test vector "abc")', () => {
    expect(sha256OfText('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });
});
