/**
 * Bootstrap's database sessions: opening one (a failure names the server, password hidden), the
 * replica-side lock that keeps two bootstraps apart, and keeping the replica's triggers quiet
 * while rows are written.
 */
import pg from 'pg';
import { describeConnectError, redactUrl } from '#core/pg/db.ts';
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

/** Sets, for the replica transaction, what keeps triggers quiet: replica role, else the origin guard. */
export async function quietTriggers(client: pg.ClientBase, sourceId: string): Promise<void> {
  try {
    await client.query('SAVEPOINT pgfanout_role; SET LOCAL session_replication_role = replica; RELEASE SAVEPOINT pgfanout_role');
  } catch (err) {
    if (sqlState(err) !== '42501') throw err;
    await client.query('ROLLBACK TO SAVEPOINT pgfanout_role; RELEASE SAVEPOINT pgfanout_role');
    await client.query("SELECT pg_catalog.set_config('pgfanout.origin', $1, true)", [sourceId]);
  }
}

