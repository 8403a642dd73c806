/**
 * Digests SQS returns with every message (MD5 of the body, of the message attributes and
 * of the system attributes) and the SHA-256 that SNS and SQS use for content-based
 * deduplication.
 *
 * The attribute digest follows the algorithm of the SQS Developer Guide ("Calculating the
 * MD5 message digest for message attributes"): attributes sorted by name; for each, the
 * name, the data type, a one-byte transport type (1 = string value, 2 = binary value) and
 * the value, every variable-length part preceded by its length as a 4-byte big-endian
 * integer; MD5 over the concatenation, in lowercase hex.
 */
import { createHash } from 'node:crypto';

/** A message attribute value as SQS stores it: a data type and exactly one value. */
export interface AttributeValue {
  /** `String`, `Number` or `Binary`, optionally followed by `.label`. */
  readonly dataType: string;
  readonly stringValue?: string;
  readonly binaryValue?: Buffer;
}

/** Lowercase hex MD5 of the UTF-8 bytes of `text` (`MD5OfBody`, `MD5OfMessageBody`). */
export function md5OfText(text: string): string {
  return createHash('md5').update(text, 'utf8').digest('hex');
}

/** Lowercase hex SHA-256 of the UTF-8 bytes of `text` (content-based deduplication id). */
export function sha256OfText(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

function lengthPrefixed(bytes: Buffer): Buffer[] {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(bytes.length, 0);
  return [length, bytes];
}

/**
 * `MD5OfMessageAttributes` of `attributes`, or undefined when there are none (SQS omits
 * the field then).
 */
export function md5OfAttributes(attributes: ReadonlyMap<string, AttributeValue>): string | undefined {
  if (attributes.size === 0) return undefined;
  const names = [...attributes.keys()].sort();
  const hash = createHash('md5');
  for (const name of names) {
    const value = attributes.get(name) as AttributeValue;
    const parts: Buffer[] = [...lengthPrefixed(Buffer.from(name, 'utf8')), ...lengthPrefixed(Buffer.from(value.dataType, 'utf8'))];
    if (value.binaryValue !== undefined) {
      parts.push(Buffer.from([2]), ...lengthPrefixed(value.binaryValue));
    } else {
      parts.push(Buffer.from([1]), ...lengthPrefixed(Buffer.from(value.stringValue ?? '', 'utf8')));
    }
    for (const part of parts) hash.update(part);
  }
  return hash.digest('hex');
}
