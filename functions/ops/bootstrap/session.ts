/**
 * Bootstrap's database sessions: opening one (a failure names the server, password hidden), the
 * replica-side lock that keeps two bootstraps apart, and keeping the replica's triggers quiet
 * while rows are written.
 */
import pg from 'pg';
import { describeConnectError, redactUrl } from '#core/pg/db.ts';
import { TABLE_ORIGIN_TRIGGERS_SQL } from '#core/replica/catalog.ts';
import { triggerNames } from '#core/replica/session.ts';
import { quoteIdent } from '#core/pg/sql.ts';
import type { TableRef } from '../verify.ts';
import { BOOTSTRAP_ERROR_CODES, BootstrapError, sqlState } from './errors.ts';

/** Session-level advisory lock on the replica, held for the whole bootstrap (class 'pgfa', object 3). */
export const BOOTSTRAP_LOCK = { classId: 0x70676661, objectId: 3 } as const;

export const APPLICATION_NAME = 'pgfanout-bootstrap';
/** application_name of the copying sessions. */
export const COPY_APPLICATION_NAME = 'pgfanout-bootstrap-copy';
export const MARK_ATTEMPTS = 20;

/** Opens a session; connection failures name the server (password redacted) and the reason. */
export async function open(url: string, role: string, applicationName: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: applicationName, connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw new BootstrapError(BOOTSTRAP_ERROR_CODES.notReady, `${role} ${redactUrl(url)}: ${describeConnectError(err)}`, err);
  }
  client.on('error', () => {
    // A lost session fails its next query; that is where it is handled.
  });
  return client;
}

/**
 * Sets, for the replica transaction, what keeps triggers quiet: replica role, else the origin
 * guard (under which the replica's own triggers fire: see {@link refuseTriggers}). Returns which.
 */
export async function quietTriggers(client: pg.ClientBase, sourceId: string): Promise<'replica' | 'origin-guard'> {
  try {
    await client.query('SAVEPOINT pgfanout_role; SET LOCAL session_replication_role = replica; RELEASE SAVEPOINT pgfanout_role');
    return 'replica';
  } catch (err) {
    if (sqlState(err) !== '42501') throw err;
    await client.query('ROLLBACK TO SAVEPOINT pgfanout_role; RELEASE SAVEPOINT pgfanout_role');
    await client.query("SELECT pg_catalog.set_config('pgfanout.origin', $1, true)", [sourceId]);
    return 'origin-guard';
  }
}

/**
 * Under the origin guard, refuses replica tables whose own triggers would fire on the copied rows
 * (a `last_update` trigger would rewrite every row), naming them and the fix, unless `allowed`.
 * Tables bootstrap creates have no triggers; this is about tables that existed.
 */
export async function refuseTriggers(client: pg.ClientBase, tables: readonly TableRef[], replica: string): Promise<void> {
  const found: string[] = [];
  for (const t of tables) {
    const { rows } = await client.query<{ triggers: [string, string, string][] }>(TABLE_ORIGIN_TRIGGERS_SQL, [t.schema, t.table]);
    found.push(...triggerNames(rows[0]?.triggers ?? []));
  }
  if (found.length === 0) return;
  const { rows } = await client.query<{ role: string }>('SELECT current_user::pg_catalog.text AS role');
  throw new BootstrapError(
    BOOTSTRAP_ERROR_CODES.replicaTriggers,
    `replica ${replica}: trigger(s) ${found.join(', ')} would fire on every copied row, because this role may not set session_replication_role = replica; ` +
      `nothing was changed on the replica. Let the role set it (PostgreSQL 15+: GRANT SET ON PARAMETER session_replication_role TO ${quoteIdent(rows[0]?.role ?? 'the_role')}; ` +
      `before 15 only a superuser may), or disable the triggers for the bootstrap, or pass replicaTriggers: 'fire' when they are meant to fire on copied rows`,
  );
}

