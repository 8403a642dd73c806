/**
 * The `pgfanout` command line against a real PostgreSQL server: help, install, add-table,
 * status, and the errors a user meets first (unreachable server, wrong password, missing
 * table, table already added, unknown command, bad arguments).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { startEndpoint } from '#local/endpoint/index.ts';
import { LocalPostgres, freePort } from '#local/postgres.ts';
import { runCli, runCliWith } from '#testing/cli.ts';

let server: LocalPostgres;

const cli = runCli;

beforeAll(async () => {
  server = await LocalPostgres.start();
  const c = new pg.Client(server.url());
  await c.connect();
  await c.query(`CREATE TABLE public.orders (id int PRIMARY KEY, note text);
                 CREATE SCHEMA "Odd Schema"; CREATE TABLE "Odd Schema"."Mixed Case" (id int PRIMARY KEY)`);
  await c.end();
});

afterAll(async () => {
  await server?.stop();
});

describe('pgfanout CLI', () => {
  it('prints help for the program and for every command', async () => {
    const commands = ['local', 'install', 'add-table', 'status', 'verify', 'publisher'];
    const [top, ...helps] = await Promise.all([cli('--help'), ...commands.map((command) => cli(command, '--help'))]);
    expect(top?.code).toBe(0);
    for (const [i, command] of commands.entries()) {
      expect(top?.out).toContain(command);
      expect(helps[i]?.code, command).toBe(0);
      expect(helps[i]?.out, command).toContain(`pgfanout ${command}`);
    }
  });

  it('refuses an unknown command and bad arguments with exit code 2', async () => {
    const [unknown, bad, both, replica] = await Promise.all([
      cli('frobnicate'),
      cli('install', '--sauce', 'x'),
      cli('install', '--source', server.url(), '--replica', server.url()),
      cli('status', '--source', server.url(), '--replica', 'Bad_Name=postgres://x'),
    ]);
    expect(unknown.err).toContain('unknown command "frobnicate"');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("Unknown option '--sauce'");
    expect(both.code).toBe(2);
    expect(both.err).toContain('exactly one of --source URL and --replica URL');
    expect(replica.code).toBe(2);
    expect(replica.err).toContain('replica name "Bad_Name"');
  });

  it('names an unreachable server and a wrong password, never printing the password', async () => {
    const port = await freePort();
    const unreachable = await cli('install', '--source', `postgres://u:secret@127.0.0.1:${port}/postgres`);
    expect(unreachable.code).toBe(1);
    expect(unreachable.err).toContain('connection refused');
    expect(unreachable.err).not.toContain('secret');
    const wrong = server.url().replace(/:([^:@/]+)@/, ':not-the-password@');
    const denied = await cli('install', '--source', wrong);
    expect(denied.code).toBe(1);
    expect(denied.err).toContain('password authentication failed');
    expect(denied.err).not.toContain('not-the-password');
  });

  it('installs, adds tables (quoted names too), refuses a missing table and a table added twice', async () => {
    expect((await cli('add-table', '--source', server.url(), 'public.orders')).err).toContain('pgfanout is not installed on the source');
    const installed = await cli('install', '--source', server.url());
    expect(installed.code, installed.err).toBe(0);
    expect((await cli('install', '--source', server.url())).code).toBe(0);
    const added = await cli('add-table', '--source', server.url(), 'orders', '"Odd Schema"."Mixed Case"');
    expect(added.code, added.err).toBe(0);
    expect(added.out).toContain('capturing public.orders');
    expect(added.out).toContain('capturing Odd Schema.Mixed Case');
    const missing = await cli('add-table', '--source', server.url(), 'public.nope');
    expect(missing.code).toBe(1);
    expect(missing.err).toContain('table public.nope does not exist on the source');
    const twice = await cli('add-table', '--source', server.url(), 'public.orders');
    expect(twice.code).toBe(1);
    expect(twice.err).toMatch(/orders/);
    expect(twice.err).toMatch(/already/);
  });

  it('reports status as text and as JSON', async () => {
    await cli('install', '--source', server.url());
    const text = await cli('status', '--source', server.url());
    expect(text.code, text.err).toBe(0);
    expect(text.out).toMatch(/^source [0-9a-f-]{36}: last batch/);
    const json = await cli('status', '--source', server.url(), '--json');
    expect(JSON.parse(json.out).source.sourceId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('asks for a password the URL lacks, and finds it in PGPASSWORD or the password file as libpq tools do', async () => {
    const admin = new pg.Client(server.url());
    await admin.connect();
    await admin.query("CREATE ROLE reader LOGIN PASSWORD 'reader-secret'");
    await admin.end();
    const url = `postgres://reader@127.0.0.1:${server.port}/postgres`;
    const dir = await mkdtemp(join(tmpdir(), 'pgfanout-pgpass-'));
    try {
      const noPassFile = { PGPASSWORD: undefined, PGPASSFILE: join(dir, 'none') };
      const none = await runCliWith({ env: noPassFile }, 'status', '--source', url);
      expect(none.code).toBe(1);
      expect(none.err).toContain('the server asks for a password for user "reader" and none was given');
      expect(none.err).toContain('PGPASSWORD');
      expect(none.err).not.toContain('SASL');

      const file = join(dir, 'pgpass');
      await writeFile(file, `# host:port:db:user:password\n127.0.0.1:${server.port}:*:reader:reader-secret\n`, { mode: 0o644 });
      await chmod(file, 0o644);
      const [fromEnv, open] = await Promise.all([
        runCliWith({ env: { ...noPassFile, PGPASSWORD: 'reader-secret' } }, 'install', '--source', url),
        runCliWith({ env: { ...noPassFile, PGPASSFILE: file } }, 'install', '--source', url),
      ]);
      // The role may not install pgfanout: getting that far means the password was accepted.
      expect(fromEnv.err).not.toContain('password');
      expect(open.err).toContain(`${file} is ignored because group or others may read it`);
      await chmod(file, 0o600);
      const fromFile = await runCliWith({ env: { ...noPassFile, PGPASSFILE: file } }, 'install', '--source', url);
      expect(fromFile.err).not.toContain('password');
      expect(fromFile.err).toContain('permission denied');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('tells a missing schema from pgfanout not being installed, and status names what is broken with exit code 1', async () => {
    const admin = new pg.Client(server.url());
    await admin.connect();
    await admin.query('CREATE DATABASE bare');
    await admin.end();
    const bare = server.url('bare');
    const [notInstalled, noStatus] = await Promise.all([
      cli('add-table', '--source', bare, 'public.orders'),
      cli('status', '--source', bare),
    ]);
    expect(notInstalled.err).toContain('pgfanout is not installed on the source');
    expect(noStatus.code).toBe(1);
    expect(noStatus.err).toContain('pgfanout is not installed there: run pgfanout install --source URL');
    expect(noStatus.err).not.toContain('function');

    await cli('install', '--source', server.url());
    const schema = await cli('add-table', '--source', server.url(), 'nosuchschema.t');
    expect(schema.code).toBe(1);
    expect(schema.err).toContain('schema nosuchschema does not exist on the source');
    expect(schema.err).not.toContain('not installed');

    const aws = await runCliWith({ env: { AWS_ENDPOINT_URL: undefined } }, 'status', '--source', server.url(), '--replica', `a=${bare}`);
    expect(aws.code).toBe(2);
    expect(aws.err).toContain('--prefix P is required against AWS');

    const endpoint = await startEndpoint({ port: 0 });
    try {
      const broken = await runCliWith({ env: { AWS_ENDPOINT_URL: endpoint.url } }, 'status', '--source', server.url(), '--replica', `a=${bare}`);
      expect(broken.code).toBe(1);
      expect(broken.out).toContain('replica a: error: pgfanout is not installed on replica a');
      expect(broken.err).toContain('run pgfanout install --replica URL');
      expect(broken.err).toContain(`queue unknown: no queue pgfanout-local-a.fifo at ${endpoint.url}`);
      expect(broken.out).not.toContain('relation');
    } finally {
      await endpoint.close();
    }
  });
});
