/**
 * The apply transaction's session: begins it with the settings the source's text output needs,
 * and keeps the replica's triggers quiet (`session_replication_role = replica`, or the
 * `pgfanout.origin` guard where the role may not set it).
 */
import type pg from 'pg';

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
