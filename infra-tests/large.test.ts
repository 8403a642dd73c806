/**
 * End-to-end with sizes far beyond one SNS message (256 KiB): a transaction of 1,000,000
 * rows and a single 50 MB value. Both are split into parts by the publisher, staged on the
 * replica and applied atomically when the last part arrives: a reader on the replica sees
 * either none of the transaction or all of it, never a part.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { waitForCatchUp } from '#local/command.ts';
import { verifyTables } from '../functions/ops/verify.ts';
import { waitFor } from '#testing/wait.ts';

const ROWS = 1_000_000;
const VALUE_BYTES = 50 * 1024 * 1024;
let pipeline: Pipeline;

beforeAll(async () => {
  // One replica; a visibility timeout (= function timeout) long enough for the final part's apply.
  pipeline = await Pipeline.start({ replicas: [{ name: 'big' }], startPublisher: false, tickMs: 200, visibilityTimeoutSeconds: 600 });
  for (const url of [pipeline.sourceUrl, pipeline.replicas[0]!.url]) {
    await withClient(url, (c) =>
      c.query(`CREATE TABLE big_tx (id bigint PRIMARY KEY, payload text NOT NULL);
               CREATE TABLE big_value (id int PRIMARY KEY, body text NOT NULL)`),
    );
  }
  await withClient(pipeline.sourceUrl, (c) => c.query(`SELECT pgfanout.add_table('big_tx'), pgfanout.add_table('big_value')`));
  pipeline.startPublisher();
});

afterAll(async () => {
  await pipeline?.stop();
});

describe('large transactions and values', () => {
  it('applies a 1,000,000-row transaction atomically', async () => {
    const replica = pipeline.replicas[0]!;
    await withClient(pipeline.sourceUrl, (c) =>
      c.query(`INSERT INTO big_tx SELECT g, md5(g::text) || ' ' || g FROM generate_series(1, $1::int) g`, [ROWS]),
    );
    const counts = new Set<number>();
    await withClient(replica.url, (c) =>
      waitFor('the whole transaction on the replica', async () => {
        const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM big_tx');
        counts.add(rows[0]!.n);
        return rows[0]!.n === ROWS;
      }, 540_000, 250),
    );
    // Every observation was all or nothing.
    expect([...counts].sort((a, b) => a - b)).toEqual([0, ROWS].filter((n) => counts.has(n)));
    expect(counts.has(ROWS)).toBe(true);
    await waitForCatchUp(pipeline, 120_000);
    const report = await withClient(pipeline.sourceUrl, (s) => withClient(replica.url, (r) => verifyTables(s, r, [{ schema: 'public', table: 'big_tx' }])));
    expect(report.differences).toEqual([]);
    expect(report.rowsCompared).toBe(ROWS);
  }, 600_000);

  it('replicates a single 50 MB value byte for byte', async () => {
    const replica = pipeline.replicas[0]!;
    // Incompressible-looking text (hex digests), so size limits are exercised for real.
    await withClient(pipeline.sourceUrl, (c) =>
      c.query(`INSERT INTO big_value SELECT 1, string_agg(md5(g::text), '' ORDER BY g) FROM generate_series(1, $1::int) g`, [VALUE_BYTES / 32]),
    );
    const [source] = (await withClient(pipeline.sourceUrl, (c) => c.query<{ len: number; digest: string }>('SELECT octet_length(body) AS len, md5(body) AS digest FROM big_value'))).rows;
    expect(source!.len).toBe(VALUE_BYTES);
    const copied = await withClient(replica.url, (c) =>
      waitFor('the 50 MB value on the replica', async () => {
        const { rows } = await c.query<{ len: number; digest: string }>('SELECT octet_length(body) AS len, md5(body) AS digest FROM big_value');
        return rows[0];
      }, 300_000, 250),
    );
    expect(copied).toEqual(source);
  }, 400_000);
});
