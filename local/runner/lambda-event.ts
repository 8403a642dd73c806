/**
 * What Lambda's SQS event source mapping hands a function and how it reads the answer,
 * as plain functions: the `SQSEvent` record of a received message, the invocation
 * context, and which records to delete after the function returned.
 *
 * Response rules (Lambda Developer Guide, "Handling errors for an SQS event source" and
 * "Implementing partial batch responses"), with ReportBatchItemFailures on:
 * - complete success: no response, a null or empty `batchItemFailures` list;
 * - complete failure: a thrown error or timeout, or an item whose `itemIdentifier` is
 *   missing, empty, not a string, or not the message id of a record in the batch;
 * - otherwise the listed messages are retried and the others deleted. For FIFO queues
 *   "your function should stop processing messages after the first failure and return all
 *   failed and unprocessed messages": every record from the first reported failure on is
 *   kept, whatever the function listed after it, so a message group stays in order.
 */
import { randomUUID } from 'node:crypto';
import type { Message } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSMessageAttributes, SQSRecord } from 'aws-lambda';

/** The queue a record came from. */
export interface RecordSource {
  readonly queueArn: string;
  readonly region: string;
}

/** The Lambda `SQSRecord` for a message received with all system and message attributes. */
export function toRecord(message: Message, source: RecordSource): SQSRecord {
  const attributes = message.Attributes ?? {};
  const messageAttributes: SQSMessageAttributes = {};
  for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
    messageAttributes[name] = {
      ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}),
      ...(value.BinaryValue !== undefined ? { binaryValue: Buffer.from(value.BinaryValue).toString('base64') } : {}),
      stringListValues: value.StringListValues ?? [],
      binaryListValues: (value.BinaryListValues ?? []).map((b) => Buffer.from(b).toString('base64')),
      dataType: value.DataType ?? 'String',
    };
  }
  const optional = (name: keyof typeof attributes): Record<string, string> => {
    const value = attributes[name];
    return value !== undefined ? { [name]: value } : {};
  };
  return {
    messageId: message.MessageId ?? '',
    receiptHandle: message.ReceiptHandle ?? '',
    body: message.Body ?? '',
    attributes: {
      ApproximateReceiveCount: attributes.ApproximateReceiveCount ?? '1',
      SentTimestamp: attributes.SentTimestamp ?? '',
      SenderId: attributes.SenderId ?? '',
      ApproximateFirstReceiveTimestamp: attributes.ApproximateFirstReceiveTimestamp ?? '',
      ...optional('SequenceNumber'),
      ...optional('MessageGroupId'),
      ...optional('MessageDeduplicationId'),
      ...optional('AWSTraceHeader'),
      ...optional('DeadLetterQueueSourceArn'),
    },
    messageAttributes,
    md5OfBody: message.MD5OfBody ?? '',
    ...(message.MD5OfMessageAttributes ? { md5OfMessageAttributes: message.MD5OfMessageAttributes } : {}),
    eventSource: 'aws:sqs',
    eventSourceARN: source.queueArn,
    awsRegion: source.region,
  };
}

/** The function a context describes. */
export interface FunctionDescription {
  readonly functionName: string;
  readonly region: string;
  readonly accountId: string;
  readonly memoryLimitInMB: number;
}

/** A Lambda invocation context whose remaining time runs out at `deadline` (epoch ms). */
export function invocationContext(fn: FunctionDescription, deadline: number, now: () => number = Date.now): Context {
  const unsupported = (name: string) => (): never => {
    throw new Error(`context.${name}() is not supported: the handler must be async and return (or throw) its result`);
  };
  const requestId = randomUUID();
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: fn.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${fn.region}:${fn.accountId}:function:${fn.functionName}`,
    memoryLimitInMB: String(fn.memoryLimitInMB),
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${fn.functionName}`,
    logStreamName: `${new Date(now()).toISOString().slice(0, 10).replace(/-/g, '/')}/[$LATEST]${requestId.replace(/-/g, '')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - now()),
    done: unsupported('done'),
    fail: unsupported('fail'),
    succeed: unsupported('succeed'),
  };
}

/** What to do with a batch after the function returned. */
export type BatchOutcome =
  | { readonly kind: 'success'; readonly delete: readonly SQSRecord[] }
  | { readonly kind: 'partial'; readonly delete: readonly SQSRecord[]; readonly retry: readonly SQSRecord[] }
  | { readonly kind: 'invalid-response'; readonly reason: string };

/**
 * Reads a function's response. `fifo` applies the FIFO rule: records from the first
 * reported failure on are all retried.
 */
export function interpretResponse(records: readonly SQSRecord[], response: unknown, fifo: boolean, reportBatchItemFailures: boolean): BatchOutcome {
  if (!reportBatchItemFailures || response === undefined || response === null) return { kind: 'success', delete: records };
  if (typeof response !== 'object') return { kind: 'success', delete: records };
  const failures = (response as Partial<SQSBatchResponse>).batchItemFailures as unknown;
  if (failures === undefined || failures === null) return { kind: 'success', delete: records };
  if (!Array.isArray(failures)) {
    return { kind: 'invalid-response', reason: `batchItemFailures must be a list, got ${JSON.stringify(failures)}` };
  }
  if (failures.length === 0) return { kind: 'success', delete: records };
  const ids = new Set(records.map((r) => r.messageId));
  const failed = new Set<string>();
  for (const item of failures as unknown[]) {
    const identifier = item !== null && typeof item === 'object' ? (item as { itemIdentifier?: unknown }).itemIdentifier : undefined;
    if (typeof identifier !== 'string' || identifier === '') {
      return { kind: 'invalid-response', reason: `a batchItemFailures entry has no itemIdentifier: ${JSON.stringify(item)}` };
    }
    if (!ids.has(identifier)) {
      return { kind: 'invalid-response', reason: `batchItemFailures names ${identifier}, which is not the message id of a record in the batch` };
    }
    failed.add(identifier);
  }
  if (fifo) {
    const first = records.findIndex((r) => failed.has(r.messageId));
    return { kind: 'partial', delete: records.slice(0, first), retry: records.slice(first) };
  }
  return { kind: 'partial', delete: records.filter((r) => !failed.has(r.messageId)), retry: records.filter((r) => failed.has(r.messageId)) };
}
