/**
 * `pgfanout local` as users run it (`node bin/pgfanout.ts local …` in its own process): Ctrl-C
 * at start-up and during a pgbench run stops everything and removes what the run started
 * (servers, data folders), quietly, with exit code 130.
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startCliStoppedAfterEach } from '#testing/cli.ts';
import { findPgbench } from './workload.ts';

const folders: string[] = [];
afterAll(async () => {
  for (const f of folders) await rm(f, { recursive: true, force: true });
});

/** A temp folder of its own for one run: its servers' data folders and its log land there. */
async function runFolder(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgfanout-local-test-'));
  await chmod(dir, 0o755);
  folders.push(dir);
  return dir;
}

/** PostgreSQL processes whose command line names a folder under `dir`. */
function serversUnder(dir: string): string[] {
  const ps = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return ps.split('\n').filter((line) => line.includes(dir) && /postgres|pg_ctl|initdb/.test(line));
}

async function dataFolders(dir: string): Promise<string[]> {
  const base = join(dir, 'pgfanout-pg');
  return existsSync(base) ? readdir(base) : [];
}

async function waitUntil(check: () => Promise<boolean>): Promise<void> {
  while (!(await check())) await new Promise((resolve) => setTimeout(resolve, 50));
}

/** Runs still going when a test ends (it failed or timed out) are stopped as a user would. */
const startCli = startCliStoppedAfterEach();

describe('pgfanout local and Ctrl-C', () => {
  it('Ctrl-C during start-up stops the servers already started and removes every data folder', async () => {
    const dir = await runFolder();
    const run = startCli(['local', '--workload', 'none'], { env: { TMPDIR: dir } });
    // Interrupt once the first data folder exists: servers are being created.
    await waitUntil(async () => (await dataFolders(dir)).length > 0 || run.child.exitCode !== null);
    run.child.kill('SIGINT');
    const result = await run.done;
    expect(result.code, result.out + result.err).toBe(130);
    expect(result.err).not.toMatch(/failed|Error/);
    expect(await dataFolders(dir)).toEqual([]);
    expect(serversUnder(dir)).toEqual([]);
  });

  it.skipIf(findPgbench() === undefined)('Ctrl-C during a pgbench run stops pgbench quietly, then everything, with exit code 130', async () => {
    const dir = await runFolder();
    const run = startCli(['local', '--workload', 'pgbench'], { env: { TMPDIR: dir } });
    await run.waitFor(/replica b +applied \d+\/\d+/);
    expect(await dataFolders(dir)).toHaveLength(3);
    run.child.kill('SIGINT');
    const result = await run.done;
    expect(result.code, result.out + result.err).toBe(130);
    expect(result.err).not.toContain('workload failed');
    expect(result.err).not.toContain('pgbench');
    expect(result.out).toContain('stopped: local servers and their data removed');
    expect(await dataFolders(dir)).toEqual([]);
    expect(serversUnder(dir)).toEqual([]);
  }, 300_000);
});
