/**
 * Release discipline of pgfanout's SQL (`sql/source/`, `sql/replica/`): a released script never
 * changes (its sha256 is recorded here), and a database upgraded step by step from the oldest
 * release holds exactly what a fresh install of the newest version holds: functions with their
 * bodies, security and settings, tables, columns, constraints, indexes, sequences, grants,
 * triggers and event triggers.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { describeEachMajor } from '#testing/servers.ts';
import { connect, withClient } from '#testing/source.ts';
import { quoteIdent } from '#core/pg/sql.ts';
import { compareVersions, installComponent, parseScriptName, REPLICA_SQL, SOURCE_SQL, type ScriptFile, type SqlComponent } from './install.ts';

/**
 * Every released script and its sha256. A release adds its scripts here; nothing here is ever
 * edited or removed.
 */
const RELEASED: Readonly<Record<string, string>> = {
  'source/pgfanout--1.0.0.sql': 'b561d6f8c662aab102fabb23104b7646482f37c5cb87b018185c540fb472c744',
  'replica/pgfanout_replica--1.0.0.sql': '267385c85a9bebbafcce1e7d4cc53027e63caab40ae5d556aabe994f07451fa1',
  'source/pgfanout--1.1.0.sql': 'ab0a8808feee2df368ee9961730b0aba1e61af329260218fc6780d96c93f4a78',
  'source/pgfanout--1.0.0--1.1.0.sql': '86046990e30ffd96565b51b74eaf746aafdb1ce7e6d87d701c2b03f7c2a407f2',
  'replica/pgfanout_replica--1.1.0.sql': '55beb4a33e0dfb222225b7b5e3aff7627d78b281ca87541488ddaf45c28a0854',
  'replica/pgfanout_replica--1.0.0--1.1.0.sql': 'b6b69466bb3a603e1852c0ad2ddb6b993957ad4f6d1a8fd3a3e0d857af5e9f2d',
};

const COMPONENTS: readonly SqlComponent[] = [SOURCE_SQL, REPLICA_SQL];

async function scriptsOf(component: SqlComponent): Promise<ScriptFile[]> {
  const files = (await readdir(component.dir)).sort();
  return files.map((f) => parseScriptName(component.prefix, f)).filter((s): s is ScriptFile => s !== undefined);
}

describe('released SQL scripts', () => {
  it.each(Object.keys(RELEASED))('%s is unchanged', async (path) => {
    const [dir, file] = path.split('/') as [string, string];
    const component = COMPONENTS.find((c) => c.dir.endsWith(`/${dir}`)) as SqlComponent;
    const text = await readFile(join(component.dir, file));
    const digest = createHash('sha256').update(text).digest('hex');
    expect(digest, `${path} was released and has changed: released scripts never change: write an upgrade script`).toBe(RELEASED[path]);
  });
});

/**
 * The catalog of what a component installed, one line per fact, by name (no oids), sorted:
 * everything in schema pgfanout, the triggers on every table and the event triggers.
 */
async function catalog(client: pg.ClientBase): Promise<string[]> {
  // Names print schema-qualified whenever they are not in pg_catalog.
  await client.query("SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)");
  const { rows } = await client.query<{ line: string }>(`
    WITH ns AS (SELECT oid FROM pg_namespace WHERE nspname = 'pgfanout')
    SELECT line FROM (
      SELECT 'schema owner=' || pg_get_userbyid(n.nspowner) || ' acl=' || coalesce(n.nspacl::text, '-') || ' comment=' || coalesce(obj_description(n.oid, 'pg_namespace'), '-') AS line
        FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 'function ' || p.oid::regprocedure::text || ' owner=' || pg_get_userbyid(p.proowner) || ' acl=' || coalesce(p.proacl::text, '-')
             || ' definer=' || p.prosecdef || ' config=' || coalesce(p.proconfig::text, '-') || E'\n' || pg_get_functiondef(p.oid)
        FROM pg_proc p WHERE p.pronamespace IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 'relation ' || c.oid::regclass::text || ' kind=' || c.relkind::text || ' persistence=' || c.relpersistence::text
             || ' owner=' || pg_get_userbyid(c.relowner) || ' acl=' || coalesce(c.relacl::text, '-') || ' options=' || coalesce(c.reloptions::text, '-')
             || ' inherits=' || coalesce((SELECT string_agg(i.inhparent::regclass::text, ',' ORDER BY i.inhseqno) FROM pg_inherits i WHERE i.inhrelid = c.oid), '-')
        FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 'column ' || c.oid::regclass::text || ' #' || row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum) || ' ' || a.attname || ' '
             || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
             || ' collation=' || a.attcollation::regcollation::text || ' acl=' || coalesce(a.attacl::text, '-')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       WHERE c.relnamespace IN (SELECT oid FROM ns) AND a.attnum > 0 AND NOT a.attisdropped
      UNION ALL
      SELECT 'constraint ' || coalesce(con.conrelid::regclass::text, '-') || ' ' || con.conname || ' ' || pg_get_constraintdef(con.oid)
        FROM pg_constraint con WHERE con.connamespace IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 'index ' || pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 'sequence ' || s.seqrelid::regclass::text || ' ' || format_type(s.seqtypid, NULL) || ' start=' || s.seqstart || ' increment=' || s.seqincrement
             || ' min=' || s.seqmin || ' max=' || s.seqmax || ' cache=' || s.seqcache || ' cycle=' || s.seqcycle
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace IN (SELECT oid FROM ns)
      UNION ALL
      SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled=' || t.tgenabled::text FROM pg_trigger t WHERE NOT t.tgisinternal
      UNION ALL
      SELECT 'event trigger ' || e.evtname || ' on ' || e.evtevent || ' tags=' || coalesce(e.evttags::text, '-') || ' function=' || e.evtfoid::regprocedure::text
             || ' enabled=' || e.evtenabled::text || ' owner=' || pg_get_userbyid(e.evtowner)
        FROM pg_event_trigger e
      UNION ALL
      SELECT 'extension ' || x.extname || ' schema=' || x.extnamespace::regnamespace::text FROM pg_extension x WHERE x.extname <> 'plpgsql'
    ) lines ORDER BY line COLLATE "C"`);
  // Trigger arguments may hold a table's oid: show the table's name instead.
  const tables = await client.query<{ oid: string; name: string }>(
    "SELECT c.oid::text AS oid, c.oid::regclass::text AS name FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relnamespace <> 'pg_catalog'::regnamespace",
  );
  const names = new Map(tables.rows.map((r) => [r.oid, r.name]));
  await client.query('RESET search_path');
  return rows.map((r) => (r.line.startsWith('trigger ') ? r.line.replace(/'(\d+)'/g, (whole, oid: string) => (names.has(oid) ? `'<${names.get(oid)}>'` : whole)) : r.line));
}

/** State that later versions must carry over (tables added, DDL capture on), made the same way in both databases. */
async function useComponent(client: pg.ClientBase, component: SqlComponent): Promise<void> {
  if (component !== SOURCE_SQL) return;
  await client.query(`
    CREATE SCHEMA app;
    CREATE TABLE app.keyed (id int PRIMARY KEY, v text);
    CREATE TABLE app.bare (v text);
    CREATE TABLE app.parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
    CREATE TABLE app.parted_1 PARTITION OF app.parted FOR VALUES FROM (0) TO (100);
    SELECT pgfanout.add_table('app.keyed');
    SELECT pgfanout.add_table('app.bare');
    SELECT pgfanout.add_table('app.parted');
    SELECT pgfanout.auto_add_schema('app');
    SELECT pgfanout.enable_ddl_capture();
  `);
}

describeEachMajor('upgrades on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let n = 0;
  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
  });
  afterAll(async () => {
    await server?.stop();
  });

  async function emptyDatabase(): Promise<string> {
    const name = `rel_${major}_${++n}`;
    await withClient(server.url('postgres'), (c) => c.query(`CREATE DATABASE ${quoteIdent(name)}`));
    return server.url(name);
  }

  it.each(COMPONENTS.map((c) => [c.name, c] as const))('%s: the oldest release upgraded step by step equals a fresh install of the newest', async (_, component) => {
    // Prepare: the versions, oldest first
    const scripts = await scriptsOf(component);
    const versions = [...new Set(scripts.map((s) => s.to))].sort(compareVersions);
    const oldest = scripts.filter((s) => s.from === null).map((s) => s.to).sort(compareVersions)[0] as string;
    const newest = versions.at(-1) as string;
    const [upgradedUrl, freshUrl] = [await emptyDatabase(), await emptyDatabase()];
    const upgraded = await connect(upgradedUrl);
    const fresh = await connect(freshUrl);
    try {
      // Act: install the oldest, use it, upgrade one version at a time
      const first = await installComponent(upgraded, component, { targetVersion: oldest });
      expect(first.scripts).toEqual([`${component.prefix}--${oldest}.sql`]);
      await useComponent(upgraded, component);
      const steps: string[] = [];
      for (const version of versions.filter((v) => compareVersions(v, oldest) > 0)) {
        const step = await installComponent(upgraded, component, { targetVersion: version });
        steps.push(...step.scripts);
      }
      const installed = await installComponent(fresh, component);
      await useComponent(fresh, component);
      // Assess
      expect(steps.every((s) => parseScriptName(component.prefix, s)?.from !== null)).toBe(true);
      expect(installed.to).toBe(newest);
      expect(await catalog(upgraded)).toEqual(await catalog(fresh));
    } finally {
      await upgraded.end();
      await fresh.end();
    }
  });

  it('no function of the source side can be run by everyone', async () => {
    const url = await emptyDatabase();
    await withClient(url, async (c) => {
      await installComponent(c, SOURCE_SQL);
      await installComponent(c, REPLICA_SQL);
      const { rows } = await c.query<{ f: string }>(`
        SELECT p.oid::regprocedure::text AS f FROM pg_proc p
         WHERE p.pronamespace = 'pgfanout'::regnamespace AND p.proname NOT LIKE 'replica\\_%'
           AND has_function_privilege('public', p.oid, 'EXECUTE')`);
      expect(rows).toEqual([]);
    });
  });
});
