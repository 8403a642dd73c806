/** Database connections for the CLI, with errors that say what went wrong and where. */
import pg from 'pg';
import { redactUrl } from '#core/db.ts';

/** Connects to `url`; unreachable servers, bad credentials and missing databases get clear messages. */
export async function connect(url: string, role: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url, application_name: 'pgfanout-cli', connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw new Error(`${role} ${redactUrl(url)}: ${describeConnectError(err)}`, { cause: err });
  }
  return client;
}

export function describeConnectError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  switch (e.code) {
    case 'ECONNREFUSED':
      return 'connection refused (is the server running and listening on that host and port?)';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return 'host not found';
    case 'ETIMEDOUT':
      return 'connection timed out';
    case '28P01':
      return 'password authentication failed (wrong user name or password)';
    case '28000':
      return `not allowed to connect: ${e.message ?? ''}`;
    case '3D000':
      return `database does not exist: ${e.message ?? ''}`;
    default:
      return e.message ?? String(err);
  }
}
