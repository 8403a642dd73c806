import { describe, expect, it } from 'vitest';
import { lsnValue, mergeChangeItems, parseEnvelope, SUPPORTED_VERSIONS, type ChangeItem } from './envelope.ts';
import { MalformedMessageError, UnsupportedVersionError } from './errors.ts';

const valid = {
  pgfanout: 1,
  source: 'src-1',
  batch: '12',
  prev: '11',
  part: 0,
  time: '2024-05-01T12:00:00Z',
  changes: [
    { op: 'I', schema: 'public', table: 'orders', txid: '77', new: { id: '1', note: null } },
    { op: 'U', schema: 'public', table: 'orders', txid: '78', old: { id: '1' }, new: { id: '2', note: 'x' } },
    { op: 'D', schema: 'public', table: 'orders', txid: '79', old: { id: '2' } },
    { op: 'T', schema: 'public', table: 'orders', txid: '80' },
  ],
  final: true,
  count: 4,
};

const body = (patch: Record<string, unknown>, base: Record<string, unknown> = valid) => JSON.stringify({ ...base, ...patch });
const withChange = (change: unknown) => body({ changes: [change], count: 1 });

describe('parseEnvelope', () => {
  it('accepts a valid message and keeps every value a string', () => {
    const envelope = parseEnvelope(JSON.stringify(valid));
    expect(envelope).toEqual(valid);
  });

  it('rejects an unknown version by name', () => {
    expect(() => parseEnvelope(body({ pgfanout: 2 }))).toThrow(UnsupportedVersionError);
    expect(() => parseEnvelope(body({ pgfanout: 2 }))).toThrow(`unsupported envelope version 2; this applier knows version ${SUPPORTED_VERSIONS.join(', ')}`);
    expect(() => parseEnvelope(body({ pgfanout: '1' }))).toThrow(/unsupported envelope version "1"/);
  });

  it.each([
    ['not JSON', '{"pgfanout":1,', /field body is not JSON/],
    ['an array', '[]', /field body is an array of 0; allowed: a JSON object/],
    ['no version', JSON.stringify({ ...valid, pgfanout: undefined }), /field pgfanout is missing/],
    ['an unknown field', body({ extra: 1 }), /field "extra" is present; allowed: only the fields/],
    ['an empty source', body({ source: '' }), /field source is ""; allowed: a non-empty string/],
    ['a numeric batch', body({ batch: 12 }), /field batch is 12; allowed: a decimal string from "1"/],
    ['a batch above bigint', body({ batch: '9223372036854775808' }), /field batch is "9223372036854775808"/],
    ['batch zero', body({ batch: '0', prev: '0' }), /field batch is "0"/],
    ['a leading zero', body({ batch: '012' }), /field batch is "012"/],
    ['prev not below batch', body({ prev: '12' }), /field prev is "12"; allowed: a decimal string from "0" to "11"/],
    ['a negative part', body({ part: -1 }), /field part is -1; allowed: an integer from 0/],
    ['a fractional part', body({ part: 1.5 }), /field part is 1.5/],
    ['after on part 0', body({ after: '0'.repeat(32) }), /field after is "0{32}"; allowed: absent on part 0/],
    ['no after on part 1', body({ part: 1 }), /field after is missing; allowed: 32 lowercase hex digits/],
    ['final not boolean', body({ final: 'yes' }), /field final is "yes"; allowed: true or false/],
    ['no count on the final part', body({ count: undefined }), /field count is missing; allowed: a non-negative integer on the final part/],
    ['a count on a non-final part', body({ final: false }), /field count is 4; allowed: absent on parts that are not final/],
    ['changes not an array', body({ changes: {} }), /field changes is an object; allowed: an array of changes/],
    ['an unknown op', withChange({ op: 'X', schema: 's', table: 't', txid: '1' }), /field changes\[0\]\.op is "X"; allowed: "I", "U", "D", "T", "S" or "\+"/],
    ['a schema change without new', withChange({ op: 'S', schema: '', table: '', txid: '1' }), /changes\[0\]\.new is missing; allowed: a new image on a "S" change/],
    ['a schema change with old', withChange({ op: 'S', schema: '', table: '', txid: '1', old: {}, new: { sql: 'x', search_path: '' } }), /changes\[0\]\.old is present/],
    ['a schema change without sql', withChange({ op: 'S', schema: '', table: '', txid: '1', new: { search_path: 'public' } }), /changes\[0\]\.new\.sql is missing; allowed: the statement text of a schema change/],
    ['a blank statement', withChange({ op: 'S', schema: '', table: '', txid: '1', new: { sql: ' \n', search_path: '' } }), /changes\[0\]\.new\.sql is " \\n"; allowed: the statement text/],
    ['a NULL search path', withChange({ op: 'S', schema: '', table: '', txid: '1', new: { sql: 'x', search_path: null } }), /changes\[0\]\.new\.search_path is null; allowed: the search path of a schema change/],
    ['an extra key in a schema change', withChange({ op: 'S', schema: '', table: '', txid: '1', new: { sql: 'x', search_path: '', role: 'x' } }), /changes\[0\]\.new\["role"\] is present; allowed: only "sql" and "search_path"/],
    ['a numeric value', withChange({ op: 'I', schema: 's', table: 't', txid: '1', new: { id: 1 } }), /field changes\[0\]\.new\["id"\] is 1; allowed: a string/],
    ['an insert without new', withChange({ op: 'I', schema: 's', table: 't', txid: '1' }), /field changes\[0\]\.new is missing; allowed: a new image on a "I" change/],
    ['a delete with new', withChange({ op: 'D', schema: 's', table: 't', txid: '1', old: { a: '1' }, new: { a: '1' } }), /changes\[0\]\.new is present; allowed: no new image/],
    ['an update without old', withChange({ op: 'U', schema: 's', table: 't', txid: '1', new: { a: '1' } }), /changes\[0\]\.old is missing/],
    ['a truncate with new', withChange({ op: 'T', schema: 's', table: 't', txid: '1', new: {} }), /changes\[0\]\.new is present/],
    ['a truncate whose old names no partition', withChange({ op: 'T', schema: 's', table: 't', txid: '1', old: {} }), /changes\[0\]\.old\.schema is missing; allowed: the truncated partition's schema name/],
    ['a truncate whose partition has a NULL table', withChange({ op: 'T', schema: 's', table: 't', txid: '1', old: { schema: 's', table: null } }), /changes\[0\]\.old\.table is null; allowed: the truncated partition's table name/],
    ['a truncate whose old holds more than a partition', withChange({ op: 'T', schema: 's', table: 't', txid: '1', old: { schema: 's', table: 'p', id: '1' } }), /changes\[0\]\.old\["id"\] is present; allowed: only "schema" and "table"/],
    ['an empty table name', withChange({ op: 'T', schema: 's', table: '', txid: '1' }), /changes\[0\]\.table is ""; allowed: a non-empty name/],
    ['a numeric txid', withChange({ op: 'T', schema: 's', table: 't', txid: 1 }), /changes\[0\]\.txid is 1; allowed: a transaction id as a decimal string/],
    ['an unknown change field', withChange({ op: 'T', schema: 's', table: 't', txid: '1', when: 'now' }), /changes\[0\]\.when is present/],
    ['more not true', withChange({ op: 'T', schema: 's', table: 't', txid: '1', more: false }), /changes\[0\]\.more is false; allowed: absent or true/],
    ['a continuation first in part 0', withChange({ op: '+', new: { a: 'x' } }), /changes\[0\]\.op is "\+"; allowed: a "\+" continuation only after/],
    ['more on the last item of the final part', withChange({ op: 'I', schema: 's', table: 't', txid: '1', new: { a: 'x' }, more: true }), /changes\[0\]\.more is true; allowed: absent on the last item of the final part/],
    ['a head after more', body({ changes: [{ op: 'I', schema: 's', table: 't', txid: '1', new: { a: 'x' }, more: true }, valid.changes[0]], count: 1 }), /changes\[1\]\.op is "I"; allowed: "\+" after an item with "more": true/],
  ])('rejects %s, naming the field, the value and what is allowed', (_name, text, message) => {
    expect(() => parseEnvelope(text)).toThrow(MalformedMessageError);
    expect(() => parseEnvelope(text)).toThrow(message);
  });

  it('accepts an origin and refuses one it cannot read, naming the field', () => {
    const origin = { system: '7301234567890123456', timeline: 3, lsn: '16/B374D848' };
    expect(parseEnvelope(body({ origin })).origin).toEqual(origin);
    for (const [patch, field] of [
      [{ ...origin, system: '-1' }, 'origin.system'],
      [{ ...origin, system: '18446744073709551616' }, 'origin.system'],
      [{ ...origin, timeline: 0 }, 'origin.timeline'],
      [{ ...origin, lsn: '16/b374d848x' }, 'origin.lsn'],
      [{ ...origin, extra: 1 }, 'origin.extra'],
      ['0/1', 'origin'],
    ] as const) {
      expect(() => parseEnvelope(body({ origin: patch }))).toThrow(expect.objectContaining({ field }));
    }
    expect(lsnValue('16/B374D848') > lsnValue('16/B374D847')).toBe(true);
    expect(lsnValue('17/0') > lsnValue('16/FFFFFFFF')).toBe(true);
  });

  it('accepts a schema change, with or without the table it is about', () => {
    const changes = [
      { op: 'S', schema: '', table: '', txid: '5', new: { search_path: '"My Schema", public', sql: 'ALTER TABLE t ADD c int; CREATE TABLE u ()' } },
      { op: 'S', schema: 'public', table: 'orders', txid: '6', new: { search_path: '', sql: 'ALTER TABLE public.orders ADD note2 text' } },
    ];
    expect(parseEnvelope(body({ changes, count: 2 })).changes).toEqual(changes);
  });

  it('accepts a TRUNCATE of one partition, naming it in old, whole or split', () => {
    const change = { op: 'T', schema: 'public', table: 'measure', txid: '7', old: { schema: 'public', table: 'measure_2024' } };
    expect(parseEnvelope(body({ changes: [change], count: 1 })).changes).toEqual([change]);
    const items: ChangeItem[] = [
      { op: 'T', schema: 'public', table: 'measure', txid: '7', old: { schema: 'pub' }, more: true },
      { op: '+', old: { schema: 'lic', table: 'measure_2024' } },
    ];
    expect(mergeChangeItems(items)).toEqual([change]);
    expect(() => mergeChangeItems([{ op: 'T', schema: 'public', table: 'measure', txid: '7', old: { schema: 'public' }, more: true }, { op: '+', old: { tabel: 'x' } }])).toThrow(
      /change item 1\.old\.table is missing; allowed: the truncated partition's table name/,
    );
  });

  it('checks a schema change split across items once it is whole', () => {
    const items: ChangeItem[] = [
      { op: 'S', schema: '', table: '', txid: '5', new: { search_path: 'public', sql: 'ALTER TABLE t ' }, more: true },
      { op: '+', new: { sql: 'ADD c int' } },
    ];
    expect(mergeChangeItems(items)).toEqual([{ op: 'S', schema: '', table: '', txid: '5', new: { search_path: 'public', sql: 'ALTER TABLE t ADD c int' } }]);
    expect(() => mergeChangeItems([{ op: 'S', schema: '', table: '', txid: '5', new: { search_path: 'public' }, more: true }, { op: '+', new: { other: 'x' } }])).toThrow(
      /change item 1\.new\.sql is missing; allowed: the statement text of a schema change/,
    );
  });

  it('rejects a body that is not a string', () => {
    expect(() => parseEnvelope(42)).toThrow(/field body is 42; allowed: a JSON text/);
  });

  it('accepts a continuation first in a later part and a split change across items', () => {
    const envelope = parseEnvelope(
      body({
        part: 3,
        after: 'ab'.repeat(16),
        changes: [
          { op: '+', new: { body: 'rest' } },
          { op: 'I', schema: 's', table: 't', txid: '1', new: { a: 'x' }, more: true },
          { op: '+', new: { a: 'y', b: null } },
        ],
        count: 2,
      }),
    );
    expect(envelope.changes).toHaveLength(3);
  });
});

describe('mergeChangeItems', () => {
  it('concatenates continued values and adds new columns', () => {
    const items: ChangeItem[] = [
      { op: 'U', schema: 's', table: 't', txid: '1', old: { id: '7' }, more: true },
      { op: '+', old: { note: 'ab' }, new: { id: '7' }, more: true },
      { op: '+', new: { note: 'c' } },
      { op: 'T', schema: 's', table: 't', txid: '2' },
    ];
    expect(mergeChangeItems(items)).toEqual([
      { op: 'U', schema: 's', table: 't', txid: '1', old: { id: '7', note: 'ab' }, new: { id: '7', note: 'c' } },
      { op: 'T', schema: 's', table: 't', txid: '2' },
    ]);
  });

  it('keeps a column named __proto__ as data', () => {
    const image = JSON.parse('{"__proto__":"x","id":"1"}') as Record<string, string>;
    const [change] = mergeChangeItems([{ op: 'I', schema: 's', table: 't', txid: '1', new: image }]);
    expect(Object.keys(change?.new ?? {})).toEqual(['__proto__', 'id']);
    expect(Object.getPrototypeOf(change?.new)).toBe(Object.prototype);
  });

  it('refuses an unfinished split change and a continued NULL', () => {
    expect(() => mergeChangeItems([{ op: 'I', schema: 's', table: 't', txid: '1', new: { a: 'x' }, more: true }])).toThrow(/unfinished split change/);
    expect(() =>
      mergeChangeItems([
        { op: 'I', schema: 's', table: 't', txid: '1', new: { a: null }, more: true },
        { op: '+', new: { a: 'x' } },
      ]),
    ).toThrow(/continued NULL/);
  });
});
