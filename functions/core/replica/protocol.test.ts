/**
 * The replica protocol's SQL functions (sql/replica, 1.2.0) on real PostgreSQL 13 and 18, one by
 * one: what each records, and what each refuses (a jump, going back, a part that does not follow,
 * a source without a position, a batch recorded without the parts staged for it); the grants
 * (the applier's role calls the protocol and may not write the tables; PUBLIC may call nothing);
 * and a scan of the sources: no module but protocol.ts writes or locks pgfanout's replica_* tables.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installReplica } from '#ops/install.ts';
import { createDatabase, describeEachMajor } from '#testing/servers.ts';
import { LocalPostgres } from '#local/postgres.ts';

const REFUSED = '55000';
const NOT_ALLOWED = '22023';

describeEachMajor('the replica protocol on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let client: pg.Client;
  let counter = 0;
  const newSource = () => `proto-${major}-${++counter}`;

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
    client = (await createDatabase(server, 'proto')).client;
    await installReplica(client);
  });

  afterAll(async () => {
    await client?.end();
    await server?.stop();
  });

  /** Runs `body` in a transaction that is always rolled back unless `commit`. */
  async function tx<T>(body: () => Promise<T>, commit = true): Promise<T> {
    await client.query('BEGIN');
    try {
      const out = await body();
      await client.query(commit ? 'COMMIT' : 'ROLLBACK');
      return out;
    } catch (err) {
      await client.query('ROLLBACK');
      throw err;
    }
  }
  const lock = async (source: string) => (await client.query('SELECT * FROM pgfanout.replica_lock($1)', [source])).rows[0] as Record<string, unknown>;
  const position = async (source: string) =>
    (await client.query('SELECT batch_id::int, part, state, applied_batch_id::int, part_digest FROM pgfanout.replica_position WHERE source_id = $1', [source])).rows[0];
  const stage = (source: string, batch: number, part: number, after: string | null, digest: string) =>
    client.query('SELECT pgfanout.replica_stage_part($1, $2, $3, $4, $5, $6)', [source, batch, part, after, digest, `body ${batch}.${part}`]);
  const advance = (source: string, batch: number, digests: string[], origin: [string, number, string] | [null, null, null] = [null, null, null]) =>
    client.query('SELECT pgfanout.replica_advance($1, $2, $3, NULL, $4, $5, $6)', [source, batch, digests, ...origin]);
  /** A source at `applied`, through the protocol. */
  async function sourceAt(applied: number): Promise<string> {
    const source = newSource();
    await tx(async () => {
      await lock(source);
      for (let b = 1; b <= applied; b++) await advance(source, b, [`d${b}`]);
    });
    return source;
  }

  describe('replica_lock', () => {
    it('creates the position of a new source at batch 0 and says so; an existing one is read, not created', async () => {
      const source = newSource();
      const first = await tx(() => lock(source));
      expect(first).toMatchObject({ batch_id: '0', part: null, applied_batch_id: '0', part_digest: null, created: true, staged_first_digest: null, origin_system: null });
      const again = await tx(() => lock(source));
      expect(again).toMatchObject({ batch_id: '0', created: false });
    });

    it('holds the row until the transaction ends: a second applier of the source waits', async () => {
      const source = await sourceAt(1);
      await client.query('BEGIN');
      await lock(source);
      const pg2 = new pg.Client(server.url('proto'));
      await pg2.connect();
      try {
        await expect(pg2.query('SELECT 1 FROM pgfanout.replica_position WHERE source_id = $1 FOR UPDATE NOWAIT', [source])).rejects.toMatchObject({ code: '55P03' });
      } finally {
        await client.query('ROLLBACK');
        await pg2.end();
      }
    });

    it('returns the origin of the batch applied last, the staged part 0 while staging, and a bootstrap in progress at position 0', async () => {
      const source = newSource();
      await tx(async () => {
        await lock(source);
        await advance(source, 1, ['d1'], ['7000', 1, '0/16B3748']);
        await stage(source, 2, 0, null, 'p0');
      });
      expect(await tx(() => lock(source))).toMatchObject({ batch_id: '2', part: 0, applied_batch_id: '1', staged_first_digest: 'p0', origin_system: '7000', origin_timeline: '1', origin_lsn: '0/16B3748' });

      const booting = newSource();
      await tx(() => client.query("SELECT * FROM pgfanout.replica_bootstrap_record($1, 5, 'snap', false, '{public}', '{t}')", [booting]));
      expect(await tx(() => lock(booting), false)).toMatchObject({ created: true, bootstrap_batch_id: '5', bootstrap_tables_copied: 0, bootstrap_tables: 1 });
    });

    it('refuses no source id', async () => {
      await expect(tx(() => lock(''))).rejects.toMatchObject({ code: NOT_ALLOWED, message: expect.stringContaining('pgfanout.replica_lock: source id') });
    });
  });

  describe('replica_stage_part', () => {
    it('stages parts 0, 1, 2 of the batch after the applied one, each following the digest before', async () => {
      const source = await sourceAt(3);
      await tx(async () => {
        await lock(source);
        await stage(source, 4, 0, null, 'a');
        await stage(source, 4, 1, 'a', 'b');
        await stage(source, 4, 2, 'b', 'c');
      });
      expect(await position(source)).toEqual({ batch_id: 4, part: 2, state: 'staging', applied_batch_id: 3, part_digest: 'c' });
      const read = await client.query('SELECT * FROM pgfanout.replica_staged_part($1, 4, 1)', [source]);
      expect(read.rows).toEqual([{ body: 'body 4.1', digest: 'b' }]);
    });

    it('starts a batch over at part 0, dropping what was staged', async () => {
      const source = await sourceAt(1);
      await tx(async () => {
        await stage(source, 2, 0, null, 'a');
        await stage(source, 2, 1, 'a', 'b');
        await stage(source, 2, 0, null, 'x');
      });
      expect(await position(source)).toMatchObject({ batch_id: 2, part: 0, part_digest: 'x' });
      expect((await client.query('SELECT count(*)::int AS n FROM pgfanout.replica_staged_part WHERE source_id = $1', [source])).rows[0]).toEqual({ n: 1 });
    });

    it.each([
      ['a jump past the next batch', 7, 0, null, 'only batch 6 may be staged, not batch 7'],
      ['going back to the applied batch', 5, 0, null, 'only batch 6 may be staged, not batch 5'],
      ['a part that was not preceded by its part 0', 6, 1, 'a', 'batch 6 part 1 does not follow it'],
    ])('refuses %s', async (_, batch, part, after, message) => {
      const source = await sourceAt(5);
      await expect(tx(() => stage(source, batch, part, after, 'z'))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining(message) });
      expect(await position(source)).toMatchObject({ batch_id: 5, state: 'applied' });
    });

    it('refuses a part that skips one, or follows another digest, and a source without a position', async () => {
      const source = await sourceAt(1);
      await tx(async () => {
        await stage(source, 2, 0, null, 'a');
        await stage(source, 2, 1, 'a', 'b');
      });
      await expect(tx(() => stage(source, 2, 3, 'b', 'd'))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('staging batch 2 up to part 1); batch 2 part 3 does not follow it') });
      await expect(tx(() => stage(source, 2, 1, 'a', 'b'))).rejects.toMatchObject({ code: REFUSED }); // a part staged already
      await expect(tx(() => stage(source, 2, 2, 'other', 'c'))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('follows digest other, but the staged part 1 has digest b') });
      await expect(tx(() => stage('no-such-source', 1, 0, null, 'a'))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('source no-such-source has no position') });
      await expect(tx(() => stage(source, 0, 0, null, 'a'))).rejects.toMatchObject({ code: NOT_ALLOWED });
      expect(await position(source)).toMatchObject({ batch_id: 2, part: 1, part_digest: 'b' });
    });
  });

  describe('replica_advance', () => {
    it('records a batch of one part: position, record with origin, source time', async () => {
      const source = await sourceAt(1);
      await tx(() => client.query("SELECT pgfanout.replica_advance($1, 2, '{d2}', '2026-01-02 03:04:05+00', 'sys', 3, '0/10')", [source]));
      expect(await position(source)).toEqual({ batch_id: 2, part: null, state: 'applied', applied_batch_id: 2, part_digest: null });
      const record = await client.query('SELECT part_digests, origin_system, origin_timeline::int, origin_lsn::text FROM pgfanout.replica_applied_batch($1, 2)', [source]);
      expect(record.rows).toEqual([{ part_digests: ['d2'], origin_system: 'sys', origin_timeline: 3, origin_lsn: '0/10' }]);
      const time = await client.query("SELECT source_time = '2026-01-02 03:04:05+00' AS same FROM pgfanout.replica_position WHERE source_id = $1", [source]);
      expect(time.rows[0]).toEqual({ same: true });
    });

    it('records a staged batch with exactly its staged parts, and drops them', async () => {
      const source = await sourceAt(1);
      await tx(async () => {
        await stage(source, 2, 0, null, 'a');
        await stage(source, 2, 1, 'a', 'b');
        await advance(source, 2, ['a', 'b', 'c']);
      });
      expect(await position(source)).toMatchObject({ batch_id: 2, state: 'applied', applied_batch_id: 2 });
      expect((await client.query('SELECT count(*)::int AS n FROM pgfanout.replica_staged_part WHERE source_id = $1', [source])).rows[0]).toEqual({ n: 0 });
      expect((await client.query('SELECT part_digests FROM pgfanout.replica_applied_batch($1, 2)', [source])).rows[0]).toEqual({ part_digests: ['a', 'b', 'c'] });
    });

    it('a batch of one part that starts over a staged one drops the staged parts', async () => {
      const source = await sourceAt(1);
      await tx(async () => {
        await stage(source, 2, 0, null, 'a');
        await advance(source, 2, ['x']);
      });
      expect(await position(source)).toMatchObject({ batch_id: 2, state: 'applied' });
      expect((await client.query('SELECT count(*)::int AS n FROM pgfanout.replica_staged_part WHERE source_id = $1', [source])).rows[0]).toEqual({ n: 0 });
    });

    it.each([
      ['a jump', 9, ['d'], 'only batch 6 may be recorded as applied, not batch 9'],
      ['going back', 5, ['d'], 'only batch 6 may be recorded as applied, not batch 5'],
      ['parts that were never staged', 6, ['a', 'b'], 'batch 6 of source'],
    ])('refuses %s', async (_, batch, digests, message) => {
      const source = await sourceAt(5);
      await expect(tx(() => advance(source, batch, digests))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining(message) });
      expect(await position(source)).toMatchObject({ batch_id: 5, applied_batch_id: 5 });
    });

    it('refuses other digests than the staged parts, another number of parts, a source without a position and a partial origin', async () => {
      const source = await sourceAt(1);
      await tx(async () => {
        await stage(source, 2, 0, null, 'a');
        await stage(source, 2, 1, 'a', 'b');
      });
      await expect(tx(() => advance(source, 2, ['a', 'X', 'c']))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('was staged with part digests {a,b}, not {a,X}') });
      await expect(tx(() => advance(source, 2, ['a', 'c']))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('has 2 parts, so parts 0 to 0 must be staged') });
      await expect(tx(() => advance('no-such-source', 1, ['a']))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('has no position') });
      await expect(tx(() => client.query("SELECT pgfanout.replica_advance($1, 2, '{a,b,c}', NULL, 'sys', NULL, NULL)", [source]))).rejects.toMatchObject({ code: NOT_ALLOWED });
      await expect(tx(() => advance(source, 2, []))).rejects.toMatchObject({ code: NOT_ALLOWED });
      expect(await position(source)).toMatchObject({ batch_id: 2, part: 1, state: 'staging' });
    });

    it('keeps the record of the last 1000 batches only', async () => {
      const source = await sourceAt(0);
      await tx(async () => {
        for (let b = 1; b <= 1003; b++) await advance(source, b, [`d${b}`]);
      });
      const kept = await client.query('SELECT min(batch_id)::int AS lo, max(batch_id)::int AS hi, count(*)::int AS n FROM pgfanout.replica_applied_batch WHERE source_id = $1', [source]);
      expect(kept.rows[0]).toEqual({ lo: 4, hi: 1003, n: 1000 });
    });
  });

  describe('split values', () => {
    it('stages pieces of the batch being applied, reads each value back whole, and clears them', async () => {
      const source = await sourceAt(1);
      await tx(async () => {
        await client.query("SELECT pgfanout.replica_stage_value($1, 2, '{0,1,0}', '{0,1,2}', ARRAY['ab', NULL, 'cd'])", [source]);
        const { rows } = await client.query('SELECT pgfanout.replica_staged_value($1, 2, 0) AS v0, pgfanout.replica_staged_value($1, 2, 1) AS v1', [source]);
        expect(rows[0]).toEqual({ v0: 'abcd', v1: null });
        await client.query('SELECT pgfanout.replica_clear_values($1, 2)', [source]);
        expect((await client.query('SELECT pgfanout.replica_staged_value($1, 2, 0) AS v0', [source])).rows[0]).toEqual({ v0: null });
      });
    });

    it('refuses pieces of another batch than the one being applied, of a source without a position, and arrays of different lengths', async () => {
      const source = await sourceAt(1);
      await expect(tx(() => client.query("SELECT pgfanout.replica_stage_value($1, 1, '{0}', '{0}', '{a}')", [source]))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('has applied batch 1') });
      await expect(tx(() => client.query("SELECT pgfanout.replica_stage_value($1, 3, '{0}', '{0}', '{a}')", [source]))).rejects.toMatchObject({ code: REFUSED });
      await expect(tx(() => client.query("SELECT pgfanout.replica_stage_value('nobody', 1, '{0}', '{0}', '{a}')"))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('has no position') });
      await expect(tx(() => client.query("SELECT pgfanout.replica_stage_value($1, 2, '{0,1}', '{0}', '{a}')", [source]))).rejects.toMatchObject({ code: NOT_ALLOWED });
    });
  });

  describe('replica_record_conflict', () => {
    it('records a conflict of the batch being applied and refuses one of another batch', async () => {
      const source = await sourceAt(1);
      const id = await tx(() =>
        client.query(`SELECT pgfanout.replica_record_conflict($1, 2, '0.3', 'public', 't', 'I', 'insert_exists', 'keep-local', '{"id":"1"}', NULL, NULL, '{"id":"1"}') AS id`, [source]),
      );
      const { rows } = await client.query('SELECT batch_id::int, kind, resolution, key FROM pgfanout.replica_conflict WHERE conflict_id = $1', [id.rows[0].id]);
      expect(rows).toEqual([{ batch_id: 2, kind: 'insert_exists', resolution: 'keep-local', key: { id: '1' } }]);
      await expect(
        tx(() => client.query(`SELECT pgfanout.replica_record_conflict($1, 7, '0.3', 'public', 't', 'I', 'insert_exists', 'keep-local', NULL, NULL, NULL, NULL)`, [source])),
      ).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('not of batch 7') });
    });
  });

  describe('replica_state and the bootstrap', () => {
    it('reads nothing for an unknown source, the position of a known one', async () => {
      expect((await client.query("SELECT * FROM pgfanout.replica_state('nobody')")).rows).toEqual([
        expect.objectContaining({ batch_id: null, applied_batch_id: null, bootstrap_batch_id: null }),
      ]);
      const source = await sourceAt(2);
      expect((await client.query('SELECT batch_id::int, state, applied_batch_id::int FROM pgfanout.replica_state($1)', [source])).rows).toEqual([{ batch_id: 2, state: 'applied', applied_batch_id: 2 }]);
    });

    it('begins, records, copies, resumes and finishes a bootstrap; the position then starts at its batch', async () => {
      const source = newSource();
      const applied = await tx(() => client.query('SELECT pgfanout.replica_bootstrap_begin($1, false) AS applied', [source]));
      expect(applied.rows[0]).toEqual({ applied: null });
      const copied = await tx(() => client.query("SELECT * FROM pgfanout.replica_bootstrap_record($1, 9, 'snap-1', false, '{public,public}', '{a,b}')", [source]));
      expect(copied.rows).toEqual([]);
      await tx(async () => {
        expect((await client.query("SELECT pgfanout.replica_bootstrap_copy_begin($1, 'public', 'a') AS c", [source])).rows[0]).toEqual({ c: false });
        await client.query("SELECT pgfanout.replica_bootstrap_copy_done($1, 'public', 'a', 42)", [source]);
      });
      expect((await client.query("SELECT pgfanout.replica_bootstrap_copy_begin($1, 'public', 'zz') AS c", [source])).rows[0]).toEqual({ c: null });
      await expect(tx(() => client.query('SELECT pgfanout.replica_bootstrap_finish($1)', [source]))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('table(s) public.b of the bootstrap') });
      // Resumed at the same batch: the copied table is kept; at another batch: refused.
      await expect(tx(() => client.query("SELECT * FROM pgfanout.replica_bootstrap_record($1, 8, 'snap-2', true, '{public,public}', '{a,b}')", [source]))).rejects.toMatchObject({ code: REFUSED });
      const kept = await tx(() => client.query("SELECT * FROM pgfanout.replica_bootstrap_record($1, 9, 'snap-2', true, '{public,public}', '{a,b}')", [source]));
      expect(kept.rows).toEqual([{ table_schema: 'public', table_name: 'a' }]);
      expect((await client.query('SELECT bootstrap_snapshot_name, bootstrap_tables_copied, bootstrap_tables FROM pgfanout.replica_state($1)', [source])).rows[0]).toEqual({
        bootstrap_snapshot_name: 'snap-2',
        bootstrap_tables_copied: 1,
        bootstrap_tables: 2,
      });
      await tx(() => client.query("SELECT pgfanout.replica_bootstrap_copy_done($1, 'public', 'b', 0)", [source]));
      expect((await tx(() => client.query('SELECT pgfanout.replica_bootstrap_finish($1)::int AS b', [source]))).rows[0]).toEqual({ b: 9 });
      expect(await position(source)).toMatchObject({ batch_id: 9, state: 'applied', applied_batch_id: 9 });
      expect((await client.query('SELECT bootstrap_batch_id FROM pgfanout.replica_state($1)', [source])).rows[0]).toEqual({ bootstrap_batch_id: null });
      await expect(tx(() => client.query('SELECT pgfanout.replica_bootstrap_finish($1)', [source]))).rejects.toMatchObject({ code: REFUSED, message: expect.stringContaining('no bootstrap in progress') });
    });

    it('a replica that follows the source forgets it only with force: position, staging and record of applied batches', async () => {
      const source = await sourceAt(3);
      await tx(() => stage(source, 4, 0, null, 'a'));
      expect((await tx(() => client.query('SELECT pgfanout.replica_bootstrap_begin($1, false)::int AS applied', [source]))).rows[0]).toEqual({ applied: 3 });
      expect(await position(source)).toMatchObject({ applied_batch_id: 3 });
      await expect(tx(() => client.query("SELECT * FROM pgfanout.replica_bootstrap_record($1, 9, 's', false, '{}', '{}')", [source]))).rejects.toMatchObject({
        code: REFUSED,
        message: expect.stringContaining('has a position on this replica'),
      });
      await tx(() => client.query('SELECT pgfanout.replica_bootstrap_begin($1, true)', [source]));
      expect(await position(source)).toBeUndefined();
      const left = await client.query(
        `SELECT (SELECT count(*) FROM pgfanout.replica_staged_part WHERE source_id = $1)::int AS staged,
                (SELECT count(*) FROM pgfanout.replica_applied_batch WHERE source_id = $1)::int AS history`,
        [source],
      );
      expect(left.rows[0]).toEqual({ staged: 0, history: 0 });
    });
  });

  describe('grants', () => {
    it('the applier role calls the apply protocol but writes no replica_* table directly; PUBLIC calls nothing', async () => {
      await client.query(`
        DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'proto_applier') THEN CREATE ROLE proto_applier NOLOGIN; END IF;
                    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'proto_nobody') THEN CREATE ROLE proto_nobody NOLOGIN; END IF; END $$;
        GRANT pgfanout_applier TO proto_applier;
        GRANT USAGE ON SCHEMA pgfanout TO proto_nobody;`);
      const source = newSource();
      await client.query('SET ROLE proto_applier');
      try {
        await tx(async () => {
          await lock(source);
          await stage(source, 1, 0, null, 'a');
          await advance(source, 1, ['a', 'b']);
        });
        await expect(tx(() => client.query("UPDATE pgfanout.replica_position SET batch_id = 99, applied_batch_id = 99 WHERE source_id = $1", [source]))).rejects.toMatchObject({ code: '42501' });
        await expect(tx(() => client.query("INSERT INTO pgfanout.replica_staged_value VALUES ($1, 2, 0, 0, 'x')", [source]))).rejects.toMatchObject({ code: '42501' });
        await expect(tx(() => client.query('DELETE FROM pgfanout.replica_applied_batch WHERE source_id = $1', [source]))).rejects.toMatchObject({ code: '42501' });
        await expect(tx(() => client.query('SELECT pgfanout.replica_skip($1, 2)', [source]))).rejects.toMatchObject({ code: '42501' });
        await expect(tx(() => client.query('SELECT pgfanout.replica_bootstrap_begin($1, true)', [source]))).rejects.toMatchObject({ code: '42501' });
        expect(await position(source)).toMatchObject({ batch_id: 1, applied_batch_id: 1 });
      } finally {
        await client.query('RESET ROLE');
      }
      const { rows } = await client.query<{ fn: string }>(
        `SELECT p.oid::regprocedure::text AS fn FROM pg_proc p
          WHERE p.pronamespace = 'pgfanout'::regnamespace AND p.proname LIKE 'replica\\_%' AND has_function_privilege('proto_nobody', p.oid, 'EXECUTE')`,
      );
      expect(rows).toEqual([]);
    });
  });
});

/**
 * The guard: outside protocol.ts, no TypeScript module (tests and test support aside, which set
 * up and tamper with the tables on purpose) holds SQL that writes or locks pgfanout's replica_*
 * tables: INSERT INTO, UPDATE, DELETE FROM, TRUNCATE, COPY … FROM, or SELECT … FOR UPDATE.
 */
describe('the replica tables are written only through protocol.ts', () => {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  const ONLY_CALLER = 'functions/core/replica/protocol.ts';
  const TABLE = String.raw`pgfanout\s*\.\s*"?replica_\w+`;
  const WRITES = [
    new RegExp(String.raw`\bINSERT\s+INTO\s+${TABLE}`, 'i'),
    new RegExp(String.raw`\bUPDATE\s+(ONLY\s+)?${TABLE}`, 'i'),
    new RegExp(String.raw`\bDELETE\s+FROM\s+(ONLY\s+)?${TABLE}`, 'i'),
    new RegExp(String.raw`\bTRUNCATE\s+(TABLE\s+)?(ONLY\s+)?${TABLE}`, 'i'),
    new RegExp(String.raw`\bCOPY\s+${TABLE}[^;]*?\bFROM\b`, 'i'),
    new RegExp(String.raw`FROM\s+${TABLE}[^;\`']*?\bFOR\s+(NO\s+KEY\s+)?UPDATE\b`, 'i'),
    // The table's name built at run time: `pgfanout.${…}` next to a write verb.
    /\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE)\s+pgfanout\.\$\{/i,
  ];

  async function sources(dir: string): Promise<string[]> {
    const out: string[] = [];
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      if (entry.name === 'node_modules' || entry.name.startsWith('.')) continue;
      const path = join(dir, entry.name);
      if (entry.isDirectory()) out.push(...(await sources(path)));
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) out.push(path);
    }
    return out;
  }

  /** The files that break the rule, with the matching text. */
  async function offenders(): Promise<string[]> {
    const found: string[] = [];
    for (const folder of ['functions', 'cdk', 'bin', 'local', 'bench']) {
      for (const file of await sources(join(root, folder))) {
        const path = relative(root, file);
        if (path === ONLY_CALLER) continue;
        const text = await readFile(file, 'utf8');
        for (const write of WRITES) {
          const match = write.exec(text);
          if (match) found.push(`${path}: ${match[0].replace(/\s+/g, ' ').slice(0, 80)}`);
        }
      }
    }
    return found;
  }

  it('finds no module but protocol.ts writing or locking them', async () => {
    expect(await offenders()).toEqual([]);
  });

  it('recognises each kind of write (so the scan can fail)', () => {
    const samples = [
      "client.query('INSERT INTO pgfanout.replica_position (source_id) VALUES ($1)')",
      '`UPDATE pgfanout.replica_position SET batch_id = $2`',
      "'DELETE FROM pgfanout.replica_staged_part WHERE source_id = $1'",
      "'SELECT 1 FROM pgfanout.replica_position WHERE source_id = $1 FOR UPDATE'",
      'TRUNCATE pgfanout.replica_conflict',
      '`DELETE FROM pgfanout.${quoteIdent(t)} WHERE source_id = $1`',
    ];
    for (const sample of samples) expect(WRITES.some((w) => w.test(sample)), sample).toBe(true);
    expect(WRITES.some((w) => w.test("'SELECT * FROM pgfanout.replica_state($1)'"))).toBe(false);
  });
});
