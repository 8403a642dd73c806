/**
 * Planning of set-based statements and the per-connection catalog: per-table planning gives the
 * same rows as applying the changes one by one, in fewer statements; it keeps the batch's order
 * wherever order can matter (origin guard, other unique constraints, triggers that fire in replica
 * mode, defaults); a warm connection spends four round trips on a message besides its changes;
 * what was read of the catalog is forgotten when it may be wrong.
 */
import fc from 'fast-check';
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { applyMessage, type ApplyOptions, type ApplyResult } from './apply.ts';
import { replicaCatalog } from './catalog.ts';
import { encodeBatch, type OutgoingMessage } from '../source/encoder.ts';
import type { Change, RowImage } from '../wire/envelope.ts';
import { InvalidArgumentError, SchemaMismatchError } from '../wire/errors.ts';
import { installReplica } from '../../ops/install.ts';
import { collect, tokensOf } from '#testing/batches.ts';
import { createDatabase, describeEachMajor } from '#testing/servers.ts';

let sourceCounter = 0;
const newSource = () => `planning-${++sourceCounter}-${Math.random().toString(36).slice(2, 8)}`;

async function messages(sourceId: string, batch: number, changes: readonly Change[]): Promise<OutgoingMessage[]> {
  return collect(encodeBatch({ sourceId, batchId: String(batch), prevBatchId: String(batch - 1) }, tokensOf(changes)));
}

const ins = (table: string, row: RowImage): Change => ({ op: 'I', schema: 'public', table, txid: '100', new: row });
const upd = (table: string, old: RowImage, row: RowImage): Change => ({ op: 'U', schema: 'public', table, txid: '100', old, new: row });
const del = (table: string, old: RowImage): Change => ({ op: 'D', schema: 'public', table, txid: '100', old });

/** The queries one apply sends, by text. */
interface Counted {
  readonly result: ApplyResult;
  readonly queries: string[];
}

/** Applies one message, recording every query sent on `client` meanwhile. */
async function counted(client: pg.Client, body: string, options: ApplyOptions = {}): Promise<Counted> {
  const queries: string[] = [];
  const original = client.query;
  (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
    const q = args[0];
    queries.push(typeof q === 'string' ? q : ((q as { text?: string }).text ?? ''));
    return (original as (...a: unknown[]) => unknown).apply(client, args);
  };
  try {
    return { result: await applyMessage(client, body, options), queries };
  } finally {
    client.query = original;
  }
}

/** Queries that write changes (not the transaction, settings, position or catalog). */
const changeStatements = (queries: readonly string[]) =>
  queries.filter((q) => !/^\s*(BEGIN|COMMIT|ROLLBACK)\b|pgfanout\.replica_|pg_catalog\.pg_(class|index)/.test(q));

async function rows(client: pg.ClientBase, table: string): Promise<string[]> {
  const result = await client.query<{ r: string }>(`SELECT t::text AS r FROM ${table} AS t ORDER BY 1`);
  return result.rows.map((r) => r.r);
}

describeEachMajor('statement planning on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let client: pg.Client;

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
    ({ client } = await createDatabase(server, 'replica'));
    await installReplica(client);
    await client.query(`
      CREATE TABLE public.parent (id int PRIMARY KEY, v text);
      CREATE TABLE public.child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES public.parent (id), v text);
      CREATE TABLE public.people (id int PRIMARY KEY, email text NOT NULL UNIQUE, v text);
      CREATE TABLE public.loose (x int, v text);
      CREATE TABLE public.watched (id int PRIMARY KEY);
      CREATE TABLE public.watch_log (seen bigint);
      CREATE FUNCTION public.watch() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO public.watch_log SELECT count(*) FROM public.parent; RETURN NEW; END $$;
      CREATE TRIGGER watched_trigger AFTER INSERT ON public.watched FOR EACH ROW EXECUTE FUNCTION public.watch();
      ALTER TABLE public.watched ENABLE ALWAYS TRIGGER watched_trigger;
      CREATE SEQUENCE public.shared_seq;
      CREATE TABLE public.numbered_a (id int PRIMARY KEY, n bigint NOT NULL DEFAULT nextval('public.shared_seq'));
      CREATE TABLE public.numbered_b (id int PRIMARY KEY, n bigint NOT NULL DEFAULT nextval('public.shared_seq'));
      CREATE TABLE public.evolving (id int PRIMARY KEY, v text);
    `);
  });

  afterAll(async () => {
    await client?.end();
    await server?.stop();
  });

  const reset = () =>
    client.query('TRUNCATE public.parent, public.child, public.people, public.loose, public.watched, public.watch_log, public.numbered_a, public.numbered_b, public.evolving; ALTER SEQUENCE public.shared_seq RESTART');

  it('groups interleaved changes per table and within a table, with the same rows as in order', async () => {
    const batch: Change[] = [];
    for (let i = 1; i <= 6; i++) {
      batch.push(ins('parent', { id: String(i), v: `p${i}` }));
      batch.push(ins('child', { id: String(10 + i), parent_id: String(i), v: 'new' }));
      if (i > 1) batch.push(upd('child', { id: String(9 + i) }, { id: String(9 + i), parent_id: String(i - 1), v: 'paid' }));
      if (i > 2) batch.push(del('parent', { id: String(i - 2) }));
    }
    const results: Record<string, { statements: number; rows: string[] }> = {};
    for (const planning of ['in-order', 'per-table'] as const) {
      await reset();
      const [message] = await messages(newSource(), 1, batch);
      const { result, queries } = await counted(client, message?.body as string, { replicationRole: 'replica', planning });
      expect(result).toMatchObject({ outcome: 'applied', changes: batch.length });
      results[planning] = { statements: changeStatements(queries).length, rows: [...(await rows(client, 'public.parent')), ...(await rows(client, 'public.child'))] };
    }
    expect(results['per-table']?.rows).toEqual(results['in-order']?.rows);
    expect(results['per-table']?.rows).toContain('(16,6,new)');
    // In order every change is its own statement; per table: parent inserts, child inserts, child updates, parent deletes.
    expect(results['in-order']?.statements).toBe(batch.length);
    expect(results['per-table']?.statements).toBe(4);
  });

  it('keeps the batch order across tables under the origin guard, where foreign keys are checked', async () => {
    await reset();
    await client.query(`INSERT INTO public.parent VALUES (1, 'existing')`);
    // Grouped per table, child 11 would be inserted before its parent 3.
    const batch = [ins('child', { id: '10', parent_id: '1', v: null }), ins('parent', { id: '3', v: null }), ins('child', { id: '11', parent_id: '3', v: null })];
    const [message] = await messages(newSource(), 1, batch);
    const { result, queries } = await counted(client, message?.body as string, { replicationRole: 'origin-guard' });
    expect(result).toMatchObject({ outcome: 'applied', replicationRole: 'origin-guard', changes: 3 });
    expect(changeStatements(queries).filter((q) => /INSERT INTO "public"/.test(q))).toHaveLength(3);
    expect(await rows(client, 'public.child')).toEqual(['(10,1,)', '(11,3,)']);
  });

  it('does not move a change past another of its table when a unique constraint besides the identity could collide', async () => {
    await reset();
    await client.query(`INSERT INTO public.people VALUES (1, 'x@example.com', 'a')`);
    // Row 2 takes the e-mail row 1 gives up: joining the first INSERT's statement would violate people_email_key.
    const batch = [ins('people', { id: '3', email: 'y@example.com', v: null }), del('people', { id: '1' }), ins('people', { id: '2', email: 'x@example.com', v: 'b' })];
    const [message] = await messages(newSource(), 1, batch);
    const { result, queries } = await counted(client, message?.body as string, { replicationRole: 'replica' });
    expect(result).toMatchObject({ outcome: 'applied', replicationRole: 'replica', changes: 3 });
    expect(changeStatements(queries)).toHaveLength(3);
    expect(await rows(client, 'public.people')).toEqual(['(2,x@example.com,b)', '(3,y@example.com,)']);
  });

  it('keeps a table with a trigger enabled ALWAYS at its exact place in the batch', async () => {
    await reset();
    const batch = [ins('parent', { id: '1', v: null }), ins('watched', { id: '1' }), ins('parent', { id: '2', v: null }), ins('watched', { id: '2' })];
    const [message] = await messages(newSource(), 1, batch);
    expect(await applyMessage(client, message?.body as string, { replicationRole: 'replica' })).toMatchObject({ outcome: 'applied', changes: 4 });
    // The trigger saw one parent, then two: as on the source.
    expect(await rows(client, 'public.watch_log')).toEqual(['(1)', '(2)']);
  });

  it('keeps inserts that leave a column to its default in order', async () => {
    await reset();
    const batch = [ins('numbered_a', { id: '1' }), ins('numbered_b', { id: '1' }), ins('numbered_a', { id: '2' }), ins('numbered_b', { id: '2' })];
    const [message] = await messages(newSource(), 1, batch);
    expect(await applyMessage(client, message?.body as string, { replicationRole: 'replica' })).toMatchObject({ outcome: 'applied', changes: 4 });
    expect([...(await rows(client, 'public.numbered_a')), ...(await rows(client, 'public.numbered_b'))]).toEqual(['(1,1)', '(2,3)', '(1,2)', '(2,4)']);
  });

  it('does not move a change past one that touches the same row', async () => {
    await reset();
    const batch = [
      ins('parent', { id: '1', v: 'a' }),
      upd('parent', { id: '1' }, { id: '5', v: 'moved' }),
      ins('parent', { id: '1', v: 'again' }),
      del('parent', { id: '5' }),
      ins('parent', { id: '5', v: 'back' }),
    ];
    const [message] = await messages(newSource(), 1, batch);
    expect(await applyMessage(client, message?.body as string, { replicationRole: 'replica' })).toMatchObject({ outcome: 'applied', changes: 5 });
    expect(await rows(client, 'public.parent')).toEqual(['(1,again)', '(5,back)']);
  });

  it('spends four round trips on a message besides its changes once the catalog is known', async () => {
    await reset();
    const source = newSource();
    const first = await messages(source, 1, [ins('parent', { id: '1', v: null }), ins('loose', { x: '1', v: null })]);
    const warmUp = await counted(client, first[0]?.body as string, { replicationRole: 'auto' });
    expect(warmUp.result.outcome).toBe('applied');
    const second = await messages(source, 2, [ins('parent', { id: '2', v: null }), ins('loose', { x: '2', v: null }), upd('parent', { id: '1' }, { id: '1', v: 'x' })]);
    const { result, queries } = await counted(client, second[0]?.body as string, { replicationRole: 'auto' });
    expect(result).toMatchObject({ outcome: 'applied', replicationRole: 'replica', changes: 3 });
    expect(queries.filter((q) => /pg_catalog\.pg_(class|index)/.test(q))).toEqual([]);
    expect(changeStatements(queries)).toHaveLength(3);
    expect(queries.length - changeStatements(queries).length).toBe(4);
  });

  it('reads the catalog again after a failed apply, and when told to', async () => {
    await reset();
    const source = newSource();
    await applyMessage(client, (await messages(source, 1, [ins('evolving', { id: '1', v: null })]))[0]?.body as string);
    await client.query('ALTER TABLE public.evolving ADD COLUMN note text');
    try {
      // Known before the column was added: refused once, then read again.
      const withNote = (await messages(source, 2, [ins('evolving', { id: '2', v: null, note: 'n' })]))[0]?.body as string;
      await expect(applyMessage(client, withNote)).rejects.toThrow(SchemaMismatchError);
      expect(await applyMessage(client, withNote)).toMatchObject({ outcome: 'applied', changes: 1 });

      await client.query('ALTER TABLE public.evolving DROP COLUMN note');
      replicaCatalog(client).invalidate('public', 'evolving');
      const without = (await messages(source, 3, [ins('evolving', { id: '3', v: null, note: 'n' })]))[0]?.body as string;
      await expect(applyMessage(client, without)).rejects.toThrow(/has no column "note"/);
    } finally {
      await client.query('ALTER TABLE public.evolving DROP COLUMN IF EXISTS note');
      replicaCatalog(client).invalidate();
    }
    expect(await rows(client, 'public.evolving')).toEqual(['(1,)', '(2,)']);
  });

  it('refuses a planning it does not know, naming it', async () => {
    const [message] = await messages(newSource(), 1, [ins('loose', { x: '1', v: null })]);
    await expect(applyMessage(client, message?.body as string, { planning: 'fastest' as never })).rejects.toThrow(InvalidArgumentError);
    await expect(applyMessage(client, message?.body as string, { planning: 'fastest' as never })).rejects.toThrow(/planning "fastest" is not allowed; expected 'per-table' or 'in-order'/);
  });

  // Property: any valid sequence of changes over a table whose only unique index is its key, one
  // with a second unique column, and one without identity gives the same rows per table as in order.
  type Row = Record<string, string | null>;
  type Step =
    | { readonly t: 'parent' | 'people'; readonly kind: 'insert'; readonly id: number; readonly email: number; readonly v: string | null }
    | { readonly t: 'parent' | 'people'; readonly kind: 'update'; readonly id: number; readonly to: number; readonly email: number; readonly v: string | null }
    | { readonly t: 'parent' | 'people'; readonly kind: 'delete'; readonly id: number }
    | { readonly t: 'loose'; readonly kind: 'insert' | 'update' | 'delete'; readonly x: number; readonly v: string | null };
  const small = fc.integer({ min: 0, max: 4 });
  const v = fc.constantFrom('a', 'b', null);
  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ t: fc.constantFrom('parent' as const, 'people' as const), kind: fc.constant('insert' as const), id: small, email: small, v }),
    fc.record({ t: fc.constantFrom('parent' as const, 'people' as const), kind: fc.constant('update' as const), id: small, to: small, email: small, v }),
    fc.record({ t: fc.constantFrom('parent' as const, 'people' as const), kind: fc.constant('delete' as const), id: small }),
    fc.record({ t: fc.constant('loose' as const), kind: fc.constantFrom('insert' as const, 'update' as const, 'delete' as const), x: fc.integer({ min: 0, max: 2 }), v }),
  );

  /** The changes a source would log for `steps` (invalid steps are skipped), and its final rows. */
  function simulate(steps: readonly Step[]): { changes: Change[]; expected: Record<string, Row[]> } {
    const keyed: Record<'parent' | 'people', Map<number, Row>> = { parent: new Map(), people: new Map() };
    const loose: Row[] = [];
    const changes: Change[] = [];
    const emailFree = (table: Map<number, Row>, email: string, except?: number) => ![...table].some(([id, r]) => id !== except && r.email === email);
    for (const s of steps) {
      if (s.t === 'loose') {
        const at = loose.findIndex((r) => r.x === String(s.x));
        if (s.kind === 'insert') {
          const row = { x: String(s.x), v: s.v };
          loose.push(row);
          changes.push(ins('loose', row));
        } else if (at >= 0) {
          const old = loose[at] as Row;
          if (s.kind === 'update') {
            const row = { x: old.x ?? null, v: s.v };
            loose[at] = row;
            changes.push(upd('loose', old, row));
          } else {
            loose.splice(at, 1);
            changes.push(del('loose', old));
          }
        }
        continue;
      }
      const table = keyed[s.t];
      const rowOf = (id: number, email: number, value: string | null): Row => (s.t === 'parent' ? { id: String(id), v: value } : { id: String(id), email: `e${email}`, v: value });
      if (s.kind === 'insert') {
        if (table.has(s.id) || (s.t === 'people' && !emailFree(table, `e${s.email}`))) continue;
        const row = rowOf(s.id, s.email, s.v);
        table.set(s.id, row);
        changes.push(ins(s.t, row));
      } else if (s.kind === 'update') {
        if (!table.has(s.id) || (s.to !== s.id && table.has(s.to)) || (s.t === 'people' && !emailFree(table, `e${s.email}`, s.id))) continue;
        const row = rowOf(s.to, s.email, s.v);
        table.delete(s.id);
        table.set(s.to, row);
        changes.push(upd(s.t, { id: String(s.id) }, row));
      } else if (table.delete(s.id)) {
        changes.push(del(s.t, { id: String(s.id) }));
      }
    }
    const text = (r: Row) => `(${Object.values(r).map((x) => x ?? '').join(',')})`;
    return {
      changes,
      expected: {
        parent: [...keyed.parent.values()].map(text).sort(),
        people: [...keyed.people.values()].map(text).sort(),
        loose: loose.map(text).sort(),
      } as unknown as Record<string, Row[]>,
    };
  }

  it('property: per-table planning gives the rows the source holds, for any valid sequence of changes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 40 }), async (steps) => {
        const { changes, expected } = simulate(steps);
        fc.pre(changes.length > 0);
        await reset();
        const [message] = await messages(newSource(), 1, changes);
        expect(await applyMessage(client, message?.body as string, { replicationRole: 'replica' })).toMatchObject({ outcome: 'applied', changes: changes.length });
        const sorted = async (table: string) => (await rows(client, `public.${table}`)).sort();
        expect({ parent: await sorted('parent'), people: await sorted('people'), loose: await sorted('loose') }).toEqual(expected);
      }),
      { numRuns: 60 },
    );
  });
});
