/**
 * The publisher's loop for a source in WAL capture mode (`pgfanout.capture_mode() = 'wal'`):
 * reads the source's logical replication slot through `pgfanout.wal_changes()` (pgoutput,
 * peeked: the slot does not move) with a holdable cursor, so the server keeps the rows and the
 * publisher fetches them a few hundred at a time; turns them into envelopes with
 * {@link WalBatcher}; records each batch before publishing it; and finishes it, which moves the
 * slot past its last commit, only after SNS accepted every message of it. A publisher stopped
 * anywhere leaves the slot where the last finished batch ended: the next one reads the same
 * transactions again, serves the recorded open batch under the same id with the same bytes
 * (same deduplication ids), and goes on.
 *
 * Why the SQL interface and not the streaming replication protocol: the slot's position moves
 * only through `pgfanout.wal_finish_batch` / `wal_skip` (pg_replication_slot_advance), exactly
 * when a batch is published, which is what exactly-once needs; the cursor bounds the
 * publisher's memory to a fetch of rows (the server spills the rest to disk); and the publisher
 * keeps one ordinary connection with the same role and grants as the trigger mode. The cost is
 * latency (the slot is polled every tick) and that a transaction is read only once committed.
 *
 * Plain code: no environment reading, no SDK client construction.
 */
import type { Client } from 'pg';
import { InvalidStreamError } from '#core/wire/errors.ts';
import { MIN_MAX_MESSAGE_BYTES, type OutgoingMessage } from '#core/source/encoder.ts';
import { WalBatcher, type OpenWalBatch, type WalAction } from '#core/source/wal-batcher.ts';
import { lsnText } from '#core/source/pgoutput.ts';

/** Rows fetched from the cursor at a time. */
const FETCH_ROWS = 500;
/** The cursor name (one per session). */
const CURSOR = 'pgfanout_wal';

/** What the WAL loop needs from the publisher around it. */
export interface WalLoopContext {
  /** The publisher's session on the source (holding the single-publisher lock). */
  readonly client: Client;
  readonly sourceId: string;
  readonly maxMessageBytes: number;
  /** Largest message size a publisher may encode with. */
  readonly maxAllowedMessageBytes: number;
  /** Bytes SNS counts for an entry besides its body (its message attributes), at most. */
  readonly entryOverheadBytes: number;
  /** Poll the slot this often when it had nothing. */
  readonly tickMs: number;
  /** Rows read from the slot per look (`pgfanout.wal_read_rows`; PostgreSQL ends at the next commit). */
  readonly readRows?: number;
  readonly statementTimeoutMs: number;
  /** Publishes messages in order (PublishBatch with retries), resolving once SNS accepted them. */
  send(messages: readonly OutgoingMessage[]): Promise<void>;
  /** The loop made progress (health). */
  progress(): void;
  /** A batch was published and finished. */
  published(batch: { batchId: string; changes: number; messages: number; bytes: number; time: string }): void;
  /** The loop is idle (the slot had nothing new). */
  idle(): void;
  sleep(ms: number): Promise<void>;
  stopped(): boolean;
  readonly logger: {
    debug(message: string, extra: Record<string, unknown>): void;
    info(message: string, extra: Record<string, unknown>): void;
    warn(message: string, extra: Record<string, unknown>): void;
  };
}

interface WalStateRow {
  slot_name: string;
  slot_lsn: string | null;
  finished_batch_id: string;
  finished_end_lsn: string | null;
  open_batch_id: string | null;
  open_first_lsn: string | null;
  open_last_lsn: string | null;
  open_max_message_bytes: number | null;
  origin_system: string;
  origin_timeline: string;
  message_key: string;
}

/** A pg_lsn text as a number. */
function lsnNumber(text: string): bigint {
  const [high, low] = text.split('/') as [string, string];
  return (BigInt(`0x${high}`) << 32n) | BigInt(`0x${low}`);
}

/** Runs until `ctx.stopped()`; throws on any failure (the publisher reconnects). */
export async function runWalLoop(ctx: WalLoopContext): Promise<void> {
  const { client } = ctx;
  await client.query('SELECT pg_catalog.set_config($1, $2, false)', ['pgfanout.wal_read_rows', String(ctx.readRows ?? 10_000)]);
  // A holdable cursor may be left over from a loop that failed on this session.
  await client.query(`CLOSE ALL`);
  while (!ctx.stopped()) {
    const { rows } = await client.query<WalStateRow>(
      'SELECT slot_name, slot_lsn, finished_batch_id::text, finished_end_lsn, open_batch_id::text, open_first_lsn, open_last_lsn, open_max_message_bytes, origin_system, origin_timeline::text, message_key FROM pgfanout.wal_state()',
    );
    const state = rows[0] as WalStateRow;
    if (state.slot_lsn === null) {
      throw new InvalidStreamError(`the source's logical replication slot ${state.slot_name} is missing: create it with SELECT pgfanout.wal_create_slot() (a slot dropped or invalidated lost changes: bootstrap every replica again)`);
    }
    let open: OpenWalBatch | undefined;
    if (state.open_batch_id !== null) {
      const size = state.open_max_message_bytes as number;
      if (!Number.isInteger(size) || size < MIN_MAX_MESSAGE_BYTES || size > ctx.maxAllowedMessageBytes) {
        throw new InvalidStreamError(`batch ${state.open_batch_id} is recorded on the source with message size ${size}; this publisher encodes ${MIN_MAX_MESSAGE_BYTES} to ${ctx.maxAllowedMessageBytes} bytes`);
      }
      open = {
        batchId: state.open_batch_id,
        firstLsn: lsnNumber(state.open_first_lsn as string),
        lastLsn: lsnNumber(state.open_last_lsn as string),
        maxMessageBytes: size,
        origin: { system: state.origin_system, timeline: Number(state.origin_timeline) },
      };
    }
    const batcher = new WalBatcher({
      sourceId: ctx.sourceId,
      maxMessageBytes: ctx.maxMessageBytes,
      origin: { system: state.origin_system, timeline: Number(state.origin_timeline) },
      finishedBatchId: state.finished_batch_id,
      messageKey: Buffer.from(state.message_key, 'hex'),
      ...(state.finished_end_lsn !== null ? { finishedEndLsn: lsnNumber(state.finished_end_lsn) } : {}),
      ...(open ? { open } : {}),
    });
    const run = new ActionRunner(ctx);
    // The whole read happens here (the server decodes into the cursor's store), however long it takes.
    await client.query(`SELECT pg_catalog.set_config('statement_timeout', '0', false)`);
    await client.query(`DECLARE ${CURSOR} NO SCROLL CURSOR WITH HOLD FOR SELECT data FROM pgfanout.wal_changes()`);
    await client.query(`SELECT pg_catalog.set_config('statement_timeout', $1, false)`, [`${ctx.statementTimeoutMs}ms`]);
    ctx.progress();
    try {
      for (;;) {
        if (ctx.stopped()) return;
        const fetched = await client.query<{ data: Buffer }>(`FETCH FORWARD ${FETCH_ROWS} FROM ${CURSOR}`);
        ctx.progress();
        for (const row of fetched.rows) await run.all(batcher.push(row.data));
        if (fetched.rows.length < FETCH_ROWS) break;
      }
      await run.all(batcher.end());
    } finally {
      await client.query(`CLOSE ${CURSOR}`).catch(() => undefined);
    }
    if (!run.publishedAny) {
      ctx.idle();
      await ctx.sleep(ctx.tickMs);
    }
  }
}

/** Performs the batcher's actions in order, publishing up to 10 messages per PublishBatch. */
class ActionRunner {
  readonly #ctx: WalLoopContext;
  #pending: OutgoingMessage[] = [];
  #pendingBytes = 0;
  #messages = 0;
  #bytes = 0;
  publishedAny = false;

  constructor(ctx: WalLoopContext) {
    this.#ctx = ctx;
  }

  async all(actions: readonly WalAction[]): Promise<void> {
    for (const a of actions) await this.#one(a);
  }

  async #flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    await this.#ctx.send(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
  }

  async #one(a: WalAction): Promise<void> {
    const { client } = this.#ctx;
    switch (a.kind) {
      case 'record':
        await client.query('SELECT pgfanout.wal_record_batch($1, $2, $3, $4, $5, $6)', [
          a.batchId,
          lsnText(a.firstLsn),
          lsnText(a.lastLsn),
          a.maxMessageBytes,
          a.origin.system,
          a.origin.timeline,
        ]);
        return;
      case 'publish':
        for (const m of a.messages) {
          // SNS PublishBatch: at most 10 entries and 262,144 bytes in all
          // (https://docs.aws.amazon.com/sns/latest/api/API_PublishBatch.html).
          const entryBytes = m.bytes + this.#ctx.entryOverheadBytes;
          if (this.#pending.length === 10 || this.#pendingBytes + entryBytes > 262_144) await this.#flush();
          this.#pending.push(m);
          this.#pendingBytes += entryBytes;
          this.#messages++;
          this.#bytes += m.bytes;
        }
        return;
      case 'finish':
        await this.#flush();
        await client.query('SELECT pgfanout.wal_finish_batch($1, $2)', [a.batchId, lsnText(a.endLsn)]);
        this.#ctx.published({ batchId: a.batchId, changes: a.changes, messages: this.#messages, bytes: this.#bytes, time: a.time });
        this.#ctx.logger.debug('WAL batch published', { batchId: a.batchId, changes: a.changes, messages: this.#messages });
        this.#messages = 0;
        this.#bytes = 0;
        this.publishedAny = true;
        return;
      case 'skip':
        await client.query('SELECT pgfanout.wal_skip($1)', [lsnText(a.lsn)]);
        return;
      case 'refused':
        this.#ctx.logger.warn(a.reason, {});
        return;
    }
  }
}
