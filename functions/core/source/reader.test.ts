import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, InvalidStreamError } from '../wire/errors.ts';
import { batchIdText, BatchTokenAssembler, CopyTextParser, type BatchToken, type CopySink } from './reader.ts';
import { anyText } from '#testing/batches.ts';

/** Collects parsed rows, checking the sink protocol (pieces non-empty, one complete piece per field). */
class RowCollector implements CopySink {
  readonly rows: (string | null)[][] = [];
  #row: (string | null)[] = [];
  #text = '';
  field(index: number, text: string | null, complete: boolean): void {
    expect(index).toBe(this.#row.length);
    if (!complete) {
      expect(text).not.toBeNull();
      expect(text?.length).toBeGreaterThan(0);
      this.#text += text;
      return;
    }
    if (text === null) {
      expect(this.#text).toBe('');
      this.#row.push(null);
    } else this.#row.push(this.#text + text);
    this.#text = '';
  }
  rowEnd(fields: number): void {
    expect(fields).toBe(this.#row.length);
    this.rows.push(this.#row);
    this.#row = [];
  }
}

/** COPY text the way PostgreSQL writes it. */
function copyText(rows: readonly (readonly (string | null)[])[]): string {
  const escape = (v: string) =>
    v.replace(/[\\\n\r\t\b\f\v]/g, (c) => ({ '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\b': '\\b', '\f': '\\f', '\v': '\\v' })[c] as string);
  return rows.map((r) => r.map((v) => (v === null ? '\\N' : escape(v))).join('\t') + '\n').join('');
}

/** COPY text bytes using every escape form COPY FROM accepts: octal, hex and needless backslashes too. */
function copyBytesAllForms(rows: readonly (readonly (string | null)[])[], choice: readonly number[]): Buffer {
  const out: number[] = [];
  let k = 0;
  const pick = () => choice[k++ % Math.max(choice.length, 1)] ?? 0;
  const push = (s: string) => out.push(...Buffer.from(s, 'latin1'));
  for (const row of rows) {
    row.forEach((v, i) => {
      if (i > 0) out.push(0x09);
      if (v === null) return push('\\N');
      for (const byte of Buffer.from(v)) {
        const mode = pick() % 5;
        const special = byte === 0x5c || byte === 0x0a || byte === 0x0d || byte === 0x09;
        if (mode === 1 || (special && mode === 0)) push(`\\${byte.toString(8).padStart(3, '0')}`);
        else if (mode === 2) push(`\\x${byte.toString(16).padStart(2, '0')}`);
        else if (mode === 3 && (special || byte >= 0x80)) push(`\\x${byte.toString(16).padStart(2, '0')}`);
        else if (mode === 4 && !special && /[A-Za-z!-/:-@]/.test(String.fromCharCode(byte)) && !'bfnrtvxN'.includes(String.fromCharCode(byte))) {
          push(`\\${String.fromCharCode(byte)}`);
        }
        else if (special) push(`\\${byte.toString(8)}`);
        else out.push(byte);
      }
    });
    out.push(0x0a);
  }
  return Buffer.from(out);
}

function parse(bytes: Uint8Array, cuts: readonly number[]): (string | null)[][] {
  const sink = new RowCollector();
  const parser = new CopyTextParser(sink);
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let start = 0;
  for (const point of [...points, bytes.length]) {
    parser.push(bytes.subarray(start, point));
    start = point;
  }
  parser.end();
  return sink.rows;
}

const anyRows = fc.array(fc.array(fc.option(anyText(30), { nil: null, freq: 4 }), { minLength: 1, maxLength: 5 }), { maxLength: 8 });

describe('CopyTextParser', () => {
  it('parses what PostgreSQL writes, split at any byte boundary', () => {
    fc.assert(
      fc.property(anyRows, fc.array(fc.nat(), { maxLength: 20 }), (rows, cuts) => {
        const wellFormed = rows.map((r) => r.map((v) => (v === null ? null : v.toWellFormed())));
        expect(parse(Buffer.from(copyText(wellFormed)), cuts)).toEqual(wellFormed);
      }),
      { numRuns: 500 },
    );
  });

  it('parses every escape form (octal, hex, needless backslash), split anywhere, multi-byte characters included', () => {
    fc.assert(
      fc.property(anyRows, fc.array(fc.nat(), { maxLength: 30 }), fc.array(fc.nat(4), { minLength: 1, maxLength: 16 }), (rows, cuts, choice) => {
        const wellFormed = rows.map((r) => r.map((v) => (v === null ? null : v.toWellFormed())));
        expect(parse(copyBytesAllForms(wellFormed, choice), cuts)).toEqual(wellFormed);
      }),
      { numRuns: 500 },
    );
  });

  it('decodes every single byte at every chunk boundary', () => {
    const text = 'a€😀\\\t\n\\N\\x4\\x4g\\1\\12\\1234\\q\tlast\n';
    const bytes = Buffer.from(text);
    const expected = [['a€😀\t'], ['N\u0004\u0004g\u0001\nS4q', 'last']];
    for (let cut = 0; cut <= bytes.length; cut++) expect(parse(bytes, [cut])).toEqual(expected);
    expect(parse(bytes, Array.from({ length: bytes.length }, (_, i) => i))).toEqual(expected);
  });

  it('tells NULL from the letter N and from an empty string', () => {
    expect(parse(Buffer.from('\\N\t\\NN\t\t\\\\N\n'), [1, 2, 3])).toEqual([[null, 'NN', '', '\\N']]);
  });

  it('hands a long field over in pieces as chunks arrive', () => {
    const pieces: (string | null)[] = [];
    const parser = new CopyTextParser({ field: (_i, text) => pieces.push(text), rowEnd: () => undefined });
    const value = 'x'.repeat(100_000);
    for (let i = 0; i < value.length; i += 10_000) parser.push(Buffer.from(value.slice(i, i + 10_000)));
    parser.push(Buffer.from('\n'));
    expect(pieces.length).toBe(11);
    expect(pieces.join('')).toBe(value);
  });

  it('rejects invalid UTF-8 and data that ends inside a row', () => {
    const bad = new CopyTextParser(new RowCollector());
    expect(() => bad.push(Buffer.from([0x61, 0xff, 0x0a]))).toThrow(InvalidStreamError);
    const escaped = new CopyTextParser(new RowCollector());
    expect(() => escaped.push(Buffer.from('\\xc3\\x28\n'))).toThrow(/not valid UTF-8 in row 1, field 1/);
    const cut = new CopyTextParser(new RowCollector());
    cut.push(Buffer.from('a\tb'));
    expect(() => cut.end()).toThrow(/ended inside row 1 \(field 2\)/);
  });
});

function assemble(text: string, cuts: readonly number[] = []): BatchToken[] {
  const assembler = new BatchTokenAssembler();
  const parser = new CopyTextParser(assembler);
  const bytes = Buffer.from(text);
  let start = 0;
  const tokens: BatchToken[] = [];
  for (const point of [...cuts, bytes.length]) {
    parser.push(bytes.subarray(start, point));
    tokens.push(...assembler.take());
    start = point;
  }
  parser.end();
  return tokens;
}

const row = (...fields: (string | null)[]) => copyText([fields]);
const T = '2024-01-01 00:00:00+00';

describe('BatchTokenAssembler', () => {
  it('turns batch_values rows into change and value tokens', () => {
    const text =
      row('1', '700', T, 'U', 'public', 'orders', 'k', 'id', '1') +
      row('1', '700', T, 'U', 'public', 'orders', 'n', 'id', '1') +
      row('1', '700', T, 'U', 'public', 'orders', 'n', 'note', null) +
      row('2', '701', T, 'T', 'public', 'orders', '-', null, null);
    expect(assemble(text)).toEqual([
      { kind: 'change', eventId: '1', txid: '700', time: T, op: 'U', schema: 'public', table: 'orders' },
      { kind: 'value', image: 'old', column: 'id', text: '1', last: true },
      { kind: 'value', image: 'new', column: 'id', text: '1', last: true },
      { kind: 'value', image: 'new', column: 'note', text: null, last: true },
      { kind: 'change', eventId: '2', txid: '701', time: T, op: 'T', schema: 'public', table: 'orders' },
    ]);
  });

  it('streams a value in pieces with the same column', () => {
    const value = 'v'.repeat(5000);
    const tokens = assemble(row('1', '7', T, 'I', 's', 't', 'n', 'c', value), [100, 2000, 4000]);
    const values = tokens.filter((t) => t.kind === 'value');
    expect(values.length).toBeGreaterThan(1);
    expect(values.map((t) => t.text).join('')).toBe(value);
    expect(values.map((t) => t.last)).toEqual([...values.slice(1).map(() => false), true]);
  });

  it.each([
    ['an unknown op', row('1', '7', T, 'X', 's', 't', 'n', 'c', 'v'), /ev_op is "X"; allowed: I, U, D, T/],
    ['an unknown image', row('1', '7', T, 'I', 's', 't', 'z', 'c', 'v'), /image is "z"; allowed: k, n, -/],
    ['a NULL table', row('1', '7', T, 'I', 's', null, 'n', 'c', 'v'), /ev_table is NULL/],
    ['a missing column', copyText([['1', '7', T, 'I', 's', 't', 'n', 'c']]), /a row has 8 columns; batch_values returns 9/],
    ['an id going back', row('2', '7', T, 'I', 's', 't', 'n', 'c', 'v') + row('1', '7', T, 'I', 's', 't', 'n', 'c', 'v'), /ev_id 1 follows 2/],
    ['old after new', row('1', '7', T, 'U', 's', 't', 'n', 'c', 'v') + row('1', '7', T, 'U', 's', 't', 'k', 'c', 'v'), /image k follows image n/],
    ['a value on TRUNCATE', row('1', '7', T, 'T', 's', 't', '-', null, 'v'), /a TRUNCATE event carries a value/],
    ['a new image on TRUNCATE', row('1', '7', T, 'T', 's', 't', 'n', 'c', 'v'), /a TRUNCATE event has a new row image/],
    ['an event changing table', row('1', '7', T, 'I', 's', 't', 'n', 'a', 'v') + row('1', '7', T, 'I', 's', 'u', 'n', 'b', 'v'), /changes its transaction, operation or table/],
  ])('rejects %s', (_name, text, message) => {
    expect(() => assemble(text)).toThrow(InvalidStreamError);
    expect(() => assemble(text)).toThrow(message);
  });
});

describe('batchIdText', () => {
  it('accepts positive bigints in any form and rejects the rest by value', () => {
    expect(batchIdText(42n)).toBe('42');
    expect(batchIdText('9223372036854775807')).toBe('9223372036854775807');
    expect(() => batchIdText('0')).toThrow(InvalidArgumentError);
    expect(() => batchIdText('1; DROP TABLE x')).toThrow(/batch id "1; DROP TABLE x" is not allowed/);
    expect(() => batchIdText('9223372036854775808')).toThrow(/not allowed/);
  });
});
