/**
 * pgfanout.replica_skip on real PostgreSQL 13 and 18: only the next batch may be skipped, a half
 * staged batch is dropped, each skip is recorded, and the applier continues after it.
 */
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { applyMessage } from '#core/replica';
import { installReplica } from './install.ts';
import { encodeBatch } from '#core/source/encoder.ts';
import { collect, tokensOf } from '#testing/batches.ts';
import { createDatabase, describeEachMajor } from '#testing/servers.ts';
import { LocalPostgres } from '#local/postgres.ts';

describeEachMajor('replica_skip on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let client: pg.Client;
  let counter = 0;
  const newSource = () => `skip-${major}-${++counter}`;

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
    client = (await createDatabase(server, 'skip')).client;
    await installReplica(client);
    await client.query('CREATE TABLE public.t (id int PRIMARY KEY, note text)');
  });

  afterAll(async () => {
    await client?.end();
    await server?.stop();
  });

  const bodies = async (sourceId: string, batch: number, ids: number[], maxMessageBytes?: number) =>
    (
      await collect(
        encodeBatch(
          { sourceId, batchId: String(batch), prevBatchId: String(batch - 1) },
          tokensOf(ids.map((id) => ({ op: 'I' as const, schema: 'public', table: 't', txid: '7', new: { id: String(id), note: 'n'.repeat(maxMessageBytes ? 1500 : 1) } }))),
          maxMessageBytes ? { maxMessageBytes } : {},
        ),
      )
    ).map((m) => m.body);

  const position = async (sourceId: string) =>
    (await client.query('SELECT batch_id::int, part, state, applied_batch_id::int FROM pgfanout.replica_position WHERE source_id = $1', [sourceId])).rows[0];

  it('skips the next batch, records it, and lets the batch after it apply', async () => {
    const sourceId = newSource();
    for (const body of await bodies(sourceId, 1, [1])) await applyMessage(client, body);

    const { rows } = await client.query('SELECT * FROM pgfanout.replica_skip($1, 2, $2, $3)', [sourceId, 'poison', ['public.t']]);

    expect(rows[0]).toMatchObject({ source_id: sourceId, batch_id: '2', previous_state: 'applied', previous_part: null, tables: ['public.t'], reason: 'poison' });
    expect(await position(sourceId)).toEqual({ batch_id: 2, part: null, state: 'applied', applied_batch_id: 2 });
    for (const body of await bodies(sourceId, 3, [3])) expect(await applyMessage(client, body)).toMatchObject({ outcome: 'applied' });
    // The skipped batch, if it comes back, is a duplicate.
    for (const body of await bodies(sourceId, 2, [2])) expect(await applyMessage(client, body)).toMatchObject({ outcome: 'duplicate' });
  });

  it('refuses any batch but the next one, naming the position', async () => {
    const sourceId = newSource();
    for (const body of await bodies(sourceId, 1, [101])) await applyMessage(client, body);
    for (const batch of [1, 3]) {
      await expect(client.query('SELECT pgfanout.replica_skip($1, $2)', [sourceId, batch])).rejects.toMatchObject({
        code: '55000',
        message: `pgfanout.replica_skip: source ${sourceId} has applied batch 1 (nothing staged); only the next batch, 2, may be skipped, not ${batch}`,
      });
    }
    await expect(client.query('SELECT pgfanout.replica_skip($1, 0)', [sourceId])).rejects.toMatchObject({ code: '22023' });
    expect(await position(sourceId)).toMatchObject({ applied_batch_id: 1 });
    expect((await client.query('SELECT count(*)::int AS n FROM pgfanout.replica_skipped WHERE source_id = $1', [sourceId])).rows[0].n).toBe(0);
  });

  it('drops a half-staged batch when skipping it', async () => {
    const sourceId = newSource();
    const parts = await bodies(sourceId, 1, [201, 202, 203], 2048);
    expect(parts.length).toBeGreaterThan(1);
    await applyMessage(client, parts[0] as string);
    expect(await position(sourceId)).toMatchObject({ state: 'staging', part: 0 });

    await client.query('SELECT pgfanout.replica_skip($1, 1)', [sourceId]);

    expect(await position(sourceId)).toEqual({ batch_id: 1, part: null, state: 'applied', applied_batch_id: 1 });
    expect((await client.query('SELECT count(*)::int AS n FROM pgfanout.replica_staged_part WHERE source_id = $1', [sourceId])).rows[0].n).toBe(0);
    expect((await client.query('SELECT previous_state, previous_part FROM pgfanout.replica_skipped WHERE source_id = $1', [sourceId])).rows[0]).toEqual({
      previous_state: 'staging',
      previous_part: 0,
    });
    expect((await client.query('SELECT count(*)::int AS n FROM public.t WHERE id >= 201')).rows[0].n).toBe(0);
  });
});
