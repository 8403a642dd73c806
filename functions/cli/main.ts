/**
 * `pgfanout`: the command table (install the SQL, add tables, show status, verify, redrive,
 * bootstrap, run the publisher) and the loop that runs one. Every command has `--help`. The
 * dev-only `local` command is registered by `bin/pgfanout.ts`, never imported from here.
 */
import { connect } from '#core/pg/db.ts';
import { parseTableName } from '#core/pg/table-name.ts';
import { CAPTURE_MODES, installReplica, installSource, type CaptureMode } from '../ops/install.ts';
import { replicatedTables, statusProblems, statusReport } from '../ops/status.ts';
import { verifyTables, waitForReplicaPosition } from '../ops/verify.ts';
import { awsClients } from '../ops/aws.ts';
import { setReplicaEnabled } from '../ops/pause.ts';
import { REPLICA_NAME_PATTERN } from '#core/config.ts';
import { DEFAULT_LOCAL_PREFIX, integerOption, parse, parseReplicaArg, queuePrefix, requireOption, UsageError } from './args.ts';
import { formatStatus, formatVerify } from './format.ts';
import { REDRIVE_USAGE, redriveCommand } from './redrive.ts';
import { parseIntegerIn } from '#core/integer.ts';

/** One `pgfanout` command: a line for the command list, its `--help` text, and what it does. */
export interface Command {
  readonly summary: string;
  readonly usage: string;
  run(args: readonly string[]): Promise<number>;
}

/** The commands that work against any deployment (local, LocalStack or AWS). */
export const COMMANDS: Readonly<Record<string, Command>> = {
  install: {
    summary: 'install or upgrade pgfanout\'s SQL on a source or a replica database',
    usage: `pgfanout install (--source URL [--capture trigger|wal] | --replica URL)

Installs the pgfanout schema (or upgrades an older version; re-running is harmless).
  --source URL    install the capture side (triggers, event log, batch protocol)
  --capture MODE  how the source captures, chosen before any table is added: trigger (the
                  default: capture triggers, any server) or wal (a logical replication slot
                  read with pgoutput: needs wal_level = logical, on RDS/Aurora
                  rds.logical_replication = 1, and an installing role with REPLICATION)
  --replica URL   install the replica side (position table, staging)`,
    run: async (args) => {
      const { values } = parse(args, { source: { type: 'string' }, replica: { type: 'string' }, capture: { type: 'string' }, help: { type: 'boolean', short: 'h' } });
      if (!values.source === !values.replica) throw new UsageError('give exactly one of --source URL and --replica URL');
      const capture = values.capture;
      if (capture !== undefined && !values.source) throw new UsageError('--capture applies to a source: give --source URL');
      if (capture !== undefined && !(CAPTURE_MODES as readonly string[]).includes(capture)) {
        throw new UsageError(`--capture ${JSON.stringify(capture)} is not a capture mode; allowed: ${CAPTURE_MODES.join(', ')}`);
      }
      const client = await connect((values.source ?? values.replica) as string, values.source ? 'source' : 'replica');
      try {
        const version = values.source ? await installSource(client, capture ? { capture: capture as CaptureMode } : {}) : await installReplica(client);
        console.log(`pgfanout ${values.source ? 'source' : 'replica'} side installed (${String(version)})`);
        if (values.source) {
          const { rows } = await client.query<{ mode: string; slot: string | null }>(
            "SELECT pgfanout.capture_mode() AS mode, CASE WHEN pgfanout.capture_mode() = 'wal' THEN pgfanout.wal_slot_name() END AS slot",
          );
          const mode = rows[0];
          if (mode) console.log(`capture mode: ${mode.mode}${mode.slot ? ` (publication pgfanout, logical replication slot ${mode.slot})` : ''}`);
        }
      } finally {
        await client.end();
      }
      return 0;
    },
  },
  'add-table': {
    summary: 'start capturing changes of tables on the source',
    usage: `pgfanout add-table --source URL TABLE [TABLE…]

TABLE is schema.table or table (schema public); quote names as in SQL ("My Table").`,
    run: async (args) => {
      const { values, positionals } = parse(args, { source: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, true);
      const url = requireOption(values.source, '--source URL');
      if (positionals.length === 0) throw new UsageError('name at least one table');
      const tables = positionals.map(parseTableName);
      const client = await connect(url, 'source');
      try {
        const installed = await client.query<{ ok: boolean }>("SELECT to_regprocedure('pgfanout.add_table(regclass)') IS NOT NULL AS ok");
        if (installed.rows[0]?.ok !== true) throw new Error('pgfanout is not installed on the source: run pgfanout install --source URL first');
        for (const t of tables) {
          await client.query('SELECT pgfanout.add_table(format($1, $2::text, $3::text)::regclass)', ['%I.%I', t.schema, t.table]).catch((err: { code?: string; message?: string }) => {
            if (err.code === '42P01') throw new Error(`table ${t.schema}.${t.table} does not exist on the source`);
            if (err.code === '3F000') throw new Error(`table ${t.schema}.${t.table}: schema ${t.schema} does not exist on the source`);
            throw new Error(`${t.schema}.${t.table}: ${err.message ?? String(err)}`);
          });
          console.log(`capturing ${t.schema}.${t.table}`);
        }
      } finally {
        await client.end();
      }
      return 0;
    },
  },
  status: {
    summary: 'show the publisher\'s and each replica\'s position, lag and queue depths',
    usage: `pgfanout status --source URL [--replica NAME=URL…] [--prefix P] [--json]

Shows the source's batches (last created, published, events not yet in a batch) and, per
replica, the last batch it applied (or the large batch it is staging part by part), its
lag behind the source, and its queue depths, read from SQS (AWS_ENDPOINT_URL for a local
endpoint or LocalStack) for the queues P-NAME.fifo and P-NAME-dlq.fifo.

--prefix P is the deployment's prefix; it defaults to pgfanout-local only when
AWS_ENDPOINT_URL is set (the local endpoint or LocalStack), and is required against AWS.
Exits 1 when a replica cannot be read, a queue cannot be read, or a dead-letter queue
holds messages.`,
    run: async (args) => {
      const { values } = parse(args, {
        source: { type: 'string' },
        replica: { type: 'string', multiple: true },
        prefix: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      });
      const sourceUrl = requireOption(values.source, '--source URL');
      const replicas = (values.replica ?? []).map(parseReplicaArg);
      const report = await statusReport(sourceUrl, replicas, { prefix: replicas.length > 0 ? queuePrefix(values.prefix) : (values.prefix ?? DEFAULT_LOCAL_PREFIX) });
      if (values.json) console.log(JSON.stringify(report, null, 2));
      else console.log(formatStatus(report));
      const problems = statusProblems(report);
      for (const p of problems) console.error(`pgfanout status: ${p}`);
      return problems.length === 0 ? 0 : 1;
    },
  },
  pause: {
    summary: 'stop a replica\'s applier (its changes wait in its queue) while you fix or bootstrap the replica',
    usage: `pgfanout pause --replica NAME [--replica …] [--prefix P]

Disables the replica applier's event source mapping (Lambda UpdateEventSourceMapping):
Lambda stops polling the replica's queue, invocations already running finish, and its
changes wait in the queue (retention 14 days; the queue-age alarm fires long before). Nothing
is received while paused, so nothing counts towards maxReceiveCount. \`pgfanout resume\`
starts it again where it stopped, in order.
The mapping is found by the replica queue's ARN (queue P-NAME.fifo; --prefix P is required
against AWS, pgfanout-local by default only with AWS_ENDPOINT_URL set for \`pgfanout local\`'s
endpoint or LocalStack). Needs
sqs:GetQueueUrl, sqs:GetQueueAttributes, lambda:ListEventSourceMappings and
lambda:UpdateEventSourceMapping.`,
    run: (args) => setEnabledCommand(args, false),
  },
  resume: {
    summary: 'start a paused replica\'s applier again, where it stopped',
    usage: `pgfanout resume --replica NAME [--replica …] [--prefix P]

Enables the replica applier's event source mapping again: Lambda resumes polling, and the
replica applies what waited in its queue, in order.
The mapping is found by the replica queue's ARN (queue P-NAME.fifo; --prefix P is required
against AWS, pgfanout-local by default only with AWS_ENDPOINT_URL set for \`pgfanout local\`'s
endpoint or LocalStack). Needs
sqs:GetQueueUrl, sqs:GetQueueAttributes, lambda:ListEventSourceMappings and
lambda:UpdateEventSourceMapping.`,
    run: (args) => setEnabledCommand(args, true),
  },
  verify: {
    summary: 'compare tables on the source and replicas (chunked hashes by key, rows only where they differ)',
    usage: `pgfanout verify --source URL --replica NAME=URL [--replica …] [options]

Compares every replicated table (or --tables) on the source and each replica, prints
the differing rows (missing, extra or changed, by key) and exits 1 when there are any.

Tables with a primary key (or a unique index over NOT NULL columns) are compared in key
ranges: each server computes a row count and a hash per range, and only ranges that
differ are narrowed down to rows. Tables without one are compared by a full sorted merge
of every row. Each side reads one REPEATABLE READ snapshot.

While changes flow, the source and a replica are read at two different moments, and rows
changed in between show as differences. --at-position first waits until each replica has
applied every batch the source had published at the start; rows changed after that can
still differ, so compare a quiet source for an exact answer.

Options:
  --tables T1,T2        tables to compare (default: every table the source captures)
  --chunk-rows N        rows per compared range (default 10000)
  --full                compare every table by the full merge
  --at-position         wait for each replica to reach the source's published position first
  --timeout SECONDS     how long --at-position waits (default 300)
  --examples N          differing rows printed per table (default 10; all are counted)
  --quiet               no progress lines on stderr`,
    run: async (args) => {
      const { values } = parse(args, {
        source: { type: 'string' },
        replica: { type: 'string', multiple: true },
        tables: { type: 'string' },
        'chunk-rows': { type: 'string' },
        full: { type: 'boolean' },
        'at-position': { type: 'boolean' },
        timeout: { type: 'string' },
        examples: { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      });
      const replicas = (values.replica ?? []).map(parseReplicaArg);
      if (replicas.length === 0) throw new UsageError('name at least one --replica NAME=URL');
      const sourceUrl = requireOption(values.source, '--source URL');
      const chunkRows = integerOption(values['chunk-rows'], '--chunk-rows', 10_000, 1);
      const timeoutSeconds = integerOption(values.timeout, '--timeout', 300, 0);
      const maxExamples = integerOption(values.examples, '--examples', 10, 0);
      const source = await connect(sourceUrl, 'source');
      try {
        const tables = values.tables ? values.tables.split(',').map(parseTableName) : await replicatedTables(source);
        let different = 0;
        for (const r of replicas) {
          const replica = await connect(r.url, `replica ${r.name}`);
          try {
            if (values['at-position']) {
              const at = await waitForReplicaPosition(source, replica, {
                timeoutMs: timeoutSeconds * 1000,
                onWait: (w) => progressLine(values.quiet, `replica ${r.name}: waiting for batch ${w.targetBatchId} (applied ${w.appliedBatchId})`),
              });
              progressLine(values.quiet, `replica ${r.name}: at batch ${at.appliedBatchId} (source had published ${at.targetBatchId})`, true);
            }
            const report = await verifyTables(source, replica, tables, {
              chunkRows,
              maxExamples,
              method: values.full ? 'full' : 'auto',
              onProgress: (p) =>
                progressLine(values.quiet, `replica ${r.name}: ${p.table}: ${p.rowsDone} rows${p.chunks === undefined ? '' : ` (range ${p.chunksDone} of ${p.chunks})`}`),
              onTable: () => progressLine(values.quiet, '', true),
            });
            different += report.differences.length;
            console.log(formatVerify(r.name, report));
          } finally {
            await replica.end();
          }
        }
        return different === 0 ? 0 : 1;
      } finally {
        await source.end();
      }
    },
  },
  redrive: {
    summary: 'list a replica\'s dead-letter queue with why each message fails, move it back, or skip a batch',
    usage: REDRIVE_USAGE,
    run: redriveCommand,
  },
  bootstrap: {
    summary: 'copy the source\'s tables into a new or empty replica under one snapshot and record where its applier starts',
    usage: `pgfanout bootstrap --source URL --replica NAME=URL [--tables T1,T2] [--jobs N] [--force] [--pause --prefix P]

Brings a new or empty replica in line while the source keeps writing: takes a snapshot of
the source, closes a batch boundary B exactly at it (pgfanout.mark_snapshot_batch), copies
every replicated table (or --tables) under that snapshot with COPY, streamed, and records
that the replica holds batches up to B. Its applier lets messages wait in the queue until
then, skips everything up to B and applies from B+1 on. Missing replica tables are created
from the source's definitions (columns, defaults, NOT NULL, primary key and unique
constraints); existing ones must have the source's columns and be empty. An interrupted
bootstrap is resumed by running it again. Progress goes to stderr.

Options:
  --source URL          the source database
  --replica NAME=URL    the replica database (NAME as in the stack's replica list)
  --tables T1,T2        copy only these captured tables (default: all of them)
  --jobs N              tables copied at once (default 1)
  --force               empty replica tables that hold rows; re-bootstrap a replica that
                        already follows the source
  --pause               pause the replica's applier (its event source mapping, found by
                        the queue P-NAME.fifo) once the snapshot is taken and resume it when
                        the bootstrap ends, so its messages wait unreceived however long the
                        copy takes (without it they wait as NOT_BOOTSTRAPPED retries, every
                        15 minutes at most)
  --prefix P            the deployment's prefix, with --pause (default pgfanout-local)
  -h, --help            show this help`,
    run: async (args) => {
      const { values } = parse(args, {
        source: { type: 'string' },
        replica: { type: 'string' },
        pause: { type: 'boolean', default: false },
        prefix: { type: 'string' },
        tables: { type: 'string' },
        jobs: { type: 'string', default: '1' },
        force: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      });
      const sourceUrl = requireOption(values.source, '--source URL');
      const replica = parseReplicaArg(requireOption(values.replica, '--replica NAME=URL'));
      const jobs = parseIntegerIn(values.jobs ?? '', 1, 32);
      if (jobs === undefined) throw new UsageError(`--jobs must be a whole number from 1 to 32, got "${values.jobs}"`);
      const tables = values.tables?.split(',').map((t) => {
        try {
          return parseTableName(t);
        } catch (err) {
          throw new UsageError(`--tables: ${(err as Error).message}`);
        }
      });
      const { bootstrapReplica, formatBootstrap } = await import('../ops/bootstrap/index.ts');
      if (values.prefix !== undefined && !values.pause) throw new UsageError('--prefix goes with --pause');
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const endpoint = process.env.AWS_ENDPOINT_URL;
      const clients = values.pause ? awsClients(endpoint ? { endpoint } : {}) : undefined;
      const prefix = values.prefix ?? 'pgfanout-local';
      try {
        const result = await bootstrapReplica({
          sourceUrl,
          replicaName: replica.name,
          replicaUrl: replica.url,
          ...(clients
            ? {
                pause: async () => {
                  await setReplicaEnabled(clients, prefix, replica.name, false);
                  console.error(`paused replica ${replica.name}'s applier for the bootstrap`);
                },
                resume: async () => {
                  await setReplicaEnabled(clients, prefix, replica.name, true);
                  console.error(`resumed replica ${replica.name}'s applier`);
                },
              }
            : {}),
          ...(tables ? { tables } : {}),
          jobs,
          force: values.force === true,
          log: (line) => console.error(line),
          signal: stop.signal,
        });
        console.log(formatBootstrap(replica.name, result));
        return 0;
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        clients?.sns.destroy();
        clients?.sqs.destroy();
        clients?.lambda.destroy();
      }
    },
  },
  publisher: {
    summary: 'run the publisher in this process (what the Fargate task runs)',
    usage: `pgfanout publisher

Configured by environment variables: PGFANOUT_SOURCE_URL (or PGFANOUT_SOURCE_SECRET),
PGFANOUT_TOPIC_ARN, PGFANOUT_SIGNING_KEY_SECRET (the secret holding the message signing
key), PGFANOUT_HEALTH_PORT, PGFANOUT_TICK_MS, PGFANOUT_MAX_MESSAGE_BYTES,
PGFANOUT_LOG_LEVEL; AWS_ENDPOINT_URL for a local endpoint or LocalStack.`,
    run: async () => {
      await import('../publisher/main.ts');
      return new Promise<number>(() => {});
    },
  },
};

function help(commands: Readonly<Record<string, Command>>): string {
  const width = Math.max(...Object.keys(commands).map((k) => k.length));
  return `pgfanout: fan PostgreSQL changes out to many replicas through SNS FIFO and SQS FIFO

Usage: pgfanout COMMAND [options]   (pgfanout COMMAND --help for a command's options)

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}`;
}

/** Runs the command line with `commands` (the production ones unless told otherwise); returns the exit code. */
export async function main(argv: readonly string[], commands: Readonly<Record<string, Command>> = COMMANDS): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help(commands));
    return name ? 0 : 2;
  }
  const command = commands[name];
  if (!command) {
    console.error(`pgfanout: unknown command "${name}"\n\n${help(commands)}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(command.usage);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`pgfanout ${name}: ${err.message}\n\n${command.usage}`);
      return 2;
    }
    console.error(`pgfanout ${name}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

let lastProgress = Date.now();
let progressShown = false;

/**
 * A progress line on stderr, at most once a second and only for work that has run a second or
 * more (`done`: end the current line, if any, and start timing again).
 */
function progressLine(quiet: boolean | undefined, text: string, done = false): void {
  if (quiet) return;
  const now = Date.now();
  if (done) {
    if (text !== '') process.stderr.write(`${progressShown && process.stderr.isTTY ? '\r\u001b[2K' : ''}${text}\n`);
    else if (progressShown && process.stderr.isTTY) process.stderr.write('\n');
    progressShown = false;
    lastProgress = now;
    return;
  }
  if (now - lastProgress < 1000) return;
  lastProgress = now;
  progressShown = true;
  process.stderr.write(process.stderr.isTTY ? `\r\u001b[2K${text}` : `${text}\n`);
}

async function setEnabledCommand(args: readonly string[], enabled: boolean): Promise<number> {
  const { values } = parse(args, {
    replica: { type: 'string', multiple: true },
    prefix: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  const names = values.replica ?? [];
  if (names.length === 0) throw new UsageError('--replica NAME is required (the name in the stack\'s replica list)');
  for (const name of names) {
    if (!REPLICA_NAME_PATTERN.test(name)) throw new UsageError(`--replica takes a replica NAME (${REPLICA_NAME_PATTERN.source}), got "${name}"`);
  }
  const prefix = queuePrefix(values.prefix);
  const endpoint = process.env.AWS_ENDPOINT_URL;
  const clients = awsClients(endpoint ? { endpoint } : {});
  try {
    for (const name of names) {
      const states = await setReplicaEnabled(clients, prefix, name, enabled);
      for (const m of states) console.log(`replica ${name}: ${enabled ? 'resumed' : 'paused'} (event source mapping ${m.uuid} of ${m.functionArn}: ${m.state})`);
    }
    return 0;
  } finally {
    clients.sns.destroy();
    clients.sqs.destroy();
    clients.lambda.destroy();
  }
}
