/**
 * The one table-name format of pgfanout, accepted the same way by the CLI, the applier's
 * include/exclude lists and the CDK's replica settings: `table` (schema public) or
 * `schema.table`, each part either bare (folded to lower case, as SQL does) or double-quoted
 * with `""` for a quote, exactly as in SQL.
 */
import { InvalidArgumentError } from '../wire/errors.ts';

/** A table named by schema and name, as stored in the catalog (unquoted). */
export interface TableName {
  readonly schema: string;
  readonly table: string;
}

/** Parses `schema.table` or `table` (schema defaults to public); quotes allowed as in SQL. */
export function parseTableName(text: string): TableName {
  const parts: string[] = [];
  let i = 0;
  while (i < text.length) {
    let part = '';
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) throw new InvalidArgumentError(`table name ${JSON.stringify(text)} has an unterminated quote`);
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
    if (part === '') throw new InvalidArgumentError(`table name ${JSON.stringify(text)} has an empty part (expected schema.table)`);
    parts.push(part);
    if (i < text.length) {
      if (text[i] !== '.') throw new InvalidArgumentError(`table name ${JSON.stringify(text)}: expected "." after a quoted part`);
      i++;
      if (i === text.length) throw new InvalidArgumentError(`table name ${JSON.stringify(text)} ends with "."`);
    }
  }
  if (parts.length === 1) return { schema: 'public', table: parts[0] as string };
  if (parts.length === 2) return { schema: parts[0] as string, table: parts[1] as string };
  throw new InvalidArgumentError(`table name ${JSON.stringify(text)} must be table or schema.table`);
}
