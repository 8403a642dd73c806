/**
 * `pgfanout`: install the SQL, add tables, run the whole pipeline locally, show status,
 * verify replicas, run the publisher. Every command has `--help`.
 */
import { GetQueueUrlCommand } from '@aws-sdk/client-sqs';
import type pg from 'pg';
import { installReplica, installSource } from '#core';
import { resourceNames } from '#core/config.ts';
import { awsClients, queueDepths } from '../../local/aws.ts';
import { parse, parseReplicaArg, requireOption, UsageError } from './args.ts';
import { connect } from './db.ts';
import { verifyTables, type TableRef } from '../ops/verify.ts';
import { parseTableName } from '../ops/sql.ts';

interface Command {
  readonly summary: string;
  readonly usage: string;
  run(args: readonly string[]): Promise<number>;
}

const COMMANDS: Record<string, Command> = {
  local: {
    summary: 'run the whole pipeline on this machine (databases, SNS/SQS endpoint, publisher, appliers)',
    usage: `pgfanout local [options]

Starts a source and two replica PostgreSQL servers (or uses --source/--replica URLs),
an SNS/SQS endpoint (or AWS_ENDPOINT_URL, e.g. LocalStack), the topic and one FIFO
queue + dead-letter queue per replica, installs pgfanout, starts the publisher and one
Lambda-style applier per replica, runs a workload and shows a status line per replica.
Ctrl-C stops everything cleanly.

Options:
  --source URL            use an existing source database
  --replica NAME=URL      use an existing replica database (repeatable)
  --tables T1,T2          tables to replicate (default: the workload's tables)
  --workload KIND         none | demo | pgbench (default: demo)
  --duration SECONDS      stop by itself after this long (default: run until Ctrl-C)
  --verify                at the end, compare source and every replica row by row;
                          exit 1 on any difference
  --major N               PostgreSQL major of the local servers: 13, 15 or 18 (default 18)
  -h, --help              show this help`,
    run: async (args) => (await import('../../local/command.ts')).localCommand(args),
  },
  install: {
    summary: 'install or upgrade pgfanout\'s SQL on a source or a replica database',
    usage: `pgfanout install (--source URL | --replica URL)

Installs the pgfanout schema (or upgrades an older version; re-running is harmless).
  --source URL    install the capture side (triggers, event log, batch protocol)
  --replica URL   install the replica side (position table, staging)`,
    run: async (args) => {
      const { values } = parse(args, { source: { type: 'string' }, replica: { type: 'string' }, help: { type: 'boolean', short: 'h' } });
      if (!values.source === !values.replica) throw new UsageError('give exactly one of --source URL and --replica URL');
      const client = await connect((values.source ?? values.replica) as string, values.source ? 'source' : 'replica');
      try {
        const version = values.source ? await installSource(client) : await installReplica(client);
        console.log(`pgfanout ${values.source ? 'source' : 'replica'} side installed (${String(version)})`);
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
        for (const t of tables) {
          await client.query('SELECT pgfanout.add_table(format($1, $2::text, $3::text)::regclass)', ['%I.%I', t.schema, t.table]).catch((err: { code?: string; message?: string }) => {
            if (err.code === '42P01') throw new Error(`table ${t.schema}.${t.table} does not exist on the source`);
            if (err.code === '3F000' || err.code === '42883') throw new Error('pgfanout is not installed on the source: run pgfanout install --source URL first');
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

Queue depths are read from SQS (AWS_ENDPOINT_URL for a local endpoint or LocalStack)
for queues named P-NAME.fifo and P-NAME-dlq.fifo (default prefix: pgfanout-local).`,
    run: async (args) => {
      const { values } = parse(args, {
        source: { type: 'string' },
        replica: { type: 'string', multiple: true },
        prefix: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      });
      const report = await statusReport(requireOption(values.source, '--source URL'), (values.replica ?? []).map(parseReplicaArg), { prefix: values.prefix ?? 'pgfanout-local' });
      if (values.json) console.log(JSON.stringify(report, null, 2));
      else console.log(formatStatus(report));
      return 0;
    },
  },
  verify: {
    summary: 'compare tables on the source and replicas row by row',
    usage: `pgfanout verify --source URL --replica NAME=URL [--replica …] [--tables T1,T2]

Compares every replicated table (or --tables) row by row; prints the differences and
exits 1 when there are any. Compare while changes flow only after they have settled.`,
    run: async (args) => {
      const { values } = parse(args, {
        source: { type: 'string' },
        replica: { type: 'string', multiple: true },
        tables: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      });
      const replicas = (values.replica ?? []).map(parseReplicaArg);
      if (replicas.length === 0) throw new UsageError('name at least one --replica NAME=URL');
      const source = await connect(requireOption(values.source, '--source URL'), 'source');
      try {
        const tables = values.tables ? values.tables.split(',').map(parseTableName) : await replicatedTables(source);
        let different = 0;
        for (const r of replicas) {
          const replica = await connect(r.url, `replica ${r.name}`);
          try {
            const report = await verifyTables(source, replica, tables);
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
  publisher: {
    summary: 'run the publisher in this process (what the Fargate task runs)',
    usage: `pgfanout publisher

Configured by environment variables: PGFANOUT_SOURCE_URL (or PGFANOUT_SOURCE_SECRET),
PGFANOUT_TOPIC_ARN, PGFANOUT_HEALTH_PORT, PGFANOUT_TICK_MS, PGFANOUT_MAX_MESSAGE_BYTES,
PGFANOUT_LOG_LEVEL; AWS_ENDPOINT_URL for a local endpoint or LocalStack.`,
    run: async () => {
      await import('../publisher/main.ts');
      return new Promise<number>(() => {});
    },
  },
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((k) => k.length));
  return `pgfanout: fan PostgreSQL changes out to many replicas through SNS FIFO and SQS FIFO

Usage: pgfanout COMMAND [options]   (pgfanout COMMAND --help for a command's options)

Commands:
${Object.entries(COMMANDS)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}`;
}

/** Runs the command line; returns the exit code. */
export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(help());
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    console.error(`pgfanout: unknown command "${name}"\n\n${help()}`);
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

/** The tables the source captures, from pgfanout.show_tables(). */
export async function replicatedTables(source: pg.ClientBase): Promise<TableRef[]> {
  const { rows } = await source.query<{ schema: string; table: string }>(
    'SELECT table_schema AS schema, table_name AS table FROM pgfanout.show_tables() ORDER BY 1, 2',
  );
  return rows;
}

export interface StatusReport {
  readonly source: { readonly sourceId: string; readonly lastBatchId: string | null; readonly finishedBatchId: string | null; readonly pendingEvents: string | null; readonly oldestPendingSeconds: number | null };
  readonly replicas: readonly {
    readonly name: string;
    readonly appliedBatchId: string | null;
    /** The batch and part being staged (a batch too large for one message), if any. */
    readonly staging: string | null;
    /** Seconds since the source time of the last applied batch; 0 when nothing is pending. */
    readonly lagSeconds: number | null;
    readonly behindBatches: number | null;
    readonly queue: { readonly visible: number; readonly inFlight: number; readonly deadLetter: number } | null;
    readonly error?: string;
  }[];
}

export interface StatusWhere {
  /** Prefix of the queue names. */
  readonly prefix: string;
  /** SNS/SQS endpoint; default AWS_ENDPOINT_URL, else AWS. */
  readonly endpoint?: string;
}

export async function statusReport(sourceUrl: string, replicas: readonly { name: string; url: string }[], where: StatusWhere): Promise<StatusReport> {
  const prefix = where.prefix;
  const source = await connect(sourceUrl, 'source');
  let sourceStatus: StatusReport['source'];
  try {
    const id = (await source.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]?.id as string;
    const { rows } = await source.query<{ last_batch_id: string | null; finished_batch_id: string | null; pending_events: string | null; oldest: Date | null }>(
      'SELECT last_batch_id::text, finished_batch_id::text, pending_events::text, oldest_pending_event_time AS oldest FROM pgfanout.status()',
    );
    const s = rows[0];
    sourceStatus = {
      sourceId: id,
      lastBatchId: s?.last_batch_id ?? null,
      finishedBatchId: s?.finished_batch_id ?? null,
      pendingEvents: s?.pending_events ?? null,
      oldestPendingSeconds: s?.oldest ? (Date.now() - s.oldest.getTime()) / 1000 : null,
    };
  } finally {
    await source.end();
  }
  const endpoint = where.endpoint ?? process.env.AWS_ENDPOINT_URL;
  const { sqs } = awsClients(endpoint ? { endpoint } : {});
  const out: StatusReport['replicas'][number][] = [];
  try {
    for (const r of replicas) {
      let appliedBatchId: string | null = null;
      let lagSeconds: number | null = null;
      let staging: string | null = null;
      let error: string | undefined;
      try {
        const client = await connect(r.url, `replica ${r.name}`);
        try {
          const { rows } = await client.query<{ applied: string; staging: string | null; lag: number | null }>(
            `SELECT applied_batch_id::text AS applied,
                    CASE WHEN state = 'staging' THEN batch_id || ' part ' || part END AS staging,
                    extract(epoch FROM clock_timestamp() - source_time)::float8 AS lag
               FROM pgfanout.replica_position WHERE source_id = $1`,
            [sourceStatus.sourceId],
          );
          appliedBatchId = rows[0]?.applied ?? null;
          staging = rows[0]?.staging ?? null;
          lagSeconds = rows[0]?.lag ?? null;
        } finally {
          await client.end();
        }
      } catch (err) {
        error = (err as Error).message;
      }
      let queue: StatusReport['replicas'][number]['queue'] = null;
      try {
        const names = resourceNames(prefix, r.name);
        const [q, d] = await Promise.all([
          sqs.send(new GetQueueUrlCommand({ QueueName: names.queue })),
          sqs.send(new GetQueueUrlCommand({ QueueName: names.deadLetterQueue })),
        ]);
        queue = await queueDepths(sqs, { name: r.name, queueUrl: q.QueueUrl as string, queueArn: '', deadLetterQueueUrl: d.QueueUrl as string });
      } catch {
        queue = null;
      }
      const finished = sourceStatus.finishedBatchId ?? sourceStatus.lastBatchId;
      out.push({
        name: r.name,
        appliedBatchId,
        staging,
        lagSeconds: appliedBatchId !== null && appliedBatchId === (sourceStatus.finishedBatchId ?? sourceStatus.lastBatchId) && sourceStatus.pendingEvents === '0' ? 0 : lagSeconds,
        behindBatches: finished !== null ? Number(finished) - Number(appliedBatchId ?? 0) : null,
        queue,
        ...(error ? { error } : {}),
      });
    }
  } finally {
    sqs.destroy();
  }
  return { source: sourceStatus, replicas: out };
}

export function formatStatus(report: StatusReport): string {
  const s = report.source;
  const lines = [
    `source ${s.sourceId}: last batch ${s.lastBatchId ?? '-'}, published up to ${s.finishedBatchId ?? '-'}, pending events ${s.pendingEvents ?? '0'}` +
      (s.oldestPendingSeconds !== null ? `, oldest pending ${s.oldestPendingSeconds.toFixed(1)} s` : ''),
  ];
  for (const r of report.replicas) {
    const q = r.queue ? `queue ${r.queue.visible} (+${r.queue.inFlight} in flight), dead-letter ${r.queue.deadLetter}` : 'queue unknown';
    const lag = r.lagSeconds === null ? 'lag ?' : `lag ${r.lagSeconds.toFixed(1)} s`;
    const staging = r.staging ? `, staging batch ${r.staging}` : '';
    lines.push(`replica ${r.name}: applied batch ${r.appliedBatchId ?? '-'}${staging}, ${lag}, behind ${r.behindBatches ?? '?'} batch(es), ${q}${r.error ? `, error: ${r.error}` : ''}`);
  }
  return lines.join('\n');
}

export function formatVerify(name: string, report: Awaited<ReturnType<typeof verifyTables>>): string {
  if (report.differences.length === 0) return `replica ${name}: ${report.tables} table(s), ${report.rowsCompared} row(s): identical`;
  const lines = [`replica ${name}: ${report.differences.length} of ${report.tables} table(s) differ`];
  for (const d of report.differences) {
    lines.push(`  ${d.table}: ${d.missing} row(s) missing on the replica, ${d.extra} extra`);
    for (const e of d.examples) lines.push(`    ${e.kind === 'missing' ? '-' : '+'} ${e.row.length > 200 ? `${e.row.slice(0, 200)}…` : e.row}`);
  }
  return lines.join('\n');
}
