/**
 * Factories for tests of the codec and the apply core: whole changes, the token streams the
 * reader would produce for them (cut into pieces anywhere), and fast-check arbitraries.
 */
import fc from 'fast-check';
import type { Change, ChangeOp, RowImage } from '#core/wire/envelope.ts';
import type { BatchToken } from '#core/source/reader.ts';

/** Token stream of `changes`; `cuts(text)` chooses where each value is cut into pieces. */
export function tokensOf(changes: readonly Change[], cuts: (text: string) => readonly number[] = () => []): BatchToken[] {
  const tokens: BatchToken[] = [];
  let id = 1;
  for (const change of changes) {
    tokens.push({ kind: 'change', eventId: String(id++), txid: change.txid, time: '2024-01-01 00:00:00+00', op: change.op, schema: change.schema, table: change.table });
    for (const image of ['old', 'new'] as const) {
      const row = change[image];
      if (!row) continue;
      for (const [column, text] of Object.entries(row)) {
        if (text === null) {
          tokens.push({ kind: 'value', image, column, text: null, last: true });
          continue;
        }
        const points = [...new Set(cuts(text))].filter((p) => p > 0 && p < text.length).sort((a, b) => a - b);
        let start = 0;
        for (const point of [...points, text.length]) {
          tokens.push({ kind: 'value', image, column, text: text.slice(start, point), last: point === text.length });
          start = point;
        }
      }
    }
  }
  return tokens;
}

/** Characters that stress JSON escaping and UTF-8 sizes. */
const trickyChar = fc.oneof(
  fc.constantFrom('"', '\\', '\n', '\r', '\t', '\b', '\f', '\u0000', '\u0001', '\u001f', '\u007f', '\u2028', '\uFFFE', '\uFFFF', 'é', '€', '😀', '𝄞', 'a', ' '),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
);

/** Any text, weighted toward tricky characters. */
export const anyText = (maxLength: number) => fc.string({ unit: trickyChar, maxLength });

const columnName = fc.oneof(fc.constantFrom('id', 'note', 'Weird "col"', 'sélect', '__proto__', 'constructor', '1', '0'), fc.string({ unit: trickyChar, minLength: 1, maxLength: 12 }));

const image = (maxValue: number): fc.Arbitrary<RowImage> =>
  fc
    .uniqueArray(fc.tuple(columnName, fc.option(anyText(maxValue), { nil: null, freq: 5 })), { minLength: 1, maxLength: 6, selector: ([c]) => c })
    .map((entries) => Object.fromEntries(entries));

/** A random change; values up to `maxValue` characters. */
export const anyChange = (maxValue = 40): fc.Arbitrary<Change> =>
  fc
    .record({
      op: fc.constantFrom<ChangeOp>('I', 'U', 'D', 'T'),
      schema: fc.oneof(fc.constant('public'), fc.string({ unit: trickyChar, minLength: 1, maxLength: 10 })),
      table: fc.oneof(fc.constant('t'), fc.string({ unit: trickyChar, minLength: 1, maxLength: 10 })),
      txid: fc.bigInt({ min: 1n, max: 2n ** 63n - 1n }).map(String),
      old: image(maxValue),
      new: image(maxValue),
    })
    .map(({ op, schema, table, txid, old, new: neu }) => ({
      op,
      schema,
      table,
      txid,
      ...(op === 'U' || op === 'D' ? { old } : {}),
      ...(op === 'I' || op === 'U' ? { new: neu } : {}),
    }));

/** Collects an async iterable. */
export async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}
