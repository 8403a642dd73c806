/**
 * Reads the app's settings from CDK context (`-c key=value` on the command line, or the
 * `context` of cdk.json). Values given on the command line arrive as strings, so lists
 * and objects are accepted as JSON text too. Every problem, with the context and with
 * the configuration it describes, is reported at once.
 */
import { configProblems, type PublisherOptions, type ReplicaConfig, type SourceConfig } from './config.ts';
import { CDK_ERROR_CODES, PgfanoutConfigError } from './errors.ts';

/** An existing VPC given by ids. */
export interface ExistingNetwork {
  /** The VPC id (`vpc-…`). */
  readonly vpcId: string;
  /** Subnets for the publisher and the appliers (`subnet-…`), private with a route to AWS APIs. */
  readonly subnetIds: readonly string[];
  /** Security groups for the publisher and the appliers (`sg-…`). @default new ones */
  readonly securityGroupIds?: readonly string[];
}

/** Everything the app reads from context. */
export interface AppSettings {
  readonly stackName: string;
  readonly source?: SourceConfig;
  readonly publisherService: boolean;
  readonly replicas: readonly ReplicaConfig[];
  readonly network?: ExistingNetwork;
  readonly alarmEmail?: string;
  readonly namePrefix?: string;
  readonly publisher?: PublisherOptions;
  readonly logRetentionDays?: number;
  /** What happens to the queues, dead-letter queues and the key when they leave the stack. */
  readonly dataRemovalPolicy: DataRemovalPolicy;
  /** CloudFormation termination protection of the stack. */
  readonly terminationProtection: boolean;
}

/** `retain` keeps queues (with their messages), dead-letter queues and the key when they leave the stack; `destroy` deletes them. */
export const DATA_REMOVAL_POLICIES = ['retain', 'destroy'] as const;
/** One of {@link DATA_REMOVAL_POLICIES}. */
export type DataRemovalPolicy = (typeof DATA_REMOVAL_POLICIES)[number];

/** Context keys the app reads. */
export const CONTEXT_KEYS = {
  stackName: 'stackName',
  source: 'source',
  replicas: 'replicas',
  vpcId: 'vpcId',
  subnetIds: 'subnetIds',
  securityGroupIds: 'securityGroupIds',
  alarmEmail: 'alarmEmail',
  namePrefix: 'namePrefix',
  publisher: 'publisher',
  logRetentionDays: 'logRetentionDays',
  publisherService: 'publisherService',
  dataRemovalPolicy: 'dataRemovalPolicy',
  terminationProtection: 'terminationProtection',
} as const;

/** Default stack name. */
export const DEFAULT_STACK_NAME = 'pgfanout';

/** Retention periods CloudWatch Logs accepts, in days. */
const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

const STACK_NAME = /^[A-Za-z][A-Za-z0-9-]{0,127}$/;
const VPC_ID = /^vpc-[0-9a-f]{8,17}$/;
const SUBNET_ID = /^subnet-[0-9a-f]{8,17}$/;
const SECURITY_GROUP_ID = /^sg-[0-9a-f]{8,17}$/;

/**
 * The app settings in `context` (a lookup such as `node.tryGetContext`). Throws a
 * {@link PgfanoutConfigError} listing every problem.
 */
export function readAppSettings(context: (key: string) => unknown): AppSettings {
  const problems: string[] = [];
  const json = <T>(key: string, expected: string): T | undefined => {
    const raw = context(key);
    if (raw === undefined || raw === null || raw === '') return undefined;
    if (typeof raw !== 'string') return raw as T;
    try {
      return JSON.parse(raw) as T;
    } catch (cause) {
      problems.push(`context ${key}: not valid JSON (${(cause as Error).message}); expected ${expected}, got ${JSON.stringify(raw.length > 120 ? `${raw.slice(0, 117)}...` : raw)}`);
      return undefined;
    }
  };
  const text = (key: string): string | undefined => {
    const raw = context(key);
    if (raw === undefined || raw === null) return undefined;
    if (typeof raw !== 'string') {
      problems.push(`context ${key} must be a string, got ${JSON.stringify(raw)}`);
      return undefined;
    }
    return raw.trim();
  };
  const list = (key: string, pattern: RegExp, what: string): string[] | undefined => {
    const raw = context(key);
    if (raw === undefined || raw === null || raw === '') return undefined;
    let items: unknown = raw;
    if (typeof raw === 'string') items = raw.trim().startsWith('[') ? json<unknown>(key, `a JSON list, each a ${what}`) : raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
    if (items === undefined) return undefined;
    if (!Array.isArray(items)) {
      problems.push(`context ${key} must be a list, each a ${what} (JSON list or comma-separated), got ${JSON.stringify(raw)}`);
      return undefined;
    }
    const bad = items.filter((i) => typeof i !== 'string' || !pattern.test(i));
    if (bad.length > 0) problems.push(`context ${key}: ${bad.map((b) => JSON.stringify(b)).join(', ')} rejected; each must be a ${what}`);
    return items.filter((i): i is string => typeof i === 'string');
  };

  const stackName = text(CONTEXT_KEYS.stackName) || DEFAULT_STACK_NAME;
  if (!STACK_NAME.test(stackName)) {
    problems.push(`context ${CONTEXT_KEYS.stackName} ${JSON.stringify(stackName)} is not a CloudFormation stack name (a letter, then up to 127 letters, digits and "-")`);
  }

  const serviceRaw = context(CONTEXT_KEYS.publisherService);
  let publisherService = true;
  if (serviceRaw === false || serviceRaw === 'false') publisherService = false;
  else if (serviceRaw !== undefined && serviceRaw !== null && serviceRaw !== true && serviceRaw !== 'true') {
    problems.push(`context ${CONTEXT_KEYS.publisherService} must be true or false, got ${JSON.stringify(serviceRaw)}`);
  }

  const source = json<SourceConfig>(CONTEXT_KEYS.source, '{"secretArn":"arn:aws:secretsmanager:…"}');
  if (publisherService && source === undefined && !problems.some((p) => p.startsWith(`context ${CONTEXT_KEYS.source}:`))) {
    problems.push(
      `context ${CONTEXT_KEYS.source} is required: -c source='{"secretArn":"arn:aws:secretsmanager:<region>:<account>:secret:<name>"}' (or "secretName"), unless -c ${CONTEXT_KEYS.publisherService}=false`,
    );
  }
  // Required, even when empty: command-line context does not persist between deploys, and a
  // `cdk deploy` that silently read "no replicas" would delete every replica's stack.
  const replicasGiven = context(CONTEXT_KEYS.replicas);
  if (replicasGiven === undefined || replicasGiven === null || replicasGiven === '') {
    problems.push(
      `context ${CONTEXT_KEYS.replicas} is required: the list of replicas, [] for none. Keep it in cdk.json's "context" (the source of truth for every deploy): ` +
        `a deploy without it would remove every replica. For example "replicas": [{"name":"eu","secretArn":"arn:aws:secretsmanager:<region>:<account>:secret:<name>"}]`,
    );
  }
  const replicas = json<ReplicaConfig[]>(CONTEXT_KEYS.replicas, '[{"name":"eu","secretArn":"arn:aws:secretsmanager:…"}]') ?? [];
  const flag = (key: string, fallback: boolean): boolean => {
    const raw = context(key);
    if (raw === undefined || raw === null || raw === '') return fallback;
    if (raw === true || raw === 'true') return true;
    if (raw === false || raw === 'false') return false;
    problems.push(`context ${key} must be true or false, got ${JSON.stringify(raw)}`);
    return fallback;
  };
  const terminationProtection = flag(CONTEXT_KEYS.terminationProtection, true);
  const removalRaw = context(CONTEXT_KEYS.dataRemovalPolicy);
  let dataRemovalPolicy: DataRemovalPolicy = 'retain';
  if (removalRaw !== undefined && removalRaw !== null && removalRaw !== '') {
    if ((DATA_REMOVAL_POLICIES as readonly unknown[]).includes(removalRaw)) dataRemovalPolicy = removalRaw as DataRemovalPolicy;
    else problems.push(`context ${CONTEXT_KEYS.dataRemovalPolicy} must be one of ${DATA_REMOVAL_POLICIES.join(', ')}, got ${JSON.stringify(removalRaw)}`);
  }
  const publisher = json<PublisherOptions>(CONTEXT_KEYS.publisher, '{"cpu":256,"memoryMiB":512}');

  const vpcId = text(CONTEXT_KEYS.vpcId);
  const subnetIds = list(CONTEXT_KEYS.subnetIds, SUBNET_ID, 'subnet id (subnet- and 8 or 17 hex digits)');
  const securityGroupIds = list(CONTEXT_KEYS.securityGroupIds, SECURITY_GROUP_ID, 'security group id (sg- and 8 or 17 hex digits)');
  let network: ExistingNetwork | undefined;
  if (vpcId) {
    if (!VPC_ID.test(vpcId)) problems.push(`context ${CONTEXT_KEYS.vpcId} ${JSON.stringify(vpcId)} is not a VPC id (vpc- and 8 or 17 hex digits)`);
    if (!subnetIds || subnetIds.length === 0) problems.push(`context ${CONTEXT_KEYS.subnetIds} is required with ${CONTEXT_KEYS.vpcId}: the private subnets the publisher and the appliers run in`);
    network = { vpcId, subnetIds: subnetIds ?? [], ...(securityGroupIds ? { securityGroupIds } : {}) };
  } else if (subnetIds || securityGroupIds) {
    problems.push(`context ${subnetIds ? CONTEXT_KEYS.subnetIds : CONTEXT_KEYS.securityGroupIds} needs ${CONTEXT_KEYS.vpcId}: give the VPC they belong to, or neither for a new VPC`);
  }

  const alarmEmail = text(CONTEXT_KEYS.alarmEmail);
  const namePrefix = text(CONTEXT_KEYS.namePrefix) || undefined;
  const retentionRaw = context(CONTEXT_KEYS.logRetentionDays);
  let logRetentionDays: number | undefined;
  if (retentionRaw !== undefined && retentionRaw !== null && retentionRaw !== '') {
    const days = Number(retentionRaw);
    if (!(LOG_RETENTION_DAYS as readonly number[]).includes(days)) {
      problems.push(`context ${CONTEXT_KEYS.logRetentionDays} ${JSON.stringify(retentionRaw)} is not a CloudWatch Logs retention (allowed: ${LOG_RETENTION_DAYS.join(', ')})`);
    } else logRetentionDays = days;
  }

  const settings: AppSettings = {
    stackName,
    ...(source !== undefined ? { source } : {}),
    publisherService,
    replicas,
    ...(network ? { network } : {}),
    ...(alarmEmail ? { alarmEmail } : {}),
    ...(namePrefix ? { namePrefix } : {}),
    ...(publisher !== undefined ? { publisher } : {}),
    ...(logRetentionDays !== undefined ? { logRetentionDays } : {}),
    dataRemovalPolicy,
    terminationProtection,
  };
  if (source !== undefined || replicas.length > 0) {
    problems.push(
      ...configProblems({
        source: settings.source,
        publisherService,
        replicas: settings.replicas,
        namePrefix: settings.namePrefix ?? stackName,
        ...(settings.publisher !== undefined ? { publisher: settings.publisher } : {}),
        ...(settings.alarmEmail !== undefined ? { alarmEmail: settings.alarmEmail } : {}),
      }).filter((p) => source !== undefined || !p.startsWith('source')), // a missing source is reported above
    );
  }
  if (problems.length > 0) throw new PgfanoutConfigError(problems, CDK_ERROR_CODES.invalidContext);
  return settings;
}
