/**
 * The applier bundle the stack deploys: synthesized from the real handler with the local
 * esbuild, loaded from the cloud assembly with the environment the stack gives the
 * function, and handed SQS events the way Lambda hands them: a real message published
 * by the publisher from a change committed on a real source, received from the local
 * SQS endpoint, applied to a real replica; and a malformed one, reported as a failure.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ReceiveMessageCommand, type Message, type SQSClient } from '@aws-sdk/client-sqs';
import type { Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installReplica, installSource } from '#ops/install.ts';
import { APPLIER_ENV, ENTRY_POINTS, METRIC_NAMESPACE, PUBLISHER_ENV } from '#core/config.ts';
import { awsClients } from '#ops/aws.ts';
import { createFanout, type Fanout } from '#local/fanout.ts';
import { startEndpoint, type Endpoint } from '#local/endpoint/index.ts';
import { LocalPostgres } from '#local/postgres.ts';
import { invocationContext, toRecord } from '#local/runner/index.ts';
import { applierDimensions } from '../cdk/metrics.ts';
import { buildStack, REPO_ROOT } from './fixtures/cdk-apps.ts';
import { waitFor } from '#testing/wait.ts';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SecretsManagerSigningKeys } from '#core/signing-keys.ts';
import { signatureAttributes, type SigningKey } from '#core/wire';
import { ensureSigningKeySecret } from '#local/signing-key.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
type Handler = (event: SQSEvent, context: Context) => Promise<SQSBatchResponse>;

const REGION = 'us-east-1';
let server: LocalPostgres | undefined;
let endpoint: Endpoint | undefined;
let sqs: SQSClient | undefined;
let publisher: ChildProcess | undefined;
let fanout: Fanout;
let functionEnv: Record<string, string>;
let bundlePath: string;
let signingKeySecret: string;
let signingKey: SigningKey;
let handler: Handler;
/** The messages the publisher published, once received. */
let published: Message[] = [];
const stdout: string[] = [];
const originalWrite = process.stdout.write.bind(process.stdout);
const SOURCE_ID = '6f1c2a0e-5b7d-4c1e-9a3f-0c2d4e6f8a10';

beforeAll(async () => {
  // The stack's own bundle of the real handler, and the environment it gives the function.
  const { app, stack } = buildStack({
    replicas: [{ name: 'eu', secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pgfanout/eu-AbCdEf', sources: [SOURCE_ID] }],
    applierEntry: join(REPO_ROOT, ENTRY_POINTS.applierHandler) });
  const assembly = app.synth();
  const nested = stack.pgfanout.replicaStacks.get('eu');
  const template = JSON.parse(readFileSync(join(assembly.directory, nested?.templateFile as string), 'utf8')) as Json;
  const fn = Object.values(template.Resources as Json).find((r) => r.Type === 'AWS::Lambda::Function');
  functionEnv = fn.Properties.Environment.Variables as Record<string, string>;
  bundlePath = join(assembly.directory, `asset.${String(fn.Properties.Code.S3Key).replace(/\.zip$/, '')}`, 'index.mjs');

  server = await LocalPostgres.start({ major: 18 });
  await withDb('postgres', async (c) => {
    await c.query('CREATE DATABASE source');
    await c.query('CREATE DATABASE replica');
  });
  const table = 'CREATE TABLE public.orders (id bigint PRIMARY KEY, note text, total numeric(12,2))';
  await withDb('source', async (c) => {
    await installSource(c);
    // The source id the stack's replica follows (an operator reads it from pgfanout.source_id()).
    await c.query('UPDATE pgfanout.source_info SET source_id = $1', [SOURCE_ID]);
    await c.query(table);
    await c.query('SELECT pgfanout.add_table($1::regclass)', ['public.orders']);
  });
  await withDb('replica', async (c) => {
    await installReplica(c);
    await c.query(table);
  });

  endpoint = await startEndpoint({ port: 0 });
  const clients = awsClients({ endpoint: endpoint.url, region: REGION });
  sqs = clients.sqs;
  fanout = await createFanout(clients.sns, clients.sqs, { prefix: 'pgfanout-bundle', replicas: ['eu'] });
  clients.sns.destroy();
  // The stack names its generated signing key secret; locally a secret on the endpoint stands in for it.
  expect(functionEnv[APPLIER_ENV.SIGNING_KEY_SECRET]).toBeDefined();
  const secretsManager = new SecretsManagerClient({ endpoint: endpoint.url, region: REGION, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  signingKeySecret = await ensureSigningKeySecret(secretsManager, 'pgfanout-bundle-signing-key');
  signingKey = await new SecretsManagerSigningKeys(secretsManager, signingKeySecret).current();
  secretsManager.destroy();

  // Locally the replica is reached by URL instead of the Secrets Manager secret; everything else is the stack's.
  const { [APPLIER_ENV.REPLICA_SECRET_ARN]: _secret, ...rest } = functionEnv;
  Object.assign(process.env, rest, {
    [APPLIER_ENV.REPLICA_URL]: server.url('replica'),
    [APPLIER_ENV.SIGNING_KEY_SECRET]: signingKeySecret,
    AWS_ENDPOINT_URL: endpoint.url,
    AWS_REGION: REGION,
    AWS_ACCESS_KEY_ID: 'test',
    AWS_SECRET_ACCESS_KEY: 'test',
    AWS_LAMBDA_FUNCTION_NAME: 'pgfanout-applier-eu',
  });
  delete process.env[APPLIER_ENV.REPLICA_SECRET_ARN];
  // The test runner quiets Powertools metrics for every test; the deployed function emits them.
  process.env.POWERTOOLS_METRICS_DISABLED = 'false';
  process.stdout.write = ((chunk: string | Uint8Array, ...args: unknown[]) => {
    stdout.push(String(chunk));
    return (originalWrite as (...a: unknown[]) => boolean)(chunk, ...args);
  }) as typeof process.stdout.write;
  handler = ((await import(pathToFileURL(bundlePath).href)) as { handler: Handler }).handler;
}, 300_000);

afterAll(async () => {
  process.stdout.write = originalWrite;
  if (publisher && publisher.exitCode === null) {
    const exited = new Promise((resolve) => publisher?.once('exit', resolve));
    publisher.kill('SIGTERM');
    await exited;
  }
  await (handler as unknown as { applier?: { close(): Promise<void> } } | undefined)?.applier?.close();
  sqs?.destroy();
  await endpoint?.close();
  await server?.stop();
});

describe('the applier bundle built by the stack', () => {
  it('is one ESM file exporting the handler', () => {
    expect(bundlePath.endsWith('index.mjs')).toBe(true);
    expect(typeof handler).toBe('function');
  });

  it('applies a published change handed to it as an SQS event, and reports no failure', async () => {
    publisher = spawn(process.execPath, [join(REPO_ROOT, ENTRY_POINTS.publisherMain)], {
      env: {
        PATH: process.env.PATH,
        [PUBLISHER_ENV.SOURCE_URL]: (server as LocalPostgres).url('source'),
        [PUBLISHER_ENV.TOPIC_ARN]: fanout.topicArn,
        [PUBLISHER_ENV.SIGNING_KEY_SECRET]: signingKeySecret,
        [PUBLISHER_ENV.HEALTH_PORT]: '0',
        [PUBLISHER_ENV.TICK_MS]: '200',
        [PUBLISHER_ENV.LOG_LEVEL]: 'WARN',
        AWS_ENDPOINT_URL: (endpoint as Endpoint).url,
        AWS_REGION: REGION,
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        POWERTOOLS_METRICS_DISABLED: 'true',
      },
      stdio: 'ignore',
    });
    await withDb('source', (c) => c.query("INSERT INTO public.orders VALUES (1, 'bundled', 12.30), (2, 'twice', 0.10)"));

    const queue = fanout.replicas[0] as Fanout['replicas'][number];
    const messages = await waitFor<Message[]>('the published change in the queue', async () => {
      const out = await (sqs as SQSClient).send(
        new ReceiveMessageCommand({ QueueUrl: queue.queueUrl, WaitTimeSeconds: 1, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ['All'], MessageAttributeNames: ['All'] }),
      );
      return out.Messages?.length ? out.Messages : undefined;
    });
    published = messages;
    const event: SQSEvent = { Records: messages.map((m) => toRecord(m, { queueArn: queue.queueArn, region: REGION })) };
    const context = invocationContext({ functionName: 'pgfanout-applier-eu', region: REGION, accountId: '123456789012', memoryLimitInMB: 512 }, Date.now() + 60_000);

    const response = await handler(event, context);

    expect(response).toEqual({ batchItemFailures: [] });
    const rows = await withDb('replica', (c) => c.query<{ id: string; note: string; total: string }>('SELECT id, note, total::text FROM public.orders ORDER BY id'));
    expect(rows.rows).toEqual([
      { id: '1', note: 'bundled', total: '12.30' },
      { id: '2', note: 'twice', total: '0.10' },
    ]);
  });

  it('skips a redelivered message and reports a malformed one (signed) after it as a batch item failure', async () => {
    expect(published.length).toBeGreaterThan(0);
    const queue = fanout.replicas[0] as Fanout['replicas'][number];
    const source = { queueArn: queue.queueArn, region: REGION };
    const redelivered = published.map((m) => toRecord(m, source));
    const malformed = toRecord(
      {
        MessageId: '00000000-0000-4000-8000-000000000001',
        ReceiptHandle: 'not-a-real-handle',
        Body: '{"not":"a pgfanout envelope"}',
        MessageAttributes: signatureAttributes('{"not":"a pgfanout envelope"}', signingKey),
        Attributes: { ApproximateReceiveCount: '1', SentTimestamp: String(Date.now()), MessageGroupId: 'g', MessageDeduplicationId: 'd', SequenceNumber: '1' },
      },
      source,
    );
    const context = invocationContext({ functionName: 'pgfanout-applier-eu', region: REGION, accountId: '123456789012', memoryLimitInMB: 512 }, Date.now() + 60_000);

    const response = await handler({ Records: [...redelivered, malformed] }, context);

    expect(response.batchItemFailures).toEqual([{ itemIdentifier: malformed.messageId }]);
    const count = await withDb('replica', (c) => c.query<{ n: string }>('SELECT count(*) AS n FROM public.orders'));
    expect(count.rows[0]?.n).toBe('2');
  });

  it('emits its metrics with exactly the dimensions the dashboard and alarms read', () => {
    const emf = stdout
      .flatMap((chunk) => chunk.split('\n'))
      .filter((line) => line.startsWith('{') && line.includes('"_aws"'))
      .map((line) => JSON.parse(line) as Json);
    expect(emf.length).toBeGreaterThan(0);
    const expected = Object.keys(applierDimensions('eu', 'pgfanout')).sort();
    for (const entry of emf) {
      const directive = entry._aws.CloudWatchMetrics[0] as Json;
      expect(directive.Namespace).toBe(METRIC_NAMESPACE);
      for (const set of directive.Dimensions as string[][]) expect([...set].sort()).toEqual(expected);
      for (const [name, value] of Object.entries(applierDimensions('eu', 'pgfanout'))) expect(entry[name]).toBe(value);
    }
  });
});

async function withDb<T>(database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: (server as LocalPostgres).url(database) });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
