/** The benchmark's message: about the size of one pgfanout change, ~1 KiB of JSON. */
export const BENCH_BODY = JSON.stringify({ v: 1, op: 'U', table: 'public.orders', new: { id: 1, note: 'x'.repeat(900) } });
