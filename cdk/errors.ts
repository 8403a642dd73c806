/**
 * Errors raised while building the pgfanout CDK app: a small hierarchy with a
 * stable `code`, keeping the `cause` when there is one.
 */

/** Codes of the errors raised by `cdk/`. */
export const CDK_ERROR_CODES = {
  invalidConfig: 'PGFANOUT_INVALID_CONFIG',
  invalidContext: 'PGFANOUT_INVALID_CONTEXT',
} as const;

/** A code from {@link CDK_ERROR_CODES}. */
export type CdkErrorCode = (typeof CDK_ERROR_CODES)[keyof typeof CDK_ERROR_CODES];

/** Base class of every error raised by pgfanout's CDK code. */
export class PgfanoutCdkError extends Error {
  /** Stable, machine-readable code. */
  readonly code: CdkErrorCode;

  constructor(code: CdkErrorCode, message: string, options?: { readonly cause?: unknown }) {
    super(message, options);
    this.name = 'PgfanoutCdkError';
    this.code = code;
  }
}

/**
 * The configuration (construct props or CDK context) has one or more problems.
 * Every problem found is listed, so that one run shows them all.
 */
export class PgfanoutConfigError extends PgfanoutCdkError {
  /** One line per problem: what is wrong, the value received and what is allowed. */
  readonly problems: readonly string[];

  constructor(problems: readonly string[], code: CdkErrorCode = CDK_ERROR_CODES.invalidConfig, options?: { readonly cause?: unknown }) {
    const noun = problems.length === 1 ? 'problem' : 'problems';
    super(code, `pgfanout configuration has ${problems.length} ${noun}:\n  - ${problems.join('\n  - ')}`, options);
    this.name = 'PgfanoutConfigError';
    this.problems = problems;
  }
}
