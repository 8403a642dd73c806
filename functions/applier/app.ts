/**
 * The applier: applies each SQS FIFO record (one pgfanout message) to the replica with
 * the core's `Applier`, in order, through Powertools' FIFO partial batch processor:
 * the first failing record and every record after it are reported as batch item
 * failures, so SQS redelivers them in order and nothing is applied past a failure.
 *
 * `createApplierHandler` builds the whole Lambda handler from explicit dependencies;
 * `handler.ts` only reads the environment and calls it. `pgfanout local` uses the same
 * factory, one per replica.
 */
import { processPartialResponse, SqsFifoPartialProcessorAsync } from '@aws-lambda-powertools/batch';
import type { Logger } from '@aws-lambda-powertools/logger';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { MetricUnit, type Metrics } from '@aws-lambda-powertools/metrics';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import middy from '@middy/core';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { Client } from 'pg';
import { Applier, type ApplyOptions, type ApplyResult } from '#core/replica';
import { PgfanoutError, REFUSAL_CODES, type ErrorCode } from '#core/wire';
import { METRICS } from '#core/config.ts';
import type { SigningKeys } from '#core/signing-keys.ts';
import { authenticateRecord } from './authenticate.ts';

export interface ApplierDependencies {
  /** The replica's name, for logs and metrics. */
  readonly replicaName: string;
  /** Opens a new connection to the replica; called again after a connection fails. */
  readonly connect: () => Promise<Client>;
  readonly apply: ApplyOptions;
  /**
   * The keys a message may be signed with: a record applies only when its signature verifies with
   * one of them (see authenticate.ts); anything else is refused before the replica is touched.
   */
  readonly signingKeys: SigningKeys;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /**
   * Makes `records` (the first failed record of an invocation and every record behind it)
   * visible again after `delaySeconds` (SQS ChangeMessageVisibilityBatch). Without it they keep
   * the queue's visibility timeout (6× the function timeout), and in a FIFO queue the in-flight
   * records block their group that long.
   */
  readonly deferRecords?: (records: readonly SQSRecord[], delaySeconds: number) => Promise<void>;
  /** Time now in milliseconds since the epoch (tests move it with the endpoint's clock). @default Date.now */
  readonly now?: () => number;
}

/** Why the head of an invocation failed, for the retry policy. */
export type FailureKind = 'transient' | 'permanent';

/** Longest delay before retrying after a transient failure (replica unreachable, wrong password, not bootstrapped yet). */
export const TRANSIENT_RETRY_MAX_SECONDS = 900;
/** Longest delay before retrying after a permanent failure, so a fixed cause resumes the stream within minutes. */
export const PERMANENT_RETRY_MAX_SECONDS = 300;
/** Shortest delay before any retry. */
export const RETRY_MIN_SECONDS = 10;

/**
 * Seconds before the failed head of a replica's stream (and everything behind it) is tried
 * again, measured from its first failure: a quarter of the time it has been failing, at least
 * RETRY_MIN_SECONDS, at most the kind's cap. A 60-second outage costs a few retries 10 s apart
 * and ends at most ~15 s after the replica returns; a long one is retried every 15 minutes, so
 * the queue's maxReceiveCount (1000 by default) lasts about 10 days of outage, well past the
 * age alarm. A permanent failure (a poison message, a gap, a schema mismatch) stops the replica
 * where it is — nothing behind it applies — and is retried at most every 5 minutes, so the
 * stream resumes in order within minutes of the cause being fixed, without a redrive.
 */
export function retryDelaySeconds(kind: FailureKind, failingForSeconds: number): number {
  const cap = kind === 'transient' ? TRANSIENT_RETRY_MAX_SECONDS : PERMANENT_RETRY_MAX_SECONDS;
  const elapsed = Number.isFinite(failingForSeconds) ? Math.max(0, failingForSeconds) : 0;
  return Math.round(Math.min(cap, Math.max(RETRY_MIN_SECONDS, elapsed / 4)));
}

/** A failure of one record, as the invocation reports it. */
export interface RecordFailure {
  readonly kind: FailureKind;
  readonly code: string;
  readonly message: string;
}

/** The per-record work, with the replica connection kept across invocations. */
export class RecordApplier {
  readonly #deps: ApplierDependencies;
  /** The replica's apply options, checked once when the applier is built. */
  readonly #applier: Applier;
  #client: Client | undefined;
  #connecting: Promise<Client> | undefined;
  /** Applies run one at a time on the one connection (a timed-out invocation may still be running). */
  #queue: Promise<unknown> = Promise.resolve();
  /** Why records of the current invocation failed, by message id. */
  readonly #failures = new Map<string, RecordFailure>();
  #lastFailure: (RecordFailure & { readonly messageId: string; readonly at: number }) | undefined;
  readonly #failureCounts = { transient: 0, permanent: 0 };

  constructor(deps: ApplierDependencies) {
    this.#deps = deps;
    this.#applier = new Applier(deps.apply);
  }

  async #connection(): Promise<Client> {
    if (this.#client) return this.#client;
    this.#connecting ??= this.#deps.connect().then(
      (client) => {
        client.on('error', (err) => {
          this.#deps.logger.warn('replica connection error', { error: err.message });
          if (this.#client === client) this.#client = undefined;
        });
        this.#client = client;
        this.#connecting = undefined;
        return client;
      },
      (err: unknown) => {
        this.#connecting = undefined;
        throw err;
      },
    );
    return this.#connecting;
  }

  /** Applies one record; throws (after logging why) when it must be retried or parked. */
  apply(record: SQSRecord): Promise<ApplyResult> {
    const next = this.#queue.then(() => this.#apply(record));
    this.#queue = next.catch(() => undefined);
    return next;
  }

  async #apply(record: SQSRecord): Promise<ApplyResult> {
    const { logger, metrics } = this.#deps;
    let client: Client | undefined;
    try {
      // Nothing of an unauthenticated record is read as a change, and the replica is not touched.
      await authenticateRecord(record, this.#deps.signingKeys);
      client = await this.#connection();
      const result = await this.#applier.apply(client, record.body);
      logger.debug('message handled', { ...result, messageId: record.messageId });
      // Every handled message counts, so an invocation of only staged parts or duplicates still emits a metric.
      metrics.addMetric(METRICS.applier.messagesHandled, MetricUnit.Count, 1);
      if (result.outcome === 'applied') {
        metrics.addMetric(METRICS.applier.changesApplied, MetricUnit.Count, result.changes);
        metrics.addMetric(METRICS.applier.appliedPosition, MetricUnit.Count, Number(result.batchId));
        if (result.conflicts) metrics.addMetric(METRICS.applier.conflictsDetected, MetricUnit.Count, result.conflicts);
        if (result.sourceTime) {
          const lag = Math.max(0, ((this.#deps.now ?? Date.now)() - Date.parse(result.sourceTime)) / 1000);
          metrics.addMetric(METRICS.applier.applyLagSeconds, MetricUnit.Seconds, lag);
        }
      }
      return result;
    } catch (err) {
      const pgfanoutError = err instanceof PgfanoutError ? err : undefined;
      // Anything not known to be permanent (connection refused, wrong password, a secret that
      // cannot be read, a lost connection) is retried with the transient policy.
      const kind: FailureKind = pgfanoutError?.permanent === true ? 'permanent' : 'transient';
      const failure: RecordFailure = { kind, code: pgfanoutError?.code ?? 'CONNECT_OR_UNEXPECTED', message: err instanceof Error ? err.message : String(err) };
      this.#failures.set(record.messageId, failure);
      this.#lastFailure = { ...failure, messageId: record.messageId, at: (this.#deps.now ?? Date.now)() };
      this.#failureCounts[kind]++;
      if (failure.code === 'GAP') metrics.addMetric(METRICS.applier.gapsDetected, MetricUnit.Count, 1);
      if (REFUSAL_CODES.includes(failure.code as ErrorCode)) metrics.addMetric(METRICS.applier.messagesRefused, MetricUnit.Count, 1);
      if (kind === 'transient' && client !== undefined) {
        // Connection-level trouble: start the next attempt on a fresh connection.
        if (this.#client === client) this.#client = undefined;
        await client.end().catch(() => undefined);
      }
      logger.error('message not applied', {
        messageId: record.messageId,
        receiveCount: record.attributes.ApproximateReceiveCount,
        code: failure.code,
        permanent: kind === 'permanent',
        error: failure.message,
      });
      throw err;
    }
  }

  /** The latest failure of any record (kind, code, message, when), for status displays. */
  get lastFailure(): (RecordFailure & { readonly messageId: string; readonly at: number }) | undefined {
    return this.#lastFailure;
  }

  /** Records that failed so far, by kind. */
  get failureCounts(): { readonly transient: number; readonly permanent: number } {
    return { ...this.#failureCounts };
  }

  /** Takes the failure recorded for a record (once). */
  takeFailure(messageId: string): RecordFailure | undefined {
    const failure = this.#failures.get(messageId);
    this.#failures.delete(messageId);
    return failure;
  }

  async close(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    if (client) await client.end().catch(() => undefined);
  }
}

export type ApplierHandler = ((event: SQSEvent, context: Context) => Promise<SQSBatchResponse>) & {
  readonly applier: RecordApplier;
};

/**
 * The Lambda handler: middy + Powertools Logger and Metrics + FIFO partial batch processing.
 * The first failing record and every record behind it are reported as failures (the FIFO
 * processor stops at the first failure) and deferred together, with the delay measured from
 * the head's first receive: in a FIFO queue in-flight records block their group, so deferring
 * only the failing one would leave the rest blocking it for the queue's whole visibility timeout
 * (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html: failed
 * messages reappear when their visibility timeout runs out).
 */
export function createApplierHandler(deps: ApplierDependencies): ApplierHandler {
  const applier = new RecordApplier(deps);
  const processor = new SqsFifoPartialProcessorAsync();
  const recordHandler = async (record: SQSRecord): Promise<ApplyResult> => applier.apply(record);
  const now = deps.now ?? Date.now;
  const handler = middy(async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> => {
    // A batch whose every record failed is still a partial response: the records are deferred
    // here, instead of failing the invocation and waiting for the queue's visibility timeout.
    const response = await processPartialResponse(event, recordHandler, processor, { context, throwOnFullBatchFailure: false });
    const failedIds = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
    const failed = event.Records.filter((r) => failedIds.has(r.messageId));
    const head = failed[0];
    const failure = head === undefined ? undefined : applier.takeFailure(head.messageId);
    for (const r of failed) applier.takeFailure(r.messageId);
    if (head !== undefined) {
      const kind = failure?.kind ?? 'transient';
      const firstReceive = Number(head.attributes.ApproximateFirstReceiveTimestamp);
      const delay = retryDelaySeconds(kind, (now() - firstReceive) / 1000);
      deps.metrics.addMetric(kind === 'permanent' ? METRICS.applier.permanentFailures : METRICS.applier.transientFailures, MetricUnit.Count, 1);
      deps.metrics.addMetric(METRICS.applier.headReceiveCount, MetricUnit.Count, Number(head.attributes.ApproximateReceiveCount) || 1);
      if (deps.deferRecords) {
        await deps.deferRecords(failed, delay).catch((err: unknown) => {
          deps.logger.warn('could not defer the failed records; they return after the queue visibility timeout', {
            records: failed.length,
            error: err instanceof Error ? err.message : String(err),
          });
        });
      }
      deps.logger.warn('replica stopped at a failed message; retrying it and the records behind it', {
        messageId: head.messageId,
        code: failure?.code,
        permanent: kind === 'permanent',
        deferredRecords: failed.length,
        retryInSeconds: delay,
      });
    }
    return response;
  })
    .use(injectLambdaContext(deps.logger))
    .use(logMetrics(deps.metrics));
  return Object.assign(handler as unknown as (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>, { applier });
}
