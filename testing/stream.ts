/**
 * The publisher's and applier's work in one call, for the core's tests: take the source's next
 * batch, read it through COPY, encode it into messages and apply them to a replica database,
 * then finish the batch. No SNS/SQS in between (the end-to-end tests have those).
 */
import type pg from 'pg';
import { applyMessage, type ApplyOptions, type ApplyResult } from '#core/replica/apply.ts';
import { encodeBatch, type EncodeOptions, type OutgoingMessage } from '#core/source/encoder.ts';
import { mergeChangeItems, parseEnvelope, type Change, type ChangeItem } from '#core/wire/envelope.ts';
import { readBatch } from '#core/source/reader.ts';
import { collect } from './batches.ts';

/** A source's next batch encoded into messages, not finished yet; undefined when there is none. */
export async function publishNext(publisher: pg.ClientBase, options: EncodeOptions = {}): Promise<{ batchId: string; messages: OutgoingMessage[] } | undefined> {
  const { rows } = await publisher.query<{ source_id: string; batch_id: string; prev_batch_id: string; event_count: string; last_event_time: string }>(
    `SELECT pgfanout.source_id() AS source_id, batch_id::text, prev_batch_id::text, event_count::text, last_event_time::text FROM pgfanout.next_batch()`,
  );
  const batch = rows[0];
  if (!batch) return undefined;
  const meta = { sourceId: batch.source_id, batchId: batch.batch_id, prevBatchId: batch.prev_batch_id, eventCount: batch.event_count, lastEventTime: batch.last_event_time };
  return { batchId: batch.batch_id, messages: await collect(encodeBatch(meta, readBatch(publisher, batch.batch_id), options)) };
}

/**
 * Publishes every batch of the source and applies it to the replica, in order; a batch is
 * finished only after it applied. Returns the results of every message. Throws the first apply
 * error (the batch stays open, as with a real publisher whose messages wait in a queue).
 */
export async function syncOnce(publisher: pg.ClientBase, replica: pg.ClientBase, options: ApplyOptions = {}, encode: EncodeOptions = {}): Promise<ApplyResult[]> {
  const results: ApplyResult[] = [];
  for (let batch = await publishNext(publisher, encode); batch; batch = await publishNext(publisher, encode)) {
    for (const message of batch.messages) results.push(await applyMessage(replica, message.body, options));
    await publisher.query('SELECT pgfanout.finish_batch($1)', [batch.batchId]);
  }
  return results;
}

/** As {@link syncOnce}, returning every change that travelled, reassembled. */
export async function syncChanges(publisher: pg.ClientBase, replica: pg.ClientBase, options: ApplyOptions = {}): Promise<Change[]> {
  const items: ChangeItem[] = [];
  for (let batch = await publishNext(publisher); batch; batch = await publishNext(publisher)) {
    for (const message of batch.messages) {
      items.push(...parseEnvelope(message.body).changes);
      await applyMessage(replica, message.body, options);
    }
    await publisher.query('SELECT pgfanout.finish_batch($1)', [batch.batchId]);
  }
  return mergeChangeItems(items);
}
