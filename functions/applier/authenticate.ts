/**
 * The applier's check that a record was signed by the publisher: before anything of it is read
 * as a change, its body must carry a signature (the `pgfanout-signature` message attribute) made
 * with a key the applier accepts (named by `pgfanout-key-id`: the signing secret's AWSCURRENT or
 * AWSPREVIOUS version). Anything else is refused with a permanent error.
 */
import type { SQSRecord } from 'aws-lambda';
import type { SigningKeys } from '#core/signing-keys.ts';
import { keyIdProblem, SIGNATURE_ATTRIBUTES, signatureMatches, UnauthenticatedMessageError } from '#core/wire';

/** What a record claims to be, read from its unverified body, for the error. */
function claimOf(record: SQSRecord): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(record.body);
  } catch {
    parsed = undefined;
  }
  const m = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  const text = (v: unknown) => (typeof v === 'string' || typeof v === 'number' ? JSON.stringify(v).slice(0, 80) : 'unknown');
  const claim = m.batch !== undefined || m.source !== undefined ? ` (claiming batch ${text(m.batch)}, part ${text(m.part)}, source ${text(m.source)})` : ' (not a pgfanout message)';
  return `message ${record.messageId}${claim}`;
}

/**
 * Resolves when `record` is signed with a key of `keys`; otherwise throws an
 * {@link UnauthenticatedMessageError} naming the message, what it claims to be and its key id.
 * When the record names a key id that is not among the cached keys, they are read once more (a
 * rotation the cache has not seen). Errors reading the keys pass through (transient).
 */
export async function authenticateRecord(record: SQSRecord, keys: SigningKeys): Promise<void> {
  const attributes = record.messageAttributes ?? {};
  const keyId = attributes[SIGNATURE_ATTRIBUTES.keyId]?.stringValue;
  const signature = attributes[SIGNATURE_ATTRIBUTES.signature]?.stringValue;
  const refuse = (reason: string) => new UnauthenticatedMessageError(claimOf(record), keyId, reason);
  if (keyId === undefined && signature === undefined) {
    throw refuse(
      `it is not signed (no ${SIGNATURE_ATTRIBUTES.keyId} and ${SIGNATURE_ATTRIBUTES.signature} message attributes): only the publisher, which holds the signing key, sends messages a replica applies`,
    );
  }
  if (keyId === undefined || keyIdProblem(keyId) !== undefined) throw refuse(`its ${SIGNATURE_ATTRIBUTES.keyId} attribute is not a key id (${keyIdProblem(keyId) ?? ''})`);
  if (signature === undefined) throw refuse(`it has no ${SIGNATURE_ATTRIBUTES.signature} attribute`);
  let accepted = await keys.accepted();
  let key = accepted.find((k) => k.id === keyId);
  if (!key) {
    accepted = await keys.accepted({ refresh: true });
    key = accepted.find((k) => k.id === keyId);
  }
  if (!key) {
    throw refuse(
      `it is signed with a key this replica does not accept: the signing secret's AWSCURRENT version is ${JSON.stringify(accepted[0]?.id)}` +
        (accepted[1] ? ` and its AWSPREVIOUS version ${JSON.stringify(accepted[1].id)}` : ' and it has no AWSPREVIOUS version') +
        ' (a forged key id, or a message signed two rotations ago)',
    );
  }
  if (!signatureMatches(record.body, key.key, signature)) throw refuse('its signature does not match its body: the message was forged or altered after it was signed');
}
