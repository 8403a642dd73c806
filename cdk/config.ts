/**
 * The shape of a pgfanout deployment (source, replicas, publisher options) and its
 * validation. Pure: no constructs are created here, so every rule can be tested
 * directly, and the constructs call `validatePgfanoutConfig` before building anything.
 */
import { Token } from 'aws-cdk-lib';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { DB_TLS_MODES, REPLICA_NAME_PATTERN, resourceNames, shardTopicName } from '#core/config.ts';
import { PgfanoutConfigError } from './errors.ts';
import { isIntegerIn } from '#core/integer.ts';

/** A Secrets Manager secret holding RDS-style credentials JSON (`{"host","port","username","password","dbname"}`). */
export interface SecretReference {
  /** The secret as a construct. Give exactly one of `secret`, `secretArn`, `secretName`. */
  readonly secret?: ISecret;
  /**
   * ARN of the secret: the complete ARN (ending in `-` and six random characters)
   * or a partial ARN without that suffix.
   */
  readonly secretArn?: string;
  /** Name of the secret, in this stack's account and region. */
  readonly secretName?: string;
  /**
   * ARN of the customer-managed KMS key that encrypts the secret.
   * @default the secret uses the AWS-managed key `aws/secretsmanager`, which needs no grant
   */
  readonly secretKeyArn?: string;
}

/** The source database: where the capture triggers and the event log live. */
export type SourceConfig = SecretReference;

/** One replica database: one queue, one dead-letter queue, one applier function. */
export interface ReplicaConfig extends SecretReference {
  /**
   * Replica name: a lowercase letter, then up to 39 lowercase letters, digits and `-`.
   * It names the replica's queues (`<prefix>-<name>.fifo`), metrics, alarms and outputs.
   */
  readonly name: string;
  /**
   * The source ids this replica follows (`SELECT pgfanout.source_id()` on the source, after
   * `pgfanout install --source`): the applier refuses messages of any other source, and does
   * not start without them (PGFANOUT_SOURCE_IDS), so the configuration requires them.
   */
  readonly sources: readonly string[];
  /**
   * The topic shard this replica's queue subscribes to (0 to {@link LIMITS.maxShards} - 1). An
   * SNS FIFO topic takes at most {@link LIMITS.subscriptionsPerTopic} subscriptions, so a stack
   * with more replicas publishes to several FIFO topics, one per shard in use, each carrying
   * every message. The default is 0 whatever the other entries are, so that adding or removing
   * a replica never moves another one to another topic (a move would re-subscribe its queue,
   * which SNS FIFO does not keep in order); a replica beyond a shard's
   * {@link LIMITS.subscriptionsPerTopic} needs an explicit shard, and the synth error names
   * the replicas and the shards with room.
   * @default 0
   */
  readonly shard?: number;
  /** Whether the applier runs the stream's schema changes (`replicate_ddl`, DDL capture) on this replica. @default false */
  readonly allowSchemaChanges?: boolean;
  /** `schema.table` names to apply; the others are skipped. @default every table */
  readonly include?: readonly string[];
  /** `schema.table` names never to apply. @default none */
  readonly exclude?: readonly string[];
  /**
   * Where the applier's database role may not set session_replication_role, the replica's own
   * triggers would fire on applied changes: `refuse` stops the applier with an error naming
   * them and the fix; `fire` lets them (for triggers meant to fire on replicated changes).
   * @default 'refuse'
   */
  readonly replicaTriggers?: 'refuse' | 'fire';
  /** Alarm when the replica is this many seconds behind the source. @default 300 */
  readonly lagAlarmSeconds?: number;
  /** Applier function timeout in seconds (1-900); the queue's visibility timeout is six times this. @default 300 */
  readonly timeoutSeconds?: number;
  /** Applier function memory in MiB (128-10240). @default 512 */
  readonly memoryMiB?: number;
  /**
   * Receives of a message before SQS moves it to the dead-letter queue (1-1000, SQS's range for
   * a redrive policy's maxReceiveCount:
   * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-configure-dead-letter-queue.html).
   * The applier retries transient failures itself with a growing visibility timeout and a
   * failing message stays at the head of its group, so the default is the most SQS allows: a
   * message is parked only after days of failing, and the alarms on permanent failures and on
   * the age of the oldest message speak long before.
   * @default 1000
   */
  readonly maxReceiveCount?: number;
  /** Alarm when the oldest message in the queue is older than this (60 s to 13 days). @default 3600 (SQS drops messages after 14 days) */
  readonly oldestMessageAlarmSeconds?: number;
  /**
   * Whether the applier takes messages from the queue (the event source mapping's `Enabled`).
   * `false` pauses the replica: messages wait in the queue (up to 14 days).
   * @default true
   */
  readonly enabled?: boolean;
  /**
   * TLS to the replica database: `verify-full` checks the certificate against the Amazon RDS
   * certificate authorities the Lambda runtime ships; `require` only encrypts; `disable` (a
   * local PostgreSQL under LocalStack) sends everything in the clear.
   * @default 'verify-full'
   */
  readonly databaseTls?: (typeof DB_TLS_MODES)[number];
  /** The applier's architecture; `x86_64` for LocalStack on an x86 machine. @default 'arm64' */
  readonly architecture?: (typeof ARCHITECTURES)[number];
  /** Most concurrent applier invocations for this queue (2-1000). @default no limit beyond the FIFO message groups */
  readonly maxConcurrency?: number;
}

/** Lambda architectures an applier may run on. */
export const ARCHITECTURES = ['arm64', 'x86_64'] as const;

/** Log levels the publisher understands. */
export const LOG_LEVELS = ['DEBUG', 'INFO', 'WARN', 'ERROR'] as const;
/** A publisher log level. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Settings of the publisher's Fargate task. */
export interface PublisherOptions {
  /** Task CPU units (256, 512, 1024, 2048, 4096). @default 256 (0.25 vCPU) */
  readonly cpu?: number;
  /** Task memory in MiB, a size Fargate allows for `cpu`. @default 512 */
  readonly memoryMiB?: number;
  /** Log level. @default 'INFO' */
  readonly logLevel?: LogLevel;
  /** Milliseconds between ticks when no NOTIFY arrives (100-600000). @default the publisher's own default */
  readonly tickMs?: number;
  /** Alarm when the oldest unpublished event is this many seconds old. @default 300 */
  readonly stalledAlarmSeconds?: number;
  /** Port of the publisher's health endpoint (1024-65535). @default 8080 */
  readonly healthPort?: number;
  /**
   * TLS to the source database. `verify-full` checks the server certificate against the Amazon
   * RDS certificate authorities the image carries (functions/publisher/Dockerfile); `require`
   * only encrypts (for a source whose CA is not in the image).
   * @default 'verify-full'
   */
  readonly databaseTls?: (typeof DB_TLS_MODES)[number];
}

/** Limits and defaults, each from AWS documentation or pgfanout's design. */
export const LIMITS = {
  /**
   * Subscriptions an SNS FIFO topic takes ("Subscriptions per FIFO topic: 100",
   * https://docs.aws.amazon.com/general/latest/gr/sns.html); each replica is one.
   */
  subscriptionsPerTopic: 100,
  /**
   * Topic shards one stack may have. Each replica is one nested stack, one resource of the
   * parent template, whose limit is 500 resources
   * (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/cloudformation-limits.html):
   * 4 shards of 100 replicas leave room for the parent's own resources.
   */
  maxShards: 4,
  /** Replicas one stack may have: {@link LIMITS.maxShards} full shards. */
  maxReplicas: 400,
  /** SQS queue names: at most 80 characters, `.fifo` included. */
  maxQueueNameLength: 80,
  /** Lambda: the whole environment (names and values) must fit in 4 KB. */
  maxEnvironmentBytes: 4096,
  /** Lambda timeout range in seconds. */
  minTimeoutSeconds: 1,
  maxTimeoutSeconds: 900,
  /**
   * AWS: "set the source queue's visibility timeout to at least six times the timeout
   * that you configure on your function" (Lambda developer guide, SQS event sources).
   */
  visibilityTimeoutFactor: 6,
  /** SQS visibility timeout maximum: 12 hours. */
  maxVisibilityTimeoutSeconds: 43_200,
  minMemoryMiB: 128,
  maxMemoryMiB: 10_240,
  minMaxReceiveCount: 1,
  maxMaxReceiveCount: 1000,
  /** Lambda's SQS event source: maximum concurrency is 2-1000. */
  minMaxConcurrency: 2,
  maxMaxConcurrency: 1000,
} as const;

/** Defaults applied when a setting is not given. */
export const DEFAULTS = {
  lagAlarmSeconds: 300,
  timeoutSeconds: 300,
  memoryMiB: 512,
  maxReceiveCount: 1000,
  oldestMessageAlarmSeconds: 3600,
  publisherCpu: 256,
  publisherMemoryMiB: 512,
  publisherLogLevel: 'INFO' as LogLevel,
  stalledAlarmSeconds: 300,
  healthPort: 8080,
} as const;

/** Memory sizes (MiB) Fargate allows for each CPU value. */
const FARGATE_MEMORY: Readonly<Record<number, readonly number[]>> = {
  256: [512, 1024, 2048],
  512: range(1024, 4096, 1024),
  1024: range(2048, 8192, 1024),
  2048: range(4096, 16_384, 1024),
  4096: range(8192, 30_720, 1024),
};

function range(from: number, to: number, step: number): number[] {
  const out: number[] = [];
  for (let v = from; v <= to; v += step) out.push(v);
  return out;
}

/** Queue and topic names allow letters, digits, `-` and `_`. */
const NAME_PREFIX = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;
const SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+$/;
const SECRET_NAME = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/;
/** `schema.table`: two non-empty parts, no commas (lists travel comma-separated), no quotes, no spaces. */
const TABLE_NAME = /^[^\s.,"]+\.[^\s.,"]+$/;
/** A source id as the applier's environment carries it (comma-separated). */
const SOURCE_ID = /^[^\s,]{1,256}$/;
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

/** Name of a replica's queue (the names `pgfanout local` and `pgfanout status` use too). */
export function queueName(prefix: string, replica: string): string {
  return resourceNames(prefix, replica).queue;
}

/** Name of a replica's dead-letter queue. */
export function deadLetterQueueName(prefix: string, replica: string): string {
  return resourceNames(prefix, replica).deadLetterQueue;
}

/** Name of the topic of shard `shard` (0, the first, is `<prefix>.fifo`). */
export function topicName(prefix: string, shard = 0): string {
  return shardTopicName(prefix, shard);
}

/** The topic shard of `replica`: its explicit `shard`, else 0. */
export function replicaShard(replica: Pick<ReplicaConfig, 'shard'>): number {
  return replica.shard ?? 0;
}

/** The shards in use by `replicas`, in increasing order (shard 0 always, the publisher's first topic). */
export function shardsInUse(replicas: readonly Pick<ReplicaConfig, 'shard'>[]): number[] {
  return [...new Set([0, ...replicas.map(replicaShard)])].sort((a, b) => a - b);
}

/**
 * Name of a replica's delivery dead-letter queue: where SNS puts what it could not deliver to
 * the replica's queue after its retries (the subscription's redrive policy).
 */
export function deliveryDeadLetterQueueName(prefix: string, replica: string): string {
  return `${prefix}-${replica}-sns-dlq.fifo`;
}

/** The longest name derived from `prefix` and `replica`, without the length check. */
function longestQueueName(prefix: string, replica: string): string {
  return deliveryDeadLetterQueueName(prefix, replica);
}

/** What `validatePgfanoutConfig` checks. */
export interface PgfanoutConfig {
  /** Required when the publisher service is deployed. */
  readonly source: SourceConfig | undefined;
  /** Whether the stack deploys the publisher service. @default true */
  readonly publisherService?: boolean;
  readonly replicas: readonly ReplicaConfig[];
  readonly publisher?: PublisherOptions;
  readonly alarmEmail?: string;
  /** Prefix of the queue names. */
  readonly namePrefix: string;
}

/**
 * Every problem with `config`, one line each, naming the setting, the value received
 * and what is allowed. Empty when the configuration is valid. Values that are CDK
 * tokens (resolved only at deploy time) are not format-checked.
 */
export function configProblems(config: PgfanoutConfig): string[] {
  const problems: string[] = [];
  const prefix = config.namePrefix;
  const prefixFits = Token.isUnresolved(prefix) || longestQueueName(prefix, 'a').length <= LIMITS.maxQueueNameLength;
  if (!Token.isUnresolved(prefix) && !NAME_PREFIX.test(prefix)) {
    problems.push(`namePrefix ${show(prefix)} must start with a letter or digit and contain only letters, digits, "-" and "_"`);
  } else if (!prefixFits) {
    const most = LIMITS.maxQueueNameLength - longestQueueName('', 'a').length;
    problems.push(`namePrefix ${show(prefix)} (the stack name unless given) has ${prefix.length} characters; queue names "<prefix>-<replica>-sns-dlq.fifo" must fit in ${LIMITS.maxQueueNameLength}, so it may have at most ${most}`);
  }

  if (config.source !== undefined || config.publisherService !== false) {
    problems.push(...(config.source === undefined ? ['source is required: the Secrets Manager secret of the source database, which the publisher service reads'] : secretProblems('source', config.source)));
  }

  if (!Array.isArray(config.replicas)) {
    problems.push(`replicas must be a list, got ${show(config.replicas)}`);
    return problems;
  }
  if (config.replicas.length > LIMITS.maxReplicas) {
    problems.push(
      `replicas: ${config.replicas.length} given, but one stack takes at most ${LIMITS.maxReplicas} (${LIMITS.maxShards} topic shards of ${LIMITS.subscriptionsPerTopic} subscriptions, one nested stack each within CloudFormation's 500 resources per template)`,
    );
  } else {
    problems.push(...shardProblems(config.replicas));
  }
  const seen = new Map<string, number>();
  config.replicas.forEach((replica, index) => {
    problems.push(...replicaProblems(replica, index, prefixFits ? prefix : undefined));
    if (typeof replica?.name === 'string') {
      const key = replica.name.toLowerCase();
      const first = seen.get(key);
      if (first === undefined) seen.set(key, index);
      else {
        const firstName = config.replicas[first]?.name ?? '';
        problems.push(`replicas[${index}]: name ${show(replica.name)} is already used by replicas[${first}] (${show(firstName)}); each replica needs its own name`);
      }
    }
  });

  problems.push(...publisherProblems(config.publisher ?? {}));

  if (config.alarmEmail !== undefined && !Token.isUnresolved(config.alarmEmail) && config.alarmEmail !== '' && !EMAIL.test(config.alarmEmail)) {
    problems.push(`alarmEmail ${show(config.alarmEmail)} is not an email address (expected name@example.com, or empty for no subscription)`);
  }
  return problems;
}

/** Throws a {@link PgfanoutConfigError} listing every problem with `config`, if there is any. */
export function validatePgfanoutConfig(config: PgfanoutConfig): void {
  const problems = configProblems(config);
  if (problems.length > 0) throw new PgfanoutConfigError(problems);
}

function replicaProblems(replica: ReplicaConfig, index: number, prefix: string | undefined): string[] {
  if (typeof replica !== 'object' || replica === null || Array.isArray(replica)) {
    return [`replicas[${index}] must be an object like {"name":"eu","secretArn":"arn:aws:secretsmanager:…"}, got ${show(replica)}`];
  }
  const problems: string[] = [];
  const where = typeof replica.name === 'string' && replica.name !== '' ? `replicas[${index}] (${show(replica.name)})` : `replicas[${index}]`;
  const name: unknown = replica.name;
  if (typeof name !== 'string' || name === '') {
    problems.push(`${where}: name is required (a lowercase letter, then lowercase letters, digits or "-"), got ${show(name)}`);
  } else if (!REPLICA_NAME_PATTERN.test(name)) {
    problems.push(`${where}: name ${show(name)} must be a lowercase letter followed by up to 39 lowercase letters, digits or "-" (it names SQS queues and metrics)`);
  } else if (prefix !== undefined && !Token.isUnresolved(prefix)) {
    const longest = longestQueueName(prefix, name);
    if (longest.length > LIMITS.maxQueueNameLength) {
      const room = LIMITS.maxQueueNameLength - longestQueueName(prefix, '').length;
      problems.push(
        `${where}: queue name ${show(longest)} is ${longest.length} characters, SQS allows ${LIMITS.maxQueueNameLength}; with prefix ${show(prefix)} a replica name may have at most ${room} characters`,
      );
    }
  }
  problems.push(...secretProblems(where, replica));
  if (replica.replicaTriggers !== undefined && replica.replicaTriggers !== 'refuse' && replica.replicaTriggers !== 'fire') {
    problems.push(`${where}: replicaTriggers must be "refuse" or "fire", got ${show(replica.replicaTriggers)}`);
  }

  if (replica.sources === undefined) {
    problems.push(`${where}: sources is required: the source ids this replica follows (SELECT pgfanout.source_id() on the source), e.g. "sources": ["3f2c0a1e-…"]; the applier does not start without them`);
  } else {
    if (!Array.isArray(replica.sources) || replica.sources.length === 0) {
      problems.push(`${where}: sources must be a non-empty list of source ids (SELECT pgfanout.source_id() on the source), got ${show(replica.sources)}`);
    } else {
      replica.sources.forEach((id: unknown, i) => {
        if (typeof id !== 'string' || (!Token.isUnresolved(id) && !SOURCE_ID.test(id))) {
          problems.push(`${where}: sources[${i}] ${show(id)} is not a source id (1-256 characters without commas or spaces, as pgfanout.source_id() returns)`);
        }
      });
    }
  }
  if (replica.shard !== undefined && (typeof replica.shard !== 'number' || !Number.isInteger(replica.shard) || replica.shard < 0 || replica.shard >= LIMITS.maxShards)) {
    problems.push(`${where}: shard must be an integer from 0 to ${LIMITS.maxShards - 1} (the topic shard its queue subscribes to), got ${show(replica.shard)}`);
  }
  if (replica.allowSchemaChanges !== undefined && typeof replica.allowSchemaChanges !== 'boolean') {
    problems.push(`${where}: allowSchemaChanges must be true or false, got ${show(replica.allowSchemaChanges)}`);
  }

  const include = tableListProblems(where, 'include', replica.include);
  const exclude = tableListProblems(where, 'exclude', replica.exclude);
  problems.push(...include.problems, ...exclude.problems);
  const both = include.tables.filter((t) => exclude.tables.includes(t));
  if (both.length > 0) problems.push(`${where}: ${both.map(show).join(', ')} is in both include and exclude; list each table in one of them`);
  const envBytes = Buffer.byteLength(include.tables.join(',')) + Buffer.byteLength(exclude.tables.join(','));
  // The rest of the applier's environment (names, ARNs, settings) takes well under 1 KB.
  if (envBytes > LIMITS.maxEnvironmentBytes - 1024) {
    problems.push(
      `${where}: include and exclude together take ${envBytes} bytes, more than the ${LIMITS.maxEnvironmentBytes - 1024} that fit in the applier's Lambda environment (4 KB in all); list fewer tables`,
    );
  }

  problems.push(...integerProblems(where, 'lagAlarmSeconds', replica.lagAlarmSeconds, 1, 86_400));
  problems.push(...integerProblems(where, 'timeoutSeconds', replica.timeoutSeconds, LIMITS.minTimeoutSeconds, LIMITS.maxTimeoutSeconds));
  problems.push(...integerProblems(where, 'memoryMiB', replica.memoryMiB, LIMITS.minMemoryMiB, LIMITS.maxMemoryMiB));
  problems.push(...integerProblems(where, 'maxReceiveCount', replica.maxReceiveCount, LIMITS.minMaxReceiveCount, LIMITS.maxMaxReceiveCount));
  problems.push(...integerProblems(where, 'maxConcurrency', replica.maxConcurrency, LIMITS.minMaxConcurrency, LIMITS.maxMaxConcurrency));
  problems.push(...integerProblems(where, 'oldestMessageAlarmSeconds', replica.oldestMessageAlarmSeconds, 60, 13 * 86_400));
  if (replica.enabled !== undefined && typeof replica.enabled !== 'boolean') problems.push(`${where}: enabled must be true or false, got ${show(replica.enabled)}`);
  if (replica.databaseTls !== undefined && !(DB_TLS_MODES as readonly unknown[]).includes(replica.databaseTls)) {
    problems.push(`${where}: databaseTls ${show(replica.databaseTls)} must be one of ${DB_TLS_MODES.join(', ')}`);
  }
  if (replica.architecture !== undefined && !(ARCHITECTURES as readonly unknown[]).includes(replica.architecture)) {
    problems.push(`${where}: architecture ${show(replica.architecture)} must be one of ${ARCHITECTURES.join(', ')}`);
  }
  return problems;
}

/**
 * A shard with more replicas than a FIFO topic takes subscriptions: the replicas past its first
 * {@link LIMITS.subscriptionsPerTopic} (in list order) are named, with the shards that have room.
 * Nothing is moved automatically: a default that depended on the other entries (list position,
 * first shard with room) would move a replica to another topic when an entry before it is
 * removed, and re-subscribing a queue to another FIFO topic can deliver out of order.
 */
function shardProblems(replicas: readonly ReplicaConfig[]): string[] {
  const valid = replicas.filter((r) => typeof r === 'object' && r !== null && (r.shard === undefined || (Number.isInteger(r.shard) && r.shard >= 0 && r.shard < LIMITS.maxShards)));
  const byShard = new Map<number, string[]>();
  for (const r of valid) byShard.set(replicaShard(r), [...(byShard.get(replicaShard(r)) ?? []), String(r.name)]);
  const problems: string[] = [];
  for (const [shard, names] of [...byShard].sort(([a], [b]) => a - b)) {
    if (names.length <= LIMITS.subscriptionsPerTopic) continue;
    const over = names.slice(LIMITS.subscriptionsPerTopic);
    const room = range(0, LIMITS.maxShards - 1, 1)
      .filter((s) => (byShard.get(s)?.length ?? 0) < LIMITS.subscriptionsPerTopic)
      .map((s) => `${s} (room for ${LIMITS.subscriptionsPerTopic - (byShard.get(s)?.length ?? 0)})`);
    const listed = over.length > 5 ? `${over.slice(0, 5).map(show).join(', ')} and ${over.length - 5} more` : over.map(show).join(', ');
    problems.push(
      `shard ${shard} has ${names.length} replicas, but an SNS FIFO topic takes at most ${LIMITS.subscriptionsPerTopic} subscriptions ` +
        `(https://docs.aws.amazon.com/general/latest/gr/sns.html): give ${listed} an explicit "shard" with room: ${room.join(', ')}`,
    );
  }
  return problems;
}

function secretProblems(where: string, ref: SecretReference | undefined): string[] {
  if (typeof ref !== 'object' || ref === null) {
    return [`${where} must be an object with secretArn or secretName, got ${show(ref)}`];
  }
  const problems: string[] = [];
  const given = (['secret', 'secretArn', 'secretName'] as const).filter((k) => ref[k] !== undefined);
  if (given.length !== 1) {
    problems.push(
      given.length === 0
        ? `${where}: secretArn or secretName is required (the Secrets Manager secret with the database credentials)`
        : `${where}: give exactly one of secret, secretArn, secretName; got ${given.join(' and ')}`,
    );
  }
  const { secretArn, secretName, secretKeyArn } = ref;
  if (secretArn !== undefined && !Token.isUnresolved(secretArn) && (typeof secretArn !== 'string' || !SECRET_ARN.test(secretArn))) {
    problems.push(`${where}: secretArn ${show(secretArn)} is not a Secrets Manager secret ARN (expected arn:aws:secretsmanager:<region>:<account>:secret:<name>)`);
  }
  if (secretName !== undefined && !Token.isUnresolved(secretName) && (typeof secretName !== 'string' || !SECRET_NAME.test(secretName))) {
    problems.push(`${where}: secretName ${show(secretName)} is not a secret name (1-512 of letters, digits and /_+=.@-)`);
  }
  if (secretKeyArn !== undefined && !Token.isUnresolved(secretKeyArn) && (typeof secretKeyArn !== 'string' || !KMS_KEY_ARN.test(secretKeyArn))) {
    problems.push(`${where}: secretKeyArn ${show(secretKeyArn)} is not a KMS key ARN (expected arn:aws:kms:<region>:<account>:key/<key-id>)`);
  }
  return problems;
}

function tableListProblems(where: string, field: string, value: unknown): { problems: string[]; tables: string[] } {
  if (value === undefined) return { problems: [], tables: [] };
  if (!Array.isArray(value)) return { problems: [`${where}: ${field} must be a list of "schema.table" names, got ${show(value)}`], tables: [] };
  const problems: string[] = [];
  const tables: string[] = [];
  value.forEach((item: unknown, i) => {
    if (typeof item !== 'string' || !TABLE_NAME.test(item)) {
      problems.push(`${where}: ${field}[${i}] ${show(item)} is not a "schema.table" name (two parts separated by one dot; no spaces, commas or quotes)`);
    } else tables.push(item);
  });
  return { problems, tables };
}

function publisherProblems(publisher: PublisherOptions): string[] {
  const where = 'publisher';
  if (typeof publisher !== 'object' || publisher === null) return [`publisher must be an object, got ${show(publisher)}`];
  const problems: string[] = [];
  const cpu = publisher.cpu ?? DEFAULTS.publisherCpu;
  const memory = publisher.memoryMiB ?? DEFAULTS.publisherMemoryMiB;
  const allowed = FARGATE_MEMORY[cpu];
  if (allowed === undefined) {
    problems.push(`${where}: cpu ${show(publisher.cpu)} is not a Fargate CPU size (allowed: ${Object.keys(FARGATE_MEMORY).join(', ')})`);
  } else if (!allowed.includes(memory)) {
    problems.push(`${where}: memoryMiB ${show(memory)} is not allowed with cpu ${cpu} (Fargate allows ${allowed[0]}-${allowed.at(-1)} MiB: ${allowed.join(', ')})`);
  }
  if (publisher.logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(publisher.logLevel)) {
    problems.push(`${where}: logLevel ${show(publisher.logLevel)} must be one of ${LOG_LEVELS.join(', ')}`);
  }
  if (publisher.databaseTls !== undefined && !(DB_TLS_MODES as readonly string[]).includes(publisher.databaseTls)) {
    problems.push(`${where}: databaseTls ${show(publisher.databaseTls)} must be one of ${DB_TLS_MODES.join(', ')}`);
  }
  problems.push(...integerProblems(where, 'tickMs', publisher.tickMs, 100, 600_000));
  problems.push(...integerProblems(where, 'stalledAlarmSeconds', publisher.stalledAlarmSeconds, 60, 86_400));
  problems.push(...integerProblems(where, 'healthPort', publisher.healthPort, 1024, 65_535));
  return problems;
}

function integerProblems(where: string, field: string, value: unknown, min: number, max: number): string[] {
  if (value === undefined) return [];
  if (!isIntegerIn(value, min, max)) {
    return [`${where}: ${field} must be an integer from ${min} to ${max}, got ${show(value)}`];
  }
  return [];
}

/** A value as it appears in a message: strings quoted, everything else as JSON. */
function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === undefined) return 'nothing';
  try {
    const text = JSON.stringify(value);
    return text.length > 120 ? `${text.slice(0, 117)}...` : text;
  } catch {
    return String(value);
  }
}
