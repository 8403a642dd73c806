/**
 * Real PostgreSQL servers for the tests: the majors to test on, a suite per major that shows as
 * skipped (saying why) where that major is not installed, and a database with a connected client.
 */
import pg from 'pg';
import { describe } from 'vitest';
import { quoteIdent } from '#core/pg/sql.ts';
import { availableMajors, installHint, LocalPostgres, type Major } from '#local/postgres.ts';

/**
 * The majors every test that runs on real servers is tested on: the oldest and newest pgfanout
 * supports, and one between (13 and 18 come with the npm dependencies, 15 from the system).
 * The only definition: tests take their majors from here, through {@link describeEachMajor}.
 */
export const TEST_MAJORS: readonly Major[] = [13, 15, 18];

/**
 * Why `major` cannot be tested on this machine, with what to install; undefined when it can.
 * `available`: the majors this machine has (its default; tests of this module pass others).
 */
export function missingMajor(major: Major, available: readonly Major[] = availableMajors()): string | undefined {
  if (available.includes(major)) return undefined;
  return `PostgreSQL ${major} is not installed here; to test on it, ${installHint(major)}`;
}

/**
 * One `describe` per major (`%i` in `name` is the major), for `majors` (default: every tested
 * major). A major this machine does not have shows as a skipped suite whose name says which is
 * missing and how to install it, instead of disappearing from the run.
 */
export function describeEachMajor(
  name: string,
  body: (major: Major) => void,
  majors: readonly Major[] = TEST_MAJORS,
  available: readonly Major[] = availableMajors(),
): void {
  for (const major of majors) {
    const title = name.replaceAll('%i', String(major));
    const missing = missingMajor(major, available);
    describe.skipIf(missing !== undefined)(missing === undefined ? title : `${title} (skipped: ${missing})`, () => body(major));
  }
}

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
