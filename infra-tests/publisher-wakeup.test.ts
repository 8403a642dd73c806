/**
 * The publisher's wake-up: a commit is published without waiting for the tick, even when its
 * transaction read "the publisher is not waiting" (so it sends no NOTIFY) and commits only after
 * the publisher's last look. The tick is set far longer than the test's deadline, so a test passes
 * only if the publisher found the commit on its own, never because the tick came round.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { LocalPostgres } from '#local/postgres.ts';
import { TEST_MAJORS } from '#testing/servers.ts';
import { waitFor } from '#testing/wait.ts';
import { Publisher } from '../functions/publisher/publisher.ts';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
/** Far longer than any deadline below: a batch published in time was not found by the tick. */
const TICK_MS = 600_000;

/** A query the publisher ran, with the rows it returned. */
interface Seen {
  readonly text: string;
  readonly rows: number;
}

describe.each(TEST_MAJORS)('publisher wake-up on PostgreSQL %i', (major) => {
  let server: LocalPostgres;
  let pipeline: Pipeline | undefined;
  let stop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    server = await LocalPostgres.start({ major });
  });
  afterEach(async () => {
    await stop?.();
    stop = undefined;
    await pipeline?.stop();
    pipeline = undefined;
  });
  afterAll(async () => {
    await server?.stop();
  });

  /** Starts an in-process publisher whose source connection reports every query it completed. */
  function startPublisher(p: Pipeline, seen: Seen[]): void {
    const controller = new AbortController();
    const publisher = new Publisher({
      connectSource: async () => {
        const client = new pg.Client({ connectionString: p.sourceUrl, application_name: 'pgfanout-publisher-test' });
        await client.connect();
        // Observe (not replace) the real client's queries: text and row count once each completes.
        const query = client.query.bind(client) as (...args: unknown[]) => unknown;
        (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
          const out = query(...args);
          const text = typeof args[0] === 'string' ? args[0] : String((args[0] as { text?: string }).text ?? 'COPY');
          if (out instanceof Promise) void out.then((r: { rowCount?: number | null } | undefined) => seen.push({ text, rows: r?.rowCount ?? 0 }), () => undefined);
          return out;
        };
        return client;
      },
      sns: p.sns,
      topicArns: p.topicArns,
      signingKeys: p.signingKeys(),
      logger: quiet,
      tickMs: TICK_MS,
      standbyPollMs: 100,
    });
    const done = publisher.run(controller.signal);
    stop = async () => {
      controller.abort();
      await done;
    };
  }

  const finished = (p: Pipeline) =>
    withClient(p.sourceUrl, async (c) => Number((await c.query<{ n: string }>('SELECT finished_batch_id::text AS n FROM pgfanout.batch_cursor')).rows[0]?.n));

  it('publishes a commit whose transaction read "not waiting" and committed after the last look, without waiting for the tick', async () => {
    const db = `src_${randomUUID().slice(0, 8)}`;
    await withClient(server.url(), (c) => c.query(`CREATE DATABASE ${db}`));
    const p = (pipeline = await Pipeline.start({ sourceUrl: server.url(db), replicas: [], startPublisher: false, tickMs: TICK_MS }));
    await withClient(p.sourceUrl, async (c) => {
      await c.query('CREATE TABLE public.t (id int PRIMARY KEY)');
      await c.query("SELECT pgfanout.add_table('public.t')");
    });
    // A writer captures its change while no publisher waits: it sends no NOTIFY at commit.
    const writer = new pg.Client(p.sourceUrl);
    await writer.connect();
    try {
      expect((await writer.query('SELECT publisher_waiting FROM pgfanout.status()')).rows[0].publisher_waiting).toBe(false);
      await writer.query('BEGIN');
      await writer.query('INSERT INTO public.t VALUES (1)');

      // The publisher starts, finds nothing, says it waits and takes its last look (nothing: the writer has not committed).
      const seen: Seen[] = [];
      startPublisher(p, seen);
      await waitFor(
        'the publisher to say it waits, then look once more and find nothing',
        () => {
          const said = seen.findIndex((q) => q.text.includes('publisher_waiting(true)'));
          return said >= 0 && seen.slice(said + 1).some((q) => q.text.includes('next_batch') && q.rows === 0);
        },
        30_000,
        5,
      );
      expect(await finished(p)).toBe(0);

      await writer.query('COMMIT');
      await waitFor('the batch to be published and finished', async () => (await finished(p)) >= 1, 30_000);
    } finally {
      await writer.end();
    }
  });
});
