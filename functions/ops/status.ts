/**
 * `pgfanout status`: where the source's publisher and each replica stand (batches, lag, the
 * batch being staged) and each replica's queue depths, read from the databases and from SQS.
 *
 * The replicas are read before the source, so a replica never shows a batch the source has
 * not yet published: a batch published in between only makes the replica look one batch
 * further behind than it is by the time the report is printed.
 */
import { GetQueueUrlCommand } from '@aws-sdk/client-sqs';
import type pg from 'pg';
import { resourceNames } from '#core/config.ts';
import { connect, redactUrl } from '#core/pg/db.ts';
import { replicaState } from '#core/replica/protocol.ts';
import { awsClients, queueDepths } from './aws.ts';
import type { TableRef } from './verify.ts';

/** The tables the source captures, from pgfanout.show_tables(). */
export async function replicatedTables(source: pg.ClientBase): Promise<TableRef[]> {
  const { rows } = await source.query<{ schema: string; table: string }>(
    'SELECT table_schema AS schema, table_name AS table FROM pgfanout.show_tables() ORDER BY 1, 2',
  );
  return rows;
}

/** A batch a replica is staging part by part (a batch too large for one message). */
export interface StagingBatch {
  readonly batchId: string;
  /** The last part staged (parts count from 0). */
  readonly part: number;
  /** Changes in the batch, from the source; null when the source no longer keeps the batch. */
  readonly changes: number | null;
  /**
   * The number of parts the batch is expected to take: its changes divided by the changes in
   * its first part (parts holding pieces of large values carry fewer, so it is an estimate).
   */
  readonly partsEstimate: number | null;
}

export interface ReplicaStatus {
  readonly name: string;
  readonly appliedBatchId: string | null;
  /** The batch and part being staged ("12 part 3"), if any; details in `stagingBatch`. */
  readonly staging: string | null;
  readonly stagingBatch?: StagingBatch;
  /** Seconds since the source time of the last applied batch; 0 when nothing is pending. */
  readonly lagSeconds: number | null;
  readonly behindBatches: number | null;
  readonly queue: { readonly visible: number; readonly inFlight: number; readonly deadLetter: number } | null;
  /** Why `queue` is null. */
  readonly queueError?: string;
  /** Why the replica's position could not be read. */
  readonly error?: string;
}

/** The logical replication slot of a source in WAL capture mode (`pgfanout.wal_status()`). */
export interface SlotStatus {
  readonly name: string;
  /** The slot was found; a missing slot means changes are lost (bootstrap the replicas again). */
  readonly present: boolean;
  readonly active: boolean;
  /** `reserved`, `extended`, `unreserved` or `lost` (the server invalidated it: max_slot_wal_keep_size). */
  readonly walStatus: string | null;
  /** WAL the slot keeps on the source's disk, bytes. */
  readonly retainedBytes: number | null;
  /** WAL written since the slot's confirmed position (not yet published), bytes. */
  readonly lagBytes: number | null;
}

export interface StatusReport {
  readonly source: {
    readonly sourceId: string;
    readonly lastBatchId: string | null;
    readonly finishedBatchId: string | null;
    readonly pendingEvents: string | null;
    readonly oldestPendingSeconds: number | null;
    /** How the source captures (`pgfanout.capture_mode()`; `trigger` before SQL 1.2.0). */
    readonly captureMode: 'trigger' | 'wal';
    /** The slot, in WAL capture mode. */
    readonly slot?: SlotStatus;
  };
  readonly replicas: readonly ReplicaStatus[];
}

export interface StatusWhere {
  /** Prefix of the queue names. */
  readonly prefix: string;
  /** SNS/SQS endpoint; default AWS_ENDPOINT_URL, else AWS. */
  readonly endpoint?: string;
}

/** Problems a report shows: a replica that cannot be read, a queue that cannot be read, dead letters. */
export function statusProblems(report: StatusReport): string[] {
  const problems: string[] = [];
  const slot = report.source.slot;
  if (slot && !slot.present) problems.push(`source: its logical replication slot ${slot.name} is missing: changes since it was dropped are lost; create it (SELECT pgfanout.wal_create_slot()) and bootstrap every replica again`);
  if (slot?.walStatus === 'lost') problems.push(`source: its logical replication slot ${slot.name} was invalidated by the server (max_slot_wal_keep_size): changes are lost; drop it, create it again (pgfanout.wal_drop(), then install --capture wal) and bootstrap every replica again`);
  for (const r of report.replicas) {
    if (r.error) problems.push(`replica ${r.name}: ${r.error}`);
    if (r.queueError) problems.push(`replica ${r.name}: queue unknown: ${r.queueError}`);
    if (r.queue && r.queue.deadLetter > 0) problems.push(`replica ${r.name}: ${r.queue.deadLetter} message(s) in the dead-letter queue (see pgfanout redrive)`);
  }
  return problems;
}

type SourcePosition = { last_batch_id: string | null; finished_batch_id: string | null; pending_events: string | null; oldest: Date | null };

export async function statusReport(sourceUrl: string, replicas: readonly { name: string; url: string }[], where: StatusWhere): Promise<StatusReport> {
  const prefix = where.prefix;
  const source = await connect(sourceUrl, 'source');
  try {
    let sourceId: string;
    try {
      sourceId = (await source.query<{ id: string }>('SELECT pgfanout.source_id() AS id')).rows[0]?.id as string;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === '3F000' || code === '42883') {
        throw new Error(`source ${redactUrl(sourceUrl)}: pgfanout is not installed there: run pgfanout install --source URL first`, { cause: err });
      }
      throw new Error(`source ${redactUrl(sourceUrl)}: ${(err as Error).message}`, { cause: err });
    }
    const positions = await Promise.all(replicas.map((r) => replicaPosition(r, sourceId)));
    // The source after the replicas: a replica is never ahead of what the source reports.
    const { rows } = await source.query<SourcePosition>(
      'SELECT last_batch_id::text, finished_batch_id::text, pending_events::text, oldest_pending_event_time AS oldest FROM pgfanout.status()',
    );
    const s = rows[0];
    const { rows: modeRows } = await source.query<{ mode: 'trigger' | 'wal' | null }>(
      `SELECT CASE WHEN pg_catalog.to_regprocedure('pgfanout.capture_mode()') IS NULL THEN 'trigger' END AS mode`,
    );
    const captureMode = modeRows[0]?.mode ?? (await source.query<{ mode: 'trigger' | 'wal' }>('SELECT pgfanout.capture_mode() AS mode')).rows[0]?.mode ?? 'trigger';
    let slot: SlotStatus | undefined;
    if (captureMode === 'wal') {
      const name = (await source.query<{ n: string }>('SELECT pgfanout.wal_slot_name() AS n')).rows[0]?.n as string;
      const { rows: w } = await source.query<{ active: boolean; wal_status: string | null; retained_bytes: string | null; lag_bytes: string | null }>(
        'SELECT active, wal_status, retained_bytes::text, lag_bytes::text FROM pgfanout.wal_status()',
      );
      const row = w[0];
      slot = row
        ? { name, present: true, active: row.active, walStatus: row.wal_status, retainedBytes: row.retained_bytes === null ? null : Number(row.retained_bytes), lagBytes: row.lag_bytes === null ? null : Number(row.lag_bytes) }
        : { name, present: false, active: false, walStatus: null, retainedBytes: null, lagBytes: null };
    }
    const sourceStatus: StatusReport['source'] = {
      captureMode,
      ...(slot ? { slot } : {}),
      sourceId,
      lastBatchId: s?.last_batch_id ?? null,
      finishedBatchId: s?.finished_batch_id ?? null,
      pendingEvents: s?.pending_events ?? null,
      oldestPendingSeconds: s?.oldest ? (Date.now() - s.oldest.getTime()) / 1000 : null,
    };
    const stagedChanges = new Map<string, number | null>();
    for (const p of positions) {
      if (p.staging && !stagedChanges.has(p.staging.batchId)) {
        const { rows: b } = await source.query<{ n: string }>('SELECT event_count::text AS n FROM pgfanout.batch WHERE batch_id = $1', [p.staging.batchId]);
        stagedChanges.set(p.staging.batchId, b[0] ? Number(b[0].n) : null);
      }
    }
    const queues = await queueStates(replicas, prefix, where.endpoint ?? process.env.AWS_ENDPOINT_URL);
    const finished = sourceStatus.finishedBatchId ?? sourceStatus.lastBatchId;
    const out = replicas.map((r, i): ReplicaStatus => {
      const p = positions[i] as ReplicaPositionRead;
      const q = queues[i] as QueueState;
      const changes = p.staging ? (stagedChanges.get(p.staging.batchId) ?? null) : null;
      const stagingBatch = p.staging
        ? {
            ...p.staging,
            changes,
            partsEstimate: changes !== null && p.staging.firstPartChanges ? Math.max(p.staging.part + 2, Math.ceil(changes / p.staging.firstPartChanges)) : null,
          }
        : undefined;
      return {
        name: r.name,
        appliedBatchId: p.appliedBatchId,
        staging: p.staging ? `${p.staging.batchId} part ${p.staging.part}` : null,
        ...(stagingBatch ? { stagingBatch: { batchId: stagingBatch.batchId, part: stagingBatch.part, changes: stagingBatch.changes, partsEstimate: stagingBatch.partsEstimate } } : {}),
        lagSeconds: p.appliedBatchId !== null && p.appliedBatchId === finished && sourceStatus.pendingEvents === '0' ? 0 : p.lagSeconds,
        behindBatches: finished !== null && p.error === undefined ? Number(finished) - Number(p.appliedBatchId ?? 0) : null,
        queue: q.queue,
        ...(q.error ? { queueError: q.error } : {}),
        ...(p.error ? { error: p.error } : {}),
      };
    });
    return { source: sourceStatus, replicas: out };
  } finally {
    await source.end();
  }
}

interface ReplicaPositionRead {
  readonly appliedBatchId: string | null;
  readonly lagSeconds: number | null;
  readonly staging?: { batchId: string; part: number; firstPartChanges: number | null };
  readonly error?: string;
}

async function replicaPosition(r: { name: string; url: string }, sourceId: string): Promise<ReplicaPositionRead> {
  let client: pg.Client;
  try {
    client = await connect(r.url, `replica ${r.name}`);
  } catch (err) {
    return { appliedBatchId: null, lagSeconds: null, error: (err as Error).message };
  }
  try {
    const { position: p } = await replicaState(client, sourceId);
    if (!p) return { appliedBatchId: null, lagSeconds: null };
    return {
      appliedBatchId: p.appliedBatchId,
      lagSeconds: p.lagSeconds,
      ...(p.part !== null ? { staging: { batchId: p.batchId, part: p.part, firstPartChanges: p.firstPartChanges } } : {}),
    };
  } catch (err) {
    const code = (err as { code?: string }).code;
    const error =
      code === '42P01' || code === '3F000' || code === '42883'
        ? `pgfanout is not installed on replica ${r.name} (${redactUrl(r.url)}): run pgfanout install --replica URL, then pgfanout bootstrap`
        : `replica ${r.name} (${redactUrl(r.url)}): ${(err as Error).message}`;
    return { appliedBatchId: null, lagSeconds: null, error };
  } finally {
    await client.end().catch(() => undefined);
  }
}

interface QueueState {
  readonly queue: ReplicaStatus['queue'];
  readonly error?: string;
}

async function queueStates(replicas: readonly { name: string }[], prefix: string, endpoint: string | undefined): Promise<QueueState[]> {
  if (replicas.length === 0) return [];
  const { sqs } = awsClients(endpoint ? { endpoint } : {});
  try {
    return await Promise.all(
      replicas.map(async (r): Promise<QueueState> => {
        const names = resourceNames(prefix, r.name);
        try {
          const [q, d] = await Promise.all([
            sqs.send(new GetQueueUrlCommand({ QueueName: names.queue })),
            sqs.send(new GetQueueUrlCommand({ QueueName: names.deadLetterQueue })),
          ]);
          return { queue: await queueDepths(sqs, { name: r.name, queueUrl: q.QueueUrl as string, queueArn: '', deadLetterQueueUrl: d.QueueUrl as string }) };
        } catch (err) {
          return { queue: null, error: describeQueueError(err, names.queue, prefix, endpoint) };
        }
      }),
    );
  } finally {
    sqs.destroy();
  }
}

/** Why a queue could not be read, and what to check. */
function describeQueueError(err: unknown, queue: string, prefix: string, endpoint: string | undefined): string {
  const e = err as { name?: string; message?: string; Code?: string };
  const where = endpoint ? `at ${endpoint}` : 'in AWS';
  // QueueDoesNotExist also answers a request sent to another region than the queue's:
  // https://repost.aws/knowledge-center/sqs-queuedoesnotexist-errors
  if (e.name === 'QueueDoesNotExist' || e.name === 'AWS.SimpleQueueService.NonExistentQueue') {
    return `no queue ${queue} ${where}${endpoint ? '' : ` in region ${process.env.AWS_REGION ?? 'us-east-1'} (AWS_REGION)`} (queue names are PREFIX-REPLICA.fifo: is "${prefix}" the deployment's prefix (--prefix)?)`;
  }
  if (e.name === 'CredentialsProviderError') {
    return `no AWS credentials found for reading ${queue} ${where} (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)`;
  }
  if (e.name === 'ECONNREFUSED' || /ECONNREFUSED/.test(e.message ?? '')) {
    return `nothing answers ${where} (is the endpoint running? AWS_ENDPOINT_URL=${endpoint ?? ''})`;
  }
  return `reading ${queue} ${where}: ${e.name && e.name !== 'Error' ? `${e.name}: ` : ''}${e.message ?? String(err)}`;
}
