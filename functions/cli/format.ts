/** What the `pgfanout` commands print: status and verify reports as text. */
import type { SlotStatus, StagingBatch, StatusReport } from '../ops/status.ts';
import type { verifyTables } from '../ops/verify.ts';

export function formatStatus(report: StatusReport): string {
  const s = report.source;
  const lines = [
    `source ${s.sourceId}: last batch ${s.lastBatchId ?? '-'}, published up to ${s.finishedBatchId ?? '-'}, pending events ${s.pendingEvents ?? '0'}` +
      (s.oldestPendingSeconds !== null ? `, oldest pending ${s.oldestPendingSeconds.toFixed(1)} s` : ''),
    `  capture: ${s.captureMode ?? 'trigger'}` + (s.slot ? `; ${formatSlot(s.slot)}` : ''),
  ];
  for (const r of report.replicas) {
    if (r.error) {
      lines.push(`replica ${r.name}: error: ${r.error}`);
      continue;
    }
    const q = r.queue ? `queue ${r.queue.visible} (+${r.queue.inFlight} in flight), dead-letter ${r.queue.deadLetter}` : `queue unknown: ${r.queueError ?? 'not read'}`;
    const lag = r.lagSeconds === null ? 'lag ?' : `lag ${r.lagSeconds.toFixed(1)} s`;
    const staging = r.stagingBatch ? `, ${formatStaging(r.stagingBatch)}` : '';
    lines.push(`replica ${r.name}: applied batch ${r.appliedBatchId ?? '-'}${staging}, ${lag}, behind ${r.behindBatches ?? '?'} batch(es), ${q}`);
  }
  return lines.join('\n');
}

/** "staging batch 12 part 4 of ~40": a batch too large for one message, arriving part by part. */
export function formatStaging(s: StagingBatch): string {
  const of = s.partsEstimate !== null ? ` of ~${s.partsEstimate}` : '';
  const changes = s.changes !== null ? ` (${s.changes} changes)` : '';
  return `staging batch ${s.batchId} part ${s.part + 1}${of}${changes}`;
}

export function formatVerify(name: string, report: Awaited<ReturnType<typeof verifyTables>>): string {
  if (report.differences.length === 0) return `replica ${name}: ${report.tables} table(s), ${report.rowsCompared} row(s): identical`;
  const lines = [`replica ${name}: ${report.differences.length} of ${report.tables} table(s) differ`];
  const cut = (row: string) => (row.length > 200 ? `${row.slice(0, 200)}…` : row);
  for (const d of report.differences) {
    if (d.problem !== undefined) {
      lines.push(`  ${d.table}: ${d.problem}`);
      continue;
    }
    lines.push(`  ${d.table}: ${d.missing} row(s) missing on the replica, ${d.extra} extra, ${d.changed} changed (${d.method === 'chunked' ? 'compared by key' : 'full merge'})`);
    for (const e of d.examples) {
      const key = e.key === undefined ? '' : `${e.key} `;
      if (e.kind === 'changed') {
        lines.push(`    ~ ${key}source:  ${cut(e.row)}`);
        lines.push(`    ~ ${key}replica: ${cut(e.replicaRow ?? '')}`);
      } else {
        lines.push(`    ${e.kind === 'missing' ? '-' : '+'} ${key}${cut(e.row)}`);
      }
    }
  }
  return lines.join('\n');
}

/** The slot of a WAL-mode source: `slot pgfanout_… (active, reserved): 1.2 MB unpublished, retains 16.0 MB of WAL`. */
function formatSlot(slot: SlotStatus): string {
  if (!slot.present) return `slot ${slot.name} MISSING`;
  const mb = (n: number | null) => (n === null ? '?' : `${(n / 1_048_576).toFixed(1)} MB`);
  return `slot ${slot.name} (${slot.active ? 'active' : 'inactive'}, ${slot.walStatus ?? '?'}): ${mb(slot.lagBytes)} unpublished, retains ${mb(slot.retainedBytes)} of WAL`;
}
