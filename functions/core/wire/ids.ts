/**
 * SNS/SQS FIFO message group and deduplication ids.
 *
 * AWS allows 1–128 characters from `a-z A-Z 0-9` and the punctuation
 * ``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~`` for both. The ids here are hashes, so any source id fits:
 *
 * - group id: one group per source, so SQS FIFO delivers a source's messages in total order.
 * - deduplication id: one per (source, batch, part), so a re-published batch (same encoding,
 *   same parts) is dropped by SNS within its five-minute window; the replica's recorded position
 *   catches anything later.
 */
import { createHash } from 'node:crypto';

/** Longest group or deduplication id AWS accepts. */
export const MAX_ID_LENGTH = 128;
/** The characters AWS accepts in group and deduplication ids. */
export const ID_PATTERN = /^[a-zA-Z0-9!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]{1,128}$/;

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

/** The FIFO deduplication id of one part of one batch of one source. */
export function messageDeduplicationId(sourceId: string, batchId: string, part: number): string {
  return sha256Hex('dedup', sourceId, batchId, String(part));
}

/** True when `id` satisfies AWS's rules for group and deduplication ids. */
export function isValidFifoId(id: string): boolean {
  return ID_PATTERN.test(id);
}
