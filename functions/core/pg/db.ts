/**
 * Database connection settings: from a URL (local use) or from the JSON of an
 * RDS-style Secrets Manager secret (AWS), as `pg` client configuration; and connections for the
 * operator tools with errors that say what went wrong and where.
 */
import pg, { type ClientConfig } from 'pg';
import { lookUpPasswordFile, passwordFilePath } from './pgpass.ts';
import { isIntegerIn } from '../integer.ts';

/** TLS mode for connections built from a secret. */
export type TlsMode = 'disable' | 'require' | 'verify-full';

/** The fields of an RDS-style secret that pgfanout uses. */
interface RdsSecret {
  host: string;
  port?: number | string;
  username: string;
  password: string;
  dbname?: string;
}

/**
 * Connection settings from the JSON text of an RDS-style secret
 * (`{"host","port","username","password","dbname"}`). Names the missing field on error;
 * never includes the password in a message.
 */
export function clientConfigFromSecret(secretJson: string, what: string, tls: TlsMode = 'verify-full'): ClientConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(secretJson);
  } catch {
    throw new Error(`${what}: the secret is not JSON (expected {"host","port","username","password","dbname"})`);
  }
  if (typeof parsed !== 'object' || parsed === null) {
    throw new Error(`${what}: the secret must be a JSON object with host, port, username, password, dbname`);
  }
  const secret = parsed as Partial<RdsSecret>;
  const missing = (['host', 'username', 'password'] as const).filter((k) => typeof secret[k] !== 'string' || secret[k] === '');
  if (missing.length > 0) throw new Error(`${what}: the secret lacks ${missing.join(', ')}`);
  const port = secret.port === undefined ? 5432 : Number(secret.port);
  if (!isIntegerIn(port, 1, 65535)) throw new Error(`${what}: the secret's port must be 1-65535, got "${String(secret.port)}"`);
  return {
    host: secret.host as string,
    port,
    user: secret.username as string,
    password: secret.password as string,
    database: secret.dbname ?? 'postgres',
    ssl: tls === 'disable' ? false : { rejectUnauthorized: tls === 'verify-full' },
  };
}

/** Connection settings from a `postgres://` URL (TLS as the URL's sslmode says). */
export function clientConfigFromUrl(url: string, what: string): ClientConfig {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error(`${what}: "${redactUrl(url)}" is not a URL (expected postgres://user:password@host:port/database)`);
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new Error(`${what}: URL scheme must be postgres:// or postgresql://, got "${parsed.protocol}//"`);
  }
  return { connectionString: url };
}

/** The URL with its password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '****';
    return parsed.toString();
  } catch {
    return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:****@');
  }
}

/** The server asked for a password and none was found: not in the URL, PGPASSWORD or the password file. */
class PasswordNeededError extends Error {
  readonly code = 'PGFANOUT_PASSWORD_NEEDED';
}

/**
 * A client for `url` that finds a password as libpq's tools do when the URL has none:
 * `PGPASSWORD`, then the password file (see pgpass.ts); when the server asks for one and there
 * is none, connecting fails with a {@link PasswordNeededError} that says where to put it.
 */
function newClient(url: string, config: Omit<ClientConfig, 'connectionString' | 'password'> = {}): pg.Client {
  const client = new pg.Client({ ...config, connectionString: url });
  const settings = client as unknown as { password: unknown; host: string; port: number; database: string; user: string };
  // pg has applied the URL's password and PGPASSWORD; where neither gave one, this function runs
  // only if the server asks for a password.
  if (settings.password === null || settings.password === undefined || settings.password === '') {
    settings.password = async () => {
      const target = { host: settings.host, port: settings.port, database: settings.database, user: settings.user };
      const lookup = lookUpPasswordFile(target);
      if ('found' in lookup) return lookup.found;
      const file = 'ignored' in lookup ? lookup.ignored : `${passwordFilePath()}: ${lookup.missing === 'no file' ? 'none' : `no line for ${target.host}:${target.port}:${target.database}:${target.user}`}`;
      throw new PasswordNeededError(
        `the server asks for a password for user "${target.user}" and none was given: put it in the URL ` +
          `(postgres://${target.user}:PASSWORD@…), set PGPASSWORD, or add a line to the password file (${file})`,
      );
    };
  }
  return client;
}

/** Connects to `url`; unreachable servers, bad credentials and missing databases get clear messages. */
export async function connect(url: string, role: string): Promise<pg.Client> {
  const client = newClient(url, { application_name: 'pgfanout-cli', connectionTimeoutMillis: 10_000 });
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => undefined);
    throw new Error(`${role} ${redactUrl(url)}: ${describeConnectError(err)}`, { cause: err });
  }
  return client;
}

/** A connection error in words: what failed and what to check. */
export function describeConnectError(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (err instanceof PasswordNeededError) return err.message;
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
