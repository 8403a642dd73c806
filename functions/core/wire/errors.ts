/**
 * pgfanout's error hierarchy.
 *
 * Every error carries a stable `code` and says whether it is `permanent` (retrying the same
 * message cannot help: malformed message, unknown envelope version, gap, schema mismatch) or
 * transient (connection lost, serialization failure, throttling: retry with backoff). The
 * original error is kept as `cause`. Messages name what went wrong, the value received and
 * what is allowed, and for apply errors the table, the position and the source.
 */

/** Stable error codes, used by the applier handler for metrics and by alarms. */
export const ERROR_CODES = {
  malformedMessage: 'MALFORMED_MESSAGE',
  unsupportedVersion: 'UNSUPPORTED_VERSION',
  gap: 'GAP',
  notBootstrapped: 'NOT_BOOTSTRAPPED',
  schemaMismatch: 'SCHEMA_MISMATCH',
  unknownTable: 'UNKNOWN_TABLE',
  rowNotFound: 'ROW_NOT_FOUND',
  transientDatabase: 'DB_TRANSIENT',
  database: 'DB_ERROR',
  invalidArgument: 'INVALID_ARGUMENT',
  invalidStream: 'INVALID_STREAM',
  schemaChange: 'SCHEMA_CHANGE_FAILED',
  untrustedMessage: 'UNTRUSTED_MESSAGE',
  schemaDrift: 'SCHEMA_DRIFT',
  replicaTriggers: 'REPLICA_TRIGGERS',
  unauthenticatedMessage: 'UNAUTHENTICATED_MESSAGE',
} as const;

/**
 * Codes of the errors by which a replica refuses a message it must not trust (unsigned, forged or
 * signed with a key it does not accept; a source it does not follow, a write to pgfanout's own
 * tables, a batch that jumps, a duplicate that differs from what was applied, a source that went
 * back in time, a schema change it may not run) or a source whose schema drifted: each stops the
 * replica and counts in the `MessagesRefused` metric and its alarm.
 */
export const REFUSAL_CODES: readonly ErrorCode[] = [ERROR_CODES.unauthenticatedMessage, ERROR_CODES.untrustedMessage, ERROR_CODES.schemaDrift];

/** One of {@link ERROR_CODES}. */
export type ErrorCode = (typeof ERROR_CODES)[keyof typeof ERROR_CODES];

/** Base class of every error pgfanout raises on purpose. */
export class PgfanoutError extends Error {
  /** Stable machine-readable code. */
  readonly code: ErrorCode;
  /** True when retrying the same input cannot succeed. */
  readonly permanent: boolean;

  constructor(code: ErrorCode, message: string, options: { readonly permanent: boolean; readonly cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.permanent = options.permanent;
  }
}

/** A function was called with an argument outside what it accepts. */
export class InvalidArgumentError extends PgfanoutError {
  constructor(message: string, cause?: unknown) {
    super(ERROR_CODES.invalidArgument, message, { permanent: true, cause });
  }
}

/** A message body does not follow the envelope format; `field` is a path such as `changes[3].new`. */
export class MalformedMessageError extends PgfanoutError {
  readonly field: string;
  constructor(field: string, received: string, allowed: string, cause?: unknown) {
    super(ERROR_CODES.malformedMessage, `malformed message: field ${field} is ${received}; allowed: ${allowed}`, { permanent: true, cause });
    this.field = field;
  }
}

/** A message names an envelope version this code does not know. */
export class UnsupportedVersionError extends PgfanoutError {
  readonly received: unknown;
  constructor(received: unknown, supported: readonly number[]) {
    super(
      ERROR_CODES.unsupportedVersion,
      `unsupported envelope version ${describeValue(received)}; this applier knows version ${supported.join(', ')}`,
      { permanent: true },
    );
    this.received = received;
  }
}

/** Where a message sits in a source's stream: a batch, and a part within it (null = whole batch). */
export interface StreamPosition {
  readonly batchId: string;
  readonly part: number | null;
}

/** A message does not follow what the replica applied last: applying it would skip changes. */
export class GapError extends PgfanoutError {
  readonly sourceId: string;
  readonly expected: string;
  readonly received: string;
  constructor(sourceId: string, expected: string, received: string) {
    super(ERROR_CODES.gap, `gap in the stream of source ${sourceId}: expected ${expected}, received ${received}; nothing applied`, { permanent: true });
    this.sourceId = sourceId;
    this.expected = expected;
    this.received = received;
  }
}

/** Where a bootstrap of a replica stands (pgfanout.replica_bootstrap), as an error names it. */
export interface BootstrapInProgress {
  /** The batch the bootstrap's snapshot corresponds to: the applier starts after it. */
  readonly batchId: string;
  readonly startedAt: string;
  readonly tablesCopied: number;
  readonly tables: number;
}

/**
 * The replica has no position for a source yet: it was never bootstrapped, or a bootstrap is
 * copying its tables right now. Transient: the message waits in the queue (retried with the
 * applier's growing delays) until `pgfanout bootstrap` records the position; then everything at
 * or below the bootstrap's batch is skipped as a duplicate and the next batch applies.
 */
export class NotBootstrappedError extends PgfanoutError {
  readonly sourceId: string;
  readonly bootstrap: BootstrapInProgress | undefined;
  constructor(sourceId: string, received: string, bootstrap: BootstrapInProgress | undefined) {
    const state =
      bootstrap === undefined
        ? `this replica has no position for source ${sourceId} (never bootstrapped), and ${received} does not start the stream (prev 0); ` +
          'run pgfanout bootstrap --source URL --replica NAME=URL to copy the tables and record the position'
        : `a bootstrap of source ${sourceId} into this replica is in progress (started ${bootstrap.startedAt}, ` +
          `${bootstrap.tablesCopied} of ${bootstrap.tables} tables copied, snapshot at batch ${bootstrap.batchId}); ` +
          `it records the position when done and batches up to ${bootstrap.batchId} are then skipped`;
    super(ERROR_CODES.notBootstrapped, `${state}; nothing applied, the message waits in the queue and is retried`, { permanent: false });
    this.sourceId = sourceId;
    this.bootstrap = bootstrap;
  }
}

/** Context of an apply error: which message of which source. */
export interface ApplyContext {
  readonly sourceId: string;
  readonly batchId: string;
  readonly part: number;
}

/** `batch B, part P, source S`: where an apply error happened, in every message that names it. */
export function whereInBatch(context: ApplyContext): string {
  return `batch ${context.batchId}, part ${context.part}, source ${context.sourceId}`;
}

/** The replica's table does not match the change (missing column, unusable identity, …). */
export class SchemaMismatchError extends PgfanoutError {
  readonly table: string;
  readonly column: string | undefined;
  readonly reason: string;
  constructor(table: string, column: string | undefined, reason: string, context: ApplyContext) {
    super(ERROR_CODES.schemaMismatch, `replica table ${table} ${reason} (${whereInBatch(context)}); nothing applied`, { permanent: true });
    this.table = table;
    this.column = column;
    this.reason = reason;
  }
}

/**
 * A replica table has triggers that would fire on applied changes (the applier could not set
 * session_replication_role = replica) and the applier's options do not allow them.
 */
export class ReplicaTriggersError extends PgfanoutError {
  readonly table: string;
  readonly triggers: readonly string[];
  constructor(table: string, triggers: readonly string[], fix: string, context: ApplyContext) {
    super(
      ERROR_CODES.replicaTriggers,
      `replica table ${table} has trigger(s) ${triggers.join(', ')} that would fire on every applied change, because this role may not set ` +
        `session_replication_role = replica: the replica would differ from the source (${whereInBatch(context)}); nothing applied. ${fix}`,
      { permanent: true },
    );
    this.table = table;
    this.triggers = triggers;
  }
}

/** The change names a table the replica does not have. */
export class UnknownTableError extends PgfanoutError {
  readonly table: string;
  constructor(table: string, context: ApplyContext) {
    super(
      ERROR_CODES.unknownTable,
      `replica has no table ${table} (${whereInBatch(context)}); create it or exclude it from this replica; nothing applied`,
      { permanent: true },
    );
    this.table = table;
  }
}

/** An UPDATE or DELETE found no replica row with the source's old identity: the replica diverged. */
export class RowNotFoundError extends PgfanoutError {
  readonly table: string;
  constructor(table: string, detail: string, context: ApplyContext) {
    super(ERROR_CODES.rowNotFound, `replica table ${table}: ${detail} (${whereInBatch(context)}); the replica differs from the source; nothing applied`, {
      permanent: true,
    });
    this.table = table;
  }
}

/**
 * A message whose signature the applier cannot verify: unsigned, forged (the signature does not
 * match its body), or signed with a key the applier does not accept. Permanent: nothing of it is
 * applied, and it stays at the head of its message group (nothing behind it is skipped) until it
 * is removed or the key that signed it is accepted again.
 */
export class UnauthenticatedMessageError extends PgfanoutError {
  /** The key id the message names, if any. */
  readonly keyId: string | undefined;
  /** What the message claims to be (read from its unverified body), for the operator. */
  readonly claimed: string;
  constructor(claimed: string, keyId: string | undefined, reason: string) {
    super(ERROR_CODES.unauthenticatedMessage, `replica refuses ${claimed}, key id ${keyId === undefined ? '(none)' : JSON.stringify(keyId)}: ${reason}; nothing applied`, {
      permanent: true,
    });
    this.keyId = keyId;
    this.claimed = claimed;
  }
}

/**
 * The replica refuses a message it must not trust: what it is and why are named. Permanent:
 * nothing of the message is applied and the replica stops there until an operator looks.
 */
export class UntrustedMessageError extends PgfanoutError {
  readonly sourceId: string;
  readonly reason: string;
  constructor(sourceId: string, reason: string, at?: StreamPosition) {
    const position = at === undefined ? '' : ` (batch ${at.batchId}${at.part === null ? '' : `, part ${at.part}`}, source ${sourceId})`;
    super(ERROR_CODES.untrustedMessage, `replica refuses the message${position || ` of source ${sourceId}`}: ${reason}; nothing applied`, { permanent: true });
    this.sourceId = sourceId;
    this.reason = reason;
  }
}

/**
 * The source's table changed without the change reaching the replica (a column dropped or renamed
 * on the source outside `replicate_ddl`): applying would leave the replica's columns silently NULL.
 */
export class SchemaDriftError extends PgfanoutError {
  readonly table: string;
  readonly columns: readonly string[];
  constructor(table: string, columns: readonly string[], detail: string, context: ApplyContext) {
    super(ERROR_CODES.schemaDrift, `schema drift on replica table ${table}: ${detail} (${whereInBatch(context)}); nothing applied`, { permanent: true });
    this.table = table;
    this.columns = columns;
  }
}

/** A schema change (DDL) from the stream failed on the replica; the statement and its position are named. */
export class SchemaChangeError extends PgfanoutError {
  readonly statement: string;
  readonly sqlState: string | undefined;
  constructor(statement: string, at: string, reason: string, sqlState: string | undefined, context: ApplyContext, cause: unknown) {
    super(
      ERROR_CODES.schemaChange,
      `replica could not run the schema change ${describeValue(statement, 200)} (${at}, ${whereInBatch(context)}): ${reason}${sqlState ? ` [SQLSTATE ${sqlState}]` : ''}; nothing applied`,
      { permanent: true, cause },
    );
    this.statement = statement;
    this.sqlState = sqlState;
  }
}

/** A database error that a later retry may not hit (connection lost, serialization failure, …). */
export class TransientDatabaseError extends PgfanoutError {
  readonly sqlState: string | undefined;
  constructor(message: string, sqlState: string | undefined, cause: unknown) {
    super(ERROR_CODES.transientDatabase, message, { permanent: false, cause });
    this.sqlState = sqlState;
  }
}

/** A database error that retrying the same message will hit again (data exception, constraint violation, …). */
export class DatabaseError extends PgfanoutError {
  readonly sqlState: string | undefined;
  constructor(message: string, sqlState: string | undefined, cause: unknown) {
    super(ERROR_CODES.database, message, { permanent: true, cause });
    this.sqlState = sqlState;
  }
}

/** The batch stream read from the source is not what the batch protocol promises. */
export class InvalidStreamError extends PgfanoutError {
  constructor(message: string, cause?: unknown) {
    super(ERROR_CODES.invalidStream, message, { permanent: false, cause });
  }
}

/** SQLSTATE classes (first two characters) and codes that a retry can get past. */
const TRANSIENT_SQLSTATE_CLASSES = new Set(['08', '53', '57', '58', 'XX']);
const TRANSIENT_SQLSTATES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55P03', // lock_not_available
  '55006', // object_in_use
  '25006', // read_only_sql_transaction (replica failed over to a standby)
]);
/** Errors raised by the client itself rather than by the server. */
const TRANSIENT_NODE_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

/** True when an error with this SQLSTATE (or client error code) may succeed on retry. */
export function isTransientSqlState(code: string | undefined): boolean {
  if (code === undefined) return false;
  if (TRANSIENT_NODE_CODES.has(code)) return true;
  return TRANSIENT_SQLSTATES.has(code) || TRANSIENT_SQLSTATE_CLASSES.has(code.slice(0, 2));
}

/**
 * Wraps any error thrown while talking to PostgreSQL into the hierarchy: a {@link PgfanoutError}
 * passes through; a server error becomes {@link TransientDatabaseError} or {@link DatabaseError}
 * by SQLSTATE; a client-side connection failure becomes transient.
 */
export function classifyDatabaseError(err: unknown, what: string): PgfanoutError {
  if (err instanceof PgfanoutError) return err;
  const e = (err ?? {}) as { code?: unknown; message?: unknown; detail?: unknown; where?: unknown };
  const code = typeof e.code === 'string' ? e.code : undefined;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const detail = typeof e.detail === 'string' && e.detail !== '' ? ` (${e.detail})` : '';
  const text = `${what}: ${message}${detail}${code ? ` [SQLSTATE ${code}]` : ''}`;
  const connectionLost =
    code === undefined && /Connection terminated|connection timeout|Client has encountered a connection error|not queryable|socket hang up/i.test(message);
  if (connectionLost || isTransientSqlState(code)) return new TransientDatabaseError(text, code, err);
  return new DatabaseError(text, code, err);
}

/** A short, printable description of a received value for error messages (never the whole value). */
export function describeValue(value: unknown, max = 80): string {
  let text: string;
  if (value === undefined) return 'missing';
  if (typeof value === 'string') text = JSON.stringify(value);
  else if (typeof value === 'number' || typeof value === 'boolean' || value === null) text = String(value);
  else if (Array.isArray(value)) text = `an array of ${value.length}`;
  else if (typeof value === 'object') text = 'an object';
  else text = typeof value;
  return text.length > max ? `${text.slice(0, max)}… (${text.length} characters)` : text;
}
