/**
 * Legal source transactions whose order matters through the replica's own equality and unique
 * constraints: keys whose text is not canonical (numeric 1.0 and 1.00, a case-insensitive
 * collation), DEFERRABLE keys (swapped in one statement, duplicate for a moment), and unique
 * columns besides the key swapped through a temporary value. Each is captured on a real source,
 * carried by real messages and applied with both plannings; the replica must equal the source.
 * Under `session_replication_role = replica` PostgreSQL does not check DEFERRABLE unique
 * constraints at all, so the applier checks the keys a batch wrote before it commits.
 */
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { applyMessage, type ApplyOptions } from './apply.ts';
import { encodeBatch, readBatch } from '../source/index.ts';
import { installReplica, installSource } from '../../ops/install.ts';
import { collect } from '#testing/batches.ts';
import { createDatabase, describeEachMajor } from '#testing/servers.ts';
import { DatabaseError } from '../wire/errors.ts';

const TABLES = `
CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE public.dnum (id numeric PRIMARY KEY DEFERRABLE, v text);
CREATE TABLE public.dname (name text COLLATE public.ci PRIMARY KEY DEFERRABLE, v text);
CREATE TABLE public.pnum (id numeric PRIMARY KEY, v text);
CREATE TABLE public.dswap (id int PRIMARY KEY DEFERRABLE, v text);
CREATE TABLE public.coded (id int PRIMARY KEY, code text NOT NULL CONSTRAINT uq_code_key UNIQUE, v text);`;
const NAMES = ['public.dnum', 'public.dname', 'public.pnum', 'public.dswap', 'public.coded'];

const PLANNINGS: readonly ApplyOptions[] = [
  { replicationRole: 'replica', planning: 'per-table' },
  { replicationRole: 'replica', planning: 'in-order' },
];

describeEachMajor('keys by the replica equality on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let databases = 0;
  let source: pg.Client;
  let sourceId: string;
  let replicas: pg.Client[] = [];
  const open: pg.Client[] = [];

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
  });

  afterAll(async () => {
    await Promise.all(open.map((c) => c.end()));
    await server?.stop();
  });

  /** A new source with the tables captured, and a new replica for each planning. */
  beforeEach(async () => {
    const n = ++databases;
    source = (await createDatabase(server, `src${n}`)).client;
    open.push(source);
    await installSource(source);
    await source.query(TABLES);
    await source.query(`SELECT pgfanout.add_table(t::regclass) FROM unnest($1::text[]) AS t`, [NAMES]);
    sourceId = (await source.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]?.id as string;
    replicas = [];
    for (let i = 0; i < PLANNINGS.length; i++) {
      const replica = (await createDatabase(server, `rep${n}_${i}`)).client;
      open.push(replica);
      await installReplica(replica);
      await replica.query(TABLES);
      replicas.push(replica);
    }
  });

  const rows = async (client: pg.Client, table: string) =>
    (await client.query<{ r: string }>(`SELECT t::text AS r FROM ${table} AS t ORDER BY t::text COLLATE "C"`)).rows.map((r) => r.r);

  /** Runs `sql` on the source, then carries every batch to each replica; returns the apply errors. */
  async function replicate(sql: string): Promise<(unknown | undefined)[]> {
    await source.query(sql);
    const failures: (unknown | undefined)[] = PLANNINGS.map(() => undefined);
    for (;;) {
      const { rows: batches } = await source.query<{ batch_id: string; prev_batch_id: string; event_count: string }>(
        'SELECT batch_id::text, prev_batch_id::text, event_count::text FROM pgfanout.next_batch()',
      );
      const batch = batches[0];
      if (batch === undefined) break;
      const messages = await collect(encodeBatch({ sourceId, batchId: batch.batch_id, prevBatchId: batch.prev_batch_id, eventCount: batch.event_count }, readBatch(source, batch.batch_id)));
      for (const [i, options] of PLANNINGS.entries()) {
        if (failures[i] !== undefined) continue;
        try {
          for (const m of messages) await applyMessage(replicas[i] as pg.Client, m.body, options);
        } catch (err) {
          failures[i] = err;
        }
      }
      await source.query('SELECT pgfanout.finish_batch($1)', [batch.batch_id]);
    }
    return failures;
  }

  async function expectEqual(sql: string, tables: readonly string[]): Promise<void> {
    const failures = await replicate(sql);
    expect(failures.map((f) => (f === undefined ? 'applied' : String(f)))).toEqual(PLANNINGS.map(() => 'applied'));
    for (const table of tables) {
      const expected = await rows(source, table);
      for (const [i, replica] of replicas.entries()) expect(await rows(replica, table), `${table} with ${PLANNINGS[i]?.planning} planning`).toEqual(expected);
    }
  }

  it('applies a DEFERRABLE numeric key reused as 1.00 after 1.0 moved away, without duplicates', async () => {
    await expectEqual(
      `BEGIN;
       INSERT INTO public.dnum VALUES (1.0, 'a');
       UPDATE public.dnum SET id = 5 WHERE id = 1;
       INSERT INTO public.dnum VALUES (1.00, 'b');
       UPDATE public.dnum SET id = 9 WHERE id = 1;
       COMMIT`,
      ['public.dnum'],
    );
    expect(await rows(replicas[0] as pg.Client, 'public.dnum')).toEqual(['(5,a)', '(9,b)']);
  });

  it('applies a DEFERRABLE key under a case-insensitive collation reused as BOB after Bob moved away', async () => {
    await expectEqual(
      `BEGIN;
       INSERT INTO public.dname VALUES ('Bob', 'a');
       UPDATE public.dname SET name = 'Carol' WHERE name = 'bob';
       INSERT INTO public.dname VALUES ('BOB', 'b');
       UPDATE public.dname SET name = 'Dave' WHERE name = 'bob';
       COMMIT`,
      ['public.dname'],
    );
    expect(await rows(replicas[0] as pg.Client, 'public.dname')).toEqual(['(Carol,a)', '(Dave,b)']);
  });

  it('keeps a DELETE between two INSERTs of equal numeric keys written differently', async () => {
    await expectEqual(
      `BEGIN;
       INSERT INTO public.pnum VALUES (1.0, 'first');
       DELETE FROM public.pnum WHERE id = 1;
       INSERT INTO public.pnum VALUES (1.00, 'second');
       COMMIT`,
      ['public.pnum'],
    );
  });

  it('swaps the keys of a DEFERRABLE primary key in one statement', async () => {
    await source.query(`INSERT INTO public.dswap SELECT g, 'v' || g FROM generate_series(1, 6) AS g`);
    await expectEqual(
      `BEGIN;
       UPDATE public.dswap SET id = CASE id WHEN 1 THEN 2 WHEN 2 THEN 1 END WHERE id IN (1, 2);
       UPDATE public.dswap SET id = id + 1 WHERE id >= 3;
       UPDATE public.dswap SET v = 'moved' WHERE id = 7;
       UPDATE public.dswap SET id = 3 WHERE id = 7;
       COMMIT`,
      ['public.dswap'],
    );
  });

  it('shifts DEFERRABLE keys across a row moved onto a free key earlier in the transaction', async () => {
    await source.query(`INSERT INTO public.dswap SELECT g, 'v' || g FROM generate_series(1, 6) AS g; INSERT INTO public.dswap VALUES (8, 'v8')`);
    // The shift meets 6 → 7 before 7 → 8 (the moved row's new version is last in the heap):
    // its 7 → 8 names the row moved to 7 by the first statement, not the one the shift wrote.
    await expectEqual(
      `BEGIN;
       UPDATE public.dswap SET id = 7 WHERE id = 8;
       UPDATE public.dswap SET id = id + 1, v = v || '+' WHERE id >= 1;
       COMMIT`,
      ['public.dswap'],
    );
    expect(await rows(replicas[0] as pg.Client, 'public.dswap')).toEqual(['(2,v1+)', '(3,v2+)', '(4,v3+)', '(5,v4+)', '(6,v5+)', '(7,v6+)', '(8,v8+)']);
  });

  it('swaps a UNIQUE column through a temporary value after multi-row UPDATEs', async () => {
    await source.query(`INSERT INTO public.coded SELECT g, 'c' || g, 'x' FROM generate_series(1, 600) AS g`);
    await expectEqual('', ['public.coded']);
    // Multi-row UPDATEs first, so the replica's prepared statement may switch to a generic plan.
    for (let round = 0; round < 8; round++) await expectEqual(`UPDATE public.coded SET v = 'r${round}' WHERE id % 7 = ${round % 7}`, ['public.coded']);
    await expectEqual(
      `BEGIN;
       UPDATE public.coded SET code = 'tmp' WHERE id = 500;
       UPDATE public.coded SET code = 'c500' WHERE id = 400;
       UPDATE public.coded SET code = 'c400' WHERE id = 500;
       COMMIT`,
      ['public.coded'],
    );
    expect((await replicas[0]?.query('SELECT code FROM public.coded WHERE id IN (400, 500) ORDER BY id'))?.rows).toEqual([{ code: 'c500' }, { code: 'c400' }]);
  });

  it('refuses to commit a batch that leaves a DEFERRABLE key duplicated on the replica', async () => {
    // The replica holds a row the source does not: the source's INSERT of that key duplicates it.
    for (const replica of replicas) await replica.query(`INSERT INTO public.dswap VALUES (100, 'replica only')`);
    const failures = await replicate(`INSERT INTO public.dswap VALUES (100, 'source')`);
    for (const failure of failures) {
      expect(failure).toBeInstanceOf(DatabaseError);
      expect(String(failure)).toMatch(/replica table "public"\."dswap": unique constraint "dswap_pkey" \(DEFERRABLE\) is violated by \("id"\)=\(100\)/);
    }
    for (const replica of replicas) expect(await rows(replica, 'public.dswap')).toContain('(100,"replica only")');
  });
});
