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
import { PgfanoutError } from '#core/wire';
import { METRICS } from '#core/config.ts';

export interface ApplierDependencies {
  /** The replica's name, for logs and metrics. */
  readonly replicaName: string;
  /** Opens a new connection to the replica; called again after a connection fails. */
  readonly connect: () => Promise<Client>;
  readonly apply: ApplyOptions;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /**
   * Called for a record that failed for a transient reason (replica unreachable, …) with
   * the delay before it should be tried again; the handler wiring makes the message
   * invisible that long (SQS ChangeMessageVisibility), so an outage of hours consumes
   * only a few receives instead of sending everything to the dead-letter queue.
   */
  readonly deferRetry?: (record: SQSRecord, delaySeconds: number) => Promise<void>;
}

/**
 * Delay before retrying a record after a transient failure on its `receiveCount`-th
 * receive: 20 s, 1 min, 3 min, 9 min, 27 min, then hourly. With the stack's default
 * maxReceiveCount of 10 a replica can be unreachable for about 4.7 hours before its
 * messages are parked (and nothing is lost even then: they wait in the dead-letter queue).
 */
export function transientRetryDelaySeconds(receiveCount: number): number {
  return Math.min(3600, 20 * 3 ** Math.max(0, receiveCount - 1));
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
    const client = await this.#connection();
    try {
      const result = await this.#applier.apply(client, record.body);
      logger.debug('message handled', { ...result, messageId: record.messageId });
      // Every handled message counts, so an invocation of only staged parts or duplicates still emits a metric.
      metrics.addMetric(METRICS.applier.messagesHandled, MetricUnit.Count, 1);
      if (result.outcome === 'applied') {
        metrics.addMetric(METRICS.applier.changesApplied, MetricUnit.Count, result.changes);
        metrics.addMetric(METRICS.applier.appliedPosition, MetricUnit.Count, Number(result.batchId));
        if (result.conflicts) metrics.addMetric(METRICS.applier.conflictsDetected, MetricUnit.Count, result.conflicts);
        if (result.sourceTime) {
          const lag = Math.max(0, (Date.now() - Date.parse(result.sourceTime)) / 1000);
          metrics.addMetric(METRICS.applier.applyLagSeconds, MetricUnit.Seconds, lag);
        }
      }
      return result;
    } catch (err) {
      const pgfanoutError = err instanceof PgfanoutError ? err : undefined;
      if (pgfanoutError?.code === 'GAP') metrics.addMetric(METRICS.applier.gapsDetected, MetricUnit.Count, 1);
      if (!pgfanoutError || !pgfanoutError.permanent) {
        // Connection-level trouble: start the next attempt on a fresh connection.
        this.#client = undefined;
        await client.end().catch(() => undefined);
        const receiveCount = Number(record.attributes.ApproximateReceiveCount) || 1;
        await this.#deps.deferRetry?.(record, transientRetryDelaySeconds(receiveCount)).catch((deferError: unknown) => {
          logger.warn('could not delay the retry', { error: deferError instanceof Error ? deferError.message : String(deferError) });
        });
      }
      logger.error('message not applied', {
        messageId: record.messageId,
        receiveCount: record.attributes.ApproximateReceiveCount,
        code: pgfanoutError?.code ?? 'UNEXPECTED',
        permanent: pgfanoutError?.permanent ?? false,
        error: err instanceof Error ? err.message : String(err),
      });
      throw err;
    }
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

/** The Lambda handler: middy + Powertools Logger and Metrics + FIFO partial batch processing. */
export function createApplierHandler(deps: ApplierDependencies): ApplierHandler {
  const applier = new RecordApplier(deps);
  const processor = new SqsFifoPartialProcessorAsync();
  const recordHandler = async (record: SQSRecord): Promise<ApplyResult> => applier.apply(record);
  const handler = middy(async (event: SQSEvent, context: Context): Promise<SQSBatchResponse> =>
    processPartialResponse(event, recordHandler, processor, { context }),
  )
    .use(injectLambdaContext(deps.logger))
    .use(logMetrics(deps.metrics));
  return Object.assign(handler as unknown as (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>, { applier });
}
