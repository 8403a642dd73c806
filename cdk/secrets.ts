/**
 * Turns a {@link SecretReference} (a construct, an ARN or a name) into an `ISecret`.
 */
import { Stack, Token } from 'aws-cdk-lib';
import { PolicyStatement, type IGrantable } from 'aws-cdk-lib/aws-iam';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import type { SecretReference } from './config.ts';

/** A complete secret ARN ends in `-` and the six random characters Secrets Manager appends to the name. */
const COMPLETE_ARN_SUFFIX = /-[A-Za-z0-9]{6}$/;

/**
 * The secret `ref` points at. A complete ARN is used as is; a partial ARN or a name
 * is matched with the `-??????` suffix in IAM policies. Call only after validation;
 * grant with {@link grantSecretRead}, which also covers a customer-managed key.
 */
export function resolveSecret(scope: Construct, id: string, ref: SecretReference): ISecret {
  if (ref.secret) return ref.secret;
  if (ref.secretArn !== undefined) {
    const complete = !Token.isUnresolved(ref.secretArn) && COMPLETE_ARN_SUFFIX.test(ref.secretArn);
    return Secret.fromSecretAttributes(scope, id, complete ? { secretCompleteArn: ref.secretArn } : { secretPartialArn: ref.secretArn });
  }
  if (ref.secretName !== undefined) return Secret.fromSecretNameV2(scope, id, ref.secretName);
  throw new Error(`${id}: a secret reference needs secret, secretArn or secretName (validation should have caught this)`);
}

/** What the applier is told to fetch: the ARN, or the name when the secret was given by name. */
export function secretIdForRuntime(ref: SecretReference, secret: ISecret): string {
  return ref.secretName ?? secret.secretArn;
}

/**
 * Lets `grantee` read the secret, and decrypt it when `ref` names a customer-managed key
 * (an imported key cannot carry the grant in its key policy, so it goes on the grantee,
 * limited to use through Secrets Manager).
 */
export function grantSecretRead(secret: ISecret, ref: SecretReference, grantee: IGrantable): void {
  secret.grantRead(grantee);
  grantSecretKeyDecrypt(secret, ref, grantee);
}

/** Lets `grantee` decrypt the secret through Secrets Manager when `ref` names a customer-managed key. */
export function grantSecretKeyDecrypt(secret: ISecret, ref: SecretReference, grantee: IGrantable): void {
  if (ref.secretKeyArn === undefined) return;
  grantee.grantPrincipal.addToPrincipalPolicy(
    new PolicyStatement({
      actions: ['kms:Decrypt'],
      resources: [ref.secretKeyArn],
      conditions: { StringEquals: { 'kms:ViaService': `secretsmanager.${Stack.of(secret).region}.amazonaws.com` } },
    }),
  );
}
