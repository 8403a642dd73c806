/**
 * Conflict detection for databases that are each other's replica (lazy multi-master).
 *
 * With `ApplyOptions.conflicts` set to `apply-remote` or `keep-local`, the applier applies each
 * INSERT, UPDATE and DELETE on its own, after looking at the row it would touch:
 *
 * | change | the replica's row | conflict kind |
 * | --- | --- | --- |
 * | INSERT | a row with the same key exists | `insert_exists` |
 * | UPDATE / DELETE | found by identity, but it no longer holds the change's old image in the columns the old image carries | `update_differs` / `delete_differs` |
 * | UPDATE / DELETE | no row has the old identity | `update_missing` / `delete_missing` |
 *
 * Resolution: `apply-remote` applies the incoming change (an INSERT overwrites the row, an UPDATE
 * of a missing row inserts its new row, a DELETE of a missing row does nothing); `keep-local`
 * leaves the replica's row as it is. Either way the conflict is recorded in
 * `pgfanout.replica_conflict` (table, key, position, the replica's row, the change's old and
 * new images) inside the apply transaction, and counted in the result.
 *
 * Two masters converge when one side's applier uses `keep-local` and the other's `apply-remote`:
 * the same master's write wins every conflict, on both sides. (With `apply-remote` on both, two
 * concurrent updates of one row swap values instead.) UPDATE conflicts are only visible in the
 * columns the old image carries: capture the whole old row (`pgfanout.set_old_image(t, 'full')`)
 * to see concurrent updates of non-key columns.
 */
import type pg from 'pg';
import type { RowImage } from '../wire/envelope.ts';
import { qualified, quoteIdent } from '../pg/sql.ts';
import { describeValue, InvalidArgumentError } from '../wire/errors.ts';
import { recordConflict } from './protocol.ts';

/** How the applier treats conflicts. `error`: a missing row or duplicate key is an error (one-way replicas). */
export type ConflictMode = 'error' | 'apply-remote' | 'keep-local';

/** The allowed {@link ConflictMode} values. */
export const CONFLICT_MODES: readonly ConflictMode[] = ['error', 'apply-remote', 'keep-local'];

/** The kinds of conflict recorded in `pgfanout.replica_conflict.kind`. */
export type ConflictKind = 'insert_exists' | 'update_differs' | 'update_missing' | 'delete_differs' | 'delete_missing';

/** Checks a conflict mode option, naming the value and what is allowed. */
export function checkConflictMode(mode: unknown): ConflictMode {
  if (!CONFLICT_MODES.includes(mode as ConflictMode)) {
    throw new InvalidArgumentError(`conflicts ${describeValue(mode)} is not allowed; expected ${CONFLICT_MODES.map((m) => `'${m}'`).join(', ')}`);
  }
  return mode as ConflictMode;
}

/** What the conflict checks need to know about a replica column. */
export interface ConflictColumn {
  /** Quoted type name without typmod. */
  readonly castType: string;
  readonly generated: boolean;
  readonly identity: boolean;
  readonly identityAlways: boolean;
}

/** What the conflict checks need to know about a replica table. */
export interface ConflictTable {
  readonly schema: string;
  readonly table: string;
  /** `schema.table` quoted. */
  readonly quoted: string;
  readonly columns: ReadonlyMap<string, ConflictColumn>;
  /** Unique identities, best first. */
  readonly identities: readonly (readonly string[])[];
}

/** Runs one statement (with the caller's error wrapping). */
export type QueryFn = (sql: string, params: unknown[], what: string) => Promise<pg.QueryResult>;

/** Where a change sits, for the conflict record. */
export interface ConflictPosition {
  readonly sourceId: string;
  readonly batchId: string;
  /** e.g. `part 0 changes[3]`. */
  readonly change: string;
}

/** Builds `$n` placeholders while collecting their values. */
class Params {
  readonly values: unknown[] = [];
  add(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }
}

function typed(table: ConflictTable, params: Params, column: string, value: string | null): string {
  return `${params.add(value)}::pg_catalog.text::${(table.columns.get(column) as ConflictColumn).castType}`;
}

/** `t.c = $n::type AND …` for the key columns, values from `image`. */
function keyMatch(table: ConflictTable, params: Params, key: readonly string[], image: RowImage): string {
  return key.map((c) => `t.${quoteIdent(c)} = ${typed(table, params, c, image[c] ?? null)}`).join(' AND ');
}

/** Every column of `image` compared as text after a round trip through its type (NULLs equal). */
function imageMatch(table: ConflictTable, params: Params, image: RowImage): string {
  const parts = Object.entries(image).map(
    ([c, v]) => `t.${quoteIdent(c)}::pg_catalog.text IS NOT DISTINCT FROM (${typed(table, params, c, v)})::pg_catalog.text`,
  );
  return parts.length === 0 ? 'true' : parts.join(' AND ');
}

function insertSql(table: ConflictTable, params: Params, image: RowImage): string {
  const writable = Object.keys(image).filter((c) => !(table.columns.get(c) as ConflictColumn).generated);
  if (writable.length === 0) return `INSERT INTO ${table.quoted} DEFAULT VALUES`;
  const overriding = writable.some((c) => (table.columns.get(c) as ConflictColumn).identity) ? ' OVERRIDING SYSTEM VALUE' : '';
  return `INSERT INTO ${table.quoted} (${writable.map(quoteIdent).join(', ')})${overriding} VALUES (${writable
    .map((c) => typed(table, params, c, image[c] ?? null))
    .join(', ')})`;
}

function setList(table: ConflictTable, params: Params, image: RowImage): string | undefined {
  const settable = Object.keys(image).filter((c) => {
    const column = table.columns.get(c) as ConflictColumn;
    return !column.generated && !column.identityAlways;
  });
  if (settable.length === 0) return undefined;
  return settable.map((c) => `${quoteIdent(c)} = ${typed(table, params, c, image[c] ?? null)}`).join(', ');
}

/** The best identity all of whose columns `image` carries. */
function keyOf(table: ConflictTable, image: RowImage): readonly string[] | undefined {
  return table.identities.find((identity) => identity.every((c) => Object.hasOwn(image, c)));
}

/** What applying one change found. */
export interface CheckedResult {
  /** The conflict, when there was one. */
  readonly conflict?: ConflictKind;
}

/**
 * Applies one INSERT, UPDATE or DELETE with conflict detection (see the module comment), inside
 * the caller's transaction, locking the row it looks at. Columns of the images must exist in
 * `table` (checked by the caller).
 */
export async function applyChecked(
  query: QueryFn,
  table: ConflictTable,
  op: 'I' | 'U' | 'D',
  old: RowImage | undefined,
  neu: RowImage | undefined,
  mode: 'apply-remote' | 'keep-local',
  position: ConflictPosition,
): Promise<CheckedResult> {
  const display = qualified(table.schema, table.table);
  const record = async (kind: ConflictKind, key: RowImage | undefined, local: string | null): Promise<CheckedResult> => {
    await recordConflict(
      query,
      {
        sourceId: position.sourceId,
        batchId: position.batchId,
        change: position.change,
        schema: table.schema,
        table: table.table,
        op,
        kind,
        resolution: mode,
        key: key === undefined ? null : JSON.stringify(key),
        localRow: local,
        oldRow: old === undefined ? null : JSON.stringify(old),
        newRow: neu === undefined ? null : JSON.stringify(neu),
      },
      `recording a conflict in replica table ${display} (${position.change})`,
    );
    return { conflict: kind };
  };

  if (op === 'I') {
    const image = neu as RowImage;
    const key = keyOf(table, image);
    if (key !== undefined) {
      const p = new Params();
      const found = await query(
        `SELECT pg_catalog.row_to_json(t)::pg_catalog.text AS local FROM ${table.quoted} AS t WHERE ${keyMatch(table, p, key, image)} FOR UPDATE`,
        p.values,
        `looking for the key of an insert into replica table ${display}`,
      );
      const local = found.rows[0] as { local: string } | undefined;
      if (local !== undefined) {
        if (mode === 'apply-remote') {
          const u = new Params();
          const set = setList(table, u, image);
          if (set !== undefined) await query(`UPDATE ${table.quoted} AS t SET ${set} WHERE ${keyMatch(table, u, key, image)}`, u.values, `overwriting a row of replica table ${display}`);
        }
        return record('insert_exists', Object.fromEntries(key.map((c) => [c, image[c] ?? null])), local.local);
      }
    }
    const p = new Params();
    await query(insertSql(table, p, image), p.values, `inserting into replica table ${display}`);
    return {};
  }

  const oldImage = old as RowImage;
  const key = keyOf(table, oldImage);
  const p = new Params();
  const found = await query(
    key !== undefined
      ? `SELECT pg_catalog.row_to_json(t)::pg_catalog.text AS local, t.tableoid::pg_catalog.int8::pg_catalog.text AS toid, t.ctid::pg_catalog.text AS tid,
                (${imageMatch(table, p, oldImage)}) AS same
           FROM ${table.quoted} AS t WHERE ${keyMatch(table, p, key, oldImage)} FOR UPDATE`
      : `SELECT pg_catalog.row_to_json(t)::pg_catalog.text AS local, t.tableoid::pg_catalog.int8::pg_catalog.text AS toid, t.ctid::pg_catalog.text AS tid,
                true AS same
           FROM ${table.quoted} AS t WHERE ${imageMatch(table, p, oldImage)} LIMIT 1 FOR UPDATE`,
    p.values,
    `looking for the row of ${op === 'U' ? 'an update' : 'a delete'} in replica table ${display}`,
  );
  const row = found.rows[0] as { local: string; toid: string; tid: string; same: boolean } | undefined;
  const keyImage = key === undefined ? oldImage : Object.fromEntries(key.map((c) => [c, oldImage[c] ?? null]));
  const write = async (): Promise<void> => {
    const target = row as { toid: string; tid: string };
    const w = new Params();
    const at = `t.tableoid = ${w.add(target.toid)}::pg_catalog.oid AND t.ctid = ${w.add(target.tid)}::pg_catalog.tid`;
    if (op === 'D') {
      await query(`DELETE FROM ${table.quoted} AS t WHERE ${at}`, w.values, `deleting from replica table ${display}`);
      return;
    }
    const set = setList(table, w, neu as RowImage);
    if (set !== undefined) await query(`UPDATE ${table.quoted} AS t SET ${set} WHERE ${at}`, w.values, `updating replica table ${display}`);
  };
  if (row === undefined) {
    if (mode === 'apply-remote' && op === 'U') {
      const i = new Params();
      await query(insertSql(table, i, neu as RowImage), i.values, `inserting the updated row into replica table ${display}`);
    }
    return record(op === 'U' ? 'update_missing' : 'delete_missing', keyImage, null);
  }
  if (row.same) {
    await write();
    return {};
  }
  if (mode === 'apply-remote') await write();
  return record(op === 'U' ? 'update_differs' : 'delete_differs', keyImage, row.local);
}
