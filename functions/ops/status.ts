/**
 * `pgfanout status`: where the source's publisher and each replica stand (batches, lag, the
 * batch being staged) and each replica's queue depths, read from the databases and from SQS.
 */
import { GetQueueUrlCommand } from '@aws-sdk/client-sqs';
import type pg from 'pg';
import { resourceNames } from '#core/config.ts';
import { connect } from '#core/pg/db.ts';
import { awsClients, queueDepths } from './aws.ts';
import type { TableRef } from './verify.ts';

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
