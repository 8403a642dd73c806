/**
 * Property: whatever sequence of inserts, key-changing updates and deletes (on a keyed table and
 * a table without identity, repeated keys and duplicate rows included) the source commits, in
 * however many transactions, and whatever the message size and planning, the replica ends up
 * equal to the source. This exercises the set-based runs, their splitting where a row is touched
 * twice, and whole-row matching of duplicates; and, on tables whose order matters through the
 * replica's own equality: keys whose text is not their value (numeric 1.0 / 1.00, a
 * case-insensitive collation), DEFERRABLE keys swapped and shifted in one statement, and a table
 * with two more unique constraints (one DEFERRABLE) whose values are swapped, through a
 * temporary value or in one statement. Source statements that would violate a constraint are
 * rolled back to a savepoint, as an application would, and leave nothing in the stream.
 */
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { applyMessage } from './replica/apply.ts';
import { encodeBatch } from './source/encoder.ts';
import { installReplica, installSource } from '../ops/install.ts';
import { readBatch } from './source/reader.ts';
import { anyText, collect } from '#testing/batches.ts';
import { createDatabase, describeEachMajor, TEST_MAJORS } from '#testing/servers.ts';

const DDL = `
CREATE TABLE public.keyed (id int PRIMARY KEY, v text, n numeric);
CREATE TABLE public.loose (a int, v text);
CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE public.num (id numeric PRIMARY KEY, v text);
CREATE TABLE public.dnum (id numeric PRIMARY KEY DEFERRABLE, v text);
CREATE TABLE public.dkey (id int PRIMARY KEY DEFERRABLE, v text);
CREATE TABLE public.names (name text COLLATE public.ci PRIMARY KEY DEFERRABLE, v text);
CREATE TABLE public.coded (id int PRIMARY KEY, code text NOT NULL UNIQUE, alt int UNIQUE DEFERRABLE, v text);`;
const TABLES = ['public.keyed', 'public.loose', 'public.num', 'public.dnum', 'public.dkey', 'public.names', 'public.coded'];

type Op =
  | { readonly kind: 'insert'; readonly id: number; readonly v: string | null }
  | { readonly kind: 'update'; readonly id: number; readonly to: number; readonly v: string | null }
  | { readonly kind: 'delete'; readonly id: number }
  | { readonly kind: 'looseInsert'; readonly a: number; readonly v: string | null }
  | { readonly kind: 'looseUpdate'; readonly a: number; readonly v: string | null }
  | { readonly kind: 'looseDelete'; readonly a: number }
  /** On num or dnum: keys 0..3 written with 0..2 decimals (1 = 1.0 = 1.00). */
  | { readonly kind: 'numInsert' | 'numMove'; readonly table: 'num' | 'dnum'; readonly id: number; readonly to: number; readonly scale: number; readonly v: string | null }
  | { readonly kind: 'numDelete'; readonly table: 'num' | 'dnum'; readonly id: number }
  | { readonly kind: 'keySwap'; readonly a: number; readonly b: number }
  | { readonly kind: 'keyShift'; readonly from: number; readonly by: number }
  | { readonly kind: 'keyInsert' | 'keyDelete'; readonly id: number }
  | { readonly kind: 'nameInsert' | 'nameMove' | 'nameDelete'; readonly name: string; readonly to: string; readonly v: string | null }
  | { readonly kind: 'codeInsert' | 'codeDelete' | 'codeTmpSwap' | 'altSwap'; readonly a: number; readonly b: number };

const key = fc.integer({ min: 0, max: 5 });
const value = fc.option(anyText(20), { nil: null, freq: 6 }).map((v) => (v === null ? null : v.toWellFormed().replaceAll('\u0000', '')));
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('insert' as const), id: key, v: value }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('update' as const), id: key, to: key, v: value }), weight: 4 },
  fc.record({ kind: fc.constant('delete' as const), id: key }),
  fc.record({ kind: fc.constant('looseInsert' as const), a: fc.integer({ min: 0, max: 3 }), v: fc.constantFrom('x', 'y', null) }),
  fc.record({ kind: fc.constant('looseUpdate' as const), a: fc.integer({ min: 0, max: 3 }), v: fc.constantFrom('x', 'y', null) }),
  fc.record({ kind: fc.constant('looseDelete' as const), a: fc.integer({ min: 0, max: 3 }) }),
);
const small = fc.integer({ min: 0, max: 3 });
const name = fc.constantFrom('bob', 'Bob', 'BOB', 'al', 'AL', 'eve');
/** Changes to the tables whose order matters through the replica's equality and unique constraints. */
const keyOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ kind: fc.constantFrom('numInsert' as const, 'numMove' as const), table: fc.constantFrom('num' as const, 'dnum' as const), id: small, to: small, scale: fc.integer({ min: 0, max: 2 }), v: fc.constantFrom('x', 'y', null) }),
  fc.record({ kind: fc.constant('numDelete' as const), table: fc.constantFrom('num' as const, 'dnum' as const), id: small }),
  { arbitrary: fc.record({ kind: fc.constant('keySwap' as const), a: fc.integer({ min: 0, max: 6 }), b: fc.integer({ min: 0, max: 6 }) }), weight: 2 },
  fc.record({ kind: fc.constant('keyShift' as const), from: fc.integer({ min: 0, max: 6 }), by: fc.constantFrom(1, 2, -1) }),
  fc.record({ kind: fc.constantFrom('keyInsert' as const, 'keyDelete' as const), id: fc.integer({ min: 0, max: 6 }) }),
  fc.record({ kind: fc.constantFrom('nameInsert' as const, 'nameMove' as const, 'nameDelete' as const), name, to: name, v: fc.constantFrom('x', 'y', null) }),
  { arbitrary: fc.record({ kind: fc.constantFrom('codeInsert' as const, 'codeDelete' as const, 'codeTmpSwap' as const, 'altSwap' as const), a: small, b: small }), weight: 2 },
);

async function run(client: pg.Client, o: Op): Promise<void> {
  switch (o.kind) {
    case 'insert':
      await client.query('INSERT INTO public.keyed VALUES ($1::int, $2, $1::int * 1.5) ON CONFLICT (id) DO NOTHING', [o.id, o.v]);
      return;
    case 'update':
      await client.query('UPDATE public.keyed SET id = $2::int, v = $3, n = n + 1 WHERE id = $1::int AND ($1::int = $2::int OR NOT EXISTS (SELECT 1 FROM public.keyed WHERE id = $2::int))', [o.id, o.to, o.v]);
      return;
    case 'delete':
      await client.query('DELETE FROM public.keyed WHERE id = $1', [o.id]);
      return;
    case 'looseInsert':
      await client.query('INSERT INTO public.loose VALUES ($1, $2)', [o.a, o.v]);
      return;
    case 'looseUpdate':
      await client.query('UPDATE public.loose SET v = $2 WHERE ctid = (SELECT ctid FROM public.loose WHERE a = $1 LIMIT 1)', [o.a, o.v]);
      return;
    case 'looseDelete':
      await client.query('DELETE FROM public.loose WHERE ctid = (SELECT ctid FROM public.loose WHERE a = $1 LIMIT 1)', [o.a]);
      return;
    case 'numInsert':
      await client.query(`INSERT INTO public.${o.table} VALUES (round($1::numeric, $2::int), $3)`, [o.id, o.scale, o.v]);
      return;
    case 'numMove':
      // Also to the same value written with other decimals (1.0 → 1.00).
      await client.query(`UPDATE public.${o.table} SET id = round($2::numeric, $3::int), v = $4 WHERE id = $1::numeric`, [o.id, o.to, o.scale, o.v]);
      return;
    case 'numDelete':
      await client.query(`DELETE FROM public.${o.table} WHERE id = $1::numeric`, [o.id]);
      return;
    case 'keySwap':
      await client.query(`UPDATE public.dkey SET id = CASE id WHEN $1::int THEN $2::int ELSE $1::int END, v = v || '*' WHERE id IN ($1::int, $2::int)`, [o.a, o.b]);
      return;
    case 'keyShift':
      await client.query('UPDATE public.dkey SET id = id + $2::int WHERE id >= $1::int', [o.from, o.by]);
      return;
    case 'keyInsert':
      await client.query(`INSERT INTO public.dkey VALUES ($1::int, 'k' || $1::int)`, [o.id]);
      return;
    case 'keyDelete':
      await client.query('DELETE FROM public.dkey WHERE id = $1::int', [o.id]);
      return;
    case 'nameInsert':
      await client.query('INSERT INTO public.names VALUES ($1, $2)', [o.name, o.v]);
      return;
    case 'nameMove':
      await client.query('UPDATE public.names SET name = $2, v = $3 WHERE name = $1', [o.name, o.to, o.v]);
      return;
    case 'nameDelete':
      await client.query('DELETE FROM public.names WHERE name = $1', [o.name]);
      return;
    case 'codeInsert':
      await client.query(`INSERT INTO public.coded VALUES ($1::int, 'c' || $1::int, $1::int, 'new')`, [o.a]);
      return;
    case 'codeDelete':
      await client.query('DELETE FROM public.coded WHERE id = $1::int', [o.a]);
      return;
    case 'codeTmpSwap': {
      // Swap two rows' codes through a temporary value, one statement per step.
      const { rows } = await client.query<{ id: number; code: string }>('SELECT id, code FROM public.coded WHERE id IN ($1::int, $2::int)', [o.a, o.b]);
      const [x, y] = rows;
      if (x === undefined || y === undefined) return;
      await client.query(`UPDATE public.coded SET code = 'tmp' WHERE id = $1`, [x.id]);
      await client.query('UPDATE public.coded SET code = $2 WHERE id = $1', [y.id, x.code]);
      await client.query('UPDATE public.coded SET code = $2 WHERE id = $1', [x.id, y.code]);
      return;
    }
    case 'altSwap':
      // Swap two rows' DEFERRABLE unique values in one statement.
      await client.query(
        `UPDATE public.coded AS c SET alt = o.alt FROM public.coded AS o
          WHERE c.id IN ($1::int, $2::int) AND o.id IN ($1::int, $2::int) AND o.id <> c.id`,
        [o.a, o.b],
      );
      return;
  }
}

/** Runs `o` in a savepoint: a statement that violates a constraint is undone, as an application would. */
async function attempt(client: pg.Client, o: Op): Promise<void> {
  await client.query('SAVEPOINT op');
  try {
    await run(client, o);
    await client.query('RELEASE SAVEPOINT op');
  } catch (err) {
    if (!/^23/.test((err as { code?: string }).code ?? '')) throw err;
    await client.query('ROLLBACK TO SAVEPOINT op');
  }
}

describeEachMajor('random workloads replicate exactly on PostgreSQL %i', (major) => {
  let servers: LocalPostgres[] = [];
  let source: pg.Client;
  let replica: pg.Client;
  let sourceId: string;

  beforeAll(async () => {
    servers = await Promise.all([LocalPostgres.start({ major }), LocalPostgres.start({ major })]);
    source = (await createDatabase(servers[0] as LocalPostgres, 'src')).client;
    replica = (await createDatabase(servers[1] as LocalPostgres, 'rep')).client;
    await installSource(source);
    await installReplica(replica);
    await source.query(DDL);
    await replica.query(DDL);
    await source.query('SELECT pgfanout.add_table(t::regclass) FROM unnest($1::text[]) AS t', [TABLES]);
    sourceId = (await source.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]?.id as string;
  });

  afterAll(async () => {
    await Promise.all([source?.end(), replica?.end()]);
    await Promise.all(servers.map((s) => s.stop()));
  });

  async function table(client: pg.Client, name: string): Promise<string[]> {
    const { rows } = await client.query<{ r: string }>(`SELECT t::text AS r FROM ${name} AS t ORDER BY t::text COLLATE "C"`);
    return rows.map((r) => r.r);
  }

  it('keeps the replica equal to the source', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.oneof(op, keyOp), { minLength: 1, maxLength: 25 }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 1024, max: 4096 }),
        fc.constantFrom('per-table' as const, 'in-order' as const),
        async (transactions, maxMessageBytes, planning) => {
          for (const ops of transactions) {
            await source.query('BEGIN');
            try {
              for (const o of ops) await attempt(source, o);
              await source.query('COMMIT');
            } catch (err) {
              await source.query('ROLLBACK');
              throw err;
            }
          }
          for (;;) {
            const { rows } = await source.query<{ batch_id: string; prev_batch_id: string; event_count: string }>(
              'SELECT batch_id::text, prev_batch_id::text, event_count::text FROM pgfanout.next_batch()',
            );
            const batch = rows[0];
            if (!batch) break;
            const messages = await collect(
              encodeBatch({ sourceId, batchId: batch.batch_id, prevBatchId: batch.prev_batch_id, eventCount: batch.event_count }, readBatch(source, batch.batch_id), { maxMessageBytes }),
            );
            for (const m of messages) await applyMessage(replica, m.body, { planning });
            await source.query('SELECT pgfanout.finish_batch($1)', [batch.batch_id]);
          }
          for (const name of TABLES) expect(await table(replica, name), name).toEqual(await table(source, name));
        },
      ),
      { numRuns: 40 },
    );
  });
}, TEST_MAJORS.slice(-1));
