/**
 * Bootstrap's errors: stable codes, the error class, and how a database error is read
 * (transient, snapshot gone).
 */
import { classifyDatabaseError, TransientDatabaseError } from '#core/wire/errors.ts';
import { OpsError } from '../errors.ts';

/** Stable codes of {@link BootstrapError}. */
export const BOOTSTRAP_ERROR_CODES = {
  invalidArgument: 'INVALID_ARGUMENT',
  /** pgfanout missing on the source or the replica, or a named table not captured. */
  notReady: 'NOT_READY',
  /** Another bootstrap holds this replica. */
  busy: 'BUSY',
  /** The replica already follows the source (has a position) and `force` was not given. */
  alreadyFollowing: 'ALREADY_FOLLOWING',
  /** Replica tables hold rows and `force` was not given. */
  notEmpty: 'NOT_EMPTY',
  /** A replica table does not match the source's columns. */
  schemaMismatch: 'SCHEMA_MISMATCH',
  /** The publisher kept moving the boundary past every snapshot taken. */
  snapshotRace: 'SNAPSHOT_RACE',
  /** The source session holding the exported snapshot ended during the copy. */
  snapshotLost: 'SNAPSHOT_LOST',
  /** A table could not be copied, after retries for transient failures. */
  copyFailed: 'COPY_FAILED',
  aborted: 'ABORTED',
  /** Existing replica tables have triggers that would fire on the copied rows (origin guard). */
  replicaTriggers: 'REPLICA_TRIGGERS',
} as const;

/** One of {@link BOOTSTRAP_ERROR_CODES}. */
export type BootstrapErrorCode = (typeof BOOTSTRAP_ERROR_CODES)[keyof typeof BOOTSTRAP_ERROR_CODES];

/** Why a bootstrap stopped; `cause` keeps the underlying error. */
export class BootstrapError extends OpsError<BootstrapErrorCode> {
  constructor(code: BootstrapErrorCode, message: string, cause?: unknown) {
    super(code, message, cause);
    this.name = 'BootstrapError';
  }
}

export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** SET TRANSACTION SNAPSHOT refused: the exporting transaction ended (42704), or the name is not one (22023). */
export function snapshotGone(err: unknown): boolean {
  return sqlState(err) === '42704' || sqlState(err) === '22023';
}

/** Trouble a new session may get past: what the core classifies as a transient database error. */
export function isTransient(err: unknown): boolean {
  return classifyDatabaseError(err, 'bootstrap') instanceof TransientDatabaseError;
}
