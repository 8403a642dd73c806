/**
 * SQL text helpers, one copy each for all of pgfanout: identifier quoting (always quoted, never
 * pasted bare; `pg.escapeIdentifier` does the quoting) and the session settings under which
 * every type's text output is the same on any two servers.
 */
import pg, { type ClientBase } from 'pg';
import { InvalidArgumentError } from '../wire/errors.ts';

/** Quotes an identifier, always. PostgreSQL identifiers cannot hold NUL: such a name is refused. */
export function quoteIdent(name: string): string {
  if (name.includes('\u0000')) throw new InvalidArgumentError(`identifier ${JSON.stringify(name)} contains a NUL character, which PostgreSQL names cannot hold`);
  return pg.escapeIdentifier(name);
}

/** `schema.table`, both parts quoted. */
export function qualified(schema: string, table: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(table)}`;
}

/**
 * Session settings under which the text output of every type is the same on any two
 * servers (time zone, date and interval styles, float digits, bytea format).
 */
export async function setStableOutput(client: ClientBase): Promise<void> {
  await client.query(
    `SELECT set_config('TimeZone', 'UTC', true), set_config('DateStyle', 'ISO, MDY', true),
            set_config('IntervalStyle', 'postgres', true), set_config('extra_float_digits', '1', true),
            set_config('bytea_output', 'hex', true)`,
  );
}
