/**
 * Deferring the failed tail of an invocation: the first failed record and every record behind
 * it are made visible again after the retry delay with one ChangeMessageVisibilityBatch call
 * (an invocation holds at most 10 records, the call's limit). The new visibility counts from
 * the call (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html).
 */
import { ChangeMessageVisibilityBatchCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { SQSRecord } from 'aws-lambda';

/** A `deferRecords` dependency of the applier that changes visibility through `sqs`. */
export function visibilityDeferral(
  sqs: SQSClient,
  queueUrlOf: (record: SQSRecord) => string | Promise<string>,
  maxDelaySeconds = Number.POSITIVE_INFINITY,
): (records: readonly SQSRecord[], delaySeconds: number) => Promise<void> {
  return async (records, delaySeconds) => {
    const first = records[0];
    if (first === undefined) return;
    const out = await sqs.send(
      new ChangeMessageVisibilityBatchCommand({
        QueueUrl: await queueUrlOf(first),
        Entries: records.map((r, i) => ({ Id: String(i), ReceiptHandle: r.receiptHandle, VisibilityTimeout: Math.min(delaySeconds, maxDelaySeconds) })),
      }),
    );
    if (out.Failed && out.Failed.length > 0) {
      const why = out.Failed.map((f) => `${f.Code ?? '?'} ${f.Message ?? ''}`.trim()).join('; ');
      throw new Error(`ChangeMessageVisibilityBatch failed for ${out.Failed.length} of ${records.length} record(s): ${why}`);
    }
  };
}
