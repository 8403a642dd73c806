/**
 * What the applier knows of a replica connection's tables: the catalog queries, and the
 * knowledge kept per connection across messages (forgotten on a failed apply, after a schema
 * change, and after CATALOG_MAX_AGE_MS).
 */
import type pg from 'pg';
import type { Shape, TableInfo } from './statements.ts';

/** How long what was read of a replica table is trusted without an error saying otherwise. */
export const CATALOG_MAX_AGE_MS = 60_000;

/**
 * The table's user triggers (and those of its partitions) that fire under the default
 * session_replication_role (tgenabled 'O'), leaving out pgfanout's own capture triggers (they
 * honour the origin guard) and the internal ones (foreign keys): as [schema, table, trigger].
 */
const ORIGIN_TRIGGERS_SQL = `
SELECT COALESCE(pg_catalog.json_agg(pg_catalog.json_build_array(tn.nspname, tc.relname, g.tgname) ORDER BY tn.nspname, tc.relname, g.tgname), '[]'::pg_catalog.json)
  FROM pg_catalog.pg_trigger g
  JOIN pg_catalog.pg_class tc ON tc.oid = g.tgrelid
  JOIN pg_catalog.pg_namespace tn ON tn.oid = tc.relnamespace
  JOIN pg_catalog.pg_proc f ON f.oid = g.tgfoid
  JOIN pg_catalog.pg_namespace fn ON fn.oid = f.pronamespace
 WHERE (g.tgrelid = c.oid OR g.tgrelid IN (SELECT p.relid FROM pg_catalog.pg_partition_tree(c.oid) p))
   AND NOT g.tgisinternal AND g.tgenabled = 'O' AND fn.nspname <> 'pgfanout'`;

/** {@link ORIGIN_TRIGGERS_SQL} for the table named by $1 (schema) and $2 (name): one row, `triggers`. */
export const TABLE_ORIGIN_TRIGGERS_SQL = `
SELECT (${ORIGIN_TRIGGERS_SQL}) AS triggers
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = $1 AND c.relname = $2`;

/**
 * Types whose text, as the source's output function writes it (under the exact output settings
 * the capture uses: ISO dates), is equal exactly when the values are equal: comparing such keys
 * as text is comparing them as the replica does. Not in it, among others: numeric (1.0 = 1.00),
 * float (0 = -0), interval ('1 day' = '24:00:00'), timestamptz (written in the session's time
 * zone), bpchar (trailing blanks), citext, json(b), arrays, ranges and composites.
 */
const EXACT_TEXT_TYPES = ['int2', 'int4', 'int8', 'oid', 'bool', 'date', 'timestamp', 'uuid', 'text', 'varchar', 'name'];

export const CATALOG_SQL = `
SELECT c.oid::pg_catalog.int8 AS oid,
       c.relkind = 'r' AND NOT c.relispartition AND NOT c.relhasrules
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits h WHERE h.inhrelid = c.oid OR h.inhparent = c.oid)
         AND NOT EXISTS (SELECT FROM pg_catalog.pg_trigger g WHERE g.tgrelid = c.oid AND g.tgenabled IN ('A', 'R')) AS independent,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND (i.indisunique OR i.indisexclusion))::pg_catalog.int4 AS unique_indexes,
       (${ORIGIN_TRIGGERS_SQL}) AS origin_triggers,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND (i.indisunique OR i.indisexclusion) AND i.indimmediate)::pg_catalog.int4 AS immediate_indexes,
       EXISTS (SELECT FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisexclusion AND NOT i.indimmediate) AS deferrable_exclusion,
       (SELECT pg_catalog.json_agg(pg_catalog.json_build_object(
                 'name', ic.relname::pg_catalog.text,
                 'columns', (SELECT pg_catalog.array_agg(ka.attname::pg_catalog.text ORDER BY k.ord)
                               FROM pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)
                               JOIN pg_catalog.pg_attribute ka ON ka.attrelid = i.indrelid AND ka.attnum = k.attnum
                              WHERE k.ord <= i.indnkeyatts),
                 'nullsNotDistinct', COALESCE((pg_catalog.to_jsonb(i) OPERATOR(pg_catalog.->>) 'indnullsnotdistinct')::pg_catalog.bool, false))
                 ORDER BY ic.relname)
          FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
         WHERE i.indrelid = c.oid AND i.indisunique AND NOT i.indimmediate) AS deferrable_uniques,
       a.attname::pg_catalog.text AS name,
       pg_catalog.format('%I.%I', tn.nspname, t.typname) AS cast_type,
       CASE WHEN a.attcollation <> 0 THEN pg_catalog.format('%I.%I', cn.nspname, co.collname) END AS collation,
       (bt.oid = ANY ('{${EXACT_TEXT_TYPES.join(',')}}'::pg_catalog.regtype[]) OR bt.typtype = 'e') AND COALESCE(co.collisdeterministic, true) AS exact_text,
       a.attgenerated::pg_catalog.text <> '' AS generated,
       a.attidentity::pg_catalog.text AS identity,
       a.atthasdef AS has_default
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.typnamespace
  LEFT JOIN pg_catalog.pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
  LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
  LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')
 ORDER BY a.attnum`;

export const IDENTITIES_SQL = `
SELECT pg_catalog.array_agg(a.attname::pg_catalog.text ORDER BY k.ord) AS columns
  FROM pg_catalog.pg_index i
 CROSS JOIN LATERAL pg_catalog.unnest(i.indkey::pg_catalog.int2[]) WITH ORDINALITY AS k(attnum, ord)
  JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
 WHERE i.indrelid = $1::pg_catalog.oid AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL
   AND k.ord <= i.indnkeyatts
 GROUP BY i.indexrelid, i.indisprimary
HAVING pg_catalog.bool_and(a.attnotnull)
 ORDER BY i.indisprimary DESC, pg_catalog.count(*), i.indexrelid`;

/**
 * What the applier knows of one replica connection's tables: read from the catalog on first use
 * and kept across messages, so a message of small changes does not read the catalog again.
 * Get it with {@link replicaCatalog}. The apply forgets it all when an apply fails (the error may
 * be a schema the applier misread, and a rolled-back schema change must not be remembered) and
 * after a schema change; call {@link ReplicaCatalog.invalidate} after changing a replica table by
 * other means on the same connection.
 */
export class ReplicaCatalog {
  /** Tables by `schema\0table`. */
  readonly tables = new Map<string, TableInfo>();
  /** Statement shapes by signature (operation, table and column layout of a change). */
  readonly shapes = new Map<string, Shape>();

  /** Forgets one table (and every statement shape for it), or everything when no table is named. */
  invalidate(schema?: string, table?: string): void {
    if (schema === undefined || table === undefined) {
      this.tables.clear();
      this.shapes.clear();
      return;
    }
    this.tables.delete(`${schema}\u0000${table}`);
    for (const [signature, shape] of this.shapes) {
      if (shape.table.schema === schema && shape.table.table === table) this.shapes.delete(signature);
    }
  }
}

const catalogs = new WeakMap<pg.ClientBase, ReplicaCatalog>();

/** The catalog knowledge kept for `client` (a new, empty one for a connection not seen yet). */
export function replicaCatalog(client: pg.ClientBase): ReplicaCatalog {
  let catalog = catalogs.get(client);
  if (catalog === undefined) {
    catalog = new ReplicaCatalog();
    catalogs.set(client, catalog);
  }
  return catalog;
}
