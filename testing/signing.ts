/**
 * Message signing for tests: fixed keys, a key source that holds them, and the message attributes
 * that sign a body, for tests that build records or send messages by hand.
 */
import { randomBytes } from 'node:crypto';
import type { SQSMessageAttributes } from 'aws-lambda';
import type { SigningKeys } from '#core/signing-keys.ts';
import { signatureAttributes, type SigningKey } from '#core/wire';

/** A signing key of the given id with random bytes. */
export function testSigningKey(id = `test-key-${randomBytes(12).toString('hex')}`): SigningKey {
  return { id, key: randomBytes(32) };
}

/** The key the fixed key source signs with unless told otherwise. */
export const TEST_SIGNING_KEY: SigningKey = testSigningKey('test-key-00000000000000000000000001');

/**
 * A key source holding `current` (and `previous`); `rotate` makes a new key current, as
 * PutSecretValue does; counts how often the keys were read again.
 */
export class FixedSigningKeys implements SigningKeys {
  current_: SigningKey;
  previous: SigningKey | undefined;
  refreshes = 0;
  constructor(current: SigningKey = TEST_SIGNING_KEY, previous?: SigningKey) {
    this.current_ = current;
    this.previous = previous;
  }
  async current(): Promise<SigningKey> {
    return this.current_;
  }
  async accepted(options: { readonly refresh?: boolean } = {}): Promise<readonly SigningKey[]> {
    if (options.refresh) this.refreshes += 1;
    return this.previous ? [this.current_, this.previous] : [this.current_];
  }
  rotate(next: SigningKey = testSigningKey()): SigningKey {
    this.previous = this.current_;
    this.current_ = next;
    return next;
  }
}

/** The `messageAttributes` of a Lambda SQS record signed with `key`. */
export function signedRecordAttributes(body: string, key: SigningKey = TEST_SIGNING_KEY): SQSMessageAttributes {
  return Object.fromEntries(
    Object.entries(signatureAttributes(body, key)).map(([name, a]) => [name, { dataType: a.DataType, stringValue: a.StringValue, stringListValues: [], binaryListValues: [] }]),
  );
}
