/** The applier's configuration, read once from the environment. */
import { APPLIER_ENV, DB_TLS_MODES, DEFAULT_DEPLOYMENT, REPLICA_TRIGGERS_MODES } from '#core/config.ts';
import { EnvReader, type Env } from '#core/env.ts';
import type { ApplyOptions } from '#core/replica';

export interface ApplierConfig {
  readonly replicaName: string;
  /** Exactly one of `url` (local) and `secretArn` (AWS) is set. */
  readonly url?: string;
  readonly secretArn?: string;
  readonly include: readonly string[];
  readonly exclude: readonly string[];
  readonly tls: (typeof DB_TLS_MODES)[number];
  /** The source ids the replica follows. */
  readonly sources: readonly string[];
  /** Whether the replica runs the stream's schema changes. */
  readonly allowSchemaChanges: boolean;
  /** Replica tables whose own triggers would fire (no session_replication_role): refused, or allowed to fire. */
  readonly replicaTriggers: (typeof REPLICA_TRIGGERS_MODES)[number];
  /** The `Deployment` metric dimension (the stack's name prefix). */
  readonly deployment: string;
  /** ARN or name of the secret holding the message signing key. */
  readonly signingKeySecret: string;
}

export function readApplierConfig(env: Env): ApplierConfig {
  const r = new EnvReader(env);
  const replicaName = r.required(APPLIER_ENV.REPLICA_NAME, 'the replica name from the stack');
  const url = r.optional(APPLIER_ENV.REPLICA_URL);
  const secretArn = r.optional(APPLIER_ENV.REPLICA_SECRET_ARN);
  if (url && secretArn) r.problem(`set only one of ${APPLIER_ENV.REPLICA_URL} and ${APPLIER_ENV.REPLICA_SECRET_ARN}`);
  if (!url && !secretArn) r.problem(`environment variable ${APPLIER_ENV.REPLICA_SECRET_ARN} or ${APPLIER_ENV.REPLICA_URL} is required`);
  const tls = r.oneOf(APPLIER_ENV.DB_TLS, DB_TLS_MODES, 'verify-full');
  const replicaTriggers = r.oneOf(APPLIER_ENV.REPLICA_TRIGGERS, REPLICA_TRIGGERS_MODES, 'refuse');
  const include = r.list(APPLIER_ENV.INCLUDE_TABLES);
  const exclude = r.list(APPLIER_ENV.EXCLUDE_TABLES);
  for (const [name, list] of [[APPLIER_ENV.INCLUDE_TABLES, include], [APPLIER_ENV.EXCLUDE_TABLES, exclude]] as const) {
    for (const table of list) {
      if (!/^[^.]+\.[^.]+$/.test(table)) r.problem(`${name}: "${table}" must be schema.table`);
    }
  }
  const sources = r.list(APPLIER_ENV.SOURCE_IDS);
  if (sources.length === 0) {
    r.problem(`environment variable ${APPLIER_ENV.SOURCE_IDS} is required: the source ids this replica follows (SELECT pgfanout.source_id() on the source), comma-separated`);
  }
  const allowSchemaChanges = r.oneOf(APPLIER_ENV.ALLOW_SCHEMA_CHANGES, ['true', 'false'], 'false') === 'true';
  const deployment = r.optional(APPLIER_ENV.DEPLOYMENT) || DEFAULT_DEPLOYMENT;
  const signingKeySecret = r.required(APPLIER_ENV.SIGNING_KEY_SECRET, 'the ARN or name of the secret holding the message signing key');
  r.done();
  return { signingKeySecret, replicaName, ...(url ? { url } : {}), ...(secretArn ? { secretArn } : {}), include, exclude, tls, sources, allowSchemaChanges, replicaTriggers, deployment };
}

/**
 * The apply options an applier with `config` runs with: what the deployed handler, the local
 * pipeline and redrive's dry runs (which must judge a message as the replica's applier would) share.
 */
export function applyOptionsOf(config: ApplierConfig): ApplyOptions {
  return {
    sources: config.sources,
    allowSchemaChanges: config.allowSchemaChanges,
    include: config.include,
    exclude: config.exclude,
    replicationRole: 'auto',
    replicaTriggers: config.replicaTriggers,
  };
}
