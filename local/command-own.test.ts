/**
 * `pgfanout local` with your own databases, run as users run it: it does only what was asked
 * (no demo schema, nothing installed), checks every replica at start and says what to run,
 * shows the database URLs with the password hidden and keeps logs out of the status lines,
 * and keeps the endpoint's state in the file it names, so what one run published and a
 * replica had not applied is applied by the next run.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, runCliWith, startCliStoppedAfterEach } from '#testing/cli.ts';
import { LocalPostgres } from './postgres.ts';

let server: LocalPostgres;
let dir: string;
const url = (db: string) => server.url(db);

async function sql(db: string, text: string): Promise<pg.QueryResult> {
  const c = new pg.Client(url(db));
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  server = await LocalPostgres.start();
  dir = await mkdtemp(join(tmpdir(), 'pgfanout-own-'));
  for (const db of ['src', 'ra', 'rb']) await sql('postgres', `CREATE DATABASE ${db}`);
});

afterAll(async () => {
  await server?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs still going when a test ends (it failed or timed out) are stopped as a user would. */
const startCli = startCliStoppedAfterEach();

describe('pgfanout local with your own databases', () => {
  it('refuses a source without pgfanout and changes nothing', async () => {
    const run = await runCli('local', '--source', url('src'), '--replica', `a=${url('ra')}`);
    expect(run.code).toBe(1);
    expect(run.err).toContain('pgfanout is not installed there: run pgfanout install --source URL');
    const { rows } = await sql('src', "SELECT to_regnamespace('demo') IS NULL AS none, to_regnamespace('pgfanout') IS NULL AS bare");
    expect(rows[0]).toEqual({ none: true, bare: true });
  });

  it('checks every replica at start and says what to run, without running a demo', async () => {
    // Installed side by side, as a user may: the first installs in a cluster create its roles at once.
    const installs = await Promise.all([runCli('install', '--source', url('src')), runCli('install', '--replica', url('ra')), runCli('install', '--replica', url('rb'))]);
    for (const install of installs) expect(install.code, install.out + install.err).toBe(0);
    await sql('src', "CREATE TABLE public.t (id int PRIMARY KEY, v text); INSERT INTO public.t VALUES (1, 'one'), (2, 'two')");
    await sql('ra', 'CREATE TABLE public.t (id int PRIMARY KEY, v text)');
    const run = await runCli('local', '--source', url('src'), '--replica', `a=${url('ra')}`, '--replica', `b=${url('rb')}`, '--tables', 'public.t');
    expect(run.code, run.out + run.err).toBe(1);
    expect(run.err).toContain('replica a: not bootstrapped');
    expect(run.err).toMatch(/run pgfanout bootstrap --source postgres:\/\/pgfanout_admin:\*\*\*\*@127\.0\.0\.1:\d+\/src --replica a=postgres:\/\/pgfanout_admin:\*\*\*\*@127\.0\.0\.1:\d+\/ra/);
    expect(run.err).toContain("replica b: the source's table(s) public.t do not exist there");
    expect(run.out + run.err).not.toContain('pgfanout-local-password');
    const { rows } = await sql('src', "SELECT to_regnamespace('demo') IS NULL AS none, (SELECT count(*)::int FROM pgfanout.show_tables()) AS captured");
    expect(rows[0]).toEqual({ none: true, captured: 1 });
  });

  it('keeps what one run published for the next run in the state file it names', async () => {
    const boot = await runCli('bootstrap', '--source', url('src'), '--replica', `a=${url('ra')}`);
    expect(boot.code, boot.err).toBe(0);
    const state = join(dir, 'endpoint.json');
    const logFile = join(dir, 'local.log');
    // Replica a cannot apply during the first run: its table refuses the new row.
    await sql('ra', 'ALTER TABLE public.t ADD CONSTRAINT not_yet CHECK (id <> 3)');
    await sql('src', "INSERT INTO public.t VALUES (3, 'three'); UPDATE public.t SET v = 'uno' WHERE id = 1");
    const first = startCli(['local', '--source', url('src'), '--replica', `a=${url('ra')}`, '--state', state, '--log', logFile]);
    await first.waitFor(/last error \d+ s ago: /);
    first.child.kill('SIGINT');
    const one = await first.done;
    expect(one.code, one.out + one.err).toBe(130);
    expect(one.out).toContain(`state kept in ${state} between runs`);
    expect(one.out).toContain(`${logFile} (publisher and appliers)`);
    expect(one.out).toMatch(/source +postgres:\/\/pgfanout_admin:\*\*\*\*@127\.0\.0\.1:\d+\/src/);
    expect(one.out).toContain('applied B/P');
    expect(one.out).not.toContain('pgfanout-local-password');
    // Applier and publisher logs go to the file, never between the status lines.
    expect(one.out).not.toMatch(/^\{/m);
    expect(one.out).not.toContain('No application metrics');
    expect(existsSync(state)).toBe(true);

    await sql('ra', 'ALTER TABLE public.t DROP CONSTRAINT not_yet');
    const second = await runCliWith({}, 'local', '--source', url('src'), '--replica', `a=${url('ra')}`, '--state', state, '--log', logFile, '--duration', '1', '--verify');
    expect(second.code, second.out + second.err).toBe(0);
    expect(second.out).toContain('replica a: 1 table(s), 3 row(s): identical');
  }, 300_000);
});
