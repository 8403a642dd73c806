/**
 * Secrets Manager over AWS JSON 1.1, as the pinned SDK speaks it (`AwsJson1_1Protocol`):
 * `POST /` with `Content-Type: application/x-amz-json-1.1` and
 * `X-Amz-Target: secretsmanager.<Operation>`, JSON request and reply bodies. An error is the
 * HTTP status of the error and a body `{"__type": "<Shape>", "Message": "..."}`, from which the
 * SDK picks the typed exception by its shape name.
 */
import { AwsApiError, secretsManagerError } from '../errors.ts';
import { InputReader } from '../wire/input.ts';
import type { WireReply } from '../sqs/json-protocol.ts';
import { SECRETS_MANAGER_INPUT_ERRORS, type SecretsManagerService } from './service.ts';

/** The `X-Amz-Target` prefix of Secrets Manager operations. */
export const SECRETS_MANAGER_TARGET_PREFIX = 'secretsmanager.';
/** Content type of Secrets Manager requests and replies. */
const SECRETS_MANAGER_CONTENT_TYPE = 'application/x-amz-json-1.1';

const OPERATIONS: Readonly<Record<string, (service: SecretsManagerService, input: InputReader) => unknown>> = {
  CreateSecret: (s, i) => s.createSecret(i),
  GetSecretValue: (s, i) => s.getSecretValue(i),
  PutSecretValue: (s, i) => s.putSecretValue(i),
};

/** The reply for a Secrets Manager error. */
export function secretsManagerErrorReply(error: AwsApiError): WireReply {
  return {
    status: error.kind.status,
    headers: { 'content-type': SECRETS_MANAGER_CONTENT_TYPE },
    body: JSON.stringify({ __type: error.kind.shape, Message: error.message }),
  };
}

/** Runs the operation named by `target` with the JSON `body`. */
export function handleSecretsManagerRequest(service: SecretsManagerService, target: string, body: string): WireReply {
  try {
    const name = target.slice(SECRETS_MANAGER_TARGET_PREFIX.length);
    const operation = Object.hasOwn(OPERATIONS, name) ? OPERATIONS[name] : undefined;
    if (!operation) {
      throw secretsManagerError('InvalidAction', `The action ${target} is not valid for this endpoint; the local endpoint implements ${Object.keys(OPERATIONS).join(', ')}.`);
    }
    let parsed: unknown;
    try {
      parsed = body.trim() === '' ? {} : JSON.parse(body);
    } catch (err) {
      throw secretsManagerError('InvalidRequestException', `The request body is not valid JSON: ${(err as Error).message}.`, { cause: err });
    }
    const output = operation(service, new InputReader(parsed, SECRETS_MANAGER_INPUT_ERRORS));
    return { status: 200, headers: { 'content-type': SECRETS_MANAGER_CONTENT_TYPE }, body: JSON.stringify(output ?? {}) };
  } catch (error) {
    if (error instanceof AwsApiError) return secretsManagerErrorReply(error);
    throw error;
  }
}
