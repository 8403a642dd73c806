/**
 * The applier Lambda's entry point: wiring only. Reads the configuration once per
 * execution environment; the replica connection is opened on first use and reused
 * across invocations. In AWS the replica's credentials come from Secrets Manager
 * (cached by Powertools Parameters); locally from a URL. The message signing keys come from their
 * own secret (core/signing-keys.ts).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { getSecret } from '@aws-lambda-powertools/parameters/secrets';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { GetQueueUrlCommand, SQSClient } from '@aws-sdk/client-sqs';
import pg from 'pg';
import { DIMENSIONS, METRIC_NAMESPACE } from '#core/config.ts';
import { clientConfigFromSecret, clientConfigFromUrl } from '#core/pg/db.ts';
import { SecretsManagerSigningKeys } from '#core/signing-keys.ts';
import { createApplierHandler } from './app.ts';
import { applyOptionsOf, readApplierConfig } from './config.ts';
import { visibilityDeferral } from './defer.ts';

const config = readApplierConfig(process.env);
const logger = new Logger({ serviceName: 'pgfanout-applier', persistentKeys: { replica: config.replicaName } });
const metrics = new Metrics({
  namespace: METRIC_NAMESPACE,
  serviceName: 'pgfanout-applier',
  defaultDimensions: { [DIMENSIONS.deployment]: config.deployment, [DIMENSIONS.replica]: config.replicaName },
});

async function connect(): Promise<pg.Client> {
  const settings = config.url
    ? clientConfigFromUrl(config.url, 'replica URL')
    : clientConfigFromSecret(
        JSON.stringify(await getSecret(config.secretArn as string, { transform: 'json', maxAge: 300 })),
        `replica secret ${config.secretArn as string}`,
        config.tls,
      );
  const client = new pg.Client({ ...settings, application_name: `pgfanout-applier-${config.replicaName}` });
  await client.connect();
  return client;
}

const sqs = new SQSClient({});
const queueUrls = new Map<string, Promise<string>>();

/** The queue URL of a record's source queue, from its ARN (arn:aws:sqs:REGION:ACCOUNT:NAME). */
function queueUrlOf(arn: string): Promise<string> {
  let url = queueUrls.get(arn);
  if (!url) {
    const [, , , , account, name] = arn.split(':');
    url = sqs.send(new GetQueueUrlCommand({ QueueName: name, QueueOwnerAWSAccountId: account })).then((out) => out.QueueUrl as string);
    url.catch(() => queueUrls.delete(arn));
    queueUrls.set(arn, url);
  }
  return url;
}

const deferRecords = visibilityDeferral(sqs, (record) => queueUrlOf(record.eventSourceARN));

const signingKeys = new SecretsManagerSigningKeys(new SecretsManagerClient({}), config.signingKeySecret);

export const handler = createApplierHandler({
  replicaName: config.replicaName,
  connect,
  signingKeys,
  apply: applyOptionsOf(config),
  logger,
  metrics,
  deferRecords,
});
