/**
 * Real PostgreSQL servers for the core's tests: the majors to test on, and a database with
 * a connected client.
 */
import pg from 'pg';
import { quoteIdent } from '#core/pg/sql.ts';
import { availableMajors, LocalPostgres, type Major } from '#local/postgres.ts';

/** The majors the core is tested on (13 and 18 ship with the dependencies). */
export const TEST_MAJORS: readonly Major[] = availableMajors().filter((m) => m === 13 || m === 18);

/** A database on a server, with a client connected to it. */
export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  readonly client: pg.Client;
}

/** Creates database `name` on `server` and connects to it. */
export async function createDatabase(server: LocalPostgres, name: string, settings: Readonly<Record<string, string>> = {}): Promise<TestDatabase> {
  const admin = new pg.Client(server.url());
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${quoteIdent(name)}`);
  } finally {
    await admin.end();
  }
  const url = server.url(name);
  const client = new pg.Client({ connectionString: url, options: Object.entries(settings).map(([k, v]) => `-c ${k}=${v}`).join(' ') });
  await client.connect();
  return { name, url, client };
}
