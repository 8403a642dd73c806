/**
 * The WAL batcher on pgoutput messages built by hand (protocol version 1, as documented in
 * https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html): what it
 * records, publishes and finishes, the images it writes, and what it refuses.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mergeChangeItems, parseEnvelope } from '../wire/envelope.ts';
import { WalBatcher, type WalAction, type WalBatcherOptions } from './wal-batcher.ts';

const KEY = Buffer.alloc(32, 7);

function int(bytes: number, value: number | bigint): Buffer {
  const b = Buffer.alloc(bytes);
  if (bytes === 8) b.writeBigUInt64BE(BigInt(value));
  else if (bytes === 4) b.writeUInt32BE(Number(value));
  else if (bytes === 2) b.writeInt16BE(Number(value));
  else b.writeUInt8(Number(value));
  return b;
}
const str = (s: string) => Buffer.concat([Buffer.from(s, 'utf8'), Buffer.from([0])]);
type Col = string | null | 'u';
const tuple = (cols: readonly Col[]) =>
  Buffer.concat([
    int(2, cols.length),
    ...cols.map((c) => (c === null ? Buffer.from('n') : c === 'u' ? Buffer.from('u') : Buffer.concat([Buffer.from('t'), int(4, Buffer.byteLength(c)), Buffer.from(c)]))),
  ]);
const begin = (finalLsn: number, xid: number) => Buffer.concat([Buffer.from('B'), int(8, finalLsn), int(8, 0n), int(4, xid)]);
const commit = (commitLsn: number, endLsn: number) => Buffer.concat([Buffer.from('C'), int(1, 0), int(8, commitLsn), int(8, endLsn), int(8, 0n)]);
const relation = (oid: number, schema: string, table: string, cols: readonly [string, boolean][]) =>
  Buffer.concat([Buffer.from('R'), int(4, oid), str(schema), str(table), Buffer.from('d'), int(2, cols.length), ...cols.map(([n, key]) => Buffer.concat([int(1, key ? 1 : 0), str(n), int(4, 25), int(4, 0xffffffff)]))]);
const insert = (oid: number, cols: readonly Col[]) => Buffer.concat([Buffer.from('I'), int(4, oid), Buffer.from('N'), tuple(cols)]);
const update = (oid: number, cols: readonly Col[]) => Buffer.concat([Buffer.from('U'), int(4, oid), Buffer.from('N'), tuple(cols)]);
const message = (xid: number, body: string, key = KEY) => {
  const json = Buffer.from(body);
  const sig = createHash('sha256').update(key).update(String(xid)).update(createHash('sha256').update(json).digest()).digest('hex');
  const content = Buffer.from(`${sig} ${body}`);
  return Buffer.concat([Buffer.from('M'), int(1, 1), int(8, 0n), str('pgfanout'), int(4, content.length), content]);
};

const options = (extra: Partial<WalBatcherOptions> = {}): WalBatcherOptions => ({
  sourceId: 'src',
  maxMessageBytes: 262_144,
  origin: { system: '7', timeline: 1 },
  finishedBatchId: '0',
  messageKey: KEY,
  ...extra,
});

function run(batcher: WalBatcher, rows: readonly Buffer[]): WalAction[] {
  return [...rows.flatMap((r) => batcher.push(r)), ...batcher.end()];
}

const T = relation(16384, 'app', 't', [
  ['id', true],
  ['big', false],
  ['note', false],
]);

describe('WalBatcher', () => {
  it('records, publishes and finishes one batch of whole transactions, leaving unchanged TOASTed columns out of the new image', () => {
    const actions = run(new WalBatcher(options()), [begin(0x100, 5), T, insert(16384, ['1', 'x'.repeat(10), 'a']), commit(0x100, 0x120), begin(0x200, 6), update(16384, ['1', 'u', 'b']), commit(0x200, 0x220)]);
    expect(actions.map((a) => a.kind)).toEqual(['record', 'publish', 'finish']);
    expect(actions[0]).toMatchObject({ batchId: '1', firstLsn: 0x100n, lastLsn: 0x200n });
    expect(actions[2]).toMatchObject({ batchId: '1', endLsn: 0x220n, changes: 2 });
    const published = actions[1] as Extract<WalAction, { kind: 'publish' }>;
    const envelope = parseEnvelope(published.messages[0]?.body);
    expect(envelope.origin).toEqual({ system: '7', timeline: 1, lsn: '0/100' });
    expect(mergeChangeItems(envelope.changes)).toEqual([
      { op: 'I', schema: 'app', table: 't', txid: '5', new: { big: 'xxxxxxxxxx', id: '1', note: 'a' } },
      { op: 'U', schema: 'app', table: 't', txid: '6', old: { id: '1' }, new: { id: '1', note: 'b' } },
    ]);
  });

  it('serves an open batch again with the same bytes, and refuses a stream that does not start with its first transaction', () => {
    const rows = [begin(0x100, 5), T, insert(16384, ['1', 'x', 'a']), commit(0x100, 0x120)];
    const first = run(new WalBatcher(options()), rows);
    const open = { batchId: '1', firstLsn: 0x100n, lastLsn: 0x100n, maxMessageBytes: 262_144, origin: { system: '7', timeline: 1 } };
    const again = run(new WalBatcher(options({ open })), rows);
    expect(again.map((a) => a.kind)).toEqual(['publish', 'finish']);
    expect(again[0]).toEqual(first[1]);
    expect(() => run(new WalBatcher(options({ open: { ...open, firstLsn: 0x90n, lastLsn: 0x90n } })), rows)).toThrow(/the open batch 1 starts with the transaction committed at 0\/90/);
  });

  it('skips transactions that carry nothing published, and those before the last finished batch', () => {
    expect(run(new WalBatcher(options()), [begin(0x100, 5), commit(0x100, 0x120)])).toEqual([{ kind: 'skip', lsn: 0x120n }]);
    const actions = run(new WalBatcher(options({ finishedBatchId: '3', finishedEndLsn: 0x150n })), [begin(0x100, 5), T, insert(16384, ['1', 'x', 'a']), commit(0x100, 0x120), begin(0x200, 6), insert(16384, ['2', 'y', 'b']), commit(0x200, 0x220)]);
    expect(actions.map((a) => a.kind)).toEqual(['record', 'publish', 'finish']);
    expect(actions[0]).toMatchObject({ batchId: '4', firstLsn: 0x200n });
  });

  it('turns a signed message into a schema change, drops changes marked quiet, and leaves out messages it cannot verify', () => {
    const actions = run(new WalBatcher(options()), [
      begin(0x100, 9),
      T,
      message(9, '{"quiet":true}'),
      insert(16384, ['1', 'x', 'replayed by the statement']),
      message(9, '{"quiet":false}'),
      message(9, '{"sql":"ALTER TABLE app.t ADD c int","search_path":"app","schema":"","table":""}'),
      message(9, '{"quiet":true}', Buffer.alloc(32, 1)),
      message(8, '{"sql":"DROP TABLE app.t","search_path":"","schema":"","table":""}'),
      insert(16384, ['2', 'y', 'kept']),
      commit(0x100, 0x120),
    ]);
    expect(actions.filter((a) => a.kind === 'refused')).toHaveLength(2);
    const published = actions.filter((a): a is Extract<WalAction, { kind: 'publish' }> => a.kind === 'publish').flatMap((a) => a.messages);
    const changes = mergeChangeItems(published.flatMap((m) => parseEnvelope(m.body).changes));
    expect(changes.map((c) => `${c.op}:${c.new?.sql ?? c.new?.note}`)).toEqual(['S:ALTER TABLE app.t ADD c int', 'I:kept']);
  });
});
