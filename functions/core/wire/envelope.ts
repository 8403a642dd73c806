/**
 * The pgfanout message envelope, version 1: the one definition of what travels from the
 * publisher through SNS and SQS to every applier.
 *
 * A message body is a JSON object (UTF-8, at most 262,144 bytes by default):
 *
 * ```json
 * {"pgfanout":1,"source":"3f2c…","batch":"412","prev":"411","part":0,"time":"2024-05-01T12:00:00.123Z",
 *  "changes":[
 *    {"op":"I","schema":"public","table":"orders","txid":"7301","new":{"id":"1","note":"hi","total":"12.50"}},
 *    {"op":"U","schema":"public","table":"orders","txid":"7302","old":{"id":"1"},"new":{"id":"1","note":null,"total":"13.00"}},
 *    {"op":"D","schema":"public","table":"orders","txid":"7303","old":{"id":"1"}},
 *    {"op":"T","schema":"public","table":"orders","txid":"7304"},
 *    {"op":"T","schema":"public","table":"events","txid":"7304","old":{"schema":"public","table":"events_2024"}},
 *    {"op":"S","schema":"","table":"","txid":"7305","new":{"search_path":"public","sql":"ALTER TABLE orders ADD note2 text"}}
 *  ],
 *  "final":true,"count":5}
 * ```
 *
 * - `pgfanout`: envelope version (a number). An applier rejects a version it does not know, by name.
 * - `source`: the source's id (`pgfanout.source_id()`); one stream, one SQS message group, per source.
 * - `batch`, `prev`: the batch's position and its predecessor's, as decimal strings (`prev` "0" =
 *   stream start). A replica applies batch N only right after `prev`; anything at or below its
 *   recorded position is a duplicate, anything else a gap.
 * - `part`: 0, 1, 2, … when one batch is too large for one message. Parts are staged on the
 *   replica and the whole batch is applied in one transaction when the part with `final: true`
 *   arrives. `after` (parts ≥ 1): the first 32 hex digits of the SHA-256 of the previous part's
 *   body, so parts of two different encodings of one batch can never be mixed.
 * - `time`: the source time of the batch's last event (optional, as the publisher gave it).
 * - `origin` (optional): where on the source the batch was made, so a replica can tell a source
 *   that went back in time (a crash that lost the batch's commit, a failover to a standby that had
 *   not received it, a restored backup) from a duplicate: `{"system":"7301234567890123456",
 *   "timeline":1,"lsn":"0/16B3748"}`, the source cluster's system identifier (decimal), its
 *   timeline and the WAL position of the batch's making (`pg_lsn` text). Every part of a batch
 *   carries the same origin. A replica stops when a batch it applied arrives again with another
 *   origin, or when the LSN of a following batch of the same system and timeline is lower.
 * - `final`: true on the batch's last part, which also carries `count`, the number of changes in the
 *   whole batch, checked by the replica before it commits.
 * - `changes`: one whole batch is one or more whole source transactions, in commit order. Each change:
 *   `op` `I` insert, `U` update, `D` delete, `T` truncate; `schema`, `table` (the partitioned root for
 *   partitions); `txid` (the source transaction id, decimal text); `old`: the old identity (key
 *   columns, or the whole old row when the table has no identity; U and D); `new`: the whole new row
 *   (I and U). A `T` of the whole table has no image; a `T` of one partition (or sub-partition) of
 *   a partitioned table names it in `old`: `{"schema": …, "table": …}`, and the replica truncates
 *   that partition of its table (an applier older than this rule rejects such an item as
 *   malformed instead of truncating the whole table). `S` is a schema change: its `new` holds `sql`, the statement to run, and
 *   `search_path`, the schemas its unqualified names resolve in (quoted, comma-separated); its
 *   `schema` and `table` name the table it is about, or are "" when that is not known. Images map column name → PostgreSQL's own text output of the value, or null for SQL
 *   NULL. Every value, bigints and timestamps included, is a string; the replica server converts it
 *   with the column type's input function.
 * - A change too large for one message is split into consecutive items: the first has
 *   `"more":true`, each following item is `{"op":"+", "old"?:{…}, "new"?:{…}}` and keeps
 *   `"more":true` until the last. A column that appears again in a following item continues its
 *   value: the strings concatenate. Items may continue into the next part; the replica reassembles
 *   values inside its database, so no process holds a whole value.
 *
 * - Characters: the body holds only characters SQS accepts (`#x9 | #xA | #xD | #x20 to #xD7FF |
 *   #xE000 to #xFFFD | #x10000 to #x10FFFF`,
 *   https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html).
 *   PostgreSQL text may hold U+FFFE and U+FFFF: the publisher writes them as the JSON escapes
 *   `\ufffe` and `\uffff`, which JSON parsing restores exactly (controls below U+0020 are
 *   escaped by JSON itself). A reader needs nothing beyond a JSON parser.
 *
 * Unknown fields are rejected, so a newer format can never be half understood.
 */
import { describeValue, MalformedMessageError, UnsupportedVersionError } from './errors.ts';
import { isIntegerIn } from '../integer.ts';

/** The envelope version this code writes. */
export const ENVELOPE_VERSION = 1;
/** The envelope versions this code reads. */
export const SUPPORTED_VERSIONS: readonly number[] = [ENVELOPE_VERSION];

/** Field names of the message object. */
export const FIELDS = {
  version: 'pgfanout',
  source: 'source',
  batch: 'batch',
  prev: 'prev',
  part: 'part',
  time: 'time',
  origin: 'origin',
  after: 'after',
  changes: 'changes',
  final: 'final',
  count: 'count',
} as const;

/** Field names of one change item. */
export const CHANGE_FIELDS = {
  op: 'op',
  schema: 'schema',
  table: 'table',
  txid: 'txid',
  old: 'old',
  new: 'new',
  more: 'more',
} as const;

/** Operation codes. */
export const OPS = {
  insert: 'I',
  update: 'U',
  delete: 'D',
  truncate: 'T',
  /** A schema change: a statement (DDL) the replica runs at this place among the changes. */
  schema: 'S',
  /** Continues the previous item's change (see the format above). */
  continuation: '+',
} as const;

/** A change's operation. */
export type ChangeOp = 'I' | 'U' | 'D' | 'T' | 'S';
/** A row image: column name → text value or null. */
export type RowImage = Readonly<Record<string, string | null>>;
/** The image names of a change. */
export type ImageName = 'old' | 'new';

/** The first (or only) item of a change. */
export interface ChangeHead {
  readonly op: ChangeOp;
  readonly schema: string;
  readonly table: string;
  readonly txid: string;
  readonly old?: RowImage;
  readonly new?: RowImage;
  /** The change continues in the next item. */
  readonly more?: true;
}

/** A following item of a change split across items. */
export interface ChangeContinuation {
  readonly op: '+';
  readonly old?: RowImage;
  readonly new?: RowImage;
  readonly more?: true;
}

/** One element of `changes`. */
export type ChangeItem = ChangeHead | ChangeContinuation;

/** Where on the source a batch was made (see the `origin` field above). */
export interface BatchOrigin {
  /** The source cluster's system identifier, decimal. */
  readonly system: string;
  /** The source's timeline. */
  readonly timeline: number;
  /** The WAL position of the batch's making, as `pg_lsn` text (`16/B374D848`). */
  readonly lsn: string;
}

/** Field names of the `origin` object. */
export const ORIGIN_FIELDS = { system: 'system', timeline: 'timeline', lsn: 'lsn' } as const;

/** A validated message. */
export interface Envelope {
  readonly pgfanout: number;
  readonly source: string;
  readonly batch: string;
  readonly prev: string;
  readonly part: number;
  readonly time?: string;
  readonly origin?: BatchOrigin;
  readonly after?: string;
  readonly changes: readonly ChangeItem[];
  readonly final: boolean;
  readonly count?: number;
}

/** A whole change, as reassembled from its items. */
export interface Change {
  readonly op: ChangeOp;
  readonly schema: string;
  readonly table: string;
  readonly txid: string;
  readonly old?: RowImage;
  readonly new?: RowImage;
}

/** Length of the `after` digest in hex digits. */
export const DIGEST_HEX_LENGTH = 32;
/** Longest source id accepted. */
export const MAX_SOURCE_ID_LENGTH = 256;
/** Longest schema, table or column name accepted (PostgreSQL's own limit is 63 bytes). */
const MAX_NAME_LENGTH = 1024;
/** Largest part index. */
const MAX_PART = 2_147_483_647;

const DECIMAL = /^(0|[1-9][0-9]*)$/;
/** ISO 8601 or PostgreSQL ISO output of a timestamp with a time zone offset. */
const TIMESTAMP = /^[0-9]{4,}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?)?(Z|[+-][0-9]{2}(:?[0-9]{2}(:?[0-9]{2})?)?)( BC)?$/;
/** True when `text` is a timestamp the envelope's `time` field accepts. */
export function isTimestampText(text: unknown): text is string {
  return typeof text === 'string' && text.length <= 64 && TIMESTAMP.test(text);
}
const HEX_DIGEST = new RegExp(`^[0-9a-f]{${DIGEST_HEX_LENGTH}}$`);

/** True when `text` is a decimal bigint in 0..2^63-1 without sign or leading zeros. */
export function isBigintText(text: unknown): text is string {
  if (typeof text !== 'string' || text.length > 19 || !DECIMAL.test(text)) return false;
  // Equal-length digit strings compare like their numbers.
  return text.length < 19 || text <= '9223372036854775807';
}

const ENVELOPE_KEYS = new Set<string>(Object.values(FIELDS));
const HEAD_KEYS = new Set<string>(Object.values(CHANGE_FIELDS));
const CONTINUATION_KEYS = new Set<string>([CHANGE_FIELDS.op, CHANGE_FIELDS.old, CHANGE_FIELDS.new, CHANGE_FIELDS.more]);

/**
 * Parses and validates a message body. Throws {@link UnsupportedVersionError} for a version it
 * does not know and {@link MalformedMessageError} naming the field, the value and what is allowed
 * for anything else that is wrong.
 */
export function parseEnvelope(body: unknown): Envelope {
  if (typeof body !== 'string') throw new MalformedMessageError('body', describeValue(body), 'a JSON text');
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (cause) {
    throw new MalformedMessageError('body', `not JSON (${(cause as Error).message})`, 'a JSON object', cause);
  }
  return validateEnvelope(parsed);
}

/** Validates an already parsed message object; see {@link parseEnvelope}. */
export function validateEnvelope(value: unknown): Envelope {
  if (!isPlainObject(value)) throw new MalformedMessageError('body', describeValue(value), 'a JSON object');
  const version = value[FIELDS.version];
  if (version === undefined) throw new MalformedMessageError(FIELDS.version, 'missing', `the envelope version, one of ${SUPPORTED_VERSIONS.join(', ')}`);
  if (typeof version !== 'number' || !SUPPORTED_VERSIONS.includes(version)) throw new UnsupportedVersionError(version, SUPPORTED_VERSIONS);
  for (const key of Object.keys(value)) {
    if (!ENVELOPE_KEYS.has(key)) throw new MalformedMessageError(JSON.stringify(key), 'present', `only the fields ${[...ENVELOPE_KEYS].join(', ')}`);
  }
  const source = value[FIELDS.source];
  if (typeof source !== 'string' || source.length === 0 || source.length > MAX_SOURCE_ID_LENGTH) {
    throw new MalformedMessageError(FIELDS.source, describeValue(source), `a non-empty string of at most ${MAX_SOURCE_ID_LENGTH} characters`);
  }
  const batch = value[FIELDS.batch];
  if (!isBigintText(batch) || batch === '0') {
    throw new MalformedMessageError(FIELDS.batch, describeValue(batch), 'a decimal string from "1" to "9223372036854775807"');
  }
  const prev = value[FIELDS.prev];
  if (!isBigintText(prev) || BigInt(prev) >= BigInt(batch)) {
    throw new MalformedMessageError(FIELDS.prev, describeValue(prev), `a decimal string from "0" to "${BigInt(batch) - 1n}" (below batch ${batch})`);
  }
  const part = value[FIELDS.part];
  if (!isIntegerIn(part, 0, MAX_PART)) {
    throw new MalformedMessageError(FIELDS.part, describeValue(part), `an integer from 0 to ${MAX_PART}`);
  }
  const time = value[FIELDS.time];
  if (time !== undefined && !isTimestampText(time)) {
    throw new MalformedMessageError(FIELDS.time, describeValue(time), 'absent, or a timestamp with time zone such as "2024-05-01T12:00:00.123Z" or "2024-05-01 12:00:00.123+00"');
  }
  const origin = value[FIELDS.origin] === undefined ? undefined : validateOrigin(value[FIELDS.origin]);
  const after = value[FIELDS.after];
  if (part === 0 ? after !== undefined : typeof after !== 'string' || !HEX_DIGEST.test(after)) {
    throw new MalformedMessageError(
      FIELDS.after,
      describeValue(after),
      part === 0 ? 'absent on part 0' : `${DIGEST_HEX_LENGTH} lowercase hex digits on parts after the first`,
    );
  }
  const final = value[FIELDS.final];
  if (typeof final !== 'boolean') throw new MalformedMessageError(FIELDS.final, describeValue(final), 'true or false');
  const count = value[FIELDS.count];
  if (final ? !isIntegerIn(count, 0) : count !== undefined) {
    throw new MalformedMessageError(FIELDS.count, describeValue(count), final ? 'a non-negative integer on the final part' : 'absent on parts that are not final');
  }
  const changes = value[FIELDS.changes];
  if (!Array.isArray(changes)) throw new MalformedMessageError(FIELDS.changes, describeValue(changes), 'an array of changes');
  const items: ChangeItem[] = [];
  for (let i = 0; i < changes.length; i++) {
    const item = validateItem(changes[i], i);
    const previous = items[i - 1];
    if (item.op === OPS.continuation ? (previous ? !previous.more : part === 0) : previous?.more) {
      throw new MalformedMessageError(
        `${FIELDS.changes}[${i}].${CHANGE_FIELDS.op}`,
        describeValue(item.op),
        previous?.more ? '"+" after an item with "more": true' : 'a "+" continuation only after an item with "more": true, or first in a part after part 0',
      );
    }
    items.push(item);
  }
  if (final && items[items.length - 1]?.more) {
    throw new MalformedMessageError(`${FIELDS.changes}[${items.length - 1}].${CHANGE_FIELDS.more}`, 'true', 'absent on the last item of the final part');
  }
  const envelope: Envelope = {
    pgfanout: version,
    source,
    batch,
    prev,
    part,
    ...(time === undefined ? {} : { time: time as string }),
    ...(origin === undefined ? {} : { origin }),
    ...(after === undefined ? {} : { after: after as string }),
    changes: items,
    final,
    ...(count === undefined ? {} : { count: count as number }),
  };
  return envelope;
}

const LSN = /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/;
const ORIGIN_KEYS = new Set<string>(Object.values(ORIGIN_FIELDS));

/** The LSN `text` (`pg_lsn` output, `16/B374D848`) as a number, for comparing. */
export function lsnValue(text: string): bigint {
  const [high, low] = text.split('/') as [string, string];
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
}

function validateOrigin(value: unknown): BatchOrigin {
  const path = FIELDS.origin;
  if (!isPlainObject(value)) throw new MalformedMessageError(path, describeValue(value), 'an object {"system","timeline","lsn"}');
  for (const key of Object.keys(value)) {
    if (!ORIGIN_KEYS.has(key)) throw new MalformedMessageError(`${path}.${key}`, 'present', `only the fields ${[...ORIGIN_KEYS].join(', ')}`);
  }
  const system = value[ORIGIN_FIELDS.system];
  if (typeof system !== 'string' || system.length > 20 || !DECIMAL.test(system) || BigInt(system) >= 2n ** 64n) {
    throw new MalformedMessageError(`${path}.${ORIGIN_FIELDS.system}`, describeValue(system), 'the source system identifier as a decimal string (an unsigned 64-bit number)');
  }
  const timeline = value[ORIGIN_FIELDS.timeline];
  if (!isIntegerIn(timeline, 1, 0xffffffff)) {
    throw new MalformedMessageError(`${path}.${ORIGIN_FIELDS.timeline}`, describeValue(timeline), 'an integer from 1 to 4294967295');
  }
  const lsn = value[ORIGIN_FIELDS.lsn];
  if (typeof lsn !== 'string' || !LSN.test(lsn)) {
    throw new MalformedMessageError(`${path}.${ORIGIN_FIELDS.lsn}`, describeValue(lsn), 'a WAL position as pg_lsn prints it, such as "16/B374D848"');
  }
  return { system, timeline, lsn };
}

function validateItem(value: unknown, index: number): ChangeItem {
  const path = `${FIELDS.changes}[${index}]`;
  if (!isPlainObject(value)) throw new MalformedMessageError(path, describeValue(value), 'a change object');
  const op = value[CHANGE_FIELDS.op];
  if (op !== 'I' && op !== 'U' && op !== 'D' && op !== 'T' && op !== 'S' && op !== '+') {
    throw new MalformedMessageError(`${path}.${CHANGE_FIELDS.op}`, describeValue(op), '"I", "U", "D", "T", "S" or "+"');
  }
  const allowedKeys = op === OPS.continuation ? CONTINUATION_KEYS : HEAD_KEYS;
  for (const key of Object.keys(value)) {
    if (!allowedKeys.has(key)) {
      throw new MalformedMessageError(`${path}.${key}`, 'present', `only the fields ${[...allowedKeys].join(', ')} on a "${op}" item`);
    }
  }
  const more = value[CHANGE_FIELDS.more];
  if (more !== undefined && more !== true) throw new MalformedMessageError(`${path}.${CHANGE_FIELDS.more}`, describeValue(more), 'absent or true');
  const old = value[CHANGE_FIELDS.old] === undefined ? undefined : validateImage(value[CHANGE_FIELDS.old], `${path}.${CHANGE_FIELDS.old}`);
  const neu = value[CHANGE_FIELDS.new] === undefined ? undefined : validateImage(value[CHANGE_FIELDS.new], `${path}.${CHANGE_FIELDS.new}`);
  const images = { ...(old ? { old } : {}), ...(neu ? { new: neu } : {}), ...(more ? { more: true as const } : {}) };
  if (op === OPS.continuation) return { op, ...images };

  for (const field of [CHANGE_FIELDS.schema, CHANGE_FIELDS.table] as const) {
    const name = value[field];
    // A schema change names its table only when the source knew it.
    const minLength = op === OPS.schema ? 0 : 1;
    if (typeof name !== 'string' || name.length < minLength || name.length > MAX_NAME_LENGTH) {
      throw new MalformedMessageError(
        `${path}.${field}`,
        describeValue(name),
        op === OPS.schema ? `a name of at most ${MAX_NAME_LENGTH} characters, or "" on an "S" change` : `a non-empty name of at most ${MAX_NAME_LENGTH} characters`,
      );
    }
  }
  const txid = value[CHANGE_FIELDS.txid];
  if (typeof txid !== 'string' || txid.length > 20 || !DECIMAL.test(txid)) {
    throw new MalformedMessageError(`${path}.${CHANGE_FIELDS.txid}`, describeValue(txid), 'a transaction id as a decimal string');
  }
  // A split change may not have reached its images yet; whole changes are checked in full.
  checkImages(op, old !== undefined, neu !== undefined, path, more === true);
  if (op === OPS.schema && more !== true) checkSchemaChange(neu, `${path}.${CHANGE_FIELDS.new}`);
  if (op === OPS.truncate && more !== true && old !== undefined) checkTruncatedPartition(old, `${path}.${CHANGE_FIELDS.old}`);
  return { op, schema: value[CHANGE_FIELDS.schema] as string, table: value[CHANGE_FIELDS.table] as string, txid, ...images };
}

/** The keys of an `S` change's `new` image. */
export const SCHEMA_CHANGE_KEYS = { sql: 'sql', searchPath: 'search_path' } as const;

/**
 * Checks the `new` image of a whole `S` change: `sql` a non-empty string, `search_path` a string,
 * nothing else. Returns the statement and search path.
 */
export function checkSchemaChange(image: RowImage | undefined, path: string): { readonly sql: string; readonly searchPath: string } {
  const sql = image?.[SCHEMA_CHANGE_KEYS.sql];
  const searchPath = image?.[SCHEMA_CHANGE_KEYS.searchPath];
  if (typeof sql !== 'string' || sql.trim() === '') {
    throw new MalformedMessageError(`${path}.${SCHEMA_CHANGE_KEYS.sql}`, describeValue(sql), 'the statement text of a schema change');
  }
  if (typeof searchPath !== 'string') {
    throw new MalformedMessageError(`${path}.${SCHEMA_CHANGE_KEYS.searchPath}`, describeValue(searchPath), 'the search path of a schema change, as text');
  }
  for (const key of Object.keys(image as RowImage)) {
    if (key !== SCHEMA_CHANGE_KEYS.sql && key !== SCHEMA_CHANGE_KEYS.searchPath) {
      throw new MalformedMessageError(`${path}[${JSON.stringify(key)}]`, 'present', `only "${SCHEMA_CHANGE_KEYS.sql}" and "${SCHEMA_CHANGE_KEYS.searchPath}" in a schema change`);
    }
  }
  return { sql, searchPath };
}

/** The keys of a `T` change's `old` image, which names the partition truncated. */
const TRUNCATED_PARTITION_KEYS = { schema: 'schema', table: 'table' } as const;

/** A partition named by a `T` change. */
interface TruncatedPartition {
  readonly schema: string;
  readonly table: string;
}

/** Validates the `old` image of a `T` change: the partition's schema and table names, nothing else. */
export function checkTruncatedPartition(image: RowImage, path: string): TruncatedPartition {
  const schema = image[TRUNCATED_PARTITION_KEYS.schema];
  const table = image[TRUNCATED_PARTITION_KEYS.table];
  for (const [key, name] of [[TRUNCATED_PARTITION_KEYS.schema, schema], [TRUNCATED_PARTITION_KEYS.table, table]] as const) {
    if (typeof name !== 'string' || name.length === 0 || name.length > MAX_NAME_LENGTH) {
      throw new MalformedMessageError(`${path}.${key}`, describeValue(name), `the truncated partition's ${key} name: a non-empty name of at most ${MAX_NAME_LENGTH} characters`);
    }
  }
  for (const key of Object.keys(image)) {
    if (key !== TRUNCATED_PARTITION_KEYS.schema && key !== TRUNCATED_PARTITION_KEYS.table) {
      throw new MalformedMessageError(`${path}[${JSON.stringify(key)}]`, 'present', `only "${TRUNCATED_PARTITION_KEYS.schema}" and "${TRUNCATED_PARTITION_KEYS.table}" in a truncated partition`);
    }
  }
  return { schema: schema as string, table: table as string };
}

/**
 * Checks that a change has the images its operation requires: I new; U old and new; D old; T none
 * (or, for one partition, old naming it); S new.
 * `partial` relaxes "required" (the change continues in later items) but never "forbidden".
 */
export function checkImages(op: ChangeOp, hasOld: boolean, hasNew: boolean, path: string, partial = false): void {
  const needsOld = op === 'U' || op === 'D';
  const needsNew = op === 'I' || op === 'U' || op === 'S';
  if ((hasOld && !needsOld && op !== 'T') || (!partial && needsOld && !hasOld)) {
    throw new MalformedMessageError(`${path}.${CHANGE_FIELDS.old}`, hasOld ? 'present' : 'missing', needsOld ? `an old image on a "${op}" change` : `no old image on a "${op}" change`);
  }
  if ((hasNew && !needsNew) || (!partial && needsNew && !hasNew)) {
    throw new MalformedMessageError(`${path}.${CHANGE_FIELDS.new}`, hasNew ? 'present' : 'missing', needsNew ? `a new image on a "${op}" change` : `no new image on a "${op}" change`);
  }
}

function validateImage(value: unknown, path: string): RowImage {
  if (!isPlainObject(value)) throw new MalformedMessageError(path, describeValue(value), 'an object mapping column names to strings or null');
  for (const [column, text] of Object.entries(value)) {
    if (column.length === 0 || column.length > MAX_NAME_LENGTH) {
      throw new MalformedMessageError(`${path}[${JSON.stringify(column)}]`, 'a column name of that length', `a non-empty name of at most ${MAX_NAME_LENGTH} characters`);
    }
    if (text !== null && typeof text !== 'string') {
      throw new MalformedMessageError(`${path}[${JSON.stringify(column)}]`, describeValue(text), 'a string (the value as PostgreSQL text) or null');
    }
  }
  return value as RowImage;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Reassembles whole changes from items in order (across parts), concatenating split values.
 * Holds every change in memory: meant for tests and tools that read small batches; the applier
 * reassembles inside the replica database instead.
 */
export function mergeChangeItems(items: Iterable<ChangeItem>): Change[] {
  const changes: Change[] = [];
  let open: { head: ChangeHead; old?: Map<string, string | null>; new?: Map<string, string | null> } | undefined;
  const add = (target: Map<string, string | null>, image: RowImage, path: string) => {
    for (const [column, text] of Object.entries(image)) {
      const before = target.get(column);
      if (before === undefined) target.set(column, text);
      else if (before === null || text === null) throw new MalformedMessageError(path, `a continued NULL in column ${JSON.stringify(column)}`, 'continuations of string values only');
      else target.set(column, before + text);
    }
  };
  let index = 0;
  for (const item of items) {
    const path = `change item ${index++}`;
    if (item.op === OPS.continuation) {
      if (!open) throw new MalformedMessageError(path, '"+"', 'a continuation only after an item with "more": true');
    } else {
      if (open) throw new MalformedMessageError(path, describeValue(item.op), 'a "+" continuation of the previous change');
      open = { head: item };
    }
    if (item.old) add((open.old ??= new Map()), item.old, path);
    if (item.new) add((open.new ??= new Map()), item.new, path);
    if (!item.more) {
      const { head } = open;
      checkImages(head.op, open.old !== undefined, open.new !== undefined, path);
      if (head.op === OPS.schema) checkSchemaChange(open.new && Object.fromEntries(open.new), `${path}.${CHANGE_FIELDS.new}`);
      if (head.op === OPS.truncate && open.old) checkTruncatedPartition(Object.fromEntries(open.old), `${path}.${CHANGE_FIELDS.old}`);
      changes.push({
        op: head.op,
        schema: head.schema,
        table: head.table,
        txid: head.txid,
        ...(open.old ? { old: Object.fromEntries(open.old) } : {}),
        ...(open.new ? { new: Object.fromEntries(open.new) } : {}),
      });
      open = undefined;
    }
  }
  if (open) throw new MalformedMessageError('changes', 'an unfinished split change at the end', 'a last item without "more"');
  return changes;
}
