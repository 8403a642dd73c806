/**
 * applyMessage with `dryRun`: the same checks and writes as a real apply, then a rollback. The
 * result or the error is what a real apply would give; the replica does not change.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { applyMessage } from './apply.ts';
import { encodeBatch, type OutgoingMessage } from '../source/encoder.ts';
import type { Change } from '../wire/envelope.ts';
import { GapError, SchemaMismatchError } from '../wire/errors.ts';
import { installReplica } from '../../ops/install.ts';
import { collect, tokensOf } from '#testing/batches.ts';
import { createDatabase } from '#testing/servers.ts';

let server: LocalPostgres;
let client: pg.Client;
let sourceCounter = 0;
const newSource = () => `dry-${++sourceCounter}-${Math.random().toString(36).slice(2, 8)}`;

beforeAll(async () => {
  server = await LocalPostgres.start({ major: 18 });
  client = (await createDatabase(server, 'dryrun')).client;
  await installReplica(client);
  await client.query('CREATE TABLE public.t (id int PRIMARY KEY, note text)');
});

afterAll(async () => {
  await client?.end();
  await server?.stop();
});

async function messages(sourceId: string, batch: number, changes: readonly Change[], maxMessageBytes?: number): Promise<OutgoingMessage[]> {
  return collect(encodeBatch({ sourceId, batchId: String(batch), prevBatchId: String(batch - 1) }, tokensOf(changes), maxMessageBytes ? { maxMessageBytes } : {}));
}

const ins = (id: number, note: string): Change => ({ op: 'I', schema: 'public', table: 't', txid: '100', new: { id: String(id), note } });

/** Everything a dry run must leave as it was. */
async function state(sourceId: string): Promise<unknown> {
  const t = await client.query('SELECT t::text AS r FROM public.t AS t ORDER BY id');
  const position = await client.query('SELECT batch_id::text, part, state, applied_batch_id::text FROM pgfanout.replica_position WHERE source_id = $1', [sourceId]);
  const staged = await client.query('SELECT count(*)::int AS n FROM pgfanout.replica_staged_part WHERE source_id = $1', [sourceId]);
  return { rows: t.rows, position: position.rows, staged: staged.rows[0] };
}

describe('applyMessage dryRun', () => {
  it('reports what applying would do and changes nothing; the real apply then does it', async () => {
    // Prepare
    const sourceId = newSource();
    const [message] = await messages(sourceId, 1, [ins(1, 'one'), ins(2, 'two')]);
    const before = await state(sourceId);
    // Act
    const dry = await applyMessage(client, message!.body, { dryRun: true });
    // Assess
    expect(dry).toMatchObject({ outcome: 'applied', batchId: '1', changes: 2 });
    expect(await state(sourceId)).toEqual(before);
    await expect(applyMessage(client, message!.body)).resolves.toMatchObject({ outcome: 'applied', changes: 2 });
    expect(await applyMessage(client, message!.body, { dryRun: true })).toMatchObject({ outcome: 'duplicate' });
    await client.query('DELETE FROM public.t');
  });

  it('stages nothing for a part that is not final', async () => {
    const sourceId = newSource();
    const parts = await messages(sourceId, 1, [ins(10, 'x'.repeat(3000)), ins(11, 'y'.repeat(3000))], 2048);
    expect(parts.length).toBeGreaterThan(1);
    const before = await state(sourceId);
    expect(await applyMessage(client, parts[0]!.body, { dryRun: true })).toMatchObject({ outcome: 'staged', part: 0 });
    expect(await state(sourceId)).toEqual(before);
    // The next part, dry or real, still sees nothing staged: a gap.
    await expect(applyMessage(client, parts[1]!.body, { dryRun: true })).rejects.toBeInstanceOf(GapError);
  });

  it('throws the error a real apply would throw, with the same message', async () => {
    const sourceId = newSource();
    const [message] = await messages(sourceId, 1, [{ op: 'I', schema: 'public', table: 't', txid: '5', new: { id: '1', note: 'n', missing_col: 'v' } }]);
    const dry = await applyMessage(client, message!.body, { dryRun: true }).catch((e: unknown) => e);
    const real = await applyMessage(client, message!.body).catch((e: unknown) => e);
    expect(dry).toBeInstanceOf(SchemaMismatchError);
    expect((dry as Error).message).toBe((real as Error).message);
    expect((dry as Error).message).toContain('missing_col');
  });
});
