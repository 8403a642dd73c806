/**
 * The source side's batch protocol: snapshot batches in commit order, re-serving an
 * unfinished batch byte for byte, finish_batch, log rotation by TRUNCATE, the NOTIFY
 * wake-up, status, and the pgfanout_publisher role. Real servers of each tested major,
 * several connections where concurrency matters.
 */
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { quoteIdent } from '../pg/sql.ts';
import { batchValuesCopy, connect, drainEvents, foldEvents, batchValues, nextBatch, sourceWithTable, takeBatch, type CapturedEvent } from '#testing/source.ts';
import { describeEachMajor } from '#testing/servers.ts';

/** Error message of a query expected to fail. */
async function failure(client: pg.ClientBase, sql: string, values: unknown[] = []): Promise<string> {
  return client.query(sql, values).then(
    () => 'no error',
    (err: Error) => err.message,
  );
}

const ids = (events: readonly CapturedEvent[]) => events.map((e) => e.row?.id ?? e.key?.id);

/** Round trips on `client` until `done()` holds, failing after `ms` (no sleeping: each round trip lets notifications in). */
async function until(client: pg.ClientBase, done: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await client.query('SELECT 1');
  }
}

describeEachMajor('batch protocol on PostgreSQL %i', (major) => {
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

  it('serves nothing when nothing committed; batch ids are dense and each names its predecessor', async () => {
    // Prepare
    const { conn } = await source();
    const [w, p] = [await conn(), await conn()];
    // Act + Assess
    expect(await nextBatch(p)).toBeUndefined();
    await w.query("INSERT INTO t VALUES ('a')");
    const first = await takeBatch(p);
    expect(await nextBatch(p)).toBeUndefined();
    expect(await nextBatch(p)).toBeUndefined();
    await w.query("INSERT INTO t VALUES ('b')");
    await w.query("INSERT INTO t VALUES ('c')");
    const second = await takeBatch(p);
    expect(first?.batch).toMatchObject({ batch_id: '1', prev_batch_id: '0', event_count: '1' });
    expect(second?.batch).toMatchObject({ batch_id: '2', prev_batch_id: '1', event_count: '2' });
    expect(ids(second?.events ?? [])).toEqual(['b', 'c']);
    const times = (await p.query('SELECT min(ev_time)::text AS lo, max(ev_time)::text AS hi FROM pgfanout.event_log WHERE ev_table = $1', ['t'])).rows[0];
    expect([second?.batch.first_event_time, second?.batch.last_event_time]).toEqual([expect.any(String), times.hi]);
  });

  it('a transaction that started first and commits last is in the batch after its commit, whole', async () => {
    // Prepare
    const { conn } = await source();
    const [long, short, p] = [await conn(), await conn(), await conn()];
    await long.query("BEGIN; INSERT INTO t VALUES ('long-1')");
    // Act
    await short.query("INSERT INTO t VALUES ('short')");
    const first = await takeBatch(p);
    await long.query("INSERT INTO t VALUES ('long-2'); COMMIT");
    const second = await takeBatch(p);
    // Assess
    expect(ids(first?.events ?? [])).toEqual(['short']);
    expect(ids(second?.events ?? [])).toEqual(['long-1', 'long-2']);
    const [l1, l2] = second?.events ?? [];
    const s = first?.events[0];
    // An id-based reader ("ev_id > last seen") would have skipped long-1:
    expect(Number(l1?.id)).toBeLessThan(Number(s?.id));
    expect(Number(l2?.id)).toBeGreaterThan(Number(s?.id));
    expect(l1?.txid).toBe(l2?.txid);
  });

  it('an unfinished batch is served again with the same id and the same events, byte for byte', async () => {
    // Prepare
    const { conn } = await source();
    const [w, p, p2] = [await conn(), await conn(), await conn()];
    await w.query("INSERT INTO t VALUES ('a', E'line\\nbreak\\ttab'), ('b', NULL)");
    await w.query("UPDATE t SET v = 'é' WHERE id = 'b'");
    const served = await nextBatch(p);
    const bytes = await batchValuesCopy(p, served?.batch_id as string);
    // Act: more commits, then the batch is asked for again, also from another connection
    await w.query("INSERT INTO t VALUES ('c')");
    const again = await nextBatch(p);
    const bytesAgain = await batchValuesCopy(p, again?.batch_id as string);
    const elsewhere = await nextBatch(p2);
    const bytesElsewhere = await batchValuesCopy(p2, elsewhere?.batch_id as string);
    await p.query('SELECT pgfanout.finish_batch($1)', [served?.batch_id]);
    const next = await takeBatch(p);
    // Assess
    expect(served).toMatchObject({ batch_id: '1', event_count: '3' });
    expect(again).toEqual(served);
    expect(elsewhere).toEqual(served);
    expect(bytes.length).toBeGreaterThan(0);
    expect(bytesAgain.equals(bytes)).toBe(true);
    expect(bytesElsewhere.equals(bytes)).toBe(true);
    expect(next?.batch).toMatchObject({ batch_id: '2', prev_batch_id: '1', event_count: '1' });
    expect(ids(next?.events ?? [])).toEqual(['c']);
  });

  it('batch_encoding records the first message size of the open batch and returns it to every later publish, with the batch\'s origin', async () => {
    // Prepare
    const { conn } = await source();
    const [w, p, p2] = [await conn(), await conn(), await conn()];
    await w.query("INSERT INTO t VALUES ('a')");
    const sql =
      'SELECT b.batch_id, e.max_message_bytes AS size, e.origin_system, e.origin_timeline, e.origin_lsn FROM pgfanout.next_batch() b CROSS JOIN LATERAL pgfanout.batch_encoding(b.batch_id, $1) e';
    // Act
    const first = (await p.query(sql, [1024])).rows[0];
    const again = (await p2.query(sql, [262144])).rows[0];
    await p.query('SELECT pgfanout.finish_batch(1)');
    await w.query("INSERT INTO t VALUES ('b')");
    const next = (await p2.query(sql, [262144])).rows[0];
    // Assess
    const system = (await p.query('SELECT system_identifier::text AS s FROM pg_control_system()')).rows[0].s;
    expect(first).toEqual({ batch_id: '1', size: '1024', origin_system: system, origin_timeline: '1', origin_lsn: expect.stringMatching(/^[0-9A-F]+\/[0-9A-F]+$/) });
    expect(again).toEqual(first);
    expect(next).toMatchObject({ batch_id: '2', size: '262144', origin_system: system, origin_timeline: '1' });
    const lsnOrder = (await p.query('SELECT $1::pg_lsn < $2::pg_lsn AS later', [first.origin_lsn, next.origin_lsn])).rows[0];
    expect(lsnOrder).toEqual({ later: 't' });
    expect(await failure(p, 'SELECT pgfanout.batch_encoding(1, 4096)')).toBe('pgfanout.batch_encoding: batch 1 is not the open batch (the open batch is 2)');
    expect(await failure(p, 'SELECT pgfanout.batch_encoding(2, 0)')).toBe(
      'pgfanout.batch_encoding: batch id 2 and message size 0 are not allowed; expected a batch id and a positive size in bytes',
    );
    expect(await failure(p, 'SELECT pgfanout.batch_encoding(NULL, 4096)')).toMatch(/^pgfanout\.batch_encoding: batch id NULL and message size 4096 are not allowed/);
  });

  it('finish_batch: finishing again does nothing; any other id is an error naming both ids; batch_values reads only the open batch', async () => {
    // Prepare
    const { conn } = await source();
    const [w, p] = [await conn(), await conn()];
    await w.query("INSERT INTO t VALUES ('a')");
    await nextBatch(p);
    // Act + Assess
    expect(await failure(p, 'SELECT pgfanout.finish_batch(2)')).toBe('pgfanout.finish_batch: cannot finish batch 2: the open batch is 1');
    expect(await failure(p, 'SELECT * FROM pgfanout.batch_values(2)')).toBe('pgfanout.batch_values: batch 2 is not the open batch (the open batch is 1)');
    await p.query('SELECT pgfanout.finish_batch(1)');
    await p.query('SELECT pgfanout.finish_batch(1)');
    expect(await failure(p, 'SELECT pgfanout.finish_batch(5)')).toBe('pgfanout.finish_batch: cannot finish batch 5: no batch is open and the last finished batch is 1');
    expect(await failure(p, 'SELECT pgfanout.finish_batch(0)')).toBe('pgfanout.finish_batch: cannot finish batch 0: no batch is open and the last finished batch is 1');
    expect(await failure(p, 'SELECT pgfanout.finish_batch(NULL)')).toBe('pgfanout.finish_batch: the batch id must not be NULL');
    expect(await failure(p, 'SELECT * FROM pgfanout.batch_values(1)')).toMatch(
      /^pgfanout\.batch_values: batch 1 is (finished; its events may have been rotated out of the log|not the open batch \(no batch is open; the last finished batch is 1\))$/,
    );
    expect(await failure(p, 'SELECT * FROM pgfanout.batch_values(NULL)')).toBe('pgfanout.batch_values: the batch id must not be NULL');
    expect(await failure(p, 'SELECT pgfanout.publisher_waiting(NULL)')).toBe('pgfanout.publisher_waiting: the flag must be true or false, not NULL');
    expect((await p.query('SELECT last_batch_id, finished_batch_id FROM pgfanout.status()')).rows[0]).toEqual({ last_batch_id: '1', finished_batch_id: '1' });
  });

  it('concurrent writers: every committed change lands in exactly one batch, each transaction whole, in row-lock order', async () => {
    // Prepare: five writers, each transaction inserting three rows and bumping one shared counter row
    const { conn } = await source();
    const writers = await Promise.all(Array.from({ length: 5 }, () => conn()));
    const p = await conn();
    await writers[0]?.query("INSERT INTO t VALUES ('counter', '0')");
    const batches: CapturedEvent[][] = [];
    let next = 0;
    // Act: writers commit while the publisher takes batches
    const writing = Promise.all(
      writers.map(async (w, n) => {
        for (let i = 0; i < 20; i++) {
          await w.query('BEGIN');
          for (let j = 0; j < 3; j++) await w.query('INSERT INTO t VALUES ($1)', [`w${n}-${i}-${j}`]);
          await w.query("UPDATE t SET v = (v::int + 1)::text WHERE id = 'counter'");
          await w.query('COMMIT');
          next += 1;
        }
      }),
    );
    let done = false;
    void writing.finally(() => {
      done = true;
    });
    while (!done) {
      const taken = await takeBatch(p);
      if (taken) batches.push(taken.events);
    }
    await writing;
    batches.push(await drainEvents(p));
    // Assess
    const all = batches.flat();
    const inserted = all.filter((e) => e.op === 'I' && e.row?.id !== 'counter').map((e) => e.row?.id);
    expect(inserted).toHaveLength(300);
    expect(new Set(inserted).size).toBe(300);
    expect(next).toBe(100);
    const batchOfTxid = new Map<string, number>();
    batches.forEach((events, b) =>
      events.forEach((e) => {
        expect(batchOfTxid.get(e.txid) ?? b).toBe(b);
        batchOfTxid.set(e.txid, b);
      }),
    );
    const counter = all.filter((e) => e.op === 'U').map((e) => Number(e.row?.v));
    expect(counter).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
  });

  it('rotates the log through its three tables by TRUNCATE, losing nothing across many batches', async () => {
    // Prepare: rotate at every finish; a long transaction, and a REPEATABLE READ writer whose snapshot predates several switches
    const { conn } = await source();
    const [w, long, stale, late, p] = [await conn(), await conn(), await conn(), await conn(), await conn()];
    await p.query("UPDATE pgfanout.capture_state SET rotation_interval = '0'");
    const files = async () => (await p.query("SELECT relname, relfilenode FROM pg_class WHERE relname ~ '^event_log_[012]$' ORDER BY relname")).rows;
    const filesBefore = await files();
    const written: string[] = [];
    const seen: CapturedEvent[] = [];
    const tablesUsed = new Set<string>();
    // Act
    for (let round = 0; round < 30; round++) {
      for (let i = 0; i < 3; i++) {
        written.push(`r${round}-${i}`);
        await w.query('INSERT INTO t VALUES ($1)', [`r${round}-${i}`]);
      }
      if (round === 4) {
        written.push('long-1');
        await long.query("BEGIN; INSERT INTO t VALUES ('long-1')");
      }
      if (round === 6) await stale.query('BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM t');
      if (round === 12) {
        written.push('stale-1');
        await stale.query("INSERT INTO t VALUES ('stale-1'); COMMIT");
      }
      if (round === 20) {
        written.push('long-2');
        await long.query("INSERT INTO t VALUES ('long-2'); COMMIT");
      }
      if (round === 24) {
        written.push('late-1');
        await late.query("BEGIN; INSERT INTO t VALUES ('late-1')");
      }
      tablesUsed.add((await p.query('SELECT log_table FROM pgfanout.status()')).rows[0].log_table);
      if (round === 26) {
        // Commits after this batch's snapshot and before its finish: its log table (no longer
        // current) must not be emptied by this finish.
        const batch = await nextBatch(p);
        seen.push(...foldEvents(await batchValues(p, batch?.batch_id as string)));
        await late.query('COMMIT');
        await p.query('SELECT pgfanout.finish_batch($1)', [batch?.batch_id]);
        continue;
      }
      const taken = await takeBatch(p);
      if (taken) seen.push(...taken.events);
    }
    seen.push(...(await drainEvents(p)));
    // Assess: everything once, the long transaction whole, three tables used and each truncated
    expect(ids(seen).sort()).toEqual([...written].sort());
    const longEvents = seen.filter((e) => e.row?.id?.startsWith('long'));
    expect(longEvents.map((e) => e.txid)).toEqual([longEvents[0]?.txid, longEvents[0]?.txid]);
    expect(tablesUsed).toEqual(new Set(['0', '1', '2']));
    const status = (await p.query('SELECT rotations AS r, truncations AS t FROM pgfanout.status()')).rows[0];
    expect(Number(status.r)).toBeGreaterThanOrEqual(6);
    expect(Number(status.t)).toBeGreaterThanOrEqual(6);
    const filesAfter = await files();
    filesBefore.forEach((f, i) => expect(filesAfter[i]?.relfilenode, f.relname).not.toBe(f.relfilenode));
    const left = (await p.query('SELECT count(*) AS n FROM pgfanout.event_log')).rows[0].n;
    expect(Number(left)).toBeLessThanOrEqual(12);
  });

  it('rotation never waits for a writer: a log table in use is skipped and emptied once its events are published', async () => {
    // Prepare: a writer holds table 0 open (uncommitted event in it)
    const { conn } = await source();
    const [w, holder, p] = [await conn(), await conn(), await conn()];
    await p.query("UPDATE pgfanout.capture_state SET rotation_interval = '0'");
    await p.query("SET statement_timeout = '10s'");
    await holder.query("BEGIN; INSERT INTO t VALUES ('held')");
    await w.query("INSERT INTO t VALUES ('a')");
    // Act: batches go round while table 0 is held; the switch happens, table 0 is not emptied
    await takeBatch(p);
    await w.query("INSERT INTO t VALUES ('b')");
    await takeBatch(p);
    const whileHeld = (await p.query('SELECT log_table, truncations AS t, (SELECT count(*) FROM pgfanout.event_log_0) AS rows0 FROM pgfanout.status()')).rows[0];
    await holder.query('COMMIT');
    const rest = await drainEvents(p);
    const after = (await p.query('SELECT truncations AS t, (SELECT count(*) FROM pgfanout.event_log_0) AS rows0 FROM pgfanout.status()')).rows[0];
    // Assess
    expect(whileHeld.log_table).not.toBe('0');
    expect(whileHeld.rows0).toBe('1'); // 'a', published but not removable while 'held' is being written there
    expect(ids(rest)).toEqual(['held']);
    expect(after.rows0).toBe('0');
    expect(Number(after.t)).toBeGreaterThan(Number(whileHeld.t));
  });

  it('does not rotate inside a REPEATABLE READ transaction (its snapshot could miss a commit)', async () => {
    const { conn } = await source();
    const [w, p] = [await conn(), await conn()];
    await p.query("UPDATE pgfanout.capture_state SET rotation_interval = '0'");
    await w.query("INSERT INTO t VALUES ('a')");
    await p.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const batch = await nextBatch(p);
    await p.query('SELECT pgfanout.finish_batch($1)', [batch?.batch_id]);
    await p.query('COMMIT');
    expect((await p.query('SELECT rotations AS r, log_table FROM pgfanout.status()')).rows[0]).toEqual({ r: '0', log_table: '0' });
    await w.query("INSERT INTO t VALUES ('b')");
    await takeBatch(p);
    expect((await p.query('SELECT rotations AS r, log_table FROM pgfanout.status()')).rows[0]).toEqual({ r: '1', log_table: '1' });
  });

  it('sends NOTIFY pgfanout once per capturing transaction while a publisher waits, and never otherwise', async () => {
    // Prepare
    const { conn } = await source();
    const [listener, w, p, marker] = [await conn(), await conn(), await conn(), await conn()];
    const received: string[] = [];
    listener.on('notification', (n) => received.push(`${n.channel}:${n.payload ?? ''}`));
    await listener.query('LISTEN pgfanout');
    /** Notifications arrive in commit order: everything sent before the sentinel has arrived when it does. */
    const receivedBeforeSentinel = async (tag: string) => {
      await marker.query('SELECT pg_notify($1, $2)', ['pgfanout', tag]);
      await until(listener, () => received.includes(`pgfanout:${tag}`));
      return received.splice(0).slice(0, -1);
    };
    // Act + Assess: not waiting
    await p.query('SELECT pgfanout.publisher_waiting(false)');
    await w.query("BEGIN; INSERT INTO t VALUES ('a'), ('b'); UPDATE t SET v = 'x'; COMMIT");
    expect(await receivedBeforeSentinel('one')).toEqual([]);
    // waiting: one empty notification per transaction, however many changes
    await p.query('SELECT pgfanout.publisher_waiting(true)');
    await w.query("BEGIN; INSERT INTO t VALUES ('c'), ('d'); UPDATE t SET v = 'y'; DELETE FROM t WHERE id = 'a'; COMMIT");
    expect(await receivedBeforeSentinel('two')).toEqual(['pgfanout:']);
    await w.query("INSERT INTO t VALUES ('e')");
    await w.query('TRUNCATE t');
    expect(await receivedBeforeSentinel('three')).toEqual(['pgfanout:', 'pgfanout:']);
    // a transaction that captures nothing sends nothing; a rolled back one neither
    await w.query('BEGIN; SELECT count(*) FROM t; COMMIT');
    await w.query("BEGIN; INSERT INTO t VALUES ('f'); ROLLBACK");
    expect(await receivedBeforeSentinel('four')).toEqual([]);
    // not waiting again
    await p.query('SELECT pgfanout.publisher_waiting(false)');
    await w.query("INSERT INTO t VALUES ('g')");
    expect(await receivedBeforeSentinel('five')).toEqual([]);
  });

  it('status: positions, backlog and the oldest unpublished event', async () => {
    // Prepare
    const { conn } = await source();
    const [w, p] = [await conn(), await conn()];
    const status = async () => (await p.query('SELECT * FROM pgfanout.status()')).rows[0];
    // Act + Assess
    expect(await status()).toMatchObject({ last_batch_id: '0', finished_batch_id: '0', open_batch_id: null, pending_events: '0', oldest_pending_event_time: null });
    for (const id of ['a', 'b', 'c']) await w.query('INSERT INTO t VALUES ($1)', [id]);
    const oldest = (await p.query("SELECT min(ev_time)::text AS t FROM pgfanout.event_log")).rows[0].t;
    expect(await status()).toMatchObject({ pending_events: '3', oldest_pending_event_time: oldest });
    const batch = await nextBatch(p);
    expect(await status()).toMatchObject({ last_batch_id: '1', open_batch_id: '1', pending_events: '3', oldest_pending_event_time: oldest });
    await p.query('SELECT pgfanout.finish_batch($1)', [batch?.batch_id]);
    expect(await status()).toMatchObject({ last_batch_id: '1', finished_batch_id: '1', open_batch_id: null, pending_events: '0', oldest_pending_event_time: null });
  });

  it('refuses a log position ahead of the server’s transaction ids (a restored copy), naming both', async () => {
    const { conn } = await source();
    const p = await conn();
    await p.query("UPDATE pgfanout.batch_cursor SET last_snapshot = '900000000:900000000:'");
    expect(await failure(p, 'SELECT * FROM pgfanout.next_batch()')).toMatch(
      /^pgfanout\.next_batch: the log position \(snapshot 900000000:900000000:\) is ahead of this server's transaction ids \(snapshot \d+:\d+:[\d,]*\)$/,
    );
  });

  it('pgfanout_publisher runs the batch protocol and nothing else; writers need no rights on pgfanout', async () => {
    // Prepare: a login role in pgfanout_publisher, an application role that writes t
    const { url, conn } = await source();
    const admin = await conn();
    const suffix = Math.random().toString(36).slice(2, 8);
    const [pub, app] = [`pub_${suffix}`, `app_${suffix}`];
    await admin.query(`CREATE ROLE ${quoteIdent(pub)} LOGIN PASSWORD 'pub-password' IN ROLE pgfanout_publisher`);
    await admin.query(`CREATE ROLE ${quoteIdent(app)} LOGIN PASSWORD 'app-password'`);
    await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON t TO ${quoteIdent(app)}`);
    const as = async (role: string, password: string) => {
      const c = await connect(url.replace(/^postgres:\/\/[^@]+@/, `postgres://${role}:${password}@`));
      open.push(c);
      return c;
    };
    const [publisher, writer] = [await as(pub, 'pub-password'), await as(app, 'app-password')];
    // Act: the application writes; the publisher runs the protocol
    await writer.query("INSERT INTO t VALUES ('a', 'secret'); UPDATE t SET v = 'changed'");
    const identity = (await publisher.query('SELECT pgfanout.version() AS v, pgfanout.source_id() AS id')).rows[0];
    await publisher.query('SELECT pgfanout.publisher_waiting(true)');
    await publisher.query('SELECT pgfanout.publisher_waiting(false)');
    const batch = await nextBatch(publisher);
    expect((await publisher.query('SELECT max_message_bytes FROM pgfanout.batch_encoding($1, 4096)', [batch?.batch_id])).rows[0]).toEqual({ max_message_bytes: '4096' });
    const events = foldEvents(await batchValues(publisher, batch?.batch_id as string));
    await publisher.query('SELECT pgfanout.finish_batch($1)', [batch?.batch_id]);
    const status = (await publisher.query('SELECT finished_batch_id FROM pgfanout.status()')).rows[0];
    // Assess: the protocol works
    expect(identity.v).toMatch(/^\d+\.\d+\.\d+$/);
    expect(events.map((e) => [e.op, e.row?.v])).toEqual([
      ['I', 'secret'],
      ['U', 'changed'],
    ]);
    expect(status.finished_batch_id).toBe('1');
    // and nothing else does
    const denied = /^permission denied for (table|function|relation|sequence) /;
    for (const sql of [
      'SELECT * FROM t',
      "SELECT pgfanout.add_table('t')",
      "SELECT pgfanout.remove_table('t')",
      "SELECT * FROM pgfanout.add_all_tables('public')",
      'SELECT * FROM pgfanout.show_tables()',
      'SELECT pgfanout.rotate_log()',
      'SELECT * FROM pgfanout.event_log',
      "INSERT INTO pgfanout.event_log_0 (ev_op, ev_schema, ev_table) VALUES ('TRUNCATE', 'public', 't')",
      "UPDATE pgfanout.capture_state SET rotation_interval = '0'",
      'UPDATE pgfanout.batch_cursor SET finished_batch_id = 0',
      "SELECT setval('pgfanout.capture_hint', 3)",
    ]) {
      expect(await failure(publisher, sql), sql).toMatch(denied);
    }
    // the application role cannot read the log nor forge events
    expect(await failure(writer, 'SELECT * FROM pgfanout.event_log')).toMatch(/^permission denied for schema pgfanout/);
    expect(await failure(writer, 'SELECT * FROM pgfanout.next_batch()')).toMatch(/^permission denied for schema pgfanout/);
  });
});
