/**
 * `statusReport` on a running pipeline: a batch too large for one message shows as
 * "staging batch B part K of ~M" while its last part cannot be applied, and a replica is
 * never reported ahead of the source.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatStatus } from '../cli/format.ts';
import { Pipeline, withClient } from '#local/pipeline.ts';
import { statusReport } from './status.ts';

let p: Pipeline;

beforeAll(async () => {
  p = await Pipeline.start({ replicas: [{ name: 'a' }], maxMessageBytes: 4096, tickMs: 200 });
  for (const url of [p.sourceUrl, p.replicas[0]!.url]) {
    await withClient(url, (c) => c.query('CREATE TABLE public.big (id int PRIMARY KEY, note text)'));
  }
  // The replica refuses the batch's last row: its final part fails and the parts before it stay staged.
  await withClient(p.replicas[0]!.url, (c) => c.query('ALTER TABLE public.big ADD CONSTRAINT not_2000 CHECK (id <> 2000)'));
  await withClient(p.sourceUrl, (c) => c.query("SELECT pgfanout.add_table('public.big')"));
});

afterAll(async () => {
  await p?.stop();
});

describe('status of a replica staging a large batch', () => {
  it('shows the part staged, the parts expected and the batch size', async () => {
    await withClient(p.sourceUrl, (c) => c.query("INSERT INTO public.big SELECT g, repeat('x', 50) FROM generate_series(1, 2000) g"));
    const replica = p.replicas[0]!;
    while (replica.handler.applier.lastFailure === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    const report = await statusReport(p.sourceUrl, [{ name: 'a', url: replica.url }], { prefix: 'pgfanout-local', endpoint: p.endpointUrl });
    const r = report.replicas[0]!;
    const staging = r.stagingBatch!;
    expect(staging.changes).toBe(2000);
    expect(staging.part).toBeGreaterThanOrEqual(1);
    expect(staging.partsEstimate).toBeGreaterThanOrEqual(staging.part + 2);
    expect(Number(r.appliedBatchId ?? 0)).toBeLessThanOrEqual(Number(report.source.finishedBatchId));
    expect(formatStatus(report)).toContain(`staging batch ${staging.batchId} part ${staging.part + 1} of ~${staging.partsEstimate} (2000 changes)`);
  });
});
