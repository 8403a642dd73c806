/**
 * What sits in a replica's dead-letter queue, and the two ways out of it.
 *
 * **Listing** ({@link listDeadLetters}) must not consume anything. SQS has no "peek": a message is
 * read by receiving it, which hides it for a visibility timeout. The listing receives with a short
 * visibility timeout (`holdSeconds`, 30 s by default), copies the bodies, and puts every message
 * back at once with ChangeMessageVisibility 0 (also when anything fails on the way); a message it
 * could not put back (the process killed in between) reappears by itself when the short timeout
 * ends. It never deletes. Each receive carries a ReceiveRequestAttemptId, so a receive the SDK
 * retries after a network error returns the same messages instead of hiding more. On a FIFO
 * queue, receiving a message locks its message group until it is put back, so one pass shows at
 * most 10 messages per group (one source is one group): the first 10 of each source, which is
 * where the cause is; the listing says how many more wait behind them. For each message the
 * replica is asked, by a dry run of `applyMessage` (every check, then ROLLBACK), what applying it
 * would do now: the error that parked it, or that it would apply now.
 *
 * **Moving back** ({@link moveBack}): SQS's own StartMessageMoveTask from the dead-letter queue to
 * the replica's queue, keeping their order, waited for with ListMessageMoveTasks.
 *
 * **Skipping** ({@link skipBatch}): gives up one batch on one replica. In this order, so that a
 * failure anywhere loses nothing more than the one batch: (1) the batch's messages are found and
 * held in the dead-letter queue; (2) the replica records the batch as applied without applying it
 * (`pgfanout.replica_skip`, which only allows the next batch it expects and records the skip in
 * `replica_skipped`); (3) the held messages of that batch are deleted. A crash after (2) leaves
 * messages that are now duplicates, which the applier discards.
 */
import { randomUUID } from 'node:crypto';
import {
  ChangeMessageVisibilityBatchCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListMessageMoveTasksCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  StartMessageMoveTaskCommand,
  type Message,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import { GetFunctionConfigurationCommand, ListEventSourceMappingsCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import type pg from 'pg';
import { applyOptionsOf, readApplierConfig } from '../applier/config.ts';
import { applyMessage, type ApplyOptions } from '#core/replica';
import { skipBatch as skipReplicaBatch, stagedBodies } from '#core/replica/protocol.ts';
import { parseEnvelope, type Envelope } from '#core/wire';
import { resourceNames } from '#core/config.ts';
import { quoteIdent } from '#core/pg/sql.ts';
import { OPS_ERROR_CODES, OpsError } from './errors.ts';
import type { TableRef } from './verify.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { isIntegerIn } from '#core/integer.ts';

/** A replica's queue and dead-letter queue. */
export interface ReplicaQueuePair {
  readonly replica: string;
  readonly queueName: string;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly deadLetterQueueName: string;
  readonly deadLetterQueueUrl: string;
  readonly deadLetterQueueArn: string;
}

/** Finds replica `replica`'s queues of deployment `prefix` (names from resourceNames). */
export async function findQueues(sqs: SQSClient, prefix: string, replica: string): Promise<ReplicaQueuePair> {
  const names = resourceNames(prefix, replica);
  const locate = async (name: string) => {
    try {
      const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: name }));
      const attributes = await sqs.send(new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ['QueueArn'] }));
      return { url: QueueUrl as string, arn: attributes.Attributes?.QueueArn as string };
    } catch (err) {
      const e = err as { name?: string; message?: string };
      if (e.name === 'QueueDoesNotExist' || e.name === 'AWS.SimpleQueueService.NonExistentQueue') {
        throw new OpsError(OPS_ERROR_CODES.notFound, `queue ${name} does not exist (replica "${replica}", prefix "${prefix}"); check --prefix and the replica name`, err);
      }
      throw new OpsError(OPS_ERROR_CODES.notFound, `could not look up queue ${name}: ${e.message ?? String(err)}`, err);
    }
  };
  const [queue, dlq] = await Promise.all([locate(names.queue), locate(names.deadLetterQueue)]);
  return {
    replica,
    queueName: names.queue,
    queueUrl: queue.url,
    queueArn: queue.arn,
    deadLetterQueueName: names.deadLetterQueue,
    deadLetterQueueUrl: dlq.url,
    deadLetterQueueArn: dlq.arn,
  };
}

/** What a dry run on the replica says about a message now. */
export type DryRunVerdict =
  | { readonly outcome: 'applied' | 'staged' | 'duplicate'; readonly changes: number }
  | { readonly error: { readonly code: string; readonly message: string } };

/** One message of a dead-letter queue. */
export interface ParkedMessage {
  readonly messageId: string;
  readonly groupId?: string;
  /** When SQS first received it (SentTimestamp, ISO). */
  readonly sentAt?: string;
  /** From the envelope; absent when the body is no valid pgfanout message. */
  readonly sourceId?: string;
  readonly batchId?: string;
  readonly part?: number;
  readonly final?: boolean;
  /** Changes in this message (a split change counts once). */
  readonly changes?: number;
  /** Every table the message's changes touch, in first-seen order. */
  readonly tables: readonly TableRef[];
  readonly dryRun: DryRunVerdict;
}

/** What {@link listDeadLetters} found. */
export interface DeadLetterListing {
  readonly queues: ReplicaQueuePair;
  /** SQS's ApproximateNumberOfMessages (+ not visible) of the dead-letter queue before listing. */
  readonly approximateDepth: number;
  /** In stream order: by source, batch, part. */
  readonly messages: readonly ParkedMessage[];
}

/**
 * The settings replica `queues.replica`'s applier runs with, for the dry runs: the sources it
 * follows, whether it runs schema changes, its include and exclude lists and its trigger mode,
 * read from the environment of the Lambda function its queue's event source mapping invokes
 * (ListEventSourceMappings, then GetFunctionConfiguration's `Environment.Variables`,
 * https://docs.aws.amazon.com/lambda/latest/api/API_GetFunctionConfiguration.html) and parsed
 * as the applier parses it. A dry run with other settings would answer for another applier:
 * "would apply" for a source the replica does not follow, or a refusal of a schema change the
 * replica runs.
 */
export async function replicaApplySettings(lambda: LambdaClient, queues: ReplicaQueuePair): Promise<ApplyOptions> {
  const functions = new Set<string>();
  let marker: string | undefined;
  do {
    const page = await lambda.send(new ListEventSourceMappingsCommand({ EventSourceArn: queues.queueArn, ...(marker ? { Marker: marker } : {}) }));
    for (const m of page.EventSourceMappings ?? []) if (m.FunctionArn) functions.add(m.FunctionArn);
    marker = page.NextMarker;
  } while (marker);
  const [functionArn, ...others] = [...functions];
  if (functionArn === undefined) {
    throw new OpsError(OPS_ERROR_CODES.notFound, `replica ${queues.replica}: no event source mapping reads ${queues.queueArn}, so its applier's settings cannot be read for the dry runs; is the replica's applier deployed (or pgfanout local running)?`);
  }
  if (others.length > 0) {
    throw new OpsError(OPS_ERROR_CODES.invalidArgument, `replica ${queues.replica}: ${functions.size} functions read ${queues.queueArn} (${[...functions].join(', ')}); a replica has one applier`);
  }
  let variables: Record<string, string>;
  try {
    variables = (await lambda.send(new GetFunctionConfigurationCommand({ FunctionName: functionArn }))).Environment?.Variables ?? {};
  } catch (err) {
    throw new OpsError(OPS_ERROR_CODES.notFound, `replica ${queues.replica}: cannot read the settings of its applier ${functionArn} (${(err as Error).message}); the dry runs need them (lambda:GetFunctionConfiguration)`, err);
  }
  let config: ReturnType<typeof readApplierConfig>;
  try {
    config = readApplierConfig(variables);
  } catch (err) {
    throw new OpsError(OPS_ERROR_CODES.invalidArgument, `replica ${queues.replica}: the settings of its applier ${functionArn} are not valid: ${(err as Error).message}`, err);
  }
  return applyOptionsOf(config);
}

export interface ListOptions {
  /** Visibility timeout of the listing's receives (s); messages are put back at once anyway. @default 30 */
  readonly holdSeconds?: number;
  /** Messages to look at, at most. @default 100 */
  readonly limit?: number;
  /** Options the replica's applier runs with, for the dry runs (see {@link replicaApplySettings}). */
  readonly apply?: ApplyOptions;
}

/** A message received and held, with its body parsed when it is a pgfanout message. */
interface Held {
  readonly message: Message;
  readonly envelope: Envelope | undefined;
  readonly parseError: Error | undefined;
}

/**
 * Receives up to `limit` messages of `queueUrl` with a `holdSeconds` visibility timeout and
 * hands them to `use`; whatever happens, every held message not deleted by `use` is put back.
 */
async function withHeld<T>(sqs: SQSClient, queueUrl: string, holdSeconds: number, limit: number, use: (held: readonly Held[], remove: (h: Held) => void) => Promise<T>): Promise<T> {
  const held: Held[] = [];
  const removed = new Set<Held>();
  try {
    while (held.length < limit) {
      const out = await sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: queueUrl,
          MaxNumberOfMessages: Math.min(10, limit - held.length),
          VisibilityTimeout: holdSeconds,
          WaitTimeSeconds: 1,
          MessageSystemAttributeNames: ['All'],
          ReceiveRequestAttemptId: randomUUID(),
        }),
      );
      const messages = out.Messages ?? [];
      if (messages.length === 0) break;
      for (const message of messages) {
        try {
          held.push({ message, envelope: parseEnvelope(message.Body ?? ''), parseError: undefined });
        } catch (err) {
          held.push({ message, envelope: undefined, parseError: err as Error });
        }
      }
    }
    return await use(held, (h) => removed.add(h));
  } finally {
    const back = held.filter((h) => !removed.has(h));
    for (let i = 0; i < back.length; i += 10) {
      const slice = back.slice(i, i + 10);
      await sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: queueUrl,
          Entries: slice.map((h, j) => ({ Id: String(j), ReceiptHandle: h.message.ReceiptHandle as string, VisibilityTimeout: 0 })),
        }),
      );
    }
  }
}

/** Stream order: source, then batch, then part; messages that are no pgfanout message last. */
function streamOrder(a: Held, b: Held): number {
  const x = a.envelope;
  const y = b.envelope;
  if (!x || !y) return x ? -1 : y ? 1 : 0;
  if (x.source !== y.source) return x.source < y.source ? -1 : 1;
  const batch = BigInt(x.batch) - BigInt(y.batch);
  if (batch !== 0n) return batch < 0n ? -1 : 1;
  return x.part - y.part;
}

/** Each table `envelope`'s changes touch, in first-seen order. */
function touchedTables(envelope: Envelope): TableRef[] {
  const seen = new Map<string, TableRef>();
  for (const change of envelope.changes) {
    const head = change as { schema?: unknown; table?: unknown };
    if (typeof head.schema === 'string' && typeof head.table === 'string') seen.set(JSON.stringify([head.schema, head.table]), { schema: head.schema, table: head.table });
  }
  return [...seen.values()];
}

/** `schema.table` as SQL would read it: parts quoted only where they need it. */
export function tableName(ref: TableRef): string {
  const part = (name: string) => (/^[a-z_][a-z0-9_$]*$/.test(name) ? name : quoteIdent(name));
  return `${part(ref.schema)}.${part(ref.table)}`;
}

function uniqueTables(refs: readonly TableRef[]): TableRef[] {
  return [...new Map(refs.map((r) => [JSON.stringify([r.schema, r.table]), r])).values()];
}

function countChanges(envelope: Envelope): number {
  return envelope.changes.filter((c) => typeof (c as { schema?: unknown }).schema === 'string').length;
}

async function dryRun(replica: pg.ClientBase, body: string, apply: ApplyOptions): Promise<DryRunVerdict> {
  try {
    const result = await applyMessage(replica, body, { ...apply, dryRun: true });
    return { outcome: result.outcome, changes: result.changes };
  } catch (err) {
    const e = err as { code?: unknown; message?: unknown };
    return { error: { code: typeof e.code === 'string' ? e.code : 'UNEXPECTED', message: typeof e.message === 'string' ? e.message : String(err) } };
  }
}

function describe(h: Held, verdict: DryRunVerdict): ParkedMessage {
  const m = h.message;
  const sent = m.Attributes?.SentTimestamp;
  const e = h.envelope;
  return {
    messageId: m.MessageId as string,
    ...(m.Attributes?.MessageGroupId ? { groupId: m.Attributes.MessageGroupId } : {}),
    ...(sent ? { sentAt: new Date(Number(sent)).toISOString() } : {}),
    ...(e ? { sourceId: e.source, batchId: e.batch, part: e.part, final: e.final, changes: countChanges(e) } : {}),
    tables: e ? touchedTables(e) : [],
    dryRun: verdict,
  };
}

/**
 * Lists the dead-letter queue of a replica in stream order, each message with what a dry run of
 * applying it on `replica` says now. Never deletes; see the module comment for how messages are
 * read and put back. `replica` must not be inside a transaction.
 */
export async function listDeadLetters(sqs: SQSClient, queues: ReplicaQueuePair, replica: pg.ClientBase, options: ListOptions = {}): Promise<DeadLetterListing> {
  const holdSeconds = checkInteger('holdSeconds', options.holdSeconds, 30, 1, 43_200);
  const limit = checkInteger('limit', options.limit, 100, 1, 10_000);
  const approximateDepth = await depth(sqs, queues.deadLetterQueueUrl);
  const bodies = await withHeld(sqs, queues.deadLetterQueueUrl, holdSeconds, limit, async (held) => [...held].sort(streamOrder));
  // The messages are back in the queue already; the dry runs work on the copies.
  const messages: ParkedMessage[] = [];
  for (const h of bodies) {
    const verdict: DryRunVerdict = h.envelope
      ? await dryRun(replica, h.message.Body as string, options.apply ?? {})
      : { error: { code: (h.parseError as { code?: string }).code ?? 'MALFORMED_MESSAGE', message: (h.parseError as Error).message } };
    messages.push(describe(h, verdict));
  }
  return { queues, approximateDepth, messages };
}

async function depth(sqs: SQSClient, queueUrl: string): Promise<number> {
  const out = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }));
  return Number(out.Attributes?.ApproximateNumberOfMessages ?? 0) + Number(out.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
}

function checkInteger(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (!isIntegerIn(value, min, max)) {
    throw new OpsError(OPS_ERROR_CODES.invalidArgument, `${name} is ${String(value)}; allowed: an integer from ${min} to ${max}`);
  }
  return value;
}

// ---------------------------------------------------------------- moving back

/** How a move ended. */
export interface MoveResult {
  readonly moved: number;
  readonly toMove: number;
}

/**
 * Moves the replica's queue backlog behind the parked messages in the dead-letter queue, in
 * stream order: every message of the main queue is received in order (FIFO), sent to the
 * dead-letter queue with its group and attributes, and only then deleted from the main queue.
 * Afterwards the dead-letter queue holds the parked messages followed by everything that
 * waited behind them, and moving it back gives the main queue the stream in order again. SQS
 * documents that moved messages are new messages placed behind what the destination already
 * holds ("interweave with the new messages";
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-configure-dead-letter-queue-redrive.html),
 * which is why the backlog must leave first. Safe to interrupt: a message sent but not yet
 * deleted is sent again on the next run (deduplicated by SQS for 5 minutes, otherwise a
 * duplicate the replica recognises by its position), and nothing is deleted before it is in
 * the dead-letter queue. Run it only while the replica's applier is paused.
 */
export async function moveBacklogBehind(
  sqs: SQSClient,
  queues: ReplicaQueuePair,
  options: { readonly timeoutMs?: number; readonly pollMs?: number; readonly onProgress?: (moved: number) => void } = {},
): Promise<number> {
  const timeoutMs = checkInteger('timeoutMs', options.timeoutMs, 1_200_000, 0, 86_400_000);
  const pollMs = checkInteger('pollMs', options.pollMs, 1000, 1, 60_000);
  const deadline = Date.now() + timeoutMs;
  let moved = 0;
  for (;;) {
    const depth = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: queues.queueUrl, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }),
    );
    const visible = Number(depth.Attributes?.ApproximateNumberOfMessages ?? 0);
    const inFlight = Number(depth.Attributes?.ApproximateNumberOfMessagesNotVisible ?? 0);
    if (visible === 0 && inFlight === 0) return moved;
    if (visible === 0) {
      // Messages a failed invocation deferred (or one still running) come back when their
      // visibility timeout ends; the backlog cannot pass them, so wait.
      if (Date.now() >= deadline) {
        throw new OpsError(
          OPS_ERROR_CODES.timeout,
          `${queues.queueName}: ${inFlight} message(s) still in flight after ${timeoutMs / 1000} s; is the replica's applier paused (pgfanout pause --replica ${queues.replica})? Run again to go on`,
        );
      }
      await sleep(pollMs);
      continue;
    }
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queues.queueUrl,
        MaxNumberOfMessages: 10,
        VisibilityTimeout: 30,
        WaitTimeSeconds: 1,
        MessageSystemAttributeNames: ['MessageGroupId'],
        MessageAttributeNames: ['All'],
      }),
    );
    const received = out.Messages ?? [];
    let done = 0;
    try {
      for (const m of received) {
        const group = m.Attributes?.MessageGroupId;
        if (!m.MessageId || !m.ReceiptHandle || m.Body === undefined || !group) {
          throw new OpsError(OPS_ERROR_CODES.moveFailed, `${queues.queueName}: a received message lacks its id, receipt handle, body or group; nothing of it was moved`);
        }
        await sqs.send(
          new SendMessageCommand({
            QueueUrl: queues.deadLetterQueueUrl,
            MessageBody: m.Body,
            MessageGroupId: group,
            MessageDeduplicationId: `backlog-${m.MessageId}`,
            ...(m.MessageAttributes && Object.keys(m.MessageAttributes).length > 0 ? { MessageAttributes: m.MessageAttributes } : {}),
          }),
        );
        await sqs.send(new DeleteMessageCommand({ QueueUrl: queues.queueUrl, ReceiptHandle: m.ReceiptHandle }));
        done++;
        moved++;
        options.onProgress?.(moved);
      }
    } catch (err) {
      // Stopped part way: what was received and not moved is made visible again at once, in its
      // place at the head of the queue (a killed process leaves it for the 30 s receive timeout).
      const rest = received.slice(done).filter((m) => m.ReceiptHandle);
      if (rest.length > 0) {
        await sqs
          .send(new ChangeMessageVisibilityBatchCommand({ QueueUrl: queues.queueUrl, Entries: rest.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle as string, VisibilityTimeout: 0 })) }))
          .catch(() => undefined);
      }
      throw err;
    }
  }
}

/**
 * Moves every message of the dead-letter queue back to the replica's queue with SQS's
 * StartMessageMoveTask (order kept) and waits until the task completes, calling `onProgress`
 * with each poll of ListMessageMoveTasks. Throws an {@link OpsError}: `REFUSED` when a move task
 * already runs for that queue, `MOVE_FAILED` when the task fails or is cancelled, `TIMEOUT`.
 */
export async function moveBack(
  sqs: SQSClient,
  queues: ReplicaQueuePair,
  options: { readonly timeoutMs?: number; readonly pollMs?: number; readonly onProgress?: (moved: number, toMove: number) => void } = {},
): Promise<MoveResult> {
  const timeoutMs = checkInteger('timeoutMs', options.timeoutMs, 600_000, 0, 86_400_000);
  const pollMs = checkInteger('pollMs', options.pollMs, 500, 1, 60_000);
  let handle: string | undefined;
  try {
    handle = (await sqs.send(new StartMessageMoveTaskCommand({ SourceArn: queues.deadLetterQueueArn, DestinationArn: queues.queueArn }))).TaskHandle;
  } catch (err) {
    const e = err as { name?: string; message?: string };
    if (e.name === 'UnsupportedOperation') {
      throw new OpsError(OPS_ERROR_CODES.refused, `a message move task already runs for ${queues.deadLetterQueueName}: ${e.message ?? ''}; wait for it or cancel it (CancelMessageMoveTask)`, err);
    }
    throw new OpsError(OPS_ERROR_CODES.moveFailed, `could not start moving ${queues.deadLetterQueueName} back to ${queues.queueName}: ${e.message ?? String(err)}`, err);
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const out = await sqs.send(new ListMessageMoveTasksCommand({ SourceArn: queues.deadLetterQueueArn, MaxResults: 10 }));
    // The running task carries its handle; once finished it is the newest entry.
    const task = (out.Results ?? []).find((t) => t.TaskHandle === handle) ?? out.Results?.[0];
    const moved = Number(task?.ApproximateNumberOfMessagesMoved ?? 0);
    const toMove = Number(task?.ApproximateNumberOfMessagesToMove ?? 0);
    options.onProgress?.(moved, toMove);
    if (task?.Status === 'COMPLETED') return { moved, toMove };
    if (task?.Status === 'FAILED' || task?.Status === 'CANCELLED') {
      throw new OpsError(OPS_ERROR_CODES.moveFailed, `moving ${queues.deadLetterQueueName} back to ${queues.queueName} ended ${task.Status} after ${moved} of ${toMove} message(s)${task.FailureReason ? `: ${task.FailureReason}` : ''}`);
    }
    if (Date.now() >= deadline) {
      throw new OpsError(OPS_ERROR_CODES.timeout, `moving ${queues.deadLetterQueueName} back to ${queues.queueName}: ${moved} of ${toMove} message(s) moved after ${timeoutMs / 1000} s; the task goes on (ListMessageMoveTasks)`);
    }
    await sleep(pollMs);
  }
}

// ---------------------------------------------------------------- skipping

/** What {@link skipBatch} did. */
export interface SkipResult {
  readonly sourceId: string;
  readonly batchId: string;
  /** Tables the skipped batch touched: its changes there are not on this replica. */
  readonly tables: readonly TableRef[];
  /** Changes the skipped batch held (from the parked messages and parts staged on the replica). */
  readonly changes: number;
  /** The dry run's error that was recorded as the reason. */
  readonly reason: string;
  /** Messages of the batch deleted from the dead-letter queue. */
  readonly deleted: number;
  /** Messages of the batch that could not be deleted (harmless duplicates now). */
  readonly notDeleted: readonly string[];
}

/** The batch to skip: found in the dead-letter queue and on the replica, not yet skipped. */
export interface SkipPlan {
  readonly sourceId: string;
  readonly batchId: string;
  readonly tables: readonly TableRef[];
  readonly changes: number;
  readonly messages: number;
  readonly reason: string;
}

/**
 * Finds batch `batchId` (of `sourceId`, needed only when the queue holds several sources) in
 * the dead-letter queue and describes what skipping it would do; changes nothing.
 */
export function planSkip(sqs: SQSClient, queues: ReplicaQueuePair, replica: pg.ClientBase, batchId: string, options: SkipOptions = {}): Promise<SkipPlan> {
  return withBatch(sqs, queues, replica, batchId, options, async (plan) => plan);
}

export interface SkipOptions {
  readonly sourceId?: string;
  readonly holdSeconds?: number;
  readonly apply?: ApplyOptions;
}

/**
 * Skips batch `batchId` on the replica: records it as applied without applying it
 * (`pgfanout.replica_skip`, refused unless it is the next batch the replica expects) and deletes
 * its messages from the dead-letter queue, in that order (see the module comment). Its changes
 * are lost on this replica.
 */
export function skipBatch(sqs: SQSClient, queues: ReplicaQueuePair, replica: pg.ClientBase, batchId: string, options: SkipOptions = {}): Promise<SkipResult> {
  return withBatch(sqs, queues, replica, batchId, options, async (plan, held, remove) => {
    try {
      await skipReplicaBatch(replica, plan.sourceId, plan.batchId, plan.reason, plan.tables.map(tableName));
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (e.code === '55000' || e.code === '22023') throw new OpsError(OPS_ERROR_CODES.refused, `replica ${queues.replica}: ${e.message ?? ''}`, err);
      throw new OpsError(OPS_ERROR_CODES.refused, `replica ${queues.replica}: could not skip batch ${plan.batchId}: ${e.message ?? String(err)}`, err);
    }
    const failed = new Set<number>();
    for (let first = 0; first < held.length; first += 10) {
      const entries = held.slice(first, first + 10).map((h, i) => ({ Id: String(first + i), ReceiptHandle: h.message.ReceiptHandle as string }));
      const out = await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queues.deadLetterQueueUrl, Entries: entries }));
      for (const f of out.Failed ?? []) failed.add(Number(f.Id));
    }
    held.forEach((h, i) => {
      if (!failed.has(i)) remove(h);
    });
    return {
      sourceId: plan.sourceId,
      batchId: plan.batchId,
      tables: plan.tables,
      changes: plan.changes,
      reason: plan.reason,
      deleted: held.length - failed.size,
      notDeleted: held.filter((_, i) => failed.has(i)).map((h) => h.message.MessageId as string),
    };
  });
}

async function withBatch<T>(
  sqs: SQSClient,
  queues: ReplicaQueuePair,
  replica: pg.ClientBase,
  batchId: string,
  options: SkipOptions,
  use: (plan: SkipPlan, held: readonly Held[], remove: (h: Held) => void) => Promise<T>,
): Promise<T> {
  if (!/^[1-9][0-9]{0,18}$/.test(batchId)) throw new OpsError(OPS_ERROR_CODES.invalidArgument, `batch "${batchId}" is not allowed; expected a batch id (a positive integer)`);
  const holdSeconds = checkInteger('holdSeconds', options.holdSeconds, 60, 1, 43_200);
  // Ten messages per group are visible at once (FIFO): the batch to skip is the next one the
  // replica expects, so its parts are at the head of their group.
  return withHeld(sqs, queues.deadLetterQueueUrl, holdSeconds, 100, async (all, remove) => {
    const matching = all.filter((h) => h.envelope?.batch === batchId && (options.sourceId === undefined || h.envelope.source === options.sourceId)).sort(streamOrder);
    const sources = [...new Set(matching.map((h) => h.envelope?.source as string))];
    if (matching.length === 0) {
      const present = [...new Set(all.filter((h) => h.envelope).map((h) => `${(h.envelope as Envelope).batch}`))];
      throw new OpsError(
        OPS_ERROR_CODES.notFound,
        `batch ${batchId}${options.sourceId ? ` of source ${options.sourceId}` : ''} is not in ${queues.deadLetterQueueName} (it holds ${present.length === 0 ? 'no pgfanout message' : `batch(es) ${present.join(', ')}`}); only a parked batch can be skipped`,
      );
    }
    if (sources.length > 1) {
      throw new OpsError(OPS_ERROR_CODES.invalidArgument, `batch ${batchId} is parked for ${sources.length} sources (${sources.join(', ')}); name one with --source-id`);
    }
    const sourceId = sources[0] as string;
    // Parts already staged on the replica belong to the batch too.
    const staged = await stagedBodies(replica, sourceId, batchId);
    const envelopes = [...staged.map((body) => parseEnvelope(body)), ...matching.map((h) => h.envelope as Envelope)];
    const tables = uniqueTables(envelopes.flatMap(touchedTables));
    const changes = envelopes.reduce((n, e) => n + countChanges(e), 0);
    const head = matching[0] as Held;
    const verdict = await dryRun(replica, head.message.Body as string, options.apply ?? {});
    const reason = 'error' in verdict ? `${verdict.error.code}: ${verdict.error.message}` : `dry run: ${verdict.outcome}`;
    return use({ sourceId, batchId, tables, changes, messages: matching.length, reason }, matching, remove);
  });
}
