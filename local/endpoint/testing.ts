/**
 * Helpers for tests that talk to the local endpoint through the real AWS SDK clients.
 */
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SNSClient } from '@aws-sdk/client-sns';
import { SQSClient } from '@aws-sdk/client-sqs';

/** SNS, SQS and Secrets Manager clients pointed at `url`, with dummy credentials and no retries. */
export function sdkClients(url: string, region = 'us-east-1'): { sns: SNSClient; sqs: SQSClient; secretsManager: SecretsManagerClient; destroy(): void } {
  const common = { endpoint: url, region, credentials: { accessKeyId: 'local', secretAccessKey: 'local' }, maxAttempts: 1 };
  const sns = new SNSClient(common);
  const sqs = new SQSClient(common);
  const secretsManager = new SecretsManagerClient(common);
  return {
    sns,
    sqs,
    secretsManager,
    destroy() {
      sns.destroy();
      sqs.destroy();
      secretsManager.destroy();
    },
  };
}

/**
 * Polls `condition` until it returns a value other than undefined/false, or fails after
 * `timeoutMs` with `what` in the message.
 */
export async function waitFor<T>(what: string, condition: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value !== undefined && value !== false) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A clock that tests move forward by hand (see `clock.ts`). */
export { ManualClock } from './clock.ts';

/** The error a promise rejects with (fails when it resolves). */
export async function rejection(promise: Promise<unknown>): Promise<Error & { name: string; $metadata?: { httpStatusCode?: number } }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { name: string };
  }
  throw new Error('expected the call to fail, but it succeeded');
}
