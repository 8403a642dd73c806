import { readdirSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { quoteIdent } from '#core/pg/sql.ts';
import { DatabaseError, PgfanoutError } from '#core/wire/errors.ts';
import {
  compareVersions,
  installComponent,
  InstallError,
  installReplica,
  installSource,
  parseScriptName,
  planInstall,
  REPLICA_SQL,
  SOURCE_SQL,
  type ScriptFile,
} from './install.ts';
import { connect, sourceDatabase, withClient } from '#testing/source.ts';
import { describeEachMajor, missingMajor, TEST_MAJORS } from '#testing/servers.ts';
import { waitFor } from '#testing/wait.ts';

const scripts = (...names: string[]): ScriptFile[] => names.map((n) => parseScriptName('pgfanout', n) as ScriptFile);

describe('parseScriptName', () => {
  it('reads install and upgrade scripts and ignores everything else', () => {
    expect(parseScriptName('pgfanout', 'pgfanout--1.0.0.sql')).toEqual({ file: 'pgfanout--1.0.0.sql', from: null, to: '1.0.0' });
    expect(parseScriptName('pgfanout', 'pgfanout--1.0.0--1.10.2.sql')).toEqual({ file: 'pgfanout--1.0.0--1.10.2.sql', from: '1.0.0', to: '1.10.2' });
    for (const other of ['roles.sql', 'pgfanout--1.0.sql', 'pgfanout--1.0.0.sql.bak', 'pgfanout_replica--1.0.0.sql', 'pgfanout--1.0.0--.sql', 'pgfanout--x.y.z.sql']) {
      expect(parseScriptName('pgfanout', other), other).toBeUndefined();
    }
    expect(parseScriptName('pgfanout_replica', 'pgfanout_replica--2.0.0.sql')?.to).toBe('2.0.0');
  });
});

describe('compareVersions', () => {
  it('orders numerically, part by part', () => {
    expect(compareVersions('1.10.0', '1.9.0')).toBeGreaterThan(0);
    expect(compareVersions('1.0.0', '1.0.0')).toBe(0);
    expect(compareVersions('0.9.9', '1.0.0')).toBeLessThan(0);
  });
});

describe('planInstall', () => {
  const files = scripts('pgfanout--1.0.0.sql', 'pgfanout--1.0.0--1.1.0.sql', 'pgfanout--1.1.0--1.2.0.sql', 'pgfanout--1.0.0--1.2.0.sql', 'pgfanout--1.2.0.sql');

  it('installs the newest version directly when an install script for it exists', () => {
    expect(planInstall('source', files, null)).toEqual({ to: '1.2.0', files: ['pgfanout--1.2.0.sql'] });
  });

  it('installs an older base and upgrades when the target has no install script', () => {
    const plan = planInstall('source', scripts('pgfanout--1.0.0.sql', 'pgfanout--1.0.0--1.1.0.sql'), null);
    expect(plan).toEqual({ to: '1.1.0', files: ['pgfanout--1.0.0.sql', 'pgfanout--1.0.0--1.1.0.sql'] });
  });

  it('takes the shortest upgrade chain', () => {
    expect(planInstall('source', files, '1.0.0').files).toEqual(['pgfanout--1.0.0--1.2.0.sql']);
    expect(planInstall('source', files, '1.1.0').files).toEqual(['pgfanout--1.1.0--1.2.0.sql']);
  });

  it('stops at a requested target version', () => {
    expect(planInstall('source', files, '1.0.0', '1.1.0')).toEqual({ to: '1.1.0', files: ['pgfanout--1.0.0--1.1.0.sql'] });
  });

  it('does nothing at the newest version', () => {
    expect(planInstall('source', files, '1.2.0')).toEqual({ to: '1.2.0', files: [] });
  });

  it('refuses a downgrade, naming both versions', () => {
    expect(() => planInstall('source', files, '2.0.0')).toThrow(/version 2\.0\.0, newer than 1\.2\.0/);
  });

  it('refuses when no chain leads from the installed version, listing the upgrade scripts', () => {
    expect(() => planInstall('source', scripts('pgfanout--1.1.0.sql', 'pgfanout--1.1.0--1.2.0.sql'), '1.0.0')).toThrow(
      /no upgrade path from the installed version 1\.0\.0 to 1\.2\.0; upgrade scripts available: pgfanout--1\.1\.0--1\.2\.0\.sql/,
    );
  });

  it('refuses an upgrade script that goes backwards', () => {
    expect(() => planInstall('source', scripts('pgfanout--1.0.0.sql', 'pgfanout--1.1.0--1.0.0.sql'), null)).toThrow(/must go to a newer version/);
  });

  it('refuses an empty folder and an unknown target', () => {
    expect(() => planInstall('source', [], null)).toThrow(InstallError);
    expect(() => planInstall('source', files, null, '3.0.0')).toThrow(/no script installs or upgrades to version 3\.0\.0; versions available: 1\.0\.0, 1\.1\.0, 1\.2\.0/);
  });
});

/** Everything installSource creates, as text: objects with their oids, definitions and rights, and the state rows. */
async function fingerprint(client: pg.ClientBase): Promise<string> {
  const { rows } = await client.query<{ line: string }>(`
    SELECT line FROM (
      SELECT 'function ' || p.oid::regprocedure::text || ' ' || p.oid || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '') AS line
        FROM pg_proc p WHERE p.pronamespace = 'pgfanout'::regnamespace
      UNION ALL
      SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || c.oid || ' ' || c.relfilenode || ' ' || coalesce(c.relacl::text, '')
        FROM pg_class c WHERE c.relnamespace = 'pgfanout'::regnamespace
      UNION ALL
      SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '
             || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE c.relnamespace = 'pgfanout'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
      SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'pgfanout'::regnamespace
      UNION ALL
      SELECT 'trigger ' || tgrelid::regclass::text || ' ' || tgname || ' ' || tgfoid::regproc::text FROM pg_trigger WHERE NOT tgisinternal
      UNION ALL
      SELECT 'schema ' || coalesce(nspacl::text, '') FROM pg_namespace WHERE nspname = 'pgfanout'
      UNION ALL
      SELECT 'source ' || source_id || ' ' || installed_at FROM pgfanout.source_info
      UNION ALL
      SELECT 'state ' || s::text FROM pgfanout.capture_state s
      UNION ALL
      SELECT 'cursor ' || b::text FROM pgfanout.batch_cursor b
      UNION ALL
      SELECT 'table ' || t::text FROM pgfanout.captured_table t
      UNION ALL
      SELECT 'event ' || e::text FROM pgfanout.event_log e
      UNION ALL
      SELECT 'hint ' || coalesce(pg_sequence_last_value('pgfanout.capture_hint')::text, 'unset')
      UNION ALL
      SELECT 'role ' || rolname || ' ' || rolcanlogin FROM pg_roles WHERE rolname = 'pgfanout_publisher'
    ) lines ORDER BY line COLLATE "C"`);
  return rows.map((r) => r.line).join('\n');
}

/** The real 1.0.0 install script (the base of the made-up upgrade chains below). */
const SOURCE_SCRIPT = join(SOURCE_SQL.dir, 'pgfanout--1.0.0.sql');
/** The newest source version and its install script. */
const NEWEST = readdirSync(SOURCE_SQL.dir)
  .map((f) => parseScriptName('pgfanout', f)?.to)
  .filter((v): v is string => v !== undefined)
  .sort(compareVersions)
  .at(-1) as string;
const NEWEST_SCRIPT = join(SOURCE_SQL.dir, `pgfanout--${NEWEST}.sql`);

/**
 * A scripts folder with the real 1.0.0 source script and the given extra files (no roles.sql:
 * the real one grants the newest version's functions, which these made-up chains lack).
 */
async function scriptsFolder(extra: Readonly<Record<string, string>>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'pgfanout-sql-'));
  await copyFile(SOURCE_SCRIPT, join(dir, 'pgfanout--1.0.0.sql'));
  for (const [name, text] of Object.entries(extra)) await writeFile(join(dir, name), text);
  return dir;
}

const upgradeTo = (version: string) => `
CREATE OR REPLACE FUNCTION pgfanout.version() RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT '${version}'::text $$;
CREATE TABLE IF NOT EXISTS pgfanout.upgrade_steps (n serial PRIMARY KEY, version text NOT NULL);
INSERT INTO pgfanout.upgrade_steps (version) VALUES ('${version}');
`;

describeEachMajor('installer on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  const folders: string[] = [];
  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
  });
  afterAll(async () => {
    await server?.stop();
    for (const dir of folders) await rm(dir, { recursive: true, force: true });
  });

  async function emptyDatabase(): Promise<string> {
    const name = `inst_${Math.random().toString(36).slice(2, 10)}`;
    await withClient(server.url('postgres'), (c) => c.query(`CREATE DATABASE ${quoteIdent(name)}`));
    return server.url(name);
  }

  /** A new database installed from the scripts in `dir` up to `version`. */
  async function databaseAt(dir: string, version: string): Promise<string> {
    const url = await emptyDatabase();
    await withClient(url, (c) => installSource(c, { dir, targetVersion: version }));
    return url;
  }

  it('installs from nothing: version, source id, publisher role', async () => {
    // Prepare
    const url = await emptyDatabase();
    // Act
    const result = await withClient(url, (c) => installSource(c));
    // Assess
    expect(result).toMatchObject({ component: 'source', from: null, to: NEWEST, scripts: [`pgfanout--${NEWEST}.sql`] });
    expect(String(result)).toBe(`${NEWEST}, new install`);
    await withClient(url, async (c) => {
      const { rows } = await c.query('SELECT pgfanout.version() AS v, pgfanout.source_id() AS id');
      expect(rows[0].v).toBe(NEWEST);
      expect(rows[0].id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      const role = await c.query("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'pgfanout_publisher'");
      expect(role.rows).toEqual([{ rolcanlogin: 'f' }]);
    });
  });

  it('a second install changes nothing and loses nothing', async () => {
    // Prepare: installed, a table added, events logged, a batch finished
    const url = await sourceDatabase(server);
    const before = await withClient(url, async (c) => {
      await c.query('CREATE TABLE t (id int PRIMARY KEY, v text)');
      await c.query("SELECT pgfanout.add_table('t')");
      await c.query("INSERT INTO t VALUES (1, 'a'), (2, 'b')");
      const batch = await c.query('SELECT batch_id FROM pgfanout.next_batch()');
      await c.query('SELECT pgfanout.finish_batch($1)', [batch.rows[0].batch_id]);
      await c.query("UPDATE t SET v = 'c' WHERE id = 1");
      return fingerprint(c);
    });
    // Act
    const result = await withClient(url, (c) => installSource(c));
    // Assess
    expect(result).toMatchObject({ from: NEWEST, to: NEWEST, scripts: [] });
    expect(String(result)).toBe(`${NEWEST}, already installed`);
    expect(await withClient(url, fingerprint)).toBe(before);
  });

  it('the install script itself can run again without changing or losing anything', async () => {
    // Prepare
    const url = await sourceDatabase(server);
    const script = await import('node:fs/promises').then((fs) => fs.readFile(NEWEST_SCRIPT, 'utf8'));
    const before = await withClient(url, async (c) => {
      await c.query('CREATE TABLE t (id int PRIMARY KEY)');
      await c.query("SELECT pgfanout.add_table('t')");
      await c.query('INSERT INTO t VALUES (1)');
      return fingerprint(c);
    });
    // Act: run the raw script twice more, each in a transaction
    await withClient(url, async (c) => {
      for (let i = 0; i < 2; i++) {
        await c.query('BEGIN');
        await c.query(script);
        await c.query('COMMIT');
      }
    });
    // Assess
    expect(await withClient(url, fingerprint)).toBe(before);
  });

  it('upgrades along the chain of upgrade scripts, keeping data', async () => {
    // Prepare: a database at 1.0.0 with an event, and a folder with 1.0.0 → 1.1.0 → 1.2.0
    const dir = await scriptsFolder({ 'pgfanout--1.0.0--1.1.0.sql': upgradeTo('1.1.0'), 'pgfanout--1.1.0--1.2.0.sql': upgradeTo('1.2.0') });
    folders.push(dir);
    const url = await databaseAt(dir, '1.0.0');
    const sourceId = await withClient(url, async (c) => {
      await c.query('CREATE TABLE t (id int PRIMARY KEY)');
      await c.query("SELECT pgfanout.add_table('t')");
      await c.query('INSERT INTO t VALUES (7)');
      return (await c.query('SELECT pgfanout.source_id() AS id')).rows[0].id as string;
    });
    // Act
    const result = await withClient(url, (c) => installSource(c, { dir }));
    // Assess
    expect(result).toMatchObject({ from: '1.0.0', to: '1.2.0', scripts: ['pgfanout--1.0.0--1.1.0.sql', 'pgfanout--1.1.0--1.2.0.sql'] });
    await withClient(url, async (c) => {
      expect((await c.query('SELECT version FROM pgfanout.upgrade_steps ORDER BY n')).rows).toEqual([{ version: '1.1.0' }, { version: '1.2.0' }]);
      expect((await c.query('SELECT pgfanout.version() AS v, pgfanout.source_id() AS id')).rows[0]).toEqual({ v: '1.2.0', id: sourceId });
      expect((await c.query('SELECT count(*) AS n FROM pgfanout.event_log')).rows[0].n).toBe('1');
    });
  });

  it('installs from nothing through the install script and the upgrades, or up to a requested version', async () => {
    // Prepare
    const dir = await scriptsFolder({ 'pgfanout--1.0.0--1.1.0.sql': upgradeTo('1.1.0'), 'pgfanout--1.1.0--1.2.0.sql': upgradeTo('1.2.0') });
    folders.push(dir);
    const [full, partial] = [await emptyDatabase(), await emptyDatabase()];
    // Act
    const all = await withClient(full, (c) => installSource(c, { dir }));
    const upTo = await withClient(partial, (c) => installSource(c, { dir, targetVersion: '1.1.0' }));
    // Assess
    expect(all.scripts).toEqual(['pgfanout--1.0.0.sql', 'pgfanout--1.0.0--1.1.0.sql', 'pgfanout--1.1.0--1.2.0.sql']);
    expect(upTo).toMatchObject({ from: null, to: '1.1.0', scripts: ['pgfanout--1.0.0.sql', 'pgfanout--1.0.0--1.1.0.sql'] });
    expect(await withClient(partial, async (c) => (await c.query('SELECT pgfanout.version() AS v')).rows[0].v)).toBe('1.1.0');
  });

  it('a failing script rolls the whole install back and names the file and line', async () => {
    // Prepare: the upgrade's second statement fails
    const dir = await scriptsFolder({
      'pgfanout--1.0.0--1.1.0.sql': `${upgradeTo('1.1.0')}\nSELECT 1;\nSELECT no_such_column FROM pgfanout.source_info;\n`,
    });
    folders.push(dir);
    const url = await databaseAt(dir, '1.0.0');
    const before = await withClient(url, fingerprint);
    // Act
    const error = await withClient(url, (c) => installSource(c, { dir })).catch((e: unknown) => e);
    // Assess
    expect(error).toBeInstanceOf(DatabaseError);
    expect((error as Error).message).toMatch(/pgfanout--1\.0\.0--1\.1\.0\.sql, line 9: column "no_such_column" does not exist/);
    expect(await withClient(url, fingerprint)).toBe(before);
  });

  it('refuses to downgrade and leaves the database as it was', async () => {
    // Prepare: a database at 99.0.0
    const dir = await scriptsFolder({ 'pgfanout--1.0.0--99.0.0.sql': upgradeTo('99.0.0') });
    folders.push(dir);
    const url = await databaseAt(dir, '99.0.0');
    const before = await withClient(url, fingerprint);
    // Act
    const error = await withClient(url, (c) => installSource(c)).catch((e: unknown) => e);
    // Assess
    expect(error).toBeInstanceOf(InstallError);
    expect(error).toBeInstanceOf(PgfanoutError);
    expect((error as Error).message).toBe(`source: the database has version 99.0.0, newer than ${NEWEST}; pgfanout does not downgrade`);
    expect(await withClient(url, fingerprint)).toBe(before);
  });

  it('two installers at once: one installs, the other finds it installed', async () => {
    // Prepare
    const url = await emptyDatabase();
    const [a, b] = [await connect(url), await connect(url)];
    try {
      // Act
      const results = await Promise.all([installSource(a), installSource(b)]);
      // Assess
      expect(results.map((r) => r.from).sort()).toEqual([NEWEST, null]);
      expect((await a.query('SELECT count(*) AS n FROM pgfanout.source_info')).rows[0].n).toBe('1');
    } finally {
      await a.end();
      await b.end();
    }
  });

  it('a source and a replica install side by side in one database', async () => {
    // Prepare
    const url = await emptyDatabase();
    // Act
    const replica = await withClient(url, (c) => installReplica(c));
    const source = await withClient(url, (c) => installSource(c));
    const again = await withClient(url, async (c) => [await installReplica(c), await installSource(c)]);
    // Assess
    expect(replica.from).toBeNull();
    expect(source.from).toBeNull();
    expect(again.map(String)).toEqual([`${replica.to}, already installed`, `${NEWEST}, already installed`]);
    expect(await withClient(url, async (c) => (await c.query('SELECT pgfanout.version() AS s, pgfanout.replica_version() AS r')).rows[0])).toEqual({
      s: NEWEST,
      r: replica.to,
    });
  });

  it('installs any component folder the same way (replica naming)', async () => {
    // Prepare: a replica-style folder whose version function is pgfanout.replica_version()
    const url = await emptyDatabase();
    const dir = await mkdtemp(join(tmpdir(), 'pgfanout-sql-'));
    folders.push(dir);
    await writeFile(
      join(dir, 'pgfanout_replica--1.0.0.sql'),
      `CREATE SCHEMA IF NOT EXISTS pgfanout;
       CREATE OR REPLACE FUNCTION pgfanout.replica_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0.0'::text $$;`,
    );
    await writeFile(join(dir, 'pgfanout_replica--1.0.0--1.0.1.sql'), `CREATE OR REPLACE FUNCTION pgfanout.replica_version() RETURNS text LANGUAGE sql AS $$ SELECT '1.0.1'::text $$;`);
    // Act
    const first = await withClient(url, (c) => installReplica(c, { dir, targetVersion: '1.0.0' }));
    const second = await withClient(url, (c) => installReplica(c, { dir }));
    const third = await withClient(url, (c) => installReplica(c, { dir }));
    // Assess
    expect([first, second, third].map(String)).toEqual(['1.0.0, new install', '1.0.1, upgraded from 1.0.0', '1.0.1, already installed']);
  });

  it('a replica upgraded from 1.0.0 has exactly what a fresh install of the newest version has', async () => {
    // Everything in schema pgfanout by name (no oids): functions, relations, columns, constraints, indexes, rights.
    const shape = async (c: pg.ClientBase) =>
      (
        await c.query<{ line: string }>(`
          SELECT line FROM (
            SELECT 'function ' || p.oid::regprocedure::text || ' ' || md5(pg_get_functiondef(p.oid)) || ' ' || coalesce(p.proacl::text, '') AS line
              FROM pg_proc p WHERE p.pronamespace = 'pgfanout'::regnamespace
            UNION ALL
            SELECT 'relation ' || c.relname || ' ' || c.relkind::text || ' ' || c.relpersistence::text || ' ' || coalesce(c.relacl::text, '')
              FROM pg_class c WHERE c.relnamespace = 'pgfanout'::regnamespace AND c.relkind <> 'i'
            UNION ALL
            SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'pgfanout'::regnamespace
            UNION ALL
            SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull || ' '
                   || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE c.relnamespace = 'pgfanout'::regnamespace AND c.relkind <> 'i' AND a.attnum > 0 AND NOT a.attisdropped
            UNION ALL
            SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = 'pgfanout'::regnamespace
          ) lines ORDER BY line COLLATE "C"`)
      ).rows.map((r) => r.line);
    const upgradedUrl = await emptyDatabase();
    const freshUrl = await emptyDatabase();
    // 1.0.0 from a folder holding only its script (roles.sql describes the newest version).
    const old = await mkdtemp(join(tmpdir(), 'pgfanout-sql-'));
    folders.push(old);
    await copyFile(join(REPLICA_SQL.dir, 'pgfanout_replica--1.0.0.sql'), join(old, 'pgfanout_replica--1.0.0.sql'));
    const steps = await withClient(upgradedUrl, async (c) => [await installReplica(c, { dir: old }), await installReplica(c)]);
    const fresh = await withClient(freshUrl, (c) => installReplica(c));
    expect(steps.map(String)).toEqual(['1.0.0, new install', `${fresh.to}, upgraded from 1.0.0`]);
    expect(fresh.scripts).toEqual([`pgfanout_replica--${fresh.to}.sql`]);
    expect(await withClient(upgradedUrl, shape)).toEqual(await withClient(freshUrl, shape));
  });

  it('names the folder it cannot read', async () => {
    const url = await emptyDatabase();
    const error = await withClient(url, (c) => installComponent(c, { ...SOURCE_SQL, dir: '/nonexistent/pgfanout-sql' })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InstallError);
    expect((error as Error).message).toMatch(/^source: cannot read the scripts folder \/nonexistent\/pgfanout-sql: /);
  });
});

describe('installer as a database owner without superuser', () => {
  let server: LocalPostgres;
  beforeAll(async () => {
    server = await LocalPostgres.start({ major: TEST_MAJORS.find((m) => missingMajor(m) === undefined) });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('installs with only database ownership (hstore is trusted), once pgfanout_publisher exists; says how to create the role', async () => {
    // Prepare: a role that owns a database and may not create roles
    await withClient(server.url('postgres'), async (c) => {
      await c.query("CREATE ROLE app_owner LOGIN PASSWORD 'owner-password' NOCREATEROLE NOSUPERUSER");
      await c.query('CREATE DATABASE app OWNER app_owner');
    });
    const ownerUrl = server.url('app').replace(/^postgres:\/\/[^@]+@/, 'postgres://app_owner:owner-password@');
    // Act: without the role
    const refused = await withClient(ownerUrl, (c) => installSource(c)).catch((e: unknown) => e);
    // Assess
    expect(refused).toBeInstanceOf(DatabaseError);
    expect((refused as Error).message).toMatch(/role pgfanout_publisher does not exist and role app_owner may not create it/);
    expect(await withClient(ownerUrl, async (c) => (await c.query("SELECT to_regprocedure('pgfanout.version()') AS f")).rows[0].f)).toBeNull();
    // Act: a role administrator creates the role, the owner installs again
    await withClient(server.url('postgres'), (c) => c.query('CREATE ROLE pgfanout_publisher NOLOGIN'));
    const result = await withClient(ownerUrl, (c) => installSource(c));
    // Assess
    expect(result.from).toBeNull();
    expect(await withClient(ownerUrl, async (c) => (await c.query("SELECT proowner::regrole::text AS o FROM pg_proc WHERE oid = 'pgfanout.next_batch()'::regprocedure")).rows[0].o)).toBe(
      'app_owner',
    );
  });
});

describe('installers in two databases of one cluster at once', () => {
  let server: LocalPostgres;
  beforeAll(async () => {
    server = await LocalPostgres.start({ major: TEST_MAJORS.find((m) => missingMajor(m) === undefined) });
  });
  afterAll(async () => {
    await server?.stop();
  });

  // The install lock is per database, so installers of two databases run side by side, and the
  // first install in a cluster creates the role. The other installer's CREATE ROLE, run while the
  // first had not committed, waits for it on pg_authid's unique index and then fails there.
  it.each([
    ['source', SOURCE_SQL, 'pgfanout_publisher'],
    ['replica', REPLICA_SQL, 'pgfanout_applier'],
  ] as const)('%s: an installer whose role another one is creating waits for it, then installs with that role', async (name, component, role) => {
    // Prepare: the other installer has created the role and not committed yet
    const database = `race_${name}`;
    await withClient(server.url('postgres'), (c) => c.query(`CREATE DATABASE ${quoteIdent(database)}`));
    const other = await connect(server.url('postgres'));
    try {
      await other.query('BEGIN');
      await other.query(`CREATE ROLE ${quoteIdent(role)} NOLOGIN`);
      // Act: this installer reaches CREATE ROLE and waits; the other one commits
      const install = withClient(server.url(database), (c) => installComponent(c, component));
      const outcome = install.then(
        () => 'installed',
        (e: unknown) => (e as Error).message,
      );
      await waitFor(`the ${name} installer waiting for the other transaction`, async () => {
        // (From a connection of its own: a transaction sees pg_stat_activity as it was at its first read.)
        const sql = "SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'";
        const { rows } = await withClient(server.url('postgres'), (c) => c.query(sql, [database]));
        return rows.length > 0 || (await Promise.race([outcome, Promise.resolve('running')])) !== 'running';
      });
      await other.query('COMMIT');
      // Assess
      expect(await outcome).toBe('installed');
      const grants = await withClient(server.url(database), async (c) => (await c.query('SELECT has_schema_privilege($1, $2, $3)::text AS usage', [role, 'pgfanout', 'USAGE'])).rows[0]);
      expect(grants).toEqual({ usage: 'true' });
    } finally {
      await other.end();
    }
  });
});
