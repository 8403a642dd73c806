/**
 * The whole pgfanout pipeline on one machine: a source and replica databases (real
 * PostgreSQL servers, or existing ones by URL), an SNS/SQS endpoint (the local one, or
 * `AWS_ENDPOINT_URL` such as LocalStack), the topic and one FIFO queue + dead-letter
 * queue per replica, the SQL installed, the publisher as its own process (exactly what
 * the Fargate task runs), and per replica an event-source runner driving the applier
 * Lambda handler the way Lambda's SQS event source mapping does. A message signing key is
 * generated at start in the endpoint's Secrets Manager (local/signing-key.ts): the publisher
 * signs with it and the appliers verify with it, through the same code and SDK client as deployed.
 *
 * Used by `pgfanout local` and by the end-to-end tests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics } from '@aws-lambda-powertools/metrics';
import { CreateEventSourceMappingCommand, CreateFunctionCommand, GetEventSourceMappingCommand, type LambdaClient } from '@aws-sdk/client-lambda';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { SNSClient } from '@aws-sdk/client-sns';
import type { SQSClient } from '@aws-sdk/client-sqs';
import pg from 'pg';
import { connect } from '#core/pg/db.ts';
import type { ConflictMode } from '#core/replica';
import { installReplica, installSource, type CaptureMode } from '#ops/install.ts';
import { APPLIER_ENV, DIMENSIONS, METRIC_NAMESPACE, PUBLISHER_ENV } from '#core/config.ts';
import { SecretsManagerSigningKeys } from '#core/signing-keys.ts';
import { createApplierHandler, type ApplierHandler } from '../functions/applier/app.ts';
import { applyOptionsOf, readApplierConfig } from '../functions/applier/config.ts';
import { visibilityDeferral } from '../functions/applier/defer.ts';
import { startEndpoint } from './endpoint/index.ts';
import type { Clock } from './endpoint/clock.ts';
import { startEventSourceRunner, type EventSourceRunner, type RunnerStats } from './runner/index.ts';
import { awsClients, type ReplicaQueues } from '../functions/ops/aws.ts';
import { createFanout } from './fanout.ts';
import { freePort, LocalPostgres, WAL_SETTINGS, type Major } from './postgres.ts';
import { ensureSigningKeySecret, signingKeySecretName } from './signing-key.ts';

const PUBLISHER_MAIN = fileURLToPath(new URL('../functions/publisher/main.ts', import.meta.url));
const NODE = process.execPath;

export interface ReplicaSpec {
  readonly name: string;
  /** An existing database; when absent a local server is started. */
  readonly url?: string;
  readonly include?: readonly string[];
  readonly exclude?: readonly string[];
  /** How this replica's applier treats conflicts (multi-master). @default 'error' */
  readonly conflicts?: ConflictMode;
  /** Whether this replica's applier runs the stream's schema changes (ApplyOptions.allowSchemaChanges). @default false */
  readonly allowSchemaChanges?: boolean;
  /** The topic shard its queue subscribes to, as the stack's replica `shard`. @default 0 */
  readonly shard?: number;
}

export interface PipelineOptions {
  /** An existing source database; when absent a local server is started. */
  readonly sourceUrl?: string;
  /** @default two local replicas named "a" and "b" */
  readonly replicas?: readonly ReplicaSpec[];
  /** Use this SNS/SQS endpoint instead of starting the local one (e.g. LocalStack). */
  readonly endpointUrl?: string;
  /** Prefix of topic and queue names. @default "pgfanout-local" */
  readonly prefix?: string;
  /** Server major for local databases. @default 18 */
  readonly major?: Major;
  /** Publisher tick when no NOTIFY arrives (ms). @default 1000 */
  readonly tickMs?: number;
  /** Largest message in bytes. @default 262144 */
  readonly maxMessageBytes?: number;
  /** Receives before a message is parked in the dead-letter queue. @default 1000, as the stack deploys */
  readonly maxReceiveCount?: number;
  /** Queue visibility timeout (s); a failed batch comes back after it. @default 30 */
  readonly visibilityTimeoutSeconds?: number;
  /** The applier's function timeout (s), as the event-source runner enforces it. @default the visibility timeout */
  readonly functionTimeoutSeconds?: number;
  /** Cap on the applier's retry delay after a failure (s). @default no cap beyond the applier's own (see retryDelaySeconds) */
  readonly maxRetryDelaySeconds?: number;
  /**
   * The clock of the built-in endpoint, the event-source runners and the appliers: a
   * `ManualClock` lets a test run hours of SQS and Lambda timing in seconds. Only with the
   * built-in endpoint. @default the system clock
   */
  readonly clock?: Clock;
  /** Start the publisher process right away. @default true */
  readonly startPublisher?: boolean;
  /** Receives log lines of the publisher and appliers (Powertools' JSON lines). @default discarded */
  readonly log?: (line: string) => void;
  /** Install pgfanout's SQL on the source and replicas. @default true */
  readonly install?: boolean;
  /**
   * The source's capture mode, chosen at install. With `wal`, a local source server is started
   * with `wal_level = logical`; a source given by URL must have it. @default 'trigger'
   */
  readonly capture?: CaptureMode;
  /** Keep the built-in endpoint's queues, topics and messages in this file across runs. @default in memory */
  readonly endpointStateFile?: string;
  /**
   * Stops a start in progress: what was started so far is stopped and removed, and `start`
   * rejects with the signal's reason.
   */
  readonly signal?: AbortSignal;
}

export interface RunningReplica extends ReplicaQueues {
  readonly url: string;
  readonly server?: LocalPostgres;
  readonly handler: ApplierHandler;
  stopRunner(): Promise<void>;
  startRunner(): void;
  /** The counters of the replica's event-source runner, when it runs. */
  runnerStats(): RunnerStats | undefined;
}

export class Pipeline {
  readonly sourceUrl: string;
  /** The source's id (`pgfanout.source_id()`), the one source every replica's applier follows. */
  readonly sourceId: string;
  readonly sourceServer?: LocalPostgres;
  readonly endpointUrl: string;
  /** The topic of shard 0. */
  readonly topicArn: string;
  /** Every topic shard's topic, shard 0 first: the publisher publishes to each. */
  readonly topicArns: readonly string[];
  readonly replicas: readonly RunningReplica[];
  readonly sns: SNSClient;
  readonly sqs: SQSClient;
  /** Lambda client of the endpoint (event source mappings: pause and resume). */
  readonly lambda: LambdaClient;
  /** Secrets Manager client of the endpoint. */
  readonly secretsManager: SecretsManagerClient;
  /** ARN of the secret holding the message signing key (rotate it with PutSecretValue). */
  readonly signingKeySecret: string;
  readonly #options: PipelineOptions;
  readonly #closeEndpoint: (() => Promise<void>) | undefined;
  #publisher: ChildProcess | undefined;
  #healthPort = 0;
  readonly #extras: ChildProcess[] = [];

  private constructor(init: {
    sourceUrl: string;
    sourceId: string;
    sourceServer?: LocalPostgres;
    endpointUrl: string;
    topicArns: readonly string[];
    replicas: RunningReplica[];
    sns: SNSClient;
    sqs: SQSClient;
    lambda: LambdaClient;
    secretsManager: SecretsManagerClient;
    signingKeySecret: string;
    options: PipelineOptions;
    closeEndpoint?: () => Promise<void>;
  }) {
    this.sourceUrl = init.sourceUrl;
    this.sourceId = init.sourceId;
    if (init.sourceServer) this.sourceServer = init.sourceServer;
    this.endpointUrl = init.endpointUrl;
    this.topicArns = init.topicArns;
    this.topicArn = init.topicArns[0] as string;
    this.replicas = init.replicas;
    this.sns = init.sns;
    this.sqs = init.sqs;
    this.lambda = init.lambda;
    this.secretsManager = init.secretsManager;
    this.signingKeySecret = init.signingKeySecret;
    this.#options = init.options;
    this.#closeEndpoint = init.closeEndpoint;
  }

  static async start(options: PipelineOptions = {}): Promise<Pipeline> {
    const log = options.log ?? (() => {});
    const started: { stop(): Promise<void> }[] = [];
    const checkpoint = () => options.signal?.throwIfAborted();
    try {
      checkpoint();
      const specs = options.replicas ?? [{ name: 'a' }, { name: 'b' }];
      // Every server that started is stopped again if another one (or the whole start) fails.
      const settled = await Promise.allSettled([
        options.sourceUrl ? undefined : LocalPostgres.start({ major: options.major ?? 18, ...(options.capture === 'wal' ? { settings: WAL_SETTINGS } : {}) }),
        ...specs.map((s) => (s.url ? undefined : LocalPostgres.start({ major: options.major ?? 18 }))),
      ]);
      for (const s of settled) if (s.status === 'fulfilled' && s.value) started.push(s.value);
      const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failed) throw failed.reason;
      checkpoint();
      const servers = settled.map((s) => (s as PromiseFulfilledResult<LocalPostgres | undefined>).value);
      const sourceServer = servers[0];
      const sourceUrl = options.sourceUrl ?? (sourceServer as LocalPostgres).url();
      const replicaUrls = specs.map((s, i) => s.url ?? (servers[i + 1] as LocalPostgres).url());

      let endpointUrl = options.endpointUrl;
      let closeEndpoint: (() => Promise<void>) | undefined;
      if (!endpointUrl) {
        const endpoint = await startEndpoint({
          port: 0,
          ...(options.clock ? { clock: options.clock } : {}),
          ...(options.endpointStateFile ? { persistFile: options.endpointStateFile } : {}),
          onError: (error) => log(`[endpoint] ${error.message}`),
        });
        endpointUrl = endpoint.url;
        closeEndpoint = () => endpoint.close();
        started.push({ stop: closeEndpoint });
      }
      checkpoint();
      const { sns, sqs, lambda } = awsClients({ endpoint: endpointUrl });
      const secretsManager = new SecretsManagerClient({
        endpoint: endpointUrl,
        region: process.env.AWS_REGION ?? 'us-east-1',
        credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID ?? 'test', secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY ?? 'test' },
      });
      started.push({
        stop: async () => {
          sns.destroy();
          sqs.destroy();
          lambda.destroy();
          secretsManager.destroy();
        },
      });
      const signingKeySecret = await ensureSigningKeySecret(secretsManager, signingKeySecretName(options.prefix ?? 'pgfanout-local'));
      const fanout = await createFanout(sns, sqs, {
        prefix: options.prefix ?? 'pgfanout-local',
        replicas: specs.map((s) => ({ name: s.name, ...(s.shard !== undefined ? { shard: s.shard } : {}) })),
        ...(options.maxReceiveCount ? { maxReceiveCount: options.maxReceiveCount } : {}),
        ...(options.visibilityTimeoutSeconds ? { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds } : {}),
      });

      checkpoint();
      if (options.install ?? true) {
        await withClient(sourceUrl, (c) => installSource(c, options.capture ? { capture: options.capture } : {}), 'source');
        for (const [i, url] of replicaUrls.entries()) await withClient(url, (c) => installReplica(c), `replica ${specs[i]?.name ?? ''}`);
      }
      checkpoint();
      const sourceId = await withClient(sourceUrl, async (c) => (await c.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]?.id as string, 'source');

      // Each applier's settings as its Lambda function's environment on AWS, read by the same
      // loader: the handlers below run with them, and the built-in endpoint keeps them as the
      // function's configuration for `pgfanout redrive`'s dry runs.
      const environments = specs.map((spec, i) => ({
        [APPLIER_ENV.REPLICA_NAME]: spec.name,
        [APPLIER_ENV.REPLICA_URL]: replicaUrls[i] as string,
        [APPLIER_ENV.SOURCE_IDS]: sourceId,
        [APPLIER_ENV.INCLUDE_TABLES]: (spec.include ?? []).join(','),
        [APPLIER_ENV.EXCLUDE_TABLES]: (spec.exclude ?? []).join(','),
        [APPLIER_ENV.ALLOW_SCHEMA_CHANGES]: String(spec.allowSchemaChanges === true),
        [APPLIER_ENV.SIGNING_KEY_SECRET]: signingKeySecret,
      }));
      const configs = environments.map((env) => readApplierConfig(env));
      // The built-in endpoint keeps each applier's event source mapping, so that `pgfanout
      // pause|resume` (Lambda UpdateEventSourceMapping) stops and starts its runner as on AWS.
      const mappings: (string | undefined)[] = [];
      for (const [i, queues] of fanout.replicas.entries()) {
        if (!closeEndpoint) {
          mappings.push(undefined);
          continue;
        }
        // Lambda requires Role and Code; the local endpoint keeps the name and the environment only.
        await lambda.send(
          new CreateFunctionCommand({
            FunctionName: `pgfanout-applier-${(specs[i] as ReplicaSpec).name}`,
            Role: 'arn:aws:iam::000000000000:role/pgfanout-local-applier',
            Code: { ZipFile: new Uint8Array() },
            Environment: { Variables: environments[i] as Record<string, string> },
          }),
        );
        const created = await lambda.send(
          new CreateEventSourceMappingCommand({
            FunctionName: `pgfanout-applier-${(specs[i] as ReplicaSpec).name}`,
            EventSourceArn: queues.queueArn,
            BatchSize: 10,
            FunctionResponseTypes: ['ReportBatchItemFailures'],
          }),
        );
        mappings.push(created.UUID);
      }

      const replicas: RunningReplica[] = fanout.replicas.map((queues, i) => {
        const mappingUuid = mappings[i];
        const spec = specs[i] as ReplicaSpec;
        const url = replicaUrls[i] as string;
        const config = configs[i] as ReturnType<typeof readApplierConfig>;
        const logger = new LineLogger(log, { serviceName: 'pgfanout-applier', persistentKeys: { replica: spec.name }, logLevel: 'WARN' });
        const metrics = new Metrics({
          namespace: METRIC_NAMESPACE,
          serviceName: 'pgfanout-applier',
          defaultDimensions: { [DIMENSIONS.replica]: spec.name },
          logger: metricsWarnings(log, spec.name),
        });
        const handler = createApplierHandler({
          replicaName: spec.name,
          connect: async () => {
            const client = new pg.Client({ connectionString: url, application_name: `pgfanout-applier-${spec.name}` });
            await client.connect();
            return client;
          },
          signingKeys: new SecretsManagerSigningKeys(secretsManager, signingKeySecret, options.clock ? { now: () => (options.clock as Clock).now() } : {}),
          apply: { ...applyOptionsOf(config), ...(spec.conflicts ? { conflicts: spec.conflicts } : {}) },
          logger,
          metrics,
          deferRecords: visibilityDeferral(sqs, () => queues.queueUrl, options.maxRetryDelaySeconds),
          ...(options.clock ? { now: () => (options.clock as Clock).now() } : {}),
        });
        let runner: EventSourceRunner | undefined;
        const replica: RunningReplica = {
          ...queues,
          url,
          ...(servers[i + 1] ? { server: servers[i + 1] as LocalPostgres } : {}),
          handler,
          startRunner() {
            if (runner) return;
            runner = startEventSourceRunner({
              sqs,
              queueUrl: queues.queueUrl,
              handler,
              batchSize: 10,
              // Lambda requires the queue's visibility timeout to be at least the function timeout.
              functionTimeoutMs: (options.functionTimeoutSeconds ?? options.visibilityTimeoutSeconds ?? 30) * 1000,
              ...(options.clock ? { clock: options.clock } : {}),
              functionName: `pgfanout-applier-${spec.name}`,
              ...(mappingUuid
                ? { enabled: async () => (await lambda.send(new GetEventSourceMappingCommand({ UUID: mappingUuid }))).State === 'Enabled' }
                : {}),
              onError: (error) => log(`[applier ${spec.name}] ${error.message}`),
            });
          },
          runnerStats() {
            return runner?.stats;
          },
          async stopRunner() {
            const r = runner;
            runner = undefined;
            if (r) await r.stop();
          },
        };
        replica.startRunner();
        return replica;
      });

      const pipeline = new Pipeline({
        sourceUrl,
        sourceId,
        ...(sourceServer ? { sourceServer } : {}),
        endpointUrl,
        topicArns: fanout.topicArns,
        replicas,
        sns,
        sqs,
        lambda,
        secretsManager,
        signingKeySecret,
        options: { ...options, log },
        ...(closeEndpoint ? { closeEndpoint } : {}),
      });
      started.push({
        stop: async () => {
          for (const r of replicas) {
            await r.stopRunner();
            await r.handler.applier.close();
          }
        },
      });
      pipeline.#healthPort = await freePort();
      checkpoint();
      if (options.startPublisher ?? true) pipeline.startPublisher();
      return pipeline;
    } catch (err) {
      for (const s of started.reverse()) await s.stop().catch(() => undefined);
      throw err;
    }
  }

  /** The signing keys of this pipeline, read from its secret as the publisher and the appliers read them. */
  signingKeys(): SecretsManagerSigningKeys {
    return new SecretsManagerSigningKeys(this.secretsManager, this.signingKeySecret);
  }

  /** The environment the publisher process gets: exactly what the ECS task definition sets. */
  publisherEnv(healthPort = this.#healthPort): NodeJS.ProcessEnv {
    return {
      PATH: process.env.PATH,
      [PUBLISHER_ENV.SOURCE_URL]: this.sourceUrl,
      [PUBLISHER_ENV.TOPIC_ARN]: this.topicArns.join(','),
      [PUBLISHER_ENV.HEALTH_PORT]: String(healthPort),
      [PUBLISHER_ENV.TICK_MS]: String(this.#options.tickMs ?? 1000),
      [PUBLISHER_ENV.MAX_MESSAGE_BYTES]: String(this.#options.maxMessageBytes ?? 262_144),
      [PUBLISHER_ENV.LOG_LEVEL]: 'WARN',
      [PUBLISHER_ENV.SIGNING_KEY_SECRET]: this.signingKeySecret,
      AWS_ENDPOINT_URL: this.endpointUrl,
      AWS_REGION: process.env.AWS_REGION ?? 'us-east-1',
      AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID ?? 'test',
      AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY ?? 'test',
      POWERTOOLS_METRICS_DISABLED: 'true',
    };
  }

  /** A publisher's health report (GET /health; default: the main publisher's port), or undefined when none answers. */
  async publisherHealth(port = this.#healthPort): Promise<Record<string, unknown> | undefined> {
    if (!port) return undefined;
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      return (await res.json()) as Record<string, unknown>;
    } catch {
      return undefined;
    }
  }

  /**
   * Starts a publisher process, tracked as the pipeline's publisher. `extra` starts another
   * one, untracked, with its own health port: it stands by behind the active one's lock.
   */
  startPublisher(extra?: { healthPort: number }): ChildProcess {
    // Its own process group: a Ctrl-C at the terminal reaches this process only, which stops it.
    const child = spawn(NODE, [PUBLISHER_MAIN], { env: this.publisherEnv(extra?.healthPort), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const log = this.#options.log ?? (() => {});
    child.stdout?.on('data', (d: Buffer) => log(`[publisher] ${d.toString().trimEnd()}`));
    child.stderr?.on('data', (d: Buffer) => log(`[publisher] ${d.toString().trimEnd()}`));
    if (extra) this.#extras.push(child);
    else this.#publisher = child;
    return child;
  }

  get publisher(): ChildProcess | undefined {
    return this.#publisher;
  }

  /** Stops the publisher: SIGTERM waits for a clean exit; SIGKILL is a crash. */
  async stopPublisher(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<number | null> {
    const child = this.#publisher;
    this.#publisher = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    return exited;
  }

  async stop(): Promise<void> {
    await this.stopPublisher('SIGTERM');
    for (const child of this.#extras) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        await exited;
      }
    }
    for (const r of this.replicas) {
      await r.stopRunner();
      await r.handler.applier.close();
    }
    this.sns.destroy();
    this.sqs.destroy();
    this.lambda.destroy();
    this.secretsManager.destroy();
    if (this.#closeEndpoint) await this.#closeEndpoint();
    await Promise.all([this.sourceServer?.stop(), ...this.replicas.map((r) => r.server?.stop())]);
  }
}

/**
 * Runs `fn` with a fresh connection to `url`, always closing it. `role` (e.g. "replica a")
 * names the database in a connection error.
 */
export async function withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>, role = 'database'): Promise<T> {
  const client = await connect(url, role);
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/** A Powertools Logger whose JSON lines go to `sink` instead of standard output. */
class LineLogger extends Logger {
  readonly #sink: (line: string) => void;
  constructor(sink: (line: string) => void, options: ConstructorParameters<typeof Logger>[0]) {
    super(options);
    this.#sink = sink;
  }
  protected override printLog(_logLevel: number, log: Parameters<Logger['printLog']>[1]): void {
    this.#sink(JSON.stringify(log.getAttributes()));
  }
}

/**
 * Where the Metrics utility's own warnings go: to `sink`, except the one about an invocation
 * without application metrics, which is expected here (metrics are not published locally).
 */
function metricsWarnings(sink: (line: string) => void, replica: string): { debug(): void; info(): void; warn(...a: unknown[]): void; error(...a: unknown[]): void } {
  const write = (level: string, parts: unknown[]) => {
    const text = parts.map(String).join(' ');
    if (text.startsWith('No application metrics to publish')) return;
    sink(JSON.stringify({ level, service: 'pgfanout-applier', replica, message: text }));
  };
  return { debug() {}, info() {}, warn: (...a) => write('WARN', a), error: (...a) => write('ERROR', a) };
}
