/**
 * Configuration names shared by the CDK stack (`cdk/`) and the deployables
 * (`functions/`), so that the stack and the code cannot drift apart.
 *
 * Values are read once at start-up through `readConfig`, which fails fast with a
 * message naming the variable and what is allowed.
 */

/** Environment variables of the publisher (ECS Fargate task, or a local process). */
export const PUBLISHER_ENV = {
  /** Source database URL (`postgres://…`). Used locally; in AWS the secret below is used instead. */
  SOURCE_URL: 'PGFANOUT_SOURCE_URL',
  /**
   * Source database credentials as the JSON of an RDS-style Secrets Manager secret
   * (`{"host","port","username","password","dbname"}`), injected by ECS from Secrets Manager.
   */
  SOURCE_SECRET: 'PGFANOUT_SOURCE_SECRET',
  /**
   * ARN of the SNS FIFO topic to publish to; with topic shards (more than 100 replicas), every
   * shard's topic ARN, comma-separated: each batch is published to each of them.
   */
  TOPIC_ARN: 'PGFANOUT_TOPIC_ARN',
  /** Port of the HTTP health endpoint used by the container health check. */
  HEALTH_PORT: 'PGFANOUT_HEALTH_PORT',
  /** Milliseconds between ticks when no NOTIFY arrives. */
  TICK_MS: 'PGFANOUT_TICK_MS',
  /** Largest message body in bytes (SNS allows 262,144). */
  MAX_MESSAGE_BYTES: 'PGFANOUT_MAX_MESSAGE_BYTES',
  /** Log level: DEBUG, INFO, WARN, ERROR. */
  LOG_LEVEL: 'PGFANOUT_LOG_LEVEL',
  /** TLS to a source given by secret: verify-full (default), require (encrypted, certificate not checked) or disable. */
  DB_TLS: 'PGFANOUT_DB_TLS',
  /** The deployment's name prefix (the stack's), carried as the `Deployment` metric dimension. @default "pgfanout" */
  DEPLOYMENT: 'PGFANOUT_DEPLOYMENT',
  /** ARN or name of the Secrets Manager secret holding the message signing key (its AWSCURRENT version signs). Required. */
  SIGNING_KEY_SECRET: 'PGFANOUT_SIGNING_KEY_SECRET',
} as const;

/** Environment variables of the applier (Lambda function, or a local runner). */
export const APPLIER_ENV = {
  /** Replica name, as in the stack's replica list. */
  REPLICA_NAME: 'PGFANOUT_REPLICA_NAME',
  /** Replica database URL (`postgres://…`). Used locally; in AWS the secret below is used instead. */
  REPLICA_URL: 'PGFANOUT_REPLICA_URL',
  /** ARN of the Secrets Manager secret holding the replica's RDS-style credentials JSON. */
  REPLICA_SECRET_ARN: 'PGFANOUT_REPLICA_SECRET_ARN',
  /** Comma-separated `schema.table` names to apply; empty means all. */
  INCLUDE_TABLES: 'PGFANOUT_INCLUDE_TABLES',
  /** Comma-separated `schema.table` names never to apply. */
  EXCLUDE_TABLES: 'PGFANOUT_EXCLUDE_TABLES',
  /** TLS to a replica given by secret: verify-full (default), require or disable. */
  DB_TLS: 'PGFANOUT_DB_TLS',
  /**
   * Comma-separated source ids (`SELECT pgfanout.source_id()` on each source) the replica
   * follows; a message of any other source is refused. Required.
   */
  SOURCE_IDS: 'PGFANOUT_SOURCE_IDS',
  /** `true` to run the schema changes (`S` changes) of the stream on this replica; default `false`. */
  ALLOW_SCHEMA_CHANGES: 'PGFANOUT_ALLOW_SCHEMA_CHANGES',
  /**
   * What the applier does with replica tables whose own triggers would fire because its role may
   * not set session_replication_role: `refuse` (default) or `fire`.
   */
  REPLICA_TRIGGERS: 'PGFANOUT_REPLICA_TRIGGERS',
  /** The deployment's name prefix (the stack's), carried as the `Deployment` metric dimension. @default "pgfanout" */
  DEPLOYMENT: 'PGFANOUT_DEPLOYMENT',
  /**
   * ARN or name of the Secrets Manager secret holding the message signing key: messages signed with
   * its AWSCURRENT or AWSPREVIOUS version are applied, any other is refused. Required.
   */
  SIGNING_KEY_SECRET: 'PGFANOUT_SIGNING_KEY_SECRET',
} as const;

/** Values of APPLIER_ENV.REPLICA_TRIGGERS. */
export const REPLICA_TRIGGERS_MODES = ['refuse', 'fire'] as const;

/** Value of the `Deployment` dimension when none is configured (the ready app's default prefix). */
export const DEFAULT_DEPLOYMENT = 'pgfanout';

/** TLS modes accepted by PUBLISHER_ENV.DB_TLS and APPLIER_ENV.DB_TLS. */
export const DB_TLS_MODES = ['verify-full', 'require', 'disable'] as const;

/** Metric namespace for CloudWatch Embedded Metric Format, shared by the code and the dashboard. */
export const METRIC_NAMESPACE = 'pgfanout';

/** Metric names, shared by the code that emits them and the dashboard and alarms that read them. */
export const METRICS = {
  publisher: {
    eventsPublished: 'EventsPublished',
    messagesPublished: 'MessagesPublished',
    batchEvents: 'BatchEvents',
    publishLagSeconds: 'PublishLagSeconds',
    oldestUnpublishedSeconds: 'OldestUnpublishedSeconds',
    publishErrors: 'PublishErrors',
    /** 1, once a minute, in every state (waiting for the lock, unable to connect, publishing). */
    heartbeat: 'Heartbeat',
  },
  applier: {
    messagesHandled: 'MessagesHandled',
    changesApplied: 'ChangesApplied',
    appliedPosition: 'AppliedPosition',
    applyLagSeconds: 'ApplyLagSeconds',
    gapsDetected: 'GapsDetected',
    /**
     * Messages the applier refused as untrustworthy or as schema drift (an unknown source, a write
     * to pgfanout's own tables, a batch that jumps, a duplicate that differs from the applied
     * batch, a source that went back in time, a schema change it may not run, a dropped column).
     */
    messagesRefused: 'MessagesRefused',
    /** Conflicts detected and resolved by appliers of databases that are each other's replica. */
    conflictsDetected: 'ConflictsDetected',
    /** Invocations that stopped at a message failing for a transient reason (replica unreachable, …). */
    transientFailures: 'TransientFailures',
    /** Invocations that stopped at a message failing for a permanent reason (poison message, gap, schema mismatch). */
    permanentFailures: 'PermanentFailures',
    /** Receive count of the message the replica is stopped at (grows while it stays stuck). */
    headReceiveCount: 'StuckMessageReceiveCount',
  },
} as const;

/**
 * Dimension names used with the metrics above. Every publisher metric carries
 * `{ service, Deployment }`, every applier metric `{ service, Deployment, Replica }`:
 * `Deployment` (the stack's name prefix) keeps two deployments in one account apart.
 */
export const DIMENSIONS = { source: 'Source', replica: 'Replica', deployment: 'Deployment' } as const;

/** Paths of the deployables' entry points, relative to the repository root (used by the CDK stack). */
export const ENTRY_POINTS = {
  applierHandler: 'functions/applier/handler.ts',
  publisherMain: 'functions/publisher/main.ts',
} as const;

/**
 * Name of the FIFO topic of shard `shard` of deployment `prefix`: shard 0 is `<prefix>.fifo`
 * (the only topic of a deployment of up to 100 replicas), shard N `<prefix>-shard<N>.fifo`.
 */
export function shardTopicName(prefix: string, shard: number): string {
  if (!Number.isInteger(shard) || shard < 0) throw new Error(`topic shard must be a non-negative integer, got ${String(shard)}`);
  return shard === 0 ? `${prefix}.fifo` : `${prefix}-shard${shard}.fifo`;
}

/** SQS FIFO queue names allow 80 characters including the `.fifo` suffix (SQS CreateQueue). */
const QUEUE_NAME_MAX = 80;

/** Replica names: what fits in queue names with the prefix and suffixes below. */
export const REPLICA_NAME_PATTERN = /^[a-z][a-z0-9-]{0,39}$/;

/**
 * Names of the topic and queues for one pgfanout deployment (`prefix`) and its replicas,
 * used by `pgfanout local`, `pgfanout status` and the LocalStack setup.
 */
export function resourceNames(prefix: string, replica?: string): { topic: string; queue: string; deadLetterQueue: string } {
  const topic = shardTopicName(prefix, 0);
  const queue = replica === undefined ? '' : `${prefix}-${replica}.fifo`;
  const deadLetterQueue = replica === undefined ? '' : `${prefix}-${replica}-dlq.fifo`;
  for (const name of [queue, deadLetterQueue]) {
    if (name.length > QUEUE_NAME_MAX) throw new Error(`queue name "${name}" is longer than ${QUEUE_NAME_MAX} characters`);
  }
  return { topic, queue, deadLetterQueue };
}
