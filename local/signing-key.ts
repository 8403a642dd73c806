/**
 * The message signing key of a local deployment: a Secrets Manager secret on the built-in
 * endpoint (or LocalStack), made at start with a random key, so that the publisher and the
 * appliers read and check signatures exactly as deployed. A secret that exists already (an
 * endpoint whose state was kept in a file) is kept, so the messages it still holds verify.
 */
import { randomBytes } from 'node:crypto';
import { CreateSecretCommand, GetSecretValueCommand, type SecretsManagerClient } from '@aws-sdk/client-secrets-manager';

/** Name of the signing key secret of the local deployment `prefix`. */
export function signingKeySecretName(prefix: string): string {
  return `${prefix}-signing-key`;
}

/** A new random signing key: 32 random bytes as 64 hex digits (the secret's value is the key). */
export function newSigningKeyValue(): string {
  return randomBytes(32).toString('hex');
}

/** Makes the signing key secret `name` unless it exists; returns its ARN. */
export async function ensureSigningKeySecret(client: SecretsManagerClient, name: string): Promise<string> {
  try {
    const created = await client.send(
      new CreateSecretCommand({ Name: name, Description: 'pgfanout message signing key (local)', SecretString: newSigningKeyValue() }),
    );
    return created.ARN as string;
  } catch (err) {
    if ((err as { name?: string }).name !== 'ResourceExistsException') throw err;
    const existing = await client.send(new GetSecretValueCommand({ SecretId: name }));
    return existing.ARN as string;
  }
}
