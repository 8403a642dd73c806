/** Small SQL helpers for operator tools: identifier quoting and stable text output settings. */
import type { ClientBase } from 'pg';

/** Quotes an identifier the way PostgreSQL's quote_ident does, always (never pastes it bare). */
export function quoteIdent(name: string): string {
  if (name.includes('\u0000')) throw new Error(`identifier contains a NUL character: ${JSON.stringify(name)}`);
  return `"${name.replaceAll('"', '""')}"`;
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

/** Parses `schema.table` or `table` (schema defaults to public); quotes allowed as in SQL. */
export function parseTableName(text: string): { schema: string; table: string } {
  const parts: string[] = [];
  let i = 0;
  while (i < text.length) {
    let part = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new Error(`table name ${JSON.stringify(text)} has an unterminated quote`);
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            part += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        part += text[i];
        i++;
      }
    } else {
      while (i < text.length && text[i] !== '.') part += text[i++];
      part = part.trim().toLowerCase();
    }
    if (part === '') throw new Error(`table name ${JSON.stringify(text)} has an empty part (expected schema.table)`);
    parts.push(part);
    if (i < text.length) {
      if (text[i] !== '.') throw new Error(`table name ${JSON.stringify(text)}: expected "." after a quoted part`);
      i++;
      if (i === text.length) throw new Error(`table name ${JSON.stringify(text)} ends with "."`);
    }
  }
  if (parts.length === 1) return { schema: 'public', table: parts[0] as string };
  if (parts.length === 2) return { schema: parts[0] as string, table: parts[1] as string };
  throw new Error(`table name ${JSON.stringify(text)} must be table or schema.table`);
}
