/**
 * The source side against its own writers, on real servers: a writer who may create functions
 * next to hstore cannot make capture run them with the installer's rights; a writer cannot
 * switch capture off with the loop guard `pgfanout.origin`; with DDL capture on, only roles
 * the operator allowed have their statements logged for the replicas, and a logged schema
 * change never holds transaction control.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { describeEachMajor } from '#testing/servers.ts';
import { connect, drainEvents, sourceDatabase, type CapturedEvent } from '#testing/source.ts';

const PASSWORD = 'writer-password';

/** Error of a query expected to fail (message and SQLSTATE), or 'no error'. */
async function failure(client: pg.ClientBase, sql: string): Promise<string | { message: string; code: string }> {
  return client.query(sql).then(
    () => 'no error',
    (err: { message: string; code: string }) => ({ message: err.message, code: err.code }),
  );
}

const summary = (events: readonly CapturedEvent[]) => events.map((e) => `${e.op} ${e.schema}.${e.table} ${JSON.stringify(e.key ?? null)} ${JSON.stringify(e.row ?? null)}`);

describeEachMajor('source security on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  const open: pg.Client[] = [];

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
  });
  afterAll(async () => {
    await Promise.all(open.map((c) => c.end().catch(() => undefined)));
    await server?.stop();
  });

  /**
   * A source database (installed by the superuser, hstore in public) with app.t (id int
   * primary key, v text) captured, and a new login role that may write app.t and, as
   * PostgreSQL 13 and 14 let everyone by default, create objects in schema public.
   */
  async function setup(): Promise<{ admin: pg.Client; writer: pg.Client; role: string; url: string }> {
    const url = await sourceDatabase(server);
    const admin = await connect(url);
    open.push(admin);
    const role = `writer_${randomUUID().replaceAll('-', '').slice(0, 8)}`;
    await admin.query(`
      CREATE SCHEMA app;
      CREATE TABLE app.t (id int PRIMARY KEY, v text);
      SELECT pgfanout.add_table('app.t');
      CREATE ROLE ${role} LOGIN PASSWORD '${PASSWORD}' NOSUPERUSER NOCREATEROLE;
      GRANT USAGE, CREATE ON SCHEMA app TO ${role};
      GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON app.t TO ${role};
      GRANT CREATE ON SCHEMA public TO ${role};`);
    const writer = await connect(url.replace(/^postgres:\/\/[^@]+@/, `postgres://${role}:${PASSWORD}@`));
    open.push(writer);
    return { admin, writer, role, url };
  }

  const isSuperuser = async (admin: pg.ClientBase, role: string) =>
    (await admin.query('SELECT rolsuper::text AS s FROM pg_roles WHERE rolname = $1', [role])).rows[0].s as string;

  describe('capture functions and overloads', () => {
    it("a writer's overload hstore(app.t) next to hstore is never called by capture: no escalation, exact events", async () => {
      // Prepare: the overload makes its caller's role superuser when it can, and forges the image
      const { admin, writer, role } = await setup();
      expect((await admin.query("SELECT extnamespace::regnamespace::text AS s FROM pg_extension WHERE extname = 'hstore'")).rows[0].s).toBe('public');
      await writer.query(`
        CREATE FUNCTION public.hstore(r app.t) RETURNS public.hstore LANGUAGE plpgsql AS $$
        BEGIN
          IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
            EXECUTE 'ALTER ROLE ${role} SUPERUSER';
          END IF;
          RETURN public.hstore(ARRAY['id', 'v'], ARRAY['666', 'forged']);
        END $$`);
      // Act: writes through both capture paths (exact output settings, and others)
      await writer.query("INSERT INTO app.t VALUES (1, 'a'); UPDATE app.t SET v = 'b' WHERE id = 1");
      await writer.query("SET DateStyle = 'German'; INSERT INTO app.t VALUES (2, 'c'); DELETE FROM app.t WHERE id = 1; RESET DateStyle");
      // Assess
      expect(await isSuperuser(admin, role)).toBe('false');
      expect(summary(await drainEvents(admin))).toEqual([
        'I app.t null {"id":"1","v":"a"}',
        'U app.t {"id":"1"} {"id":"1","v":"b"}',
        'I app.t null {"id":"2","v":"c"}',
        'D app.t {"id":"1"} null',
      ]);
    });
  });

  describe('the loop guard pgfanout.origin', () => {
    it('does not switch capture off for an ordinary writer', async () => {
      // Prepare
      const { admin, writer } = await setup();
      // Act
      await writer.query("SET pgfanout.origin = 'x'; INSERT INTO app.t VALUES (1, 'a')");
      await writer.query("BEGIN; SELECT pg_catalog.set_config('pgfanout.origin', 'y', true); UPDATE app.t SET v = 'b'; TRUNCATE app.t; COMMIT");
      // Assess
      expect(summary(await drainEvents(admin))).toEqual(['I app.t null {"id":"1","v":"a"}', 'U app.t {"id":"1"} {"id":"1","v":"b"}', 'T app.t null null']);
    });

    it('switches capture off for a member of pgfanout_applier (an applier on a database that is also a replica)', async () => {
      // Prepare: the writer becomes an applier
      const { admin, writer, role } = await setup();
      await admin.query(`DO $$ BEGIN CREATE ROLE pgfanout_applier NOLOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
                         GRANT pgfanout_applier TO ${role}`);
      // Act
      await writer.query("BEGIN; SELECT pg_catalog.set_config('pgfanout.origin', 'source-a', true); INSERT INTO app.t VALUES (1, 'a'); TRUNCATE app.t; COMMIT");
      await writer.query("INSERT INTO app.t VALUES (2, 'b')");
      // Assess
      expect(summary(await drainEvents(admin))).toEqual(['I app.t null {"id":"2","v":"b"}']);
    });
  });

  describe('DDL capture', () => {
    it("refuses the issue's attack: a writer with CREATE in a captured schema cannot have its statement string logged for the replicas", async () => {
      // Prepare
      const { admin, writer, role } = await setup();
      await admin.query('SELECT pgfanout.enable_ddl_capture()');
      // Act
      const error = await failure(writer, "CREATE TABLE app.x (a int); DO $$ BEGIN RAISE NOTICE 'runs on every replica'; END $$;");
      // Assess
      expect(error).toEqual({
        code: '42501',
        message: `pgfanout: role ${role} may not change table app.x while DDL capture is on: captured statements run on every replica, and the role is not allowed to make them`,
      });
      expect((await admin.query("SELECT to_regclass('app.x')::text AS t")).rows[0].t).toBeNull();
      expect(await drainEvents(admin)).toEqual([]);
    });

    it('logs the statements of pgfanout’s owner and of roles the owner allowed, and of no one else', async () => {
      // Prepare: the writer may become migrator, which is allowed
      const { admin, writer, role } = await setup();
      await admin.query(`CREATE ROLE migrator_${role} NOLOGIN; GRANT migrator_${role} TO ${role};
                         GRANT USAGE ON SCHEMA app TO migrator_${role}; ALTER TABLE app.t OWNER TO migrator_${role}`);
      await admin.query('SELECT pgfanout.enable_ddl_capture()');
      await writer.query(`SET ROLE migrator_${role}`);
      const refused = await failure(writer, 'ALTER TABLE app.t ADD COLUMN c int');
      await writer.query('RESET ROLE');
      // Act
      await admin.query(`SELECT pgfanout.ddl_capture_role('migrator_${role}')`);
      await admin.query('SELECT pgfanout.ddl_capture_role($1)', [`migrator_${role}`]); // idempotent
      await writer.query(`SET ROLE migrator_${role}`);
      await writer.query('ALTER TABLE app.t ADD COLUMN c int');
      await writer.query('RESET ROLE');
      await admin.query('ALTER TABLE app.t ADD COLUMN d int');
      await admin.query(`SELECT pgfanout.ddl_capture_role('migrator_${role}', false)`);
      await writer.query(`SET ROLE migrator_${role}`);
      const refusedAgain = await failure(writer, 'ALTER TABLE app.t ADD COLUMN e int');
      await writer.query('RESET ROLE');
      const unknown = await failure(admin, "SELECT pgfanout.ddl_capture_role('no_such_role')");
      // Assess
      const notAllowed = { code: '42501', message: expect.stringMatching(new RegExp(`^pgfanout: role ${role} may not change table app\\.t while DDL capture is on`)) };
      expect(refused).toMatchObject(notAllowed);
      expect(refusedAgain).toMatchObject(notAllowed);
      expect(unknown).toEqual({ code: '42704', message: 'pgfanout.ddl_capture_role: role no_such_role does not exist' });
      const logged = (await drainEvents(admin)).filter((e) => e.op === 'S').map((e) => e.row?.sql);
      expect(logged).toEqual(['ALTER TABLE app.t ADD COLUMN c int', 'ALTER TABLE app.t ADD COLUMN d int']);
    });

    it('refuses a statement string holding transaction control (or anything else replicas refuse), so a replica never runs a COMMIT inside its apply transaction', async () => {
      // Prepare
      const { admin } = await setup();
      await admin.query('SELECT pgfanout.enable_ddl_capture()');
      // Act
      const error = await failure(admin, 'BEGIN; ALTER TABLE app.t ADD COLUMN c int; COMMIT;');
      await admin.query('ROLLBACK').catch(() => undefined);
      await admin.query('ALTER TABLE app.t ADD COLUMN d int');
      // Assess
      expect(error).toEqual({
        code: '2D000',
        message:
          'pgfanout: a schema change for the replicas must not hold transaction or session control, COPY or DO (replicas refuse them), and this one holds BEGIN: BEGIN; ALTER TABLE app.t ADD COLUMN c int; COMMIT;',
      });
      const columns = await admin.query("SELECT string_agg(attname, ',' ORDER BY attnum) AS c FROM pg_attribute WHERE attrelid = 'app.t'::regclass AND attnum > 0");
      expect(columns.rows[0].c).toBe('id,v,d');
      expect((await drainEvents(admin)).filter((e) => e.op === 'S').map((e) => e.row?.sql)).toEqual(['ALTER TABLE app.t ADD COLUMN d int']);
    });

    it('transaction_control finds statements replicas refuse (BEGIN, COMMIT, SET, COPY, DO, ...) and nothing in strings, comments, quoted names or routine bodies', async () => {
      const { admin } = await setup();
      const cases: [string, string | null][] = [
        ['ALTER TABLE app.t ADD COLUMN c int', null],
        ['BEGIN; ALTER TABLE app.t ADD COLUMN c int; COMMIT', 'BEGIN'],
        ['alter table t add c int; commit', 'COMMIT'],
        ['ALTER TABLE t ADD c int;END', 'END'],
        ['  /* a /* nested */ comment */ -- and a line\n  Rollback', 'ROLLBACK'],
        ['CREATE TABLE t (a int); START TRANSACTION', 'START'],
        ['SAVEPOINT s', 'SAVEPOINT'],
        ['ALTER TABLE t ADD c int; RELEASE s', 'RELEASE'],
        ['ABORT', 'ABORT'],
        ["PREPARE TRANSACTION 'x'", 'PREPARE'],
        ["ALTER TABLE t ADD c text DEFAULT '; COMMIT'", null],
        ["SET ROLE migrator; ALTER TABLE t ADD c int", 'SET'],
        ['ALTER TABLE t ADD c int; reset role', 'RESET'],
        ["ALTER TABLE t ADD c int; COPY t TO PROGRAM 'x'", 'COPY'],
        ['DISCARD ALL', 'DISCARD'],
        ["ALTER TABLE t ADD c text DEFAULT E'it\\'s; COMMIT'", null],
        ["ALTER TABLE t ADD c text DEFAULT 'it''s'; COMMIT", 'COMMIT'],
        ['ALTER TABLE "begin" ADD "commit" int', null],
        ['ALTER TABLE t ADD c int; "commit"', null],
        ['-- COMMIT\nALTER TABLE t ADD c int', null],
        ['DO $x$ BEGIN COMMIT; END $x$; ALTER TABLE t ADD c int', 'DO'],
        ["ALTER TABLE t ADD c text DEFAULT $x$ DO $$ COMMIT $x$", null],
        ['CREATE TABLE t (a int); /* DO */ SELECT 1', null],
        ['CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END; ALTER TABLE t ADD c int', null],
        ['CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; END; COMMIT', 'COMMIT'],
        ['CREATE RULE r AS ON INSERT TO t DO ALSO (SELECT 1; SELECT 2); ALTER TABLE t ADD c int', null],
        ['SELECT $1; ALTER TABLE t ADD c int', null],
        ['', null],
      ];
      const { rows } = await admin.query<{ found: string | null }>('SELECT pgfanout.transaction_control(x) AS found FROM unnest($1::text[]) WITH ORDINALITY AS u(x, o) ORDER BY o', [
        cases.map(([sql]) => sql),
      ]);
      expect(rows.map((r, i) => [cases[i]?.[0], r.found])).toEqual(cases);
    });
  });
});
