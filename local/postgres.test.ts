/**
 * Local PostgreSQL servers for whoever runs them: as root the server runs as the `postgres` OS
 * user, and binaries under a folder that user cannot enter (a clone in root's mode-700 home) are
 * run from a copy it can reach; a failed start leaves nothing behind.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { binDir, LocalPostgres } from './postgres.ts';

const asRoot = userInfo().uid === 0;
const cleanup: string[] = [];
afterAll(async () => {
  for (const dir of cleanup) await rm(dir, { recursive: true, force: true });
});

describe('local PostgreSQL servers', () => {
  it.skipIf(!asRoot)('as root, starts from binaries below a mode-700 folder through a reusable copy the postgres user can reach', async () => {
    const installed = binDir(18) as string;
    // A home closed to other users, holding the binaries (as a clone in /root holds node_modules).
    const home = await mkdtemp(join(tmpdir(), 'pgfanout-home-'));
    cleanup.push(home);
    await chmod(home, 0o700);
    await mkdir(join(home, 'pkg'));
    await symlink(dirname(installed), join(home, 'pkg', 'native'));
    const closedBin = join(home, 'pkg', 'native', 'bin');
    const cache = await mkdtemp(join(tmpdir(), 'pgfanout-bincache-'));
    cleanup.push(cache);

    const first = await LocalPostgres.start({ binDir: closedBin, binCacheDir: cache });
    const second = await LocalPostgres.start({ binDir: closedBin, binCacheDir: cache });
    try {
      for (const server of [first, second]) {
        const client = new pg.Client(server.url());
        await client.connect();
        const { rows } = await client.query<{ v: string }>("SELECT current_setting('server_version') AS v");
        await client.end();
        expect(rows[0]?.v).toMatch(/^18\./);
      }
      // One copy, made once and reused; no half-made copy left beside it.
      expect(await readdir(cache)).toHaveLength(1);
    } finally {
      await Promise.all([first.stop(), second.stop()]);
    }
  });

  it.skipIf(!asRoot)('as root, says what to do when no copy the postgres user can reach can be made', async () => {
    const closed = await mkdtemp(join(tmpdir(), 'pgfanout-closed-'));
    cleanup.push(closed);
    await chmod(closed, 0o700);
    await mkdir(join(closed, 'pkg'));
    await symlink(dirname(binDir(18) as string), join(closed, 'pkg', 'native'));
    const base = await mkdtemp(join(tmpdir(), 'pgfanout-base-'));
    cleanup.push(base);
    await expect(
      LocalPostgres.start({ binDir: join(closed, 'pkg', 'native', 'bin'), binCacheDir: join(closed, 'cache'), baseDir: base }),
    ).rejects.toThrow(/"postgres" OS user.*set TMPDIR to a folder every user can enter/);
    expect(await readdir(base)).toEqual([]);
  });

  it('removes the data folder and the password file when the server does not start', async () => {
    const base = await mkdtemp(join(tmpdir(), 'pgfanout-base-'));
    cleanup.push(base);
    await chmod(base, 0o755);
    // A setting the server refuses: initdb succeeds, pg_ctl start fails.
    await expect(LocalPostgres.start({ baseDir: base, settings: { shared_buffers: 'lots' } })).rejects.toThrow(/pg_ctl start failed/);
    expect(await readdir(base)).toEqual([]);
    expect(existsSync(join(base, 'pwfile'))).toBe(false);
  });
});
