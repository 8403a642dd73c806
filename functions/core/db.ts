/**
 * Database connection settings: from a URL (local use) or from the JSON of an
 * RDS-style Secrets Manager secret (AWS), as `pg` client configuration.
 */
import type { ClientConfig } from 'pg';

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
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`${what}: the secret's port must be 1-65535, got "${String(secret.port)}"`);
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

/** Where a connection goes, for messages: host:port/database, never the password. */
export function describeTarget(config: ClientConfig): string {
  if (config.connectionString) return redactUrl(config.connectionString);
  return `${config.host ?? 'localhost'}:${config.port ?? 5432}/${config.database ?? ''}`;
}
