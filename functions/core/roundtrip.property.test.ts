/**
 * Property: whatever sequence of inserts, key-changing updates and deletes (on a keyed table and
 * a table without identity, repeated keys and duplicate rows included) the source commits, in
 * however many transactions, and whatever the message size, the replica ends up equal to the
 * source. This exercises the set-based runs, their splitting where a row is touched twice, and
 * whole-row matching of duplicates.
 */
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { applyMessage } from './replica/apply.ts';
import { encodeBatch } from './source/encoder.ts';
import { installReplica, installSource } from '../ops/install.ts';
import { readBatch } from './source/reader.ts';
import { anyText, collect } from '#testing/batches.ts';
import { createDatabase, TEST_MAJORS } from '#testing/servers.ts';

const DDL = `
CREATE TABLE public.keyed (id int PRIMARY KEY, v text, n numeric);
CREATE TABLE public.loose (a int, v text);`;

type Op =
  | { readonly kind: 'insert'; readonly id: number; readonly v: string | null }
  | { readonly kind: 'update'; readonly id: number; readonly to: number; readonly v: string | null }
  | { readonly kind: 'delete'; readonly id: number }
  | { readonly kind: 'looseInsert'; readonly a: number; readonly v: string | null }
  | { readonly kind: 'looseUpdate'; readonly a: number; readonly v: string | null }
  | { readonly kind: 'looseDelete'; readonly a: number };

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
  }
}

describe.each(TEST_MAJORS.slice(-1))('random workloads replicate exactly on PostgreSQL %i', (major) => {
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
    await source.query(`SELECT pgfanout.add_table('public.keyed'), pgfanout.add_table('public.loose')`);
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
      fc.asyncProperty(fc.array(fc.array(op, { minLength: 1, maxLength: 25 }), { minLength: 1, maxLength: 3 }), fc.integer({ min: 1024, max: 4096 }), async (transactions, maxMessageBytes) => {
        for (const ops of transactions) {
          await source.query('BEGIN');
          try {
            for (const o of ops) await run(source, o);
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
          for (const m of messages) await applyMessage(replica, m.body);
          await source.query('SELECT pgfanout.finish_batch($1)', [batch.batch_id]);
        }
        for (const name of ['public.keyed', 'public.loose']) expect(await table(replica, name), name).toEqual(await table(source, name));
      }),
      { numRuns: 40 },
    );
  });
});
