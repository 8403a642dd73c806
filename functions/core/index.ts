/**
 * pgfanout's shared core: the message envelope, FIFO ids, the streaming batch reader and
 * encoder (used by the publisher), the apply core (used by the applier), install scripts and the
 * error hierarchy. Import it as `#core`.
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
  type Envelope,
  type ChangeItem,
  type ChangeHead,
  type ChangeContinuation,
  type Change,
  type ChangeOp,
  type RowImage,
  type ImageName,
  checkSchemaChange,
  SCHEMA_CHANGE_KEYS,
} from './envelope.ts';
export { CONFLICT_MODES, type ConflictMode, type ConflictKind } from './conflicts.ts';
export { messageGroupId, messageDeduplicationId, isValidFifoId, MAX_ID_LENGTH } from './ids.ts';
export { readBatch, CopyTextParser, BatchTokenAssembler, type BatchToken, type ChangeToken, type ValueToken, type CopySink } from './reader.ts';
export {
  encodeBatch,
  BatchEncoder,
  bodyDigest,
  DEFAULT_MAX_MESSAGE_BYTES,
  MIN_MAX_MESSAGE_BYTES,
  MAX_MAX_MESSAGE_BYTES,
  type BatchMeta,
  type EncodeOptions,
  type OutgoingMessage,
} from './encoder.ts';
export {
  applyMessage,
  replicaPosition,
  replicaCatalog,
  ReplicaCatalog,
  TableFilter,
  ORIGIN_SETTING,
  type ApplyOptions,
  type ApplyResult,
  type Planning,
  type ReplicaPosition,
  type ReplicationRole,
} from './apply.ts';
export { installSource, installReplica } from './install.ts';
export {
  ERROR_CODES,
  PgfanoutError,
  InvalidArgumentError,
  MalformedMessageError,
  UnsupportedVersionError,
  GapError,
  NotBootstrappedError,
  SchemaMismatchError,
  UnknownTableError,
  RowNotFoundError,
  TransientDatabaseError,
  DatabaseError,
  InvalidStreamError,
  SchemaChangeError,
  classifyDatabaseError,
  isTransientSqlState,
  type ErrorCode,
} from './errors.ts';
