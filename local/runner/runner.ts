/**
 * Drives a Lambda handler the way Lambda's SQS event source mapping does: pollers
 * long-poll the queue for batches of up to 10 messages, invoke the handler with a real
 * `SQSEvent` and context, delete what succeeded and leave the rest in flight, so that it
 * comes back after the visibility timeout (and moves to the dead-letter queue once its
 * receive count passes maxReceiveCount).
 *
 * - One batch in flight per message group: on a FIFO queue SQS itself hides the rest of a
 *   group while a received message of it is in flight, so concurrent pollers never hold
 *   two batches of one group.
 * - A thrown error, a rejected promise or a timeout fails the whole batch: nothing is
 *   deleted. A timed-out handler keeps running in the background (a process cannot kill a
 *   promise); its result is ignored, as Lambda ignores a timed-out invocation.
 * - Like CreateEventSourceMapping, start-up checks that the queue's visibility timeout is
 *   not shorter than the function timeout.
 * - Failed records are not retried by the runner: "After your queue's visibility timeout
 *   runs out, the message will again reappear in the queue" ("Handling errors for an SQS
 *   event source in Lambda", https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html).
 *   They stay in flight, so on a FIFO queue their message group stays blocked until then
 *   (or until the function itself changed their visibility): "If your function returns an
 *   error, the function attempts all retries on the affected messages before Lambda receives
 *   additional messages from the same group" ("Configuring scaling behavior for SQS event
 *   source mappings", https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html).
 * - Time: the function timeout and `getRemainingTimeInMillis` follow `clock`; long polls and
 *   visibility timeouts follow the endpoint's clock. Give both the same `ManualClock` and a
 *   test moves hours of simulated time in one call.
 */
import { DeleteMessageBatchCommand, GetQueueAttributesCommand, type Message, ReceiveMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import { type Clock, systemClock } from '../endpoint/clock.ts';
import { type BatchOutcome, interpretResponse, invocationContext, toRecord } from './lambda-event.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { isIntegerIn } from '#core/integer.ts';

/** The handler signature of an SQS-triggered Lambda function. */
export type SqsHandler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse | void>;

/** Options of {@link startEventSourceRunner}. */
export interface EventSourceRunnerOptions {
  /** The SQS client to use, or the endpoint URL to build one for (then closed on stop). */
  readonly sqs: SQSClient | string;
  readonly queueUrl: string;
  readonly handler: SqsHandler;
  /** Messages per invocation, 1 to 10 (the FIFO maximum). @default 10 */
  readonly batchSize?: number;
  /**
   * Function timeout in milliseconds; must not exceed the queue's visibility timeout.
   * @default the queue's visibility timeout (at most 900 s), so that a slow local database
   * does not turn into redeliveries (Lambda's own default is 3 s; pass the stack's value to
   * mirror a deployment)
   */
  readonly functionTimeoutMs?: number;
  /** @default 'pgfanout-local-function' */
  readonly functionName?: string;
  /** @default 128 */
  readonly memoryLimitInMB?: number;
  /** Invocations at once (the mapping's MaximumConcurrency). @default 2 */
  readonly maxConcurrency?: number;
  /** Honour `batchItemFailures` in the handler's response (ReportBatchItemFailures). @default true */
  readonly reportBatchItemFailures?: boolean;
  /** Long-poll wait of each receive, 1 to 20 seconds. @default 20 */
  readonly waitTimeSeconds?: number;
  /** Region for a client built from a URL, and in the context's ARN. @default the queue ARN's region */
  readonly region?: string;
  /** Receives poll and delete failures (handler failures are counted in `stats`). @default write to stderr */
  readonly onError?: (error: Error) => void;
  /**
   * Time source of the function timeout and the context's remaining time. Pass the local
   * endpoint's clock (a `ManualClock` in tests) so that one call moves both.
   * @default the system clock
   */
  readonly clock?: Clock;
  /**
   * Whether the event source mapping is enabled, read before every poll: while it says false
   * the runner receives nothing (invocations in progress finish), as Lambda stops polling a
   * disabled mapping. @default always enabled
   */
  readonly enabled?: () => Promise<boolean>;
}

/** Counters of a runner. */
export interface RunnerStats {
  /** Handler invocations started. */
  readonly invocations: number;
  /** Invocations whose whole batch succeeded. */
  readonly succeeded: number;
  /** Invocations that reported some `batchItemFailures`. */
  readonly partialFailures: number;
  /** Invocations that threw or rejected. */
  readonly failed: number;
  /** Invocations that did not finish within the function timeout. */
  readonly timedOut: number;
  /** Invocations whose response was not a valid partial batch response (whole batch retried). */
  readonly invalidResponses: number;
  readonly messagesReceived: number;
  readonly messagesDeleted: number;
  /** Messages left in flight to come back after the visibility timeout. */
  readonly messagesRetried: number;
  readonly pollErrors: number;
  readonly deleteErrors: number;
  /** The latest handler error, timeout or invalid response, as text. */
  readonly lastFailure: string | undefined;
}

/** A running event source mapping. */
export interface EventSourceRunner {
  /** A snapshot of the counters. */
  readonly stats: RunnerStats;
  /** Resolves once the queue was checked and polling began; rejects with the reason it could not. */
  ready(): Promise<void>;
  /** Stops polling, waits for running invocations (up to their timeout) and their deletes. */
  stop(): Promise<void>;
}

/** A runner option or the queue does not allow the mapping. */
export class RunnerConfigError extends Error {
  readonly code = 'LOCAL_RUNNER_INVALID_CONFIG';
  constructor(message: string, options?: { readonly cause?: unknown }) {
    super(message, options);
    this.name = 'RunnerConfigError';
  }
}

function integerIn(problems: string[], name: string, value: number | undefined, min: number, max: number): void {
  if (value !== undefined && !isIntegerIn(value, min, max)) {
    problems.push(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  }
}

/** How often a disabled mapping is read again (real milliseconds). */
const DISABLED_RECHECK_MS = 250;

/** Resolves after `ms`, or at once when `signal` aborts. */
function delay(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal }).catch(() => undefined);
}

/**
 * Starts polling `queueUrl` and invoking `handler`. Returns at once; `ready()` tells
 * whether start-up worked. Options out of range throw {@link RunnerConfigError} here.
 */
export function startEventSourceRunner(options: EventSourceRunnerOptions): EventSourceRunner {
  const problems: string[] = [];
  integerIn(problems, 'batchSize', options.batchSize, 1, 10);
  integerIn(problems, 'functionTimeoutMs', options.functionTimeoutMs, 1, 900_000);
  integerIn(problems, 'maxConcurrency', options.maxConcurrency, 1, 1000);
  integerIn(problems, 'waitTimeSeconds', options.waitTimeSeconds, 1, 20);
  integerIn(problems, 'memoryLimitInMB', options.memoryLimitInMB, 128, 10240);
  if (typeof options.handler !== 'function') problems.push('handler must be a function');
  if (typeof options.queueUrl !== 'string' || options.queueUrl === '') problems.push('queueUrl must be a non-empty string');
  if (problems.length > 0) throw new RunnerConfigError(`invalid event source runner options: ${problems.join('; ')}`);

  const batchSize = options.batchSize ?? 10;
  let functionTimeoutMs = options.functionTimeoutMs ?? 0;
  const concurrency = options.maxConcurrency ?? 2;
  const waitTimeSeconds = options.waitTimeSeconds ?? 20;
  const reportFailures = options.reportBatchItemFailures ?? true;
  const clock = options.clock ?? systemClock;
  const onError = options.onError ?? ((error: Error) => console.error(`pgfanout event source runner: ${error.message}`));
  const ownsClient = typeof options.sqs === 'string';
  const sqs =
    typeof options.sqs === 'string'
      ? new SQSClient({
          endpoint: options.sqs,
          region: options.region ?? 'us-east-1',
          credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
        })
      : options.sqs;

  const stats = {
    invocations: 0,
    succeeded: 0,
    partialFailures: 0,
    failed: 0,
    timedOut: 0,
    invalidResponses: 0,
    messagesReceived: 0,
    messagesDeleted: 0,
    messagesRetried: 0,
    pollErrors: 0,
    deleteErrors: 0,
    lastFailure: undefined as string | undefined,
  };
  const stopping = new AbortController();
  let pollers: Promise<void>[] = [];

  async function deleteRecords(records: readonly SQSRecord[]): Promise<void> {
    for (let i = 0; i < records.length; i += 10) {
      const chunk = records.slice(i, i + 10);
      try {
        const out = await sqs.send(
          new DeleteMessageBatchCommand({
            QueueUrl: options.queueUrl,
            Entries: chunk.map((r, n) => ({ Id: String(n), ReceiptHandle: r.receiptHandle })),
          }),
        );
        stats.messagesDeleted += out.Successful?.length ?? 0;
        for (const failure of out.Failed ?? []) {
          stats.deleteErrors += 1;
          const record = chunk[Number(failure.Id)];
          onError(new Error(`deleting message ${record?.messageId} from ${options.queueUrl} failed: ${failure.Code}: ${failure.Message}`));
        }
      } catch (error) {
        stats.deleteErrors += chunk.length;
        onError(new Error(`deleting ${chunk.length} messages from ${options.queueUrl} failed: ${(error as Error).message}`, { cause: error }));
      }
    }
  }

  async function invoke(messages: Message[], queue: { arn: string; region: string; accountId: string; fifo: boolean }): Promise<void> {
    const records = messages.map((m) => toRecord(m, { queueArn: queue.arn, region: queue.region }));
    const deadline = clock.now() + functionTimeoutMs;
    const context = invocationContext(
      {
        functionName: options.functionName ?? 'pgfanout-local-function',
        region: queue.region,
        accountId: queue.accountId,
        memoryLimitInMB: options.memoryLimitInMB ?? 128,
      },
      deadline,
      () => clock.now(),
    );
    stats.invocations += 1;
    let cancelTimeout: (() => void) | undefined;
    const timeout = new Promise<{ kind: 'timeout' }>((resolve) => {
      cancelTimeout = clock.setTimer(deadline, () => resolve({ kind: 'timeout' }));
    });
    const run = (async () => options.handler({ Records: records }, context))().then(
      (value) => ({ kind: 'returned' as const, value }),
      (error: unknown) => ({ kind: 'threw' as const, error }),
    );
    const result = await Promise.race([run, timeout]);
    cancelTimeout?.();
    if (result.kind === 'timeout') {
      stats.timedOut += 1;
      stats.lastFailure = `invocation ${context.awsRequestId} timed out after ${functionTimeoutMs} ms`;
      stats.messagesRetried += records.length;
      return;
    }
    if (result.kind === 'threw') {
      stats.failed += 1;
      stats.lastFailure = `invocation ${context.awsRequestId} failed: ${result.error instanceof Error ? result.error.message : String(result.error)}`;
      stats.messagesRetried += records.length;
      return;
    }
    const outcome: BatchOutcome = interpretResponse(records, result.value, queue.fifo, reportFailures);
    if (outcome.kind === 'invalid-response') {
      stats.invalidResponses += 1;
      stats.lastFailure = `invocation ${context.awsRequestId} returned an invalid partial batch response: ${outcome.reason}`;
      stats.messagesRetried += records.length;
      return;
    }
    if (outcome.kind === 'success') stats.succeeded += 1;
    else {
      stats.partialFailures += 1;
      stats.messagesRetried += outcome.retry.length;
    }
    await deleteRecords(outcome.delete);
  }

  async function poll(queue: { arn: string; region: string; accountId: string; fifo: boolean }): Promise<void> {
    let backoff = 100;
    while (!stopping.signal.aborted) {
      if (options.enabled && !(await options.enabled().catch(() => true))) {
        await delay(DISABLED_RECHECK_MS, stopping.signal);
        continue;
      }
      let messages: Message[];
      try {
        const out = await sqs.send(
          new ReceiveMessageCommand({
            QueueUrl: options.queueUrl,
            MaxNumberOfMessages: batchSize,
            WaitTimeSeconds: waitTimeSeconds,
            MessageSystemAttributeNames: ['All'],
            MessageAttributeNames: ['All'],
          }),
          { abortSignal: stopping.signal },
        );
        messages = out.Messages ?? [];
        backoff = 100;
      } catch (error) {
        if (stopping.signal.aborted) return;
        stats.pollErrors += 1;
        onError(new Error(`receiving from ${options.queueUrl} failed: ${(error as Error).message}`, { cause: error }));
        await delay(backoff, stopping.signal);
        backoff = Math.min(backoff * 2, 5_000);
        continue;
      }
      if (messages.length === 0) continue;
      stats.messagesReceived += messages.length;
      await invoke(messages, queue);
    }
  }

  async function start(): Promise<void> {
    let attributes: Record<string, string>;
    try {
      const out = await sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: options.queueUrl, AttributeNames: ['QueueArn', 'VisibilityTimeout', 'FifoQueue'] }),
        { abortSignal: stopping.signal },
      );
      attributes = out.Attributes ?? {};
    } catch (error) {
      throw new RunnerConfigError(`cannot read the attributes of queue ${options.queueUrl}: ${(error as Error).message}`, { cause: error });
    }
    const arn = attributes.QueueArn ?? '';
    const [, , , region = options.region ?? 'us-east-1', accountId = '000000000000'] = arn.split(':');
    const visibility = Number(attributes.VisibilityTimeout ?? 30);
    if (options.functionTimeoutMs === undefined) {
      if (visibility === 0) {
        throw new RunnerConfigError(
          `Queue visibility timeout: 0 seconds is less than the shortest function timeout (1 second) (queue ${options.queueUrl}); raise the queue's VisibilityTimeout`,
        );
      }
      functionTimeoutMs = Math.min(visibility, 900) * 1000;
    }
    if (functionTimeoutMs > visibility * 1000) {
      throw new RunnerConfigError(
        `Queue visibility timeout: ${visibility} seconds is less than Function timeout: ${functionTimeoutMs / 1000} seconds (queue ${options.queueUrl}); raise the queue's VisibilityTimeout or lower functionTimeoutMs`,
      );
    }
    if (stopping.signal.aborted) return;
    const queue = { arn, region, accountId, fifo: attributes.FifoQueue === 'true' };
    pollers = Array.from({ length: concurrency }, () => poll(queue));
  }

  const started = start();
  started.catch((error: unknown) => {
    stats.lastFailure = (error as Error).message;
    onError(error as Error);
  });

  let stopped: Promise<void> | undefined;
  return {
    get stats(): RunnerStats {
      return { ...stats };
    },
    ready: () => started,
    stop() {
      stopped ??= (async () => {
        stopping.abort();
        await started.catch(() => undefined);
        await Promise.all(pollers);
        if (ownsClient) sqs.destroy();
      })();
      return stopped;
    },
  };
}
