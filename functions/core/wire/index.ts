/**
 * The wire format both sides speak: the message envelope (defined once, validated at run time),
 * FIFO group and deduplication ids, the digest chaining the parts of a batch, and the one error
 * hierarchy. Used by the publisher, the applier and the operator tools.
 */
export {
  ENVELOPE_VERSION,
  SUPPORTED_VERSIONS,
  FIELDS,
  CHANGE_FIELDS,
  OPS,
  parseEnvelope,
  validateEnvelope,
  mergeChangeItems,
  isBigintText,
  checkSchemaChange,
  SCHEMA_CHANGE_KEYS,
  ORIGIN_FIELDS,
  lsnValue,
  type BatchOrigin,
  type Envelope,
  type ChangeItem,
  type ChangeHead,
  type ChangeContinuation,
  type Change,
  type ChangeOp,
  type RowImage,
  type ImageName,
} from './envelope.ts';
export { messageGroupId, messageDeduplicationId, isValidFifoId, MAX_ID_LENGTH } from './ids.ts';
export { bodyDigest } from './digest.ts';
export {
  ERROR_CODES,
  PgfanoutError,
  InvalidArgumentError,
  MalformedMessageError,
  UnsupportedVersionError,
  GapError,
  NotBootstrappedError,
  SchemaMismatchError,
  ReplicaTriggersError,
  UnknownTableError,
  RowNotFoundError,
  TransientDatabaseError,
  DatabaseError,
  InvalidStreamError,
  SchemaChangeError,
  UntrustedMessageError,
  SchemaDriftError,
  REFUSAL_CODES,
  classifyDatabaseError,
  isTransientSqlState,
  type ErrorCode,
} from './errors.ts';
