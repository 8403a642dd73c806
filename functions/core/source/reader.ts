/**
 * Streaming reader of one source batch.
 *
 * `readBatch` runs `COPY (SELECT * FROM pgfanout.batch_values(id)) TO STDOUT` through
 * pg-copy-streams and turns PostgreSQL's COPY text format into {@link BatchToken}s as the bytes
 * arrive: a change token per event, then its column values, each value in one or more pieces.
 * No value and no batch is ever held whole, so a 100 MB value passes through in socket-sized
 * pieces.
 */
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import type { ChangeOp, ImageName } from '../wire/envelope.ts';
import { describeValue, InvalidArgumentError, InvalidStreamError, classifyDatabaseError } from '../wire/errors.ts';
import { isBigintText } from '../wire/envelope.ts';

/** The start of one change (one source event). Its values follow as `value` tokens. */
export interface ChangeToken {
  readonly kind: 'change';
  /** The event's id in the source log (decimal text). */
  readonly eventId: string;
  /** The source transaction id (xid8, decimal text). */
  readonly txid: string;
  /** The event's time as the source printed it. */
  readonly time: string;
  readonly op: ChangeOp;
  readonly schema: string;
  readonly table: string;
}

/**
 * A piece of one column value of the current change. A value arrives as one or more pieces with
 * the same image and column; `last` marks its final piece. SQL NULL is one piece with `text: null`.
 */
export interface ValueToken {
  readonly kind: 'value';
  readonly image: ImageName;
  readonly column: string;
  readonly text: string | null;
  readonly last: boolean;
}

/** What `readBatch` yields and `encodeBatch` consumes. */
export type BatchToken = ChangeToken | ValueToken;

/** Receives the fields of COPY text rows as they are decoded. */
export interface CopySink {
  /**
   * A piece of field `index` of the current row: `text` is decoded text (null for `\N`), `complete`
   * is true on the field's last piece. A field arrives as zero or more incomplete pieces with
   * non-empty text followed by exactly one complete piece.
   */
  field(index: number, text: string | null, complete: boolean): void;
  /** The current row ended after `fields` fields. */
  rowEnd(fields: number): void;
}

/** Latin-1 (here: ASCII) text of bytes `start`…`end` of a Buffer, by Node's fast path. */
function latin1(buffer: Buffer, start: number, end: number): string {
  return (buffer as unknown as { latin1Slice(start: number, end: number): string }).latin1Slice(start, end);
}

const TAB = 0x09;
const LF = 0x0a;
const BACKSLASH = 0x5c;

const enum_ = {
  none: 0,
  backslash: 1,
  octal: 2,
  hexStart: 3,
  hex: 4,
  nullCheck: 5,
} as const;
type EscapeState = (typeof enum_)[keyof typeof enum_];

const SIMPLE_ESCAPES: Readonly<Record<number, number>> = {
  0x62: 0x08, // \b
  0x66: 0x0c, // \f
  0x6e: 0x0a, // \n
  0x72: 0x0d, // \r
  0x74: 0x09, // \t
  0x76: 0x0b, // \v
};

function hexValue(b: number): number {
  if (b >= 0x30 && b <= 0x39) return b - 0x30;
  if (b >= 0x61 && b <= 0x66) return b - 0x61 + 10;
  if (b >= 0x41 && b <= 0x46) return b - 0x41 + 10;
  return -1;
}

/**
 * Incremental parser of PostgreSQL's COPY text format (tab delimiter, `\N` null), as documented
 * for COPY: rows end with a newline, fields are separated by tabs, and a backslash introduces
 * `\b \f \n \r \t \v`, `\digits` (1–3 octal digits), `\xdigits` (1–2 hex digits), or any other
 * character taken literally. A field that is exactly `\N` is NULL. Bytes are decoded as UTF-8
 * (invalid UTF-8 is an error), also when a character is split across chunks or written as
 * escaped bytes.
 */
export class CopyTextParser {
  readonly #sink: CopySink;
  readonly #decoder = new TextDecoder('utf-8', { fatal: true });
  #fieldIndex = 0;
  /** Text of the current field decoded from the current chunk, not yet handed to the sink. */
  #text = '';
  /** True once the current field has any content (so `\N` is no longer a null marker). */
  #hasData = false;
  /** True while bytes of the current field go through the streaming decoder. */
  #decoding = false;
  /** Decoded bytes of the current field not yet turned into text, and the OR of them. */
  #out: Buffer = Buffer.allocUnsafe(4096);
  #outLength = 0;
  #outHigh = 0;
  #state: EscapeState = enum_.none;
  #escapeValue = 0;
  #escapeDigits = 0;
  #rows = 0;

  constructor(sink: CopySink) {
    this.#sink = sink;
  }

  /** Rows completed so far. */
  get rows(): number {
    return this.#rows;
  }

  /** Feeds the next chunk of COPY data. */
  push(data: Uint8Array): void {
    const chunk = Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.#state !== enum_.none) {
        i = this.#escape(chunk, i);
        continue;
      }
      let j = i;
      let high = 0;
      while (j < n) {
        const b = chunk[j] as number;
        if (b === TAB || b === LF || b === BACKSLASH) break;
        high |= b;
        j++;
      }
      if (j === n) {
        if (j > i) this.#appendBytes(chunk, i, j, high);
        break;
      }
      const b = chunk[j] as number;
      if (b === BACKSLASH) {
        if (j > i) this.#appendBytes(chunk, i, j, high);
        this.#state = enum_.backslash;
      } else if (this.#outLength === 0 && this.#text === '' && !this.#decoding) {
        // The common case: a whole field inside this chunk, without escapes.
        this.#completeField(high < 0x80 ? latin1(chunk, i, j) : this.#decode(chunk.subarray(i, j), false), b === LF);
      } else {
        if (j > i) this.#appendBytes(chunk, i, j, high);
        this.#endField(b === LF);
      }
      i = j + 1;
    }
    this.#drain(false);
    if (this.#text.length > 0) {
      this.#sink.field(this.#fieldIndex, this.#text, false);
      this.#text = '';
    }
  }

  /** Declares the end of the data; throws if it stopped inside a row. */
  end(): void {
    if (this.#state !== enum_.none || this.#hasData || this.#fieldIndex > 0) {
      throw new InvalidStreamError(`COPY data ended inside row ${this.#rows + 1} (field ${this.#fieldIndex + 1}); expected a newline at the end of every row`);
    }
  }

  /** Handles the byte at `i` in an escape state; returns the next index to read. */
  #escape(chunk: Uint8Array, i: number): number {
    const b = chunk[i] as number;
    switch (this.#state) {
      case enum_.backslash: {
        const simple = SIMPLE_ESCAPES[b];
        if (simple !== undefined) {
          this.#state = enum_.none;
          this.#appendByte(simple);
        } else if (b >= 0x30 && b <= 0x37) {
          this.#state = enum_.octal;
          this.#escapeValue = b - 0x30;
          this.#escapeDigits = 1;
        } else if (b === 0x78) {
          this.#state = enum_.hexStart;
        } else if (b === 0x4e && !this.#hasData) {
          this.#state = enum_.nullCheck;
        } else {
          this.#state = enum_.none;
          this.#appendByte(b);
        }
        return i + 1;
      }
      case enum_.octal:
        if (b >= 0x30 && b <= 0x37) {
          this.#escapeValue = this.#escapeValue * 8 + (b - 0x30);
          if (++this.#escapeDigits === 3) {
            this.#state = enum_.none;
            this.#appendByte(this.#escapeValue & 0xff);
          }
          return i + 1;
        }
        this.#state = enum_.none;
        this.#appendByte(this.#escapeValue & 0xff);
        return i;
      case enum_.hexStart: {
        const h = hexValue(b);
        if (h >= 0) {
          this.#state = enum_.hex;
          this.#escapeValue = h;
          return i + 1;
        }
        this.#state = enum_.none;
        this.#appendByte(0x78);
        return i;
      }
      case enum_.hex: {
        const h = hexValue(b);
        this.#state = enum_.none;
        if (h >= 0) {
          this.#appendByte(this.#escapeValue * 16 + h);
          return i + 1;
        }
        this.#appendByte(this.#escapeValue);
        return i;
      }
      case enum_.nullCheck:
        this.#state = enum_.none;
        if (b === TAB || b === LF) {
          this.#endField(b === LF, true);
          return i + 1;
        }
        this.#appendByte(0x4e);
        return i;
      default:
        throw new Error(`unreachable parser state ${String(this.#state)}`);
    }
  }

  #appendBytes(chunk: Uint8Array, start: number, end: number, high: number): void {
    this.#hasData = true;
    const n = end - start;
    if (this.#outLength + n > this.#out.length) this.#grow(n);
    this.#out.set(chunk.subarray(start, end), this.#outLength);
    this.#outLength += n;
    this.#outHigh |= high;
  }

  #appendByte(byte: number): void {
    this.#hasData = true;
    if (this.#outLength + 1 > this.#out.length) this.#grow(1);
    this.#out[this.#outLength++] = byte;
    this.#outHigh |= byte;
  }

  #grow(extra: number): void {
    const bigger = Buffer.allocUnsafe(Math.max(this.#out.length * 2, this.#outLength + extra));
    this.#out.copy(bigger, 0, 0, this.#outLength);
    this.#out = bigger;
  }

  /** Decodes the bytes collected for the current field into `#text`; `final` ends the field. */
  #drain(final: boolean): void {
    if (this.#outLength > 0) {
      if (!this.#decoding && this.#outHigh < 0x80) {
        this.#text += latin1(this.#out, 0, this.#outLength);
      } else {
        this.#decoding = true;
        this.#text += this.#decode(this.#out.subarray(0, this.#outLength), true);
      }
      this.#outLength = 0;
      this.#outHigh = 0;
    }
    if (final && this.#decoding) {
      this.#text += this.#decode(undefined, false);
      this.#decoding = false;
    }
  }

  #decode(bytes: Uint8Array | undefined, stream: boolean): string {
    try {
      return this.#decoder.decode(bytes, { stream });
    } catch (cause) {
      throw new InvalidStreamError(`COPY data is not valid UTF-8 in row ${this.#rows + 1}, field ${this.#fieldIndex + 1}; the source must send UTF-8`, cause);
    }
  }

  #endField(rowEnd: boolean, isNull = false): void {
    this.#drain(true);
    const text = this.#text;
    this.#text = '';
    this.#completeField(isNull ? null : text, rowEnd);
  }

  #completeField(text: string | null, rowEnd: boolean): void {
    this.#hasData = false;
    this.#sink.field(this.#fieldIndex, text, true);
    if (rowEnd) {
      this.#sink.rowEnd(this.#fieldIndex + 1);
      this.#fieldIndex = 0;
      this.#rows++;
    } else {
      this.#fieldIndex++;
    }
  }
}

/** Columns of `pgfanout.batch_values`, in order. */
const BATCH_VALUES_COLUMNS = ['ev_id', 'ev_txid', 'ev_time', 'ev_op', 'ev_schema', 'ev_table', 'image', 'col', 'value'] as const;
const VALUE_FIELD = BATCH_VALUES_COLUMNS.length - 1;
/** Longest non-value field accepted from `batch_values` (names, ids, times are far shorter). */
const MAX_HEADER_FIELD = 64 * 1024;

function compareDecimal(a: string, b: string): number {
  return a.length === b.length ? (a < b ? -1 : a > b ? 1 : 0) : a.length - b.length;
}

/** Turns `batch_values` rows into tokens; collects them until `take` is called. */
export class BatchTokenAssembler implements CopySink {
  #tokens: BatchToken[] = [];
  readonly #header: (string | null)[] = [];
  #partial = '';
  #valueStarted = false;
  #event: { id: string; txid: string; op: string; schema: string; table: string; image: string } | undefined;
  #image: ImageName | undefined;
  #column = '';
  #row = 0;
  #events = 0;

  /** Number of events (changes) seen so far. */
  get events(): number {
    return this.#events;
  }

  /** Returns and forgets the tokens collected so far. */
  take(): BatchToken[] {
    const tokens = this.#tokens;
    this.#tokens = [];
    return tokens;
  }

  field(index: number, text: string | null, complete: boolean): void {
    if (index < VALUE_FIELD) {
      if (complete && this.#partial === '') {
        this.#header[index] = text;
        return;
      }
      if (text !== null) {
        this.#partial += text;
        if (this.#partial.length > MAX_HEADER_FIELD) this.#fail(`column ${BATCH_VALUES_COLUMNS[index]} is longer than ${MAX_HEADER_FIELD} characters`);
      }
      if (complete) {
        this.#header[index] = text === null ? null : this.#partial;
        this.#partial = '';
      }
      return;
    }
    if (index > VALUE_FIELD) this.#fail(`a row has more than ${BATCH_VALUES_COLUMNS.length} columns`);
    if (!this.#valueStarted) {
      this.#valueStarted = true;
      this.#startValue();
    }
    if (this.#image === undefined) {
      if (text !== null) this.#fail(`a TRUNCATE event carries a value (${describeValue(text)})`);
      return;
    }
    if (text === null || complete || text.length > 0) this.#tokens.push({ kind: 'value', image: this.#image, column: this.#column, text, last: complete });
  }

  rowEnd(fields: number): void {
    if (fields !== BATCH_VALUES_COLUMNS.length) this.#fail(`a row has ${fields} columns; batch_values returns ${BATCH_VALUES_COLUMNS.length}`);
    this.#valueStarted = false;
    this.#row++;
  }

  #startValue(): void {
    const [id, txid, time, op, schema, table, image, column] = this.#header;
    const name = (i: number) => BATCH_VALUES_COLUMNS[i] as string;
    const required = [id, txid, time, op, schema, table, image];
    required.forEach((v, i) => {
      if (v === null || v === undefined) this.#fail(`${name(i)} is NULL`);
    });
    if (!isBigintText(id)) this.#fail(`ev_id is ${describeValue(id)}, not a decimal id`);
    if (op !== 'I' && op !== 'U' && op !== 'D' && op !== 'T' && op !== 'S') this.#fail(`ev_op is ${describeValue(op)}; allowed: I, U, D, T, S`);
    const event = this.#event;
    if (event === undefined || event.id !== id) {
      if (event !== undefined && compareDecimal(id, event.id) < 0) this.#fail(`ev_id ${id} follows ${event.id}; rows must be ordered by ev_id`);
      this.#event = { id, txid: txid as string, op, schema: schema as string, table: table as string, image: '' };
      this.#events++;
      this.#tokens.push({ kind: 'change', eventId: id, txid: txid as string, time: time as string, op, schema: schema as string, table: table as string });
    } else if (event.txid !== txid || event.op !== op || event.schema !== schema || event.table !== table) {
      this.#fail(`event ${id} changes its transaction, operation or table between rows`);
    }
    const current = this.#event as { image: string };
    if (image === '-') {
      if (op !== 'T' || current.image !== '') this.#fail(`image "-" appears on a ${op} event or after other rows of event ${id}`);
      if (column !== null) this.#fail(`a TRUNCATE event has a column name ${describeValue(column)}`);
      this.#image = undefined;
    } else if (image === 'k' || image === 'n') {
      // A TRUNCATE of one partition names it in its old image (schema, table).
      if (op === 'T' && image !== 'k') this.#fail(`a TRUNCATE event has a new row image (event ${id})`);
      if (op === 'S' && image !== 'n') this.#fail(`a schema change event has an old image (event ${id})`);
      if (current.image === '-' || (current.image === 'n' && image === 'k')) this.#fail(`image ${image} follows image ${current.image} in event ${id}; rows must be ordered by image`);
      if (column === null || column === undefined || column.length === 0) this.#fail(`col is ${describeValue(column)} in event ${id}`);
      this.#image = image === 'k' ? 'old' : 'new';
      this.#column = column as string;
    } else {
      this.#fail(`image is ${describeValue(image)}; allowed: k, n, -`);
    }
    current.image = image as string;
  }

  #fail(reason: string): never {
    throw new InvalidStreamError(`pgfanout.batch_values row ${this.#row + 1}: ${reason}`);
  }
}

/** Normalises a batch id argument to decimal text, or throws naming the value. */
export function batchIdText(batchId: bigint | string | number): string {
  const text = typeof batchId === 'bigint' || typeof batchId === 'number' ? String(batchId) : batchId;
  if (!isBigintText(text) || text === '0') {
    throw new InvalidArgumentError(`batch id ${describeValue(batchId)} is not allowed; expected a positive decimal bigint such as "412"`);
  }
  return text;
}

/** The session setting through which the batch id reaches the COPY statement (COPY takes no parameters). */
export const READ_BATCH_SETTING = 'pgfanout.read_batch_id';
/** The COPY statement `readBatch` runs. */
export const READ_BATCH_SQL = `COPY (SELECT * FROM pgfanout.batch_values(pg_catalog.current_setting('${READ_BATCH_SETTING}')::pg_catalog.int8)) TO STDOUT`;

/** Key of the method through which a token stream also hands over whole chunks of tokens. */
export const TOKEN_BATCHES = Symbol.for('pgfanout.tokenBatches');

/** A token stream that can also be read a chunk of tokens at a time (same tokens, fewer awaits). */
export interface TokenBatches {
  [TOKEN_BATCHES](): AsyncIterable<readonly BatchToken[]>;
}

/**
 * Streams the values of batch `batchId` as tokens. The client must not be used for anything else
 * until the iteration ends; if the consumer stops early, the rest of the COPY is read and
 * discarded so the connection stays usable. Iterate it once.
 */
export function readBatch(client: pg.ClientBase, batchId: bigint | string): AsyncIterable<BatchToken> & TokenBatches {
  const id = batchIdText(batchId);
  return {
    [TOKEN_BATCHES]: () => readTokenChunks(client, id),
    async *[Symbol.asyncIterator]() {
      for await (const tokens of readTokenChunks(client, id)) yield* tokens;
    },
  };
}

async function* readTokenChunks(client: pg.ClientBase, id: string): AsyncIterable<readonly BatchToken[]> {
  try {
    await client.query('SELECT pg_catalog.set_config($1, $2, false)', [READ_BATCH_SETTING, id]);
  } catch (err) {
    throw classifyDatabaseError(err, `reading batch ${id}`);
  }
  const assembler = new BatchTokenAssembler();
  const parser = new CopyTextParser(assembler);
  const stream = client.query(copyTo(READ_BATCH_SQL));
  // Stopping early must not destroy the stream: the rest of the COPY still has to be read.
  const chunks = () => stream.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
  let drained = false;
  try {
    for await (const chunk of chunks()) {
      parser.push(chunk);
      const tokens = assembler.take();
      if (tokens.length > 0) yield tokens;
    }
    drained = true;
    parser.end();
  } catch (err) {
    if (stream.errored) drained = true;
    throw classifyDatabaseError(err, `reading batch ${id}`);
  } finally {
    if (!drained && !stream.errored && !stream.readableEnded) {
      // The consumer stopped early: read the rest so the connection can run the next query.
      for await (const _chunk of chunks()) {
        /* discard */
      }
    }
  }
}
