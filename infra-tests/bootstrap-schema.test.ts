/**
 * `pgfanout bootstrap` on a schema with every feature it recreates: enum and domain types (an
 * array of an enum, a domain with CHECKs and a collation), a shared sequence named in a default,
 * a serial and an identity column, CHECKs, UNIQUE constraints, non-unique indexes (one on an
 * expression), a table partitioned on two levels with default partitions, an index on the
 * partitioned table and one of a partition's own, and foreign keys between the tables. The
 * replica's catalog must describe the same objects as the source's, its sequences the same
 * values, its tables the same rows; an interrupted bootstrap is run again into tables with
 * foreign keys, with and without --force; a role that may not set session_replication_role
 * bootstraps too. Real PostgreSQL servers, 13 and 18.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { bootstrapReplica, BootstrapError, type BootstrapResult } from '#ops/bootstrap/index.ts';
import { installReplica, installSource } from '#ops/install.ts';
import { replicatedTables } from '#ops/status.ts';
import { verifyTables } from '#ops/verify.ts';
import { withClient } from '#local/pipeline.ts';
import { LocalPostgres } from '#local/postgres.ts';
import { describeEachMajor } from '#testing/servers.ts';

/**
 * `shop.book` sorts first and is referenced by `shop.sale`; `shop.writer` sorts last and is
 * referenced by `shop.book`: a copy in name order with foreign keys checked fails, and so does
 * emptying `shop.book` alone while `shop.sale` references it.
 */
const SCHEMA_SQL = `
CREATE SCHEMA shop;
CREATE TYPE shop.mood AS ENUM ('sad', 'ok', 'happy', 'it''s complicated');
CREATE DOMAIN shop.year AS integer CONSTRAINT year_range CHECK (VALUE >= 1901 AND VALUE <= 2155);
CREATE DOMAIN shop.email AS text COLLATE "C" CONSTRAINT email_has_at CHECK (VALUE LIKE '%@%') CONSTRAINT email_short CHECK (length(VALUE) < 200);
CREATE SEQUENCE shop.ticket_seq AS bigint START WITH 1000 INCREMENT BY 5;
CREATE TABLE shop.writer (
  id serial PRIMARY KEY,
  name text NOT NULL CONSTRAINT writer_name_present CHECK (name <> ''),
  mood shop.mood NOT NULL DEFAULT 'ok',
  moods shop.mood[],
  born shop.year,
  email shop.email,
  ticket bigint NOT NULL DEFAULT nextval('shop.ticket_seq'),
  last_update timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX writer_lower_name ON shop.writer (lower(name));
CREATE TABLE shop.book (
  id bigint GENERATED ALWAYS AS IDENTITY (START WITH 100 INCREMENT BY 2) PRIMARY KEY,
  writer_id int NOT NULL REFERENCES shop.writer ON DELETE CASCADE,
  title text NOT NULL,
  price numeric(8,2) CHECK (price >= 0),
  published shop.year,
  CONSTRAINT book_title_unique UNIQUE (writer_id, title)
);
CREATE INDEX book_writer ON shop.book (writer_id);
CREATE INDEX book_cheap ON shop.book (price) WHERE price < 10;
CREATE TABLE shop.sale (
  id bigint NOT NULL,
  book_id bigint NOT NULL CONSTRAINT sale_book_fk REFERENCES shop.book,
  sold_on date NOT NULL,
  region text NOT NULL,
  amount numeric(10,2) NOT NULL CONSTRAINT sale_amount_positive CHECK (amount > 0),
  PRIMARY KEY (id, sold_on, region)
) PARTITION BY RANGE (sold_on);
CREATE TABLE shop.sale_2025 PARTITION OF shop.sale FOR VALUES FROM ('2025-01-01') TO ('2026-01-01') PARTITION BY LIST (region);
CREATE TABLE shop.sale_2025_eu PARTITION OF shop.sale_2025 FOR VALUES IN ('eu');
CREATE TABLE shop.sale_2025_other PARTITION OF shop.sale_2025 DEFAULT;
CREATE TABLE shop.sale_2026 PARTITION OF shop.sale (CONSTRAINT sale_2026_small CHECK (amount < 100000)) FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE shop.sale_rest PARTITION OF shop.sale DEFAULT;
CREATE INDEX sale_book ON shop.sale (book_id);
CREATE INDEX sale_2026_region ON shop.sale_2026 (region);
INSERT INTO shop.writer (name, mood, moods, born, email)
SELECT 'writer ' || g, (ARRAY['sad', 'ok', 'happy', 'it''s complicated']::shop.mood[])[1 + g % 4], ARRAY['sad', 'happy']::shop.mood[],
       1901 + g, 'w' || g || '@example.org'
  FROM generate_series(1, 40) g;
INSERT INTO shop.book (writer_id, title, price, published) SELECT 1 + g % 40, 'book ' || g, (g % 30)::numeric / 2, 1950 + g % 70 FROM generate_series(1, 200) g;
INSERT INTO shop.sale (id, book_id, sold_on, region, amount)
SELECT g, 100 + 2 * (g % 200), date '2024-06-01' + (g % 900), (ARRAY['eu', 'us', 'apac'])[1 + g % 3], 1 + g % 500
  FROM generate_series(1, 3000) g;
`;

const TABLES = ['shop.book', 'shop.sale', 'shop.writer'];

/** What the catalog says about schema shop, as text rows that must be equal on source and replica. */
const DESCRIBE = {
  types: `SELECT t.typname, t.typtype, format_type(t.typbasetype, t.typtypmod), t.typnotnull, t.typdefault, co.collname,
                 ARRAY(SELECT enumlabel::text FROM pg_enum WHERE enumtypid = t.oid ORDER BY enumsortorder),
                 ARRAY(SELECT conname || ' ' || pg_get_constraintdef(k.oid) FROM pg_constraint k WHERE k.contypid = t.oid ORDER BY conname)
            FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace LEFT JOIN pg_collation co ON co.oid = t.typcollation
           WHERE n.nspname = 'shop' AND t.typtype IN ('e', 'd') ORDER BY 1`,
  sequences: `SELECT c.relname, s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle, pg_sequence_last_value(c.oid),
                     (SELECT d.refobjid::regclass || '.' || d.refobjsubid || ' ' || d.deptype::text FROM pg_depend d
                       WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))
                FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'shop' ORDER BY 1`,
  relations: `SELECT c.relname, c.relkind, c.relispartition, pg_get_expr(c.relpartbound, c.oid),
                     CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
                     (SELECT i.inhparent::regclass::text FROM pg_inherits i WHERE i.inhrelid = c.oid)
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'shop' AND c.relkind IN ('r', 'p') ORDER BY 1`,
  columns: `SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, a.attgenerated,
                   pg_get_expr(d.adbin, d.adrelid), co.collname
              FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum LEFT JOIN pg_collation co ON co.oid = a.attcollation
             WHERE n.nspname = 'shop' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2`,
  constraints: `SELECT k.conrelid::regclass::text, k.conname, k.contype, pg_get_constraintdef(k.oid), k.conislocal, k.coninhcount, k.convalidated
                  FROM pg_constraint k JOIN pg_namespace n ON n.oid = k.connamespace
                 WHERE n.nspname = 'shop' AND k.conrelid <> 0 AND k.contype <> 'n' ORDER BY 1, 2`,
  indexes: `SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisunique, ic.relispartition
              FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'shop' ORDER BY 1, 2`,
} as const;

async function describeSchema(url: string): Promise<Record<string, unknown[]>> {
  return withClient(url, async (c) => {
    await c.query('SET search_path = pg_catalog');
    const out: Record<string, unknown[]> = {};
    for (const [name, sql] of Object.entries(DESCRIBE)) out[name] = (await c.query({ text: sql, rowMode: 'array' })).rows;
    return out;
  });
}

describeEachMajor('bootstrap builds a faithful schema on PostgreSQL %i', (major) => {
  let source: LocalPostgres;
  let replica: LocalPostgres;
  let sourceUrl: string;

  beforeAll(async () => {
    [source, replica] = await Promise.all([LocalPostgres.start({ major }), LocalPostgres.start({ major })]);
    sourceUrl = source.url();
    await withClient(sourceUrl, async (s) => {
      await installSource(s);
      await s.query(SCHEMA_SQL);
      for (const t of TABLES) await s.query('SELECT pgfanout.add_table($1::regclass)', [t]);
      await s.query("INSERT INTO shop.writer (name) VALUES ('captured')");
    });
  }, 180_000);

  afterAll(async () => {
    await Promise.all([source?.stop(), replica?.stop()]);
  });

  /** A new database on the replica server with pgfanout's replica tables. */
  async function replicaDatabase(name: string): Promise<string> {
    await withClient(replica.url(), (c) => c.query(`CREATE DATABASE ${name}`));
    const url = replica.url(name);
    await withClient(url, (c) => installReplica(c));
    return url;
  }

  /** The replica equals the source: catalog, sequence values, rows. */
  async function expectFaithful(url: string): Promise<void> {
    const [want, got] = await Promise.all([describeSchema(sourceUrl), describeSchema(url)]);
    for (const part of Object.keys(DESCRIBE)) expect(got[part], `${part} on the replica`).toEqual(want[part]);
    const tables = await withClient(sourceUrl, replicatedTables);
    const report = await withClient(sourceUrl, (s) => withClient(url, (r) => verifyTables(s, r, tables)));
    expect(report.differences).toEqual([]);
    expect(report.rowsCompared).toBe(40 + 1 + 200 + 3000);
  }

  /** A bootstrap aborted as soon as its first table is copied; returns its error. Its pause is resumed. */
  async function interrupted(url: string, force: boolean): Promise<unknown> {
    const stop = new AbortController();
    let done = 0;
    let paused = 0;
    const error = await bootstrapReplica({
      sourceUrl,
      replicaName: 'r',
      replicaUrl: url,
      force,
      signal: stop.signal,
      onEvent: (e) => {
        if (e.kind === 'table-done' && ++done === 1) stop.abort();
      },
      pause: () => void paused++,
      resume: () => void paused--,
    }).catch((err: unknown) => err);
    expect(paused).toBe(0);
    return error;
  }

  it('creates types, sequences, tables, partitions, CHECKs, indexes and foreign keys in an empty replica', async () => {
    // Prepare
    const url = await replicaDatabase('empty');
    const lines: string[] = [];
    const calls: string[] = [];
    // Act
    const result = await bootstrapReplica({
      sourceUrl,
      replicaName: 'r',
      replicaUrl: url,
      jobs: 2,
      log: (l) => lines.push(l),
      onEvent: (e) => calls.push(e.kind),
      pause: () => void calls.push('pause'),
      resume: () => void calls.push('resume'),
    });
    // Assess: paused once the snapshot is taken, before anything is prepared or copied; resumed at the end
    expect([calls[0], calls[1], calls.at(-1)]).toEqual(['snapshot', 'pause', 'resume']);
    expect(calls.filter((c) => c === 'pause' || c === 'resume')).toHaveLength(2);
    expect(result.tables.map((t) => [t.table, t.created, t.rows])).toEqual([
      ['shop.book', true, 200],
      ['shop.sale', true, 3000],
      ['shop.writer', true, 41],
    ]);
    expect(lines).toContain('created foreign key(s) shop.book.book_writer_id_fkey, shop.sale.sale_book_fk');
    await expectFaithful(url);
    // the sequences continue where the source's are: the next values are the same on both
    const next = `SELECT nextval('shop.ticket_seq') AS t, nextval('shop.writer_id_seq') AS w, nextval(pg_get_serial_sequence('shop.book', 'id')) AS b`;
    const [s, r] = await Promise.all([withClient(sourceUrl, (c) => c.query(next)), withClient(url, (c) => c.query(next))]);
    expect(r.rows).toEqual(s.rows);
    // the partitioned table's index reached every partition, the foreign keys hold
    await withClient(url, async (c) => {
      const { rows } = await c.query("SELECT count(*)::int AS n FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE ic.relname LIKE 'sale%book_id_idx' AND i.indisvalid");
      expect(rows[0].n).toBe(5);
      await expect(c.query("INSERT INTO shop.book (writer_id, title) VALUES (999, 'orphan')")).rejects.toMatchObject({ code: '23503' });
    });
  }, 240_000);

  it('runs again after an interruption into tables with foreign keys, with and without --force', async () => {
    // Prepare: a replica bootstrapped once, so every table exists with its foreign keys, and one
    // more of the replica's own (not the source's: bootstrap leaves it alone)
    const url = await replicaDatabase('again');
    await bootstrapReplica({ sourceUrl, replicaName: 'r', replicaUrl: url });
    await withClient(url, (c) => c.query('ALTER TABLE shop.sale ADD CONSTRAINT sale_book_mine FOREIGN KEY (book_id) REFERENCES shop.book'));
    // Act 1: a forced bootstrap stopped after shop.book (referenced by shop.sale), then run again without --force
    expect(await interrupted(url, true)).toMatchObject({ code: 'ABORTED' });
    const counts = await withClient(url, async (c) => (await c.query('SELECT (SELECT count(*) FROM shop.book)::int AS book, (SELECT count(*) FROM shop.sale)::int AS sale')).rows[0]);
    expect(counts).toEqual({ book: 200, sale: 0 });
    const second: BootstrapResult | BootstrapError = await bootstrapReplica({ sourceUrl, replicaName: 'r', replicaUrl: url }).catch((err: BootstrapError) => err);
    // Assess 1: every table copied once by the run that started over
    expect(second).toMatchObject({ restarted: true });
    expect((second as BootstrapResult).tables.map((t) => t.attempts)).toEqual([1, 1, 1]);
    await withClient(url, (c) => c.query('ALTER TABLE shop.sale DROP CONSTRAINT sale_book_mine'));
    await expectFaithful(url);
    // Act 2: the same with --force
    expect(await interrupted(url, true)).toMatchObject({ code: 'ABORTED' });
    const third = await bootstrapReplica({ sourceUrl, replicaName: 'r', replicaUrl: url, force: true });
    // Assess 2
    expect(third.restarted).toBe(true);
    await expectFaithful(url);
  }, 240_000);

  it('bootstraps as a role that may not set session_replication_role: foreign keys come after the copy, replica triggers are refused', async () => {
    // Prepare: a login role owning what it creates, without the right to set session_replication_role
    const url = await replicaDatabase('plain');
    await withClient(url, (c) =>
      c.query(`
        DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'plain_boot') THEN CREATE ROLE plain_boot LOGIN PASSWORD 'plain-boot'; END IF; END $$;
        GRANT CREATE ON DATABASE plain TO plain_boot;
        GRANT pgfanout_applier TO plain_boot;
        GRANT EXECUTE ON FUNCTION pgfanout.replica_bootstrap_begin(text, boolean), pgfanout.replica_bootstrap_record(text, bigint, text, boolean, text[], text[]),
          pgfanout.replica_bootstrap_tables(text), pgfanout.replica_bootstrap_copy_begin(text, text, text),
          pgfanout.replica_bootstrap_copy_done(text, text, text, bigint), pgfanout.replica_bootstrap_finish(text) TO plain_boot;
      `),
    );
    const plain = new URL(url);
    plain.username = 'plain_boot';
    plain.password = 'plain-boot';
    await withClient(plain.href, async (c) => {
      await expect(c.query('SET session_replication_role = replica')).rejects.toMatchObject({ code: '42501' });
    });
    // Act: into the empty database
    const lines: string[] = [];
    await bootstrapReplica({ sourceUrl, replicaName: 'r', replicaUrl: plain.href, log: (l) => lines.push(l) });
    // then again with --force into its tables with foreign keys, one of them with a last_update trigger
    await withClient(url, (c) =>
      c.query(`
        CREATE FUNCTION shop.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.last_update := now(); RETURN NEW; END $$;
        CREATE TRIGGER writer_last_update BEFORE INSERT OR UPDATE ON shop.writer FOR EACH ROW EXECUTE FUNCTION shop.touch();
      `),
    );
    const refused = await bootstrapReplica({ sourceUrl, replicaName: 'r', replicaUrl: plain.href, force: true }).catch((err: unknown) => err);
    await withClient(url, (c) =>
      c.query('ALTER TABLE shop.writer DISABLE TRIGGER writer_last_update; ALTER TABLE shop.sale ADD CONSTRAINT sale_book_mine FOREIGN KEY (book_id) REFERENCES shop.book'),
    );
    const ownKey = await bootstrapReplica({ sourceUrl, replicaName: 'r', replicaUrl: plain.href, force: true }).catch((err: unknown) => err);
    await withClient(url, (c) => c.query('ALTER TABLE shop.sale DROP CONSTRAINT sale_book_mine'));
    const forced = await bootstrapReplica({ sourceUrl, replicaName: 'r', replicaUrl: plain.href, force: true }).catch((err: unknown) => err);
    // Assess
    expect(lines).toContain('this role may not set session_replication_role: the copy runs under the pgfanout.origin guard, foreign keys are created after it');
    expect(refused).toBeInstanceOf(BootstrapError);
    expect(refused).toMatchObject({ code: 'REPLICA_TRIGGERS' });
    expect((refused as Error).message).toMatch(
      /^replica r: trigger\(s\) "shop"\."writer" "writer_last_update" would fire on every copied row, .* GRANT SET ON PARAMETER session_replication_role TO "plain_boot"/,
    );
    expect(ownKey).toMatchObject({ code: 'SCHEMA_MISMATCH' });
    expect((ownKey as Error).message).toMatch(/^replica r: foreign key\(s\) shop\.sale\.sale_book_mine are the replica's own/);
    expect(forced).not.toBeInstanceOf(Error);
    await expectFaithful(url);
  }, 240_000);
});
