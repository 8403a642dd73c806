/**
 * The replica's side around the copy. Before it, one transaction checks every table, creates
 * what the replica lacks from the source's definitions (schemas, enum and domain types,
 * sequences, tables with their partitions, constraints and indexes), sets the sequences to the
 * source's values, drops the foreign keys among the replicated tables (they come back after the
 * copy, so neither the copy order nor TRUNCATE trips over them), empties the tables in one
 * TRUNCATE and records the bootstrap. After it, {@link addForeignKeys} creates the source's
 * foreign keys among the replicated tables, in the transaction that records the position.
 */
import type pg from 'pg';
import { qualified, quoteIdent } from '#core/pg/sql.ts';
import { beginBootstrap, recordBootstrap } from '#core/replica/protocol.ts';
import { BOOTSTRAP_ERROR_CODES, BootstrapError, messageOf, sqlState } from './errors.ts';
import {
  addForeignKeyStatement,
  columnProblems,
  createSequenceStatement,
  createTableStatements,
  createTypeStatement,
  REPLICA_COLUMNS_SQL,
  type QualifiedName,
  type SourceTable,
} from './schema.ts';
import { quietTriggers, refuseTriggers } from './session.ts';
import type { Snapshot } from './snapshot.ts';
import type { BootstrapOptions } from './types.ts';

/**
 * Checks and prepares the replica in one transaction (nothing changes when a check fails) and
 * records the bootstrap. Returns the tables it created and those an interrupted run already
 * copied under the same snapshot.
 */
export async function prepareReplica(
  ctl: pg.Client,
  snap: Snapshot,
  o: BootstrapOptions,
  previousExists: boolean,
  log: (line: string) => void,
): Promise<{ created: Set<string>; copied: Set<string> }> {
  const name = o.replicaName;
  await ctl.query('BEGIN');
  try {
    await ctl.query("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)");
    // Locks the source's position; with force, a replica that follows the source forgets it (rolled back with the rest on any failure).
    const following = await beginBootstrap(ctl, snap.sourceId, o.force === true);
    if (following !== null && !o.force) {
      throw new BootstrapError(
        BOOTSTRAP_ERROR_CODES.alreadyFollowing,
        `replica ${name} already follows source ${snap.sourceId} (applied batch ${following}); bootstrap is for a new or empty replica: pass --force to empty its tables and copy them again`,
      );
    }
    const created = new Set<string>();
    const problems: string[] = [];
    const nonEmpty: string[] = [];
    const existing: SourceTable[] = [];
    for (const table of snap.tables) {
      const { rows } = await ctl.query<{ name: string; type: string; not_null: boolean; generated: string; has_default: boolean }>(REPLICA_COLUMNS_SQL, [table.ref.schema, table.ref.table]);
      if (rows.length === 0) {
        created.add(table.name);
        continue;
      }
      existing.push(table);
      problems.push(...columnProblems(table, rows.map((r) => ({ name: r.name, type: r.type, notNull: r.not_null, generated: r.generated, hasDefault: r.has_default }))));
      const { rows: any } = await ctl.query(`SELECT 1 FROM ${qualified(table.ref.schema, table.ref.table)} LIMIT 1`);
      if (any.length > 0) nonEmpty.push(table.name);
    }
    if (problems.length > 0) {
      throw new BootstrapError(BOOTSTRAP_ERROR_CODES.schemaMismatch, `replica ${name}: ${problems.join('; ')}; nothing was changed on the replica`);
    }
    if (nonEmpty.length > 0 && !o.force && !previousExists) {
      throw new BootstrapError(
        BOOTSTRAP_ERROR_CODES.notEmpty,
        `replica ${name}: table(s) ${nonEmpty.join(', ')} hold rows; bootstrap copies into empty tables: pass --force to empty them first`,
      );
    }
    const role = await quietTriggers(ctl, snap.sourceId);
    if (role === 'origin-guard') {
      log('this role may not set session_replication_role: the copy runs under the pgfanout.origin guard, foreign keys are created after it');
      if (o.replicaTriggers !== 'fire') await refuseTriggers(ctl, existing.map((t) => t.ref), name);
      await refuseOwnForeignKeys(ctl, snap, existing, name);
    }
    await createMissing(ctl, snap, created, name, log);
    await dropForeignKeys(ctl, snap, existing, log);
    // Resuming keeps what the interrupted run copied under the same snapshot.
    const kept = await recordBootstrap(ctl, snap.sourceId, snap.batchId, snap.name, snap.resumed, snap.tables.map((t) => t.ref));
    const copied = new Set(snap.resumed ? kept.map((r) => `${r.schema}.${r.table}`) : []);
    const toEmpty = existing.filter((t) => !copied.has(t.name));
    if (toEmpty.some((t) => nonEmpty.includes(t.name))) {
      // Every table not kept, in one statement: foreign keys among them do not stand in the way.
      await ctl.query(`TRUNCATE TABLE ${toEmpty.map((t) => qualified(t.ref.schema, t.ref.table)).join(', ')}`).catch((err: unknown) => {
        const detail = (err as { detail?: string }).detail;
        throw new BootstrapError(
          BOOTSTRAP_ERROR_CODES.notReady,
          `replica ${name}: could not empty ${toEmpty.map((t) => t.name).join(', ')}: ${messageOf(err)}${detail ? ` (${detail})` : ''}` +
            `${sqlState(err) === '0A000' ? '; a table bootstrap does not copy references one of them: drop that foreign key, or bootstrap that table too' : ''}`,
          err,
        );
      });
    }
    await ctl.query('COMMIT');
    return { created, copied };
  } catch (err) {
    await ctl.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}


const key = (n: QualifiedName) => `${n.schema}.${n.name}`;

async function exists(ctl: pg.ClientBase, sql: string, params: unknown[]): Promise<boolean> {
  return (await ctl.query(sql, params)).rows.length > 0;
}

const SCHEMA_EXISTS = 'SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1';
const TYPE_EXISTS = 'SELECT 1 FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE n.nspname = $1 AND t.typname = $2';
const SEQUENCE_EXISTS = "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind = 'S'";
/** Foreign keys of a replica table, by name. */
const FOREIGN_KEY_EXISTS = `
SELECT 1 FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND k.conname = $3 AND k.contype = 'f'`;

/** Runs one DDL statement; a failure names what was being created and the statement. */
async function ddl(ctl: pg.ClientBase, statement: string, what: string, replica: string): Promise<void> {
  await ctl.query(statement).catch((err: unknown) => {
    throw new BootstrapError(BOOTSTRAP_ERROR_CODES.schemaMismatch, `replica ${replica}: could not create ${what} from the source's definition: ${messageOf(err)} (statement: ${statement})`, err);
  });
}

/**
 * Creates, from the source's definitions, what the tables in `created` need and the replica
 * lacks: schemas, enum and domain types, sequences, then the tables; then sets every sequence to
 * the source's value. A type that is neither an enum nor a domain, or belongs to an extension, is
 * named with what to do, before anything is created.
 */
async function createMissing(ctl: pg.ClientBase, snap: Snapshot, created: ReadonlySet<string>, replica: string, log: (line: string) => void): Promise<void> {
  const missingTypes = [];
  const problems: string[] = [];
  for (const t of snap.types) {
    if (await exists(ctl, TYPE_EXISTS, [t.ref.schema, t.ref.name])) continue;
    if (t.extension !== null) problems.push(`type ${key(t.ref)} comes from extension ${t.extension}: run CREATE EXTENSION ${quoteIdent(t.extension)} on the replica`);
    else if (t.kind !== 'e' && t.kind !== 'd') problems.push(`type ${key(t.ref)} is missing; bootstrap creates enum and domain types only: create it on the replica first`);
    else missingTypes.push(t);
  }
  if (problems.length > 0) throw new BootstrapError(BOOTSTRAP_ERROR_CODES.schemaMismatch, `replica ${replica}: ${problems.join('; ')}; nothing was changed on the replica`);
  const tables = snap.tables.filter((t) => created.has(t.name));
  const missingSequences = [];
  for (const q of snap.sequences) {
    if (q.owner?.identity) continue; // comes with its column
    if (!(await exists(ctl, SEQUENCE_EXISTS, [q.ref.schema, q.ref.name]))) missingSequences.push(q);
  }
  const schemas = new Set([
    ...missingTypes.map((t) => t.ref.schema),
    ...missingSequences.map((q) => q.ref.schema),
    ...tables.flatMap((t) => [t.ref.schema, ...t.partitions.map((p) => p.ref.schema)]),
    ...snap.sequences.filter((q) => q.owner?.identity && created.has(key(q.owner.table))).map((q) => q.ref.schema),
  ]);
  for (const schema of [...schemas].sort()) {
    if (!(await exists(ctl, SCHEMA_EXISTS, [schema]))) await ddl(ctl, `CREATE SCHEMA ${quoteIdent(schema)}`, `schema ${schema}`, replica);
  }
  for (const t of missingTypes) await ddl(ctl, createTypeStatement(t), `type ${key(t.ref)}`, replica);
  for (const q of missingSequences) await ddl(ctl, createSequenceStatement(q), `sequence ${key(q.ref)}`, replica);
  for (const table of tables) {
    for (const statement of createTableStatements(table, snap.sequences)) await ddl(ctl, statement, `table ${table.name}`, replica);
  }
  if (missingTypes.length + missingSequences.length > 0) {
    log(`created ${[...missingTypes.map((t) => `type ${key(t.ref)}`), ...missingSequences.map((q) => `sequence ${key(q.ref)}`)].join(', ')}`);
  }
  for (const q of snap.sequences) {
    if (!(await exists(ctl, SEQUENCE_EXISTS, [q.ref.schema, q.ref.name]))) {
      log(`sequence ${key(q.ref)} is not on the replica (an identity column of a table the replica defines otherwise); its value is not set`);
      continue;
    }
    await ctl.query('SELECT pg_catalog.setval($1::pg_catalog.regclass, $2::pg_catalog.int8, $3)', [qualified(q.ref.schema, q.ref.name), q.lastValue, q.isCalled]);
  }
}

/** The source's foreign keys whose both ends bootstrap copies (a key to a partition counts: the partition is copied with its table). */
function copiedForeignKeys(snap: Snapshot): { table: SourceTable; key: SourceTable['foreignKeys'][number] }[] {
  const copied = new Set(snap.tables.flatMap((t) => [t.name, ...t.partitions.map((p) => key(p.ref))]));
  return snap.tables.flatMap((table) => table.foreignKeys.filter((k) => copied.has(key(k.references))).map((k) => ({ table, key: k })));
}

/** Foreign keys of a replica table: name and referenced table. */
const REPLICA_FOREIGN_KEYS = `
SELECT k.conname AS name, rn.nspname AS ref_schema, r.relname AS ref_table
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class c ON c.oid = k.conrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
  JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND k.contype = 'f' AND k.conparentid = 0
 ORDER BY k.conname`;

/**
 * Under the origin guard foreign keys are checked during the copy, whose order does not follow
 * them: the source's keys are dropped and created after it, but a key of the replica's own
 * among the copied tables would fail the copy half way. Refuses it up front, naming it.
 */
async function refuseOwnForeignKeys(ctl: pg.ClientBase, snap: Snapshot, existing: readonly SourceTable[], replica: string): Promise<void> {
  const copied = new Set(snap.tables.flatMap((t) => [t.name, ...t.partitions.map((p) => key(p.ref))]));
  const own: string[] = [];
  for (const table of existing) {
    const { rows } = await ctl.query<{ name: string; ref_schema: string; ref_table: string }>(REPLICA_FOREIGN_KEYS, [table.ref.schema, table.ref.table]);
    for (const k of rows) {
      if (copied.has(`${k.ref_schema}.${k.ref_table}`) && !table.foreignKeys.some((f) => f.name === k.name)) own.push(`${table.name}.${k.name}`);
    }
  }
  if (own.length === 0) return;
  throw new BootstrapError(
    BOOTSTRAP_ERROR_CODES.schemaMismatch,
    `replica ${replica}: foreign key(s) ${own.join(', ')} are the replica's own (the source has none by that name); this role may not set session_replication_role, ` +
      'so they would be checked during the copy, whose order does not follow them. Drop them for the bootstrap, or let the role set session_replication_role ' +
      '(PostgreSQL 15+: GRANT SET ON PARAMETER session_replication_role); nothing was changed on the replica',
  );
}

/** Drops, on existing replica tables, the foreign keys that {@link addForeignKeys} creates again after the copy. */
async function dropForeignKeys(ctl: pg.ClientBase, snap: Snapshot, existing: readonly SourceTable[], log: (line: string) => void): Promise<void> {
  const names = new Set(existing.map((t) => t.name));
  const dropped: string[] = [];
  for (const { table, key: k } of copiedForeignKeys(snap)) {
    if (!names.has(table.name) || !(await exists(ctl, FOREIGN_KEY_EXISTS, [table.ref.schema, table.ref.table, k.name]))) continue;
    await ctl.query(`ALTER TABLE ${qualified(table.ref.schema, table.ref.table)} DROP CONSTRAINT ${quoteIdent(k.name)}`);
    dropped.push(`${table.name}.${k.name}`);
  }
  if (dropped.length > 0) log(`dropped foreign key(s) ${dropped.join(', ')} for the copy; they are created again from the source's definition after it`);
}

/**
 * Creates the source's foreign keys among the copied tables that the replica lacks (by name),
 * after the copy, inside the caller's transaction; says which keys point outside the copied
 * tables and are left out. Returns the keys created.
 */
export async function addForeignKeys(ctl: pg.ClientBase, snap: Snapshot, replica: string, log: (line: string) => void): Promise<string[]> {
  const copied = copiedForeignKeys(snap);
  const left = snap.tables.flatMap((t) => t.foreignKeys.filter((k) => !copied.some((c) => c.key === k)).map((k) => `${t.name}.${k.name} (to ${key(k.references)})`));
  if (left.length > 0) log(`foreign key(s) ${left.join(', ')} not created: they reference tables this bootstrap does not copy`);
  const added: string[] = [];
  for (const { table, key: k } of copied) {
    if (await exists(ctl, FOREIGN_KEY_EXISTS, [table.ref.schema, table.ref.table, k.name])) continue;
    await ddl(ctl, addForeignKeyStatement(table, k), `foreign key ${k.name} of ${table.name}`, replica);
    added.push(`${table.name}.${k.name}`);
  }
  if (added.length > 0) log(`created foreign key(s) ${added.join(', ')}`);
  return added;
}
