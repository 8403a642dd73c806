/**
 * The apply transaction's session: begins it with the settings the source's text output needs,
 * and keeps the replica's triggers quiet (`session_replication_role = replica`, or the
 * `pgfanout.origin` guard where the role may not set it). Under the guard only pgfanout's own
 * capture triggers stay quiet: a replica table with other triggers enabled the default way is
 * refused ({@link refuseReplicaTriggers}) unless the applier's options allow them
 * ({@link ReplicaTriggers}).
 *
 * PostgreSQL: only superusers and roles granted SET on the parameter may set
 * session_replication_role; triggers enabled the default way fire when it is `origin` (the
 * default) or `local`, not when it is `replica`:
 * https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-SESSION-REPLICATION-ROLE
 * https://www.postgresql.org/docs/current/sql-altertable.html (ENABLE / DISABLE TRIGGER)
 * `GRANT SET ON PARAMETER` exists from PostgreSQL 15: https://www.postgresql.org/docs/current/sql-grant.html
 */
import type pg from 'pg';
import { quoteIdent } from '../pg/sql.ts';
import { ReplicaTriggersError, type ApplyContext } from '../wire/errors.ts';
import type { TableInfo } from './statements.ts';

/** How the applier keeps the replica's triggers from firing. */
export type ReplicationRole = 'replica' | 'origin-guard' | 'auto';

/** The setting pgfanout's capture trigger checks before logging a change. */
export const ORIGIN_SETTING = 'pgfanout.origin';

/**
 * Starts the apply transaction. Values arrive in the source's output style (ISO dates, postgres
 * intervals): they are read the same way.
 */
const BEGIN_SESSION = `BEGIN; SET LOCAL datestyle = 'ISO, YMD'; SET LOCAL intervalstyle = 'postgres'`;
const REPLICA_ROLE = 'SET LOCAL session_replication_role = replica';

/**
 * Begins the apply transaction and keeps the replica's triggers quiet, in one round trip when
 * `session_replication_role = replica` may be set. On failure, nothing is left open.
 */
export async function beginSession(client: pg.ClientBase, mode: ReplicationRole, sourceId: string): Promise<'replica' | 'origin-guard'> {
  try {
    if (mode === 'replica') {
      await client.query(`${BEGIN_SESSION}; ${REPLICA_ROLE}`);
      return 'replica';
    }
    if (mode === 'auto') {
      try {
        // If the role may not set it, the savepoint undoes just the failed SET.
        await client.query(`${BEGIN_SESSION}; SAVEPOINT pgfanout_role; ${REPLICA_ROLE}; RELEASE SAVEPOINT pgfanout_role`);
        return 'replica';
      } catch (err) {
        if ((err as { code?: string }).code !== '42501') throw err;
        await client.query('ROLLBACK TO SAVEPOINT pgfanout_role; RELEASE SAVEPOINT pgfanout_role');
      }
    } else {
      await client.query(BEGIN_SESSION);
    }
    await client.query('SELECT pg_catalog.set_config($1, $2, true)', [ORIGIN_SETTING, sourceId]);
    return 'origin-guard';
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/**
 * What the applier does with a replica table whose own triggers would fire on applied changes
 * (only under the origin guard): `refuse` (an error naming the triggers and the fix) or `fire`
 * (the replica's settings accept them, e.g. triggers that skip changes whose
 * `pgfanout.origin` is set).
 */
export type ReplicaTriggers = 'refuse' | 'fire';

/** `schema.table trigger` for each [schema, table, trigger] the catalog lists. */
export function triggerNames(rows: readonly (readonly [string, string, string])[]): string[] {
  return rows.map(([schema, table, trigger]) => `${quoteIdent(schema)}.${quoteIdent(table)} ${quoteIdent(trigger)}`);
}

/** The error for `table`'s triggers under the origin guard, naming the applier's role in the fix. */
export async function refuseReplicaTriggers(client: pg.ClientBase, table: TableInfo, context: ApplyContext): Promise<ReplicaTriggersError> {
  const { rows } = await client.query<{ role: string; version: number }>(
    "SELECT current_user::pg_catalog.text AS role, pg_catalog.current_setting('server_version_num')::pg_catalog.int4 AS version",
  );
  const role = quoteIdent(rows[0]?.role ?? 'the_applier_role');
  const grant = `GRANT SET ON PARAMETER session_replication_role TO ${role}`;
  const fix =
    (rows[0]?.version ?? 0) >= 150000
      ? `Fix: let the applier's role set it (${grant}, PostgreSQL 15+), `
      : `Fix: let the applier's role set it (on PostgreSQL 15+: ${grant}; before 15 only a superuser, rds_superuser on Amazon RDS, may), `;
  return new ReplicaTriggersError(
    table.display,
    table.originTriggers,
    `${fix}or disable the triggers (ALTER TABLE … DISABLE TRIGGER …), or allow them in the applier's options (replicaTriggers: 'fire') when they are meant to fire on replicated changes.`,
    context,
  );
}
