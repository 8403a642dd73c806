/**
 * The publisher loop: holds the single-publisher lock on the source, LISTENs for the
 * capture wake-up (and ticks on a timer, so a missed NOTIFY costs latency only), runs
 * the batch protocol and publishes each batch to the SNS FIFO topic with PublishBatch
 * (to each topic shard, when there are several: every part of the batch to every topic,
 * with the same group and deduplication ids, the next part only once every topic took
 * this one). A batch is finished on the source only after SNS accepted every message of
 * it on every topic; a failure on any topic, or a crash anywhere before that, makes the
 * source serve the same batch again, which is published again to every topic: the topics
 * that already took it drop it by its deduplication ids. The source
 * records the message size a batch was first published with (`pgfanout.batch_encoding`)
 * and every re-publish uses it, so the batch encodes to the same messages with the same
 * deduplication ids even when the publisher restarted with another size. Every message is signed
 * (core/wire/signature.ts) with the current key of the signing secret; the signature travels in
 * message attributes, so the body, its digest and its deduplication id do not depend on the key.
 *
 * Plain code: no environment reading, no SDK client construction (see main.ts).
 */
import { PublishBatchCommand, type PublishBatchRequestEntry, type SNSClient } from '@aws-sdk/client-sns';
import type { Client, Notification } from 'pg';
import { encodeBatch, MIN_MAX_MESSAGE_BYTES, readBatch, type OutgoingMessage } from '#core/source';
import { METRICS } from '#core/config.ts';
import { runWalLoop } from './wal.ts';
import type { SigningKeys } from '#core/signing-keys.ts';
import { signatureAttributeBytes, signatureAttributes, SIGNATURE_ATTRIBUTES_MAX_BYTES, type SigningKey } from '#core/wire';
import { setTimeout as sleep } from 'node:timers/promises';
import { isIntegerIn } from '#core/integer.ts';

/** SNS PublishBatch limits (AWS SNS API reference: PublishBatch). */
const PUBLISH_BATCH_MAX_ENTRIES = 10;
const PUBLISH_BATCH_MAX_BYTES = 262_144;

/** Advisory lock key (two int4 halves) held by the active publisher of a source database. */
export const PUBLISHER_LOCK = { classId: 0x70676661 /* 'pgfa' */, objectId: 1 } as const;

/** The notification channel capture uses to wake the publisher. */
const WAKE_CHANNEL = 'pgfanout';

export type PublisherState = 'starting' | 'standby' | 'active' | 'reconnecting' | 'stopped';

/** The subset of a structured logger the publisher needs (Powertools Logger fits). */
export interface PublisherLogger {
  debug(message: string, extra: Record<string, unknown>): void;
  info(message: string, extra: Record<string, unknown>): void;
  warn(message: string, extra: Record<string, unknown>): void;
  error(message: string, extra: Record<string, unknown>): void;
}

/** The subset of Powertools Metrics the publisher needs. */
export interface PublisherMetrics {
  addMetric(name: string, unit: 'Count' | 'Seconds' | 'Milliseconds', value: number): void;
  publishStoredMetrics(): void;
}

export interface PublisherOptions {
  /** Opens a new connection to the source database. */
  readonly connectSource: () => Promise<Client>;
  readonly sns: SNSClient;
  /**
   * The FIFO topics to publish to: one, or one per topic shard (each takes at most 100
   * subscriptions). Every message goes to each, with the same group and deduplication ids.
   */
  readonly topicArns: readonly string[];
  /** The key every message is signed with: the signing secret's current one. */
  readonly signingKeys: SigningKeys;
  readonly logger: PublisherLogger;
  readonly metrics?: PublisherMetrics;
  /** Wake up this often even without a notification. @default 1000 */
  readonly tickMs?: number;
  /** Largest message body in bytes. @default 262144 */
  readonly maxMessageBytes?: number;
  /** How often a standby publisher retries the lock. @default 1000 */
  readonly standbyPollMs?: number;
  /** First and largest delay between reconnect attempts. @default 200 and 30000 */
  readonly backoffMs?: { readonly initial: number; readonly max: number };
  /** How often pgfanout.status() is sampled for the oldest-unpublished metric. @default 10000 */
  readonly statusEveryMs?: number;
  /**
   * The publisher is unhealthy when its loop made no progress (a poll as standby, a look for the
   * next batch, a PublishBatch accepted) for this long, so the container health check replaces a
   * blocked or stopped publisher. @default 30000, and at least three ticks and three standby polls
   */
  readonly progressTimeoutMs?: number;
  /** `lock_timeout` of the publisher's session: a lock waited for longer fails the loop, which reconnects (its advisory lock goes with the session). @default 5000 */
  readonly lockTimeoutMs?: number;
  /**
   * `statement_timeout` of the publisher's session, for every statement but the COPY of a batch
   * and `finish_batch` (the COPY streams as fast as SNS accepts the batch; the progress timeout
   * watches it instead). @default 30000
   */
  readonly statementTimeoutMs?: number;
  /** `idle_in_transaction_session_timeout` of the publisher's session. @default 30000 */
  readonly idleInTransactionTimeoutMs?: number;
  /**
   * `idle_session_timeout` of the publisher's session (PostgreSQL 14 and later): the server ends
   * the session of a publisher that stopped answering (a stopped process, a lost network path),
   * which frees the single-publisher lock for the standby. @default the progress timeout
   */
  readonly idleSessionTimeoutMs?: number;
}

/** What the health endpoint and the status command report. */
export interface PublisherHealth {
  readonly state: PublisherState;
  readonly sourceId: string | null;
  readonly lastBatchId: string | null;
  readonly lastProgressAt: string | null;
  /** When the loop last made progress (see {@link PublisherOptions.progressTimeoutMs}). */
  readonly lastLoopAt: string;
  /** The progress timeout in force: the health check fails after this long without progress. */
  readonly progressTimeoutMs: number;
  readonly lastError: string | null;
  readonly batchesPublished: number;
  readonly messagesPublished: number;
  readonly eventsPublished: number;
  /** Message body bytes published (what SNS bills as payload). */
  readonly bytesPublished: number;
}

interface BatchRow {
  batch_id: string;
  prev_batch_id: string;
  event_count: string;
  first_event_time: Date | null;
  last_event_time: Date | null;
  /** The message size this batch is encoded with (recorded on the source at its first publish). */
  max_message_bytes: number;
  /** Where on the source the batch was made (the envelope's `origin`), recorded at its first publish. */
  origin_system: string;
  origin_timeline: string;
  origin_lsn: string;
}

/**
 * The next batch and the message size it is published with, in one transaction: the size is
 * recorded with the batch before any of its messages is published.
 */
const NEXT_BATCH_SQL = `SELECT b.batch_id::text, b.prev_batch_id::text, b.event_count::text, b.first_event_time, b.last_event_time,
  e.max_message_bytes, e.origin_system, e.origin_timeline::text, e.origin_lsn, pg_catalog.set_config('statement_timeout', '0', false) AS no_statement_timeout
  FROM pgfanout.next_batch() b CROSS JOIN LATERAL pgfanout.batch_encoding(b.batch_id, $1) AS e`;
/*
 * When a batch is returned, the statement above also lifts the statement timeout for what
 * follows (it still applies to the statement itself): the COPY of the batch lasts as long as
 * publishing it. FINISH_BATCH_SQL puts the timeout back for the statements after it.
 */
const FINISH_BATCH_SQL = `SELECT pgfanout.finish_batch($1), pg_catalog.set_config('statement_timeout', $2, false)`;

/**
 * The publisher's session settings, set once per connection (values as parameters):
 * synchronous_commit on, whatever the server's or database's default: the next_batch
 * statement's transaction always writes (it locks the batch cursor, and makes or records
 * the batch), so its commit returns only once the WAL up to it is flushed (and, with
 * synchronous standbys, replicated). That covers the batch row and every transaction in
 * the batch, asynchronously committed ones included (their commit records come earlier in
 * the WAL): nothing is published that a crash of the source could take back, so a batch id
 * is never published twice with different contents. Lock, statement and idle timeouts, so a publisher
 * blocked on the source, or gone, fails or is disconnected instead of holding its lock.
 * idle_session_timeout exists from PostgreSQL 14; on 13 it is left unset.
 */
const SESSION_SQL = `SELECT pg_catalog.set_config('synchronous_commit', 'on', false),
  pg_catalog.set_config('lock_timeout', $1, false),
  pg_catalog.set_config('statement_timeout', $2, false),
  pg_catalog.set_config('idle_in_transaction_session_timeout', $3, false),
  CASE WHEN pg_catalog.current_setting('server_version_num')::int >= 140000
       THEN pg_catalog.set_config('idle_session_timeout', $4, false) END`;

/** Thrown inside the loop when the stop signal fired; never escapes `run`. */
class Stopped extends Error {}

export class Publisher {
  readonly #o: Required<Omit<PublisherOptions, 'metrics'>> & { metrics?: PublisherMetrics };
  #lastLoopAt = new Date();
  #state: PublisherState = 'starting';
  #sourceId: string | null = null;
  #lastBatchId: string | null = null;
  #lastProgressAt: Date | null = null;
  #lastError: string | null = null;
  #batches = 0;
  #messages = 0;
  #events = 0;
  #bytes = 0;
  #woken = false;
  #wake: (() => void) | null = null;

  constructor(options: PublisherOptions) {
    const tickMs = options.tickMs ?? 1000;
    const standbyPollMs = options.standbyPollMs ?? 1000;
    const progressTimeoutMs = Math.max(options.progressTimeoutMs ?? 30_000, 3 * tickMs, 3 * standbyPollMs);
    this.#o = {
      maxMessageBytes: PUBLISH_BATCH_MAX_BYTES,
      backoffMs: { initial: 200, max: 30_000 },
      statusEveryMs: 10_000,
      lockTimeoutMs: 5_000,
      statementTimeoutMs: 30_000,
      idleInTransactionTimeoutMs: 30_000,
      idleSessionTimeoutMs: progressTimeoutMs,
      ...options,
      tickMs,
      standbyPollMs,
      progressTimeoutMs,
    };
    const o = this.#o;
    if (o.topicArns.length === 0) throw new Error('topicArns: at least one topic is required');
    if (new Set(o.topicArns).size !== o.topicArns.length) throw new Error(`topicArns: each topic once, got ${o.topicArns.join(', ')}`);
    if (o.idleSessionTimeoutMs <= 2 * Math.max(tickMs, standbyPollMs)) {
      throw new Error(`idleSessionTimeoutMs ${o.idleSessionTimeoutMs} must be above twice the tick (${tickMs} ms) and the standby poll (${standbyPollMs} ms): an idle publisher would be disconnected`);
    }
  }

  /** The health check fails after this long without progress (see {@link PublisherOptions.progressTimeoutMs}). */
  get progressTimeoutMs(): number {
    return this.#o.progressTimeoutMs;
  }

  /** The loop made progress. */
  #progress(): void {
    this.#lastLoopAt = new Date();
  }

  health(): PublisherHealth {
    return {
      state: this.#state,
      sourceId: this.#sourceId,
      lastBatchId: this.#lastBatchId,
      lastProgressAt: this.#lastProgressAt?.toISOString() ?? null,
      lastLoopAt: this.#lastLoopAt.toISOString(),
      progressTimeoutMs: this.#o.progressTimeoutMs,
      lastError: this.#lastError,
      batchesPublished: this.#batches,
      messagesPublished: this.#messages,
      eventsPublished: this.#events,
      bytesPublished: this.#bytes,
    };
  }

  /** Runs until `signal` aborts; reconnects with backoff on any failure. */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    this.#progress();
    while (!signal.aborted) {
      let client: Client | undefined;
      try {
        client = await this.#o.connectSource();
        // A connection that dies while idle must not crash the process: the next query fails instead.
        client.on('error', (err) => this.#o.logger.warn('source connection error', { error: err.message }));
        const o = this.#o;
        await client.query(SESSION_SQL, [`${o.lockTimeoutMs}ms`, `${o.statementTimeoutMs}ms`, `${o.idleInTransactionTimeoutMs}ms`, `${o.idleSessionTimeoutMs}ms`]);
        await this.#holdLock(client, signal);
        failures = 0;
        if ((await captureMode(client)) === 'wal') await this.#workWal(client, signal);
        else await this.#work(client, signal);
      } catch (err) {
        if (err instanceof Stopped || signal.aborted) break;
        failures += 1;
        this.#state = 'reconnecting';
        this.#lastError = errorText(err);
        this.#o.logger.error('publisher loop failed; reconnecting', { error: this.#lastError, attempt: failures });
        this.#o.metrics?.addMetric(METRICS.publisher.publishErrors, 'Count', 1);
        this.#o.metrics?.publishStoredMetrics();
        // The session (and with it the single-publisher lock) is closed below. Wait longer than a
        // standby's poll before trying the lock again, so a standby takes over from a publisher
        // that fails (e.g. blocked on the source) instead of this one taking the lock back.
        await sleep(Math.max(backoff(this.#o.backoffMs, failures), 2 * this.#o.standbyPollMs), undefined, { signal }).catch(() => undefined);
      } finally {
        if (client) await client.end().catch(() => undefined);
      }
    }
    this.#state = 'stopped';
  }

  /** Waits (as standby) until this process holds the single-publisher lock. */
  async #holdLock(client: Client, signal: AbortSignal): Promise<void> {
    for (let announced = false; ; announced = true) {
      const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [
        PUBLISHER_LOCK.classId,
        PUBLISHER_LOCK.objectId,
      ]);
      if (rows[0]?.locked) break;
      if (!announced) this.#o.logger.info('another publisher is active on this source; standing by', {});
      this.#state = 'standby';
      this.#progress();
      await sleep(this.#o.standbyPollMs, undefined, { signal });
    }
    const { rows } = await client.query<{ id: string }>('SELECT pgfanout.source_id() AS id');
    this.#sourceId = rows[0]?.id ?? null;
    if (!this.#sourceId) throw new Error('pgfanout.source_id() returned nothing: is pgfanout installed on the source?');
    client.on('notification', (n: Notification) => {
      if (n.channel === WAKE_CHANNEL) this.#notify();
    });
    await client.query(`LISTEN ${WAKE_CHANNEL}`);
    this.#state = 'active';
    this.#o.logger.info('publisher active', { sourceId: this.#sourceId });
  }

  #notify(): void {
    this.#woken = true;
    this.#wake?.();
  }

  async #work(client: Client, signal: AbortSignal): Promise<void> {
    // A publisher that died while waiting left the flag set; clear it until we really wait.
    await client.query('SELECT pgfanout.publisher_waiting(false)');
    let waiting = false;
    let lastStatus = 0;
    for (;;) {
      if (signal.aborted) throw new Stopped();
      if (Date.now() - lastStatus >= this.#o.statusEveryMs) {
        await this.#sampleStatus(client);
        lastStatus = Date.now();
      }
      this.#woken = false;
      const { rows } = await client.query<BatchRow>(NEXT_BATCH_SQL, [this.#o.maxMessageBytes]);
      this.#progress();
      const batch = rows[0];
      if (batch) {
        if (waiting) {
          await client.query('SELECT pgfanout.publisher_waiting(false)');
          waiting = false;
        }
        await this.#publishBatch(client, batch, signal);
        continue;
      }
      this.#lastProgressAt = new Date();
      if (!waiting) {
        // Say we wait, then look once more: a commit that saw "not waiting" just before is caught here.
        await client.query('SELECT pgfanout.publisher_waiting(true)');
        waiting = true;
        continue;
      }
      await this.#sleepUntilWoken(signal);
    }
  }

  /** The loop of a source in WAL capture mode (see wal.ts). */
  async #workWal(client: Client, signal: AbortSignal): Promise<void> {
    const sourceId = this.#sourceId as string;
    await runWalLoop({
      client,
      sourceId,
      // SNS counts message attributes in a message's size: the body leaves room for the signature's.
      maxMessageBytes: Math.min(this.#o.maxMessageBytes, PUBLISH_BATCH_MAX_BYTES - SIGNATURE_ATTRIBUTES_MAX_BYTES),
      maxAllowedMessageBytes: PUBLISH_BATCH_MAX_BYTES - SIGNATURE_ATTRIBUTES_MAX_BYTES,
      entryOverheadBytes: SIGNATURE_ATTRIBUTES_MAX_BYTES,
      tickMs: this.#o.tickMs,
      statementTimeoutMs: this.#o.statementTimeoutMs,
      send: async (messages) => {
        await this.#sendToEveryTopic(messages, await this.#o.signingKeys.current(), signal);
        // Stopped between a publish and the finish: the batch stays open and is served again.
        if (signal.aborted) throw new Stopped();
      },
      progress: () => this.#progress(),
      idle: () => {
        this.#lastProgressAt = new Date();
      },
      published: (b) => {
        const events = b.changes;
        this.#batches += 1;
        this.#messages += b.messages;
        this.#events += events;
        this.#bytes += b.bytes;
        this.#lastBatchId = b.batchId;
        this.#lastProgressAt = new Date();
        const m = this.#o.metrics;
        if (m) {
          m.addMetric(METRICS.publisher.eventsPublished, 'Count', events);
          m.addMetric(METRICS.publisher.messagesPublished, 'Count', b.messages);
          m.addMetric(METRICS.publisher.batchEvents, 'Count', events);
          m.addMetric(METRICS.publisher.publishLagSeconds, 'Seconds', Math.max(0, (Date.now() - Date.parse(b.time)) / 1000));
          m.publishStoredMetrics();
        }
      },
      sleep: (ms) => sleep(ms, undefined, { signal }).then(
        () => undefined,
        () => undefined,
      ),
      stopped: () => signal.aborted,
      logger: this.#o.logger,
    });
    if (signal.aborted) throw new Stopped();
  }

  async #sleepUntilWoken(signal: AbortSignal): Promise<void> {
    if (this.#woken) return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, this.#o.tickMs);
      signal.addEventListener('abort', done, { once: true });
      this.#wake = done;
    });
  }

  async #publishBatch(client: Client, batch: BatchRow, signal: AbortSignal): Promise<void> {
    const started = Date.now();
    const sourceId = this.#sourceId as string;
    const maxMessageBytes = batch.max_message_bytes;
    if (!isIntegerIn(maxMessageBytes, MIN_MAX_MESSAGE_BYTES, PUBLISH_BATCH_MAX_BYTES)) {
      throw new Error(
        `batch ${batch.batch_id} is recorded on the source with message size ${String(maxMessageBytes)}; this publisher encodes ${MIN_MAX_MESSAGE_BYTES} to ${PUBLISH_BATCH_MAX_BYTES} bytes`,
      );
    }
    if (maxMessageBytes !== this.#o.maxMessageBytes) {
      this.#o.logger.info('publishing a batch with the message size it was first published with', {
        batchId: batch.batch_id,
        maxMessageBytes,
        configured: this.#o.maxMessageBytes,
      });
    }
    const key = await this.#o.signingKeys.current();
    // SNS counts message attributes in a message's size: the body leaves room for the signature's.
    const bodyBytes = Math.min(maxMessageBytes, PUBLISH_BATCH_MAX_BYTES - SIGNATURE_ATTRIBUTES_MAX_BYTES);
    const attributeBytes = signatureAttributeBytes(key.id);
    const messages = encodeBatch(
      {
        sourceId,
        batchId: batch.batch_id,
        prevBatchId: batch.prev_batch_id,
        eventCount: batch.event_count,
        ...(batch.last_event_time ? { lastEventTime: batch.last_event_time.toISOString() } : {}),
        origin: { system: batch.origin_system, timeline: Number(batch.origin_timeline), lsn: batch.origin_lsn },
      },
      readBatch(client, batch.batch_id),
      { maxMessageBytes: bodyBytes },
    );
    let pending: OutgoingMessage[] = [];
    let pendingBytes = 0;
    let count = 0;
    let bytes = 0;
    for await (const message of messages) {
      if (signal.aborted) throw new Stopped();
      if (pending.length === PUBLISH_BATCH_MAX_ENTRIES || pendingBytes + message.bytes + attributeBytes > PUBLISH_BATCH_MAX_BYTES) {
        await this.#sendToEveryTopic(pending, key, signal);
        pending = [];
        pendingBytes = 0;
      }
      pending.push(message);
      pendingBytes += message.bytes + attributeBytes;
      bytes += message.bytes;
      count += 1;
    }
    if (pending.length > 0) await this.#sendToEveryTopic(pending, key, signal);
    await client.query(FINISH_BATCH_SQL, [batch.batch_id, `${this.#o.statementTimeoutMs}ms`]);
    this.#progress();

    const events = Number(batch.event_count);
    this.#batches += 1;
    this.#messages += count;
    this.#events += events;
    this.#bytes += bytes;
    this.#lastBatchId = batch.batch_id;
    this.#lastProgressAt = new Date();
    const lagSeconds = batch.last_event_time ? Math.max(0, (Date.now() - batch.last_event_time.getTime()) / 1000) : 0;
    this.#o.logger.debug('batch published', { batchId: batch.batch_id, events, messages: count, ms: Date.now() - started });
    const m = this.#o.metrics;
    if (m) {
      m.addMetric(METRICS.publisher.eventsPublished, 'Count', events);
      m.addMetric(METRICS.publisher.messagesPublished, 'Count', count);
      m.addMetric(METRICS.publisher.batchEvents, 'Count', events);
      m.addMetric(METRICS.publisher.publishLagSeconds, 'Seconds', lagSeconds);
      m.publishStoredMetrics();
    }
  }

  /**
   * Publishes `entries`, signed with `key`, to every topic, at once, and returns when every topic accepted them.
   * When one fails (after its retries), the others are still waited for, then the error is
   * thrown: the loop reconnects and the batch is served again, and republished to every topic.
   */
  async #sendToEveryTopic(entries: readonly OutgoingMessage[], key: SigningKey, signal: AbortSignal): Promise<void> {
    const results = await Promise.allSettled(this.#o.topicArns.map((topicArn) => this.#send(entries, topicArn, key, signal)));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * Publishes `entries` to `topicArn` in order, signed with `key`, with one PublishBatch call, retrying with backoff. When
   * SNS reports failed entries, everything from the first failed one on is sent again
   * (already accepted entries after it deduplicate by MessageDeduplicationId), so the
   * topic never sees a message before its predecessor.
   */
  async #send(entries: readonly OutgoingMessage[], topicArn: string, key: SigningKey, signal: AbortSignal): Promise<void> {
    let remaining = entries;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) throw new Stopped();
      try {
        const request: PublishBatchRequestEntry[] = remaining.map((m, i) => ({
          Id: `m${i}`,
          Message: m.body,
          MessageGroupId: m.groupId,
          MessageDeduplicationId: m.dedupId,
          MessageAttributes: signatureAttributes(m.body, key),
        }));
        const out = await this.#o.sns.send(
          new PublishBatchCommand({ TopicArn: topicArn, PublishBatchRequestEntries: request }),
          { abortSignal: signal },
        );
        const failed = out.Failed ?? [];
        if (failed.length === 0) {
          this.#progress();
          return;
        }
        const senderFault = failed.find((f) => f.SenderFault);
        if (senderFault) {
          // The request itself is wrong (e.g. too large): retrying cannot help, and skipping would lose data.
          throw new Error(`SNS rejected message ${senderFault.Id} on ${topicArn}: ${senderFault.Code ?? ''} ${senderFault.Message ?? ''}`.trim());
        }
        const first = Math.min(...failed.map((f) => Number(String(f.Id).slice(1))));
        remaining = remaining.slice(first);
        this.#o.logger.warn('SNS failed some entries; resending from the first failure', { topicArn, failed: failed.length, attempt });
      } catch (err) {
        if (signal.aborted) throw new Stopped();
        if (isPermanentSnsError(err) || attempt >= 8) throw err;
        this.#o.logger.warn('PublishBatch failed; retrying', { topicArn, error: errorText(err), attempt });
      }
      await sleep(backoff(this.#o.backoffMs, attempt), undefined, { signal });
    }
  }

  async #sampleStatus(client: Client): Promise<void> {
    const { rows } = await client.query<{ oldest: Date | null }>(
      'SELECT oldest_pending_event_time AS oldest FROM pgfanout.status()',
    );
    const oldest = rows[0]?.oldest;
    const age = oldest ? Math.max(0, (Date.now() - oldest.getTime()) / 1000) : 0;
    this.#o.metrics?.addMetric(METRICS.publisher.oldestUnpublishedSeconds, 'Seconds', age);
    this.#o.metrics?.publishStoredMetrics();
  }
}

/**
 * The source's capture mode: `pgfanout.capture_mode()` where it exists (SQL 1.2.0 and later),
 * else `trigger`.
 */
async function captureMode(client: Client): Promise<string> {
  const { rows } = await client.query<{ present: boolean }>(
    `SELECT pg_catalog.to_regprocedure('pgfanout.capture_mode()') IS NOT NULL AS present`,
  );
  if (!rows[0]?.present) return 'trigger';
  const mode = await client.query<{ mode: string }>('SELECT pgfanout.capture_mode() AS mode');
  return mode.rows[0]?.mode ?? 'trigger';
}

/** SNS errors that no retry can fix. */
function isPermanentSnsError(err: unknown): boolean {
  const name = (err as { name?: string }).name ?? '';
  return [
    'InvalidParameterException',
    'InvalidParameterValueException',
    'NotFoundException',
    'AuthorizationErrorException',
    'BatchRequestTooLongException',
    'BatchEntryIdsNotDistinctException',
    'TooManyEntriesInBatchRequestException',
    'EmptyBatchRequestException',
    'InvalidBatchEntryIdException',
  ].includes(name);
}

function errorText(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return String(err);
}

/** Exponential backoff with full jitter. */
function backoff(limits: { readonly initial: number; readonly max: number }, attempt: number): number {
  const ceiling = Math.min(limits.max, limits.initial * 2 ** Math.min(attempt - 1, 20));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}
