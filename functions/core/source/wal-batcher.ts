/**
 * The WAL capture mode's batching: turns the pgoutput messages of a logical replication slot
 * (read in commit order, see `pgoutput.ts`) into the same envelopes as the trigger mode, with
 * {@link BatchEncoder}, and says what the publisher must do, in order:
 *
 * - `record`: record the batch on the source (`pgfanout.wal_record_batch`) before any of its
 *   messages is published. A batch is whole transactions: those whose commits start from its
 *   first transaction's to `lastLsn`. The extent is fixed as late as possible, when the first
 *   message is ready (a batch of many small transactions fills a message, a large one spans
 *   several) or when the rows read so far end; from then on the batch takes no other
 *   transaction, so a publisher that restarts reads the same transactions from the slot and
 *   encodes them to the same messages (the encoder is deterministic), with the same
 *   deduplication ids.
 * - `publish`: messages to publish, in order.
 * - `finish`: the batch is complete once its messages are published: finish it and move the
 *   slot past `endLsn` (`pgfanout.wal_finish_batch`).
 * - `skip`: transactions with no published change up to `lsn`, while no batch is open: the
 *   slot can move over them (`pgfanout.wal_skip`).
 *
 * The change items are those of the trigger mode: `I` with the whole new row; `U` with the old
 * identity (pgoutput's old key `K`, the whole old row `O` under REPLICA IDENTITY FULL, or else
 * the identity columns of the new row) and the new row without the TOASTed columns the UPDATE
 * did not change (pgoutput does not send them; an UPDATE's `new` image that leaves a column out
 * leaves the replica's column as it is); `D` with the old identity; `T` per truncated table;
 * `S` from a transactional logical message with prefix `pgfanout`. Columns are in bytewise order
 * of their names, as `pgfanout.batch_values` orders them. Changes between the messages
 * `{"quiet":true}` and `{"quiet":false}` (a replicated schema change's own data changes, which
 * replicas replay by running the statement) are left out.
 *
 * Memory: one pgoutput message (one row) and what the encoder holds (one message being filled).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { InvalidStreamError } from '../wire/errors.ts';
import type { BatchOrigin, ChangeOp } from '../wire/envelope.ts';
import { BatchEncoder, type OutgoingMessage } from './encoder.ts';
import type { BatchToken } from './reader.ts';
import { decodePgoutput, lsnText, pgTimestampText, UNCHANGED, type PgoutputMessage, type TupleValue } from './pgoutput.ts';

/** The prefix of pgfanout's logical messages (`pg_logical_emit_message(true, 'pgfanout', …)`). */
const WAL_MESSAGE_PREFIX = 'pgfanout';

/** A batch recorded on the source and not finished (from `pgfanout.wal_state()`). */
export interface OpenWalBatch {
  readonly batchId: string;
  readonly firstLsn: bigint;
  readonly lastLsn: bigint;
  readonly maxMessageBytes: number;
  readonly origin: { readonly system: string; readonly timeline: number };
}

export interface WalBatcherOptions {
  readonly sourceId: string;
  /** Message size of new batches (an open batch keeps its recorded one). */
  readonly maxMessageBytes: number;
  /** The source's system identifier and timeline, for new batches. */
  readonly origin: { readonly system: string; readonly timeline: number };
  /** The last finished batch's id ("0" before the first). */
  readonly finishedBatchId: string;
  /** Where the last finished batch ended: transactions whose commits start before it are published. */
  readonly finishedEndLsn?: bigint;
  /** The batch recorded and not finished, served again first. */
  readonly open?: OpenWalBatch;
  /** The key pgfanout's logical messages are signed with (`pgfanout.wal_key`). */
  readonly messageKey: Buffer;
}

export type WalAction =
  | {
      readonly kind: 'record';
      readonly batchId: string;
      readonly firstLsn: bigint;
      readonly lastLsn: bigint;
      readonly maxMessageBytes: number;
      readonly origin: { readonly system: string; readonly timeline: number };
    }
  | { readonly kind: 'publish'; readonly batchId: string; readonly messages: readonly OutgoingMessage[] }
  | { readonly kind: 'finish'; readonly batchId: string; readonly endLsn: bigint; readonly changes: number; readonly time: string }
  | { readonly kind: 'skip'; readonly lsn: bigint }
  /** A message with prefix `pgfanout` that pgfanout did not sign (any role may emit one): left out. */
  | { readonly kind: 'refused'; readonly reason: string };

interface Relation {
  readonly schema: string;
  readonly table: string;
  readonly names: readonly string[];
  readonly keys: readonly boolean[];
  /** Column indexes in bytewise order of the names. */
  readonly order: readonly number[];
}

interface Transaction {
  readonly finalLsn: bigint;
  readonly time: string;
  readonly xid: string;
  /** Already published (commit before the last finished batch's end). */
  readonly skip: boolean;
  quiet: boolean;
}

interface Batch {
  readonly id: string;
  readonly firstLsn: bigint;
  readonly maxMessageBytes: number;
  readonly origin: { readonly system: string; readonly timeline: number };
  readonly time: string;
  readonly encoder: BatchEncoder;
  /** Set once recorded: the commit (start) LSN of its last transaction. */
  lastLsn: bigint | undefined;
  /** The last transaction committed into it. */
  lastCommit: { finalLsn: bigint; endLsn: bigint } | undefined;
  changes: number;
}

function compareBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

export class WalBatcher {
  readonly #o: WalBatcherOptions;
  readonly #relations = new Map<number, Relation>();
  #open: OpenWalBatch | undefined;
  #lastId: bigint;
  #tx: Transaction | undefined;
  #batch: Batch | undefined;
  #idleEnd: bigint | undefined;
  #actions: WalAction[] = [];
  #rows = 0;

  constructor(options: WalBatcherOptions) {
    this.#o = options;
    this.#open = options.open;
    this.#lastId = BigInt(options.finishedBatchId);
  }

  /** Rows (pgoutput messages) read so far. */
  get rows(): number {
    return this.#rows;
  }

  /** Reads one pgoutput message; returns what to do now, in order. */
  push(data: Buffer): WalAction[] {
    this.#rows++;
    this.#handle(decodePgoutput(data));
    return this.#take();
  }

  /** The rows read so far end here (a whole number of transactions); returns what to do. */
  end(): WalAction[] {
    if (this.#tx) this.#fail(`the slot's changes ended inside transaction ${this.#tx.xid} (commit at ${lsnText(this.#tx.finalLsn)})`);
    const b = this.#batch;
    if (b) {
      if (b.lastLsn !== undefined) {
        this.#fail(`batch ${b.id} is recorded up to the transaction committed at ${lsnText(b.lastLsn)}, and the slot's changes ended before it`);
      }
      if (b.lastCommit) this.#close(b, b.lastCommit.finalLsn, b.lastCommit.endLsn);
    } else if (this.#open) {
      // The slot has nothing for the open batch yet (it ends at a later transaction): nothing to do.
    } else if (this.#idleEnd !== undefined) {
      this.#actions.push({ kind: 'skip', lsn: this.#idleEnd });
      this.#idleEnd = undefined;
    }
    return this.#take();
  }

  #take(): WalAction[] {
    const a = this.#actions;
    this.#actions = [];
    return a;
  }

  #fail(reason: string): never {
    throw new InvalidStreamError(`WAL capture of source ${this.#o.sourceId}: ${reason}`);
  }

  #handle(m: PgoutputMessage): void {
    switch (m.tag) {
      case 'begin': {
        if (this.#tx) this.#fail(`transaction ${m.xid} begins inside transaction ${this.#tx.xid}`);
        const end = this.#o.finishedEndLsn;
        this.#tx = { finalLsn: m.finalLsn, time: pgTimestampText(m.commitTime), xid: String(m.xid), skip: end !== undefined && m.finalLsn < end, quiet: false };
        return;
      }
      case 'commit':
        this.#commit(m.commitLsn, m.endLsn);
        return;
      case 'relation': {
        const order = m.columns.map((_, i) => i).sort((a, b) => compareBytes((m.columns[a] as { name: string }).name, (m.columns[b] as { name: string }).name));
        this.#relations.set(m.oid, { schema: m.schema, table: m.table, names: m.columns.map((c) => c.name), keys: m.columns.map((c) => c.key), order });
        return;
      }
      case 'origin':
      case 'type':
        return;
      case 'insert': {
        const rel = this.#relation(m.relation);
        this.#change('I', rel, undefined, this.#image(rel, m.new, 'new', 'all'));
        return;
      }
      case 'update': {
        const rel = this.#relation(m.relation);
        const old = m.old ? this.#image(rel, m.old, 'old', m.oldKind === 'K' ? 'keys' : 'all') : this.#image(rel, m.new, 'old', 'keys');
        this.#change('U', rel, old, this.#image(rel, m.new, 'new', 'all'));
        return;
      }
      case 'delete': {
        const rel = this.#relation(m.relation);
        this.#change('D', rel, this.#image(rel, m.old, 'old', m.oldKind === 'K' ? 'keys' : 'all'), undefined);
        return;
      }
      case 'truncate':
        for (const oid of m.relations) this.#change('T', this.#relation(oid), undefined, undefined);
        return;
      case 'message':
        this.#message(m);
        return;
    }
  }

  #relation(oid: number): Relation {
    const rel = this.#relations.get(oid);
    if (!rel) this.#fail(`a change of relation ${oid} before its Relation message`);
    return rel;
  }

  /**
   * The image as [column, text] pairs in name order: `keys` takes the replica identity columns
   * only; unchanged TOASTed values are left out of a new image (the column keeps its value) and
   * are an error in an old one (the identity must be whole).
   */
  #image(rel: Relation, tuple: readonly TupleValue[], image: 'old' | 'new', which: 'keys' | 'all'): [string, string | null][] {
    if (tuple.length !== rel.names.length) this.#fail(`a change of ${rel.schema}.${rel.table} has ${tuple.length} columns; its Relation message has ${rel.names.length}`);
    const out: [string, string | null][] = [];
    for (const i of rel.order) {
      if (which === 'keys' && !rel.keys[i]) continue;
      const v = tuple[i] as TupleValue;
      if (v === UNCHANGED) {
        if (image === 'old') this.#fail(`the old identity of a change of ${rel.schema}.${rel.table} lacks column ${rel.names[i]} (an unchanged TOASTed value)`);
        continue;
      }
      out.push([rel.names[i] as string, v]);
    }
    if (image === 'old' && out.length === 0) {
      this.#fail(`a change of ${rel.schema}.${rel.table} carries no row identity: give the table a primary key or a replica identity (pgfanout.add_table sets one)`);
    }
    return out;
  }

  #message(m: Extract<PgoutputMessage, { tag: 'message' }>): void {
    if (m.prefix !== WAL_MESSAGE_PREFIX || !m.transactional) return;
    const tx = this.#tx;
    if (!tx) this.#fail(`a transactional message outside a transaction at ${lsnText(m.lsn)}`);
    // "<hex SHA-256 of key || xid || SHA-256(body)> <body>", see pgfanout.wal_key.
    const space = m.content.indexOf(0x20);
    const json = space === 64 ? m.content.subarray(65) : undefined;
    const expected = json ? createHash('sha256').update(this.#o.messageKey).update(tx.xid).update(createHash('sha256').update(json).digest()).digest() : undefined;
    const given = space === 64 ? Buffer.from(m.content.subarray(0, 64).toString('latin1'), 'hex') : undefined;
    if (!json || !expected || !given || given.length !== 32 || !timingSafeEqual(given, expected)) {
      this.#actions.push({ kind: 'refused', reason: `a logical message with prefix pgfanout at ${lsnText(m.lsn)} in transaction ${tx.xid} is not signed by this source (pg_logical_emit_message is open to every role); left out` });
      return;
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(json.toString('utf8')) as Record<string, unknown>;
    } catch {
      return this.#fail(`the pgfanout message at ${lsnText(m.lsn)} is not JSON`);
    }
    if (typeof body.quiet === 'boolean') {
      tx.quiet = body.quiet;
      return;
    }
    const { sql, search_path: searchPath, schema, table } = body;
    if (typeof sql !== 'string' || typeof searchPath !== 'string' || typeof schema !== 'string' || typeof table !== 'string') {
      this.#fail(`the pgfanout message at ${lsnText(m.lsn)} is neither {"quiet"} nor a schema change {"sql","search_path","schema","table"}`);
    }
    // A schema change is never quiet, even inside replicate_ddl's statement (DDL capture off there).
    this.#change('S', { schema, table }, undefined, [
      ['search_path', searchPath],
      ['sql', sql],
    ], true);
  }

  #change(op: ChangeOp, rel: { schema: string; table: string }, old: [string, string | null][] | undefined, neu: [string, string | null][] | undefined, loud = false): void {
    const tx = this.#tx;
    if (!tx) this.#fail(`a ${op} change of ${rel.schema}.${rel.table} outside a transaction`);
    if (tx.skip || (tx.quiet && !loud)) return;
    const b = this.#batch ?? this.#start(tx);
    if (b.lastLsn !== undefined && tx.finalLsn > b.lastLsn) {
      this.#fail(`batch ${b.id} is recorded up to the transaction committed at ${lsnText(b.lastLsn)}, and a change of a later one (${lsnText(tx.finalLsn)}) arrived in it`);
    }
    const tokens: BatchToken[] = [{ kind: 'change', eventId: `${lsnText(tx.finalLsn)}:${b.changes}`, txid: tx.xid, time: tx.time, op, schema: rel.schema, table: rel.table }];
    for (const [image, pairs] of [['old', old], ['new', neu]] as const) {
      if (!pairs) continue;
      for (const [column, text] of pairs) tokens.push({ kind: 'value', image, column, text, last: true });
    }
    for (const t of tokens) b.encoder.push(t);
    b.changes++;
    if (b.encoder.ready > 0) {
      // The first message of the batch is ready: its extent is fixed now, at this transaction.
      if (b.lastLsn === undefined) this.#record(b, tx.finalLsn);
      this.#actions.push({ kind: 'publish', batchId: b.id, messages: b.encoder.take() });
    }
  }

  #start(tx: Transaction): Batch {
    const open = this.#open;
    let b: Batch;
    if (open) {
      if (tx.finalLsn !== open.firstLsn) {
        this.#fail(`the open batch ${open.batchId} starts with the transaction committed at ${lsnText(open.firstLsn)}, but the slot's next change is of the one committed at ${lsnText(tx.finalLsn)}`);
      }
      b = this.#newBatch(open.batchId, tx, open.maxMessageBytes, open.origin);
      b.lastLsn = open.lastLsn;
      this.#open = undefined;
    } else {
      b = this.#newBatch(String(this.#lastId + 1n), tx, this.#o.maxMessageBytes, this.#o.origin);
    }
    this.#batch = b;
    this.#idleEnd = undefined;
    return b;
  }

  #newBatch(id: string, tx: Transaction, maxMessageBytes: number, origin: { system: string; timeline: number }): Batch {
    const fullOrigin: BatchOrigin = { system: origin.system, timeline: origin.timeline, lsn: lsnText(tx.finalLsn) };
    const encoder = new BatchEncoder(
      { sourceId: this.#o.sourceId, batchId: id, prevBatchId: String(BigInt(id) - 1n), lastEventTime: tx.time, origin: fullOrigin },
      maxMessageBytes,
    );
    return { id, firstLsn: tx.finalLsn, maxMessageBytes, origin, time: tx.time, encoder, lastLsn: undefined, lastCommit: undefined, changes: 0 };
  }

  #record(b: Batch, lastLsn: bigint): void {
    b.lastLsn = lastLsn;
    this.#actions.push({ kind: 'record', batchId: b.id, firstLsn: b.firstLsn, lastLsn, maxMessageBytes: b.maxMessageBytes, origin: b.origin });
  }

  #commit(commitLsn: bigint, endLsn: bigint): void {
    const tx = this.#tx;
    if (!tx) this.#fail(`a commit at ${lsnText(commitLsn)} outside a transaction`);
    if (commitLsn !== tx.finalLsn) this.#fail(`transaction ${tx.xid} began with commit position ${lsnText(tx.finalLsn)} and commits at ${lsnText(commitLsn)}`);
    this.#tx = undefined;
    const b = this.#batch;
    if (!b) {
      if (!this.#open) this.#idleEnd = endLsn;
      return;
    }
    if (tx.finalLsn < b.firstLsn) return;
    b.lastCommit = { finalLsn: tx.finalLsn, endLsn };
    if (b.lastLsn !== undefined && tx.finalLsn >= b.lastLsn) this.#close(b, b.lastLsn, endLsn);
  }

  /** Ends batch `b` at the transaction committed at `lastLsn`, whose commit record ends at `endLsn`. */
  #close(b: Batch, lastLsn: bigint, endLsn: bigint): void {
    const messages = b.encoder.finish();
    if (b.lastLsn === undefined) this.#record(b, lastLsn);
    this.#actions.push({ kind: 'publish', batchId: b.id, messages });
    this.#actions.push({ kind: 'finish', batchId: b.id, endLsn, changes: b.changes, time: b.time });
    this.#lastId = BigInt(b.id);
    this.#batch = undefined;
  }
}
