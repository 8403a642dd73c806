/**
 * Installs and upgrades pgfanout's SQL on a source (`sql/source/`) or a replica
 * (`sql/replica/`) database.
 *
 * A folder holds versioned scripts named like PostgreSQL extension scripts:
 * `<prefix>--<version>.sql` installs a version from nothing, and
 * `<prefix>--<from>--<to>.sql` upgrades one version to the next. An optional `roles.sql`
 * (roles and grants, idempotent, always for the newest version) runs after them when they
 * lead to the newest version (an install or upgrade stopped at an older `targetVersion` gets
 * the grants of its own scripts only).
 *
 * `installSource` / `installReplica` run, in one transaction under an advisory lock (so two
 * installers at once are safe): nothing but the grants file when the database is at the
 * newest version already; the upgrade chain when it is at an older one; an install script
 * (plus upgrades) when pgfanout is absent. The installed version is what the component's
 * version function (`pgfanout.version()`, `pgfanout.replica_version()`) returns.
 *
 * The planning is a pure function (`planInstall`) over the script names; only
 * `installComponent` talks to the database.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { quoteIdent } from '#core/pg/sql.ts';
import { classifyDatabaseError, InvalidArgumentError } from '#core/wire/errors.ts';

/** A set of versioned SQL scripts and how to tell which version a database has. */
export interface SqlComponent {
  /** Name used in messages. */
  readonly name: string;
  /** Folder holding the scripts. */
  readonly dir: string;
  /** Script name prefix: `<prefix>--1.0.0.sql`, `<prefix>--1.0.0--1.1.0.sql`. */
  readonly prefix: string;
  /** Function in schema `pgfanout`, without arguments, returning the installed version as text. */
  readonly versionFunction: string;
  /** Roles and grants file in `dir`, run after every install or upgrade when it exists. */
  readonly grantsFile: string;
}

const SQL_ROOT = fileURLToPath(new URL('../../sql/', import.meta.url));

/** The source side: capture triggers, event log, batch protocol. */
export const SOURCE_SQL: SqlComponent = {
  name: 'source',
  dir: join(SQL_ROOT, 'source'),
  prefix: 'pgfanout',
  versionFunction: 'version',
  grantsFile: 'roles.sql',
};

/** The replica side: applied positions and staging. */
export const REPLICA_SQL: SqlComponent = {
  name: 'replica',
  dir: join(SQL_ROOT, 'replica'),
  prefix: 'pgfanout_replica',
  versionFunction: 'replica_version',
  grantsFile: 'roles.sql',
};

/**
 * The transaction-scoped advisory lock every installer holds (two-key form, the same class
 * as the publisher's lock, another object). One lock for both sides, because both create
 * the schema `pgfanout`.
 */
const INSTALL_LOCK = { classId: 0x70676661 /* 'pgfa' */, objectId: 2 } as const;

/** Options of {@link installSource} and {@link installReplica}. */
export interface InstallOptions {
  /** Folder to read the scripts from. @default the component's folder under `sql/` */
  readonly dir?: string;
  /** Version to install or upgrade to. @default the newest version the scripts reach */
  readonly targetVersion?: string;
  /** Runs in the install's transaction after the scripts and grants, before the version check. */
  readonly beforeCommit?: (client: pg.ClientBase) => Promise<void>;
}

/** The installer could not plan or verify an install (bad script names, no upgrade path, a downgrade). */
export class InstallError extends InvalidArgumentError {}

/** What an install did. */
export class InstallResult {
  /** The component's name (`source`, `replica`). */
  readonly component: string;
  /** The version found before, or null when the component was not installed. */
  readonly from: string | null;
  /** The version installed now. */
  readonly to: string;
  /** The version scripts run, in order (the grants file is not listed). */
  readonly scripts: readonly string[];

  constructor(component: string, from: string | null, to: string, scripts: readonly string[]) {
    this.component = component;
    this.from = from;
    this.to = to;
    this.scripts = scripts;
  }

  /** E.g. `1.1.0, upgraded from 1.0.0`. */
  toString(): string {
    if (this.from === null) return `${this.to}, new install`;
    if (this.from === this.to) return `${this.to}, already installed`;
    return `${this.to}, upgraded from ${this.from}`;
  }
}

/** A script recognised by its name. */
export interface ScriptFile {
  readonly file: string;
  /** The version it installs, or upgrades from. */
  readonly from: string | null;
  readonly to: string;
}

/** The scripts to run, in order, and the version they lead to. */
export interface InstallPlan {
  readonly to: string;
  readonly files: readonly string[];
}

const VERSION = String.raw`\d+\.\d+\.\d+`;

/** Parses `<prefix>--<v>.sql` or `<prefix>--<v>--<w>.sql`; undefined for any other name. */
export function parseScriptName(prefix: string, file: string): ScriptFile | undefined {
  if (!file.startsWith(`${prefix}--`) || !file.endsWith('.sql')) return undefined;
  const middle = file.slice(prefix.length + 2, -'.sql'.length);
  const match = new RegExp(`^(${VERSION})(?:--(${VERSION}))?$`).exec(middle);
  if (!match) return undefined;
  const [, first, second] = match as unknown as [string, string, string | undefined];
  return second === undefined ? { file, from: null, to: first } : { file, from: first, to: second };
}

/** Compares dotted numeric versions: negative when a < b, 0 when equal, positive when a > b. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Chooses the scripts that take a database from `installed` (null: not installed) to
 * `target` (default: the newest version any script reaches). Upgrade chains are the
 * shortest; among install scripts the newest one with a chain to the target wins.
 */
export function planInstall(component: string, scripts: readonly ScriptFile[], installed: string | null, target?: string): InstallPlan {
  const installs = scripts.filter((s) => s.from === null);
  const upgrades = scripts.filter((s) => s.from !== null);
  for (const u of upgrades) {
    if (compareVersions(u.from as string, u.to) >= 0) {
      throw new InstallError(`${component}: upgrade script ${u.file} goes from ${u.from} to ${u.to}; an upgrade must go to a newer version`);
    }
  }
  const reachable = scripts.map((s) => s.to).sort(compareVersions);
  const newest = reachable.at(-1);
  if (newest === undefined) {
    throw new InstallError(`${component}: no install or upgrade scripts found (expected names like <prefix>--1.0.0.sql)`);
  }
  const to = target ?? newest;
  if (!reachable.includes(to)) {
    throw new InstallError(`${component}: no script installs or upgrades to version ${to}; versions available: ${[...new Set(reachable)].join(', ')}`);
  }
  if (installed !== null) {
    const order = compareVersions(installed, to);
    if (order === 0) return { to, files: [] };
    if (order > 0) {
      throw new InstallError(`${component}: the database has version ${installed}, newer than ${to}; pgfanout does not downgrade`);
    }
    const chain = upgradeChain(upgrades, installed, to);
    if (!chain) {
      throw new InstallError(
        `${component}: no upgrade path from the installed version ${installed} to ${to}; upgrade scripts available: ${
          upgrades.map((u) => u.file).join(', ') || 'none'
        }`,
      );
    }
    return { to, files: chain };
  }
  const bases = installs.filter((s) => compareVersions(s.to, to) <= 0).sort((a, b) => compareVersions(b.to, a.to));
  for (const base of bases) {
    const chain = upgradeChain(upgrades, base.to, to);
    if (chain) return { to, files: [base.file, ...chain] };
  }
  throw new InstallError(
    `${component}: no install script leads to version ${to}; install scripts available: ${installs.map((s) => s.file).join(', ') || 'none'}`,
  );
}

/** The shortest chain of upgrade scripts from `from` to `to` (breadth first), or undefined. */
function upgradeChain(upgrades: readonly ScriptFile[], from: string, to: string): string[] | undefined {
  const previous = new Map<string, ScriptFile | null>([[from, null]]);
  let frontier = [from];
  while (frontier.length > 0 && !previous.has(to)) {
    const next: string[] = [];
    for (const version of frontier) {
      const steps = upgrades
        .filter((u) => u.from === version && compareVersions(u.to, to) <= 0)
        .sort((a, b) => compareVersions(b.to, a.to));
      for (const step of steps) {
        if (previous.has(step.to)) continue;
        previous.set(step.to, step);
        next.push(step.to);
      }
    }
    frontier = next;
  }
  if (!previous.has(to)) return undefined;
  const chain: string[] = [];
  for (let step = previous.get(to); step; step = previous.get(step.from as string)) chain.unshift(step.file);
  return chain;
}

/** How a source captures its changes (`pgfanout.capture_mode()`). */
export type CaptureMode = 'trigger' | 'wal';
export const CAPTURE_MODES: readonly CaptureMode[] = ['trigger', 'wal'];

/** Options of {@link installSource}. */
export interface SourceInstallOptions extends InstallOptions {
  /**
   * The capture mode to record (`pgfanout.set_capture_mode`), in the install's transaction; for
   * `wal`, the logical replication slot is created right after it commits (PostgreSQL creates a
   * slot only in a transaction that has not written). Only before anything is captured.
   * @default the mode already recorded (`trigger` on a new install)
   */
  readonly capture?: CaptureMode;
}

/** Installs or upgrades the source side (`sql/source/`), with the capture mode asked for. */
export async function installSource(client: pg.ClientBase, options: SourceInstallOptions = {}): Promise<InstallResult> {
  const { capture, ...rest } = options;
  if (capture !== undefined && !CAPTURE_MODES.includes(capture)) {
    throw new InstallError(`capture mode ${JSON.stringify(capture)} is not allowed; expected one of ${CAPTURE_MODES.join(', ')}`);
  }
  const what = 'installing the pgfanout source';
  const result = await installComponent(client, SOURCE_SQL, {
    ...rest,
    ...(capture ? { beforeCommit: (c: pg.ClientBase) => run(c, what, 'SELECT pgfanout.set_capture_mode($1)', [capture]).then(() => undefined) } : {}),
  });
  const mode = await run<{ mode: string | null }>(
    client,
    what,
    `SELECT CASE WHEN pg_catalog.to_regprocedure('pgfanout.capture_mode()') IS NULL THEN 'trigger' END AS mode`,
  );
  if (mode.rows[0]?.mode === null && (await run<{ mode: string }>(client, what, 'SELECT pgfanout.capture_mode() AS mode')).rows[0]?.mode === 'wal') {
    await run(client, 'creating the logical replication slot of the pgfanout source', 'SELECT pgfanout.wal_create_slot()');
  }
  return result;
}

/** Installs or upgrades the replica side (`sql/replica/`). */
export function installReplica(client: pg.ClientBase, options: InstallOptions = {}): Promise<InstallResult> {
  return installComponent(client, REPLICA_SQL, options);
}

/**
 * Installs or upgrades `component` in one transaction under {@link INSTALL_LOCK}. The
 * client must not be inside a transaction. Database errors come back classified
 * (`TransientDatabaseError` / `DatabaseError`) with the script and line that failed.
 */
export async function installComponent(client: pg.ClientBase, component: SqlComponent, options: InstallOptions = {}): Promise<InstallResult> {
  const dir = options.dir ?? component.dir;
  const { scripts, hasGrants } = await listScripts(component, dir);
  const what = `installing the pgfanout ${component.name}`;
  try {
    await client.query('BEGIN');
  } catch (err) {
    throw classifyDatabaseError(err, what);
  }
  try {
    await run(client, what, 'SELECT pg_catalog.pg_advisory_xact_lock($1, $2)', [INSTALL_LOCK.classId, INSTALL_LOCK.objectId]);
    const before = await installedVersion(client, component, what);
    const plan = planInstall(component.name, scripts, before, options.targetVersion);
    for (const file of plan.files) await runScript(client, component, dir, file);
    const newest = scripts.map((s) => s.to).sort(compareVersions).at(-1);
    if (hasGrants && plan.to === newest) await runScript(client, component, dir, component.grantsFile);
    if (options.beforeCommit) await options.beforeCommit(client);
    const after = await installedVersion(client, component, what);
    if (after !== plan.to) {
      throw new InstallError(
        `${component.name}: after running ${plan.files.join(', ') || 'no scripts'}, pgfanout.${component.versionFunction}() returns ${
          after ?? 'nothing'
        }; expected ${plan.to}`,
      );
    }
    await run(client, what, 'COMMIT');
    return new InstallResult(component.name, before, plan.to, plan.files);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw classifyDatabaseError(err, what);
  }
}

async function listScripts(component: SqlComponent, dir: string): Promise<{ scripts: ScriptFile[]; hasGrants: boolean }> {
  let files: string[];
  try {
    files = await readdir(dir);
  } catch (cause) {
    throw new InstallError(`${component.name}: cannot read the scripts folder ${dir}: ${(cause as Error).message}`, cause);
  }
  const scripts: ScriptFile[] = [];
  for (const file of files.sort()) {
    const parsed = parseScriptName(component.prefix, file);
    if (parsed) scripts.push(parsed);
  }
  return { scripts, hasGrants: files.includes(component.grantsFile) };
}

/** The version the database has, or null when the component's version function does not exist. */
async function installedVersion(client: pg.ClientBase, component: SqlComponent, what: string): Promise<string | null> {
  // (to_regprocedure raises rather than returning NULL when the schema is missing before
  // PostgreSQL 16.) Text results only: the caller's client may parse types its own way.
  const { rows } = await run<{ present: string }>(
    client,
    what,
    `SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
                               WHERE n.nspname = 'pgfanout' AND p.proname = $1 AND p.pronargs = 0)
                 THEN 'yes' ELSE 'no' END AS present`,
    [component.versionFunction],
  );
  if (rows[0]?.present !== 'yes') return null;
  const fn = `pgfanout.${quoteIdent(component.versionFunction)}`;
  const version = await run<{ v: string | null }>(client, what, `SELECT ${fn}() AS v`);
  return version.rows[0]?.v ?? null;
}

async function runScript(client: pg.ClientBase, component: SqlComponent, dir: string, file: string): Promise<void> {
  const path = join(dir, file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new InstallError(`${component.name}: cannot read ${path}: ${(cause as Error).message}`, cause);
  }
  try {
    await client.query(text);
  } catch (err) {
    const position = Number((err as { position?: string }).position);
    const line = Number.isInteger(position) && position > 0 ? `, line ${text.slice(0, position - 1).split('\n').length}` : '';
    throw classifyDatabaseError(err, `installing the pgfanout ${component.name}: ${file}${line}`);
  }
}

async function run<R extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.ClientBase,
  what: string,
  sql: string,
  values?: unknown[],
): Promise<pg.QueryResult<R>> {
  try {
    return await client.query<R>(sql, values);
  } catch (err) {
    throw classifyDatabaseError(err, what);
  }
}
