/**
 * The replica's position per source: what a message means at the recorded position, and checking
 * a message against what the replica applied before, as pure decisions over what protocol.ts reads
 * (the position locked by `pgfanout.replica_lock`, the record of an applied batch):
 * - batches are consecutive (the source's `pgfanout.batch` holds `prev_batch_id = batch_id - 1`),
 *   so a message whose batch is not its `prev` + 1 is refused: nothing can move the position
 *   past batches that were never sent;
 * - a message at or below the position is dropped as a duplicate only after it is checked against
 *   the applied batch's record in `pgfanout.replica_applied_batch` (kept for the last
 *   1000 batches, `pgfanout.replica_advance`): the same origin, or without origins the same part
 *   digest; anything else is a source that went back in time, or a forged message, and stops the
 *   replica. A batch with no record (older, copied by a bootstrap, or skipped) cannot be checked
 *   and is dropped as before;
 * - a new batch of the same source system and timeline must not come from a lower WAL position
 *   than the batch applied last.
 */
import { lsnValue, type BatchOrigin, type Envelope } from '../wire/envelope.ts';
import { NotBootstrappedError, UntrustedMessageError } from '../wire/errors.ts';
import type { AppliedBatch, LockedPosition, PositionRow } from './protocol.ts';

/** What to do with a message, given the recorded position. */
export type Decision =
  | { readonly kind: 'duplicate' }
  | { readonly kind: 'gap'; readonly expected: string }
  /** The message cannot be genuine (a batch that does not follow its own `prev`). */
  | { readonly kind: 'refuse'; readonly reason: string }
  /** At or below the applied batch: a duplicate once {@link checkDuplicate} agrees. */
  | { readonly kind: 'applied-before' }
  | { readonly kind: 'stage' | 'apply'; readonly restart: boolean };

export function positionText(batch: bigint | string, part: number | null): string {
  return part === null ? `batch ${batch}` : `batch ${batch} part ${part}`;
}

/**
 * Decides, purely, what a message means at a position. `stagedFirstDigest` is the digest of the
 * staged part 0 (needed only when part 0 of the batch being staged arrives again).
 */
export function decide(position: PositionRow | undefined, message: Pick<Envelope, 'batch' | 'prev' | 'part' | 'final' | 'after'>, digest: string, stagedFirstDigest?: string): Decision {
  const batch = BigInt(message.batch);
  const applied = position?.appliedBatchId ?? 0n;
  const go = (restart: boolean): Decision => ({ kind: message.final ? 'apply' : 'stage', restart });
  if (batch !== BigInt(message.prev) + 1n) {
    return { kind: 'refuse', reason: `batch ${message.batch} names batch ${message.prev} as its predecessor, but a source's batches are consecutive (prev = batch - 1)` };
  }
  if (batch <= applied) return { kind: 'applied-before' };
  if (position !== undefined && position.part !== null) {
    const staging = position.batchId;
    const staged = position.part;
    if (batch !== staging) return { kind: 'gap', expected: `${positionText(staging, staged + 1)} (batch ${staging} is being staged)` };
    if (message.part === 0) return digest === stagedFirstDigest ? { kind: 'duplicate' } : go(true);
    if (message.part <= staged) return { kind: 'duplicate' };
    if (message.part > staged + 1) return { kind: 'gap', expected: positionText(staging, staged + 1) };
    if (message.after !== position.partDigest) {
      return { kind: 'gap', expected: `${positionText(staging, staged + 1)} following the staged part ${staged} (digest ${position.partDigest}); this part follows digest ${message.after}, another encoding of the batch` };
    }
    return go(false);
  }
  if (BigInt(message.prev) !== applied) return { kind: 'gap', expected: `the batch after batch ${applied}` };
  if (message.part !== 0) return { kind: 'gap', expected: positionText(batch, 0) };
  return go(false);
}

/** An origin as an error message names it. */
function originText(origin: BatchOrigin | undefined): string {
  return origin === undefined ? 'no origin' : `system ${origin.system}, timeline ${origin.timeline}, LSN ${origin.lsn}`;
}

/**
 * Checks a message of a batch at or below the position against the replica's record of that batch
 * (`record`, from protocol.ts's `appliedBatch`). Returns true when it is verified as a duplicate,
 * false when the replica has no record of the batch (it cannot tell, and drops it as before);
 * throws {@link UntrustedMessageError} when it differs from what was applied.
 */
export function checkDuplicate(record: AppliedBatch | undefined, message: Pick<Envelope, 'source' | 'batch' | 'part' | 'origin'>, digest: string): boolean {
  if (record === undefined) return false;
  const at = { batchId: message.batch, part: message.part };
  const applied = record.origin;
  if (applied !== undefined && message.origin !== undefined) {
    if (applied.system === message.origin.system && applied.timeline === message.origin.timeline && lsnValue(applied.lsn) === lsnValue(message.origin.lsn)) return true;
    throw new UntrustedMessageError(
      message.source,
      `batch ${message.batch} was applied from ${originText(applied)}, and arrives again from ${originText(message.origin)}: the source went back in time ` +
        '(a crash that lost committed batches, a failover to a standby that had not received them, or a restored backup) and reuses batch ids; ' +
        'the replica holds changes the source no longer has: rebuild it from the source (pgfanout bootstrap)',
      at,
    );
  }
  const expected = record.partDigests[message.part];
  if (expected === digest) return true;
  throw new UntrustedMessageError(
    message.source,
    expected === undefined
      ? `batch ${message.batch} was applied in ${record.partDigests.length} part(s), and a part ${message.part} of it arrives: another batch under the same id (a source that went back in time, or a forged message)`
      : `batch ${message.batch} part ${message.part} was applied with digest ${expected}, and arrives again with digest ${digest}: another batch under the same id (a source that went back in time, or a forged message)`,
    at,
  );
}

/**
 * Refuses a new batch whose origin lies before the batch applied last on the same source system
 * and timeline (a lower timeline, or a lower WAL position on the same one).
 */
export function checkOriginForward(position: PositionRow | undefined, message: Pick<Envelope, 'source' | 'batch' | 'part' | 'origin'>): void {
  const last = position?.appliedOrigin;
  const next = message.origin;
  if (last === undefined || next === undefined || last.system !== next.system) return;
  if (next.timeline > last.timeline || (next.timeline === last.timeline && lsnValue(next.lsn) >= lsnValue(last.lsn))) return;
  throw new UntrustedMessageError(
    message.source,
    `batch ${message.batch} comes from ${originText(next)}, before batch ${position?.appliedBatchId} applied last (${originText(last)}): the source went back in time; ` +
      'the replica holds changes the source no longer has: rebuild it from the source (pgfanout bootstrap)',
    { batchId: message.batch, part: message.part },
  );
}

/**
 * Called when the position is 0 with nothing staged. A replica may start at the stream's first
 * batch (prev 0) when nothing recorded a position before, unless a bootstrap is copying its
 * tables; otherwise, where no position was recorded, the message waits (a transient
 * {@link NotBootstrappedError}) until `pgfanout bootstrap` records it, instead of being parked
 * as a gap.
 */
export function refuseBeforeBootstrap(locked: Pick<LockedPosition, 'created' | 'bootstrap'>, message: Pick<Envelope, 'source' | 'batch' | 'prev'>): void {
  const received = `batch ${message.batch} (prev ${message.prev})`;
  if (locked.bootstrap !== undefined) throw new NotBootstrappedError(message.source, received, locked.bootstrap);
  if (locked.created && message.prev !== '0') throw new NotBootstrappedError(message.source, received, undefined);
}
