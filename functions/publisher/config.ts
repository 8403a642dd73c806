/** The publisher's configuration, read once from the environment. */
import type { ClientConfig } from 'pg';
import { DB_TLS_MODES, DEFAULT_DEPLOYMENT, PUBLISHER_ENV } from '#core/config.ts';
import { clientConfigFromSecret, clientConfigFromUrl } from '#core/pg/db.ts';
import { EnvReader, type Env } from '#core/env.ts';

export interface PublisherConfig {
  readonly source: ClientConfig;
  /** The FIFO topic, or every topic shard's, to publish each batch to. */
  readonly topicArns: readonly string[];
  readonly healthPort: number;
  readonly tickMs: number;
  readonly maxMessageBytes: number;
  readonly logLevel: 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';
  /** The `Deployment` metric dimension. */
  readonly deployment: string;
  /** ARN or name of the secret holding the message signing key. */
  readonly signingKeySecret: string;
}

export function readPublisherConfig(env: Env): PublisherConfig {
  const r = new EnvReader(env);
  const url = r.optional(PUBLISHER_ENV.SOURCE_URL);
  const secret = r.optional(PUBLISHER_ENV.SOURCE_SECRET);
  const tls = r.oneOf(PUBLISHER_ENV.DB_TLS, DB_TLS_MODES, 'verify-full');
  let source: ClientConfig = {};
  if (url && secret) r.problem(`set only one of ${PUBLISHER_ENV.SOURCE_URL} and ${PUBLISHER_ENV.SOURCE_SECRET}`);
  else if (!url && !secret) r.problem(`environment variable ${PUBLISHER_ENV.SOURCE_URL} or ${PUBLISHER_ENV.SOURCE_SECRET} is required`);
  else {
    try {
      source = url ? clientConfigFromUrl(url, PUBLISHER_ENV.SOURCE_URL) : clientConfigFromSecret(secret as string, PUBLISHER_ENV.SOURCE_SECRET, tls);
    } catch (err) {
      r.problem((err as Error).message);
    }
  }
  const topicList = r.required(PUBLISHER_ENV.TOPIC_ARN, 'the SNS FIFO topic ARN (several, comma-separated, with topic shards)');
  const topicArns = topicList ? topicList.split(',').map((t) => t.trim()) : [];
  for (const topicArn of topicArns) {
    if (!/^arn:[^:]+:sns:[^:]*:[^:]*:.+\.fifo$/.test(topicArn)) {
      r.problem(`environment variable ${PUBLISHER_ENV.TOPIC_ARN} must be SNS FIFO topic ARNs (each ending in .fifo, comma-separated), got "${topicArn}" in "${topicList}"`);
    }
  }
  const repeated = topicArns.filter((t, i) => topicArns.indexOf(t) !== i);
  if (repeated.length > 0) r.problem(`environment variable ${PUBLISHER_ENV.TOPIC_ARN} names ${repeated.map((t) => `"${t}"`).join(', ')} more than once`);
  const config: PublisherConfig = {
    source,
    topicArns,
    healthPort: r.integer(PUBLISHER_ENV.HEALTH_PORT, 8080, 0, 65535),
    tickMs: r.integer(PUBLISHER_ENV.TICK_MS, 1000, 10, 600_000),
    maxMessageBytes: r.integer(PUBLISHER_ENV.MAX_MESSAGE_BYTES, 262_144, 4096, 262_144),
    logLevel: r.oneOf(PUBLISHER_ENV.LOG_LEVEL, ['DEBUG', 'INFO', 'WARN', 'ERROR'] as const, 'INFO'),
    deployment: r.optional(PUBLISHER_ENV.DEPLOYMENT) || DEFAULT_DEPLOYMENT,
    signingKeySecret: r.required(PUBLISHER_ENV.SIGNING_KEY_SECRET, 'the ARN or name of the secret holding the message signing key'),
  };
  r.done();
  return config;
}
