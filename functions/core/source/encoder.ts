/**
 * Encodes a batch's token stream into envelope messages (see `envelope.ts`) that each fit the
 * SNS/SQS limit, counted in UTF-8 bytes of the final body with JSON escaping included.
 *
 * Packing rules, all decided by content alone so that the same batch always encodes to the same
 * messages byte for byte (a re-published batch then deduplicates):
 * - changes are appended to the current message while they fit;
 * - a change that does not fit what is left starts the next message (part);
 * - a change too large for an empty message starts a fresh message and is written as split items
 *   (`"more": true`, then `"+"` items) that fill every message to the limit, cutting values
 *   between characters where needed.
 *
 * Memory: one message being filled plus at most one message's worth of the current change.
 */
import { CHANGE_FIELDS, DIGEST_HEX_LENGTH, ENVELOPE_VERSION, FIELDS, isBigintText, isTimestampText, MAX_SOURCE_ID_LENGTH, OPS, ORIGIN_FIELDS, validateEnvelope, type BatchOrigin, type ChangeOp, type ImageName } from '../wire/envelope.ts';
import { describeValue, InvalidArgumentError, InvalidStreamError } from '../wire/errors.ts';
import { messageDeduplicationId, messageGroupId } from '../wire/ids.ts';
import { bodyDigest } from '../wire/digest.ts';
import { TOKEN_BATCHES, type BatchToken, type TokenBatches } from './reader.ts';
import { isIntegerIn } from '../integer.ts';

/** SNS's largest message body. */
export const DEFAULT_MAX_MESSAGE_BYTES = 262_144;
/** Smallest `maxMessageBytes` accepted. */
export const MIN_MAX_MESSAGE_BYTES = 1024;
/** Largest `maxMessageBytes` accepted (SQS's own limit; SNS stops at the default). */
export const MAX_MAX_MESSAGE_BYTES = 1_048_576;

/** What the publisher knows about the batch (from `pgfanout.next_batch()`). */
export interface BatchMeta {
  readonly sourceId: string;
  readonly batchId: string;
  readonly prevBatchId: string;
  /** When given, the encoder checks that the stream held exactly this many changes. */
  readonly eventCount?: string;
  /** Source time of the batch's last event; carried as the envelope's `time`. */
  readonly lastEventTime?: string;
  /** Where on the source the batch was made (`pgfanout.batch_encoding`); carried as the envelope's `origin`. */
  readonly origin?: BatchOrigin;
}

/** Options of {@link encodeBatch}. */
export interface EncodeOptions {
  /** Largest body in UTF-8 bytes. @default 262144 */
  readonly maxMessageBytes?: number;
}

/** One message to publish. */
export interface OutgoingMessage {
  /** The JSON envelope. */
  readonly body: string;
  /** UTF-8 length of `body`; never above `maxMessageBytes`. */
  readonly bytes: number;
  /** FIFO message group id (one per source). */
  readonly groupId: string;
  /** FIFO deduplication id (source, batch, part, digest of `body`). */
  readonly dedupId: string;
  readonly batchId: string;
  readonly part: number;
  readonly final: boolean;
  /** Number of changes that start in this message. */
  readonly changes: number;
}


/**
 * U+FFFE and U+FFFF: valid in PostgreSQL text and in JSON, but outside the characters SQS
 * accepts in a message body (`#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD |
 * #x10000 to #x10FFFF`, https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html):
 * SNS accepts such a message and its delivery to SQS fails. The encoder writes them as the
 * JSON escapes `\ufffe` and `\uffff`, which every JSON parser turns back into the same
 * characters. The other characters SQS refuses are escaped by JSON itself (controls below
 * U+0020 and lone surrogates) or cannot occur in PostgreSQL text (U+0000).
 */
const SQS_UNSAFE = /[\uFFFE\uFFFF]/;
const SQS_UNSAFE_ALL = /[\uFFFE\uFFFF]/g;

/** JSON text of `text` (quotes included) with the characters SQS refuses escaped. */
function jsonString(text: string): string {
  const json = JSON.stringify(text);
  return SQS_UNSAFE.test(json) ? json.replace(SQS_UNSAFE_ALL, (c) => `\\u${c.charCodeAt(0).toString(16)}`) : json;
}

/** UTF-8 bytes of one UTF-16 code unit (non-surrogate) once JSON-escaped inside a string. */
function escapedUnitBytes(code: number): number {
  if (code < 0x20) return code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d ? 2 : 6;
  if (code === 0x22 || code === 0x5c) return 2;
  if (code < 0x80) return 1;
  if (code < 0x800) return 2;
  if (code >= 0xfffe) return 6;
  return 3;
}

/**
 * The longest prefix of `text` whose JSON-escaped form fits in `room` UTF-8 bytes, never
 * cutting a surrogate pair. Returns its length in code units and its escaped byte count.
 */
export function fittingPrefix(text: string, room: number): { readonly length: number; readonly bytes: number } {
  let bytes = 0;
  let i = 0;
  while (i < text.length) {
    const code = text.charCodeAt(i);
    let width = 1;
    let cost: number;
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        width = 2;
        cost = 4;
      } else cost = 6;
    } else if (code >= 0xd800 && code <= 0xdfff) cost = 6;
    else cost = escapedUnitBytes(code);
    if (bytes + cost > room) break;
    bytes += cost;
    i += width;
  }
  return { length: i, bytes };
}

/** JSON string literal (with quotes) and its UTF-8 size. */
interface Encoded {
  readonly text: string;
  readonly bytes: number;
}

function encode(text: string): Encoded {
  if (text.length < 256 && PLAIN_ASCII.test(text)) return { text: `"${text}"`, bytes: text.length + 2 };
  const json = jsonString(text);
  return { text: json, bytes: Buffer.byteLength(json) };
}

/** JSON-escaped content of a string (without quotes) and its size. */
/** Text that JSON leaves as it is, one byte per character. */
const PLAIN_ASCII = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

function escapeContent(text: string): Encoded {
  if (text.length < 256 && PLAIN_ASCII.test(text)) return { text, bytes: text.length };
  const json = jsonString(text);
  const inner = json.slice(1, -1);
  return { text: inner, bytes: Buffer.byteLength(json) - 2 };
}

const MORE_SUFFIX = `,"${CHANGE_FIELDS.more}":true}`;
const IMAGE_OPEN: Readonly<Record<ImageName, string>> = { old: `,"${CHANGE_FIELDS.old}":{`, new: `,"${CHANGE_FIELDS.new}":{` };
const CONTINUATION_HEAD = `{"${CHANGE_FIELDS.op}":"${OPS.continuation}"`;
/** Room kept for the trailer: `],"final":true,"count":<up to 16 digits>}`. */
const TRAILER_RESERVE = `],"${FIELDS.final}":true,"${FIELDS.count}":9007199254740991}`.length;

/** One syntactic step of a change, kept while the change is buffered so it can be replayed split. */
type Atom =
  | { readonly kind: 'column'; readonly image: ImageName; readonly column: Encoded; readonly isNull: boolean }
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'endValue' };

function validateMeta(batch: BatchMeta, maxBytes: number): void {
  const problems: string[] = [];
  if (typeof batch.sourceId !== 'string' || batch.sourceId.length === 0 || batch.sourceId.length > MAX_SOURCE_ID_LENGTH) {
    problems.push(`sourceId is ${describeValue(batch.sourceId)}; allowed: a non-empty string of at most ${MAX_SOURCE_ID_LENGTH} characters`);
  }
  if (!isBigintText(batch.batchId) || batch.batchId === '0') problems.push(`batchId is ${describeValue(batch.batchId)}; allowed: a positive decimal bigint`);
  else if (!isBigintText(batch.prevBatchId) || BigInt(batch.prevBatchId) >= BigInt(batch.batchId)) {
    problems.push(`prevBatchId is ${describeValue(batch.prevBatchId)}; allowed: a decimal bigint below batchId ${batch.batchId}`);
  }
  if (batch.origin !== undefined) {
    try {
      validateEnvelope({ [FIELDS.version]: ENVELOPE_VERSION, [FIELDS.source]: 's', [FIELDS.batch]: '1', [FIELDS.prev]: '0', [FIELDS.part]: 0, [FIELDS.origin]: batch.origin, [FIELDS.changes]: [], [FIELDS.final]: true, [FIELDS.count]: 0 });
    } catch (err) {
      problems.push(`origin is ${describeValue(batch.origin)}: ${(err as Error).message}`);
    }
  }
  if (batch.eventCount !== undefined && !isBigintText(batch.eventCount)) problems.push(`eventCount is ${describeValue(batch.eventCount)}; allowed: a decimal count`);
  if (batch.lastEventTime !== undefined && !isTimestampText(batch.lastEventTime)) {
    problems.push(`lastEventTime is ${describeValue(batch.lastEventTime)}; allowed: a timestamp with time zone such as "2024-05-01T12:00:00.123Z"`);
  }
  if (!isIntegerIn(maxBytes, MIN_MAX_MESSAGE_BYTES, MAX_MAX_MESSAGE_BYTES)) {
    problems.push(`maxMessageBytes is ${describeValue(maxBytes)}; allowed: an integer from ${MIN_MAX_MESSAGE_BYTES} to ${MAX_MAX_MESSAGE_BYTES}`);
  }
  if (problems.length > 0) throw new InvalidArgumentError(`encodeBatch: ${problems.join('; ')}`);
}

/**
 * Encodes one batch into messages. Deterministic: the same batch and options give the same
 * messages byte for byte, however the token stream was cut into pieces.
 */
export async function* encodeBatch(batch: BatchMeta, tokens: AsyncIterable<BatchToken> | Iterable<BatchToken>, options: EncodeOptions = {}): AsyncIterable<OutgoingMessage> {
  const maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  validateMeta(batch, maxBytes);
  const encoder = new BatchEncoder(batch, maxBytes);
  const batched = (tokens as Partial<TokenBatches>)[TOKEN_BATCHES];
  if (typeof batched === 'function') {
    // readBatch's streams also hand tokens over a chunk at a time, which saves an await per token.
    for await (const group of batched.call(tokens)) {
      for (const token of group) encoder.push(token);
      if (encoder.ready > 0) yield* encoder.take();
    }
  } else {
    for await (const token of tokens) {
      encoder.push(token);
      if (encoder.ready > 0) yield* encoder.take();
    }
  }
  yield* encoder.finish();
}

/** The synchronous engine behind {@link encodeBatch}: push tokens, take finished messages. */
export class BatchEncoder {
  readonly #batch: BatchMeta;
  readonly #maxBytes: number;
  readonly #groupId: string;
  readonly #names = new Map<string, Encoded>();
  #ready: OutgoingMessage[] = [];

  // The message being filled.
  #part = 0;
  #after: string | undefined;
  #header = '';
  #budget = 0;
  #nextBudget = 0;
  #pieces: string[] = [];
  #used = 0;
  #items = 0;
  #changesInMessage = 0;
  #total = 0;

  // The change being read.
  #head: Encoded | undefined;
  #op: ChangeOp | undefined;
  #image: ImageName | undefined;
  #firstInImage = true;
  #valueColumn: string | undefined;
  #imagesSeen = new Set<ImageName>();
  // Buffer mode: the change so far, encoded and as atoms.
  #buffered: string[] = [];
  #bufferedBytes = 0;
  #atoms: Atom[] = [];
  /** Split mode: the change is being written straight into messages. */
  #splitting = false;
  /** Split mode: the image and whether a value string are open in the current item. */
  #openImage: ImageName | undefined;
  #openValue = false;
  /** Split mode: the image and (non-null) column being written, to reopen after a break. */
  #logicalImage: ImageName | undefined;
  #logicalColumn: Encoded | undefined;
  /** Split mode: no column written yet in the open image of the current item. */
  #splitFirst = true;
  /** A high surrogate held back from the end of a piece until its pair arrives. */
  #heldSurrogate = '';
  /** Split mode: something beyond reopening was written since the last break. */
  #progress = false;

  constructor(batch: BatchMeta, maxBytes: number) {
    this.#batch = batch;
    this.#maxBytes = maxBytes;
    this.#groupId = messageGroupId(batch.sourceId);
    this.#startMessage();
  }

  /** Number of completed messages waiting to be taken. */
  get ready(): number {
    return this.#ready.length;
  }

  /** Messages completed so far (and forgets them). */
  take(): OutgoingMessage[] {
    const ready = this.#ready;
    this.#ready = [];
    return ready;
  }

  /** Adds one token. */
  push(token: BatchToken): void {
    if (token.kind === 'change') {
      if (this.#valueColumn !== undefined) this.#fail(`change ${token.eventId} starts while column ${describeValue(this.#valueColumn)} is unfinished`);
      this.#endChange();
      this.#beginChange(token.op, token.schema, token.table, token.txid);
      return;
    }
    if (this.#head === undefined) this.#fail('a value arrived before any change');
    if (this.#valueColumn === undefined) {
      if (token.image !== this.#image) {
        if (this.#imagesSeen.has(token.image) || (token.image === 'old' && this.#imagesSeen.has('new'))) {
          this.#fail(`image ${token.image} of a ${this.#op} change is out of order (old image first, then new, each column once)`);
        }
        // T: the old image names the partition truncated (see the envelope).
        const allowed = token.image === 'old' ? this.#op === 'U' || this.#op === 'D' || this.#op === 'T' : this.#op === 'I' || this.#op === 'U' || this.#op === 'S';
        if (!allowed) this.#fail(`a ${this.#op} change has ${token.image === 'old' ? 'an old' : 'a new'} image`);
        this.#imagesSeen.add(token.image);
        this.#image = token.image;
        this.#firstInImage = true;
      }
      this.#atom({ kind: 'column', image: token.image, column: this.#name(token.column), isNull: token.text === null });
      if (token.text === null) {
        if (!token.last) this.#fail(`NULL value of column ${describeValue(token.column)} is not its last piece`);
        return;
      }
      this.#valueColumn = token.column;
    } else if (token.column !== this.#valueColumn || token.image !== this.#image || token.text === null) {
      this.#fail(`column ${describeValue(token.column)} starts while column ${describeValue(this.#valueColumn)} is unfinished`);
    }
    let text = this.#heldSurrogate + token.text;
    this.#heldSurrogate = '';
    const lastCode = text.charCodeAt(text.length - 1);
    if (!token.last && lastCode >= 0xd800 && lastCode <= 0xdbff) {
      // Never cut a surrogate pair, whatever the pieces: keep the high half for the next piece.
      this.#heldSurrogate = text.slice(-1);
      text = text.slice(0, -1);
    }
    if (text.length > 0) this.#atom({ kind: 'text', text });
    if (token.last) {
      this.#valueColumn = undefined;
      this.#atom({ kind: 'endValue' });
    }
  }

  /** Ends the stream and returns the remaining messages (the last one final). */
  finish(): OutgoingMessage[] {
    if (this.#valueColumn !== undefined) this.#fail(`the stream ended inside column ${describeValue(this.#valueColumn)}`);
    this.#endChange();
    if (this.#batch.eventCount !== undefined && BigInt(this.#batch.eventCount) !== BigInt(this.#total)) {
      this.#fail(`the batch holds ${this.#total} changes but next_batch reported ${this.#batch.eventCount}`);
    }
    this.#flush(true);
    return this.take();
  }

  #fail(reason: string): never {
    throw new InvalidStreamError(`encoding batch ${this.#batch.batchId} of source ${this.#batch.sourceId}: ${reason}`);
  }

  #name(name: string): Encoded {
    let encoded = this.#names.get(name);
    if (encoded === undefined) {
      encoded = encode(name);
      if (this.#names.size < 10_000) this.#names.set(name, encoded);
    }
    return encoded;
  }

  // ---- messages ----

  #startMessage(): void {
    this.#header = this.#headerOf(this.#part, this.#after);
    this.#budget = this.#maxBytes - Buffer.byteLength(this.#header) - TRAILER_RESERVE;
    this.#nextBudget = this.#budgetOf(this.#part + 1);
    this.#pieces = [];
    this.#used = 0;
    this.#items = 0;
    this.#changesInMessage = 0;
  }

  /** Budget of the message a change would move to: this one if empty, else the next part's. */
  #freshBudget(): number {
    return this.#items === 0 ? this.#budget : this.#nextBudget;
  }

  /** Budget of part `part` (whose header carries an `after` digest when part > 0). */
  #budgetOf(part: number): number {
    const header = this.#headerOf(part, part > 0 ? '0'.repeat(DIGEST_HEX_LENGTH) : undefined);
    return this.#maxBytes - Buffer.byteLength(header) - TRAILER_RESERVE;
  }

  /** The envelope up to the opening of `changes`, for part `part` following digest `after`. */
  #headerOf(part: number, after: string | undefined): string {
    const b = this.#batch;
    let header = `{"${FIELDS.version}":${ENVELOPE_VERSION},"${FIELDS.source}":${jsonString(b.sourceId)},"${FIELDS.batch}":"${b.batchId}","${FIELDS.prev}":"${b.prevBatchId}","${FIELDS.part}":${part}`;
    if (b.lastEventTime !== undefined) header += `,"${FIELDS.time}":${jsonString(b.lastEventTime)}`;
    if (b.origin !== undefined) {
      const o = b.origin;
      header += `,"${FIELDS.origin}":{"${ORIGIN_FIELDS.system}":"${o.system}","${ORIGIN_FIELDS.timeline}":${o.timeline},"${ORIGIN_FIELDS.lsn}":"${o.lsn}"}`;
    }
    if (after !== undefined) header += `,"${FIELDS.after}":"${after}"`;
    return `${header},"${FIELDS.changes}":[`;
  }

  #flush(final: boolean): void {
    const trailer = final ? `],"${FIELDS.final}":true,"${FIELDS.count}":${this.#total}}` : `],"${FIELDS.final}":false}`;
    const body = this.#header + this.#pieces.join('') + trailer;
    const bytes = Buffer.byteLength(body);
    if (bytes > this.#maxBytes) this.#fail(`internal error: part ${this.#part} is ${bytes} bytes, above the limit ${this.#maxBytes}`);
    const digest = bodyDigest(body);
    this.#ready.push({
      body,
      bytes,
      groupId: this.#groupId,
      dedupId: messageDeduplicationId(this.#batch.sourceId, this.#batch.batchId, this.#part, digest),
      batchId: this.#batch.batchId,
      part: this.#part,
      final,
      changes: this.#changesInMessage,
    });
    if (!final) {
      this.#after = digest;
      this.#part++;
      this.#startMessage();
    }
  }

  /** Appends raw item text to the current message. */
  #write(text: string, bytes: number): void {
    this.#pieces.push(text);
    this.#used += bytes;
  }

  // ---- changes ----

  #beginChange(op: ChangeOp, schema: string, table: string, txid: string): void {
    const schemaName = this.#name(schema);
    const tableName = this.#name(table);
    const txidText = this.#name(txid);
    const head = `{"${CHANGE_FIELDS.op}":"${op}","${CHANGE_FIELDS.schema}":${schemaName.text},"${CHANGE_FIELDS.table}":${tableName.text},"${CHANGE_FIELDS.txid}":${txidText.text}`;
    this.#head = { text: head, bytes: head.length - schemaName.text.length - tableName.text.length - txidText.text.length + schemaName.bytes + tableName.bytes + txidText.bytes };
    this.#op = op;
    this.#image = undefined;
    this.#imagesSeen.clear();
    this.#buffered = [head];
    this.#bufferedBytes = this.#head.bytes;
    this.#atoms = [];
    this.#splitting = false;
    this.#total++;
    this.#checkBuffered();
  }

  #endChange(): void {
    const head = this.#head;
    if (head === undefined) return;
    const op = this.#op as ChangeOp;
    if ((op === 'I' || op === 'U' || op === 'S') && !this.#imagesSeen.has('new')) this.#fail(`a ${op} change has no new image`);
    if ((op === 'U' || op === 'D') && !this.#imagesSeen.has('old')) this.#fail(`a ${op} change has no old image`);
    if (this.#splitting) {
      // Always fits: every split write kept room for closing with `,"more":true}`.
      const closing = this.#openImage !== undefined ? '}}' : '}';
      this.#write(closing, closing.length);
    } else {
      const closing = this.#image !== undefined ? '}}' : '}';
      this.#buffered.push(closing);
      this.#bufferedBytes += closing.length;
      const text = this.#buffered.join('');
      const separator = this.#items > 0 ? 1 : 0;
      if (this.#used + separator + this.#bufferedBytes > this.#budget) this.#flush(false);
      if (this.#items > 0) this.#write(',', 1);
      this.#write(text, this.#bufferedBytes);
      this.#items++;
      this.#changesInMessage++;
    }
    this.#head = undefined;
    this.#buffered = [];
    this.#atoms = [];
  }

  #atom(atom: Atom): void {
    if (this.#splitting) {
      this.#splitAtom(atom);
      return;
    }
    this.#atoms.push(atom);
    switch (atom.kind) {
      case 'column': {
        let text = '';
        if (this.#firstInImage) {
          if (this.#buffered.length > 1 && this.#imagesSeen.size > 1) text += '}';
          text += IMAGE_OPEN[atom.image];
        } else text += ',';
        this.#firstInImage = false;
        const asciiBytes = text.length + 1 + (atom.isNull ? 4 : 1);
        text += `${atom.column.text}:${atom.isNull ? 'null' : '"'}`;
        this.#buffered.push(text);
        this.#bufferedBytes += asciiBytes + atom.column.bytes;
        break;
      }
      case 'text': {
        const content = escapeContent(atom.text);
        this.#buffered.push(content.text);
        this.#bufferedBytes += content.bytes;
        break;
      }
      case 'endValue':
        this.#buffered.push('"');
        this.#bufferedBytes += 1;
        break;
    }
    this.#checkBuffered();
  }

  /** Switches to split mode once the buffered change cannot fit an empty message. */
  #checkBuffered(): void {
    // The change still needs at least its closing brace(s) and quote.
    const closing = 1 + (this.#image !== undefined ? 1 : 0) + (this.#valueColumn !== undefined ? 1 : 0);
    if (this.#bufferedBytes + closing <= this.#freshBudget()) return;
    if (this.#items > 0) this.#flush(false);
    this.#splitting = true;
    this.#openImage = undefined;
    this.#openValue = false;
    this.#logicalColumn = undefined;
    this.#logicalImage = undefined;
    const head = this.#head as Encoded;
    if (head.bytes + MORE_SUFFIX.length > this.#budget) this.#tooSmall();
    this.#write(head.text, head.bytes);
    this.#items++;
    this.#changesInMessage++;
    this.#progress = true;
    const atoms = this.#atoms;
    this.#atoms = [];
    this.#buffered = [];
    for (const atom of atoms) this.#splitAtom(atom);
  }

  #tooSmall(): never {
    throw new InvalidArgumentError(
      `encodeBatch: maxMessageBytes ${this.#maxBytes} is too small for batch ${this.#batch.batchId}: a change's header and one column name do not fit in one message; allowed: a larger limit`,
    );
  }

  /** Writes `text` if, afterwards, the item could still be closed within the budget. */
  #tryEmit(text: string, bytes: number, openImage: ImageName | undefined, openValue: boolean): boolean {
    const close = (openValue ? 1 : 0) + (openImage !== undefined ? 1 : 0) + MORE_SUFFIX.length;
    if (this.#used + bytes + close > this.#budget) return false;
    this.#write(text, bytes);
    this.#openImage = openImage;
    this.#openValue = openValue;
    return true;
  }

  /** Closes the current split item with `"more":true`, flushes, and opens a `"+"` item. */
  #splitBreak(): void {
    if (!this.#progress) this.#tooSmall();
    let close = '';
    if (this.#openValue) close += '"';
    if (this.#openImage !== undefined) close += '}';
    close += MORE_SUFFIX;
    this.#write(close, close.length);
    this.#flush(false);
    this.#write(CONTINUATION_HEAD, CONTINUATION_HEAD.length);
    this.#items++;
    this.#openImage = undefined;
    this.#openValue = false;
    this.#progress = false;
  }

  /** Makes `image` the open image of the current item (closing another one first). */
  #ensureImage(image: ImageName): void {
    while (this.#openImage !== image) {
      if (this.#openImage !== undefined) {
        if (!this.#tryEmit('}', 1, undefined, false)) this.#splitBreak();
        continue;
      }
      const open = IMAGE_OPEN[image];
      if (this.#tryEmit(open, open.length, image, false)) this.#splitFirst = true;
      else this.#splitBreak();
    }
  }

  #splitAtom(atom: Atom): void {
    switch (atom.kind) {
      case 'column':
        this.#logicalImage = atom.image;
        for (;;) {
          this.#ensureImage(atom.image);
          const text = `${this.#splitFirst ? '' : ','}${atom.column.text}:${atom.isNull ? 'null' : '"'}`;
          if (this.#tryEmit(text, Buffer.byteLength(text), atom.image, !atom.isNull)) break;
          this.#splitBreak();
        }
        this.#splitFirst = false;
        this.#progress = true;
        this.#logicalColumn = atom.isNull ? undefined : atom.column;
        break;
      case 'text':
        this.#splitText(atom.text);
        break;
      case 'endValue':
        // After a break exactly at the value's end the value is already complete.
        if (this.#openValue && !this.#tryEmit('"', 1, this.#openImage, false)) this.#splitBreak();
        this.#openValue = false;
        this.#logicalColumn = undefined;
        break;
    }
  }

  /** Reopens the current column's value in a `"+"` item after a break. */
  #reopenValue(): void {
    const column = this.#logicalColumn as Encoded;
    const image = this.#logicalImage as ImageName;
    for (;;) {
      this.#ensureImage(image);
      const text = `${this.#splitFirst ? '' : ','}${column.text}:"`;
      if (this.#tryEmit(text, Buffer.byteLength(text), image, true)) break;
      this.#splitBreak();
    }
    this.#splitFirst = false;
  }

  /** Writes value text in split mode, cutting it between characters at message boundaries. */
  #splitText(text: string): void {
    let rest = text;
    while (rest.length > 0) {
      if (!this.#openValue) this.#reopenValue();
      const room = this.#budget - this.#used - (2 + MORE_SUFFIX.length);
      const content = escapeContent(rest);
      if (content.bytes <= room) {
        this.#write(content.text, content.bytes);
        this.#progress = true;
        return;
      }
      const prefix = fittingPrefix(rest, room);
      if (prefix.length > 0) {
        const piece = escapeContent(rest.slice(0, prefix.length));
        this.#write(piece.text, piece.bytes);
        this.#progress = true;
        rest = rest.slice(prefix.length);
      }
      this.#splitBreak();
    }
  }
}
