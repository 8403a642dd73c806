/**
 * The applier Lambda's entry point: wiring only. Reads the configuration once per
 * execution environment; the replica connection is opened on first use and reused
 * across invocations. In AWS the replica's credentials come from Secrets Manager
 * (cached by Powertools Parameters); locally from a URL.
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { getSecret } from '@aws-lambda-powertools/parameters/secrets';
import pg from 'pg';
import { DIMENSIONS, METRIC_NAMESPACE } from '#core/config.ts';
import { clientConfigFromSecret, clientConfigFromUrl } from '#core/db.ts';
import { createApplierHandler } from './app.ts';
import { readApplierConfig } from './config.ts';

const config = readApplierConfig(process.env);
const logger = new Logger({ serviceName: 'pgfanout-applier', persistentKeys: { replica: config.replicaName } });
const metrics = new Metrics({
  namespace: METRIC_NAMESPACE,
  serviceName: 'pgfanout-applier',
  defaultDimensions: { [DIMENSIONS.replica]: config.replicaName },
});

async function connect(): Promise<pg.Client> {
  const settings = config.url
    ? clientConfigFromUrl(config.url, 'replica URL')
    : clientConfigFromSecret(
        JSON.stringify(await getSecret(config.secretArn as string, { transform: 'json', maxAge: 300 })),
        `replica secret ${config.secretArn as string}`,
      );
  const client = new pg.Client({ ...settings, application_name: `pgfanout-applier-${config.replicaName}` });
  await client.connect();
  return client;
}

export const handler = createApplierHandler({
  replicaName: config.replicaName,
  connect,
  apply: { include: config.include, exclude: config.exclude, replicationRole: 'auto' },
  logger,
  metrics,
});
