/**
 * How the runner reads a handler's response (Lambda Developer Guide, "Implementing partial
 * batch responses": success and failure conditions; FIFO: "stop processing messages after
 * the first failure and return all failed and unprocessed messages").
 */
import type { SQSRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { interpretResponse, invocationContext, toRecord } from './lambda-event.ts';

const records = ['m1', 'm2', 'm3', 'm4'].map((id) => ({ messageId: id }) as SQSRecord);
const ids = (list: readonly SQSRecord[]) => list.map((r) => r.messageId);

describe('interpretResponse', () => {
  it('no response, null, an empty or null batchItemFailures list: complete success', () => {
    for (const response of [undefined, null, {}, { batchItemFailures: [] }, { batchItemFailures: null }]) {
      const outcome = interpretResponse(records, response, true, true);
      expect(outcome.kind).toBe('success');
      expect(outcome.kind === 'success' && ids(outcome.delete)).toEqual(['m1', 'm2', 'm3', 'm4']);
    }
  });

  it('FIFO: every record from the first reported failure on is retried', () => {
    const outcome = interpretResponse(records, { batchItemFailures: [{ itemIdentifier: 'm2' }] }, true, true);
    expect(outcome.kind === 'partial' && [ids(outcome.delete), ids(outcome.retry)]).toEqual([['m1'], ['m2', 'm3', 'm4']]);
  });

  it('standard queue: only the reported records are retried', () => {
    const outcome = interpretResponse(records, { batchItemFailures: [{ itemIdentifier: 'm2' }, { itemIdentifier: 'm4' }] }, false, true);
    expect(outcome.kind === 'partial' && [ids(outcome.delete), ids(outcome.retry)]).toEqual([['m1', 'm3'], ['m2', 'm4']]);
  });

  it('an empty, null, misnamed or unknown itemIdentifier fails the whole batch', () => {
    for (const item of [{ itemIdentifier: '' }, { itemIdentifier: null }, { messageId: 'm1' }, { itemIdentifier: 'zzz' }]) {
      expect(interpretResponse(records, { batchItemFailures: [item] }, true, true).kind).toBe('invalid-response');
    }
  });

  it('without ReportBatchItemFailures the response is ignored', () => {
    expect(interpretResponse(records, { batchItemFailures: [{ itemIdentifier: 'm2' }] }, true, false).kind).toBe('success');
  });
});

describe('event and context', () => {
  it('an SQS message becomes an SQSRecord with base64 binary attributes', () => {
    const record = toRecord(
      {
        MessageId: 'id',
        ReceiptHandle: 'rh',
        Body: 'b',
        MD5OfBody: 'md5',
        Attributes: { ApproximateReceiveCount: '2', SentTimestamp: '1', SenderId: 's', ApproximateFirstReceiveTimestamp: '2', MessageGroupId: 'g' },
        MessageAttributes: { bin: { DataType: 'Binary', BinaryValue: new Uint8Array([1, 2]) } },
      },
      { queueArn: 'arn:aws:sqs:eu-west-1:123456789012:q.fifo', region: 'eu-west-1' },
    );
    expect(record).toMatchObject({
      messageId: 'id',
      receiptHandle: 'rh',
      eventSource: 'aws:sqs',
      eventSourceARN: 'arn:aws:sqs:eu-west-1:123456789012:q.fifo',
      awsRegion: 'eu-west-1',
      attributes: { ApproximateReceiveCount: '2', MessageGroupId: 'g' },
      messageAttributes: { bin: { dataType: 'Binary', binaryValue: 'AQI=', stringListValues: [], binaryListValues: [] } },
    });
  });

  it('the context counts down to the deadline and names the function', () => {
    let now = 1_000;
    const context = invocationContext({ functionName: 'applier', region: 'eu-west-1', accountId: '123456789012', memoryLimitInMB: 256 }, 4_000, () => now);
    expect(context.getRemainingTimeInMillis()).toBe(3_000);
    now = 5_000;
    expect(context.getRemainingTimeInMillis()).toBe(0);
    expect(context.invokedFunctionArn).toBe('arn:aws:lambda:eu-west-1:123456789012:function:applier');
    expect(context.memoryLimitInMB).toBe('256');
    expect(() => context.succeed('x')).toThrow('must be async');
  });
});
