/**
 * No silent divergence without session_replication_role: a replica table with a
 * `last_update`-style trigger is refused under the origin guard, with the trigger and the fix
 * named, unless the applier's options allow it; with the privilege (a superuser, or on
 * PostgreSQL 15+ `GRANT SET ON PARAMETER`), the trigger stays quiet and the row is the source's.
 */
import type pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { applyMessage, type ApplyOptions } from './apply.ts';
import { replicaCatalog } from './catalog.ts';
import { replicaPosition } from './protocol.ts';
import { encodeBatch } from '../source/encoder.ts';
import type { Change } from '../wire/envelope.ts';
import { ReplicaTriggersError } from '../wire/errors.ts';
import { installReplica } from '../../ops/install.ts';
import { collect, tokensOf } from '#testing/batches.ts';
import { createDatabase, describeEachMajor } from '#testing/servers.ts';

const SOURCE_TIME = '2001-02-03 04:05:06+00';

/** One message of one batch holding `changes`. */
async function message(sourceId: string, batch: number, changes: readonly Change[]): Promise<string> {
  const [m] = await collect(encodeBatch({ sourceId, batchId: String(batch), prevBatchId: String(batch - 1), lastEventTime: '2024-05-01T12:00:00.123Z' }, tokensOf(changes)));
  return m?.body as string;
}

const film = (id: string, title: string): Change => ({ op: 'I', schema: 'public', table: 'film', txid: '7', new: { id, title, last_update: SOURCE_TIME } });

describeEachMajor('replica triggers under the origin guard on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let client: pg.Client;
  let counter = 0;
  const newSource = () => `triggers-${major}-${++counter}`;

  /** Applies as `plain_applier`, a role that may not set session_replication_role (unless granted). */
  async function applyAsPlain(body: string, options: ApplyOptions = {}) {
    await client.query('SET ROLE plain_applier');
    try {
      return await applyMessage(client, body, options);
    } finally {
      await client.query('RESET ROLE');
    }
  }

  const lastUpdate = async (id: number) =>
    (await client.query<{ t: string }>("SELECT to_char(last_update AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS t FROM public.film WHERE id = $1", [id])).rows[0]?.t;

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
    ({ client } = await createDatabase(server, 'replica'));
    await installReplica(client);
    await client.query(`
      CREATE TABLE public.film (id int PRIMARY KEY, title text NOT NULL, last_update timestamptz NOT NULL DEFAULT now());
      CREATE FUNCTION public.touch_last_update() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.last_update := now(); RETURN NEW; END $$;
      CREATE TRIGGER film_last_update BEFORE INSERT OR UPDATE ON public.film FOR EACH ROW EXECUTE FUNCTION public.touch_last_update();
      CREATE ROLE plain_applier NOLOGIN;
      GRANT pgfanout_applier TO plain_applier;
      GRANT SELECT, INSERT, UPDATE, DELETE ON public.film TO plain_applier;
    `);
  });

  afterAll(async () => {
    await client?.end();
    await server?.stop();
  });

  it('refuses a table whose trigger would fire, naming the trigger and the fix; applies nothing', async () => {
    // Prepare
    const source = newSource();
    const body = await message(source, 1, [film('1', 'Academy Dinosaur')]);
    // Act
    const error = await applyAsPlain(body).catch((e: unknown) => e);
    // Assess
    expect(error).toBeInstanceOf(ReplicaTriggersError);
    expect(error).toMatchObject({ code: 'REPLICA_TRIGGERS', permanent: true, table: '"public"."film"', triggers: ['"public"."film" "film_last_update"'] });
    const text = (error as Error).message;
    expect(text).toContain('replica table "public"."film" has trigger(s) "public"."film" "film_last_update" that would fire on every applied change');
    expect(text).toContain('GRANT SET ON PARAMETER session_replication_role TO "plain_applier"');
    expect(text).toContain("replicaTriggers: 'fire'");
    expect(await replicaPosition(client, source)).toBeNull();
    expect((await client.query('SELECT count(*)::int AS n FROM public.film')).rows[0]).toEqual({ n: 0 });
  });

  it("fires the trigger when the applier's options allow it (the replica's last_update is its own)", async () => {
    const source = newSource();
    const result = await applyAsPlain(await message(source, 1, [film('2', 'Ace Goldfinger')]), { replicaTriggers: 'fire' });
    expect(result).toMatchObject({ outcome: 'applied', replicationRole: 'origin-guard' });
    expect(await lastUpdate(2)).not.toBe('2001-02-03 04:05:06');
  });

  it('keeps the trigger quiet where session_replication_role may be set: the row is the source’s', async () => {
    const source = newSource();
    // a superuser may set it
    const result = await applyMessage(client, await message(source, 1, [film('3', 'Adaptation Holes')]));
    expect(result).toMatchObject({ outcome: 'applied', replicationRole: 'replica' });
    expect(await lastUpdate(3)).toBe('2001-02-03 04:05:06');
    // the fix the error names, where it exists (PostgreSQL 15+)
    if (major >= 15) {
      await client.query('GRANT SET ON PARAMETER session_replication_role TO plain_applier');
      try {
        const granted = await applyAsPlain(await message(source, 2, [film('4', 'Affair Prejudice')]));
        expect(granted).toMatchObject({ outcome: 'applied', replicationRole: 'replica' });
        expect(await lastUpdate(4)).toBe('2001-02-03 04:05:06');
      } finally {
        await client.query('REVOKE SET ON PARAMETER session_replication_role FROM plain_applier');
      }
    }
  });

  it('does not count a disabled trigger, nor one enabled ALWAYS (declared to fire on replicated changes too)', async () => {
    const source = newSource();
    for (const [batch, id, state] of [[1, '5', 'DISABLE'], [2, '6', 'ENABLE ALWAYS']] as const) {
      await client.query(`ALTER TABLE public.film ${state} TRIGGER film_last_update`);
      // (what this connection read of the table is kept a while; it was changed here by hand)
      replicaCatalog(client).invalidate();
      try {
        const result = await applyAsPlain(await message(source, batch, [film(id, `film ${id}`)]));
        expect(result).toMatchObject({ outcome: 'applied', replicationRole: 'origin-guard' });
      } finally {
        await client.query('ALTER TABLE public.film ENABLE TRIGGER film_last_update');
        replicaCatalog(client).invalidate();
      }
    }
    expect(await lastUpdate(5)).toBe('2001-02-03 04:05:06');
    expect(await lastUpdate(6)).not.toBe('2001-02-03 04:05:06');
  });
});
