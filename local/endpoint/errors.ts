/**
 * Errors of the local SNS + SQS + Secrets Manager endpoint: a small hierarchy with a stable `code`,
 * keeping the `cause` when there is one.
 *
 * {@link AwsApiError} is what a client sees: it carries everything needed to write the
 * error reply exactly as AWS does (SQS: AWS JSON 1.0 body with `__type` plus the
 * `x-amzn-query-error` header; SNS: query-protocol `<ErrorResponse>` XML), so that the
 * AWS SDK raises the same typed exception it raises against AWS.
 */

/** The services the endpoint speaks. */
export type AwsService = 'sqs' | 'sns' | 'secretsmanager';

/** Base class of every error raised by the local endpoint. */
class EndpointError extends Error {
  /** Stable, machine-readable code. */
  readonly code: string;

  constructor(code: string, message: string, options?: { readonly cause?: unknown }) {
    super(message, options);
    this.name = 'EndpointError';
    this.code = code;
  }
}

/** Static description of one AWS error: its wire code, model shape, HTTP status and fault. */
export interface AwsErrorKind {
  /** The AWS query error code (`<Code>` in XML, first part of `x-amzn-query-error`). */
  readonly code: string;
  /** The error shape in the service model (`__type` suffix); equals `code` for common errors. */
  readonly shape: string;
  /** HTTP status code of the reply. */
  readonly status: number;
  /** `Sender` for client faults, `Receiver` for server faults. */
  readonly fault: 'Sender' | 'Receiver';
}

/** An error returned to the client in AWS's wire format. */
export class AwsApiError extends EndpointError {
  readonly service: AwsService;
  readonly kind: AwsErrorKind;

  constructor(service: AwsService, kind: AwsErrorKind, message: string, options?: { readonly cause?: unknown }) {
    super(kind.code, message, options);
    this.name = 'AwsApiError';
    this.service = service;
    this.kind = kind;
  }
}

function kind(code: string, status: number, shape = code, fault: 'Sender' | 'Receiver' = 'Sender'): AwsErrorKind {
  return { code, shape, status, fault };
}

/**
 * SQS error kinds. Codes and statuses are the `awsQueryError` traits of the SQS model in
 * `@aws-sdk/client-sqs` (`dist-es/schemas/schemas_0.js`); the unmodelled ones
 * (`InvalidParameterValue`, `MissingParameter`, `InvalidAction`, `InternalFailure`) are
 * the common errors of the SQS API reference ("Common Errors").
 */
export const SQS_ERRORS = {
  QueueDoesNotExist: kind('AWS.SimpleQueueService.NonExistentQueue', 400, 'QueueDoesNotExist'),
  QueueNameExists: kind('QueueAlreadyExists', 400, 'QueueNameExists'),
  QueueDeletedRecently: kind('AWS.SimpleQueueService.QueueDeletedRecently', 400, 'QueueDeletedRecently'),
  InvalidAttributeName: kind('InvalidAttributeName', 400),
  InvalidAttributeValue: kind('InvalidAttributeValue', 400),
  InvalidMessageContents: kind('InvalidMessageContents', 400),
  ReceiptHandleIsInvalid: kind('ReceiptHandleIsInvalid', 404),
  MessageNotInflight: kind('AWS.SimpleQueueService.MessageNotInflight', 400, 'MessageNotInflight'),
  EmptyBatchRequest: kind('AWS.SimpleQueueService.EmptyBatchRequest', 400, 'EmptyBatchRequest'),
  TooManyEntriesInBatchRequest: kind('AWS.SimpleQueueService.TooManyEntriesInBatchRequest', 400, 'TooManyEntriesInBatchRequest'),
  BatchEntryIdsNotDistinct: kind('AWS.SimpleQueueService.BatchEntryIdsNotDistinct', 400, 'BatchEntryIdsNotDistinct'),
  InvalidBatchEntryId: kind('AWS.SimpleQueueService.InvalidBatchEntryId', 400, 'InvalidBatchEntryId'),
  BatchRequestTooLong: kind('AWS.SimpleQueueService.BatchRequestTooLong', 400, 'BatchRequestTooLong'),
  PurgeQueueInProgress: kind('AWS.SimpleQueueService.PurgeQueueInProgress', 403, 'PurgeQueueInProgress'),
  ResourceNotFoundException: kind('ResourceNotFoundException', 404),
  UnsupportedOperation: kind('AWS.SimpleQueueService.UnsupportedOperation', 400, 'UnsupportedOperation'),
  OverLimit: kind('OverLimit', 403),
  InvalidParameterValue: kind('InvalidParameterValue', 400),
  MissingParameter: kind('MissingParameter', 400),
  InvalidAction: kind('InvalidAction', 400),
  InternalFailure: kind('InternalFailure', 500, 'InternalFailure', 'Receiver'),
} as const satisfies Record<string, AwsErrorKind>;

/**
 * SNS error kinds: the `awsQueryError` traits of the SNS model in `@aws-sdk/client-sns`
 * (`dist-es/schemas/schemas_0.js`), plus the common `InvalidAction`.
 */
export const SNS_ERRORS = {
  InvalidParameter: kind('InvalidParameter', 400, 'InvalidParameterException'),
  InvalidParameterValue: kind('ParameterValueInvalid', 400, 'InvalidParameterValueException'),
  NotFound: kind('NotFound', 404, 'NotFoundException'),
  BatchEntryIdsNotDistinct: kind('BatchEntryIdsNotDistinct', 400, 'BatchEntryIdsNotDistinctException'),
  BatchRequestTooLong: kind('BatchRequestTooLong', 400, 'BatchRequestTooLongException'),
  EmptyBatchRequest: kind('EmptyBatchRequest', 400, 'EmptyBatchRequestException'),
  InvalidBatchEntryId: kind('InvalidBatchEntryId', 400, 'InvalidBatchEntryIdException'),
  TooManyEntriesInBatchRequest: kind('TooManyEntriesInBatchRequest', 400, 'TooManyEntriesInBatchRequestException'),
  FilterPolicyLimitExceeded: kind('FilterPolicyLimitExceeded', 403, 'FilterPolicyLimitExceededException'),
  SubscriptionLimitExceeded: kind('SubscriptionLimitExceeded', 403, 'SubscriptionLimitExceededException'),
  TopicLimitExceeded: kind('TopicLimitExceeded', 403, 'TopicLimitExceededException'),
  InvalidAction: kind('InvalidAction', 400),
  InternalError: kind('InternalError', 500, 'InternalErrorException', 'Receiver'),
} as const satisfies Record<string, AwsErrorKind>;

/**
 * Secrets Manager error kinds: the error shapes of the Secrets Manager model in
 * `@aws-sdk/client-secrets-manager` (`dist-es/schemas/schemas_0.js`: client faults, except
 * InternalServiceError), replied over AWS JSON 1.1 as `{"__type": shape, "Message": …}` with the
 * 400 status AWS uses for client errors (500 for InternalServiceError), plus the common `InvalidAction`.
 */
export const SECRETS_MANAGER_ERRORS = {
  ResourceNotFoundException: kind('ResourceNotFoundException', 400),
  ResourceExistsException: kind('ResourceExistsException', 400),
  InvalidParameterException: kind('InvalidParameterException', 400),
  InvalidRequestException: kind('InvalidRequestException', 400),
  InvalidAction: kind('InvalidAction', 400),
  InternalServiceError: kind('InternalServiceError', 500, 'InternalServiceError', 'Receiver'),
} as const satisfies Record<string, AwsErrorKind>;

/** Name of an SQS error kind. */
export type SqsErrorName = keyof typeof SQS_ERRORS;
/** Name of an SNS error kind. */
export type SnsErrorName = keyof typeof SNS_ERRORS;

/** An SQS error of kind `name`, returned to the client. */
export function sqsError(name: SqsErrorName, message: string, options?: { readonly cause?: unknown }): AwsApiError {
  return new AwsApiError('sqs', SQS_ERRORS[name], message, options);
}

/** An SNS error of kind `name`, returned to the client. */
export function snsError(name: SnsErrorName, message: string, options?: { readonly cause?: unknown }): AwsApiError {
  return new AwsApiError('sns', SNS_ERRORS[name], message, options);
}

/** A Secrets Manager error of kind `name`, returned to the client. */
export function secretsManagerError(name: keyof typeof SECRETS_MANAGER_ERRORS, message: string, options?: { readonly cause?: unknown }): AwsApiError {
  return new AwsApiError('secretsmanager', SECRETS_MANAGER_ERRORS[name], message, options);
}

/** Codes of the endpoint's own (non-AWS) errors. */
const ENDPOINT_ERROR_CODES = {
  persistence: 'LOCAL_ENDPOINT_PERSISTENCE',
  invalidOption: 'LOCAL_ENDPOINT_INVALID_OPTION',
  closed: 'LOCAL_ENDPOINT_CLOSED',
} as const;

/** The persistence file could not be read, parsed or written. */
export class PersistenceError extends EndpointError {
  readonly file: string;

  constructor(file: string, message: string, options?: { readonly cause?: unknown }) {
    super(ENDPOINT_ERROR_CODES.persistence, `persistence file ${file}: ${message}`, options);
    this.name = 'PersistenceError';
    this.file = file;
  }
}

/** An option passed to `startEndpoint` is not allowed. */
export class EndpointOptionError extends EndpointError {
  constructor(message: string) {
    super(ENDPOINT_ERROR_CODES.invalidOption, message);
    this.name = 'EndpointOptionError';
  }
}
