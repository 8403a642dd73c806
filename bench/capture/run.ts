/**
 * What capture costs the application: pgbench TPC-B throughput on one source server with
 *
 *   (a) no capture,
 *   (b) pgfanout capture on the four pgbench tables, publisher not waiting (no NOTIFY),
 *   (c) pgfanout capture with a waiting publisher (one NOTIFY per transaction, drained by
 *       a LISTENing connection),
 *   (d) the ancestors' approach: a row trigger doing pg_notify('x', row_to_json(NEW)::text),
 *       drained by a LISTENing connection.
 *
 * The configurations run interleaved, in a rotating order, for --pairs rounds; every round
 * gives each configuration one run of --duration seconds, so each round is a set of pairs
 * against (a) measured minutes apart at most. Reported: median TPS per configuration, the
 * ratio of each median to (a)'s, and the median of the per-round ratios. Each run starts
 * from the same state: pgbench's own vacuum, an emptied event log and a CHECKPOINT.
 * Each capture run is checked: the event log must hold exactly 4 events per transaction,
 * and (c)/(d) must have delivered their notifications.
 *
 * A second phase profiles the trigger where TPS cannot: the server backend's CPU time
 * (/proc/<pid>/schedstat) per TPC-B transaction, run as a server-side loop of --profile-txns
 * committed transactions, interleaved over --profile-rounds rounds, for: no trigger; an
 * empty PL/pgSQL row trigger (the floor of any PL/pgSQL trigger); a plain PL/pgSQL trigger
 * inserting hstore(OLD)/hstore(NEW) into a log table (the usual hand-written audit trigger);
 * pgfanout's capture. CPU time counts only work done, so other load on the machine
 * disturbs it far less than it disturbs throughput.
 *
 * Usage: node bench/capture/run.ts [--duration 25] [--pairs 5] [--scale 10] [--clients 4]
 *                                  [--profile-rounds 9] [--profile-txns 1000]
 * Writes bench/capture/results.json and bench/capture/results.md.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import pg from 'pg';
import { quoteIdent } from '../../functions/core/pg/sql.ts';
import { installSource } from '../../functions/ops/install.ts';
import { LocalPostgres } from '#local/postgres.ts';

const exec = promisify(execFile);
const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '25' },
    pairs: { type: 'string', default: '5' },
    scale: { type: 'string', default: '10' },
    clients: { type: 'string', default: '4' },
    'profile-rounds': { type: 'string', default: '9' },
    'profile-txns': { type: 'string', default: '1000' },
    out: { type: 'string', default: here('.') },
  },
});
const DURATION = positive('duration', values.duration);
const PAIRS = positive('pairs', values.pairs);
const SCALE = positive('scale', values.scale);
const CLIENTS = positive('clients', values.clients);
const PROFILE_ROUNDS = positive('profile-rounds', values['profile-rounds']);
const PROFILE_TXNS = positive('profile-txns', values['profile-txns']);
const THREADS = Math.min(2, CLIENTS);
const TABLES = ['pgbench_accounts', 'pgbench_branches', 'pgbench_tellers', 'pgbench_history'] as const;
/** TPC-B: three UPDATEs and one INSERT per transaction, each one captured event. */
const EVENTS_PER_TRANSACTION = 4;
const SERVER_SETTINGS = { shared_buffers: '256MB', max_wal_size: '4GB', checkpoint_timeout: '30min' } as const;

type Config = 'a' | 'b' | 'c' | 'd';
const CONFIGS: readonly Config[] = ['a', 'b', 'c', 'd'];
const LABELS: Record<Config, string> = {
  a: 'no capture',
  b: 'pgfanout capture, publisher not waiting (no NOTIFY)',
  c: 'pgfanout capture, publisher waiting (NOTIFY per transaction)',
  d: 'ancestors: row trigger pg_notify(row_to_json(NEW))',
};
const CHANNEL: Partial<Record<Config, string>> = { c: 'pgfanout', d: 'x' };

type Ablation = 'no-exact-check' | 'no-rename-fallback' | 'no-origin-guard' | 'unguarded-hstore';
type Variant = 'none' | 'noop' | 'plain' | 'pgfanout' | Ablation;
const VARIANTS: readonly Variant[] = ['none', 'noop', 'plain', 'pgfanout', 'no-exact-check', 'no-rename-fallback', 'no-origin-guard', 'unguarded-hstore'];
const VARIANT_LABELS: Record<Variant, string> = {
  none: 'no trigger',
  noop: 'empty PL/pgSQL row trigger',
  plain: 'plain PL/pgSQL trigger inserting hstore(OLD), hstore(NEW) into a log table',
  pgfanout: 'pgfanout capture',
  'no-exact-check': 'pgfanout capture without the per-row exact-output-settings check (ablation)',
  'no-rename-fallback': 'pgfanout capture without the whole-old-row fallback for renamed identity columns (ablation)',
  'no-origin-guard': 'pgfanout capture without the pgfanout.origin check (ablation)',
  'unguarded-hstore': 'pgfanout capture calling hstore(NEW) directly instead of hstore(pgfanout.as_record(NEW)), open to overloads (ablation)',
};
/**
 * Ablations: pgfanout's own capture functions with one safeguard cut out, to show what each
 * costs. Each is a rewrite of the installed definition; a rewrite that matches nothing fails
 * the run rather than measure the unchanged function.
 */
const ABLATIONS: Record<Ablation, { readonly functions: readonly string[]; readonly pattern: RegExp; readonly replacement: string }> = {
  'no-exact-check': {
    functions: ['capture_key', 'capture_full'],
    pattern: /\(pg_catalog\.left\(pg_catalog\.current_setting\('DateStyle'\), 3\)[\s\S]*?OPERATOR\(pg_catalog\.>=\) 1\)/g,
    replacement: 'true',
  },
  'no-rename-fallback': {
    functions: ['capture_key'],
    pattern:
      /CASE WHEN coalesce\(new_row, (\S+)\.hstore\(pgfanout\.as_record\(OLD\)\)\) OPERATOR\(\S+\.\?&\) TG_ARGV\s+THEN (\S+\.slice\(\S+\.hstore\(pgfanout\.as_record\(OLD\)\), TG_ARGV\)) ELSE \S+\.hstore\(pgfanout\.as_record\(OLD\)\) END/g,
    replacement: '$2',
  },
  'no-origin-guard': {
    functions: ['capture_key', 'capture_full'],
    pattern: /WHEN pg_catalog\.current_setting\('pgfanout\.origin', true\) OPERATOR\(pg_catalog\.<>\) '' THEN 'origin'/g,
    replacement: "WHEN false THEN 'origin'",
  },
  'unguarded-hstore': {
    functions: ['capture_key', 'capture_full'],
    pattern: /\.hstore\(pgfanout\.as_record\((NEW|OLD)\)\)/g,
    replacement: '.hstore($1)',
  },
};
/** The comparison triggers of the profile phase (pgfanout's own come from add_table). */
const PROFILE_SQL = `
CREATE SCHEMA bench;
CREATE TABLE bench.log (id bigserial, txid xid8 DEFAULT pg_current_xact_id(), at timestamptz DEFAULT clock_timestamp(),
                        op text, tbl text, old_row hstore, new_row hstore);
CREATE INDEX ON bench.log (txid);
CREATE FUNCTION bench.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE FUNCTION bench.plain() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bench.log (op, tbl, old_row, new_row)
  VALUES (TG_OP, TG_TABLE_NAME, CASE WHEN TG_OP <> 'INSERT' THEN hstore(OLD) END, CASE WHEN TG_OP <> 'DELETE' THEN hstore(NEW) END);
  RETURN NULL;
END $$;`;
/**
 * One TPC-B transaction per iteration, committed, as pgbench's built-in script does it. The
 * transaction count and scale come through the settings bench.txns and bench.scale (a DO
 * block takes no parameters).
 */
const TPCB_LOOP = `
DO $$
DECLARE
  n int := current_setting('bench.txns')::int;
  scale int := current_setting('bench.scale')::int;
  a int; b int; t int; d int; bal int;
BEGIN
  FOR i IN 1..n LOOP
    a := 1 + (random() * (scale * 100000 - 1))::int; b := 1 + (random() * (scale - 1))::int;
    t := 1 + (random() * (scale * 10 - 1))::int; d := (random() * 10000)::int - 5000;
    UPDATE pgbench_accounts SET abalance = abalance + d WHERE aid = a;
    SELECT abalance INTO bal FROM pgbench_accounts WHERE aid = a;
    UPDATE pgbench_tellers SET tbalance = tbalance + d WHERE tid = t;
    UPDATE pgbench_branches SET bbalance = bbalance + d WHERE bid = b;
    INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (t, b, a, d, current_timestamp);
    COMMIT;
  END LOOP;
END $$`;

interface ProfileRun {
  readonly round: number;
  readonly variant: Variant;
  readonly cpuMicrosPerTransaction: number;
}

interface Run {
  readonly round: number;
  readonly config: Config;
  readonly tps: number;
  readonly transactions: number;
  readonly events: number | null;
  readonly notifications: number | null;
}

function positive(name: string, text: string | undefined): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer; received ${JSON.stringify(text)}`);
  return n;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** The configurations in the order round `round` runs them (rotated, so no one always goes first). */
function order(round: number): Config[] {
  return CONFIGS.map((_, i) => CONFIGS[(i + round) % CONFIGS.length] as Config);
}

const server = await LocalPostgres.start({ major: 15, settings: SERVER_SETTINGS });
const adminUrl = server.url('postgres');
const url = server.url('bench');
const parsed = new URL(url);
const pgbenchEnv = { ...process.env, PGPASSWORD: decodeURIComponent(parsed.password) };
const pgbenchConn = ['-h', parsed.hostname, '-p', parsed.port, '-U', decodeURIComponent(parsed.username)];
const pgbenchRun = ['-c', String(CLIENTS), '-j', String(THREADS), '-T', String(DURATION)];
const startedAt = new Date();
const loadBefore = loadavg();

async function pgbench(args: readonly string[]): Promise<string> {
  const { stdout } = await exec(server.program('pgbench'), [...pgbenchConn, ...args, 'bench'], { env: pgbenchEnv, maxBuffer: 16 << 20 });
  return stdout;
}

const admin = new pg.Client({ connectionString: url });
const listener = new pg.Client({ connectionString: url });
const runs: Run[] = [];
const profile: ProfileRun[] = [];
try {
  await withClient(adminUrl, (c) => c.query('CREATE DATABASE bench'));
  await pgbench(['-i', '-q', '-s', String(SCALE)]);
  await admin.connect();
  await installSource(admin);
  await admin.query(`
    CREATE FUNCTION public.ancestor_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      PERFORM pg_notify('x', row_to_json(NEW)::text);
      RETURN NULL;
    END $$`);
  await listener.connect();
  let notifications = 0;
  listener.on('notification', () => {
    notifications += 1;
  });
  for (const channel of new Set(Object.values(CHANNEL))) await listener.query(`LISTEN ${quoteIdent(channel)}`);

  const configure = async (config: Config): Promise<void> => {
    for (const t of TABLES) {
      const { rows } = await admin.query<{ added: boolean }>(
        "SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = 'pgfanout_capture') AS added",
        [t],
      );
      if (rows[0]?.added) await admin.query('SELECT pgfanout.remove_table($1::regclass)', [t]);
      await admin.query(`DROP TRIGGER IF EXISTS ancestor_notify ON ${quoteIdent(t)}`);
    }
    if (config === 'b' || config === 'c') {
      for (const t of TABLES) await admin.query('SELECT pgfanout.add_table($1::regclass)', [t]);
      await admin.query('SELECT pgfanout.publisher_waiting($1)', [config === 'c']);
    }
    if (config === 'd') {
      for (const t of TABLES) {
        await admin.query(`CREATE TRIGGER ancestor_notify AFTER INSERT OR UPDATE ON ${quoteIdent(t)} FOR EACH ROW EXECUTE FUNCTION public.ancestor_notify()`);
      }
    }
    await admin.query('TRUNCATE pgfanout.event_log_0, pgfanout.event_log_1, pgfanout.event_log_2');
    await admin.query('CHECKPOINT');
  };

  for (let round = 0; round < PAIRS; round++) {
    for (const config of order(round)) {
      await configure(config);
      notifications = 0;
      const out = await pgbench(pgbenchRun);
      const tps = Number(/^tps = ([\d.]+)/m.exec(out)?.[1]);
      const transactions = Number(/number of transactions actually processed: (\d+)/.exec(out)?.[1]);
      if (!Number.isFinite(tps) || !Number.isFinite(transactions)) throw new Error(`could not read pgbench's result:\n${out}`);
      let events: number | null = null;
      if (config === 'b' || config === 'c') {
        // pgbench's own pre-run TRUNCATE of pgbench_history is captured too; count row events.
        events = Number((await admin.query<{ n: string }>("SELECT count(*) AS n FROM pgfanout.event_log WHERE ev_op <> 'TRUNCATE'")).rows[0]?.n);
        if (events !== transactions * EVENTS_PER_TRANSACTION) {
          throw new Error(`run ${config} captured ${events} events for ${transactions} transactions; expected ${transactions * EVENTS_PER_TRANSACTION}`);
        }
      }
      let received: number | null = null;
      if (CHANNEL[config]) {
        // Drain: wait until the listener has every notification, or give up after 30 s.
        const expected = config === 'c' ? transactions : transactions * EVENTS_PER_TRANSACTION;
        const deadline = Date.now() + 30_000;
        while (notifications < expected && Date.now() < deadline) await listener.query('SELECT 1');
        received = notifications;
        if (received < expected) throw new Error(`run ${config}: ${received} notifications arrived for ${transactions} transactions; expected ${expected}`);
      }
      runs.push({ round, config, tps, transactions, events, notifications: received });
      console.log(`round ${round + 1}/${PAIRS} ${config}: ${tps.toFixed(1)} tps (${transactions} transactions)`);
    }
  }

  // Profile: CPU time of one backend per TPC-B transaction, per trigger variant.
  await configure('a');
  await admin.query(PROFILE_SQL);
  await admin.query('SET synchronous_commit = off');
  await admin.query("SELECT set_config('bench.txns', $1, false), set_config('bench.scale', $2, false)", [String(PROFILE_TXNS), String(SCALE)]);
  const pid = (await admin.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid as number;
  const cpuNanos = () => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
  const originals = new Map<string, string>();
  for (const fn of ['capture_key', 'capture_full']) {
    const { rows } = await admin.query<{ def: string }>('SELECT pg_get_functiondef(to_regprocedure($1)) AS def', [`pgfanout.${fn}()`]);
    originals.set(fn, rows[0]?.def as string);
  }
  const defineCapture = async (ablation: Ablation | undefined) => {
    for (const [fn, original] of originals) {
      let def = original;
      if (ablation && ABLATIONS[ablation].functions.includes(fn)) {
        def = original.replace(ABLATIONS[ablation].pattern, ABLATIONS[ablation].replacement);
        if (def === original) throw new Error(`ablation ${ablation} found nothing to cut out of pgfanout.${fn}(); update its pattern`);
      }
      await admin.query(def);
    }
  };
  const setVariant = async (variant: Variant) => {
    await configure('a');
    for (const t of TABLES) await admin.query(`DROP TRIGGER IF EXISTS bench_trigger ON ${quoteIdent(t)}`);
    if (variant === 'pgfanout' || variant in ABLATIONS) {
      await defineCapture(variant === 'pgfanout' ? undefined : (variant as Ablation));
      for (const t of TABLES) await admin.query('SELECT pgfanout.add_table($1::regclass)', [t]);
    }
    if (variant === 'noop' || variant === 'plain') {
      for (const t of TABLES) {
        await admin.query(`CREATE TRIGGER bench_trigger AFTER INSERT OR UPDATE OR DELETE ON ${quoteIdent(t)} FOR EACH ROW EXECUTE FUNCTION bench.${quoteIdent(variant)}()`);
      }
    }
    await admin.query('TRUNCATE bench.log');
  };
  for (let round = 0; round < PROFILE_ROUNDS; round++) {
    for (let i = 0; i < VARIANTS.length; i++) {
      const variant = VARIANTS[(i + round) % VARIANTS.length] as Variant;
      await setVariant(variant);
      const before = cpuNanos();
      await admin.query(TPCB_LOOP);
      const cpuMicrosPerTransaction = (cpuNanos() - before) / 1000 / PROFILE_TXNS;
      profile.push({ round, variant, cpuMicrosPerTransaction });
    }
    console.log(`profile round ${round + 1}/${PROFILE_ROUNDS} done`);
  }
  await setVariant('none');
  await defineCapture(undefined);
} finally {
  await listener.end().catch(() => undefined);
  await admin.end().catch(() => undefined);
  await server.stop();
}

const tpsOf = (config: Config) => runs.filter((r) => r.config === config).map((r) => r.tps);
const medians = Object.fromEntries(CONFIGS.map((c) => [c, median(tpsOf(c))])) as Record<Config, number>;
const pairedRatios = Object.fromEntries(
  CONFIGS.map((c) => [
    c,
    median(
      Array.from({ length: PAIRS }, (_, round) => {
        const run = runs.find((r) => r.round === round && r.config === c) as Run;
        const base = runs.find((r) => r.round === round && r.config === 'a') as Run;
        return run.tps / base.tps;
      }),
    ),
  ]),
) as Record<Config, number>;
const ratioOfMedians = Object.fromEntries(CONFIGS.map((c) => [c, medians[c] / medians.a])) as Record<Config, number>;
const cpuOf = (v: Variant) => profile.filter((r) => r.variant === v).map((r) => r.cpuMicrosPerTransaction);
const cpuMedian = Object.fromEntries(VARIANTS.map((v) => [v, median(cpuOf(v))])) as Record<Variant, number>;
const cpuMin = Object.fromEntries(VARIANTS.map((v) => [v, Math.min(...cpuOf(v))])) as Record<Variant, number>;
const target = 0.85;
const cpu = cpus();
const command = `node bench/capture/run.ts --duration ${DURATION} --pairs ${PAIRS} --scale ${SCALE} --clients ${CLIENTS}`;
const pgbenchCommand = `pgbench ${pgbenchRun.join(' ')} bench   (TPC-B, built-in script, simple query protocol; initialised with pgbench -i -s ${SCALE})`;
const machine = {
  cpu: cpu[0]?.model ?? 'unknown',
  cores: cpu.length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  kernel: readFileSync('/proc/version', 'utf8').split(' ').slice(0, 3).join(' '),
  loadAverageBefore: loadBefore.map((x) => Number(x.toFixed(2))),
  loadAverageAfter: loadavg().map((x) => Number(x.toFixed(2))),
  note: 'shared with other workloads while running; interleaved runs and medians are the defence against that noise',
};
const serverInfo = { major: 15, binaries: server.program(''), settings: SERVER_SETTINGS };
const result = {
  startedAt: startedAt.toISOString(),
  finishedAt: new Date().toISOString(),
  command,
  pgbench: pgbenchCommand,
  machine,
  server: serverInfo,
  configs: LABELS,
  runs,
  medianTps: medians,
  ratioOfMedians,
  medianPairedRatio: pairedRatios,
  profile: {
    method: `server backend CPU time (/proc/<pid>/schedstat) per TPC-B transaction, ${PROFILE_TXNS} committed transactions per run in a server-side loop, synchronous_commit off, ${PROFILE_ROUNDS} interleaved rounds`,
    variants: VARIANT_LABELS,
    runs: profile,
    medianCpuMicrosPerTransaction: cpuMedian,
    minCpuMicrosPerTransaction: cpuMin,
  },
  target: { config: 'b', minimumRatio: target, met: ratioOfMedians.b >= target && pairedRatios.b >= target },
};
writeFileSync(`${values.out}/results.json`, `${JSON.stringify(result, null, 2)}\n`);

const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
const md = `# Capture overhead: pgbench TPC-B

Produced by \`${command}\` (started ${result.startedAt}, finished ${result.finishedAt}).

- Workload: \`${pgbenchCommand}\`
- Server: PostgreSQL 15 (Debian binaries, ${serverInfo.binaries}), one local server started by LocalPostgres,
  settings ${Object.entries(SERVER_SETTINGS).map(([k, v]) => `${k}=${v}`).join(', ')}, everything else default (fsync on, synchronous_commit on).
- Machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.kernel}; load average before ${machine.loadAverageBefore.join(' / ')}, after ${machine.loadAverageAfter.join(' / ')} (${machine.note}).
- Method: ${PAIRS} rounds; each round runs every configuration once for ${DURATION} s, in a rotating order; before each run pgbench vacuums its tables, the event log is emptied and a CHECKPOINT is taken. Capture runs are checked to have logged exactly ${EVENTS_PER_TRANSACTION} events per transaction, NOTIFY runs to have delivered every notification to the listener.

| configuration | median TPS | ratio of medians to (a) | median of per-round ratios | runs (TPS) |
| --- | ---: | ---: | ---: | --- |
${CONFIGS.map((c) => `| (${c}) ${LABELS[c]} | ${medians[c].toFixed(1)} | ${pct(ratioOfMedians[c])} | ${pct(pairedRatios[c])} | ${tpsOf(c).map((t) => t.toFixed(0)).join(', ')} |`).join('\n')}

Target: (b) keeps at least ${pct(target)} of (a): **${result.target.met ? 'met' : 'missed'}** (${pct(ratioOfMedians.b)} by medians, ${pct(pairedRatios.b)} by paired ratios).

## Where the cost is: server CPU per transaction

${result.profile.method}. The extra CPU is what each trigger adds to one TPC-B transaction
(three UPDATEs and one INSERT, so four trigger calls).

| variant | median CPU µs / transaction | min | extra over no trigger (median) |
| --- | ---: | ---: | ---: |
${VARIANTS.map((v) => `| ${VARIANT_LABELS[v]} | ${cpuMedian[v].toFixed(1)} | ${cpuMin[v].toFixed(1)} | ${(cpuMedian[v] - cpuMedian.none).toFixed(1)} |`).join('\n')}
`;
writeFileSync(`${values.out}/results.md`, md);
console.log(md);

async function withClient<T>(connectionString: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}
