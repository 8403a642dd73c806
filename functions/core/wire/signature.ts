/**
 * Message authentication: the publisher signs every message it publishes with HMAC-SHA256 over
 * the exact message body, and an applier applies only a message whose signature it can verify
 * with a key it accepts. Anyone who can send into a replica queue but does not hold the key can
 * make the replica stop (the message is refused and stays at the head of its group), never
 * make it apply anything.
 *
 * The signature and the key's id travel as two SQS message attributes, beside the body rather
 * than inside it, so the body (its part digest, its deduplication id) is the same whichever key
 * signs it. SNS hands message attributes on to an SQS subscription with raw message delivery as
 * SQS message attributes (at most 10 of them,
 * https://docs.aws.amazon.com/sns/latest/dg/sns-message-attributes.html), and the subscription's
 * SQS message body is then the published message, unchanged
 * (https://docs.aws.amazon.com/sns/latest/dg/sns-large-payload-raw-message-delivery.html): what
 * the applier acts on is exactly the body the publisher signed.
 *
 * Attributes count towards the message size, name, type and value alike
 * (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_MessageAttributeValue.html),
 * so a signed message's body is at most {@link SIGNATURE_ATTRIBUTES_MAX_BYTES} smaller than the
 * topic's limit.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Names of the message attributes that carry a message's authentication. */
export const SIGNATURE_ATTRIBUTES = {
  /** The id of the key that signed the message (the signing secret's VersionId in Secrets Manager). */
  keyId: 'pgfanout-key-id',
  /** HMAC-SHA256 of the message body (its UTF-8 bytes) with that key, as 64 lowercase hex digits. */
  signature: 'pgfanout-signature',
} as const;

/** The data type of both attributes. */
const SIGNATURE_ATTRIBUTE_TYPE = 'String';

/** Length of a signature in hex digits. */
const SIGNATURE_HEX_LENGTH = 64;

/**
 * Longest key id: a Secrets Manager VersionId is 32 to 64 characters
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html).
 */
const MAX_KEY_ID_LENGTH = 64;

/** Shortest signing key accepted, in bytes: HMAC-SHA256's output length (RFC 2104, section 3). */
export const MIN_SIGNING_KEY_BYTES = 32;

/** Most bytes the two attributes add to a message (names, types and values, as SNS and SQS count them). */
export const SIGNATURE_ATTRIBUTES_MAX_BYTES =
  SIGNATURE_ATTRIBUTES.keyId.length + SIGNATURE_ATTRIBUTE_TYPE.length + MAX_KEY_ID_LENGTH +
  SIGNATURE_ATTRIBUTES.signature.length + SIGNATURE_ATTRIBUTE_TYPE.length + SIGNATURE_HEX_LENGTH;

/** A signing key: its id and its bytes. */
export interface SigningKey {
  readonly id: string;
  readonly key: Buffer;
}

const KEY_ID = /^[\x21-\x7e]+$/;

/** What is wrong with a key id, or undefined when it can name a key. */
export function keyIdProblem(id: unknown): string | undefined {
  if (typeof id !== 'string' || id.length === 0 || id.length > MAX_KEY_ID_LENGTH || !KEY_ID.test(id)) {
    return `a key id is 1 to ${MAX_KEY_ID_LENGTH} printable ASCII characters without spaces`;
  }
  return undefined;
}

/** The signature of `body` with `key`: HMAC-SHA256 over the body's UTF-8 bytes, lowercase hex. */
export function signBody(body: string, key: Buffer): string {
  return createHmac('sha256', key).update(body, 'utf8').digest('hex');
}

/** True when `signature` is the signature of `body` with `key` (compared in constant time). */
export function signatureMatches(body: string, key: Buffer, signature: string): boolean {
  if (signature.length !== SIGNATURE_HEX_LENGTH || !/^[0-9a-f]+$/.test(signature)) return false;
  return timingSafeEqual(Buffer.from(signBody(body, key), 'hex'), Buffer.from(signature, 'hex'));
}

/** The message attributes (SNS and SQS shape) that sign `body` with `key`. */
export function signatureAttributes(body: string, key: SigningKey): Record<string, { DataType: string; StringValue: string }> {
  return {
    [SIGNATURE_ATTRIBUTES.keyId]: { DataType: SIGNATURE_ATTRIBUTE_TYPE, StringValue: key.id },
    [SIGNATURE_ATTRIBUTES.signature]: { DataType: SIGNATURE_ATTRIBUTE_TYPE, StringValue: signBody(body, key.key) },
  };
}

/** Bytes the signature attributes of a message signed with the key `keyId` add to it. */
export function signatureAttributeBytes(keyId: string): number {
  return (
    SIGNATURE_ATTRIBUTES.keyId.length + SIGNATURE_ATTRIBUTE_TYPE.length + Buffer.byteLength(keyId) +
    SIGNATURE_ATTRIBUTES.signature.length + SIGNATURE_ATTRIBUTE_TYPE.length + SIGNATURE_HEX_LENGTH
  );
}
