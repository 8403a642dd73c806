/**
 * A publisher run in the test's process against a local pipeline (its source, endpoint, topics
 * and signing key), with short ticks and backoffs, and the batch a replica has applied.
 */
import pg from 'pg';
import { withClient, type Pipeline } from '#local/pipeline.ts';
import { Publisher, type PublisherOptions } from '../functions/publisher/publisher.ts';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

/** A running publisher of `p`'s source; `options` override the test settings (e.g. `logger`). */
export function runPublisher(
  p: Pipeline,
  options: Partial<PublisherOptions> = {},
  controller = new AbortController(),
): { publisher: Publisher; done: Promise<void>; stop(): Promise<void> } {
  const publisher = new Publisher({
    connectSource: async () => {
      const client = new pg.Client({ connectionString: p.sourceUrl, application_name: 'pgfanout-publisher-test' });
      await client.connect();
      return client;
    },
    sns: p.sns,
    topicArns: p.topicArns,
    signingKeys: p.signingKeys(),
    logger: quiet,
    tickMs: 100,
    standbyPollMs: 100,
    backoffMs: { initial: 50, max: 500 },
    ...options,
  });
  const done = publisher.run(controller.signal);
  return {
    publisher,
    done,
    async stop() {
      controller.abort();
      await done;
    },
  };
}

/** The batch the pipeline's first replica has applied last (0 before any). */
export async function appliedBatch(p: Pipeline): Promise<number> {
  return withClient(p.replicas[0]!.url, async (c) => {
    const { rows } = await c.query<{ n: string }>('SELECT coalesce(max(applied_batch_id), 0)::text AS n FROM pgfanout.replica_position');
    return Number(rows[0]?.n ?? 0);
  });
}
