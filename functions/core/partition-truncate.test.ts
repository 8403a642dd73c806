/**
 * TRUNCATE of one partition or sub-partition of a captured partitioned table, on real servers:
 * how PostgreSQL fires TRUNCATE triggers on a partition tree (what capture relies on), the
 * events capture logs (one per truncated subtree, naming the captured table and the partition),
 * partitions created or attached after add_table, and the replica afterwards: exact (verify),
 * or a clear error when its table is not partitioned like the source's.
 */
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { createDatabase, describeEachMajor, type TestDatabase } from '#testing/servers.ts';
import { drainEvents } from '#testing/source.ts';
import { publishNext, syncChanges, syncOnce } from '#testing/stream.ts';
import { installReplica, installSource } from '../ops/install.ts';
import { verifyTables } from '../ops/verify.ts';
import { applyMessage } from './replica/index.ts';
import { SchemaMismatchError } from './wire/errors.ts';

/** A partitioned table two levels deep: measure → measure_2023 (by city) → measure_2023_oslo, …; measure_2024. */
const DDL = `
CREATE TABLE public.measure (at date NOT NULL, city text NOT NULL, v numeric, PRIMARY KEY (at, city)) PARTITION BY RANGE (at);
CREATE TABLE public.measure_2023 PARTITION OF public.measure FOR VALUES FROM ('2023-01-01') TO ('2024-01-01') PARTITION BY LIST (city);
CREATE TABLE public.measure_2023_oslo PARTITION OF public.measure_2023 FOR VALUES IN ('Oslo');
CREATE TABLE public.measure_2023_other PARTITION OF public.measure_2023 DEFAULT;
CREATE TABLE public.measure_2024 PARTITION OF public.measure FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE public.other (id int PRIMARY KEY);
`;

/** Rows in every partition of measure. */
const FILL = `INSERT INTO public.measure
  SELECT d::date, c, (extract(doy FROM d) * 10)::numeric
    FROM generate_series('2023-01-01'::date, '2024-12-31'::date, interval '9 days') AS d,
         unnest(ARRAY['Oslo', 'Lima']) AS c
  ON CONFLICT DO NOTHING`;

const summary = (events: readonly { op: string; schema: string; table: string; key?: Readonly<Record<string, string | null>> }[]) =>
  events.map((e) => `${e.op} ${e.schema}.${e.table}${e.key ? ` ${e.key.schema}.${e.key.table}` : ''}`);

async function count(client: pg.ClientBase, table: string): Promise<number> {
  const { rows } = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`);
  return Number(rows[0]?.n);
}

describeEachMajor('TRUNCATE of partitions on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let source: TestDatabase;
  let replica: TestDatabase;
  let n = 0;

  /** A new source and replica pair with DDL on both, measure captured, every batch so far applied. */
  async function pair(replicaDdl = DDL): Promise<void> {
    await Promise.all([source?.client.end(), replica?.client.end()]);
    n++;
    [source, replica] = await Promise.all([createDatabase(server, `pt_source_${n}`), createDatabase(server, `pt_replica_${n}`)]);
    await installSource(source.client);
    await installReplica(replica.client);
    await source.client.query(DDL);
    await replica.client.query(replicaDdl);
    await source.client.query("SELECT pgfanout.add_table('public.measure'), pgfanout.add_table('public.other')");
  }

  async function expectExact(): Promise<void> {
    const report = await verifyTables(source.client, replica.client, [{ schema: 'public', table: 'measure' }, { schema: 'public', table: 'other' }]);
    expect(report.differences).toEqual([]);
  }

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
  });
  afterAll(async () => {
    await Promise.all([source?.client.end(), replica?.client.end()]);
    await server?.stop();
  });

  it('PostgreSQL fires TRUNCATE triggers as capture relies on: the parent’s TRUNCATE fires every partition’s, a partition’s never its parent’s, and statement triggers are not cloned', async () => {
    // Prepare
    const { client: c } = await createDatabase(server, `pt_probe_${major}`);
    const fired: string[] = [];
    c.on('notice', (msg) => fired.push(msg.message ?? ''));
    await c.query(DDL);
    await c.query(`CREATE FUNCTION public.note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE NOTICE '%', TG_TABLE_NAME; RETURN NULL; END $$`);
    for (const t of ['measure', 'measure_2023', 'measure_2023_oslo', 'measure_2023_other', 'measure_2024']) {
      await c.query(`CREATE TRIGGER note AFTER TRUNCATE ON public.${t} FOR EACH STATEMENT EXECUTE FUNCTION public.note()`);
    }
    const run = async (sql: string) => {
      fired.length = 0;
      await c.query(sql);
      return [...fired];
    };
    // Act, Assess
    expect(await run('TRUNCATE public.measure')).toEqual(['measure', 'measure_2023', 'measure_2024', 'measure_2023_oslo', 'measure_2023_other']);
    expect(await run('TRUNCATE public.measure_2023')).toEqual(['measure_2023', 'measure_2023_oslo', 'measure_2023_other']);
    expect(await run('TRUNCATE public.measure_2023_oslo')).toEqual(['measure_2023_oslo']);
    await c.query("CREATE TABLE public.measure_2025 PARTITION OF public.measure FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')");
    expect((await c.query("SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.measure_2025'::regclass")).rows).toEqual([]);
    await c.end();
  });

  it('add_table puts the TRUNCATE trigger on every partition; one event per truncated subtree names the captured table and the partition', async () => {
    // Prepare
    await pair();
    const c = source.client;
    const { rows: triggers } = await c.query<{ rel: string; args: string }>(
      `SELECT tgrelid::regclass::text AS rel, encode(tgargs, 'escape') AS args FROM pg_trigger
        WHERE tgname = 'pgfanout_capture_truncate' ORDER BY 1`,
    );
    const measure = (await c.query<{ oid: string }>("SELECT 'public.measure'::regclass::oid::text AS oid")).rows[0]?.oid as string;
    expect(triggers).toEqual([
      { rel: 'measure', args: '' },
      { rel: 'measure_2023', args: `${measure}\\000` },
      { rel: 'measure_2023_oslo', args: `${measure}\\000` },
      { rel: 'measure_2023_other', args: `${measure}\\000` },
      { rel: 'measure_2024', args: `${measure}\\000` },
      { rel: 'other', args: '' },
    ]);
    // Act
    await c.query('TRUNCATE public.measure_2024');
    await c.query('TRUNCATE public.measure_2023_oslo');
    await c.query('TRUNCATE public.measure_2023');
    await c.query('TRUNCATE public.measure');
    await c.query('TRUNCATE public.measure_2024, public.measure, public.other');
    await c.query('TRUNCATE public.measure_2023_other, public.measure_2024');
    await c.query("BEGIN; TRUNCATE public.measure; INSERT INTO public.measure VALUES ('2024-02-02', 'Oslo', 1); TRUNCATE public.measure_2024; COMMIT");
    await c.query('BEGIN; TRUNCATE public.measure; TRUNCATE public.measure_2023_oslo; COMMIT');
    // Assess
    expect(summary(await drainEvents(c))).toEqual([
      'T public.measure public.measure_2024',
      'T public.measure public.measure_2023_oslo',
      'T public.measure public.measure_2023',
      'T public.measure',
      'T public.measure public.measure_2024',
      'T public.measure',
      'T public.other',
      'T public.measure public.measure_2023_other',
      'T public.measure public.measure_2024',
      'T public.measure',
      'I public.measure',
      'T public.measure public.measure_2024',
      // Nothing logged in between: the whole table's TRUNCATE already empties the partition.
      'T public.measure',
    ]);
  });

  it('replicates TRUNCATE of a partition, of a sub-partitioned partition and of a sub-partition; the whole table’s still once; the replica stays exact', async () => {
    // Prepare
    await pair();
    await source.client.query(FILL);
    await source.client.query('INSERT INTO public.other SELECT generate_series(1, 10)');
    await syncOnce(source.client, replica.client);
    await expectExact();
    expect(await count(replica.client, 'public.measure_2024')).toBeGreaterThan(0);
    // Act, Assess: one partition
    await source.client.query('TRUNCATE public.measure_2024');
    let changes = await syncChanges(source.client, replica.client);
    expect(changes).toEqual([{ op: 'T', schema: 'public', table: 'measure', txid: expect.any(String), old: { schema: 'public', table: 'measure_2024' } }]);
    expect(await count(replica.client, 'public.measure_2024')).toBe(0);
    expect(await count(replica.client, 'public.measure_2023')).toBeGreaterThan(0);
    await expectExact();
    // a sub-partition, then the sub-partitioned partition, with rows written between
    await source.client.query('TRUNCATE public.measure_2023_oslo');
    await source.client.query(FILL);
    await source.client.query('BEGIN; TRUNCATE public.measure_2023; INSERT INTO public.measure VALUES (\'2023-05-05\', \'Quito\', 3); COMMIT');
    await syncOnce(source.client, replica.client);
    await expectExact();
    expect(await count(replica.client, 'public.measure_2023')).toBe(1);
    // the whole table: one change
    await source.client.query('TRUNCATE public.measure');
    changes = await syncChanges(source.client, replica.client);
    expect(changes.map((ch) => [ch.op, ch.table, ch.old])).toEqual([['T', 'measure', undefined]]);
    expect(await count(replica.client, 'public.measure')).toBe(0);
    await expectExact();
  });

  it('captures TRUNCATE of partitions created or attached after add_table: replicate_ddl, DDL capture (any schema), and plain DDL after refresh_table', async () => {
    // Prepare
    await pair();
    await source.client.query('CREATE SCHEMA parts');
    await replica.client.query('CREATE SCHEMA parts');
    // Act: a partition through replicate_ddl (the replica gets it from the stream)
    await source.client.query(`SELECT pgfanout.replicate_ddl($$CREATE TABLE public.measure_2025 PARTITION OF public.measure FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')$$)`);
    // through DDL capture: one created in a schema without captured tables, one attached (its
    // table made by hand on both sides: that schema's DDL is not captured)
    await source.client.query('SELECT pgfanout.enable_ddl_capture()');
    await source.client.query("CREATE TABLE parts.measure_2026 PARTITION OF public.measure FOR VALUES FROM ('2026-01-01') TO ('2026-07-01')");
    for (const c of [source.client, replica.client]) await c.query('CREATE TABLE parts.measure_2026b (LIKE public.measure)');
    await source.client.query("ALTER TABLE public.measure ATTACH PARTITION parts.measure_2026b FOR VALUES FROM ('2026-07-01') TO ('2027-01-01')");
    await source.client.query('SELECT pgfanout.disable_ddl_capture()');
    // one by plain DDL on both sides, which pgfanout does not see
    for (const c of [source.client, replica.client]) {
      await c.query("CREATE TABLE public.measure_2027 PARTITION OF public.measure FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')");
    }
    const { rows: uncaptured } = await source.client.query('SELECT * FROM pgfanout.uncaptured_partitions()');
    expect(uncaptured).toEqual([{ captured_table: 'public.measure', partition: 'public.measure_2027' }]);
    await source.client.query("SELECT pgfanout.refresh_table('public.measure')");
    expect((await source.client.query('SELECT * FROM pgfanout.uncaptured_partitions()')).rows).toEqual([]);
    await source.client.query(`INSERT INTO public.measure SELECT d::date, 'Oslo', 1 FROM generate_series('2025-01-01'::date, '2027-12-31'::date, interval '5 days') AS d`);
    await syncOnce(source.client, replica.client, { allowSchemaChanges: true });
    await expectExact();
    expect(await count(replica.client, 'parts.measure_2026b')).toBeGreaterThan(0);
    await source.client.query('TRUNCATE public.measure_2025');
    await source.client.query('TRUNCATE parts.measure_2026');
    await source.client.query('TRUNCATE parts.measure_2026b');
    await source.client.query('TRUNCATE public.measure_2027');
    const changes = await syncChanges(source.client, replica.client);
    // Assess
    expect(changes.map((ch) => ch.old)).toEqual([
      { schema: 'public', table: 'measure_2025' },
      { schema: 'parts', table: 'measure_2026' },
      { schema: 'parts', table: 'measure_2026b' },
      { schema: 'public', table: 'measure_2027' },
    ]);
    for (const t of ['public.measure_2025', 'parts.measure_2026', 'parts.measure_2026b', 'public.measure_2027']) expect(await count(replica.client, t)).toBe(0);
    await expectExact();
  });

  it('a detached partition’s TRUNCATE is not captured, and it loses the trigger once pgfanout sees the DETACH', async () => {
    // Prepare
    await pair();
    await source.client.query('ALTER TABLE public.measure DETACH PARTITION public.measure_2024');
    // Act
    await source.client.query('TRUNCATE public.measure_2024');
    const events = await drainEvents(source.client);
    await source.client.query(`SELECT pgfanout.replicate_ddl('SELECT 1')`);
    // Assess
    expect(summary(events)).toEqual([]);
    expect((await source.client.query("SELECT 1 FROM pg_trigger WHERE tgrelid = 'public.measure_2024'::regclass")).rows).toEqual([]);
  });

  it('stops with an error naming the partition when the replica’s table lacks it or is not partitioned', async () => {
    // Prepare: a replica without measure_2024
    await pair(DDL.replace(/^CREATE TABLE public.measure_2024 .*$/m, ''));
    await source.client.query('TRUNCATE public.measure_2024');
    // Act
    const missing = await syncOnce(source.client, replica.client).then(() => undefined, (err: unknown) => err);
    // Assess
    expect(missing).toBeInstanceOf(SchemaMismatchError);
    expect((missing as Error).message).toContain('replica table "public"."measure" has no partition "public"."measure_2024", which the source truncated (no table "public"."measure_2024" exists here)');

    // Prepare: a replica whose measure is a plain table, and a table of the partition's name beside it
    await pair('CREATE TABLE public.measure (at date NOT NULL, city text NOT NULL, v numeric, PRIMARY KEY (at, city)); CREATE TABLE public.measure_2024 (LIKE public.measure); CREATE TABLE public.other (id int PRIMARY KEY)');
    await replica.client.query("INSERT INTO public.measure_2024 VALUES ('2024-01-01', 'Oslo', 1)");
    await source.client.query('TRUNCATE public.measure_2024');
    // Act
    const plain = await syncOnce(source.client, replica.client).then(() => undefined, (err: unknown) => err);
    // Assess
    expect(plain).toBeInstanceOf(SchemaMismatchError);
    expect((plain as Error).message).toContain('("public"."measure_2024" is not a partition of it here)');
    expect(await count(replica.client, 'public.measure_2024')).toBe(1);
  });

  it('applies a partition’s TRUNCATE whose names arrive split across items', async () => {
    // Prepare: the publisher never splits so small a change; another writer of the format may.
    await pair();
    await source.client.query(FILL);
    await syncOnce(source.client, replica.client);
    await source.client.query('TRUNCATE public.measure_2024');
    const published = await publishNext(source.client);
    const message = JSON.parse(published?.messages[0]?.body as string) as { changes: Record<string, unknown>[] };
    expect(published?.messages).toHaveLength(1);
    expect(message.changes).toEqual([{ op: 'T', schema: 'public', table: 'measure', txid: expect.any(String), old: { schema: 'public', table: 'measure_2024' } }]);
    message.changes = [
      { ...message.changes[0], old: { schema: 'pub', table: 'measure_' }, more: true },
      { op: '+', old: { schema: 'lic' }, more: true },
      { op: '+', old: { table: '2024' } },
    ];
    // Act
    await applyMessage(replica.client, JSON.stringify(message));
    await source.client.query('SELECT pgfanout.finish_batch($1)', [published?.batchId]);
    // Assess
    expect(await count(replica.client, 'public.measure_2024')).toBe(0);
    await expectExact();
  });

  it('applies a partition’s TRUNCATE by the captured table’s name in the include and exclude lists', async () => {
    // Prepare
    await pair();
    await source.client.query(FILL);
    await syncOnce(source.client, replica.client);
    // Act: excluded, then included
    await source.client.query('TRUNCATE public.measure_2024');
    await syncOnce(source.client, replica.client, { exclude: ['public.measure'] });
    const kept = await count(replica.client, 'public.measure_2024');
    await source.client.query('TRUNCATE public.measure_2023_oslo');
    await syncOnce(source.client, replica.client, { include: ['public.measure'] });
    // Assess
    expect(kept).toBeGreaterThan(0);
    expect(await count(replica.client, 'public.measure_2023_oslo')).toBe(0);
  });
});
