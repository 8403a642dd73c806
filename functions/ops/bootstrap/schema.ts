/**
 * The replicated tables' schema: read from the source's catalog under the snapshot, compared with
 * an existing replica table, and turned into the DDL that creates a missing one.
 */
import type pg from 'pg';
import { qualified, quoteIdent } from '#core/pg/sql.ts';
import type { TableRef } from '../verify.ts';
import { BOOTSTRAP_ERROR_CODES, BootstrapError } from './errors.ts';

/** A column as the source defines it. */
export interface SourceColumn {
  readonly name: string;
  /** format_type() under search_path = pg_catalog: schema-qualified outside pg_catalog. */
  readonly type: string;
  readonly notNull: boolean;
  /** '' | 's' (stored) | 'v' (virtual, PostgreSQL 18). */
  readonly generated: string;
  readonly expression: string | null;
  readonly usesSequence: boolean;
  readonly collation: string | null;
}

/** A replicated table as the source defines it, read under the snapshot. */
export interface SourceTable {
  readonly ref: TableRef;
  readonly name: string;
  readonly partitioned: boolean;
  readonly estimate: number | null;
  readonly columns: readonly SourceColumn[];
  /** PRIMARY KEY / UNIQUE constraints: name and pg_get_constraintdef. */
  readonly constraints: readonly { readonly name: string; readonly definition: string }[];
  /** Unique indexes not backing a constraint: pg_get_indexdef. */
  readonly uniqueIndexes: readonly string[];
}

const SOURCE_TABLES_SQL = `
SELECT t.table_schema AS schema, t.table_name AS table, c.oid::pg_catalog.int8 AS oid, c.relkind = 'p' AS partitioned,
       (SELECT pg_catalog.sum(GREATEST(k.reltuples, 0))::pg_catalog.float8
          FROM pg_catalog.pg_class k
         WHERE k.oid = c.oid OR k.oid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i WHERE i.inhparent = c.oid)) AS estimate
  FROM pgfanout.show_tables() t
  JOIN pg_catalog.pg_namespace n ON n.nspname = t.table_schema
  JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = t.table_name
 ORDER BY 1, 2`;

const COLUMNS_SQL = `
SELECT a.attname AS name, pg_catalog.format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.attgenerated::pg_catalog.text AS generated, pg_catalog.pg_get_expr(d.adbin, d.adrelid) AS expression,
       EXISTS (SELECT 1 FROM pg_catalog.pg_depend dep JOIN pg_catalog.pg_class s ON s.oid = dep.refobjid AND s.relkind = 'S'
                WHERE dep.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass AND dep.objid = d.oid) AS uses_sequence,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> ty.typcollation
            THEN pg_catalog.format('%I.%I', cn.nspname, co.collname) END AS collation
  FROM pg_catalog.pg_attribute a
  JOIN pg_catalog.pg_type ty ON ty.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
 WHERE a.attrelid = $1::pg_catalog.oid AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`;

const CONSTRAINTS_SQL = `
SELECT conname AS name, pg_catalog.pg_get_constraintdef(oid) AS definition
  FROM pg_catalog.pg_constraint WHERE conrelid = $1::pg_catalog.oid AND contype IN ('p', 'u')
 ORDER BY contype, conname`;

const UNIQUE_INDEXES_SQL = `
SELECT pg_catalog.pg_get_indexdef(i.indexrelid) AS definition
  FROM pg_catalog.pg_index i
 WHERE i.indrelid = $1::pg_catalog.oid AND i.indisunique AND i.indisvalid
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.conindid = i.indexrelid)
 ORDER BY i.indexrelid`;

/** Reads the replicated tables and their definitions (inside the snapshot's transaction). */
export async function readSourceTables(client: pg.ClientBase, wanted: readonly TableRef[] | undefined): Promise<SourceTable[]> {
  // Everything format_type / pg_get_expr print is schema-qualified outside pg_catalog.
  await client.query("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)");
  const { rows } = await client.query<{ schema: string; table: string; oid: string; partitioned: boolean; estimate: number | null }>(SOURCE_TABLES_SQL);
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
  for (const r of chosen) {
    const columns = await client.query<{ name: string; type: string; not_null: boolean; generated: string; expression: string | null; uses_sequence: boolean; collation: string | null }>(COLUMNS_SQL, [r.oid]);
    const constraints = await client.query<{ name: string; definition: string }>(CONSTRAINTS_SQL, [r.oid]);
    const indexes = await client.query<{ definition: string }>(UNIQUE_INDEXES_SQL, [r.oid]);
    tables.push({
      ref: { schema: r.schema, table: r.table },
      name: `${r.schema}.${r.table}`,
      partitioned: r.partitioned,
      estimate: r.estimate !== null && r.estimate > 0 ? r.estimate : null,
      columns: columns.rows.map((c) => ({
        name: c.name,
        type: c.type,
        notNull: c.not_null,
        generated: c.generated,
        expression: c.expression,
        usesSequence: c.uses_sequence,
        collation: c.collation,
      })),
      constraints: constraints.rows,
      uniqueIndexes: indexes.rows.map((i) => i.definition),
    });
  }
  return tables;
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

/** CREATE TABLE (+ unique indexes) for the replica, from the source's definition. */
export function createStatements(table: SourceTable): string[] {
  const columns = table.columns.map((c) => {
    let def = `${quoteIdent(c.name)} ${c.type}`;
    if (c.collation) def += ` COLLATE ${c.collation}`;
    if (c.generated === 's') def += ` GENERATED ALWAYS AS (${c.expression ?? 'NULL'}) STORED`;
    else if (c.generated === 'v') def += ` GENERATED ALWAYS AS (${c.expression ?? 'NULL'}) VIRTUAL`;
    else if (c.expression !== null && !c.usesSequence) def += ` DEFAULT ${c.expression}`;
    if (c.notNull) def += ' NOT NULL';
    return def;
  });
  const constraints = table.constraints.map((k) => `CONSTRAINT ${quoteIdent(k.name)} ${k.definition}`);
  return [
    `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(table.ref.schema)}`,
    `CREATE TABLE ${qualified(table.ref.schema, table.ref.table)} (${[...columns, ...constraints].join(', ')})`,
    ...table.uniqueIndexes,
  ];
}

/** The copyable (not generated) columns, quoted and comma-separated. */
export function copyColumns(table: SourceTable): string {
  return table.columns
    .filter((c) => c.generated === '')
    .map((c) => quoteIdent(c.name))
    .join(', ');
}

