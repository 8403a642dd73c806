/**
 * SNS/SQS FIFO message group and deduplication ids.
 *
 * AWS allows up to 128 characters from `a-z A-Z 0-9` and the punctuation
 * ``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~`` for both
 * (https://docs.aws.amazon.com/sns/latest/api/API_PublishBatchRequestEntry.html, MessageGroupId and
 * MessageDeduplicationId). The ids here are 64 hex digits of SHA-256 (the group id with a short
 * prefix), so any source id fits:
 *
 * - group id: one group per source, so SQS FIFO delivers a source's messages in total order.
 * - deduplication id: one per (source, batch, part, content of the part): a re-published batch
 *   (same encoding, same parts) is dropped by SNS within its five-minute window, and the replica's
 *   recorded position catches anything later; a part with other content (another encoding of the
 *   batch) is never dropped in place of the part it replaces, so a replica always receives whole
 *   encodings (part 0 of another encoding starts the batch over there).
 */
import { createHash } from 'node:crypto';

/** Longest group or deduplication id AWS accepts. */
export const MAX_ID_LENGTH = 128;
/** The characters AWS accepts in group and deduplication ids. */
const ID_PATTERN = /^[a-zA-Z0-9!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]{1,128}$/;

const GROUP_PREFIX = 'pgfanout-';

function sha256Hex(...parts: readonly string[]): string {
  const hash = createHash('sha256');
  for (const part of parts) {
    // Length-prefix each part so that ("ab","c") and ("a","bc") differ.
    hash.update(`${Buffer.byteLength(part)}:`);
    hash.update(part);
  }
  return hash.digest('hex');
}

/** The FIFO message group of a source: every message of one source shares it. */
export function messageGroupId(sourceId: string): string {
  return GROUP_PREFIX + sha256Hex('group', sourceId);
}

/**
 * The FIFO deduplication id of one part of one batch of one source, with `bodyDigest` the digest
 * of the part's body (`bodyDigest()` of `digest.ts`): equal only for the same bytes at the same place.
 */
export function messageDeduplicationId(sourceId: string, batchId: string, part: number, bodyDigest: string): string {
  return sha256Hex('dedup', sourceId, batchId, String(part), bodyDigest);
}

/** True when `id` satisfies AWS's rules for group and deduplication ids. */
export function isValidFifoId(id: string): boolean {
  return ID_PATTERN.test(id);
}
