/**
 * Splits a string of SQL into its statements the way PostgreSQL's lexer reads it, without
 * running it: `;` ends a statement only outside string constants ('…', E'…' with backslash
 * escapes, B'…', X'…', N'…'), dollar-quoted strings ($$…$$, $tag$…$tag$), quoted identifiers
 * ("…"), comments (-- to the end of the line, nested /* … *\/) and parentheses. Each statement
 * comes with its leading keyword(s) and the identifiers it names (unquoted ones folded to lower
 * case, as the server folds them), so a caller can refuse a kind of statement or a name.
 *
 * The split is an input to a check, never trusted alone: a caller that runs the pieces sends
 * each one through the extended query protocol, where the server itself refuses a piece holding
 * more than one statement ("cannot insert multiple commands into a prepared statement"), so a
 * string this lexer reads differently from the server stops instead of running.
 *
 * Not read: Unicode escapes (U&'…', U&"…"), reported as `unicodeEscapes` so a caller can refuse
 * them (their text is not their value), and SQL-standard function bodies (BEGIN ATOMIC … END),
 * whose inner `;` split the statement (the server then refuses the pieces).
 */

/** One statement of a SQL string. */
export interface SqlStatement {
  /** The statement's text, as in the input (comments included), without the `;` that ends it. */
  readonly text: string;
  /** Its first two words, upper case (`ALTER TABLE`, `COMMIT`, `SET LOCAL`); '' for a first token that is not a word. */
  readonly keywords: readonly string[];
  /** Every identifier it names: unquoted ones lower-cased as PostgreSQL folds them, quoted ones exact. */
  readonly identifiers: ReadonlySet<string>;
  /** True when it holds a Unicode-escape string or identifier (U&'…', U&"…"). */
  readonly unicodeEscapes: boolean;
}

/** The input ends inside a string, quoted identifier, dollar quote or comment. */
export class UnterminatedSqlError extends Error {
  constructor(what: string, offset: number) {
    super(`unterminated ${what} starting at offset ${offset}`);
    this.name = 'UnterminatedSqlError';
  }
}

const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f' || c === '\v';
/** PostgreSQL's ident_start: a letter, `_`, or any non-ASCII character. */
const isIdentStart = (c: string): boolean => /[A-Za-z_]/.test(c) || c.charCodeAt(0) >= 0x80;
/** PostgreSQL's ident_cont: ident_start, a digit or `$`. */
const isIdentCont = (c: string): boolean => isIdentStart(c) || /[0-9$]/.test(c);
/** A dollar-quote tag's characters: ident_cont without `$`. */
const isTagCont = (c: string): boolean => isIdentStart(c) || /[0-9]/.test(c);

/** PostgreSQL folds only ASCII letters of an unquoted identifier (multibyte encodings). */
const fold = (word: string): string => word.replace(/[A-Z]/g, (c) => c.toLowerCase());

/** Splits `sql` into statements (empty ones, such as `;;` or a trailing comment, are left out). */
export function splitSql(sql: string): SqlStatement[] {
  const statements: SqlStatement[] = [];
  let start = 0;
  let depth = 0;
  let words: string[] = [];
  let tokens = 0;
  let identifiers = new Set<string>();
  let unicode = false;
  let i = 0;
  const n = sql.length;

  /** Counts a token; `word` is its text when it is a word (an unquoted identifier or keyword). */
  const token = (word: string | undefined): void => {
    if (tokens === 0) words.push(word === undefined ? '' : word.toUpperCase());
    else if (tokens === 1 && words[0] !== '' && word !== undefined) words.push(word.toUpperCase());
    tokens++;
  };
  const finish = (end: number): void => {
    const text = sql.slice(start, end);
    if (tokens > 0) statements.push({ text, keywords: words, identifiers, unicodeEscapes: unicode });
    start = end + 1;
    words = [];
    tokens = 0;
    identifiers = new Set();
    unicode = false;
  };
  /** Skips a quoted run closed by `quote`, where a doubled quote stands for one; returns the index after it. */
  const quoted = (from: number, quote: string, backslashes: boolean, what: string): number => {
    let j = from + 1;
    for (;;) {
      if (j >= n) throw new UnterminatedSqlError(what, from);
      const c = sql[j] as string;
      if (backslashes && c === '\\') {
        j += 2;
        continue;
      }
      if (c === quote) {
        if (sql[j + 1] === quote) {
          j += 2;
          continue;
        }
        return j + 1;
      }
      j++;
    }
  };

  while (i < n) {
    const c = sql[i] as string;
    if (isSpace(c)) {
      i++;
    } else if (c === '-' && sql[i + 1] === '-') {
      while (i < n && sql[i] !== '\n' && sql[i] !== '\r') i++;
    } else if (c === '/' && sql[i + 1] === '*') {
      const from = i;
      let nest = 1;
      i += 2;
      while (nest > 0) {
        if (i >= n) throw new UnterminatedSqlError('comment', from);
        if (sql[i] === '/' && sql[i + 1] === '*') {
          nest++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          nest--;
          i += 2;
        } else i++;
      }
    } else if (c === "'") {
      token(undefined);
      i = quoted(i, "'", false, 'string constant');
    } else if (c === '"') {
      token(undefined);
      const end = quoted(i, '"', false, 'quoted identifier');
      identifiers.add(sql.slice(i + 1, end - 1).replaceAll('""', '"'));
      i = end;
    } else if (c === '$' && (sql[i + 1] === '$' || (sql[i + 1] !== undefined && isIdentStart(sql[i + 1] as string)))) {
      // A dollar quote: $$ or $tag$ (a `$` after a digit run is a parameter, handled below).
      let j = i + 1;
      while (j < n && isTagCont(sql[j] as string)) j++;
      if (sql[j] !== '$') {
        token(undefined);
        i = j;
        continue;
      }
      const tag = sql.slice(i, j + 1);
      const close = sql.indexOf(tag, j + 1);
      if (close < 0) throw new UnterminatedSqlError(`dollar-quoted string ${tag}`, i);
      token(undefined);
      i = close + tag.length;
    } else if (isIdentStart(c)) {
      let j = i + 1;
      while (j < n && isIdentCont(sql[j] as string)) j++;
      const word = sql.slice(i, j);
      const lower = word.toLowerCase();
      if ((lower === 'e' || lower === 'b' || lower === 'x' || lower === 'n') && sql[j] === "'") {
        token(undefined);
        i = quoted(j, "'", lower === 'e', 'string constant');
      } else if (lower === 'u' && sql[j] === '&' && (sql[j + 1] === "'" || sql[j + 1] === '"')) {
        token(undefined);
        unicode = true;
        i = quoted(j + 1, sql[j + 1] as string, false, sql[j + 1] === '"' ? 'quoted identifier' : 'string constant');
      } else {
        token(word);
        identifiers.add(fold(word));
        i = j;
      }
    } else if (c === '(') {
      token(undefined);
      depth++;
      i++;
    } else if (c === ')') {
      token(undefined);
      if (depth > 0) depth--;
      i++;
    } else if (c === ';' && depth === 0) {
      finish(i);
      i++;
    } else {
      token(undefined);
      i++;
    }
  }
  finish(n);
  return statements;
}
