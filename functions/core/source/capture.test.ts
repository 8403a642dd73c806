/**
 * The source side's capture: add_table and friends, row identity, the events' exact text
 * values, hostile identifiers, partitioned and generated columns, the origin guard. Every
 * test runs on a real server of each tested major, in its own database.
 */
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { quoteIdent } from '../pg/sql.ts';
import { connect, drainEvents, qualified, sourceDatabase, takeBatch, type CapturedEvent } from '#testing/source.ts';
import { describeEachMajor } from '#testing/servers.ts';

/**
 * The server's own text of every column of the rows `sql` returns, keyed by column name: the
 * text its output functions send (the clients here parse nothing). That is what capture must
 * reproduce; a `::text` cast is not always the same (boolean gives true/false, char(n) drops
 * its padding, inet adds the netmask).
 */
async function serverText(client: pg.ClientBase, sql: string, values: unknown[] = []): Promise<Record<string, string | null>[]> {
  const { rows } = await client.query<Record<string, string | null>>(sql, values);
  return rows;
}

/** Error message of a query expected to fail. */
async function failure(client: pg.ClientBase, sql: string, values: unknown[] = []): Promise<string> {
  return client.query(sql, values).then(
    () => 'no error',
    (err: Error) => err.message,
  );
}

const summary = (events: readonly CapturedEvent[]) => events.map((e) => `${e.op} ${e.schema}.${e.table}`);

describeEachMajor('capture on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let url: string;
  let db: pg.Client;

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
  });
  afterAll(async () => {
    await server?.stop();
  });

  async function freshSource(): Promise<pg.Client> {
    await db?.end().catch(() => undefined);
    url = await sourceDatabase(server);
    db = await connect(url);
    return db;
  }

  describe('add_table, remove_table, show_tables, add_all_tables', () => {
    it('add_table installs the triggers; show_tables lists the table, its identity and when it was added', async () => {
      // Prepare
      const c = await freshSource();
      await c.query('CREATE TABLE orders (id int PRIMARY KEY, note text)');
      // Act
      await c.query("SELECT pgfanout.add_table('orders')");
      // Assess
      const triggers = await serverText(c, "SELECT tgname, tgfoid::regproc::text AS fn FROM pg_trigger WHERE tgrelid = 'orders'::regclass ORDER BY tgname");
      expect(triggers).toEqual([
        { tgname: 'pgfanout_capture', fn: 'pgfanout.capture_key' },
        { tgname: 'pgfanout_capture_truncate', fn: 'pgfanout.capture_truncate' },
      ]);
      const shown = await serverText(c, 'SELECT table_schema, table_name, identity_kind, identity_columns, identity_ok, added_at <= now() AS past FROM pgfanout.show_tables()');
      expect(shown).toEqual([{ table_schema: 'public', table_name: 'orders', identity_kind: 'primary key', identity_columns: '{id}', identity_ok: 't', past: 't' }]);
    });

    it('add_table refuses a table that is already added, naming it', async () => {
      const c = await freshSource();
      await c.query('CREATE TABLE "Order Lines" (id int PRIMARY KEY)');
      await c.query(`SELECT pgfanout.add_table('"Order Lines"')`);
      expect(await failure(c, `SELECT pgfanout.add_table('"Order Lines"')`)).toBe('pgfanout.add_table: table public."Order Lines" is already added');
    });

    it('add_table refuses what it cannot capture, saying what it is and what is allowed', async () => {
      // Prepare
      const c = await freshSource();
      await c.query('CREATE TABLE t (id int PRIMARY KEY)');
      await c.query('CREATE VIEW v AS SELECT * FROM t');
      await c.query('CREATE TABLE p (id int) PARTITION BY RANGE (id)');
      await c.query('CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10)');
      await c.query('CREATE TEMPORARY TABLE tmp (id int)');
      // Act + Assess
      expect(await failure(c, "SELECT pgfanout.add_table('v')")).toBe(
        'pgfanout.add_table: public.v is a view, not a table; only plain and partitioned tables can be added',
      );
      expect(await failure(c, "SELECT pgfanout.add_table('p1')")).toBe('pgfanout.add_table: public.p1 is a partition of public.p; add the partitioned table instead');
      expect(await failure(c, "SELECT pgfanout.add_table('tmp')")).toMatch(/^pgfanout\.add_table: pg_temp_\d+\.tmp is a temporary table; only permanent and unlogged tables can be added$/);
      expect(await failure(c, "SELECT pgfanout.add_table('pgfanout.batch')")).toBe("pgfanout.add_table: pgfanout.batch is one of pgfanout's own tables; they are not captured");
      expect(await failure(c, 'SELECT pgfanout.add_table(NULL)')).toBe('pgfanout.add_table: the table must not be NULL');
      expect((await serverText(c, 'SELECT count(*) AS n FROM pgfanout.show_tables()'))[0]?.n).toBe('0');
    });

    it('remove_table stops capture and keeps what was logged; removing a table that is not added is an error', async () => {
      // Prepare
      const c = await freshSource();
      await c.query('CREATE TABLE t (id int PRIMARY KEY)');
      await c.query("SELECT pgfanout.add_table('t')");
      await c.query('INSERT INTO t VALUES (1)');
      // Act
      await c.query("SELECT pgfanout.remove_table('t')");
      await c.query('INSERT INTO t VALUES (2)');
      // Assess
      expect((await serverText(c, "SELECT count(*) AS n FROM pg_trigger WHERE tgrelid = 't'::regclass"))[0]?.n).toBe('0');
      expect((await serverText(c, 'SELECT count(*) AS n FROM pgfanout.show_tables()'))[0]?.n).toBe('0');
      expect((await drainEvents(c)).map((e) => e.row)).toEqual([{ id: '1' }]);
      expect(await failure(c, "SELECT pgfanout.remove_table('t')")).toBe('pgfanout.remove_table: table public.t is not added');
    });

    it("add_all_tables adds every table of a schema not added yet, skipping partitions, temporary tables and pgfanout's own", async () => {
      // Prepare
      const c = await freshSource();
      await c.query('CREATE SCHEMA shop');
      await c.query('CREATE TABLE shop.b (id int PRIMARY KEY)');
      await c.query('CREATE TABLE shop.a (id int)');
      await c.query('CREATE TABLE shop.c (id int PRIMARY KEY)');
      await c.query('CREATE TABLE shop.p (id int) PARTITION BY RANGE (id)');
      await c.query('CREATE TABLE shop.p_1 PARTITION OF shop.p FOR VALUES FROM (0) TO (10)');
      await c.query('CREATE VIEW shop.v AS SELECT 1 AS x');
      await c.query("SELECT pgfanout.add_table('shop.c')");
      // Act
      const added = await serverText(c, "SELECT t::text AS t FROM pgfanout.add_all_tables('shop') AS t");
      const again = await serverText(c, "SELECT t::text AS t FROM pgfanout.add_all_tables('shop') AS t");
      const own = await serverText(c, "SELECT t::text AS t FROM pgfanout.add_all_tables('pgfanout') AS t");
      // Assess
      expect(added.map((r) => r.t)).toEqual(['shop.a', 'shop.b', 'shop.p']);
      expect(again).toEqual([]);
      expect(own).toEqual([]);
      expect((await serverText(c, 'SELECT table_name FROM pgfanout.show_tables()')).map((r) => r.table_name)).toEqual(['a', 'b', 'c', 'p']);
      expect(await failure(c, "SELECT * FROM pgfanout.add_all_tables('nope')")).toBe('pgfanout.add_all_tables: schema nope does not exist');
    });
  });

  describe('row identity', () => {
    it('is the primary key (in key order), else the unique NOT NULL index with the fewest columns, else none', async () => {
      // Prepare
      const c = await freshSource();
      await c.query('CREATE TABLE pk (a int, b int, v text, PRIMARY KEY (b, a), UNIQUE (v))');
      await c.query(`CREATE TABLE uq (a int NOT NULL, b int NOT NULL, c int, d int NOT NULL, e int NOT NULL, v text,
                       UNIQUE (a, b), UNIQUE (c))`);
      await c.query('CREATE UNIQUE INDEX uq_partial ON uq (e) WHERE e > 0');
      await c.query('CREATE UNIQUE INDEX uq_expr ON uq ((e + 1))');
      await c.query('CREATE UNIQUE INDEX uq_d ON uq (d) INCLUDE (v)');
      await c.query('CREATE TABLE nul (a int, v text, UNIQUE (a))');
      await c.query('CREATE TABLE bare (a int, v text)');
      // Act
      for (const t of ['pk', 'uq', 'nul', 'bare']) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
      for (const t of ['pk', 'uq', 'nul', 'bare']) await c.query(`UPDATE ${quoteIdent(t)} SET v = 'x'`);
      await c.query("INSERT INTO pk VALUES (1, 2, 'a'); INSERT INTO uq VALUES (1, 2, NULL, 4, 5, 'a'); INSERT INTO nul VALUES (1, 'a'); INSERT INTO bare VALUES (1, 'a')");
      await c.query("UPDATE pk SET v = 'b'; UPDATE uq SET v = 'b'; UPDATE nul SET v = 'b'; UPDATE bare SET v = 'b'");
      await c.query('DELETE FROM pk; DELETE FROM bare');
      // Assess
      const shown = await serverText(c, 'SELECT table_name, identity_kind, identity_columns FROM pgfanout.show_tables()');
      expect(shown).toEqual([
        { table_name: 'bare', identity_kind: 'none', identity_columns: '{}' },
        { table_name: 'nul', identity_kind: 'none', identity_columns: '{}' },
        { table_name: 'pk', identity_kind: 'primary key', identity_columns: '{b,a}' },
        { table_name: 'uq', identity_kind: 'unique index', identity_columns: '{d}' },
      ]);
      const keys = (await drainEvents(c)).filter((e) => e.op !== 'I').map((e) => [e.op, e.table, e.key]);
      expect(keys).toEqual([
        ['U', 'pk', { a: '1', b: '2' }],
        ['U', 'uq', { d: '4' }],
        ['U', 'nul', { a: '1', v: 'a' }],
        ['U', 'bare', { a: '1', v: 'a' }],
        ['D', 'pk', { a: '1', b: '2' }],
        ['D', 'bare', { a: '1', v: 'b' }],
      ]);
    });

    it('after an identity column is renamed, updates and deletes log the whole old row until the table is added again', async () => {
      // Prepare
      const c = await freshSource();
      await c.query("CREATE TABLE ren (id int PRIMARY KEY, v text); INSERT INTO ren VALUES (1, 'a'), (2, 'b')");
      await c.query("SELECT pgfanout.add_table('ren')");
      // Act
      await c.query('ALTER TABLE ren RENAME COLUMN id TO ident');
      await c.query("UPDATE ren SET v = 'c' WHERE ident = 1");
      const stale = await serverText(c, 'SELECT identity_columns, identity_ok FROM pgfanout.show_tables()');
      await c.query("SELECT pgfanout.remove_table('ren'); SELECT pgfanout.add_table('ren')");
      await c.query('DELETE FROM ren WHERE ident = 2');
      // Assess
      expect(stale).toEqual([{ identity_columns: '{id}', identity_ok: 'f' }]);
      expect((await serverText(c, 'SELECT identity_columns, identity_ok FROM pgfanout.show_tables()'))[0]).toEqual({ identity_columns: '{ident}', identity_ok: 't' });
      expect((await drainEvents(c)).map((e) => [e.op, e.key])).toEqual([
        ['U', { ident: '1', v: 'a' }],
        ['D', { ident: '2' }],
      ]);
    });
  });

  describe('events', () => {
    const TYPES = `
      CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
      CREATE TYPE pair AS (x int, y text);
      CREATE DOMAIN positive AS int CHECK (VALUE > 0);
      CREATE TABLE typed (
        id bigint PRIMARY KEY, i2 smallint, i4 integer, i8 bigint, num numeric, f4 real, f8 double precision,
        b boolean, t text, vc varchar(10), ch char(5), by bytea, d date, ts timestamp, tstz timestamptz,
        tm time, tmtz timetz, iv interval, u uuid, j json, jb jsonb, ia int[], ta text[], e mood, c pair,
        r int4range, tr tstzrange, ip inet, net cidr, mac macaddr, m money, bits bit(4), vb varbit,
        pt point, tv tsvector, pos positive, o oid)`;
    const TRICKY = `INSERT INTO typed VALUES (
        1, -32768, 2147483647, -9223372036854775808,
        '-123456789012345678901234567890.123456789012345678901234567890', 3.4028235e38, 0.1::float8 + 0.2::float8,
        true, E'tab\\there\\nnew line \\\\ back\\\\slash "double" ''single'' \\r cr 🐘 ünïcödé', 'ten chars!', 'ab', '\\x00ff10',
        '4713-01-01 BC', '0001-01-01 00:00:00 BC', '2024-02-29 23:59:59.999999+05:30',
        '24:00:00', '23:59:59.5-14:59', '-1 year +2 mons -3 days +04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        '{"b": 1,  "a": [1, 2.50, "x"]}', '{"b": 1, "a": [1, 2.50, "x"]}', '{1,NULL,3}', ARRAY['a b', 'c,d', 'e"f', NULL, 'NULL', ''],
        'happy', ROW(1, 'x y'), '[1,10)', '["2024-01-01 00:00:00+00",infinity)', '192.168.0.1/24', '10.0.0.0/8', '08:00:2b:01:02:03',
        12.34, B'1010', B'101', '(1.5,-2)', 'a fat cat sat', 5, 42)`;

    it('INSERT, UPDATE, DELETE and TRUNCATE carry every column as the server’s own text, in order, one transaction id each', async () => {
      // Prepare
      const c = await freshSource();
      await c.query(TYPES);
      await c.query("SELECT pgfanout.add_table('typed')");
      // Act
      await c.query(TRICKY);
      await c.query('INSERT INTO typed (id) VALUES (2)');
      const inserted = await serverText(c, 'SELECT * FROM typed ORDER BY id');
      await c.query("BEGIN; UPDATE typed SET t = 'changed', f8 = '-0', ta = '{}' WHERE id = 1; DELETE FROM typed WHERE id = 2; COMMIT");
      const updated = await serverText(c, 'SELECT * FROM typed WHERE id = 1');
      await c.query('TRUNCATE typed');
      const taken = await takeBatch(c);
      // Assess
      expect(taken?.batch).toMatchObject({ batch_id: '1', prev_batch_id: '0', event_count: '5' });
      const events = taken?.events ?? [];
      expect(events.map((e) => e.op)).toEqual(['I', 'I', 'U', 'D', 'T']);
      expect(events.map((e) => Number(e.id))).toEqual([...events.map((e) => Number(e.id))].sort((a, b) => a - b));
      expect(events.every((e) => e.schema === 'public' && e.table === 'typed')).toBe(true);
      expect(events[0]?.row).toEqual(inserted[0]);
      expect(events[0]?.row?.f8).toBe('0.30000000000000004');
      expect(events[0]?.row?.t).toBe('tab\there\nnew line \\ back\\slash "double" \'single\' \r cr 🐘 ünïcödé');
      expect(events[1]?.row).toEqual(inserted[1]);
      expect(Object.values(events[1]?.row ?? {}).filter((v) => v !== null)).toEqual(['2']);
      expect(events[0]?.key).toBeUndefined();
      expect(events[2]).toMatchObject({ key: { id: '1' }, row: updated[0] });
      expect(events[2]?.row?.f8).toBe('-0');
      expect(events[2]?.txid).toBe(events[3]?.txid);
      expect(events[3]).toMatchObject({ key: { id: '2' } });
      expect(events[3]?.row).toBeUndefined();
      expect(events[4]?.key).toBeUndefined();
      expect(events[4]?.row).toBeUndefined();
      // batch_values: rows ordered by ev_id, image, col; TRUNCATE is one '-' row
      const rows = taken?.rows ?? [];
      const order = rows.map((r) => [Number(r.ev_id), r.image, r.col ?? '']);
      const bytewise = (x: string, y: string) => Buffer.compare(Buffer.from(x), Buffer.from(y));
      const sorted = [...order].sort((x, y) => (x[0] as number) - (y[0] as number) || bytewise(x[1] as string, y[1] as string) || bytewise(x[2] as string, y[2] as string));
      expect(order).toEqual(sorted);
      expect(rows.filter((r) => r.ev_op === 'T')).toEqual([expect.objectContaining({ image: '-', col: null, value: null })]);
    });

    it('captures exact text whatever the writing session’s output settings', async () => {
      // Prepare
      const c = await freshSource();
      await c.query('CREATE TABLE s (id int PRIMARY KEY, f8 float8, f4 real, tstz timestamptz, ts timestamp, d date, iv interval, by bytea)');
      await c.query("SELECT pgfanout.add_table('s')");
      const writer = await connect(url);
      try {
        // Act: a session with lossy or ambiguous output settings writes
        await writer.query("SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard'; SET extra_float_digits = 0; SET TimeZone = 'America/New_York'; SET bytea_output = 'escape'");
        await writer.query(
          "INSERT INTO s VALUES (1, 0.1::float8 + 0.2::float8, 1.0000001::real, '2024-03-04 05:06:07.123456+00', '2024-03-04 05:06:07', '2024-03-04', '-1 day +02:03:04', '\\x00ff')",
        );
        await writer.query("UPDATE s SET iv = '1 year -2 mons', f4 = 3.4028235e38 WHERE id = 1");
      } finally {
        await writer.end();
      }
      // Assess: equal to the text a session with exact settings reads (same time zone, and
      // bytea_output, whose two formats are both exact)
      await c.query("SET TimeZone = 'America/New_York'; SET bytea_output = 'escape'");
      const exact = await serverText(c, 'SELECT * FROM s');
      const [insert, update] = await drainEvents(c);
      expect(update?.row).toEqual(exact[0]);
      expect(insert?.row).toMatchObject({ f8: '0.30000000000000004', f4: '1.0000001', tstz: '2024-03-04 00:06:07.123456-05', d: '2024-03-04', iv: '-1 days +02:03:04' });
      expect(update?.row).toMatchObject({ iv: '10 mons', f4: '3.4028235e+38' });
    });

    it('names schemas, tables and columns exactly, however hostile', async () => {
      // Prepare
      const c = await freshSource();
      const schemas = ['we"ird Schema', 'SELECT', `${'é'.repeat(31)}x`];
      const tables = ['My "Table" With Spaces', 'order', 'b'.repeat(63), 'Ünïcödé tåble'];
      const columns = ['Id', 'select', 'col"quote', 'with space', 'ünï', 'c'.repeat(63)];
      expect(Buffer.byteLength(schemas[2] as string)).toBe(63);
      const created: [string, string][] = [];
      for (const [i, schema] of schemas.entries()) {
        await c.query(`CREATE SCHEMA ${quoteIdent(schema)}`);
        const table = tables[i] as string;
        await c.query(`CREATE TABLE ${qualified(schema, table)} (${columns.map((col) => `${quoteIdent(col)} text`).join(', ')}, PRIMARY KEY (${quoteIdent('col"quote')}, ${quoteIdent('Id')}))`);
        await c.query('SELECT pgfanout.add_table($1::regclass)', [qualified(schema, table)]);
        created.push([schema, table]);
      }
      await c.query(`CREATE TABLE public.${quoteIdent(tables[3] as string)} (${quoteIdent(columns[5] as string)} int)`);
      await c.query('SELECT pgfanout.add_table($1::regclass)', [qualified('public', tables[3] as string)]);
      // Act
      for (const [schema, table] of created) {
        await c.query(`INSERT INTO ${qualified(schema, table)} VALUES ('1', '2', '3', '4', '5', '6')`);
        await c.query(`UPDATE ${qualified(schema, table)} SET ${quoteIdent('ünï')} = 'x'`);
      }
      await c.query(`INSERT INTO public.${quoteIdent(tables[3] as string)} VALUES (1)`);
      // Assess
      const events = await drainEvents(c);
      expect(events.map((e) => [e.op, e.schema, e.table])).toEqual([
        ...created.flatMap(([s, t]) => [['I', s, t], ['U', s, t]]),
        ['I', 'public', tables[3]],
      ]);
      expect(events[0]?.row).toEqual(Object.fromEntries(columns.map((col, i) => [col, String(i + 1)])));
      expect(events[1]?.key).toEqual({ 'col"quote': '3', Id: '1' });
      expect(events.at(-1)?.row).toEqual({ [columns[5] as string]: '1' });
      const shown = await serverText(c, 'SELECT table_schema, table_name, identity_columns FROM pgfanout.show_tables()');
      expect(shown).toContainEqual({ table_schema: schemas[0], table_name: tables[0], identity_columns: '{"col\\"quote",Id}' });
      for (const [schema, table] of created) await c.query('SELECT pgfanout.remove_table($1::regclass)', [qualified(schema, table)]);
      expect((await serverText(c, 'SELECT count(*) AS n FROM pgfanout.show_tables()'))[0]?.n).toBe('1');
    });

    it('a partitioned table: events name it, row movement is a delete and an insert, later partitions are captured too', async () => {
      // Prepare
      const c = await freshSource();
      await c.query(`CREATE TABLE parted (id int, region text, v text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
                     CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
                     CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us')`);
      await c.query("SELECT pgfanout.add_table('parted')");
      // Act
      await c.query("INSERT INTO parted VALUES (1, 'eu', 'a')");
      await c.query("UPDATE parted SET region = 'us' WHERE id = 1");
      await c.query("CREATE TABLE parted_asia PARTITION OF parted FOR VALUES IN ('asia'); INSERT INTO parted VALUES (2, 'asia', 'b')");
      await c.query("CREATE TABLE parted_af (LIKE parted); ALTER TABLE parted ATTACH PARTITION parted_af FOR VALUES IN ('af'); INSERT INTO parted VALUES (3, 'af', 'c')");
      await c.query(`CREATE TABLE parted_sa PARTITION OF parted FOR VALUES IN ('sa') PARTITION BY RANGE (id);
                     CREATE TABLE parted_sa_low PARTITION OF parted_sa FOR VALUES FROM (0) TO (100);
                     INSERT INTO parted VALUES (4, 'sa', 'd')`);
      await c.query("UPDATE parted SET v = 'z' WHERE id = 2; DELETE FROM parted_sa_low");
      await c.query('TRUNCATE parted');
      // Assess
      const events = await drainEvents(c);
      expect(summary(events)).toEqual([
        'I public.parted',
        'D public.parted',
        'I public.parted',
        'I public.parted',
        'I public.parted',
        'I public.parted',
        'U public.parted',
        'D public.parted',
        'T public.parted',
      ]);
      expect(events[1]?.key).toEqual({ id: '1', region: 'eu' });
      expect(events[2]?.row).toEqual({ id: '1', region: 'us', v: 'a' });
      expect(events[6]).toMatchObject({ key: { id: '2', region: 'asia' }, row: { id: '2', region: 'asia', v: 'z' } });
      expect(events[7]?.key).toEqual({ id: '4', region: 'sa' });
      expect(await failure(c, "SELECT pgfanout.add_table('parted_sa_low')")).toBe(
        'pgfanout.add_table: public.parted_sa_low is a partition of public.parted_sa; add the partitioned table instead',
      );
    });

    it('generated columns appear in new-row images (the replica does not write them)', async () => {
      // Prepare
      const c = await freshSource();
      const virtual = major >= 18 ? ', tripled int GENERATED ALWAYS AS (a * 3) VIRTUAL' : '';
      await c.query(`CREATE TABLE gen (id int PRIMARY KEY, a int, doubled int GENERATED ALWAYS AS (a * 2) STORED${virtual})`);
      await c.query("SELECT pgfanout.add_table('gen')");
      // Act
      await c.query('INSERT INTO gen (id, a) VALUES (1, 5)');
      await c.query('UPDATE gen SET a = 6');
      // Assess: stored generated columns carry their value; PostgreSQL 18's virtual ones are
      // not computed for AFTER triggers and appear as NULL
      const [insert, update] = await drainEvents(c);
      expect(insert?.row).toEqual({ id: '1', a: '5', doubled: '10', ...(major >= 18 ? { tripled: null } : {}) });
      expect(update?.row).toEqual({ id: '1', a: '6', doubled: '12', ...(major >= 18 ? { tripled: null } : {}) });
    });

    it('nothing is captured while pgfanout.origin is set (the applier’s loop guard), row by row', async () => {
      // Prepare
      const c = await freshSource();
      await c.query('CREATE TABLE t (id int PRIMARY KEY)');
      await c.query("SELECT pgfanout.add_table('t')");
      // Act
      await c.query("BEGIN; SELECT set_config('pgfanout.origin', 'source-a', true); INSERT INTO t VALUES (1); TRUNCATE t; COMMIT");
      await c.query("BEGIN; INSERT INTO t VALUES (2); SELECT set_config('pgfanout.origin', 'source-a', true); INSERT INTO t VALUES (3); COMMIT");
      await c.query("SET pgfanout.origin = 'source-b'; INSERT INTO t VALUES (4); RESET pgfanout.origin; INSERT INTO t VALUES (5)");
      await c.query("SET pgfanout.origin = ''; INSERT INTO t VALUES (6)");
      // Assess
      expect((await drainEvents(c)).map((e) => e.row?.id)).toEqual(['2', '5', '6']);
    });

    it('TRUNCATE of several captured tables at once logs one event each; CASCADE too', async () => {
      const c = await freshSource();
      await c.query('CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (id int PRIMARY KEY, p int REFERENCES parent); CREATE TABLE other (id int)');
      for (const t of ['parent', 'child', 'other']) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
      await c.query('TRUNCATE other, parent CASCADE');
      expect(summary(await drainEvents(c)).sort()).toEqual(['T public.child', 'T public.other', 'T public.parent']);
    });
  });

  afterAll(async () => {
    await db?.end().catch(() => undefined);
  });
});
