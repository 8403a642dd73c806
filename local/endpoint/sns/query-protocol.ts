/**
 * SNS over the AWS query protocol: form-encoded `Action=…&Version=2010-03-31&…` requests,
 * XML replies `<{Action}Response xmlns="http://sns.amazonaws.com/doc/2010-03-31/">
 * <{Action}Result>…</{Action}Result><ResponseMetadata><RequestId/></ResponseMetadata>`,
 * errors `<ErrorResponse><Error><Type>Sender</Type><Code/><Message/></Error><RequestId/>`
 * with the HTTP status of the error — the shapes the SDK's AwsQueryProtocol reads.
 */
import { AwsApiError, snsError } from '../errors.ts';
import type { WireReply } from '../sqs/json-protocol.ts';
import { InputReader } from '../wire/input.ts';
import { toXml, xmlEscape } from '../wire/query.ts';
import { SNS_INPUT_ERRORS, type SnsService } from './service.ts';

const NAMESPACE = 'http://sns.amazonaws.com/doc/2010-03-31/';
const XML = 'text/xml';

type Operation = (service: SnsService, input: InputReader) => object;

const OPERATIONS: Readonly<Record<string, Operation>> = {
  CreateTopic: (s, i) => s.createTopic(i),
  GetTopicAttributes: (s, i) => s.getTopicAttributes(i),
  SetTopicAttributes: (s, i) => s.setTopicAttributes(i),
  DeleteTopic: (s, i) => s.deleteTopic(i),
  ListTopics: (s, i) => s.listTopics(i),
  Subscribe: (s, i) => s.subscribe(i),
  Unsubscribe: (s, i) => s.unsubscribe(i),
  ListSubscriptionsByTopic: (s, i) => s.listSubscriptionsByTopic(i),
  ListSubscriptions: (s, i) => s.listSubscriptions(i),
  GetSubscriptionAttributes: (s, i) => s.getSubscriptionAttributes(i),
  SetSubscriptionAttributes: (s, i) => s.setSubscriptionAttributes(i),
  Publish: (s, i) => s.publish(i),
  PublishBatch: (s, i) => s.publishBatch(i),
  TagResource: (s, i) => s.tagResource(i),
  ListTagsForResource: (s, i) => s.listTagsForResource(i),
};

/** SQS actions that older clients send in the query protocol. */
const SQS_QUERY_ACTIONS = new Set([
  'CreateQueue',
  'GetQueueUrl',
  'ListQueues',
  'GetQueueAttributes',
  'SetQueueAttributes',
  'DeleteQueue',
  'PurgeQueue',
  'SendMessage',
  'SendMessageBatch',
  'ReceiveMessage',
  'DeleteMessage',
  'DeleteMessageBatch',
  'ChangeMessageVisibility',
  'ChangeMessageVisibilityBatch',
]);

/** The XML reply for an error of either service (the query-protocol error shape). */
export function queryErrorReply(error: AwsApiError, requestId: string): WireReply {
  return {
    status: error.kind.status,
    headers: { 'content-type': XML },
    body:
      `<ErrorResponse xmlns="${NAMESPACE}"><Error><Type>${error.kind.fault}</Type><Code>${xmlEscape(error.kind.code)}</Code>` +
      `<Message>${xmlEscape(error.message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
  };
}

/** Runs the SNS action of a parsed query-protocol request. */
export function handleSnsRequest(service: SnsService, params: Record<string, unknown>, requestId: string): WireReply {
  try {
    const action = typeof params.Action === 'string' ? params.Action : '';
    const operation = Object.hasOwn(OPERATIONS, action) ? OPERATIONS[action] : undefined;
    if (!operation) {
      if (SQS_QUERY_ACTIONS.has(action)) {
        throw snsError(
          'InvalidAction',
          `The action ${action} is an SQS action in the query protocol; the local endpoint speaks SQS in AWS JSON 1.0 only (X-Amz-Target: AmazonSQS.${action}), as current AWS SDKs do.`,
        );
      }
      throw snsError(
        'InvalidAction',
        `The action ${JSON.stringify(action)} is not valid for this endpoint; the local endpoint implements ${Object.keys(OPERATIONS).join(', ')}.`,
      );
    }
    const output = operation(service, new InputReader(params, SNS_INPUT_ERRORS));
    const result = Object.keys(output).length > 0 ? `<${action}Result>${toXml(output)}</${action}Result>` : '';
    return {
      status: 200,
      headers: { 'content-type': XML },
      body: `<${action}Response xmlns="${NAMESPACE}">${result}<ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></${action}Response>`,
    };
  } catch (error) {
    if (error instanceof AwsApiError) return queryErrorReply(error, requestId);
    throw error;
  }
}
