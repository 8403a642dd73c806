/**
 * Passwords the way libpq's tools find them when a URL has none: `PGPASSWORD`, then the
 * password file (`PGPASSFILE`, default `~/.pgpass`), as PostgreSQL documents it:
 * https://www.postgresql.org/docs/current/libpq-pgpass.html
 *   - lines `hostname:port:database:username:password`; the first four fields may be `*`;
 *     the first matching line wins; `\:` and `\\` escape a colon and a backslash;
 *   - lines starting with `#` are comments;
 *   - on Unix, a file that group or others may access is ignored.
 */
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** What a connection is made to, for matching the password file. */
export interface PasswordTarget {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
}

/** The password file in use: PGPASSFILE, else ~/.pgpass. */
export function passwordFilePath(env: NodeJS.ProcessEnv = process.env): string {
  return env.PGPASSFILE || join(homedir(), '.pgpass');
}

/** The outcome of looking a password up in the password file. */
export type PasswordFileLookup =
  | { readonly found: string }
  | { readonly missing: 'no file' | 'no matching line' }
  | { readonly ignored: string };

/** Looks up the password for `target` in the password file `file`. */
export function lookUpPasswordFile(target: PasswordTarget, file = passwordFilePath()): PasswordFileLookup {
  let text: string;
  try {
    const info = statSync(file);
    if (!info.isFile()) return { ignored: `${file} is not a plain file` };
    if (process.platform !== 'win32' && (info.mode & 0o077) !== 0) {
      return { ignored: `${file} is ignored because group or others may read it (chmod 0600 ${file})` };
    }
    text = readFileSync(file, 'utf8');
  } catch {
    return { missing: 'no file' };
  }
  const wanted = [target.host, String(target.port), target.database, target.user];
  for (const line of text.split(/\r?\n/)) {
    if (line === '' || line.startsWith('#')) continue;
    const fields = splitLine(line);
    if (fields.length < 5) continue;
    if (wanted.every((value, i) => fields[i] === '*' || fields[i] === value)) return { found: fields.slice(4).join(':') };
  }
  return { missing: 'no matching line' };
}

/** Splits a password-file line at unescaped colons, removing the escapes. */
function splitLine(line: string): string[] {
  const fields: string[] = [];
  let current = '';
  for (let i = 0; i < line.length; i++) {
    const ch = line[i] as string;
    if (ch === '\\' && i + 1 < line.length) {
      current += line[++i];
    } else if (ch === ':' && fields.length < 4) {
      fields.push(current);
      current = '';
    } else {
      current += ch;
    }
  }
  fields.push(current);
  return fields;
}
