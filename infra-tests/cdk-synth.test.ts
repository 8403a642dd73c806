/**
 * `cdk synth` of the ready-made app, as a user runs it, with no AWS credentials and no
 * network: no credentials file, no instance metadata, every HTTP(S) request sent to a
 * closed local port. The app bundles the real applier handler and names the real
 * publisher Dockerfile.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { APPLIER_SERVICE_NAME } from '../cdk/metrics.ts';
import { REPO_ROOT, secretArn, SOURCE_ID } from './fixtures/cdk-apps.ts';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const scratch = mkdtempSync(join(tmpdir(), 'pgfanout-synth-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** An environment with nothing that could reach AWS. */
function offlineEnv(): NodeJS.ProcessEnv {
  const closed = 'http://127.0.0.1:9';
  return {
    PATH: `${REPO_ROOT}/node_modules/.bin:${process.env.PATH ?? '/usr/bin:/bin'}`,
    HOME: scratch,
    AWS_CONFIG_FILE: join(scratch, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(scratch, 'no-aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
    HTTP_PROXY: closed,
    HTTPS_PROXY: closed,
    http_proxy: closed,
    https_proxy: closed,
    CDK_DISABLE_CLI_TELEMETRY: 'true',
  };
}

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly outdir: string;
}

function synth(context: Record<string, string>, name: string): Promise<Run> {
  const outdir = join(scratch, name);
  const args = ['synth', '--quiet', '--no-notices', '--no-version-reporting', '--output', outdir, ...Object.entries(context).flatMap(([k, v]) => ['--context', `${k}=${v}`])];
  return new Promise((resolve, reject) => {
    const child = spawn(join(REPO_ROOT, 'node_modules/.bin/cdk'), args, { cwd: REPO_ROOT, env: offlineEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, outdir }));
  });
}

const source = JSON.stringify({ secretArn: secretArn('pgfanout/source') });

describe('cdk synth, offline and without credentials', () => {
  it('synthesizes the app with a new VPC, bundling the real applier handler', async () => {
    const replicas = JSON.stringify([
      { name: 'eu', secretArn: secretArn('pgfanout/eu'), sources: [SOURCE_ID] },
      { name: 'us', secretName: 'pgfanout/us', sources: [SOURCE_ID], include: ['public.orders'] },
    ]);
    const run = await synth({ source, replicas, alarmEmail: 'ops@example.com' }, 'new-vpc');
    expect(run.code, run.stderr).toBe(0);
    const parent = JSON.parse(readFileSync(join(run.outdir, 'pgfanout.template.json'), 'utf8')) as Json;
    const types = Object.values(parent.Resources as Json).map((r) => r.Type as string);
    expect(types.filter((t) => t === 'AWS::CloudFormation::Stack')).toHaveLength(2);
    expect(types).toContain('AWS::ECS::Service');
    expect(parent.Parameters.AlarmEmail.Default).toBe('ops@example.com');

    const assets = JSON.parse(readFileSync(join(run.outdir, 'pgfanout.assets.json'), 'utf8')) as Json;
    const bundles = Object.values(assets.files as Json).filter((f) => f.source.packaging === 'zip' && String(f.displayName).includes('/Applier/'));
    expect(bundles).toHaveLength(1);
    const bundle = readFileSync(join(run.outdir, bundles[0].source.path as string, 'index.mjs'), 'utf8');
    // The real handler, not the tests' stand-in: its service name and Powertools' batch processing are in the (minified) bundle.
    expect(bundle.includes(`"${APPLIER_SERVICE_NAME}"`), 'the applier service name in the bundle').toBe(true);
    expect(bundle.includes('batchItemFailures'), 'partial batch responses in the bundle').toBe(true);
    const images = Object.values(assets.dockerImages as Json);
    expect(images.map((i) => i.source.dockerFile)).toEqual(['functions/publisher/Dockerfile']);

    // The cdk-nag plugin ran as part of synth and reported nothing.
    const report = JSON.parse(readFileSync(join(run.outdir, 'validation-report.json'), 'utf8')) as Json;
    expect(report.pluginReports).toEqual([]);
  });

  it('synthesizes into an existing VPC given by ids, with no lookup', async () => {
    const run = await synth(
      {
        source,
        replicas: JSON.stringify([{ name: 'eu', secretArn: secretArn('pgfanout/eu'), sources: [SOURCE_ID] }]),
        vpcId: 'vpc-0123456789abcdef0',
        subnetIds: 'subnet-0123456789abcdef0,subnet-0123456789abcdef1',
        stackName: 'pgfanout-prod',
      },
      'existing-vpc',
    );
    expect(run.code, run.stderr).toBe(0);
    const parent = JSON.parse(readFileSync(join(run.outdir, 'pgfanout-prod.template.json'), 'utf8')) as Json;
    expect(Object.values(parent.Resources as Json).some((r) => r.Type === 'AWS::EC2::VPC')).toBe(false);
    expect(existsSync(join(run.outdir, 'cdk.context.json'))).toBe(false);
    expect(existsSync(join(REPO_ROOT, 'cdk.context.json'))).toBe(false);
  });

  it('fails with every problem in the context listed at once', async () => {
    const replicas = JSON.stringify([{ name: 'eu', secretArn: secretArn('pgfanout/eu') }, { name: 'eu', sources: [SOURCE_ID] }, { name: 'Bad_Name', secretName: 'x', sources: [SOURCE_ID] }]);
    const run = await synth({ replicas, vpcId: 'vpc-0123456789abcdef0' }, 'invalid');
    expect(run.code).not.toBe(0);
    const output = run.stdout + run.stderr;
    expect(output).toContain('pgfanout configuration has 6 problems');
    expect(output).toContain('replicas[0] ("eu"): sources is required: the source ids this replica follows (SELECT pgfanout.source_id() on the source)');
    expect(output).toContain('context source is required');
    expect(output).toContain('context subnetIds is required with vpcId');
    expect(output).toContain('replicas[1] ("eu"): secretArn or secretName is required');
    expect(output).toContain('replicas[1]: name "eu" is already used by replicas[0] ("eu")');
    expect(output).toContain('replicas[2] ("Bad_Name"): name "Bad_Name" must be a lowercase letter');
  });
});
