/**
 * Rules shared by SNS and SQS for message bodies and message attributes, and the byte
 * counting both services use for their size limits.
 *
 * Sizes are counted in bytes as AWS documents: the UTF-8 bytes of the body plus, for
 * every message attribute, its name, its data type and its value ("All parts of the
 * message attribute, including Name, Type, and Value, are part of the message size
 * restriction" — SQS `MessageAttributeValue`; SNS validates "the combined size of the
 * message body and message attributes" — SNS `Publish`).
 */
import type { AttributeValue } from './digest.ts';

/**
 * The characters SQS accepts in a body and in string attribute values (SQS `SendMessage`):
 * `#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF`.
 * Matches the first character outside that set (a lone surrogate included).
 */
const DISALLOWED_CHARACTER = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;

/** The first character of `text` that SQS does not accept, as `#xNN`, or undefined. */
export function firstDisallowedCharacter(text: string): string | undefined {
  const match = DISALLOWED_CHARACTER.exec(text);
  if (!match) return undefined;
  return `#x${(match[0].codePointAt(0) ?? 0).toString(16).toUpperCase()}`;
}

/** UTF-8 byte length of `text`. */
export function utf8Bytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** Bytes one attribute counts towards the message size limit: name + data type + value. */
export function attributeBytes(name: string, value: AttributeValue): number {
  const valueBytes = value.binaryValue !== undefined ? value.binaryValue.length : utf8Bytes(value.stringValue ?? '');
  return utf8Bytes(name) + utf8Bytes(value.dataType) + valueBytes;
}

/** Bytes a message counts towards the size limit: body plus every attribute. */
export function messageBytes(body: string, attributes: ReadonlyMap<string, AttributeValue>): number {
  let total = utf8Bytes(body);
  for (const [name, value] of attributes) total += attributeBytes(name, value);
  return total;
}

/**
 * Why `name` is not a valid message attribute name, or undefined when it is (SQS
 * Developer Guide, "Message attribute components"; the same rules apply to SNS): letters,
 * digits, `_`, `-` and `.`; at most 256 characters; not starting with `AWS.` or
 * `Amazon.` in any casing; no leading, trailing or doubled period.
 */
export function attributeNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'the name must not be empty';
  if (name.length > 256) return `the name is ${name.length} characters long; at most 256 are allowed`;
  if (!/^[A-Za-z0-9_.-]+$/.test(name)) return 'the name may contain only letters, digits, underscores (_), hyphens (-) and periods (.)';
  if (/^(aws|amazon)\./i.test(name)) return 'names starting with "AWS." or "Amazon." are reserved';
  if (name.startsWith('.') || name.endsWith('.')) return 'the name must not start or end with a period';
  if (name.includes('..')) return 'the name must not contain two periods in a row';
  return undefined;
}

/**
 * Whether `text` is a number SQS and SNS accept in a `Number` attribute: an optional
 * sign, digits with an optional fraction, an optional exponent.
 */
export function isNumberText(text: string): boolean {
  return /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/.test(text);
}
