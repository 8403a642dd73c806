/** Numbers, durations and sizes as bootstrap's log lines and summary print them. */
import type { BootstrapResult } from './types.ts';

export const integer = new Intl.NumberFormat('en-US');

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  return m < 60 ? `${m} min ${Math.round(seconds % 60)} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function megabytes(bytes: number): string {
  return `${(bytes / 1_000_000).toFixed(1)} MB`;
}

/** One progress line of a table being copied: rows, share of the estimate, rate, time left. */
export function progressLine(s: { readonly table: { readonly name: string; readonly estimate: number | null }; readonly rows: number; readonly started: number }): string {
  const elapsed = (Date.now() - s.started) / 1000;
  const rate = elapsed > 0 ? s.rows / elapsed : 0;
  const estimate = s.table.estimate;
  const of = estimate !== null ? ` of ~${integer.format(Math.round(estimate))}` : '';
  const percent = estimate !== null ? ` (${Math.min(99, Math.floor((100 * s.rows) / estimate))} %)` : '';
  const eta = estimate !== null && rate > 0 ? `, ETA ${duration(Math.max(0, estimate - s.rows) / rate)}` : '';
  return `  ${s.table.name}: ${integer.format(s.rows)}${of} rows${percent}, ${integer.format(Math.round(rate))} rows/s${eta}`;
}

/** A short summary of a finished bootstrap. */
export function formatBootstrap(replicaName: string, r: BootstrapResult): string {
  const lines = [
    `replica ${replicaName} bootstrapped from source ${r.sourceId}: ${r.tables.length} table(s), ${integer.format(r.rows)} rows, ${megabytes(r.bytes)} in ${duration(r.seconds)}` +
      `${r.resumed ? ' (resumed)' : r.restarted ? ' (started over: the interrupted run\'s snapshot was gone)' : ''}`,
    `position recorded: batch ${r.batchId}; the applier skips batches up to ${r.batchId} and applies from ${BigInt(r.batchId) + 1n} on`,
  ];
  for (const t of r.tables) {
    lines.push(`  ${t.table}: ${integer.format(t.rows)} rows${t.created ? ', table created' : ''}${t.attempts > 1 ? `, ${t.attempts} attempts` : t.attempts === 0 ? ', kept from the interrupted run' : ''}`);
  }
  return lines.join('\n');
}
