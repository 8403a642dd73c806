/**
 * Errors of the operator tools (`pgfanout verify`, `pgfanout redrive`): each has a stable
 * `code` and keeps the error that caused it as `cause`. Messages say what was wrong, the value
 * received and what is allowed, or what to do next.
 */

/** Stable codes of {@link OpsError}. */
export const OPS_ERROR_CODES = {
  /** An option or argument outside what is allowed. */
  invalidArgument: 'INVALID_ARGUMENT',
  /** Something named does not exist (table, queue, batch in the dead-letter queue). */
  notFound: 'NOT_FOUND',
  /** The operation is refused in the current state (skipping a batch that is not the next one, …). */
  refused: 'REFUSED',
  /** A wait did not end before its deadline. */
  timeout: 'TIMEOUT',
  /** An SQS message move task ended without completing. */
  moveFailed: 'MOVE_FAILED',
} as const;

/** One of {@link OPS_ERROR_CODES}. */
export type OpsErrorCode = (typeof OPS_ERROR_CODES)[keyof typeof OPS_ERROR_CODES];

/** An error of an operator tool; `cause` keeps the underlying error. Tools with codes of their own pass them as `C`. */
export class OpsError<C extends string = OpsErrorCode> extends Error {
  /** Stable machine-readable code. */
  readonly code: C;

  constructor(code: C, message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'OpsError';
    this.code = code;
  }
}
