/**
 * Schema changes through the stream, on real servers of each tested major: replicate_ddl on the
 * source (logging, rollback, rights, search path, auto-add, identity re-check, full old images),
 * the DDL event triggers, and the replica running `S` changes at their place among the data
 * changes (catalog re-read, failures named with statement and position).
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { applyMessage, replicaPosition } from './replica/index.ts';
import { SchemaChangeError } from './wire/errors.ts';
import { installReplica, installSource } from '../ops/install.ts';
import { drainEvents, type CapturedEvent } from '#testing/source.ts';
import { publishNext, syncChanges, syncOnce } from '#testing/stream.ts';
import { describeEachMajor } from '#testing/servers.ts';

/** Error message of a query expected to fail. */
async function failure(client: pg.ClientBase, sql: string, values: unknown[] = []): Promise<string> {
  return client.query(sql, values).then(
    () => 'no error',
    (err: Error) => err.message,
  );
}

/** Rows of `sql` as text, in order, for comparing two databases. */
async function rowsOf(client: pg.ClientBase, sql: string): Promise<string[]> {
  const { rows } = await client.query<{ r: string }>(`SELECT t::text AS r FROM (${sql}) AS t ORDER BY 1`);
  return rows.map((r) => r.r);
}

const schemaChanges = (events: readonly CapturedEvent[]) => events.filter((e) => e.op === 'S');
/** The replicas here run the stream's schema changes. */
const DDL = { allowSchemaChanges: true } as const;

describeEachMajor('schema changes on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
    const admin = new pg.Client(server.url());
    await admin.connect();
    await admin.query("CREATE ROLE ddl_caller LOGIN PASSWORD 'caller-password' NOSUPERUSER");
    await admin.end();
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await server?.stop();
  });

  async function database(install: 'source' | 'replica' | 'both'): Promise<{ client: pg.Client; name: string }> {
    const name = `db_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const admin = new pg.Client(server.url());
    await admin.connect();
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    const client = new pg.Client(server.url(name));
    await client.connect();
    clients.push(client);
    if (install !== 'replica') await installSource(client);
    if (install !== 'source') await installReplica(client);
    return { client, name };
  }

  /** A source and a replica database with the same table app.items (id primary key, v text), captured. */
  async function pair(): Promise<{ source: pg.Client; replica: pg.Client; sourceName: string }> {
    const [s, r] = await Promise.all([database('source'), database('replica')]);
    for (const c of [s.client, r.client]) await c.query('CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, v text)');
    await s.client.query("SELECT pgfanout.add_table('app.items')");
    return { source: s.client, replica: r.client, sourceName: s.name };
  }

  describe('replicate_ddl on the source', () => {
    it('runs the statement and logs it between the data changes of its transaction, with the search path it ran under', async () => {
      // Prepare
      const { source } = await pair();
      // Act
      await source.query(`BEGIN;
        INSERT INTO app.items VALUES (1, 'before');
        SET LOCAL search_path = app, "$user", public;
        SELECT pgfanout.replicate_ddl('ALTER TABLE items ADD COLUMN qty int');
        INSERT INTO app.items VALUES (2, 'after', 5);
        COMMIT`);
      // Assess
      const events = await drainEvents(source);
      expect(events.map((e) => `${e.op} ${e.schema}.${e.table}`)).toEqual(['I app.items', 'S .', 'I app.items']);
      expect(schemaChanges(events)[0]?.row).toEqual({ sql: 'ALTER TABLE items ADD COLUMN qty int', search_path: 'app, public' });
      expect(events[2]?.row).toEqual({ id: '2', v: 'after', qty: '5' });
    });

    it('logs nothing when the statement fails: the error rolls back the transaction, naming what failed', async () => {
      const { source } = await pair();
      expect(await failure(source, "SELECT pgfanout.replicate_ddl('ALTER TABLE app.nope ADD COLUMN x int')")).toBe('relation "app.nope" does not exist');
      await source.query('BEGIN');
      await source.query("INSERT INTO app.items VALUES (1, 'lost')");
      expect(await failure(source, "SELECT pgfanout.replicate_ddl('ALTER TABLE app.items ADD COLUMN v int')")).toBe('column "v" of relation "items" already exists');
      await source.query('ROLLBACK');
      expect(await drainEvents(source)).toEqual([]);
      const columns = await source.query("SELECT count(*)::int AS n FROM pg_attribute WHERE attrelid = 'app.items'::regclass AND attnum > 0");
      expect(columns.rows[0].n).toBe(2);
    });

    it('refuses a NULL or blank statement, saying what it expects', async () => {
      const { source } = await pair();
      expect(await failure(source, 'SELECT pgfanout.replicate_ddl(NULL)')).toBe('pgfanout.replicate_ddl: the statement is NULL; expected the text of a statement to run');
      expect(await failure(source, "SELECT pgfanout.replicate_ddl(' ')")).toBe("pgfanout.replicate_ddl: the statement is ' '; expected the text of a statement to run");
    });

    it("runs the statement with the caller's rights, and only for callers granted it", async () => {
      // Prepare: ddl_caller may connect but owns nothing
      const { client: owner, name } = await database('source');
      await owner.query('CREATE TABLE public.owned (id int PRIMARY KEY); GRANT USAGE ON SCHEMA pgfanout TO ddl_caller');
      const caller = new pg.Client(`postgres://ddl_caller:caller-password@127.0.0.1:${server.port}/${name}`);
      await caller.connect();
      clients.push(caller);
      // Act + Assess: not granted
      expect(await failure(caller, "SELECT pgfanout.replicate_ddl('CREATE TABLE public.mine (id int)')")).toBe('permission denied for function replicate_ddl');
      // Granted, but the statement needs rights the caller lacks
      await owner.query('GRANT EXECUTE ON FUNCTION pgfanout.replicate_ddl(text), pgfanout.schema_change(text, text, text, text, oid[], boolean) TO ddl_caller');
      expect(await failure(caller, "SELECT pgfanout.replicate_ddl('ALTER TABLE public.owned ADD COLUMN x int')")).toBe('must be owner of table owned');
      expect(await drainEvents(owner)).toEqual([]);
      // Granted rights of its own: runs and logs
      await owner.query('GRANT CREATE ON SCHEMA public TO ddl_caller');
      await caller.query("SELECT pgfanout.replicate_ddl('CREATE TABLE public.mine (id int)')");
      const owners = await owner.query("SELECT tableowner FROM pg_tables WHERE tablename = 'mine'");
      expect(owners.rows).toEqual([{ tableowner: 'ddl_caller' }]);
      expect(schemaChanges(await drainEvents(owner)).map((e) => e.row?.sql)).toEqual(['CREATE TABLE public.mine (id int)']);
    });

    it("does not capture the statement's own data changes row by row: the replica replays them by running it", async () => {
      // Prepare
      const { source, replica } = await pair();
      await source.query("INSERT INTO app.items SELECT i, 'v' || i FROM generate_series(1, 3) i");
      await syncOnce(source, replica, DDL);
      // Act
      await source.query("SELECT pgfanout.replicate_ddl('ALTER TABLE app.items ADD COLUMN upper_v text; UPDATE app.items SET upper_v = upper(v)')");
      const events = await drainEvents(source);
      // Assess
      expect(events.map((e) => e.op)).toEqual(['S']);
    });

    it('adds tables it creates in an auto-add schema, and only those', async () => {
      // Prepare
      const { source } = await pair();
      await source.query("CREATE SCHEMA other; SELECT pgfanout.auto_add_schema('app')");
      await source.query('CREATE TABLE app.made_before (id int PRIMARY KEY)');
      // Act
      await source.query(`SELECT pgfanout.replicate_ddl('CREATE TABLE app.orders (id int PRIMARY KEY); CREATE TABLE other.notes (id int); CREATE TABLE app.part (at date NOT NULL) PARTITION BY RANGE (at); CREATE TABLE app.part_1 PARTITION OF app.part FOR VALUES FROM (''2024-01-01'') TO (''2025-01-01'')')`);
      // Assess
      const shown = await source.query('SELECT table_schema || $$.$$ || table_name AS t FROM pgfanout.show_tables() ORDER BY 1');
      expect(shown.rows.map((r) => r.t)).toEqual(['app.items', 'app.orders', 'app.part']);
      await source.query("SELECT pgfanout.auto_add_schema('app', false)");
      await source.query("SELECT pgfanout.replicate_ddl('CREATE TABLE app.later (id int)')");
      expect((await source.query("SELECT count(*)::int AS n FROM pgfanout.show_tables() WHERE table_name = 'later'")).rows[0].n).toBe(0);
      expect(await failure(source, "SELECT pgfanout.auto_add_schema('nope')")).toBe('pgfanout.auto_add_schema: schema nope does not exist');
      expect(await failure(source, "SELECT pgfanout.auto_add_schema('pgfanout')")).toBe("pgfanout.auto_add_schema: schema pgfanout holds pgfanout's own tables; they are not captured");
    });

    it('re-installs capture when an ALTER TABLE changes the row identity, so later events carry the new key', async () => {
      // Prepare
      const { source, replica } = await pair();
      await replica.query('ALTER TABLE app.items DROP CONSTRAINT items_pkey');
      await source.query("INSERT INTO app.items VALUES (1, 'a'), (2, 'b')");
      // Act: the source changes its key from id to v (the replica follows through the stream)
      await source.query("SELECT pgfanout.replicate_ddl('ALTER TABLE app.items DROP CONSTRAINT items_pkey; ALTER TABLE app.items ALTER v SET NOT NULL; ALTER TABLE app.items ADD PRIMARY KEY (v)')");
      await source.query("UPDATE app.items SET id = 10 WHERE v = 'a'");
      // Assess
      const shown = await source.query("SELECT identity_kind, identity_columns::text, identity_ok FROM pgfanout.show_tables() WHERE table_name = 'items'");
      expect(shown.rows).toEqual([{ identity_kind: 'primary key', identity_columns: '{v}', identity_ok: true }]);
      const events = await drainEvents(source);
      expect(events.at(-1)).toMatchObject({ op: 'U', key: { v: 'a' }, row: { id: '10', v: 'a' } });
    });

    it("set_old_image('full') makes UPDATE and DELETE events carry the whole old row, and survives an identity refresh", async () => {
      const { source } = await pair();
      await source.query("INSERT INTO app.items VALUES (1, 'a')");
      await source.query("SELECT pgfanout.set_old_image('app.items', 'full')");
      await source.query("UPDATE app.items SET v = 'b'");
      await source.query("SELECT pgfanout.replicate_ddl('ALTER TABLE app.items ADD COLUMN w int')");
      await source.query('DELETE FROM app.items');
      const events = (await drainEvents(source)).filter((e) => e.op !== 'I' && e.op !== 'S');
      expect(events.map((e) => e.key)).toEqual([{ id: '1', v: 'a' }, { id: '1', v: 'b', w: null }]);
      await source.query("SELECT pgfanout.set_old_image('app.items', 'identity')");
      await source.query("INSERT INTO app.items VALUES (2, 'c'); DELETE FROM app.items");
      expect((await drainEvents(source)).at(-1)?.key).toEqual({ id: '2' });
      expect(await failure(source, "SELECT pgfanout.set_old_image('app.items', 'most')")).toBe(
        "pgfanout.set_old_image: table app.items and old image 'most' are not allowed; expected an added table and 'identity' or 'full'",
      );
    });
  });

  describe('the replica runs schema changes in order', () => {
    it('applies rows written before and after an ADD COLUMN in one batch, reading the table again after it', async () => {
      // Prepare
      const { source, replica } = await pair();
      await source.query("INSERT INTO app.items VALUES (1, 'one')");
      await syncOnce(source, replica, DDL);
      // Act: one transaction, one batch
      await source.query(`BEGIN;
        INSERT INTO app.items VALUES (2, 'two');
        SELECT pgfanout.replicate_ddl('ALTER TABLE app.items ADD COLUMN qty numeric(6,2) DEFAULT 0; CREATE TABLE app.extra (id int PRIMARY KEY)');
        INSERT INTO app.items VALUES (3, 'three', 4.5);
        UPDATE app.items SET qty = 7 WHERE id = 1;
        COMMIT`);
      const results = await syncOnce(source, replica, DDL);
      // Assess
      expect(results.map((r) => [r.outcome, r.changes])).toEqual([['applied', 4]]);
      const sql = 'SELECT * FROM app.items';
      expect(await rowsOf(replica, sql)).toEqual(await rowsOf(source, sql));
      expect(await rowsOf(replica, sql)).toEqual(['(1,one,7.00)', '(2,two,0.00)', '(3,three,4.50)']);
      expect((await replica.query("SELECT to_regclass('app.extra') IS NOT NULL AS made")).rows[0].made).toBe(true);
    });

    it("uses the source's search path for the statement only", async () => {
      const { source, replica } = await pair();
      await source.query(`BEGIN; SET LOCAL search_path = app; SELECT pgfanout.replicate_ddl('CREATE TABLE made_here (id int)'); COMMIT`);
      await syncOnce(source, replica, DDL);
      expect((await replica.query("SELECT to_regclass('app.made_here')::text AS t, current_setting('search_path') AS path")).rows[0]).toEqual({
        t: 'app.made_here',
        path: '"$user", public',
      });
    });

    it('replays data changes made by the statement itself, so source and replica agree', async () => {
      const { source, replica } = await pair();
      await source.query("INSERT INTO app.items SELECT i, 'v' || i FROM generate_series(1, 3) i");
      await source.query("SELECT pgfanout.replicate_ddl('ALTER TABLE app.items ADD COLUMN upper_v text; UPDATE app.items SET upper_v = upper(v)')");
      await source.query("UPDATE app.items SET upper_v = 'changed' WHERE id = 2");
      await syncOnce(source, replica, DDL);
      const sql = 'SELECT * FROM app.items';
      expect(await rowsOf(replica, sql)).toEqual(await rowsOf(source, sql));
      expect(await rowsOf(replica, sql)).toContain('(1,v1,V1)');
    });

    it('a statement that fails on the replica is a permanent error naming it and its position; nothing is applied', async () => {
      // Prepare: the replica already has the column the source adds
      const { source, replica } = await pair();
      await replica.query('ALTER TABLE app.items ADD COLUMN qty int');
      await source.query("SELECT pgfanout.replicate_ddl('ALTER TABLE app.items ADD COLUMN qty int'); INSERT INTO app.items VALUES (1, 'one', 5)");
      // Act
      const batch = await publishNext(source);
      const body = batch?.messages[0]?.body as string;
      const error = await applyMessage(replica, body, DDL).catch((err: unknown) => err);
      // Assess
      expect(error).toBeInstanceOf(SchemaChangeError);
      expect((error as SchemaChangeError).permanent).toBe(true);
      expect((error as SchemaChangeError).message).toMatch(
        /^replica could not run the schema change "ALTER TABLE app.items ADD COLUMN qty int" \(part 0 changes\[0\], batch 1, part 0, source [0-9a-f-]+\): column "qty" of relation "items" already exists \[SQLSTATE 42701\]; nothing applied$/,
      );
      expect(await replicaPosition(replica, JSON.parse(body).source)).toBe(null);
      expect((await replica.query('SELECT count(*)::int AS n FROM app.items')).rows[0].n).toBe(0);
    });

    it('runs a statement split across messages once it is whole', async () => {
      const { source, replica } = await pair();
      const comment = 'x'.repeat(5000);
      await source.query('SELECT pgfanout.replicate_ddl($1)', [`COMMENT ON TABLE app.items IS '${comment}'`]);
      await source.query("INSERT INTO app.items VALUES (1, 'after')");
      const results = await syncOnce(source, replica, DDL, { maxMessageBytes: 1024 });
      expect(results.length).toBeGreaterThan(3);
      expect((await replica.query("SELECT obj_description('app.items'::regclass) AS c")).rows[0].c).toBe(comment);
      expect(await rowsOf(replica, 'SELECT * FROM app.items')).toEqual(['(1,after)']);
    });
  });

  describe('DDL capture through event triggers', () => {
    it('logs CREATE/ALTER/DROP TABLE in schemas with captured tables, adds tables created in auto-add schemas, and ignores other schemas', async () => {
      // Prepare
      const { source, replica } = await pair();
      await source.query("CREATE SCHEMA scratch; SELECT pgfanout.auto_add_schema('app'); SELECT pgfanout.enable_ddl_capture()");
      await source.query('SELECT pgfanout.enable_ddl_capture()'); // idempotent
      // Act
      await source.query('CREATE TABLE app.orders (id int PRIMARY KEY, total numeric)');
      await source.query('ALTER TABLE app.items ADD COLUMN note text');
      await source.query('CREATE TABLE scratch.tmp (id int)');
      await source.query("INSERT INTO app.orders VALUES (1, 9.5); INSERT INTO app.items VALUES (1, 'a', 'n')");
      await source.query('DROP TABLE app.orders');
      const changes = await syncChanges(source, replica, DDL);
      // Assess
      expect(changes.map((e) => `${e.op} ${e.schema}.${e.table}`)).toEqual(['S app.orders', 'S app.items', 'I app.orders', 'I app.items', 'S app.orders']);
      expect(changes.filter((e) => e.op === 'S').map((e) => e.new?.sql)).toEqual([
        'CREATE TABLE app.orders (id int PRIMARY KEY, total numeric)',
        'ALTER TABLE app.items ADD COLUMN note text',
        'DROP TABLE app.orders',
      ]);
      // The replica followed.
      expect(await rowsOf(replica, 'SELECT * FROM app.items')).toEqual(['(1,a,n)']);
      expect((await replica.query("SELECT to_regclass('app.orders') AS t")).rows[0].t).toBe(null);
    });

    it('logs a string of several statements once, and nothing more for replicate_ddl or for the applier', async () => {
      // Prepare
      const { source } = await pair();
      await source.query('SELECT pgfanout.enable_ddl_capture()');
      // Act
      await source.query('ALTER TABLE app.items ADD COLUMN a int; ALTER TABLE app.items ADD COLUMN b int');
      await source.query("SELECT pgfanout.replicate_ddl('ALTER TABLE app.items ADD COLUMN c int')");
      // Assess
      expect(schemaChanges(await drainEvents(source)).map((e) => e.row?.sql)).toEqual([
        'ALTER TABLE app.items ADD COLUMN a int; ALTER TABLE app.items ADD COLUMN b int',
        'ALTER TABLE app.items ADD COLUMN c int',
      ]);
      // A database that is also a source, with DDL capture on, applies schema changes without logging them.
      const both = (await database('both')).client;
      await both.query(`CREATE SCHEMA app; CREATE TABLE app.items (id int PRIMARY KEY, v text, a int, b int, c int);
        SELECT pgfanout.add_table('app.items'); SELECT pgfanout.enable_ddl_capture()`);
      // It holds the source's state up to now: start it there.
      const at = (await source.query('SELECT pgfanout.source_id() AS id, finished_batch_id AS b FROM pgfanout.status()')).rows[0];
      await both.query('SELECT pgfanout.replica_start($1, $2)', [at.id, at.b]);
      await source.query("SELECT pgfanout.replicate_ddl('ALTER TABLE app.items ADD COLUMN d int')");
      await source.query('ALTER TABLE app.items ADD COLUMN e int');
      await syncOnce(source, both, { ...DDL, replicationRole: 'origin-guard' });
      await source.query('CREATE TABLE app.f (id int); ALTER TABLE app.items ADD COLUMN g int');
      await syncOnce(source, both, { ...DDL, replicationRole: 'replica' });
      expect(await drainEvents(both)).toEqual([]);
      const columns = await both.query("SELECT string_agg(attname, ',' ORDER BY attnum) AS c FROM pg_attribute WHERE attrelid = 'app.items'::regclass AND attnum > 0");
      expect(columns.rows[0].c).toBe('id,v,a,b,c,d,e,g');
    });

    it('enable_ddl_capture needs a superuser and says what to do instead', async () => {
      const { client } = await database('source');
      await client.query('GRANT USAGE ON SCHEMA pgfanout TO ddl_caller; GRANT EXECUTE ON FUNCTION pgfanout.enable_ddl_capture() TO ddl_caller');
      const name = (await client.query('SELECT current_database() AS d')).rows[0].d as string;
      const caller = new pg.Client(`postgres://ddl_caller:caller-password@127.0.0.1:${server.port}/${name}`);
      await caller.connect();
      clients.push(caller);
      const error = await caller.query('SELECT pgfanout.enable_ddl_capture()').catch((err: { message: string; hint: string }) => err);
      expect(error).toMatchObject({
        message: 'pgfanout.enable_ddl_capture: role ddl_caller may not create event triggers',
        hint: 'Event triggers need a superuser (on Amazon RDS and Aurora, a member of rds_superuser). Without one, run schema changes through pgfanout.replicate_ddl(...).',
      });
      await client.query('SELECT pgfanout.enable_ddl_capture(); SELECT pgfanout.disable_ddl_capture()');
      expect((await client.query("SELECT count(*)::int AS n FROM pg_event_trigger WHERE evtname LIKE 'pgfanout%'")).rows[0].n).toBe(0);
    });
  });
});
