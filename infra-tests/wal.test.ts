/**
 * The WAL capture mode end to end, on PostgreSQL 13 and 18 started with wal_level = logical:
 * the real publisher reads the source's logical replication slot (pgoutput) and publishes
 * through the local SNS/SQS endpoint to a replica's applier, which must end up holding
 * exactly the source's rows. Also: what the envelopes carry (unchanged TOASTed columns left
 * out, nothing of an aborted transaction), replica identity for a table without a primary
 * key, schema changes as logical messages, and a publisher stopped between a publish and the
 * finish republishing the same bytes under the same deduplication ids.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PublishBatchRequestEntry } from '@aws-sdk/client-sns';
import { PublishBatchCommand } from '@aws-sdk/client-sns';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { LocalPostgres, WAL_SETTINGS } from '#local/postgres.ts';
import { TEST_MAJORS } from '#testing/servers.ts';
import { appliedBatch, runPublisher as runTestPublisher } from '#testing/publisher.ts';
import { waitFor } from '#testing/wait.ts';
import { runCli } from '#testing/cli.ts';
import { pause } from '#testing/wait.ts';
import { waitForCatchUp } from '#local/command.ts';
import { DEMO_SCHEMA_SQL, DEMO_TABLES, runDemoWorkload } from '#local/workload.ts';
import { replicatedTables } from '#ops/status.ts';
import { verifyTables } from '../functions/ops/verify.ts';
import { parseEnvelope, mergeChangeItems, type Change } from '#core/wire';
import type { PublisherOptions } from '../functions/publisher/publisher.ts';
import { awsClients } from '../functions/ops/aws.ts';

const log = (level: string) => (message: string, extra: Record<string, unknown>) => { if (process.env.PGFANOUT_TEST_LOG) console.error(level, message, JSON.stringify(extra)); };
const quiet = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };

const runPublisher = (p: Pipeline, options: Partial<PublisherOptions> = {}, controller?: AbortController) => runTestPublisher(p, { logger: quiet, ...options }, controller);

/** A WAL-mode source and one replica as databases of `server`, with the fan-out and an applier running. */
async function startPipeline(server: LocalPostgres, allowSchemaChanges = false): Promise<Pipeline> {
  const names = [`src_${randomUUID().slice(0, 8)}`, `rep_${randomUUID().slice(0, 8)}`];
  for (const name of names) await withClient(server.url(), (c) => c.query(`CREATE DATABASE ${name}`));
  return Pipeline.start({
    sourceUrl: server.url(names[0]),
    replicas: [{ name: 'a', url: server.url(names[1]), allowSchemaChanges }],
    capture: 'wal',
    startPublisher: false,
    visibilityTimeoutSeconds: 5,
    maxRetryDelaySeconds: 1,
  });
}

/** What a publisher sent: every PublishBatch entry, in order. */
function recordingSns(p: Pipeline, after?: (call: number) => void): { sns: ReturnType<typeof awsClients>['sns']; entries: PublishBatchRequestEntry[] } {
  const sns = awsClients({ endpoint: p.endpointUrl }).sns;
  const entries: PublishBatchRequestEntry[] = [];
  let calls = 0;
  sns.middlewareStack.add(
    (next) => async (args) => {
      const out = await next(args);
      entries.push(...((args.input as { PublishBatchRequestEntries?: PublishBatchRequestEntry[] }).PublishBatchRequestEntries ?? []));
      after?.(++calls);
      return out;
    },
    { step: 'initialize', name: 'recordPublishBatch' },
  );
  return { sns, entries };
}



async function finishedBatch(p: Pipeline): Promise<number> {
  return withClient(p.sourceUrl, async (c) => Number((await c.query('SELECT finished_batch_id::text AS n FROM pgfanout.batch_cursor')).rows[0].n));
}

/** Rows of `table` on `url`, each as the hex of its text's UTF-8 bytes (exact). */
async function rowBytes(url: string, table: string): Promise<string[]> {
  return withClient(url, async (c) => {
    const { rows } = await c.query<{ r: string }>(`SELECT encode(convert_to(t::text, 'UTF8'), 'hex') AS r FROM ${table} t ORDER BY 1`);
    return rows.map((row) => row.r);
  });
}

/** Every change in the published messages, in order, reassembled. */
function changesOf(entries: readonly PublishBatchRequestEntry[]): Change[] {
  return mergeChangeItems(entries.flatMap((e) => parseEnvelope(e.Message).changes));
}

describe.each(TEST_MAJORS)('WAL capture on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let pipeline: Pipeline | undefined;
  const publishers: { stop(): Promise<void> }[] = [];

  beforeAll(async () => {
    server = await LocalPostgres.start({ major, settings: WAL_SETTINGS });
  });
  afterEach(async () => {
    for (const p of publishers.splice(0)) await p.stop();
    // A slot keeps WAL (and its database) until dropped.
    if (pipeline) await withClient(pipeline.sourceUrl, (c) => c.query('SELECT pgfanout.wal_drop()'));
    await pipeline?.stop();
    pipeline = undefined;
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('replicates inserts, updates, deletes and truncates exactly, keeps unchanged TOASTed values, gives a table without a key a replica identity, and publishes nothing of an aborted transaction', async () => {
    const p = (pipeline = await startPipeline(server));
    const ddl = [
      `CREATE TABLE public.v (id int PRIMARY KEY, note text, big text, n numeric, f float8, ts timestamptz, iv interval, j jsonb, b bytea, arr int[], d date)`,
      'CREATE TABLE public.nokey (x int, y text)',
      'CREATE TABLE public.tr (id int PRIMARY KEY)',
    ];
    for (const url of [p.sourceUrl, p.replicas[0]!.url]) await withClient(url, async (c) => void (await c.query(ddl.join(';'))));
    const notices: string[] = [];
    await withClient(p.sourceUrl, async (c) => {
      c.on('notice', (n) => notices.push(n.message ?? ''));
      await c.query("SELECT pgfanout.add_table('public.v'), pgfanout.add_table('public.nokey'), pgfanout.add_table('public.tr')");
      expect((await c.query("SELECT relreplident FROM pg_class WHERE oid = 'public.nokey'::regclass")).rows[0].relreplident).toBe('f');
      expect((await c.query('SELECT table_name, identity_kind FROM pgfanout.show_tables()')).rows).toEqual([
        { table_name: 'nokey', identity_kind: 'none' },
        { table_name: 'tr', identity_kind: 'primary key' },
        { table_name: 'v', identity_kind: 'primary key' },
      ]);
      // A value large enough to be stored out of line (TOAST), and not compressible below that.
      await c.query(`INSERT INTO public.v
        SELECT i, 'n' || i, (SELECT string_agg(md5(i::text || g::text), '') FROM generate_series(1, 4000) g),
               '123456789012345678901234567890.000000000000000000001', 0.1 + i, '2024-02-29 23:59:59.999999+05:30', '1 year -2 days 03:00:00.5',
               '{"b": [1, 2.50, "x"], "a": null}', '\\x00ff10', '{{1,2},{3,NULL}}', '0044-03-15 BC'
          FROM generate_series(1, 3) i`);
      await c.query("UPDATE public.v SET note = 'changed', f = 'NaN' WHERE id = 1");
      await c.query('DELETE FROM public.v WHERE id = 2');
      await c.query("INSERT INTO public.nokey VALUES (1, 'a'), (1, 'a'), (2, NULL)");
      await c.query("UPDATE public.nokey SET y = 'b' WHERE x = 2");
      await c.query('INSERT INTO public.tr SELECT generate_series(1, 5)');
      await c.query('TRUNCATE public.tr');
      await c.query('INSERT INTO public.tr VALUES (42)');
      await c.query('BEGIN');
      await c.query("INSERT INTO public.v (id, note) VALUES (99, 'rolled back')");
      await c.query('ROLLBACK');
      await c.query("UPDATE public.v SET note = 'last' WHERE id = 3");
    });
    expect(notices.join('\n')).toContain('public.nokey has no primary key and no unique index over NOT NULL columns: its replica identity is now FULL');

    const { sns, entries } = recordingSns(p);
    publishers.push(runPublisher(p, { sns }));
    await waitFor('the publisher to finish every batch and the replica to apply them', async () => {
      const finished = await finishedBatch(p);
      return finished > 0 && (await appliedBatch(p)) === finished && (await withClient(p.sourceUrl, async (c) => Number((await c.query('SELECT lag_bytes FROM pgfanout.wal_status()')).rows[0].lag_bytes))) < 1_000_000;
    }, 60_000);
    await waitFor('the replica to hold the source rows', async () => {
      for (const t of ['public.v', 'public.nokey', 'public.tr']) if (JSON.stringify(await rowBytes(p.replicas[0]!.url, t)) !== JSON.stringify(await rowBytes(p.sourceUrl, t))) return false;
      return true;
    }, 60_000);
    for (const t of ['public.v', 'public.nokey', 'public.tr']) expect(await rowBytes(p.replicas[0]!.url, t)).toEqual(await rowBytes(p.sourceUrl, t));

    const changes = changesOf(entries);
    const update = changes.find((c) => c.op === 'U' && c.table === 'v' && c.new?.note === 'changed');
    // pgoutput did not send the unchanged TOASTed column: the envelope leaves it out, so the replica keeps it.
    expect(update?.old).toEqual({ id: '1' });
    expect(Object.keys(update?.new ?? {}).sort()).toEqual(['arr', 'b', 'd', 'f', 'id', 'iv', 'j', 'n', 'note', 'ts']);
    expect(changes.filter((c) => c.op === 'I' && c.table === 'v').map((c) => c.new?.id)).toEqual(['1', '2', '3']);
    expect(changes.some((c) => c.new?.note === 'rolled back')).toBe(false);
    expect(changes.filter((c) => c.op === 'T').map((c) => c.table)).toEqual(['tr']);
    // REPLICA IDENTITY FULL: the whole old row.
    expect(changes.find((c) => c.op === 'U' && c.table === 'nokey')?.old).toEqual({ x: '2', y: null });
    // Exact text under the same output settings as the trigger mode.
    const inserted = changes.find((c) => c.op === 'I' && c.table === 'v')?.new;
    expect(inserted).toMatchObject({ ts: '2024-02-29 18:29:59.999999+00', iv: '1 year -2 days +03:00:00.5', b: '\\x00ff10', arr: '{{1,2},{3,NULL}}', d: '0044-03-15 BC', f: '1.1' });
    // Batch ids are dense, each batch's messages carry its first commit's WAL position as origin.
    const heads = entries.map((e) => parseEnvelope(e.Message)).filter((m) => m.part === 0);
    expect(heads.map((m) => Number(m.batch))).toEqual(heads.map((_, i) => i + 1));
    expect(heads.every((m, i) => m.prev === String(i) && m.origin !== undefined)).toBe(true);
    sns.destroy();
  });

  it('a publisher stopped between publishing a batch and finishing it republishes the same bytes under the same deduplication ids, and the replica applies the batch once', async () => {
    const p = (pipeline = await startPipeline(server));
    for (const url of [p.sourceUrl, p.replicas[0]!.url]) await withClient(url, (c) => c.query('CREATE TABLE public.w (id int PRIMARY KEY, v text)'));
    await withClient(p.sourceUrl, async (c) => {
      await c.query("SELECT pgfanout.add_table('public.w')");
      await c.query("INSERT INTO public.w SELECT i, repeat('x', 300) || i FROM generate_series(1, 40) i");
    });
    // The first publisher (1 KiB messages) stops right after its first PublishBatch (10 parts of a
    // multi-part batch): the batch is recorded, some of it published, not finished.
    const first = new AbortController();
    const a = recordingSns(p, (call) => call === 1 && first.abort());
    const crashed = runPublisher(p, { sns: a.sns, maxMessageBytes: 1024 }, first);
    await crashed.done;
    a.sns.destroy();
    expect(a.entries.length).toBe(10);
    expect(await finishedBatch(p)).toBe(0);
    // The next publisher is configured with 4 KiB messages: the open batch keeps its recorded size.
    const b = recordingSns(p);
    publishers.push(runPublisher(p, { sns: b.sns, maxMessageBytes: 4096 }));
    await waitFor('the replica to apply the batch', async () => (await appliedBatch(p)) >= 1, 60_000);
    const again = b.entries.slice(0, 10).map((e) => [e.MessageDeduplicationId, e.Message]);
    expect(again).toEqual(a.entries.map((e) => [e.MessageDeduplicationId, e.Message]));
    expect(parseEnvelope(b.entries.at(-1)!.Message).final).toBe(true);

    // The first run's messages delivered again past SNS's deduplication (new ids): the replica
    // recognises them as a batch it applied and goes on.
    await p.sns.send(
      new PublishBatchCommand({
        TopicArn: p.topicArn,
        PublishBatchRequestEntries: a.entries.map((e, i) => ({ ...e, Id: `r${i}`, MessageDeduplicationId: `${e.MessageDeduplicationId}-again`.slice(0, 128) })),
      }),
    );
    await withClient(p.sourceUrl, (c) => c.query("INSERT INTO public.w VALUES (1000, 'after')"));
    await waitFor('the replica to apply the next batch', async () => (await appliedBatch(p)) >= 2, 60_000);
    expect(await rowBytes(p.replicas[0]!.url, 'public.w')).toEqual(await rowBytes(p.sourceUrl, 'public.w'));
    expect(await finishedBatch(p)).toBe(2);
    b.sns.destroy();
  });

  it.runIf(major >= 14)('runs replicate_ddl on the replica at its place in the transaction, leaves the statement\'s own data changes to the statement, and ignores pgfanout messages it did not sign', async () => {
    const p = (pipeline = await startPipeline(server, true));
    for (const url of [p.sourceUrl, p.replicas[0]!.url]) await withClient(url, (c) => c.query('CREATE TABLE public.d (id int PRIMARY KEY)'));
    await withClient(p.sourceUrl, async (c) => {
      await c.query("SELECT pgfanout.add_table('public.d')");
      await c.query('INSERT INTO public.d VALUES (1), (2)');
      await c.query('BEGIN');
      await c.query('INSERT INTO public.d VALUES (3)');
      await c.query("SELECT pgfanout.replicate_ddl('ALTER TABLE public.d ADD COLUMN note text; UPDATE public.d SET note = ''filled''')");
      await c.query("INSERT INTO public.d VALUES (4, 'new column')");
      await c.query('COMMIT');
      // Anyone may emit a logical message with prefix pgfanout: unsigned ones change nothing.
      await c.query('BEGIN');
      await c.query(`SELECT pg_logical_emit_message(true, 'pgfanout', '{"quiet":true}')`);
      await c.query("INSERT INTO public.d VALUES (5, 'not hidden')");
      await c.query(`SELECT pg_logical_emit_message(true, 'pgfanout', '${'0'.repeat(64)} {"sql":"DROP TABLE public.d","search_path":"","schema":"","table":""}')`);
      await c.query('COMMIT');
    });
    const { sns, entries } = recordingSns(p);
    publishers.push(runPublisher(p, { sns }));
    await waitFor('the replica to hold the source rows', async () => JSON.stringify(await rowBytes(p.replicas[0]!.url, 'public.d').catch(() => [])) === JSON.stringify(await rowBytes(p.sourceUrl, 'public.d')), 60_000);
    expect(await rowBytes(p.replicas[0]!.url, 'public.d')).toEqual(await rowBytes(p.sourceUrl, 'public.d'));
    expect(changesOf(entries).map((c) => `${c.op}:${c.new?.id ?? c.new?.sql ?? ''}`)).toEqual([
      'I:1',
      'I:2',
      'I:3',
      "S:ALTER TABLE public.d ADD COLUMN note text; UPDATE public.d SET note = 'filled'",
      'I:4',
      'I:5',
    ]);
    sns.destroy();
  });

  it('pgfanout install --capture wal records the mode, creates the publication and the slot; status shows them', async () => {
    const name = `cli_${randomUUID().slice(0, 8)}`;
    await withClient(server.url(), (c) => c.query(`CREATE DATABASE ${name}`));
    const url = server.url(name);
    await withClient(url, (c) => c.query('CREATE TABLE public.nokey (x int, y text)'));
    const installed = await runCli('install', '--source', url, '--capture', 'wal');
    expect(installed.err).toBe('');
    expect(installed.code).toBe(0);
    expect(installed.out).toMatch(/capture mode: wal \(publication pgfanout, logical replication slot pgfanout_[0-9a-f]{32}\)/);
    try {
      expect((await runCli('add-table', '--source', url, 'public.nokey')).code).toBe(0);
      const status = await runCli('status', '--source', url);
      expect(status.out).toMatch(/capture: wal; slot pgfanout_[0-9a-f]{32} \(inactive, reserved\): [0-9.]+ MB unpublished, retains [0-9.]+ MB of WAL/);
      const again = await runCli('install', '--source', url, '--capture', 'trigger');
      expect(again.code).not.toBe(0);
      expect(again.err).toContain('this source captures in wal mode and has added tables or published batches');
      const bad = await runCli('install', '--source', url, '--capture', 'logical');
      expect(bad.code).not.toBe(0);
      expect(bad.err).toContain('--capture "logical" is not a capture mode; allowed: trigger, wal');
    } finally {
      await withClient(url, (c) => c.query('SELECT pgfanout.wal_drop()'));
    }
  });

  it.runIf(major < 14)('refuses replicate_ddl in WAL mode with a clear error (pgoutput forwards logical messages from PostgreSQL 14)', async () => {
    const p = (pipeline = await startPipeline(server));
    await withClient(p.sourceUrl, async (c) => {
      await expect(c.query("SELECT pgfanout.replicate_ddl('CREATE TABLE public.x (id int)')")).rejects.toThrow(/schema changes cannot be replicated in WAL capture mode on PostgreSQL 13/);
    });
  });
});

describe.each(TEST_MAJORS)('WAL capture end to end on PostgreSQL %i', (major) => {
  let pipeline: Pipeline | undefined;
  afterEach(async () => {
    await pipeline?.stop();
    pipeline = undefined;
  });

  it('survives the publisher process being killed with SIGKILL 10 times during concurrent load over tables with foreign keys, and both replicas converge', async () => {
    const p = (pipeline = await Pipeline.start({ major, capture: 'wal', startPublisher: false, tickMs: 200, visibilityTimeoutSeconds: 10, maxRetryDelaySeconds: 2 }));
    for (const url of [p.sourceUrl, ...p.replicas.map((r) => r.url)]) await withClient(url, (c) => c.query(DEMO_SCHEMA_SQL));
    await withClient(p.sourceUrl, async (c) => {
      for (const t of DEMO_TABLES) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
    });
    p.startPublisher();
    const stopLoad = new AbortController();
    const load = runDemoWorkload(p.sourceUrl, { clients: 3, signal: stopLoad.signal, truncatePercent: 1 });
    for (let i = 0; i < 10; i++) {
      await pause(200 + Math.floor(Math.random() * 800));
      await p.stopPublisher('SIGKILL');
      p.startPublisher();
    }
    stopLoad.abort();
    expect(await load).toBeGreaterThan(0);
    // The last commit: once every replica applied it, it applied everything before it.
    const marker = randomUUID();
    await withClient(p.sourceUrl, (c) => c.query("INSERT INTO demo.audit (kind, note) VALUES ('marker', $1)", [marker]));
    for (const r of p.replicas) {
      await waitFor(`replica ${r.name} to apply the last commit`, async () => {
        const { rows } = await withClient(r.url, (c) => c.query('SELECT count(*)::int AS n FROM demo.audit WHERE note = $1', [marker]));
        return rows[0].n === 1;
      }, 120_000);
    }
    await waitForCatchUp(p, 120_000);
    const tables = await withClient(p.sourceUrl, replicatedTables);
    for (const r of p.replicas) {
      const report = await withClient(p.sourceUrl, (s) => withClient(r.url, (c) => verifyTables(s, c, tables)));
      expect(report.differences, `replica ${r.name} differs`).toEqual([]);
    }
  });
});
