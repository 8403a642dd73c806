/**
 * The applier's own defence against messages it must not trust: sources it does not follow,
 * changes to pgfanout's own tables, batches that jump the position, duplicates that are not,
 * sources that went back in time, schema drift, and schema changes that hold transaction control
 * or more than they show.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalPostgres } from '#local/postgres.ts';
import { applyMessage, type ApplyOptions } from './apply.ts';
import { replicaPosition } from './protocol.ts';
import { schemaChangeStatements } from './schema-change.ts';
import { splitSql } from '../pg/statements.ts';
import type { BatchOrigin, Change } from '../wire/envelope.ts';
import { ERROR_CODES, PgfanoutError } from '../wire/errors.ts';
import { installReplica } from '../../ops/install.ts';
import { bodyDigest } from '../wire/digest.ts';
import { encodeBatch } from '../source/encoder.ts';
import { collect, tokensOf } from '#testing/batches.ts';
import { createDatabase, describeEachMajor } from '#testing/servers.ts';

let counter = 0;
const newSource = () => `trust-${++counter}-${Math.random().toString(36).slice(2, 8)}`;

/** A one-part message body, written by hand so that any field can be what an attacker chooses. */
function body(source: string, batch: string | number, changes: readonly Change[], extra: { prev?: string; origin?: BatchOrigin } = {}): string {
  const prev = extra.prev ?? String(BigInt(batch) - 1n);
  return JSON.stringify({
    pgfanout: 1,
    source,
    batch: String(batch),
    prev,
    part: 0,
    ...(extra.origin ? { origin: extra.origin } : {}),
    changes,
    final: true,
    count: changes.length,
  });
}

const ins = (table: string, row: Record<string, string | null>, schema = 'public'): Change => ({ op: 'I', schema, table, txid: '100', new: row });
const ddl = (sql: string, searchPath = 'public'): Change => ({ op: 'S', schema: '', table: '', txid: '101', new: { sql, search_path: searchPath } });

/** The error an apply fails with, or a failure when it does not. */
async function refusal(client: pg.ClientBase, message: string, options: ApplyOptions = {}): Promise<PgfanoutError> {
  try {
    const result = await applyMessage(client, message, options);
    throw new Error(`expected a refusal, got ${JSON.stringify(result)}`);
  } catch (err) {
    if (!(err instanceof PgfanoutError)) throw err;
    return err;
  }
}

describe('splitSql', () => {
  it('splits at semicolons outside strings, dollar quotes, quoted identifiers, comments and parentheses', () => {
    const texts = (sql: string) => splitSql(sql).map((s) => s.text.trim());
    expect(texts("ALTER TABLE t ADD c text DEFAULT 'a;b''c'; COMMIT")).toEqual(["ALTER TABLE t ADD c text DEFAULT 'a;b''c'", 'COMMIT']);
    expect(texts("SELECT E'x\\';y'; SELECT 2")).toEqual(["SELECT E'x\\';y'", 'SELECT 2']);
    expect(texts('SELECT $f$ ; $$ ; $f$; SELECT $$;$$')).toEqual(['SELECT $f$ ; $$ ; $f$', 'SELECT $$;$$']);
    expect(texts('SELECT a$b$c; SELECT 1')).toEqual(['SELECT a$b$c', 'SELECT 1']);
    expect(texts('/* a /* nested ; */ still; */ SELECT 1; -- trailing ; comment\n')).toEqual(['/* a /* nested ; */ still; */ SELECT 1']);
    expect(texts('SELECT "we;ird" FROM t;;')).toEqual(['SELECT "we;ird" FROM t']);
    expect(texts('CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b VALUES (2)); SELECT 1')).toHaveLength(2);
  });

  it('names each statement\'s first keywords and the identifiers it uses, folded as PostgreSQL folds them', () => {
    const [first, second] = splitSql('/* c */ begin  ; Alter TABLE "PgFanout".x ADD y int');
    expect(first?.keywords).toEqual(['BEGIN']);
    expect(second?.keywords).toEqual(['ALTER', 'TABLE']);
    expect(second?.identifiers.has('PgFanout')).toBe(true);
    expect(splitSql('UPDATE PGFANOUT.replica_position SET batch_id = 1')[0]?.identifiers.has('pgfanout')).toBe(true);
    expect(splitSql("SELECT U&'\\0041'")[0]?.unicodeEscapes).toBe(true);
    expect(() => splitSql("SELECT 'open")).toThrow(/unterminated string constant/);
    expect(() => splitSql('SELECT $x$ open')).toThrow(/unterminated dollar-quoted/);
  });

  it('lets a schema change through only when no statement is transaction or session control, COPY, DO, or names pgfanout', () => {
    expect(schemaChangeStatements('ALTER TABLE t ADD c int; CREATE INDEX ON t (c)', 'public')).toHaveProperty('statements');
    for (const [sql, reason] of [
      ['BEGIN; ALTER TABLE t ADD c int; COMMIT;', /statement 1 of 3 .* is transaction control \(BEGIN\)/],
      ['ALTER TABLE t ADD c int; end', /transaction control \(END\)/],
      ['start transaction; ALTER TABLE t ADD c int', /transaction control/],
      ['ALTER TABLE t ADD c int; SET session_replication_role = origin', /session control \(SET SESSION_REPLICATION_ROLE\)/],
      ["CREATE TABLE x (a int); DO $$ BEGIN PERFORM 1; END $$", /anonymous code/],
      ["COPY (SELECT 1) TO PROGRAM 'id'", /file or program access/],
      ['UPDATE pgfanout.replica_position SET batch_id = 99', /names pgfanout's own schema/],
      ["ALTER TABLE t ADD c text DEFAULT 'open", /cannot be read: unterminated/],
      [' ; -- nothing', /holds no statement/],
    ] as const) {
      expect(schemaChangeStatements(sql, 'public')).toEqual({ refused: expect.stringMatching(reason) });
    }
    expect(schemaChangeStatements('DROP TABLE replica_position', 'public, pgfanout')).toEqual({ refused: expect.stringMatching(/search path .* names pgfanout/) });
  });
});

describeEachMajor('the applier refuses what it must not trust, on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let client: pg.Client;

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
    ({ client } = await createDatabase(server, 'replica'));
    await installReplica(client);
    await client.query(`
      CREATE TABLE public.t (id int PRIMARY KEY, v text);
      CREATE TABLE public.wide (id int PRIMARY KEY, a text, b text, local_note text DEFAULT 'replica', n bigint GENERATED ALWAYS AS IDENTITY);
    `);
  });

  afterAll(async () => {
    await client?.end();
    await server?.stop();
  });

  const count = async (sql: string, params: unknown[] = []) => Number((await client.query<{ n: string }>(`SELECT count(*) AS n FROM (${sql}) AS q`, params)).rows[0]?.n);

  it('refuses a message of a source it does not follow, its schema change too, before touching the replica', async () => {
    const followed = newSource();
    const stranger = newSource();
    const options = { sources: [followed], allowSchemaChanges: true };
    const error = await refusal(client, body(stranger, 1, [ddl('CREATE TABLE public.planted (x int)'), ins('t', { id: '900', v: 'x' })]), options);
    expect(error.code).toBe(ERROR_CODES.untrustedMessage);
    expect(error.permanent).toBe(true);
    expect(error.message).toContain(`follows only source ${followed}`);
    expect(await replicaPosition(client, stranger)).toBeNull();
    expect(await count("SELECT 1 FROM pg_class WHERE relname = 'planted'")).toBe(0);
    expect(await count('SELECT 1 FROM public.t WHERE id = 900')).toBe(0);
    expect(await applyMessage(client, body(followed, 1, [ins('t', { id: '901', v: 'ok' })]), options)).toMatchObject({ outcome: 'applied' });
  });

  it('never writes pgfanout\'s own tables from a change', async () => {
    const source = newSource();
    await applyMessage(client, body(source, 1, [ins('t', { id: '910', v: 'a' })]));
    const forged: Change = { op: 'U', schema: 'pgfanout', table: 'replica_position', txid: '1', old: { source_id: source }, new: { source_id: source, batch_id: '500', applied_batch_id: '500' } };
    const error = await refusal(client, body(source, 2, [forged]));
    expect(error.code).toBe(ERROR_CODES.untrustedMessage);
    expect(error.message).toMatch(/"pgfanout"\."replica_position": pgfanout's own tables are never written/);
    expect(await replicaPosition(client, source)).toEqual({ batchId: '1', part: null });
  });

  it('refuses a batch that jumps ahead of its predecessor, and the real next batch still applies', async () => {
    const source = newSource();
    await applyMessage(client, body(source, 1, [ins('t', { id: '920', v: 'a' })]));
    const error = await refusal(client, body(source, '1000000000000000000', [], { prev: '1' }));
    expect(error.code).toBe(ERROR_CODES.untrustedMessage);
    expect(error.message).toMatch(/batch 1000000000000000000 names batch 1 as its predecessor/);
    expect(await replicaPosition(client, source)).toEqual({ batchId: '1', part: null });
    expect(await applyMessage(client, body(source, 2, [ins('t', { id: '921', v: 'b' })]))).toMatchObject({ outcome: 'applied' });
  });

  it('drops a duplicate only when it is the batch it applied; another batch under an applied id stops the replica', async () => {
    const source = newSource();
    const first = body(source, 1, [ins('t', { id: '930', v: 'a' })]);
    await applyMessage(client, first);
    await applyMessage(client, body(source, 2, [ins('t', { id: '931', v: 'b' })]));
    expect(await applyMessage(client, first)).toMatchObject({ outcome: 'duplicate', verified: true });
    const other = await refusal(client, body(source, 1, [ins('t', { id: '932', v: 'lost on the source' })]));
    expect(other.code).toBe(ERROR_CODES.untrustedMessage);
    expect(other.message).toMatch(/batch 1 part 0 was applied with digest [0-9a-f]{32}, and arrives again with digest/);
  });

  it('detects a source that went back in time by its origin: an applied batch id from another origin, or a lower LSN', async () => {
    const source = newSource();
    const origin = (lsn: string, timeline = 1): BatchOrigin => ({ system: '7301234567890123456', timeline, lsn });
    await applyMessage(client, body(source, 1, [ins('t', { id: '940', v: 'a' })], { origin: origin('0/3000100') }));
    await applyMessage(client, body(source, 2, [ins('t', { id: '941', v: 'b' })], { origin: origin('0/3000200') }));
    // The same batch again, re-encoded (other bytes) but from the same origin: a duplicate.
    expect(await applyMessage(client, body(source, 2, [ins('t', { v: 'b', id: '941' })], { origin: origin('0/3000200') }))).toMatchObject({ outcome: 'duplicate', verified: true });
    // Batch 2 made again by a source that lost it: another origin.
    const reused = await refusal(client, body(source, 2, [ins('t', { id: '942', v: 'c' })], { origin: origin('0/3000180') }));
    expect(reused.message).toMatch(/batch 2 was applied from system 7301234567890123456, timeline 1, LSN 0\/3000200, and arrives again from .* LSN 0\/3000180: the source went back in time/);
    const backwards = await refusal(client, body(source, 3, [ins('t', { id: '943', v: 'd' })], { origin: origin('0/3000150') }));
    expect(backwards.code).toBe(ERROR_CODES.untrustedMessage);
    expect(backwards.message).toMatch(/comes from .* LSN 0\/3000150, before batch 2 applied last .*went back in time/);
    expect(await count('SELECT 1 FROM public.t WHERE id IN (942, 943)')).toBe(0);
    // A promoted standby continues on a new timeline.
    expect(await applyMessage(client, body(source, 3, [ins('t', { id: '944', v: 'e' })], { origin: origin('0/3000300', 2) }))).toMatchObject({ outcome: 'applied' });
  });

  it('stops at schema drift: inserts that no longer carry a replica column it would leave NULL', async () => {
    const source = newSource();
    // The replica's own column (default) and generated identity may be absent; a source column may not.
    await applyMessage(client, body(source, 1, [ins('wide', { id: '1', a: 'x', b: 'y' })]));
    const error = await refusal(client, body(source, 2, [ins('wide', { id: '2', a: 'x' })]));
    expect(error.code).toBe(ERROR_CODES.schemaDrift);
    expect(error.message).toMatch(/schema drift on replica table "public"."wide": the source's rows no longer carry column "b"/);
    expect(await count('SELECT 1 FROM public.wide WHERE id = 2')).toBe(0);
    // An update that leaves a column out leaves it as it is.
    const update: Change = { op: 'U', schema: 'public', table: 'wide', txid: '5', old: { id: '1' }, new: { id: '1', a: 'z' } };
    expect(await applyMessage(client, body(source, 2, [update]))).toMatchObject({ outcome: 'applied' });
    expect((await client.query('SELECT a, b FROM public.wide WHERE id = 1')).rows).toEqual([{ a: 'z', b: 'y' }]);
  });

  it('runs schema changes only where allowed, never with transaction control, and exactly the statements they show', async () => {
    const source = newSource();
    await applyMessage(client, body(source, 1, [ins('t', { id: '950', v: 'a' })]));
    const column = async (name: string) => count("SELECT 1 FROM information_schema.columns WHERE table_name = 't' AND column_name = $1", [name]);

    const off = await refusal(client, body(source, 2, [ddl('ALTER TABLE t ADD c1 int')]));
    expect(off.code).toBe(ERROR_CODES.untrustedMessage);
    expect(off.message).toMatch(/does not run schema changes from the stream \(allowSchemaChanges is off\)/);

    const allow = { allowSchemaChanges: true };
    const wrapped = await refusal(client, body(source, 2, [ddl('BEGIN; ALTER TABLE t ADD c2 int; COMMIT;'), ins('t', { id: '951', v: 'b' })]), allow);
    expect(wrapped.code).toBe(ERROR_CODES.untrustedMessage);
    expect(wrapped.message).toMatch(/is transaction control \(BEGIN\)/);
    expect(await column('c2')).toBe(0);
    expect(await replicaPosition(client, source)).toEqual({ batchId: '1', part: null });
    expect(await count('SELECT 1 FROM public.t WHERE id = 951')).toBe(0);

    const smuggled = await refusal(client, body(source, 2, [ddl("ALTER TABLE t ADD c3 int; DO $$ BEGIN EXECUTE 'CREATE TABLE public.smuggled ()'; END $$")]), allow);
    expect(smuggled.message).toMatch(/statement 2 of 2 .* is anonymous code/);
    expect(await count("SELECT 1 FROM pg_class WHERE relname = 'smuggled'")).toBe(0);

    // Semicolons and keywords inside strings, dollar quotes and comments are the statement's own.
    const tricky = "/* COMMIT; */ ALTER TABLE t ADD c4 text DEFAULT 'x; COMMIT; y'; COMMENT ON COLUMN t.c4 IS $c$ ; ROLLBACK; $c$";
    expect(await applyMessage(client, body(source, 2, [ddl(tricky), ins('t', { id: '952', v: 'c', c4: 'z' })]), allow)).toMatchObject({ outcome: 'applied', changes: 2 });
    expect(await column('c4')).toBe(1);
    expect((await client.query("SELECT col_description(attrelid, attnum) AS d FROM pg_attribute WHERE attrelid = 'public.t'::regclass AND attname = 'c4'")).rows[0]?.d).toBe(' ; ROLLBACK; ');
  });

  it('applies staged parts only as they arrived: a staged part changed in the replica stops the batch', async () => {
    const source = newSource();
    const changes = Array.from({ length: 40 }, (_, i) => ins('t', { id: String(2000 + i), v: `value ${i}` }));
    const parts = await collect(encodeBatch({ sourceId: source, batchId: '1', prevBatchId: '0' }, tokensOf(changes), { maxMessageBytes: 1024 }));
    expect(parts.length).toBeGreaterThan(2);
    for (const part of parts.slice(0, -1)) expect((await applyMessage(client, part.body)).outcome).toBe('staged');
    // A writer of the staging table replaces part 0 with other rows, digest and all.
    const { rows } = await client.query<{ body: string }>('SELECT body FROM pgfanout.replica_staged_part WHERE source_id = $1 AND part = 0', [source]);
    const forged = (rows[0] as { body: string }).body.replaceAll('value ', 'forged ');
    await client.query('UPDATE pgfanout.replica_staged_part SET body = $2, digest = $3 WHERE source_id = $1 AND part = 0', [source, forged, bodyDigest(forged)]);
    const error = await refusal(client, (parts.at(-1) as { body: string }).body);
    expect(error.code).toBe(ERROR_CODES.untrustedMessage);
    expect(error.message).toMatch(/the staged batch 1 part 1 is not the part that arrived/);
    expect(await count("SELECT 1 FROM public.t WHERE v LIKE 'forged%'")).toBe(0);
  });
});
