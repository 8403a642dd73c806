/**
 * pgfanout.mark_snapshot_batch: a batch boundary exactly at a snapshot S, so that a copy of
 * the tables made under S plus the batches after the returned id B is the source's history.
 * Real servers of each tested major; the boundary is checked against what a REPEATABLE READ
 * transaction holding S actually sees.
 */
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { batchValuesCopy, connect, drainEvents, nextBatch, sourceWithTable, takeBatch, type CapturedEvent } from '#testing/source.ts';
import { describeEachMajor } from '#testing/servers.ts';

/** Error of a query expected to fail, as `SQLSTATE: message`. */
async function failure(client: pg.ClientBase, sql: string, values: unknown[] = []): Promise<string> {
  return client.query(sql, values).then(
    () => 'no error',
    (err: { code?: string; message?: string }) => `${err.code}: ${err.message}`,
  );
}

const ids = (events: readonly CapturedEvent[]) => events.map((e) => e.row?.id ?? e.key?.id);

/** Rows of t as `id=v`, sorted, as `client` sees them. */
async function rowsOf(client: pg.ClientBase): Promise<string[]> {
  const { rows } = await client.query<{ r: string }>("SELECT r FROM (SELECT id || '=' || coalesce(v, 'NULL') AS r FROM t) x ORDER BY r COLLATE \"C\"");
  return rows.map((row) => row.r);
}

/** Replays events of t (id text primary key, v text) into a map. */
function replay(state: Map<string, string | null>, events: readonly CapturedEvent[]): void {
  for (const e of events) {
    if (e.op === 'T') state.clear();
    if (e.op === 'U' || e.op === 'D') state.delete(e.key?.id as string);
    if (e.op === 'I' || e.op === 'U') state.set(e.row?.id as string, e.row?.v ?? null);
  }
}

const sorted = (state: Map<string, string | null>) =>
  [...state].map(([id, v]) => `${id}=${v ?? 'NULL'}`).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

describeEachMajor('mark_snapshot_batch on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  const open: pg.Client[] = [];

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
  });
  afterEach(async () => {
    for (const c of open.splice(0)) await c.end().catch(() => undefined);
  });
  afterAll(async () => {
    await server?.stop();
  });

  const source = () => sourceWithTable(server, open);

  /** Opens a REPEATABLE READ transaction on `client` and returns its snapshot S as text. */
  async function holdSnapshot(client: pg.ClientBase): Promise<string> {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    return (await client.query<{ s: string }>('SELECT pg_current_snapshot()::text AS s')).rows[0]?.s as string;
  }

  const mark = async (client: pg.ClientBase, snapshot: string) =>
    (await client.query<{ b: string }>('SELECT pgfanout.mark_snapshot_batch($1::pg_snapshot) AS b', [snapshot])).rows[0]?.b;

  it('a long transaction spanning S: batches up to B are exactly what S sees, the long one comes whole after', async () => {
    // Prepare: batch 1 published; a long transaction open; one more commit
    const { conn } = await source();
    const [w, long, holder, m, p] = [await conn(), await conn(), await conn(), await conn(), await conn()];
    await w.query("INSERT INTO t VALUES ('a', '1')");
    await takeBatch(p);
    await long.query("BEGIN; INSERT INTO t VALUES ('long-1')");
    await w.query("INSERT INTO t VALUES ('b', '2'); UPDATE t SET v = '1b' WHERE id = 'a'");
    const s = await holdSnapshot(holder);
    const seenInS = await rowsOf(holder);
    await long.query("INSERT INTO t VALUES ('long-2'); COMMIT");
    await w.query("INSERT INTO t VALUES ('c')");
    // Act
    const b = await mark(m, s);
    const marked = await takeBatch(p);
    const after = await takeBatch(p);
    // Assess
    expect(b).toBe('2');
    expect(seenInS).toEqual(['a=1b', 'b=2']);
    expect(marked?.batch).toMatchObject({ batch_id: '2', prev_batch_id: '1', event_count: '2' });
    expect(ids(marked?.events ?? [])).toEqual(['b', 'a']);
    expect((await p.query('SELECT snapshot::text AS s FROM pgfanout.batch WHERE batch_id = 2')).rows[0].s).toBe(s);
    expect(after?.batch).toMatchObject({ batch_id: '3', prev_batch_id: '2' });
    expect(ids(after?.events ?? [])).toEqual(['long-1', 'long-2', 'c']);
    expect(await nextBatch(p)).toBeUndefined();
  });

  it('with a batch open: that batch is served again byte for byte and finished first, then B, then what came after S', async () => {
    // Prepare: batch 1 served and read, not finished
    const { conn } = await source();
    const [w, holder, m, p] = [await conn(), await conn(), await conn(), await conn()];
    await w.query("INSERT INTO t VALUES ('a')");
    const served = await nextBatch(p);
    const bytes = await batchValuesCopy(p, served?.batch_id as string);
    await w.query("INSERT INTO t VALUES ('b')");
    const s = await holdSnapshot(holder);
    await w.query("INSERT INTO t VALUES ('c')");
    // Act
    const b = await mark(m, s);
    const again = await nextBatch(p);
    const bytesAgain = await batchValuesCopy(p, again?.batch_id as string);
    const status = (await p.query('SELECT last_batch_id, finished_batch_id, open_batch_id, pending_events FROM pgfanout.status()')).rows[0];
    const refused = [
      await failure(p, 'SELECT * FROM pgfanout.batch_values(2)'),
      await failure(p, 'SELECT pgfanout.finish_batch(2)'),
    ];
    await p.query('SELECT pgfanout.finish_batch(1)');
    const second = await takeBatch(p);
    const third = await takeBatch(p);
    // Assess
    expect(b).toBe('2');
    expect(again).toEqual(served);
    expect(bytesAgain.equals(bytes)).toBe(true);
    expect(status).toEqual({ last_batch_id: '2', finished_batch_id: '0', open_batch_id: '1', pending_events: '3' });
    expect(refused).toEqual([
      '22023: pgfanout.batch_values: batch 2 is not the open batch (the open batch is 1)',
      '22023: pgfanout.finish_batch: cannot finish batch 2: the open batch is 1',
    ]);
    expect(second?.batch).toMatchObject({ batch_id: '2', prev_batch_id: '1', event_count: '1' });
    expect(ids(second?.events ?? [])).toEqual(['b']);
    expect(third?.batch).toMatchObject({ batch_id: '3', prev_batch_id: '2', event_count: '1' });
    expect(ids(third?.events ?? [])).toEqual(['c']);
    expect((await p.query('SELECT last_batch_id, finished_batch_id, open_batch_id FROM pgfanout.status()')).rows[0]).toEqual({
      last_batch_id: '3',
      finished_batch_id: '3',
      open_batch_id: null,
    });
  });

  it('nothing committed since the boundary: B is the last batch, no id is used', async () => {
    const { conn } = await source();
    const [w, holder, m, p] = [await conn(), await conn(), await conn(), await conn()];
    expect(await mark(m, await holdSnapshot(holder))).toBe('0');
    await holder.query('COMMIT');
    await w.query("INSERT INTO t VALUES ('a')");
    await takeBatch(p);
    const b = await mark(m, await holdSnapshot(holder));
    await w.query("INSERT INTO t VALUES ('b')");
    const next = await takeBatch(p);
    expect(b).toBe('1');
    expect(next?.batch).toMatchObject({ batch_id: '2', prev_batch_id: '1' });
    expect(ids(next?.events ?? [])).toEqual(['b']);
  });

  it('refuses a snapshot older than the newest boundary (retry with a new one), one it cannot see, and NULL', async () => {
    // Prepare: S, then the publisher takes a batch of a commit made after S
    const { url, conn } = await source();
    const [w, holder, m, p, early] = [await conn(), await conn(), await conn(), await conn(), await conn()];
    const s = await holdSnapshot(holder);
    await w.query("INSERT INTO t VALUES ('after S')");
    await takeBatch(p);
    // Act + Assess: too old
    expect(await failure(m, 'SELECT pgfanout.mark_snapshot_batch($1::pg_snapshot)', [s])).toMatch(
      /^40001: pgfanout\.mark_snapshot_batch: snapshot \d+:\d+:[\d,]* is older than the newest batch boundary \(snapshot \d+:\d+:[\d,]*, after batch 1\)$/,
    );
    await holder.query('COMMIT');
    expect(await mark(m, await holdSnapshot(holder))).toBe('1');
    // a snapshot newer than the caller's own (the caller's REPEATABLE READ snapshot predates it)
    await early.query('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1');
    await w.query("INSERT INTO t VALUES ('later')");
    await holder.query('COMMIT');
    const newer = await holdSnapshot(holder);
    expect(await failure(early, 'SELECT pgfanout.mark_snapshot_batch($1::pg_snapshot)', [newer])).toMatch(
      /^22023: pgfanout\.mark_snapshot_batch: snapshot \d+:\d+:[\d,]* is not visible to this transaction/,
    );
    await early.query('ROLLBACK');
    expect(await failure(m, 'SELECT pgfanout.mark_snapshot_batch(NULL)')).toBe('22004: pgfanout.mark_snapshot_batch: the snapshot must not be NULL');
    // the publisher's role may not call it
    const role = `pub_${Math.random().toString(36).slice(2, 8)}`;
    await w.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw' IN ROLE pgfanout_publisher`);
    const publisher = await connect(url.replace(/^postgres:\/\/[^@]+@/, `postgres://${role}:pw@`));
    open.push(publisher);
    expect(await failure(publisher, 'SELECT pgfanout.mark_snapshot_batch($1::pg_snapshot)', [newer])).toMatch(/^42501: permission denied for function mark_snapshot_batch$/);
  });

  it('under concurrent writers and a running publisher, each mark B replays to exactly the rows its S saw', async () => {
    // Prepare: three writers inserting, updating, deleting; a publisher taking batches
    const { conn } = await source();
    const writers = await Promise.all(Array.from({ length: 3 }, () => conn()));
    const [holder, m, p] = [await conn(), await conn(), await conn()];
    const events = new Map<number, CapturedEvent[]>();
    let writing = true;
    const writes = Promise.all(
      writers.map(async (w, n) => {
        for (let i = 0; writing || i < 30; i++) {
          await w.query('BEGIN');
          await w.query('INSERT INTO t VALUES ($1, $2)', [`w${n}-${i}`, String(i)]);
          if (i % 3 === 0) await w.query('UPDATE t SET v = v || $2 WHERE id = $1', [`w${n}-${Math.floor(i / 2)}`, '+']);
          if (i % 5 === 0) await w.query('DELETE FROM t WHERE id = $1', [`w${n}-${Math.floor(i / 3)}`]);
          await w.query('COMMIT');
        }
      }),
    );
    let publishing = true;
    const publisher = (async () => {
      while (publishing) {
        const taken = await takeBatch(p);
        if (taken) events.set(Number(taken.batch.batch_id), taken.events);
      }
    })();
    // Act: marks while everything runs, retrying a snapshot the publisher overtook
    const marks: { b: number; rows: string[] }[] = [];
    let retries = 0;
    while (marks.length < 6) {
      const s = await holdSnapshot(holder);
      const rows = await rowsOf(holder);
      const b = await mark(m, s).catch((err: { code?: string }) => {
        if (err.code !== '40001') throw err;
        retries++;
        return undefined;
      });
      await holder.query('COMMIT');
      if (b !== undefined) marks.push({ b: Number(b), rows });
    }
    writing = false;
    await writes;
    publishing = false;
    await publisher;
    for (let taken = await takeBatch(p); taken; taken = await takeBatch(p)) events.set(Number(taken.batch.batch_id), taken.events);
    // Assess: dense ids, and replaying batches 1..B gives S's rows for every mark
    const last = Math.max(...events.keys());
    expect([...events.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: last }, (_, i) => i + 1));
    const state = new Map<string, string | null>();
    let applied = 0;
    for (const { b, rows } of [...marks].sort((x, y) => x.b - y.b)) {
      for (; applied < b; applied++) replay(state, events.get(applied + 1) ?? []);
      expect(sorted(state), `batches 1..${b}`).toEqual(rows);
    }
    for (; applied < last; applied++) replay(state, events.get(applied + 1) ?? []);
    expect(sorted(state)).toEqual(await rowsOf(p));
    expect(marks.length + retries).toBeGreaterThanOrEqual(6);
    expect(await drainEvents(p)).toEqual([]);
  });
});
