/**
 * The `pgfanout` command line against a real PostgreSQL server: help, install, add-table,
 * status, and the errors a user meets first (unreachable server, wrong password, missing
 * table, table already added, unknown command, bad arguments).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pg from 'pg';
import { LocalPostgres, freePort } from '#local/postgres.ts';
import { runCli } from '#testing/cli.ts';

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
    const top = await cli('--help');
    expect(top.code).toBe(0);
    for (const command of ['local', 'install', 'add-table', 'status', 'verify', 'publisher']) {
      expect(top.out).toContain(command);
      const help = await cli(command, '--help');
      expect(help.code, command).toBe(0);
      expect(help.out, command).toContain(`pgfanout ${command}`);
    }
  });

  it('refuses an unknown command and bad arguments with exit code 2', async () => {
    expect((await cli('frobnicate')).err).toContain('unknown command "frobnicate"');
    const bad = await cli('install', '--sauce', 'x');
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("Unknown option '--sauce'");
    const both = await cli('install', '--source', server.url(), '--replica', server.url());
    expect(both.code).toBe(2);
    expect(both.err).toContain('exactly one of --source URL and --replica URL');
    const replica = await cli('status', '--source', server.url(), '--replica', 'Bad_Name=postgres://x');
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
});
