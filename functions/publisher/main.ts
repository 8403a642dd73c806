/**
 * Entry point of the publisher (the ECS Fargate task, or a local process): reads the
 * configuration, builds the clients, serves the health endpoint, runs the loop, and on
 * SIGTERM/SIGINT stops it cleanly well within ECS's stop timeout (an unfinished batch
 * is simply served again to the next publisher).
 */
import { Logger } from '@aws-lambda-powertools/logger';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SNSClient } from '@aws-sdk/client-sns';
import pg from 'pg';
import { SecretsManagerSigningKeys } from '#core/signing-keys.ts';
import { readPublisherConfig } from './config.ts';
import { startHealthServer } from './health.ts';
import { publisherMetrics } from './metrics.ts';
import { Publisher } from './publisher.ts';

const STOP_GRACE_MS = 20_000;

async function main(): Promise<void> {
  const config = readPublisherConfig(process.env);
  const logger = new Logger({ serviceName: 'pgfanout-publisher', logLevel: config.logLevel });
  const emitted = publisherMetrics({ deployment: config.deployment });
  const sns = new SNSClient({ maxAttempts: 5 });
  const secrets = new SecretsManagerClient({ maxAttempts: 5 });
  const publisher = new Publisher({
    connectSource: async () => {
      const client = new pg.Client({ ...config.source, application_name: 'pgfanout-publisher' });
      await client.connect();
      return client;
    },
    sns,
    topicArns: config.topicArns,
    signingKeys: new SecretsManagerSigningKeys(secrets, config.signingKeySecret),
    logger,
    metrics: emitted.metrics,
    tickMs: config.tickMs,
    maxMessageBytes: config.maxMessageBytes,
  });
  const health = await startHealthServer(config.healthPort, () => publisher.health());
  const stop = new AbortController();
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      logger.info('stopping', { signal });
      stop.abort();
      setTimeout(() => {
        logger.error('did not stop in time; exiting');
        process.exit(1);
      }, STOP_GRACE_MS).unref();
    });
  }
  logger.info('publisher starting', { topicArns: config.topicArns, healthPort: health.port });
  await publisher.run(stop.signal);
  emitted.stop();
  await health.close();
  sns.destroy();
  secrets.destroy();
  logger.info('publisher stopped');
}

main().catch((err: unknown) => {
  console.error(JSON.stringify({ level: 'ERROR', message: 'publisher failed to start', error: String((err as Error).message ?? err) }));
  process.exit(1);
});
