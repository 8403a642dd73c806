/**
 * Decoder of pgoutput's binary messages, logical replication protocol version 1, as
 * PostgreSQL documents them in "Logical Replication Message Formats"
 * (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html):
 * Begin `B`, Commit `C`, Origin `O`, Relation `R`, Type `Y`, Insert `I`, Update `U`, Delete
 * `D`, Truncate `T` and (PostgreSQL 14+, option `messages`) Message `M`. Integers are big-endian;
 * strings are NUL-terminated (UTF-8: the source database's encoding must be UTF8, as pgfanout
 * requires); LSNs are Int64; timestamps are microseconds since 2000-01-01 00:00 UTC.
 *
 * Tuple data: Int16 number of columns, then per column a kind byte: `n` NULL, `u` an unchanged
 * TOASTed value (not sent), `t` text (Int32 length + the value in the type's text output),
 * `b` binary (not requested by pgfanout, refused here).
 */
import { InvalidStreamError } from '../wire/errors.ts';

/** One column of a tuple: its text, null for SQL NULL, or `unchanged` (a TOASTed value not sent). */
export type TupleValue = string | null | typeof UNCHANGED;
/** The `u` kind of a tuple column: the value did not change and was not sent. */
export const UNCHANGED: unique symbol = Symbol('pgoutput.unchanged');

export interface RelationColumn {
  readonly name: string;
  /** Part of the replica identity (flag 1 in the Relation message). */
  readonly key: boolean;
  readonly typeOid: number;
}

export type PgoutputMessage =
  | { readonly tag: 'begin'; readonly finalLsn: bigint; readonly commitTime: bigint; readonly xid: number }
  | { readonly tag: 'commit'; readonly commitLsn: bigint; readonly endLsn: bigint; readonly commitTime: bigint }
  | { readonly tag: 'origin'; readonly lsn: bigint; readonly name: string }
  | {
      readonly tag: 'relation';
      readonly oid: number;
      readonly schema: string;
      readonly table: string;
      /** `d` default, `n` nothing, `f` full, `i` index. */
      readonly replicaIdentity: string;
      readonly columns: readonly RelationColumn[];
    }
  | { readonly tag: 'type'; readonly oid: number }
  | { readonly tag: 'insert'; readonly relation: number; readonly new: readonly TupleValue[] }
  | {
      readonly tag: 'update';
      readonly relation: number;
      /** `K`: the old key (non-key columns NULL); `O`: the whole old row (REPLICA IDENTITY FULL). */
      readonly oldKind?: 'K' | 'O';
      readonly old?: readonly TupleValue[];
      readonly new: readonly TupleValue[];
    }
  | { readonly tag: 'delete'; readonly relation: number; readonly oldKind: 'K' | 'O'; readonly old: readonly TupleValue[] }
  | { readonly tag: 'truncate'; readonly relations: readonly number[]; readonly cascade: boolean; readonly restartIdentity: boolean }
  | { readonly tag: 'message'; readonly transactional: boolean; readonly lsn: bigint; readonly prefix: string; readonly content: Buffer };

const utf8 = new TextDecoder('utf-8', { fatal: true });

class Reader {
  #at = 0;
  readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }
  fail(reason: string): never {
    throw new InvalidStreamError(`pgoutput message ${JSON.stringify(String.fromCharCode(this.buf[0] ?? 0))} (${this.buf.length} bytes): ${reason} at byte ${this.#at}`);
  }
  need(n: number): void {
    if (this.#at + n > this.buf.length) this.fail(`${n} more bytes expected, the message ends`);
  }
  u8(): number {
    this.need(1);
    return this.buf[this.#at++] as number;
  }
  i16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.#at);
    this.#at += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.#at);
    this.#at += 4;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.#at);
    this.#at += 4;
    return v;
  }
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.#at);
    this.#at += 8;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.#at);
    this.#at += 8;
    return v;
  }
  text(n: number): string {
    this.need(n);
    const bytes = this.buf.subarray(this.#at, this.#at + n);
    this.#at += n;
    try {
      return utf8.decode(bytes);
    } catch {
      return this.fail('text that is not valid UTF-8 (pgfanout needs a UTF8 source database)');
    }
  }
  bytes(n: number): Buffer {
    this.need(n);
    const b = this.buf.subarray(this.#at, this.#at + n);
    this.#at += n;
    return b;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.#at);
    if (end < 0) this.fail('a string without its terminating NUL');
    const text = this.text(end - this.#at);
    this.#at++;
    return text;
  }
  tuple(): TupleValue[] {
    const n = this.i16();
    const values: TupleValue[] = new Array<TupleValue>(n);
    for (let i = 0; i < n; i++) {
      const kind = this.u8();
      if (kind === 0x6e /* n */) values[i] = null;
      else if (kind === 0x75 /* u */) values[i] = UNCHANGED;
      else if (kind === 0x74 /* t */) values[i] = this.text(this.i32());
      else this.fail(`column ${i + 1} of kind ${JSON.stringify(String.fromCharCode(kind))}; expected n, u or t (pgfanout reads values as text)`);
    }
    return values;
  }
  end(): void {
    if (this.#at !== this.buf.length) this.fail(`${this.buf.length - this.#at} bytes left after the message`);
  }
}

/** Decodes one pgoutput message (protocol version 1, no streaming). */
export function decodePgoutput(buf: Buffer): PgoutputMessage {
  const r = new Reader(buf);
  const tag = String.fromCharCode(r.u8());
  let m: PgoutputMessage;
  switch (tag) {
    case 'B':
      m = { tag: 'begin', finalLsn: r.u64(), commitTime: r.i64(), xid: r.u32() };
      break;
    case 'C':
      r.u8(); // flags, unused
      m = { tag: 'commit', commitLsn: r.u64(), endLsn: r.u64(), commitTime: r.i64() };
      break;
    case 'O':
      m = { tag: 'origin', lsn: r.u64(), name: r.cstring() };
      break;
    case 'R': {
      const oid = r.u32();
      const schema = r.cstring();
      const table = r.cstring();
      const replicaIdentity = String.fromCharCode(r.u8());
      const n = r.i16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < n; i++) {
        const flags = r.u8();
        const name = r.cstring();
        const typeOid = r.u32();
        r.i32(); // type modifier
        columns.push({ name, key: (flags & 1) === 1, typeOid });
      }
      // "Namespace (empty string for pg_catalog)".
      m = { tag: 'relation', oid, schema: schema === '' ? 'pg_catalog' : schema, table, replicaIdentity, columns };
      break;
    }
    case 'Y':
      m = { tag: 'type', oid: r.u32() };
      r.cstring();
      r.cstring();
      break;
    case 'I': {
      const relation = r.u32();
      if (r.u8() !== 0x4e /* N */) r.fail('an Insert without its new tuple (N)');
      m = { tag: 'insert', relation, new: r.tuple() };
      break;
    }
    case 'U': {
      const relation = r.u32();
      let kind = String.fromCharCode(r.u8());
      let old: TupleValue[] | undefined;
      let oldKind: 'K' | 'O' | undefined;
      if (kind === 'K' || kind === 'O') {
        oldKind = kind;
        old = r.tuple();
        kind = String.fromCharCode(r.u8());
      }
      if (kind !== 'N') r.fail(`an Update with ${JSON.stringify(kind)} where its new tuple (N) belongs`);
      m = { tag: 'update', relation, ...(oldKind ? { oldKind, old } : {}), new: r.tuple() } as PgoutputMessage;
      break;
    }
    case 'D': {
      const relation = r.u32();
      const kind = String.fromCharCode(r.u8());
      if (kind !== 'K' && kind !== 'O') r.fail(`a Delete with ${JSON.stringify(kind)} where its old tuple (K or O) belongs`);
      m = { tag: 'delete', relation, oldKind: kind as 'K' | 'O', old: r.tuple() };
      break;
    }
    case 'T': {
      const n = r.i32();
      const options = r.u8();
      const relations: number[] = [];
      for (let i = 0; i < n; i++) relations.push(r.u32());
      m = { tag: 'truncate', relations, cascade: (options & 1) === 1, restartIdentity: (options & 2) === 2 };
      break;
    }
    case 'M': {
      const flags = r.u8();
      const lsn = r.u64();
      const prefix = r.cstring();
      const content = r.bytes(r.i32());
      m = { tag: 'message', transactional: (flags & 1) === 1, lsn, prefix, content };
      break;
    }
    default:
      return r.fail('an unknown message type (pgfanout reads protocol version 1 without streaming)');
  }
  r.end();
  return m;
}

/** An LSN as `pg_lsn` prints it (`16/B374D848`). */
export function lsnText(lsn: bigint): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** A pgoutput timestamp (microseconds since 2000-01-01 UTC) as ISO 8601 with microseconds. */
export function pgTimestampText(micros: bigint): string {
  const EPOCH_2000_MS = 946_684_800_000n;
  const totalMicros = micros + EPOCH_2000_MS * 1000n;
  const ms = totalMicros / 1000n - (totalMicros % 1000n < 0n ? 1n : 0n);
  const iso = new Date(Number(ms)).toISOString(); // …T12:00:00.123Z
  const micro = ((totalMicros % 1_000_000n) + 1_000_000n) % 1_000_000n;
  return `${iso.slice(0, 19)}.${micro.toString().padStart(6, '0')}Z`;
}
