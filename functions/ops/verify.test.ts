/**
 * Table comparison on real PostgreSQL: a source and a replica database on one server. The
 * chunked comparison finds missing, extra and changed rows by key and agrees with the full merge;
 * tables without a usable key fall back to the full merge; identifiers are hostile.
 */
import fc from 'fast-check';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installReplica, installSource } from './install.ts';
import { LocalPostgres } from '#local/postgres.ts';
import { createDatabase, missingMajor, type TestDatabase } from '#testing/servers.ts';
import { OpsError } from './errors.ts';
import { qualified, quoteIdent } from '#core/pg/sql.ts';
import { verifyTables, waitForReplicaPosition, type VerifyOptions } from './verify.ts';

let server: LocalPostgres;
let source: TestDatabase;
let replica: TestDatabase;
let counter = 0;

beforeAll(async () => {
  server = await LocalPostgres.start({ major: 18 });
  [source, replica] = await Promise.all([createDatabase(server, 'verify_source'), createDatabase(server, 'verify_replica')]);
});

afterAll(async () => {
  await Promise.all([source?.client.end(), replica?.client.end()]);
  await server?.stop();
});

/** Runs `sql` on both databases. */
async function both(sql: string, params: unknown[] = []): Promise<void> {
  await source.client.query(sql, params);
  await replica.client.query(sql, params);
}

/** A fresh schema per test, created on both sides. */
async function freshSchema(prefix = 'v'): Promise<string> {
  const schema = `${prefix}${++counter}`;
  await both(`CREATE SCHEMA ${quoteIdent(schema)}`);
  return schema;
}

const small: VerifyOptions = { chunkRows: 100, leafRows: 10, fanout: 4 };

describe('chunked verify', () => {
  it('reports identical keyed tables as identical, comparing only range hashes', async () => {
    // Prepare
    const s = await freshSchema();
    await both(`CREATE TABLE ${s}.orders (id bigint PRIMARY KEY, note text, total numeric(12,2), at timestamptz)`);
    await both(`INSERT INTO ${s}.orders SELECT g, 'note ' || g, g / 100.0, '2024-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 1000) g`);
    // Act
    const report = await verifyTables(source.client, replica.client, [{ schema: s, table: 'orders' }], small);
    // Assess
    expect(report.differences).toEqual([]);
    expect(report.rowsCompared).toBe(1000);
    expect(report.summaries[0]).toMatchObject({ method: 'chunked', sourceRows: 1000, replicaRows: 1000, chunksCompared: 11, rowsFetched: 0 });
  });

  it('finds a missing, an extra and a changed row and reports each by key, in key order', async () => {
    const s = await freshSchema();
    await both(`CREATE TABLE ${s}.orders (id bigint PRIMARY KEY, note text)`);
    await both(`INSERT INTO ${s}.orders SELECT g, 'note ' || g FROM generate_series(1, 1000) g`);
    await replica.client.query(`DELETE FROM ${s}.orders WHERE id = 123`);
    await replica.client.query(`INSERT INTO ${s}.orders VALUES (5000, 'only here')`);
    await replica.client.query(`UPDATE ${s}.orders SET note = 'changed' WHERE id = 777`);

    const report = await verifyTables(source.client, replica.client, [{ schema: s, table: 'orders' }], small);

    expect(report.differences).toHaveLength(1);
    const d = report.differences[0]!;
    expect(d).toMatchObject({ table: `${s}.orders`, method: 'chunked', missing: 1, extra: 1, changed: 1, sourceRows: 1000, replicaRows: 1000 });
    expect(d.examples).toEqual([
      { kind: 'missing', key: '(id)=(123)', row: '(123,"note 123")' },
      { kind: 'changed', key: '(id)=(777)', row: '(777,"note 777")', replicaRow: '(777,changed)' },
      { kind: 'extra', key: '(id)=(5000)', row: '(5000,"only here")' },
    ]);
    // Only the differing ranges were read row by row.
    expect(report.summaries[0]!.rowsFetched).toBeLessThan(60);
  });

  it('narrows ranges by the replica\'s keys when the replica holds many rows the source lacks', async () => {
    const s = await freshSchema();
    await both(`CREATE TABLE ${s}.t (id int PRIMARY KEY, v int)`);
    await source.client.query(`INSERT INTO ${s}.t SELECT g, g FROM generate_series(1, 300) g`);
    await replica.client.query(`INSERT INTO ${s}.t SELECT g, g FROM generate_series(101, 2000) g`);

    const report = await verifyTables(source.client, replica.client, [{ schema: s, table: 't' }], { ...small, maxExamples: 2 });

    expect(report.differences[0]).toMatchObject({ missing: 100, extra: 1700, changed: 0, sourceRows: 300, replicaRows: 1900 });
    expect(report.differences[0]!.examples).toEqual([
      { kind: 'missing', key: '(id)=(1)', row: '(1,1)' },
      { kind: 'missing', key: '(id)=(2)', row: '(2,2)' },
    ]);
  });

  it('compares empty tables, and an empty side', async () => {
    const s = await freshSchema();
    await both(`CREATE TABLE ${s}.e (id int PRIMARY KEY)`);
    let report = await verifyTables(source.client, replica.client, [{ schema: s, table: 'e' }], small);
    expect(report.differences).toEqual([]);
    await source.client.query(`INSERT INTO ${s}.e SELECT generate_series(1, 250)`);
    report = await verifyTables(source.client, replica.client, [{ schema: s, table: 'e' }], small);
    expect(report.differences[0]).toMatchObject({ missing: 250, extra: 0, changed: 0 });
  });

  it('agrees with the full merge on random differences (composite text key)', async () => {
    const s = await freshSchema();
    await both(`CREATE TABLE ${s}.t (a text NOT NULL, b int NOT NULL, v text, UNIQUE (a, b))`);
    await both(`INSERT INTO ${s}.t SELECT 'k' || (g % 37), g, 'v' || g FROM generate_series(1, 600) g`);
    const ref = [{ schema: s, table: 't' }];
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.constantFrom('delete', 'insert', 'update'), fc.integer({ min: 1, max: 700 })), { maxLength: 25 }),
        async (edits) => {
          await replica.client.query(`TRUNCATE ${s}.t`);
          await replica.client.query(`INSERT INTO ${s}.t SELECT 'k' || (g % 37), g, 'v' || g FROM generate_series(1, 600) g`);
          for (const [op, n] of edits) {
            if (op === 'delete') await replica.client.query(`DELETE FROM ${s}.t WHERE b = $1`, [n]);
            else if (op === 'update') await replica.client.query(`UPDATE ${s}.t SET v = v || '!' WHERE b = $1`, [n]);
            else await replica.client.query(`INSERT INTO ${s}.t VALUES ('k' || ($1::int % 37), $1::int + 1000, 'new') ON CONFLICT DO NOTHING`, [n]);
          }
          const chunked = (await verifyTables(source.client, replica.client, ref, { chunkRows: 64, leafRows: 8, fanout: 3 })).differences[0];
          const full = (await verifyTables(source.client, replica.client, ref, { method: 'full' })).differences[0];
          expect(chunked?.method ?? 'chunked').toBe('chunked');
          // The full merge sees a changed row as one missing and one extra.
          expect((chunked?.missing ?? 0) + (chunked?.changed ?? 0)).toBe(full?.missing ?? 0);
          expect((chunked?.extra ?? 0) + (chunked?.changed ?? 0)).toBe(full?.extra ?? 0);
        },
      ),
      { numRuns: 15 },
    );
  });

  it('handles hostile schema, table, column names and key values', async () => {
    const schema = `we"ird.${++counter}`;
    const table = 'Tab le"; DROP TABLE x; --';
    const t = qualified(schema, table);
    await both(`CREATE SCHEMA ${quoteIdent(schema)}`);
    await both(`CREATE TABLE ${t} ("Key, ""1""" text NOT NULL, "select" int NOT NULL, "va(l)ue" text, PRIMARY KEY ("Key, ""1""", "select"))`);
    const keys = ['a,b', '(x)', '"', '\\', "it's", 'é€😀', 'NULL', ''];
    for (const [i, k] of keys.entries()) await both(`INSERT INTO ${t} VALUES ($1, $2, $3)`, [k, i, `value ${i}`]);
    await replica.client.query(`UPDATE ${t} SET "va(l)ue" = 'x' WHERE "Key, ""1""" = '(x)'`);
    await replica.client.query(`DELETE FROM ${t} WHERE "Key, ""1""" = '"'`);

    const report = await verifyTables(source.client, replica.client, [{ schema, table }], { chunkRows: 2, leafRows: 1, fanout: 2 });

    const d = report.differences[0]!;
    expect(d).toMatchObject({ table: `${schema}.${table}`, method: 'chunked', missing: 1, extra: 0, changed: 1 });
    expect(d.examples.map((e) => [e.kind, e.key])).toEqual(
      expect.arrayContaining([
        ['changed', '(Key, "1", select)=((x), 1)'],
        ['missing', '(Key, "1", select)=(", 2)'],
      ]),
    );
  });
});

describe('full merge fallback', () => {
  it('compares a table without a key by its sorted rows, duplicates included', async () => {
    const s = await freshSchema();
    await both(`CREATE TABLE ${s}.log (msg text, n int)`);
    await both(`INSERT INTO ${s}.log VALUES ('a', 1), ('a', 1), ('b', 2), (NULL, NULL)`);
    await replica.client.query(`DELETE FROM ${s}.log WHERE ctid = (SELECT ctid FROM ${s}.log WHERE msg = 'a' LIMIT 1)`);
    await replica.client.query(`INSERT INTO ${s}.log VALUES ('c', 3)`);

    const report = await verifyTables(source.client, replica.client, [{ schema: s, table: 'log' }]);

    expect(report.summaries[0]).toMatchObject({ method: 'full', reason: expect.stringMatching(/no primary key or unique index/) });
    expect(report.differences[0]).toMatchObject({ method: 'full', missing: 1, extra: 1, changed: 0, sourceRows: 4, replicaRows: 4 });
    expect(report.differences[0]!.examples).toEqual([
      { kind: 'missing', row: '(a,1)' },
      { kind: 'extra', row: '(c,3)' },
    ]);
  });

  it('falls back when the replica lacks the key\'s unique index or has it with another type', async () => {
    const s = await freshSchema();
    await source.client.query(`CREATE TABLE ${s}.a (id int PRIMARY KEY, v text); CREATE TABLE ${s}.b (id int PRIMARY KEY, v text)`);
    await replica.client.query(`CREATE TABLE ${s}.a (id int NOT NULL, v text); CREATE TABLE ${s}.b (id bigint PRIMARY KEY, v text)`);
    await both(`INSERT INTO ${s}.a VALUES (1, 'x'); INSERT INTO ${s}.b VALUES (1, 'x')`);

    const report = await verifyTables(source.client, replica.client, [{ schema: s, table: 'a' }, { schema: s, table: 'b' }]);

    expect(report.differences).toEqual([]);
    expect(report.summaries.map((x) => [x.method, x.reason])).toEqual([
      ['full', expect.stringMatching(/replica has no unique NOT NULL index over the source's key columns \(\(id\)\)/)],
      ['full', expect.stringMatching(/key \(id\) has other types or collations on the replica/)],
    ]);
  });

  it('reports a table or columns absent on the replica as differences, naming them', async () => {
    const s = await freshSchema();
    await source.client.query(`CREATE TABLE ${s}.gone (id int PRIMARY KEY); CREATE TABLE ${s}.narrow (id int PRIMARY KEY, "Extra" text)`);
    await replica.client.query(`CREATE TABLE ${s}.narrow (id int PRIMARY KEY)`);

    const report = await verifyTables(source.client, replica.client, [{ schema: s, table: 'gone' }, { schema: s, table: 'narrow' }]);

    expect(report.differences.map((d) => d.problem)).toEqual([`table ${s}.gone does not exist on the replica`, `the replica's table ${s}.narrow lacks column(s) "Extra"`]);
  });

  it('refuses options outside what is allowed, naming them', async () => {
    await expect(verifyTables(source.client, replica.client, [], { chunkRows: 0 })).rejects.toThrow(/chunkRows is 0; allowed: an integer >= 1/);
    await expect(verifyTables(source.client, replica.client, [], { method: 'fast' as 'full' })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('waitForReplicaPosition', () => {
  it('waits until the replica has applied what the source had published, and says where both stand when it times out', async () => {
    const [src, rep] = await Promise.all([createDatabase(server, 'verify_pos_source'), createDatabase(server, 'verify_pos_replica')]);
    try {
      await installSource(src.client);
      await installReplica(rep.client);
      await src.client.query('CREATE TABLE public.t (id int PRIMARY KEY)');
      await src.client.query(`SELECT pgfanout.add_table('public.t')`);
      await src.client.query('INSERT INTO public.t VALUES (1)');
      const batch = await publishOne(src.client);
      const sourceId = (await src.client.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]!.id;

      const error = await waitForReplicaPosition(src.client, rep.client, { timeoutMs: 0 }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OpsError);
      expect(error).toMatchObject({ code: 'TIMEOUT', message: expect.stringContaining(`the replica has applied batch 0 of source ${sourceId}; waited 0 s for batch ${batch}`) });

      await rep.client.query('SELECT pgfanout.replica_start($1, $2)', [sourceId, batch]);
      await expect(waitForReplicaPosition(src.client, rep.client, { timeoutMs: 0 })).resolves.toEqual({ sourceId, targetBatchId: batch, appliedBatchId: batch });
    } finally {
      await Promise.all([src.client.end(), rep.client.end()]);
    }
  });
});

/** Runs the batch protocol once on the source (as the publisher would) and returns the finished batch id. */
async function publishOne(client: pg.Client): Promise<string> {
  const { rows } = await client.query<{ batch_id: string }>('SELECT batch_id::text FROM pgfanout.next_batch()');
  const id = rows[0]!.batch_id;
  await client.query('SELECT pgfanout.finish_batch($1)', [id]);
  return id;
}

const crossMajorsMissing = missingMajor(13) ?? missingMajor(18);
describe.skipIf(crossMajorsMissing !== undefined)(`across major versions${crossMajorsMissing === undefined ? '' : ` (skipped: ${crossMajorsMissing})`}`, () => {
  it('hashes rows of many types the same on PostgreSQL 13 and 18, and still finds a difference', async () => {
    const old = await LocalPostgres.start({ major: 13 });
    try {
      const src = await createDatabase(old, 'verify_pg13');
      try {
        const ddl = `CREATE TABLE public.typed (id bigint PRIMARY KEY, t text, n numeric, f float8, ts timestamptz, d date, iv interval, b bytea, j jsonb, a int[], u uuid, bo boolean)`;
        const fill = `INSERT INTO public.typed SELECT g, 'é€😀 "q" ' || g, g / 7.0, g / 3.0, '2024-02-29 12:34:56.789+05:30'::timestamptz + g * interval '1 hour', '2000-01-01'::date + g,
                        g * interval '1 day 3 min', decode(md5(g::text), 'hex'), jsonb_build_object('k', g, 'arr', ARRAY[g, -g]), ARRAY[g, NULL, 3], md5(g::text)::uuid, g % 2 = 0
                        FROM generate_series(1, 3000) g`;
        const schema = await freshSchema();
        await replica.client.query(ddl.replace('public.', `${schema}.`));
        await replica.client.query(fill.replace('public.', `${schema}.`));
        await src.client.query(`CREATE SCHEMA ${schema}`);
        await src.client.query(ddl.replace('public.', `${schema}.`));
        await src.client.query(fill.replace('public.', `${schema}.`));
        const ref = [{ schema, table: 'typed' }];

        const same = await verifyTables(src.client, replica.client, ref, { chunkRows: 500 });
        expect(same.differences).toEqual([]);
        expect(same.summaries[0]).toMatchObject({ method: 'chunked', sourceRows: 3000, rowsFetched: 0 });

        await replica.client.query(`UPDATE ${schema}.typed SET f = f + 1e-12 WHERE id = 2000`);
        const different = await verifyTables(src.client, replica.client, ref, { chunkRows: 500 });
        expect(different.differences[0]).toMatchObject({ changed: 1, missing: 0, extra: 0, examples: [expect.objectContaining({ key: '(id)=(2000)' })] });
      } finally {
        await src.client.end();
      }
    } finally {
      await old.stop();
    }
  });
});
