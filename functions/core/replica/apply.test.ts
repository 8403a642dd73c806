import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { applyMessage, type ApplyOptions } from './apply.ts';
import { TableFilter } from './filter.ts';
import { decide } from './position.ts';
import { replicaPosition } from './protocol.ts';
import { encodeBatch, type OutgoingMessage } from '../source/encoder.ts';
import type { Change } from '../wire/envelope.ts';
import { GapError, InvalidArgumentError, TransientDatabaseError, MalformedMessageError, RowNotFoundError, SchemaMismatchError, UnknownTableError, UnsupportedVersionError, DatabaseError } from '../wire/errors.ts';
import { installReplica } from '../../ops/install.ts';
import { collect, tokensOf } from '#testing/batches.ts';
import { createDatabase, describeEachMajor } from '#testing/servers.ts';

let sourceCounter = 0;
/** A fresh source id per test, so tests share a database without sharing a stream. */
const newSource = () => `source-${++sourceCounter}-${Math.random().toString(36).slice(2, 8)}`;

async function messages(sourceId: string, batch: number, changes: readonly Change[], maxMessageBytes?: number): Promise<OutgoingMessage[]> {
  return collect(
    encodeBatch({ sourceId, batchId: String(batch), prevBatchId: String(batch - 1), lastEventTime: '2024-05-01T12:00:00.123Z' }, tokensOf(changes), maxMessageBytes ? { maxMessageBytes } : {}),
  );
}

async function applyAll(client: pg.ClientBase, list: readonly OutgoingMessage[], options: ApplyOptions = {}) {
  const results = [];
  for (const m of list) results.push(await applyMessage(client, m.body, options));
  return results;
}

async function rows(client: pg.ClientBase, table: string, order = '1'): Promise<string[]> {
  const result = await client.query<{ r: string }>(`SELECT t::text AS r FROM ${table} AS t ORDER BY ${order}`);
  return result.rows.map((r) => r.r);
}

const ins = (table: string, row: Record<string, string | null>, schema = 'public'): Change => ({ op: 'I', schema, table, txid: '100', new: row });
const upd = (table: string, old: Record<string, string | null>, row: Record<string, string | null>): Change => ({ op: 'U', schema: 'public', table, txid: '101', old, new: row });
const del = (table: string, old: Record<string, string | null>): Change => ({ op: 'D', schema: 'public', table, txid: '102', old });

describe('decide', () => {
  const at = (applied: bigint, staging?: { batch: bigint; part: number; digest: string }) =>
    staging ? { batchId: staging.batch, part: staging.part, appliedBatchId: applied, partDigest: staging.digest } : { batchId: applied, part: null, appliedBatchId: applied, partDigest: null };
  const msg = (batch: string, part = 0, final = true, after?: string) => ({ batch, prev: String(BigInt(batch) - 1n), part, final, ...(after ? { after } : {}) });

  it('applies the next batch, skips what is at or below the position, refuses gaps', () => {
    expect(decide(undefined, msg('1'), 'd')).toEqual({ kind: 'apply', restart: false });
    expect(decide(at(4n), msg('5'), 'd')).toEqual({ kind: 'apply', restart: false });
    expect(decide(at(4n), msg('4'), 'd')).toEqual({ kind: 'applied-before' });
    expect(decide(at(4n), msg('2'), 'd')).toEqual({ kind: 'applied-before' });
    expect(decide(at(4n), msg('6'), 'd')).toEqual({ kind: 'gap', expected: 'the batch after batch 4' });
    expect(decide(undefined, msg('2'), 'd')).toEqual({ kind: 'gap', expected: 'the batch after batch 0' });
    expect(decide(at(4n), msg('5', 1, true, 'x'), 'd')).toEqual({ kind: 'gap', expected: 'batch 5 part 0' });
  });

  it('refuses a batch that does not follow its own prev: batches are consecutive, so nothing jumps the position', () => {
    expect(decide(at(4n), { ...msg('1000000000000000000'), prev: '4' }, 'd')).toMatchObject({ kind: 'refuse', reason: expect.stringContaining('consecutive') });
    expect(decide(at(4n), { ...msg('3'), prev: '1' }, 'd')).toMatchObject({ kind: 'refuse' });
  });

  it('stages parts in order and follows the digest chain', () => {
    const staging = at(4n, { batch: 5n, part: 1, digest: 'p1' });
    expect(decide(at(4n), msg('5', 0, false), 'p0')).toEqual({ kind: 'stage', restart: false });
    expect(decide(staging, msg('5', 2, false, 'p1'), 'p2')).toEqual({ kind: 'stage', restart: false });
    expect(decide(staging, msg('5', 2, true, 'p1'), 'p2')).toEqual({ kind: 'apply', restart: false });
    expect(decide(staging, msg('5', 1, false, 'p0'), 'p1')).toEqual({ kind: 'duplicate' });
    expect(decide(staging, msg('5', 0, false), 'p0', 'p0')).toEqual({ kind: 'duplicate' });
    expect(decide(staging, msg('5', 0, true), 'other', 'p0')).toEqual({ kind: 'apply', restart: true });
    expect(decide(staging, msg('5', 3, true, 'p2'), 'p3')).toMatchObject({ kind: 'gap', expected: 'batch 5 part 2' });
    expect(decide(staging, msg('5', 2, true, 'zz'), 'p2')).toMatchObject({ kind: 'gap', expected: expect.stringMatching(/another encoding/) });
    expect(decide(staging, msg('6'), 'x')).toMatchObject({ kind: 'gap', expected: expect.stringMatching(/batch 5 part 2/) });
  });
});

describe('TableFilter', () => {
  it('matches plain, quoted and schema-wide entries; exclude wins', () => {
    const f = new TableFilter(['public.orders', '"we.ird"."Tab""le"', 'audit.*'], ['audit.secret']);
    expect(f.applies('public', 'orders')).toBe(true);
    expect(f.applies('public', 'other')).toBe(false);
    expect(f.applies('we.ird', 'Tab"le')).toBe(true);
    expect(f.applies('audit', 'log')).toBe(true);
    expect(f.applies('audit', 'secret')).toBe(false);
    expect(new TableFilter([], ['public.x']).applies('public', 'y')).toBe(true);
  });

  it('rejects entries it cannot read, naming them', () => {
    expect(() => new TableFilter(['orders'])).toThrow(InvalidArgumentError);
    expect(() => new TableFilter([''], [])).toThrow(/include entry "" is not allowed/);
  });
});

describeEachMajor('applyMessage on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let client: pg.Client;

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
    ({ client } = await createDatabase(server, 'replica'));
    await installReplica(client);
    await client.query(`
      CREATE TABLE public.items (id int PRIMARY KEY, label varchar(20), price numeric(10,2), tags text[]);
      CREATE TABLE public.nokey (a int, b text);
      CREATE TABLE public.gen (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int, doubled int GENERATED ALWAYS AS (n * 2) STORED);
      CREATE TABLE public.parent (id int PRIMARY KEY);
      CREATE TABLE public.child (id int PRIMARY KEY, parent_id int REFERENCES public.parent (id));
      CREATE TABLE public.audited (id int PRIMARY KEY, v text);
      CREATE TABLE public.audit_log (origin text, id int);
      CREATE FUNCTION public.audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO public.audit_log VALUES (current_setting('pgfanout.origin', true), NEW.id); RETURN NEW; END $$;
      CREATE TRIGGER audited_trigger AFTER INSERT ON public.audited FOR EACH ROW EXECUTE FUNCTION public.audit();
      CREATE TABLE public.big (id int PRIMARY KEY, body text);
    `);
  });

  afterAll(async () => {
    await client?.end();
    await server?.stop();
  });

  it('applies inserts, updates, deletes and truncates and records the position', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.items');
    const batch1 = await messages(source, 1, [
      ins('items', { id: '1', label: 'one', price: '1.50', tags: '{a,"b c",NULL}' }),
      ins('items', { id: '2', label: 'two', price: null, tags: '{}' }),
      ins('items', { id: '3', label: 'three', price: '3.00', tags: null }),
      upd('items', { id: '2' }, { id: '2', label: 'TWO', price: '2.25', tags: '{x}' }),
      del('items', { id: '3' }),
    ]);
    const [result] = await applyAll(client, batch1);
    expect(result).toMatchObject({ outcome: 'applied', sourceId: source, batchId: '1', part: 0, changes: 5, sourceTime: '2024-05-01T12:00:00.123Z' });
    expect(await rows(client, 'public.items')).toEqual(['(1,one,1.50,"{a,""b c"",NULL}")', '(2,TWO,2.25,{x})']);
    expect(await replicaPosition(client, source)).toEqual({ batchId: '1', part: null });

    const [second] = await applyAll(client, await messages(source, 2, [{ op: 'T', schema: 'public', table: 'items', txid: '103' }]));
    expect(second?.outcome).toBe('applied');
    expect(await rows(client, 'public.items')).toEqual([]);
    expect(await replicaPosition(client, source)).toEqual({ batchId: '2', part: null });
  });

  it('applies the same message once, however often it arrives', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.nokey');
    const list = await messages(source, 1, [ins('nokey', { a: '1', b: 'x' })]);
    const first = await applyAll(client, list);
    const again = await applyAll(client, list);
    const third = await applyAll(client, list);
    expect(first[0]?.outcome).toBe('applied');
    expect(again[0]).toMatchObject({ outcome: 'duplicate', changes: 0 });
    expect(third[0]?.outcome).toBe('duplicate');
    expect(await rows(client, 'public.nokey')).toEqual(['(1,x)']);
  });

  it('applies a message delivered to two appliers at once exactly once', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.nokey');
    const second = new pg.Client(server.url('replica'));
    await second.connect();
    try {
      const list = await messages(source, 1, [ins('nokey', { a: '5', b: 'concurrent' })]);
      const results = await Promise.all([applyMessage(client, list[0]?.body as string), applyMessage(second, list[0]?.body as string)]);
      expect(results.map((r) => r.outcome).sort()).toEqual(['applied', 'duplicate']);
      expect(await rows(client, 'public.nokey')).toEqual(['(5,concurrent)']);
    } finally {
      await second.end();
    }
  });

  it('refuses a gap, naming expected and received positions, and applies nothing', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.nokey');
    await applyAll(client, await messages(source, 1, [ins('nokey', { a: '1', b: 'first' })]));
    const skipped = await messages(source, 3, [ins('nokey', { a: '3', b: 'third' })]);
    const error = await applyMessage(client, skipped[0]?.body as string).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(GapError);
    expect(error).toMatchObject({ code: 'GAP', permanent: true, expected: 'the batch after batch 1', received: 'batch 3 part 0 (prev 2)' });
    expect((error as Error).message).toContain(`gap in the stream of source ${source}: expected the batch after batch 1, received batch 3 part 0 (prev 2)`);
    expect(await rows(client, 'public.nokey')).toEqual(['(1,first)']);
    expect(await replicaPosition(client, source)).toEqual({ batchId: '1', part: null });
  });

  it('refuses a change for a missing column with a clear error and applies nothing', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.items');
    const list = await messages(source, 1, [ins('items', { id: '1', label: 'ok', price: '1', tags: null }), ins('items', { id: '2', label: 'x', price: '1', tags: null, note: 'new column' })]);
    const error = await applyMessage(client, list[0]?.body as string).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SchemaMismatchError);
    expect((error as Error).message).toBe(`replica table "public"."items" has no column "note" (in the change's new image) (batch 1, part 0, source ${source}); nothing applied`);
    expect(error).toMatchObject({ code: 'SCHEMA_MISMATCH', permanent: true, table: '"public"."items"', column: 'note' });
    expect(await rows(client, 'public.items')).toEqual([]);
    expect(await replicaPosition(client, source)).toBeNull();
  });

  it('refuses an unknown table unless it is excluded', async () => {
    const source = newSource();
    const list = await messages(source, 1, [ins('missing', { id: '1' }), ins('nokey', { a: '7', b: 'kept' })]);
    await expect(applyMessage(client, list[0]?.body as string)).rejects.toThrow(UnknownTableError);
    await expect(applyMessage(client, list[0]?.body as string)).rejects.toThrow(/replica has no table "public"."missing" \(batch 1, part 0, source /);
    const result = await applyMessage(client, list[0]?.body as string, { exclude: ['public.missing'] });
    expect(result).toMatchObject({ outcome: 'applied', changes: 1, skipped: 1 });
    expect((await rows(client, 'public.nokey')).filter((r) => r.startsWith('(7,'))).toEqual(['(7,kept)']);
  });

  it('applies only included tables', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.nokey, public.items');
    const list = await messages(source, 1, [ins('nokey', { a: '8', b: 'in' }), ins('items', { id: '8', label: 'out', price: null, tags: null })]);
    expect(await applyMessage(client, list[0]?.body as string, { include: ['public.nokey'] })).toMatchObject({ changes: 1, skipped: 1 });
    expect(await rows(client, 'public.nokey')).toEqual(['(8,in)']);
    expect(await rows(client, 'public.items')).toEqual([]);
  });

  it('leaves nothing applied when a statement fails mid-batch', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.items');
    const list = await messages(source, 1, [ins('items', { id: '1', label: 'fits', price: '1', tags: null }), del('items', { id: '1' }), ins('items', { id: '2', label: 'much too long for varchar 20', price: '1', tags: null })]);
    const error = await applyMessage(client, list[0]?.body as string).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DatabaseError);
    expect(error).toMatchObject({ permanent: true, sqlState: '22001' });
    expect((error as Error).message).toMatch(/inserting into replica table "public"."items" \(batch 1, part 0, source .*\): value too long for type character varying\(20\)/);
    expect(await rows(client, 'public.items')).toEqual([]);
    expect(await replicaPosition(client, source)).toBeNull();
  });

  it('refuses an update of a row the replica does not have', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.items');
    const list = await messages(source, 1, [upd('items', { id: '42' }, { id: '42', label: 'x', price: null, tags: null })]);
    await expect(applyMessage(client, list[0]?.body as string)).rejects.toThrow(RowNotFoundError);
    await expect(applyMessage(client, list[0]?.body as string)).rejects.toThrow(
      /replica table "public"."items": 1 of 1 rows to update not found by "id" \(part 0 changes\[0\]\) \(batch 1, part 0, source .*\); the replica differs from the source; nothing applied/,
    );
  });

  it('applies key changes in order, also when one run would touch a row twice', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.items');
    const row = (id: string, label: string) => ({ id, label, price: null, tags: null });
    const list = await messages(source, 1, [
      ins('items', row('1', 'a')),
      ins('items', row('2', 'b')),
      upd('items', { id: '1' }, row('3', 'a moved')),
      upd('items', { id: '2' }, row('1', 'b moved to 1')),
      upd('items', { id: '3' }, row('2', 'a moved again')),
      upd('items', { id: '2' }, row('2', 'a edited')),
      upd('items', { id: '1' }, row('1', 'b edited')),
    ]);
    await applyAll(client, list);
    expect(await rows(client, 'public.items')).toEqual(['(1,"b edited",,)', '(2,"a edited",,)']);
  });

  it('matches rows of a table without identity by the whole old row, one duplicate at a time', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.nokey');
    const list = await messages(source, 1, [
      ins('nokey', { a: '1', b: 'dup' }),
      ins('nokey', { a: '1', b: 'dup' }),
      ins('nokey', { a: '1', b: 'dup' }),
      ins('nokey', { a: null, b: null }),
      upd('nokey', { a: '1', b: 'dup' }, { a: '1', b: 'changed' }),
      del('nokey', { a: '1', b: 'dup' }),
      del('nokey', { a: null, b: null }),
    ]);
    await applyAll(client, list);
    expect(await rows(client, 'public.nokey', 't::text')).toEqual(['(1,changed)', '(1,dup)']);
  });

  it('writes identity columns, leaves generated columns to the replica', async () => {
    const source = newSource();
    const list = await messages(source, 1, [ins('gen', { id: '1000', n: '21', doubled: '42' }), upd('gen', { id: '1000' }, { id: '1000', n: '5', doubled: '10' })]);
    await applyAll(client, list);
    expect(await rows(client, 'public.gen')).toEqual(['(1000,5,10)']);
  });

  it('keeps replica triggers and foreign keys quiet with session_replication_role, or falls back to the origin guard', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.audited, public.audit_log, public.child, public.parent');
    const first = await messages(source, 1, [ins('child', { id: '1', parent_id: '9' }), ins('audited', { id: '1', v: 'x' })]);
    const [asReplica] = await applyAll(client, first, { replicationRole: 'replica' });
    expect(asReplica?.replicationRole).toBe('replica');
    expect(await rows(client, 'public.audit_log')).toEqual([]);
    expect(await rows(client, 'public.child')).toEqual(['(1,9)']);

    const second = await messages(source, 2, [ins('audited', { id: '2', v: 'y' })]);
    const [guarded] = await applyAll(client, second, { replicationRole: 'origin-guard', replicaTriggers: 'fire' });
    expect(guarded?.replicationRole).toBe('origin-guard');
    expect(await rows(client, 'public.audit_log')).toEqual([`(${source},2)`]);
    const setting = await client.query<{ v: string | null }>("SELECT current_setting('pgfanout.origin', true) AS v");
    expect(setting.rows[0]?.v ?? '').toBe('');
  });

  it('falls back to the origin guard automatically for a role that may not set session_replication_role', async () => {
    const source = newSource();
    await client.query(`
      DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'plain_applier') THEN CREATE ROLE plain_applier NOLOGIN; END IF; END $$;
      GRANT pgfanout_applier TO plain_applier;
      GRANT SELECT, INSERT, UPDATE, DELETE ON public.audited, public.audit_log TO plain_applier;
      TRUNCATE public.audited, public.audit_log;
    `);
    const list = await messages(source, 1, [ins('audited', { id: '3', v: 'z' })]);
    await client.query('SET ROLE plain_applier');
    try {
      const [result] = await applyAll(client, list, { replicaTriggers: 'fire' });
      expect(result).toMatchObject({ outcome: 'applied', replicationRole: 'origin-guard' });
    } finally {
      await client.query('RESET ROLE');
    }
    expect(await rows(client, 'public.audit_log')).toEqual([`(${source},3)`]);
  });

  it('stages a batch split into many parts and applies it whole only at the final part', async () => {
    const source = newSource();
    await client.query('TRUNCATE public.items');
    const changes = Array.from({ length: 120 }, (_, i) => ins('items', { id: String(i), label: `label ${i}`, price: `${i}.00`, tags: `{${i}}` }));
    const list = await messages(source, 1, changes, 1024);
    expect(list.length).toBeGreaterThan(5);
    for (const [i, m] of list.entries()) {
      const result = await applyMessage(client, m.body);
      if (i < list.length - 1) {
        expect(result.outcome).toBe('staged');
        expect(await rows(client, 'public.items')).toEqual([]);
        expect(await replicaPosition(client, source)).toEqual({ batchId: '1', part: i });
        // A redelivered part is a duplicate.
        expect((await applyMessage(client, m.body)).outcome).toBe('duplicate');
      } else {
        expect(result).toMatchObject({ outcome: 'applied', changes: 120 });
      }
    }
    expect(await rows(client, 'public.items', 'id')).toHaveLength(120);
    expect(await replicaPosition(client, source)).toEqual({ batchId: '1', part: null });
    const staged = await client.query('SELECT count(*)::int AS n FROM pgfanout.replica_staged_part WHERE source_id = $1', [source]);
    expect(staged.rows[0]).toEqual({ n: 0 });
  });

  it('refuses a part out of order and a part of another encoding of the batch', async () => {
    const source = newSource();
    const changes = Array.from({ length: 60 }, (_, i) => ins('nokey', { a: String(i), b: 'x'.repeat(30) }));
    const small = await messages(source, 1, changes, 1024);
    const other = await messages(source, 1, changes, 1500);
    await applyMessage(client, small[0]?.body as string);
    await expect(applyMessage(client, small[2]?.body as string)).rejects.toThrow(/expected batch 1 part 1, received batch 1 part 2/);
    await expect(applyMessage(client, other[1]?.body as string)).rejects.toThrow(/another encoding of the batch/);
    // The other encoding's first part starts the batch over.
    for (const m of other) await applyMessage(client, m.body);
    expect(await replicaPosition(client, source)).toEqual({ batchId: '1', part: null });
  });

  it('reassembles a value larger than a message inside the replica', async () => {
    const source = newSource();
    const body = 'é"\\\n😀'.repeat(20_000);
    const list = await messages(source, 1, [ins('big', { id: '1', body }), upd('big', { id: '1' }, { id: '1', body: body + 'tail' }), ins('big', { id: '2', body: 'small' })], 8192);
    expect(list.length).toBeGreaterThan(20);
    await applyAll(client, list);
    const { rows: result } = await client.query<{ id: number; body: string }>('SELECT id, body FROM public.big ORDER BY id');
    expect(result).toEqual([
      { id: 1, body: body + 'tail' },
      { id: 2, body: 'small' },
    ]);
    const leftovers = await client.query('SELECT count(*)::int AS n FROM pgfanout.replica_staged_value');
    expect(leftovers.rows[0]).toEqual({ n: 0 });
  });

  it('names the privilege problem when session_replication_role = replica is demanded but not allowed', async () => {
    const source = newSource();
    const list = await messages(source, 1, [ins('audited', { id: '4', v: 'w' })]);
    await client.query('SET ROLE plain_applier');
    try {
      const error = await applyMessage(client, list[0]?.body as string, { replicationRole: 'replica' }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DatabaseError);
      expect((error as Error).message).toMatch(/permission denied to set parameter "session_replication_role" \[SQLSTATE 42501\]/);
    } finally {
      await client.query('RESET ROLE');
    }
    expect(await replicaPosition(client, source)).toBeNull();
  });

  it('says so when the replica tables were never installed', async () => {
    const bare = await createDatabase(server, 'bare');
    try {
      const list = await messages(newSource(), 1, [ins('nokey', { a: '1', b: 'x' })]);
      await expect(applyMessage(bare.client, list[0]?.body as string)).rejects.toThrow(/no pgfanout replica tables; install them first \(installReplica\)/);
    } finally {
      await bare.client.end();
    }
  });

  it('reports a lost connection as transient and applies nothing', async () => {
    const source = newSource();
    const doomed = new pg.Client(server.url('replica'));
    await doomed.connect();
    doomed.on('error', () => undefined);
    const pid = (await doomed.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
    await client.query('SELECT pg_terminate_backend($1)', [pid]);
    const list = await messages(source, 1, [ins('nokey', { a: '9', b: 'lost' })]);
    const error = await applyMessage(doomed, list[0]?.body as string).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransientDatabaseError);
    expect(error).toMatchObject({ permanent: false, code: 'DB_TRANSIENT' });
    expect(await replicaPosition(client, source)).toBeNull();
    await doomed.end().catch(() => undefined);
  });

  it('rejects malformed and unknown-version messages before touching the database', async () => {
    const source = newSource();
    const [m] = await messages(source, 1, [ins('nokey', { a: '1', b: 'x' })]);
    const body = JSON.parse(m?.body as string) as Record<string, unknown>;
    await expect(applyMessage(client, JSON.stringify({ ...body, pgfanout: 99 }))).rejects.toThrow(UnsupportedVersionError);
    await expect(applyMessage(client, JSON.stringify({ ...body, count: 5 }))).rejects.toThrow(MalformedMessageError);
    await expect(applyMessage(client, JSON.stringify({ ...body, count: 5 }))).rejects.toThrow(/field count is 5; allowed: the number of changes in batch 1's parts, 1/);
    await expect(applyMessage(client, 'not json')).rejects.toThrow(/field body is not JSON/);
    expect(await replicaPosition(client, source)).toBeNull();
  });
});
