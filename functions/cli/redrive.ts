/**
 * `pgfanout redrive`: shows what sits in a replica's dead-letter queue and why (a dry run of each
 * message on the replica), moves it back to the replica's queue (`--move`), or gives up one batch
 * on that replica (`--skip BATCH --yes`) and compares the tables it touched.
 */
import type { LambdaClient } from '@aws-sdk/client-lambda';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type pg from 'pg';
import { awsClients } from '../ops/aws.ts';
import { integerOption, parse, parseReplicaArg, queuePrefix, requireOption, UsageError } from './args.ts';
import { connect } from '#core/pg/db.ts';
import { setReplicaEnabled } from '../ops/pause.ts';
import {
  listDeadLetters,
  findQueues,
  moveBack,
  moveBacklogBehind,
  planSkip,
  replicaApplySettings,
  skipBatch,
  tableName,
  type DeadLetterListing,
  type ParkedMessage,
  type ReplicaQueuePair,
} from '../ops/redrive.ts';
import type { ApplyOptions } from '#core/replica';
import { verifyTables, waitForReplicaPosition, type VerifyReport } from '../ops/verify.ts';

/** The command's help text. */
export const REDRIVE_USAGE = `pgfanout redrive --replica NAME=URL [--prefix P] [--skip BATCH --source URL --yes] [--move [--force]]

Lists the messages in replica NAME's dead-letter queue (P-NAME-dlq.fifo; --prefix P is
required against AWS, pgfanout-local by default only with AWS_ENDPOINT_URL set for a local
endpoint or LocalStack) in stream order, each
with its source, batch and part and what applying it on the replica would do now, from a
dry run (every check, then rolled back): the error that parked it, or that it applies now.
Listing receives each message with a short visibility timeout and puts it back at once; it
never deletes. SQS FIFO shows at most 10 messages per source at a time: the first ones.

  --move            fix the cause first, then move every parked message back in stream
                    order: the replica's applier is paused (its event source mapping
                    disabled), the messages waiting in its queue are moved behind the parked
                    ones, everything goes back (SQS StartMessageMoveTask), and the applier is
                    resumed. Interrupted, the replica stays paused: run it again. Refused
                    while the first parked message of a source still fails its dry run,
                    unless --force
  --skip BATCH      give up batch BATCH on this replica: it is recorded as applied without
                    being applied (pgfanout.replica_skip: only the next batch the replica
                    expects) and its messages are deleted from the dead-letter queue; the
                    batches after it then apply. What the batch changed is lost on this
                    replica: the tables it touched are compared with the source (--source)
                    once the replica has caught up, and the differences printed
  --yes             confirm --skip (without it, --skip only says what it would do)
                    --skip with --move: skip the batch, then move the rest back
  --source URL      the source database, for the comparison after --skip
  --source-id ID    the batch's source, when the dead-letter queue holds several
  --timeout SECONDS how long --move, and the catch-up before the comparison, wait (default 300)
  --limit N         messages to list at most (default 100)`;

/** Runs `pgfanout redrive`; returns the exit code. */
export async function redriveCommand(args: readonly string[]): Promise<number> {
  const { values } = parse(args, {
    replica: { type: 'string', multiple: true },
    prefix: { type: 'string' },
    move: { type: 'boolean' },
    force: { type: 'boolean' },
    skip: { type: 'string' },
    yes: { type: 'boolean' },
    source: { type: 'string' },
    'source-id': { type: 'string' },
    timeout: { type: 'string' },
    limit: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  const replicas = (values.replica ?? []).map(parseReplicaArg);
  if (replicas.length !== 1) throw new UsageError(`name exactly one --replica NAME=URL (got ${replicas.length})`);
  if (values.force && !values.move) throw new UsageError('--force goes with --move');
  if (values.yes && values.skip === undefined) throw new UsageError('--yes confirms --skip BATCH; there is nothing to confirm');
  const timeoutMs = integerOption(values.timeout, '--timeout', 300, 0) * 1000;
  const limit = integerOption(values.limit, '--limit', 100, 1);
  const target = replicas[0] as { name: string; url: string };
  const sourceUrl = values.skip !== undefined ? requireOption(values.source, '--source URL (the tables the skipped batch touched are compared with it)') : undefined;

  const prefix = queuePrefix(values.prefix);
  const endpoint = process.env.AWS_ENDPOINT_URL;
  const { sqs, sns, lambda } = awsClients(endpoint ? { endpoint } : {});
  sns.destroy();
  const replica = await connect(target.url, `replica ${target.name}`);
  try {
    const queues = await findQueues(sqs, prefix, target.name);
    // Every dry run answers for this replica's applier: its sources, schema changes, tables.
    const apply = await replicaApplySettings(lambda, queues);
    if (values.skip !== undefined) {
      const skipOptions = { apply, ...(values['source-id'] ? { sourceId: values['source-id'] } : {}) };
      if (!values.yes) {
        const plan = await planSkip(sqs, queues, replica, values.skip, skipOptions);
        console.error(
          `pgfanout redrive: refusing to skip without --yes. With --yes, batch ${plan.batchId} of source ${plan.sourceId} is recorded as applied on replica ${target.name} ` +
            `without being applied, and its ${plan.messages} message(s) are deleted from ${queues.deadLetterQueueName}. Its ${plan.changes} change(s) to ` +
            `${plan.tables.map(tableName).join(', ') || 'no table'} are then lost on this replica (it failed with ${plan.reason}).`,
        );
        return 2;
      }
      const result = await skipBatch(sqs, queues, replica, values.skip, skipOptions);
      console.log(
        `replica ${target.name}: skipped batch ${result.batchId} of source ${result.sourceId}; deleted ${result.deleted} message(s) from ${queues.deadLetterQueueName}` +
          (result.notDeleted.length > 0 ? ` (${result.notDeleted.length} could not be deleted; they are duplicates now and will be discarded)` : ''),
      );
      console.log(`its ${result.changes} change(s) to ${result.tables.map(tableName).join(', ') || 'no table'} are not on this replica: those tables differ from the source until repaired`);
      let parked = 0;
      if (values.move) {
        const code = await listAndMove(sqs, queues, replica, { limit, timeoutMs, force: values.force === true, prefix: values.prefix ?? 'pgfanout-local', lambda, apply });
        if (code !== 0) return code;
      } else {
        parked = (await listDeadLetters(sqs, queues, replica, { limit, apply })).messages.length;
      }
      if (result.tables.length === 0) return 0;
      const source = await connect(sourceUrl as string, 'source');
      try {
        if (parked > 0) {
          console.log(`${parked} message(s) are still parked in ${queues.deadLetterQueueName} (run redrive --move to send them back); comparing now, so their changes show as differences too`);
        } else {
          try {
            const at = await waitForReplicaPosition(source, replica, { timeoutMs });
            console.log(`replica ${target.name} has applied batch ${at.appliedBatchId} (the source had published ${at.targetBatchId}); comparing…`);
          } catch (err) {
            console.log(`${err instanceof Error ? err.message : String(err)}; comparing anyway`);
          }
        }
        const report = await verifyTables(source, replica, result.tables);
        console.log(formatSkipVerify(target.name, report));
      } finally {
        await source.end();
      }
      return 0;
    }

    if (!values.move) {
      console.log(formatListing(await listDeadLetters(sqs, queues, replica, { limit, apply })));
      return 0;
    }
    return await listAndMove(sqs, queues, replica, { limit, timeoutMs, force: values.force === true, prefix: values.prefix ?? 'pgfanout-local', lambda, apply });
  } finally {
    await replica.end();
    sqs.destroy();
    lambda.destroy();
  }
}

/** Lists the dead-letter queue, then moves it back unless a source's first message still fails (and not `force`). */
async function listAndMove(
  sqs: SQSClient,
  queues: ReplicaQueuePair,
  replica: pg.ClientBase,
  options: { limit: number; timeoutMs: number; force: boolean; prefix: string; lambda: LambdaClient; apply: ApplyOptions },
): Promise<number> {
  const listing = await listDeadLetters(sqs, queues, replica, { limit: options.limit, apply: options.apply });
  console.log(formatListing(listing));
  if (listing.messages.length === 0) {
    console.log('nothing to move');
    return 0;
  }
  const failing = firstFailures(listing.messages);
  if (failing.length > 0 && !options.force) {
    for (const m of failing) {
      console.error(
        `pgfanout redrive: not moving: the first parked message of source ${m.sourceId ?? '?'} (batch ${m.batchId ?? '?'}) still fails: ${'error' in m.dryRun ? m.dryRun.error.message : ''}`,
      );
    }
    console.error('fix the cause and run again, or --force to move anyway (the messages will fail again and park here after maxReceiveCount receives)');
    return 1;
  }
  // Moved messages go behind what the queue holds (SQS makes them new messages), so the backlog
  // that waited behind the parked ones leaves first: pause, backlog to the dead-letter queue,
  // everything back, resume. Interrupted, the replica stays paused; run the command again.
  const { lambda } = options;
  await setReplicaEnabled({ sqs, lambda }, options.prefix, queues.replica, false);
  console.error(`paused replica ${queues.replica}'s applier`);
  let behind = 0;
  await moveBacklogBehind(sqs, queues, {
    timeoutMs: options.timeoutMs,
    onProgress: (n) => {
      behind = n;
      if (n % 100 === 0) console.error(`moving the queue's backlog behind the parked messages: ${n}`);
    },
  });
  if (behind > 0) console.error(`moved ${behind} message(s) of ${queues.queueName} behind the parked ones, in order`);
  let last = '';
  const moved = await moveBack(sqs, queues, {
    timeoutMs: options.timeoutMs,
    onProgress: (done, of) => {
      const line = `moving: ${done} of ${of} message(s)`;
      if (line !== last) console.error(line);
      last = line;
    },
  });
  await setReplicaEnabled({ sqs, lambda }, options.prefix, queues.replica, true);
  console.error(`resumed replica ${queues.replica}'s applier`);
  console.log(`moved ${moved.moved} message(s) from ${queues.deadLetterQueueName} back to ${queues.queueName}`);
  return 0;
}

/** The first message of each source when its dry run fails: moving it back would only park it again. */
function firstFailures(messages: readonly ParkedMessage[]): ParkedMessage[] {
  const seen = new Set<string>();
  const out: ParkedMessage[] = [];
  for (const m of messages) {
    const source = m.sourceId ?? '';
    if (seen.has(source)) continue;
    seen.add(source);
    if ('error' in m.dryRun) out.push(m);
  }
  return out;
}

/** The listing as text: one line per message, in stream order. */
export function formatListing(listing: DeadLetterListing): string {
  const q = listing.queues;
  if (listing.messages.length === 0) return `replica ${q.replica}: ${q.deadLetterQueueName} is empty`;
  const lines = [`replica ${q.replica}: ${q.deadLetterQueueName} holds about ${listing.approximateDepth} message(s); ${listing.messages.length} shown, in stream order`];
  let previous: ParkedMessage | undefined;
  for (const m of listing.messages) {
    const where = m.batchId === undefined ? `message ${m.messageId} (not a pgfanout message)` : `source ${m.sourceId} batch ${m.batchId} part ${m.part}${m.final ? '' : ' (more parts follow)'}`;
    const what = m.tables.length > 0 ? `, ${m.changes} change(s) to ${m.tables.map(tableName).join(', ')}` : '';
    let verdict: string;
    if ('error' in m.dryRun) {
      const behind = m.dryRun.error.code === 'GAP' && previous?.sourceId === m.sourceId && previous !== undefined ? ' (waits behind the message above)' : '';
      verdict = `fails: ${m.dryRun.error.code}: ${m.dryRun.error.message}${behind}`;
    } else {
      verdict = m.dryRun.outcome === 'duplicate' ? 'already applied (a duplicate: moving it back is harmless)' : `would ${m.dryRun.outcome === 'staged' ? 'be staged' : 'apply'} now`;
    }
    lines.push(`  ${where}${what}${m.sentAt ? `, sent ${m.sentAt}` : ''}\n    ${verdict}`);
    previous = m;
  }
  const shown = listing.messages.length;
  if (listing.approximateDepth > shown) lines.push(`  … and about ${listing.approximateDepth - shown} more behind these (SQS FIFO shows at most 10 per source at a time)`);
  return lines.join('\n');
}

function formatSkipVerify(name: string, report: VerifyReport): string {
  if (report.differences.length === 0) return `replica ${name}: ${report.tables} table(s) the skipped batch touched, ${report.rowsCompared} row(s): identical to the source`;
  const lines = [`replica ${name}: the tables the skipped batch touched differ from the source:`];
  for (const d of report.differences) {
    if (d.problem !== undefined) {
      lines.push(`  ${d.table}: ${d.problem}`);
      continue;
    }
    lines.push(`  ${d.table}: ${d.missing} row(s) missing, ${d.extra} extra, ${d.changed} changed`);
    for (const e of d.examples) {
      lines.push(`    ${e.kind}${e.key ? ` ${e.key}` : ''}: ${e.row}${e.replicaRow !== undefined ? ` (replica: ${e.replicaRow})` : ''}`);
    }
  }
  return lines.join('\n');
}
