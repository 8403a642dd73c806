/**
 * The replicated tables' schema: read from the source's catalog under the snapshot (tables,
 * partitions, constraints, indexes, foreign keys, the enum and domain types and the sequences
 * they use, through the server's own pg_get_*def functions), compared with an existing replica
 * table, and turned into the DDL that creates what the replica lacks. Names are quoted here with
 * the one quoting helper; expressions and definitions are the server's.
 */
import pg from 'pg';
import { qualified, quoteIdent } from '#core/pg/sql.ts';
import type { TableRef } from '../verify.ts';
import { BOOTSTRAP_ERROR_CODES, BootstrapError, messageOf } from './errors.ts';

/** A schema-qualified name, unquoted. */
export interface QualifiedName {
  readonly schema: string;
  readonly name: string;
}

/** A column as the source defines it. */
export interface SourceColumn {
  readonly name: string;
  /** format_type() under search_path = pg_catalog: schema-qualified outside pg_catalog. */
  readonly type: string;
  readonly notNull: boolean;
  /** '' | 's' (stored) | 'v' (virtual, PostgreSQL 18). */
  readonly generated: string;
  /** '' | 'a' (GENERATED ALWAYS AS IDENTITY) | 'd' (BY DEFAULT). */
  readonly identity: string;
  /** The default (or generation) expression, pg_get_expr under search_path = pg_catalog. */
  readonly expression: string | null;
  /** A collation other than the type's. */
  readonly collation: QualifiedName | null;
}

/** A constraint kept with its table: PRIMARY KEY, UNIQUE, EXCLUDE or CHECK (pg_get_constraintdef). */
export interface SourceConstraint {
  readonly name: string;
  readonly definition: string;
}

/** An index not backing a constraint. */
export interface SourceIndex {
  readonly name: string;
  readonly unique: boolean;
  /** What follows `USING ` in pg_get_indexdef: method, columns, INCLUDE, WITH, WHERE. */
  readonly using: string;
}

/** A partition (at any depth) of a replicated partitioned table. */
export interface SourcePartition {
  readonly ref: QualifiedName;
  readonly parent: QualifiedName;
  /** pg_get_expr(relpartbound): `FOR VALUES …` or `DEFAULT`. */
  readonly bound: string;
  /** pg_get_partkeydef when the partition is itself partitioned. */
  readonly partitionKey: string | null;
  /** Constraints defined on the partition itself (not cloned from its parent). */
  readonly constraints: readonly SourceConstraint[];
  /** Indexes of the partition itself (not partitions of its parent's indexes). */
  readonly indexes: readonly SourceIndex[];
}

/** A foreign key of a replicated table (created on the replica after the copy). */
export interface SourceForeignKey {
  readonly name: string;
  readonly definition: string;
  readonly references: QualifiedName;
}

/** A replicated table as the source defines it, read under the snapshot. */
export interface SourceTable {
  readonly ref: TableRef;
  readonly name: string;
  readonly oid: string;
  readonly partitioned: boolean;
  /** pg_get_partkeydef for a partitioned table. */
  readonly partitionKey: string | null;
  readonly estimate: number | null;
  readonly columns: readonly SourceColumn[];
  readonly constraints: readonly SourceConstraint[];
  readonly indexes: readonly SourceIndex[];
  /** Its partitions, every level, each after its parent. */
  readonly partitions: readonly SourcePartition[];
  readonly foreignKeys: readonly SourceForeignKey[];
}

/** A type a replicated column uses that lives outside pg_catalog. */
export interface SourceType {
  readonly ref: QualifiedName;
  /** 'e' enum, 'd' domain; anything else (composite, range, base) bootstrap does not create. */
  readonly kind: string;
  /** The extension that owns the type (the replica needs the extension, not the type). */
  readonly extension: string | null;
  readonly labels: readonly string[];
  /** Domain: base type (format_type), collation, default, NOT NULL, CHECK constraints. */
  readonly baseType: string | null;
  readonly collation: QualifiedName | null;
  readonly defaultExpression: string | null;
  readonly notNull: boolean;
  readonly constraints: readonly SourceConstraint[];
}

/** A sequence a replicated table uses: owned by a column (serial, identity) or named in a default. */
export interface SourceSequence {
  readonly ref: QualifiedName;
  /** Data type, format_type. */
  readonly type: string;
  readonly start: string;
  readonly increment: string;
  readonly min: string;
  readonly max: string;
  readonly cache: string;
  readonly cycle: boolean;
  /** The column that owns it: created with the table (identity) or attached after it (serial). */
  readonly owner: { readonly table: QualifiedName; readonly column: string; readonly identity: boolean } | null;
  /** Its value when the snapshot was taken (sequences are not transactional: at least every value the copied rows hold). */
  readonly lastValue: string;
  readonly isCalled: boolean;
}

/** Everything bootstrap reads of the source's schema. */
export interface SourceSchema {
  readonly tables: readonly SourceTable[];
  /** Dependencies first (a domain's base type before the domain). */
  readonly types: readonly SourceType[];
  readonly sequences: readonly SourceSequence[];
}

const SOURCE_TABLES_SQL = `
SELECT t.table_schema AS schema, t.table_name AS table, c.oid::pg_catalog.int8 AS oid, c.relkind = 'p' AS partitioned,
       CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partition_key,
       (SELECT pg_catalog.sum(GREATEST(k.reltuples, 0))::pg_catalog.float8
          FROM pg_catalog.pg_class k
         WHERE k.oid = c.oid OR k.oid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree(c.oid) p)) AS estimate
  FROM pgfanout.show_tables() t
  JOIN pg_catalog.pg_namespace n ON n.nspname = t.table_schema
  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
 ORDER BY 1, 2`;

const COLUMNS_SQL = `
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.attgenerated::pg_catalog.text AS generated, a.attidentity::pg_catalog.text AS identity,
       pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS expression,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation THEN cn.nspname END AS collation_schema,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation THEN co.collname END AS collation_name
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
 WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`;

/** Constraints made on the table itself (a partition's cloned ones come from its parent); NOT NULL rows (PostgreSQL 18) are columns' business. */
const CONSTRAINTS_SQL = `
SELECT conname AS name, pg_catalog.pg_get_constraintdef(oid) AS definition
  FROM pg_catalog.pg_constraint
 WHERE conrelid = $1::pg_catalog.oid AND contype IN ('p', 'u', 'x', 'c') AND conislocal AND conparentid = 0
 ORDER BY contype = 'c', contype, conname`;

/**
 * Indexes that no constraint owns and that are not a partition of the parent's index. The server
 * prints the part after USING; the name and the table are quoted here. A partitioned table's
 * index prints as \`ON ONLY\` (which would leave the partitions without it): left out on purpose.
 */
const INDEXES_SQL = `
SELECT ic.relname AS name, i.indisunique AS unique,
       pg_catalog.pg_get_indexdef(i.indexrelid) AS definition,
       pg_catalog.format('CREATE %sINDEX %I ON %s%I.%I USING ', CASE WHEN i.indisunique THEN 'UNIQUE ' ELSE '' END, ic.relname,
                         CASE WHEN tc.relkind = 'p' THEN 'ONLY ' ELSE '' END, tn.nspname, tc.relname) AS prefix
  FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
 WHERE i.indrelid = $1::pg_catalog.oid AND NOT ic.relispartition
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)
 ORDER BY ic.relname`;

/** Partitions of every level, parents first. */
const PARTITIONS_SQL = `
WITH RECURSIVE tree(oid, parent, depth) AS (
  SELECT i.inhrelid, i.inhparent, 1 FROM pg_catalog.pg_inherits i WHERE i.inhparent = $1::pg_catalog.oid
  UNION ALL
  SELECT i.inhrelid, i.inhparent, t.depth + 1 FROM pg_catalog.pg_inherits i JOIN tree t ON i.inhparent = t.oid
)
SELECT t.oid::pg_catalog.int8 AS oid, n.nspname AS schema, c.relname AS table, pn.nspname AS parent_schema, p.relname AS parent_table,
       pg_catalog.pg_get_expr(c.relpartbound, c.oid) AS bound,
       CASE WHEN c.relkind = 'p' THEN pg_catalog.pg_get_partkeydef(c.oid) END AS partition_key
  FROM tree t
  JOIN pg_catalog.pg_class c ON c.oid = t.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_class p ON p.oid = t.parent
  JOIN pg_catalog.pg_namespace pn ON pn.oid = p.relnamespace
 WHERE c.relispartition
 ORDER BY t.depth, n.nspname, c.relname`;

const FOREIGN_KEYS_SQL = `
SELECT k.conname AS name, pg_catalog.pg_get_constraintdef(k.oid) AS definition, rn.nspname AS ref_schema, r.relname AS ref_table
  FROM pg_catalog.pg_constraint k
  JOIN pg_catalog.pg_class r ON r.oid = k.confrelid
  JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
 WHERE k.conrelid = $1::pg_catalog.oid AND k.contype = 'f' AND k.conparentid = 0
 ORDER BY k.conname`;

/**
 * Types the columns use, followed through arrays and domains, outside pg_catalog and
 * information_schema; the deepest dependency first.
 */
const TYPES_SQL = `
WITH RECURSIVE used(oid, depth) AS (
  SELECT a.atttypid, 0 FROM pg_catalog.pg_attribute a
   WHERE a.attrelid = ANY($1::pg_catalog.oid[]) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END, u.depth + 1
    FROM used u JOIN pg_catalog.pg_type t ON t.oid = u.oid
   WHERE u.depth < 20 AND (t.typtype = 'd' OR (t.typelem <> 0 AND t.typlen = -1))
)
SELECT n.nspname AS schema, t.typname AS name, t.typtype::pg_catalog.text AS kind,
       (SELECT e.extname FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
         WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.objid = t.oid AND d.deptype = 'e' LIMIT 1) AS extension,
       ARRAY(SELECT l.enumlabel::pg_catalog.text FROM pg_catalog.pg_enum l WHERE l.enumtypid = t.oid ORDER BY l.enumsortorder) AS labels,
       CASE WHEN t.typtype = 'd' THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) END AS base_type,
       CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <> bt.typcollation THEN cn.nspname END AS collation_schema,
       CASE WHEN t.typtype = 'd' AND t.typcollation <> 0 AND t.typcollation <> bt.typcollation THEN co.collname END AS collation_name,
       pg_catalog.pg_get_expr(t.typdefaultbin, 0) AS default_expression, t.typnotnull AS not_null,
       ARRAY(SELECT pg_catalog.json_build_object('name', k.conname, 'definition', pg_catalog.pg_get_constraintdef(k.oid))::pg_catalog.text
               FROM pg_catalog.pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'c' ORDER BY k.conname) AS constraints
  FROM (SELECT oid, pg_catalog.max(depth) AS depth FROM used GROUP BY oid) u
  JOIN pg_catalog.pg_type t ON t.oid = u.oid
  JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
  LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype
  LEFT JOIN pg_catalog.pg_collation co ON co.oid = t.typcollation
  LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND NOT (t.typelem <> 0 AND t.typlen = -1)
 ORDER BY u.depth DESC, n.nspname, t.typname`;

/** Sequences the tables' defaults name, and the identity sequences of their columns. */
const SEQUENCES_SQL = `
WITH wanted AS (
  SELECT dep.refobjid AS oid
    FROM pg_catalog.pg_attrdef d
    JOIN pg_catalog.pg_depend dep ON dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dep.objid = d.oid
     AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
   WHERE d.adrelid = ANY($1::pg_catalog.oid[])
  UNION
  SELECT dep.objid FROM pg_catalog.pg_depend dep
   WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
     AND dep.refobjid = ANY($1::pg_catalog.oid[]) AND dep.deptype = 'i'
)
SELECT n.nspname AS schema, c.relname AS name, pg_catalog.format_type(s.seqtypid, NULL) AS type,
       s.seqstart::pg_catalog.text AS start, s.seqincrement::pg_catalog.text AS increment, s.seqmin::pg_catalog.text AS min,
       s.seqmax::pg_catalog.text AS max, s.seqcache::pg_catalog.text AS cache, s.seqcycle AS cycle,
       own.schema AS owner_schema, own.table AS owner_table, own.column AS owner_column, own.identity AS owner_identity
  FROM wanted w
  JOIN pg_catalog.pg_sequence s ON s.seqrelid = w.oid
  JOIN pg_catalog.pg_class c ON c.oid = s.seqrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN LATERAL (
    SELECT tn.nspname AS schema, t.relname AS table, a.attname AS column, dep.deptype = 'i' AS identity
      FROM pg_catalog.pg_depend dep
      JOIN pg_catalog.pg_class t ON t.oid = dep.refobjid
      JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
      JOIN pg_catalog.pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
     WHERE dep.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND dep.objid = s.seqrelid
       AND dep.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND dep.deptype IN ('a', 'i')
     LIMIT 1) own ON true
 ORDER BY n.nspname, c.relname`;

type Row = Record<string, unknown>;

function collationOf(r: Row): QualifiedName | null {
  return typeof r.collation_schema === 'string' && typeof r.collation_name === 'string' ? { schema: r.collation_schema, name: r.collation_name } : null;
}

async function constraintsOf(client: pg.ClientBase, oid: string): Promise<SourceConstraint[]> {
  return (await client.query<{ name: string; definition: string }>(CONSTRAINTS_SQL, [oid])).rows;
}

async function indexesOf(client: pg.ClientBase, oid: string, table: string): Promise<SourceIndex[]> {
  const { rows } = await client.query<{ name: string; unique: boolean; definition: string; prefix: string }>(INDEXES_SQL, [oid]);
  return rows.map((r) => {
    if (!r.definition.startsWith(r.prefix)) {
      throw new BootstrapError(BOOTSTRAP_ERROR_CODES.notReady, `index ${r.name} of ${table}: the source printed "${r.definition}", which does not start with "${r.prefix}"`);
    }
    return { name: r.name, unique: r.unique, using: r.definition.slice(r.prefix.length) };
  });
}

/** Reads the replicated tables, their partitions, the types and sequences they use (inside the snapshot's transaction). */
export async function readSourceSchema(client: pg.ClientBase, wanted: readonly TableRef[] | undefined): Promise<SourceSchema> {
  // Everything format_type / pg_get_expr / pg_get_*def print is schema-qualified outside pg_catalog.
  await client.query("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)");
  const { rows } = await client.query<{ schema: string; table: string; oid: string; partitioned: boolean; partition_key: string | null; estimate: number | null }>(SOURCE_TABLES_SQL);
  let chosen = rows;
  if (wanted !== undefined) {
    const captured = new Map(rows.map((r) => [`${r.schema}.${r.table}`, r]));
    const missing = wanted.filter((t) => !captured.has(`${t.schema}.${t.table}`));
    if (missing.length > 0) {
      throw new BootstrapError(
        BOOTSTRAP_ERROR_CODES.notReady,
        `table(s) ${missing.map((t) => qualified(t.schema, t.table)).join(', ')} are not captured on the source; captured tables: ${rows.map((r) => qualified(r.schema, r.table)).join(', ') || 'none'} (pgfanout add-table adds one)`,
      );
    }
    chosen = wanted.map((t) => captured.get(`${t.schema}.${t.table}`) as (typeof rows)[number]);
  }
  if (chosen.length === 0) throw new BootstrapError(BOOTSTRAP_ERROR_CODES.notReady, 'the source captures no tables: nothing to copy (pgfanout add-table adds one)');
  const tables: SourceTable[] = [];
  const oids: string[] = [];
  for (const r of chosen) {
    const name = `${r.schema}.${r.table}`;
    const columns = await client.query(COLUMNS_SQL, [r.oid]);
    const partitions: SourcePartition[] = [];
    if (r.partitioned) {
      const parts = await client.query<{ oid: string; schema: string; table: string; parent_schema: string; parent_table: string; bound: string; partition_key: string | null }>(PARTITIONS_SQL, [r.oid]);
      for (const p of parts.rows) {
        oids.push(p.oid);
        partitions.push({
          ref: { schema: p.schema, name: p.table },
          parent: { schema: p.parent_schema, name: p.parent_table },
          bound: p.bound,
          partitionKey: p.partition_key,
          constraints: await constraintsOf(client, p.oid),
          indexes: await indexesOf(client, p.oid, `${p.schema}.${p.table}`),
        });
      }
    }
    oids.push(r.oid);
    const foreignKeys = await client.query<{ name: string; definition: string; ref_schema: string; ref_table: string }>(FOREIGN_KEYS_SQL, [r.oid]);
    tables.push({
      ref: { schema: r.schema, table: r.table },
      name,
      oid: r.oid,
      partitioned: r.partitioned,
      partitionKey: r.partition_key,
      estimate: r.estimate !== null && r.estimate > 0 ? r.estimate : null,
      columns: columns.rows.map((c: Row) => ({
        name: c.name as string,
        type: c.type as string,
        notNull: c.not_null as boolean,
        generated: c.generated as string,
        identity: c.identity as string,
        expression: c.expression as string | null,
        collation: collationOf(c),
      })),
      constraints: await constraintsOf(client, r.oid),
      indexes: await indexesOf(client, r.oid, name),
      partitions,
      foreignKeys: foreignKeys.rows.map((k) => ({ name: k.name, definition: k.definition, references: { schema: k.ref_schema, name: k.ref_table } })),
    });
  }
  const types = (await client.query(TYPES_SQL, [oids])).rows.map((t: Row): SourceType => ({
    ref: { schema: t.schema as string, name: t.name as string },
    kind: t.kind as string,
    extension: t.extension as string | null,
    labels: t.labels as string[],
    baseType: t.base_type as string | null,
    collation: collationOf(t),
    defaultExpression: t.default_expression as string | null,
    notNull: t.not_null as boolean,
    constraints: (t.constraints as string[]).map((k) => JSON.parse(k) as SourceConstraint),
  }));
  const sequences: SourceSequence[] = [];
  for (const q of (await client.query(SEQUENCES_SQL, [oids])).rows as Row[]) {
    const ref = { schema: q.schema as string, name: q.name as string };
    // Sequences are not transactional: this is the value now, at least every value a copied row holds.
    const value = await client
      .query<{ last_value: string; is_called: boolean }>(`SELECT last_value::pg_catalog.text AS last_value, is_called FROM ${qualified(ref.schema, ref.name)}`)
      .catch((err: unknown) => {
        throw new BootstrapError(
          BOOTSTRAP_ERROR_CODES.notReady,
          `source: cannot read sequence ${ref.schema}.${ref.name} (${messageOf(err)}); the bootstrapping role needs SELECT on it`,
          err,
        );
      });
    sequences.push({
      ref,
      type: q.type as string,
      start: q.start as string,
      increment: q.increment as string,
      min: q.min as string,
      max: q.max as string,
      cache: q.cache as string,
      cycle: q.cycle as boolean,
      owner:
        typeof q.owner_table === 'string'
          ? { table: { schema: q.owner_schema as string, name: q.owner_table }, column: q.owner_column as string, identity: q.owner_identity as boolean }
          : null,
      lastValue: value.rows[0]?.last_value as string,
      isCalled: value.rows[0]?.is_called as boolean,
    });
  }
  return { tables, types, sequences };
}

export interface ReplicaColumn {
  readonly name: string;
  readonly type: string;
  readonly notNull: boolean;
  readonly generated: string;
  readonly hasDefault: boolean;
}

export const REPLICA_COLUMNS_SQL = `
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.attgenerated::pg_catalog.text AS generated, (a.atthasdef OR a.attidentity <> '') AS has_default
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`;

/** Why an existing replica table cannot take the source's rows; empty when it can. */
export function columnProblems(table: SourceTable, replica: readonly ReplicaColumn[]): string[] {
  const problems: string[] = [];
  const byName = new Map(replica.map((c) => [c.name, c]));
  for (const c of table.columns) {
    const r = byName.get(c.name);
    if (r === undefined) problems.push(`has no column ${quoteIdent(c.name)} (source: ${c.type})`);
    else if (r.type !== c.type) problems.push(`column ${quoteIdent(c.name)} is ${r.type} on the replica, ${c.type} on the source`);
    else if ((r.generated === '') !== (c.generated === '')) {
      problems.push(`column ${quoteIdent(c.name)} is ${r.generated === '' ? 'not generated' : 'generated'} on the replica, ${c.generated === '' ? 'not generated' : 'generated'} on the source`);
    }
  }
  const source = new Set(table.columns.map((c) => c.name));
  for (const r of replica) {
    if (!source.has(r.name) && r.notNull && !r.hasDefault && r.generated === '') {
      problems.push(`column ${quoteIdent(r.name)} exists only on the replica and is NOT NULL without a default, so no source row fits`);
    }
  }
  return problems.map((p) => `table ${table.name} ${p}`);
}

function qualifiedName(n: QualifiedName): string {
  return qualified(n.schema, n.name);
}

/** A whole number as the catalog prints it, checked before it goes into DDL. */
function integerText(value: string, what: string): string {
  if (!/^-?\d+$/.test(value)) throw new BootstrapError(BOOTSTRAP_ERROR_CODES.notReady, `${what}: ${JSON.stringify(value)} is not a whole number`);
  return value;
}

/** Sequence options (START, INCREMENT, MINVALUE, MAXVALUE, CACHE, CYCLE) as CREATE SEQUENCE and identity columns take them. */
function sequenceOptions(q: SourceSequence): string {
  const what = `sequence ${q.ref.schema}.${q.ref.name}`;
  return (
    `START WITH ${integerText(q.start, what)} INCREMENT BY ${integerText(q.increment, what)} MINVALUE ${integerText(q.min, what)} ` +
    `MAXVALUE ${integerText(q.max, what)} CACHE ${integerText(q.cache, what)} ${q.cycle ? 'CYCLE' : 'NO CYCLE'}`
  );
}

/** CREATE TYPE … AS ENUM, or CREATE DOMAIN, for a type the replica lacks. */
export function createTypeStatement(t: SourceType): string {
  const name = qualifiedName(t.ref);
  if (t.kind === 'e') return `CREATE TYPE ${name} AS ENUM (${t.labels.map((l) => pg.escapeLiteral(l)).join(', ')})`;
  if (t.kind !== 'd' || t.baseType === null) {
    throw new BootstrapError(BOOTSTRAP_ERROR_CODES.notReady, `type ${t.ref.schema}.${t.ref.name} is neither an enum nor a domain; bootstrap does not create it`);
  }
  let def = `CREATE DOMAIN ${name} AS ${t.baseType}`;
  if (t.collation) def += ` COLLATE ${qualifiedName(t.collation)}`;
  if (t.defaultExpression !== null) def += ` DEFAULT ${t.defaultExpression}`;
  if (t.notNull) def += ' NOT NULL';
  for (const k of t.constraints) def += ` CONSTRAINT ${quoteIdent(k.name)} ${k.definition}`;
  return def;
}

/** CREATE SEQUENCE for a sequence that is not an identity column's (that one comes with its table). */
export function createSequenceStatement(q: SourceSequence): string {
  return `CREATE SEQUENCE ${qualifiedName(q.ref)} AS ${q.type} ${sequenceOptions(q)}`;
}

function indexStatement(index: SourceIndex, table: QualifiedName): string {
  return `CREATE ${index.unique ? 'UNIQUE ' : ''}INDEX ${quoteIdent(index.name)} ON ${qualifiedName(table)} USING ${index.using}`;
}

/**
 * CREATE TABLE with its columns (types, collations, defaults, identity, generated expressions,
 * NOT NULL), PRIMARY KEY, UNIQUE, EXCLUDE and CHECK constraints and partition key; its
 * partitions, every level; its indexes (on a partitioned table without ONLY, so each partition
 * gets its own). Foreign keys come after the copy ({@link addForeignKeyStatement}).
 */
export function createTableStatements(table: SourceTable, sequences: readonly SourceSequence[]): string[] {
  const self = { schema: table.ref.schema, name: table.ref.table };
  const columns = table.columns.map((c) => {
    let def = `${quoteIdent(c.name)} ${c.type}`;
    if (c.collation) def += ` COLLATE ${qualifiedName(c.collation)}`;
    if (c.generated === 's') def += ` GENERATED ALWAYS AS (${c.expression ?? 'NULL'}) STORED`;
    else if (c.generated === 'v') def += ` GENERATED ALWAYS AS (${c.expression ?? 'NULL'}) VIRTUAL`;
    else if (c.identity !== '') {
      const q = sequences.find((s) => s.owner?.identity && s.owner.column === c.name && s.owner.table.schema === self.schema && s.owner.table.name === self.name);
      def += ` GENERATED ${c.identity === 'a' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${q ? ` (SEQUENCE NAME ${qualifiedName(q.ref)} ${sequenceOptions(q)})` : ''}`;
    } else if (c.expression !== null) def += ` DEFAULT ${c.expression}`;
    if (c.notNull) def += ' NOT NULL';
    return def;
  });
  const constraints = (list: readonly SourceConstraint[]) => list.map((k) => `CONSTRAINT ${quoteIdent(k.name)} ${k.definition}`);
  const statements = [
    `CREATE TABLE ${qualifiedName(self)} (${[...columns, ...constraints(table.constraints)].join(', ')})${table.partitionKey ? ` PARTITION BY ${table.partitionKey}` : ''}`,
  ];
  for (const p of table.partitions) {
    const own = constraints(p.constraints);
    statements.push(
      `CREATE TABLE ${qualifiedName(p.ref)} PARTITION OF ${qualifiedName(p.parent)}${own.length > 0 ? ` (${own.join(', ')})` : ''} ${p.bound}` +
        `${p.partitionKey ? ` PARTITION BY ${p.partitionKey}` : ''}`,
    );
  }
  statements.push(...table.indexes.map((i) => indexStatement(i, self)));
  for (const p of table.partitions) statements.push(...p.indexes.map((i) => indexStatement(i, p.ref)));
  for (const q of sequences) {
    if (q.owner && !q.owner.identity && q.owner.table.schema === self.schema && q.owner.table.name === self.name) {
      statements.push(`ALTER SEQUENCE ${qualifiedName(q.ref)} OWNED BY ${qualifiedName(self)}.${quoteIdent(q.owner.column)}`);
    }
  }
  return statements;
}

/** ALTER TABLE … ADD CONSTRAINT … FOREIGN KEY, from the source's definition. */
export function addForeignKeyStatement(table: SourceTable, key: SourceForeignKey): string {
  return `ALTER TABLE ${qualified(table.ref.schema, table.ref.table)} ADD CONSTRAINT ${quoteIdent(key.name)} ${key.definition}`;
}

/** The copyable (not generated) columns, quoted and comma-separated. */
export function copyColumns(table: SourceTable): string {
  return table.columns
    .filter((c) => c.generated === '')
    .map((c) => quoteIdent(c.name))
    .join(', ');
}

