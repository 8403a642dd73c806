/**
 * Benchmark of the applier on realistic small batches: `node bench/apply-mixed/run.ts [transactionsPerClient]`.
 *
 * On one local PostgreSQL 18 server, the demo workload (local/workload.ts: 4 clients mixing
 * INSERT, UPDATE and DELETE over demo.customers, demo.orders and demo.audit) runs on a source
 * database while batches are taken as fast as a publisher takes them under load, and encoded
 * into messages kept in memory. Then the same messages are applied, one `applyMessage` per
 * message as the applier does, to fresh replica databases (each a copy of one template) by:
 *   - `before`: the apply core as of commit BASELINE_COMMIT (extracted with `git archive`),
 *     i.e. the baseline, measured in the same run;
 *   - `in-order`: the current core with `planning: 'in-order'` (the batch's order kept);
 *   - `per-table`: the current core with its default planning;
 * all with `session_replication_role = replica`, in rounds whose order rotates (the machine is
 * shared: compare the ratios, not the rates). (The origin-guard fallback is not measured: with
 * foreign keys enforced, the demo schema's ON DELETE CASCADE deletes orders on the replica
 * before their own DELETE arrives.) Every
 * replica database is compared with the source after its run. The query count is the
 * number of round trips to the replica. Writes results.json and results.md beside this file.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { encodeBatch, readBatch } from '#core/source';
import type { ApplyOptions, ApplyResult } from '#core/replica';
import { installReplica, installSource } from '#ops/install.ts';
import { LocalPostgres } from '#local/postgres.ts';
import { DEMO_SCHEMA_SQL, DEMO_TABLES, runDemoWorkload } from '#local/workload.ts';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
/**
 * The apply core before per-table planning, the catalog cache and the combined fixed statements;
 * PGFANOUT_BENCH_BASELINE names another commit to measure against (e.g. the previous planner).
 */
const BASELINE_COMMIT = process.env.PGFANOUT_BENCH_BASELINE ?? 'c222e37';
const transactionsPerClient = Number(process.argv[2] ?? 1500);
const ROUNDS = 3;
const CLIENTS = 4;

type Apply = (client: pg.ClientBase, body: string, options?: ApplyOptions) => Promise<ApplyResult>;

/** The baseline's applyMessage, loaded from a copy of functions/core at BASELINE_COMMIT. */
async function baselineApply(dir: string): Promise<Apply> {
  await run('sh', ['-c', `git -C "$1" archive "$2" functions/core | tar -x -C "$3"`, 'sh', root, BASELINE_COMMIT, dir]);
  await symlink(join(root, 'node_modules'), join(dir, 'node_modules'));
  // The apply core moved to functions/core/replica/ after c222e37.
  const layouts = [join(dir, 'functions', 'core', 'replica', 'apply.ts'), join(dir, 'functions', 'core', 'apply.ts')];
  const entry = layouts.find((path) => existsSync(path)) as string;
  const module = (await import(pathToFileURL(entry).href)) as { applyMessage: Apply };
  return module.applyMessage;
}

async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(url);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Runs the workload on `url` and records its batches the way the publisher reads them. */
async function record(url: string, sourceId: string): Promise<{ bodies: string[]; changes: number; transactions: number; batches: number }> {
  const bodies: string[] = [];
  let changes = 0;
  let batches = 0;
  let done = false;
  const workload = runDemoWorkload(url, { clients: CLIENTS, transactionsPerClient, truncatePercent: 0.2 }).finally(() => {
    done = true;
  });
  await withClient(url, async (client) => {
    for (;;) {
      const finished = done;
      const { rows } = await client.query<{ batch_id: string; prev_batch_id: string; event_count: string }>(
        'SELECT batch_id::text, prev_batch_id::text, event_count::text FROM pgfanout.next_batch()',
      );
      const batch = rows[0];
      if (batch) {
        for await (const m of encodeBatch({ sourceId, batchId: batch.batch_id, prevBatchId: batch.prev_batch_id, eventCount: batch.event_count }, readBatch(client, batch.batch_id))) {
          bodies.push(m.body);
          changes += m.changes;
        }
        await client.query('SELECT pgfanout.finish_batch($1)', [batch.batch_id]);
        batches++;
      } else if (finished) break;
      else await new Promise((resolve) => setTimeout(resolve, 2));
    }
  });
  return { bodies, changes, transactions: await workload, batches };
}

/** A digest of every demo table's rows (sorted by their text), to compare a replica with the source. */
async function digest(client: pg.ClientBase): Promise<string> {
  const parts: string[] = [];
  for (const table of DEMO_TABLES) {
    const { rows } = await client.query<{ n: string; h: string | null }>(`SELECT count(*)::text AS n, md5(string_agg(t::text, E'\\n' ORDER BY t::text)) AS h FROM ${table} AS t`);
    parts.push(`${table}:${rows[0]?.n}:${rows[0]?.h}`);
  }
  return parts.join(' ');
}

interface Variant {
  readonly name: string;
  readonly apply: Apply;
  readonly options: ApplyOptions;
}

interface Measurement {
  readonly variant: string;
  readonly round: number;
  readonly seconds: number;
  readonly changes: number;
  readonly changesPerSecond: number;
  readonly queries: number;
  readonly queriesPerMessage: number;
  /** Queries per message by kind (see queryKind). */
  readonly perMessage: Record<string, number>;
}

/** What a query sent to the replica is for, from its text. */
function queryKind(query: unknown): string {
  const text = typeof query === 'string' ? query : ((query as { text?: string }).text ?? '');
  if (/^\s*(BEGIN|COMMIT|ROLLBACK)\b/.test(text) && !/SET LOCAL/.test(text)) return 'transaction';
  if (/SET LOCAL|set_config/.test(text)) return 'session';
  if (/pgfanout\.replica_(lock|advance|applied_batch)\b/.test(text)) return 'position';
  if (/pgfanout\.replica_(stage|staged|clear)_?/.test(text)) return 'staging';
  if (/pg_catalog\.pg_(class|index)/.test(text)) return 'catalog';
  return 'changes';
}

const server = await LocalPostgres.start({ major: 18 });
const work = await mkdtemp(join(tmpdir(), 'pgfanout-apply-mixed-'));
try {
  const admin = new pg.Client(server.url());
  // Stopping the server at the end (or after a failure) ends this connection: not an error of its own.
  admin.on('error', () => undefined);
  await admin.connect();
  await admin.query('CREATE DATABASE source');
  await admin.query('CREATE DATABASE replica_template');
  const sourceUrl = server.url('source');
  const sourceId = await withClient(sourceUrl, async (c) => {
    await installSource(c);
    await c.query(DEMO_SCHEMA_SQL);
    for (const t of DEMO_TABLES) await c.query('SELECT pgfanout.add_table($1::regclass)', [t]);
    return (await c.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]?.id as string;
  });
  await withClient(server.url('replica_template'), async (c) => {
    await installReplica(c);
    await c.query(DEMO_SCHEMA_SQL);
  });

  console.log(`recording the demo workload (${CLIENTS} clients × ${transactionsPerClient} transactions)…`);
  const recorded = await record(sourceUrl, sourceId);
  const expected = await withClient(sourceUrl, digest);
  console.log(`${recorded.transactions} transactions, ${recorded.changes} changes, ${recorded.batches} batches, ${recorded.bodies.length} messages`);

  const current = (await import('#core/replica')).applyMessage as Apply;
  const before = await baselineApply(work);
  const variants: Variant[] = [
    { name: 'before', apply: before, options: { replicationRole: 'replica' } },
    { name: 'in-order', apply: current, options: { replicationRole: 'replica', planning: 'in-order' } },
    { name: 'per-table', apply: current, options: { replicationRole: 'replica', planning: 'per-table' } },
  ];

  const measurements: Measurement[] = [];
  let databases = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < variants.length; k++) {
      const variant = variants[(k + round) % variants.length] as Variant;
      const name = `replica_${++databases}`;
      await admin.query(`CREATE DATABASE ${name} TEMPLATE replica_template`);
      const client = new pg.Client(server.url(name));
      client.on('error', () => undefined);
      await client.connect();
      let queries = 0;
      const kinds: Record<string, number> = {};
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        queries++;
        const kind = queryKind(args[0]);
        kinds[kind] = (kinds[kind] ?? 0) + 1;
        return query(...args);
      };
      let changes = 0;
      const started = performance.now();
      for (const body of recorded.bodies) changes += (await variant.apply(client, body, variant.options)).changes;
      const seconds = (performance.now() - started) / 1000;
      const got = await digest(client);
      await client.end();
      await admin.query(`DROP DATABASE ${name}`);
      if (got !== expected) throw new Error(`${variant.name}: the replica differs from the source\n  source:  ${expected}\n  replica: ${got}`);
      const perMessage = Object.fromEntries(Object.entries(kinds).map(([k, n]) => [k, n / recorded.bodies.length]));
      const m = { variant: variant.name, round, seconds, changes, changesPerSecond: changes / seconds, queries, queriesPerMessage: queries / recorded.bodies.length, perMessage };
      measurements.push(m);
      console.log(`round ${round + 1}: ${variant.name}: ${Math.round(m.changesPerSecond)} changes/s, ${m.queriesPerMessage.toFixed(1)} queries per message ${JSON.stringify(perMessage)}`);
    }
  }
  await admin.end();

  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
  const summary = variants.map((v) => {
    const own = measurements.filter((m) => m.variant === v.name);
    // Ratio to the baseline of the same round, so load that changed between rounds cancels out.
    const ratios = own.map((m) => (measurements.find((b) => b.round === m.round && b.variant === 'before') as Measurement).seconds / m.seconds);
    return {
      variant: v.name,
      changesPerSecond: median(own.map((m) => m.changesPerSecond)),
      queriesPerMessage: (own[0] as Measurement).queriesPerMessage,
      queriesPerChange: (own[0] as Measurement).queries / recorded.changes,
      perMessage: (own[0] as Measurement).perMessage,
      speedupVsBefore: median(ratios),
    };
  });
  const results = {
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, postgres: 18 },
    baselineCommit: BASELINE_COMMIT,
    workload: { clients: CLIENTS, transactionsPerClient, ...recorded, bodies: undefined, changesPerMessage: recorded.changes / recorded.bodies.length },
    rounds: ROUNDS,
    summary,
    measurements,
  };
  await writeFile(join(here, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  const md = `# Apply benchmark: small mixed batches

\`node bench/apply-mixed/run.ts ${transactionsPerClient}\`, ${results.date}, ${results.machine.cpus} × ${results.machine.cpuModel}, Node ${process.version}, PostgreSQL 18 (one local server). Shared machine: other work ran at the same time, so compare the ratios, each to the baseline measured in the same round.

The demo workload (${CLIENTS} clients, ${recorded.transactions.toLocaleString('en-US')} transactions mixing INSERT, UPDATE, DELETE over demo.customers, demo.orders and demo.audit) recorded as a publisher under load reads it: ${recorded.batches.toLocaleString('en-US')} batches, ${recorded.bodies.length.toLocaleString('en-US')} messages, ${recorded.changes.toLocaleString('en-US')} changes (${results.workload.changesPerMessage.toFixed(1)} per message). The same messages are applied with one \`applyMessage\` each to a fresh copy of the replica schema, ${ROUNDS} rounds in rotating order; every replica is compared with the source afterwards. \`before\` is the apply core as of commit ${BASELINE_COMMIT}.

| variant | changes/s (median) | vs. before (median of per-round ratios) | queries per message | of which change statements | queries per change |
| --- | ---: | ---: | ---: | ---: | ---: |
${summary.map((s) => `| ${s.variant} | ${Math.round(s.changesPerSecond).toLocaleString('en-US')} | ${s.speedupVsBefore.toFixed(2)} | ${s.queriesPerMessage.toFixed(1)} | ${(s.perMessage.changes ?? 0).toFixed(1)} | ${s.queriesPerChange.toFixed(2)} |`).join('\n')}

- All variants run with \`session_replication_role = replica\` (foreign-key triggers off), where changes to different tables commute. \`in-order\` has the per-connection catalog and the fewer fixed statements but keeps the batch's order; \`per-table\` also groups changes per table.
- A query is one round trip to the replica. Per message, by kind: ${summary.map((s) => `${s.variant}: ${Object.entries(s.perMessage).map(([k, n]) => `${k} ${n.toFixed(1)}`).join(', ')}`).join('; ')}.
`;
  await writeFile(join(here, 'results.md'), md);
  console.log(md);
} finally {
  await server.stop();
  await rm(work, { recursive: true, force: true });
}
