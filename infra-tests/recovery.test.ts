/**
 * Recovery at the settings the stack deploys, on a moving clock: the applier's function
 * timeout 300 s, the queue's visibility timeout 6 × that = 1800 s, batch size 10,
 * maxReceiveCount 1000, retention 14 days. The endpoint, the event-source runners and the
 * appliers share one ManualClock that a {@link ClockDriver} moves forward (faster than real
 * time, never while an invocation runs), so half an hour of SQS and Lambda timing passes in
 * seconds with nothing shortened. The source, replicas and publisher are real.
 *
 * What AWS documents and these tests rely on: a failed record comes back when its visibility
 * timeout ends, and in a FIFO queue the records in flight block their message group until then
 * (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html,
 * https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/FIFO-queues-understanding-logic.html);
 * ChangeMessageVisibility counts the new timeout from the call
 * (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_ChangeMessageVisibility.html).
 */
import pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '#local/endpoint/index.ts';
import { Pipeline, withClient, type RunningReplica } from '#local/pipeline.ts';
import { runDemoWorkload, DEMO_SCHEMA_SQL, DEMO_TABLES } from '#local/workload.ts';
import { queueDepths } from '#ops/aws.ts';
import { replicatedTables, statusReport } from '#ops/status.ts';
import { verifyTables } from '#ops/verify.ts';
import { ClockDriver, invocationRunning } from '#testing/clock-driver.ts';
import { runCli } from '#testing/cli.ts';
import { waitFor } from '#testing/wait.ts';

const FUNCTION_TIMEOUT_S = 300;
const VISIBILITY_S = 6 * FUNCTION_TIMEOUT_S;
const SECOND = 1000;
const MINUTE = 60 * SECOND;

let pipeline: Pipeline | undefined;
let driver: ClockDriver | undefined;

afterEach(async () => {
  driver?.stop();
  driver = undefined;
  await pipeline?.stop();
  pipeline = undefined;
});

/** A pipeline at the deployed settings whose SQS and Lambda timing runs on a driven clock. */
async function startDeployed(speed: number): Promise<{ p: Pipeline; clock: ClockDriver }> {
  // The clock stands still while replica a's applier runs (the replica each test breaks), so
  // its invocations take no simulated time; replica b's are short enough that its 300 s
  // function timeout, 30 real seconds at these speeds, never fires.
  const manual = new ManualClock(Date.UTC(2026, 0, 1));
  const p = await Pipeline.start({
    clock: manual,
    visibilityTimeoutSeconds: VISIBILITY_S,
    functionTimeoutSeconds: FUNCTION_TIMEOUT_S,
    startPublisher: false,
    tickMs: 200,
  });
  pipeline = p;
  driver = new ClockDriver(manual, { speed, busy: () => invocationRunning(p.replicas[0]?.runnerStats()) });
  for (const url of [p.sourceUrl, ...p.replicas.map((r) => r.url)]) await withClient(url, (c) => c.query(DEMO_SCHEMA_SQL));
  await withClient(p.sourceUrl, async (c) => {
    for (const t of DEMO_TABLES) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
  });
  p.startPublisher();
  return { p, clock: driver };
}

async function applied(r: RunningReplica): Promise<number> {
  return withClient(r.url, async (c) => {
    const { rows } = await c.query<{ applied: string | null }>('SELECT max(applied_batch_id)::text AS applied FROM pgfanout.replica_position');
    return Number(rows[0]?.applied ?? 0);
  });
}

/** The newest batch the publisher has finished on the source. */
async function finished(p: Pipeline): Promise<number> {
  const report = await statusReport(p.sourceUrl, [], { prefix: 'pgfanout-local', endpoint: p.endpointUrl });
  return Number(report.source.finishedBatchId ?? 0);
}

/** Waits (in real time) until every replica has applied everything the source committed, then compares every row. */
async function expectConverged(p: Pipeline): Promise<void> {
  await waitFor(
    'the source to have no unpublished events',
    async () => {
      const report = await statusReport(p.sourceUrl, [], { prefix: 'pgfanout-local', endpoint: p.endpointUrl });
      return report.source.pendingEvents === '0' && report.source.finishedBatchId === report.source.lastBatchId;
    },
    120_000,
  );
  const last = await finished(p);
  for (const r of p.replicas) await waitFor(`replica ${r.name} to apply batch ${last}`, async () => (await applied(r)) >= last, 120_000);
  const tables = await withClient(p.sourceUrl, replicatedTables);
  for (const r of p.replicas) {
    const report = await withClient(p.sourceUrl, (s) => withClient(r.url, (c) => verifyTables(s, c, tables)));
    expect(report.differences, `replica ${r.name} differs`).toEqual([]);
    expect(report.rowsCompared).toBeGreaterThan(0);
    const depths = await queueDepths(p.sqs, r);
    expect(depths.deadLetter, `replica ${r.name} parked messages`).toBe(0);
  }
}

/** Sets the password of the connected role (ALTER ROLE takes no parameters: the server quotes it with format %L). */
async function setOwnPassword(client: pg.Client, password: string): Promise<void> {
  await client.query(`SELECT set_config('pgfanout_test.password', $1, false)`, [password]);
  await client.query(`DO $$ BEGIN EXECUTE format('ALTER ROLE %I PASSWORD %L', current_user, current_setting('pgfanout_test.password')); END $$`);
}

async function appliedThrough(client: pg.Client): Promise<number> {
  const { rows } = await client.query<{ applied: string | null }>('SELECT max(applied_batch_id)::text AS applied FROM pgfanout.replica_position');
  return Number(rows[0]?.applied ?? 0);
}

describe('recovery at the deployed settings (visibility 1800 s, function timeout 300 s, batch 10, maxReceiveCount 1000)', () => {
  it('a replica server down for 60 s under load has applied everything committed before it returned within 2 simulated minutes; the other replica never stops', async () => {
    const { p, clock } = await startDeployed(10);
    const [a, b] = p.replicas as [RunningReplica, RunningReplica];
    const stopLoad = new AbortController();
    const load = runDemoWorkload(p.sourceUrl, { clients: 2, signal: stopLoad.signal, truncatePercent: 0 });
    try {
      await waitFor('replica a to apply a batch', async () => (await applied(a)) > 0, 60_000);
      await a.server!.halt('immediate');
      const down = clock.now();
      const bBefore = await applied(b);
      await clock.until(down + 60 * SECOND);
      const bDuring = await applied(b);
      await a.server!.restart();
      const back = clock.now();
      const committedBeforeReturn = await finished(p);
      await waitFor('replica a to apply what was committed before it returned', async () => (await applied(a)) >= committedBeforeReturn, 120_000);
      const recoveredAfter = (clock.now() - back) / SECOND;
      expect(bDuring, 'replica b kept applying while a was down').toBeGreaterThan(bBefore);
      expect(recoveredAfter, `replica a caught up ${recoveredAfter} simulated seconds after it returned`).toBeLessThanOrEqual(120);
      expect(a.handler.applier.failureCounts.transient).toBeGreaterThan(0);
      expect(a.handler.applier.failureCounts.permanent).toBe(0);
    } finally {
      stopLoad.abort();
      await load;
    }
    await expectConverged(p);
  }, 300_000);

  it('a wrong replica password for 10 simulated minutes, then fixed: converges and parks nothing', async () => {
    const { p, clock } = await startDeployed(50);
    const [a] = p.replicas as [RunningReplica, RunningReplica];
    await runDemoWorkload(p.sourceUrl, { clients: 2, transactionsPerClient: 20, truncatePercent: 0 });
    await waitFor('replica a to apply a batch', async () => (await applied(a)) > 0, 60_000);
    // A connection opened now stays usable after the password changes (authentication is at connect).
    const admin = new pg.Client(a.url);
    await admin.connect();
    try {
      await setOwnPassword(admin, 'not-the-password-the-applier-has');
      // End the applier's open connection, as a failover or a restarted Lambda environment would.
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgfanout-applier-a'`);
      const wrongFrom = clock.now();
      await runDemoWorkload(p.sourceUrl, { clients: 2, transactionsPerClient: 30, truncatePercent: 0 });
      await clock.until(wrongFrom + 10 * MINUTE);
      expect(a.handler.applier.lastFailure?.message ?? '').toMatch(/password authentication failed/);
      expect(await finished(p)).toBeGreaterThan(await appliedThrough(admin));
      await setOwnPassword(admin, decodeURIComponent(new URL(a.url).password));
    } finally {
      await admin.end();
    }
    await expectConverged(p);
    expect(a.handler.applier.failureCounts.permanent).toBe(0);
  }, 300_000);

  it('a poison message stops its replica where it is, is counted as a permanent failure, and after the fix the stream resumes in order within 5 simulated minutes, with nothing parked and no redrive', async () => {
    const { p, clock } = await startDeployed(50);
    const [a, b] = p.replicas as [RunningReplica, RunningReplica];
    for (const url of [p.sourceUrl, a.url, b.url]) await withClient(url, (c) => c.query('CREATE TABLE demo.items (id int PRIMARY KEY, note text)'));
    await withClient(p.sourceUrl, (c) => c.query(`SELECT pgfanout.add_table('demo.items'::regclass)`));
    // Replica a refuses one value: the batch holding it is a poison message there.
    await withClient(a.url, (c) => c.query(`ALTER TABLE demo.items ADD CONSTRAINT no_poison CHECK (note <> 'poison') NOT VALID`));
    await withClient(p.sourceUrl, async (c) => {
      for (let id = 1; id <= 40; id++) await c.query('INSERT INTO demo.items VALUES ($1, $2)', [id, id === 10 ? 'poison' : `row ${id}`]);
    });
    await waitFor('replica b to apply every row', async () => (await withClient(b.url, (c) => c.query('SELECT count(*)::int AS n FROM demo.items'))).rows[0].n === 40, 60_000);
    await waitFor('replica a to stop at the poison row', () => a.handler.applier.failureCounts.permanent > 0, 60_000);
    const stuckAt = await applied(a);
    const stuckSince = clock.now();
    await clock.until(stuckSince + 20 * MINUTE);
    // Nothing from the poison's batch or after it applied: only rows committed before it (the
    // publisher may have put some of rows 1-9 into the poison's batch), and the position stayed.
    const rowsWhileStuck = await withClient(a.url, (c) => c.query<{ ids: number[] }>(`SELECT coalesce(array_agg(id ORDER BY id), '{}'::int[]) AS ids FROM demo.items`));
    const ids = rowsWhileStuck.rows[0]!.ids;
    expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => i + 1));
    expect(ids.length).toBeLessThan(10);
    expect(await applied(a)).toBe(stuckAt);
    expect(a.handler.applier.lastFailure).toMatchObject({ kind: 'permanent', message: expect.stringMatching(/no_poison/) });
    expect((await queueDepths(p.sqs, a)).deadLetter).toBe(0);
    // The fix: the replica accepts the value. The head is retried at most every 5 minutes.
    await withClient(a.url, (c) => c.query('ALTER TABLE demo.items DROP CONSTRAINT no_poison'));
    const fixedAt = clock.now();
    const last = await finished(p);
    await waitFor('replica a to resume after the fix', async () => (await applied(a)) >= last, 120_000);
    const resumedAfter = (clock.now() - fixedAt) / SECOND;
    expect(resumedAfter, `replica a resumed ${resumedAfter} simulated seconds after the fix`).toBeLessThanOrEqual(300 + 60);
    await expectConverged(p);
  }, 300_000);

  it('pgfanout pause holds a replica for 6 simulated hours while the source writes (nothing received, nothing parked); resume applies everything in order', async () => {
    const { p, clock } = await startDeployed(600);
    const [a, b] = p.replicas as [RunningReplica, RunningReplica];
    vi.stubEnv('AWS_ENDPOINT_URL', p.endpointUrl);
    try {
      const unknown = await runCli('pause', '--replica', 'nosuch');
      expect(unknown.code).not.toBe(0);
      expect(unknown.err).toMatch(/replica nosuch: queue pgfanout-local-nosuch\.fifo not found/);

      const paused = await runCli('pause', '--replica', 'a');
      expect(paused.err).toBe('');
      expect(paused.code).toBe(0);
      expect(paused.out).toMatch(/replica a: paused \(event source mapping .* Disabling\)/);
      // A poll already waiting when the mapping was disabled ends within its 20 s long poll.
      await clock.until(clock.now() + 30 * SECOND);
      const receivedBefore = a.runnerStats()?.messagesReceived ?? 0;
      const appliedBefore = await applied(a);
      const from = clock.now();
      await runDemoWorkload(p.sourceUrl, { clients: 2, transactionsPerClient: 40, truncatePercent: 0 });
      await waitFor('replica b to apply the writes', async () => (await applied(b)) >= (await finished(p)) && (await finished(p)) > appliedBefore, 60_000);
      await clock.until(from + 6 * 60 * MINUTE);
      expect(a.runnerStats()?.messagesReceived ?? 0).toBe(receivedBefore);
      expect(await applied(a)).toBe(appliedBefore);
      const waiting = await queueDepths(p.sqs, a);
      expect(waiting.visible).toBeGreaterThan(0);
      expect(waiting.deadLetter).toBe(0);

      const resumed = await runCli('resume', '--replica', 'a');
      expect(resumed.code).toBe(0);
      expect(resumed.out).toMatch(/replica a: resumed \(event source mapping .* Enabling\)/);
      await expectConverged(p);
    } finally {
      vi.unstubAllEnvs();
    }
  }, 300_000);
});
