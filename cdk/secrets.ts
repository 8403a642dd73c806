/**
 * Turns a {@link SecretReference} (a construct, an ARN or a name) into an `ISecret`.
 */
import { Token } from 'aws-cdk-lib';
import { Key } from 'aws-cdk-lib/aws-kms';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import type { SecretReference } from './config.ts';

/** A complete secret ARN ends in `-` and the six random characters Secrets Manager appends to the name. */
const COMPLETE_ARN_SUFFIX = /-[A-Za-z0-9]{6}$/;

/**
 * The secret `ref` points at. A complete ARN is used as is; a partial ARN or a name
 * is matched with the `-??????` suffix in IAM policies. Call only after validation.
 */
export function resolveSecret(scope: Construct, id: string, ref: SecretReference): ISecret {
  if (ref.secret) return ref.secret;
  const encryptionKey = ref.secretKeyArn ? Key.fromKeyArn(scope, `${id}Key`, ref.secretKeyArn) : undefined;
  if (ref.secretArn !== undefined) {
    const complete = !Token.isUnresolved(ref.secretArn) && COMPLETE_ARN_SUFFIX.test(ref.secretArn);
    return Secret.fromSecretAttributes(scope, id, {
      ...(complete ? { secretCompleteArn: ref.secretArn } : { secretPartialArn: ref.secretArn }),
      ...(encryptionKey ? { encryptionKey } : {}),
    });
  }
  if (ref.secretName !== undefined) {
    if (!encryptionKey) return Secret.fromSecretNameV2(scope, id, ref.secretName);
    const partial = Secret.fromSecretNameV2(scope, `${id}ByName`, ref.secretName);
    return Secret.fromSecretAttributes(scope, id, { secretPartialArn: partial.secretArn, encryptionKey });
  }
  throw new Error(`${id}: a secret reference needs secret, secretArn or secretName (validation should have caught this)`);
}

/** What the applier is told to fetch: the ARN, or the name when the secret was given by name. */
export function secretIdForRuntime(ref: SecretReference, secret: ISecret): string {
  return ref.secretName ?? secret.secretArn;
}
