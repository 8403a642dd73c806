/**
 * Conflict detection and resolution in the apply core (ApplyOptions.conflicts), on a real server:
 * every kind of conflict under 'apply-remote' and 'keep-local', what is recorded, the count in the
 * result, 'error' as the default, and tables without a row identity.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { applyMessage } from './apply.ts';
import { checkConflictMode } from './conflicts.ts';
import { RowNotFoundError } from '../wire/errors.ts';
import { installReplica, installSource } from '../../ops/install.ts';
import { publishNext, syncOnce } from '#testing/stream.ts';

describe('conflicts', () => {
  let server: LocalPostgres;
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    server = await LocalPostgres.start({ major: 18 });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    await server?.stop();
  });

  async function database(): Promise<pg.Client> {
    const name = `db_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    await (async () => {
      const admin = new pg.Client(server.url());
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
    })();
    const client = new pg.Client(server.url(name));
    await client.connect();
    clients.push(client);
    return client;
  }

  /** A source with t (id primary key, v, n) captured with whole old rows, and a replica holding rows 1, 2, 3 as the source does. */
  async function pair(table = 'CREATE TABLE t (id int PRIMARY KEY, v text, n int)'): Promise<{ source: pg.Client; replica: pg.Client }> {
    const [source, replica] = await Promise.all([database(), database()]);
    await installSource(source);
    await installReplica(replica);
    for (const c of [source, replica]) await c.query(table);
    await source.query("SELECT pgfanout.add_table('t'); SELECT pgfanout.set_old_image('t', 'full')");
    await source.query("INSERT INTO t VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)");
    await syncOnce(source, replica);
    return { source, replica };
  }

  /** The replica's own concurrent writes, then the source's conflicting ones. */
  async function conflicting(source: pg.Client, replica: pg.Client): Promise<void> {
    await replica.query("UPDATE t SET v = 'replica' WHERE id = 1; DELETE FROM t WHERE id = 2; INSERT INTO t VALUES (4, 'replica', 4); UPDATE t SET n = 30 WHERE id = 3");
    await source.query("UPDATE t SET v = 'source' WHERE id = 1; UPDATE t SET v = 'source' WHERE id = 2; INSERT INTO t VALUES (4, 'source', 4); DELETE FROM t WHERE id = 3");
  }

  const table = async (c: pg.Client) => (await c.query<{ r: string }>('SELECT t::text AS r FROM t ORDER BY id')).rows.map((r) => r.r);
  const recorded = async (c: pg.Client) =>
    (await c.query<{ r: string }>("SELECT concat_ws(' ', op, kind, resolution, key::text, local_row::text, change) AS r FROM pgfanout.replica_conflict ORDER BY conflict_id")).rows.map(
      (r) => r.r,
    );

  it("'apply-remote' applies each incoming change over the replica's row and records every conflict", async () => {
    // Prepare
    const { source, replica } = await pair();
    await conflicting(source, replica);
    // Act
    const results = await syncOnce(source, replica, { conflicts: 'apply-remote' });
    // Assess
    expect(results.map((r) => [r.outcome, r.conflicts])).toEqual([['applied', 4]]);
    expect(await table(replica)).toEqual(await table(source));
    expect(await recorded(replica)).toEqual([
      'U update_differs apply-remote {"id": "1"} {"n": 1, "v": "replica", "id": 1} part 0 changes[0]',
      'U update_missing apply-remote {"id": "2"} part 0 changes[1]',
      'I insert_exists apply-remote {"id": "4"} {"n": 4, "v": "replica", "id": 4} part 0 changes[2]',
      'D delete_differs apply-remote {"id": "3"} {"n": 30, "v": "c", "id": 3} part 0 changes[3]',
    ]);
  });

  it("'keep-local' leaves the replica's rows as they are and records every conflict", async () => {
    const { source, replica } = await pair();
    await conflicting(source, replica);
    const before = await table(replica);
    const results = await syncOnce(source, replica, { conflicts: 'keep-local' });
    expect(results.map((r) => r.conflicts)).toEqual([4]);
    expect(await table(replica)).toEqual(before);
    expect((await recorded(replica)).map((r) => r.split(' ').slice(0, 3).join(' '))).toEqual([
      'U update_differs keep-local',
      'U update_missing keep-local',
      'I insert_exists keep-local',
      'D delete_differs keep-local',
    ]);
  });

  it('applies changes that meet the row they expect without recording anything, and a delete of a missing row is only recorded', async () => {
    const { source, replica } = await pair();
    await replica.query('DELETE FROM t WHERE id = 3');
    await source.query("UPDATE t SET v = 'x' WHERE id = 1; INSERT INTO t VALUES (9, 'new', 9); DELETE FROM t WHERE id = 3; UPDATE t SET id = 20 WHERE id = 2");
    const results = await syncOnce(source, replica, { conflicts: 'apply-remote' });
    expect(results.map((r) => r.conflicts)).toEqual([1]);
    expect(await table(replica)).toEqual(await table(source));
    expect(await recorded(replica)).toEqual(['D delete_missing apply-remote {"id": "3"} part 0 changes[2]']);
  });

  it('detects conflicts on a table without a row identity by the whole old row', async () => {
    const { source, replica } = await pair('CREATE TABLE t (id int, v text, n int)');
    await replica.query("UPDATE t SET v = 'replica' WHERE id = 1");
    await source.query("UPDATE t SET v = 'source' WHERE id = 1; UPDATE t SET v = 'source' WHERE id = 2");
    const results = await syncOnce(source, replica, { conflicts: 'apply-remote' });
    expect(results.map((r) => r.conflicts)).toEqual([1]);
    expect(await table(replica)).toEqual(['(1,replica,1)', '(1,source,1)', '(2,source,2)', '(3,c,3)']);
    expect(await recorded(replica)).toEqual(['U update_missing apply-remote {"n": "1", "v": "a", "id": "1"} part 0 changes[0]']);
  });

  it("'error' (the default) stops at the first change that does not fit, naming it; nothing is applied", async () => {
    const { source, replica } = await pair();
    await conflicting(source, replica);
    const batch = await publishNext(source);
    const error = await applyMessage(replica, batch?.messages[0]?.body as string).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(RowNotFoundError);
    expect((await replica.query('SELECT count(*)::int AS n FROM pgfanout.replica_conflict')).rows[0].n).toBe(0);
    expect(() => checkConflictMode('last-wins')).toThrow("conflicts \"last-wins\" is not allowed; expected 'error', 'apply-remote', 'keep-local'");
    await expect(applyMessage(replica, batch?.messages[0]?.body as string, { conflicts: 'newest' as never })).rejects.toThrow(/conflicts "newest" is not allowed/);
  });
});
