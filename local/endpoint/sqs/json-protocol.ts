/**
 * SQS over AWS JSON 1.0, as the pinned SDK speaks it: `POST /` with
 * `Content-Type: application/x-amz-json-1.0` and `X-Amz-Target: AmazonSQS.<Operation>`,
 * JSON request and reply bodies. Errors (SQS Developer Guide, "Interpreting Amazon SQS
 * JSON API responses"): the HTTP status of the error, a body
 * `{"__type": "com.amazonaws.sqs#<Shape>", "message": "..."}` and the header
 * `x-amzn-query-error: <QueryCode>;Sender|Receiver`, from which the SDK (the SQS model is
 * `awsQueryCompatible`) picks the typed exception.
 */
import { AwsApiError, sqsError } from '../errors.ts';
import { InputReader } from '../wire/input.ts';
import { SQS_INPUT_ERRORS, type SqsService } from './service.ts';

/** The `X-Amz-Target` prefix of SQS operations. */
const SQS_TARGET_PREFIX = 'AmazonSQS.';
/** Content type of SQS requests and replies. */
export const SQS_CONTENT_TYPE = 'application/x-amz-json-1.0';

type Operation = (service: SqsService, input: InputReader, signal: AbortSignal) => unknown;

const OPERATIONS: Readonly<Record<string, Operation>> = {
  CreateQueue: (s, i) => s.createQueue(i),
  GetQueueUrl: (s, i) => s.getQueueUrl(i),
  ListQueues: (s, i) => s.listQueues(i),
  GetQueueAttributes: (s, i) => s.getQueueAttributes(i),
  SetQueueAttributes: (s, i) => s.setQueueAttributes(i),
  DeleteQueue: (s, i) => s.deleteQueue(i),
  PurgeQueue: (s, i) => s.purgeQueue(i),
  TagQueue: (s, i) => s.tagQueue(i),
  UntagQueue: (s, i) => s.untagQueue(i),
  ListQueueTags: (s, i) => s.listQueueTags(i),
  ListDeadLetterSourceQueues: (s, i) => s.listDeadLetterSourceQueues(i),
  SendMessage: (s, i) => s.sendMessage(i),
  SendMessageBatch: (s, i) => s.sendMessageBatch(i),
  ReceiveMessage: (s, i, signal) => s.receiveMessage(i, signal),
  DeleteMessage: (s, i) => s.deleteMessage(i),
  DeleteMessageBatch: (s, i) => s.deleteMessageBatch(i),
  ChangeMessageVisibility: (s, i) => s.changeMessageVisibility(i),
  ChangeMessageVisibilityBatch: (s, i) => s.changeMessageVisibilityBatch(i),
  StartMessageMoveTask: (s, i) => s.startMessageMoveTask(i),
  ListMessageMoveTasks: (s, i) => s.listMessageMoveTasks(i),
  CancelMessageMoveTask: (s, i) => s.cancelMessageMoveTask(i),
};

/** An HTTP reply. */
export interface WireReply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** The reply for an SQS error. */
export function sqsErrorReply(error: AwsApiError): WireReply {
  return {
    status: error.kind.status,
    headers: { 'content-type': SQS_CONTENT_TYPE, 'x-amzn-query-error': `${error.kind.code};${error.kind.fault}` },
    body: JSON.stringify({ __type: `com.amazonaws.sqs#${error.kind.shape}`, message: error.message }),
  };
}

/** Runs the operation named by `target` with the JSON `body`. */
export async function handleSqsRequest(service: SqsService, target: string, body: string, signal: AbortSignal): Promise<WireReply> {
  try {
    const name = target.startsWith(SQS_TARGET_PREFIX) ? target.slice(SQS_TARGET_PREFIX.length) : '';
    const operation = Object.hasOwn(OPERATIONS, name) ? OPERATIONS[name] : undefined;
    if (!operation) {
      throw sqsError(
        'InvalidAction',
        `The action ${target} is not valid for this endpoint; the local endpoint implements ${Object.keys(OPERATIONS).join(', ')}.`,
      );
    }
    let parsed: unknown;
    try {
      parsed = body.trim() === '' ? {} : JSON.parse(body);
    } catch (err) {
      throw sqsError('InvalidParameterValue', `The request body is not valid JSON: ${(err as Error).message}.`, { cause: err });
    }
    const output = await operation(service, new InputReader(parsed, SQS_INPUT_ERRORS), signal);
    return { status: 200, headers: { 'content-type': SQS_CONTENT_TYPE }, body: JSON.stringify(output ?? {}) };
  } catch (error) {
    if (error instanceof AwsApiError) return sqsErrorReply(error);
    throw error;
  }
}
