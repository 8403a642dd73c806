/**
 * The digest that chains the parts of a multi-part batch: each part after the first names
 * the digest of the body before it (`after`), so a replica can tell two encodings of one
 * batch apart. The publisher computes it when encoding; the applier when checking.
 */
import { createHash } from 'node:crypto';
import { DIGEST_HEX_LENGTH } from './envelope.ts';

/** The first {@link DIGEST_HEX_LENGTH} hex digits of the SHA-256 of a body: a part's `after`. */
export function bodyDigest(body: string): string {
  return createHash('sha256').update(body).digest('hex').slice(0, DIGEST_HEX_LENGTH);
}
