/**
 * Runs a schema change (an `S` change: a DDL statement logged by `pgfanout.replicate_ddl` or the
 * DDL event triggers) on a replica, inside the apply transaction, at its place among the data
 * changes. Only on a replica whose applier allows schema changes (`allowSchemaChanges`); anywhere
 * else an `S` change stops the replica with an error naming the statement.
 *
 * The change's text is split into its statements as PostgreSQL's lexer reads it
 * (`#core/pg/statements.ts`), and refused whole, before anything runs, when a statement
 * - controls the transaction (BEGIN, START, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE,
 *   PREPARE): a COMMIT would end the apply transaction, leaving the statement committed and the
 *   position behind it;
 * - changes the session (SET, RESET, DISCARD, LISTEN, UNLISTEN, LOAD, DEALLOCATE), whose effect
 *   would outlive the transaction on the applier's connection;
 * - reads or writes files or programs or runs anonymous code (COPY, DO);
 * - names pgfanout's own schema (as does a search path naming it), or uses Unicode escapes,
 *   whose text is not their value;
 * or when the text cannot be read (an unterminated string or comment).
 *
 * Each statement then runs on its own through the extended query protocol, where the server
 * refuses a text of more than one statement: a string this split reads otherwise than the server
 * stops instead of running. Before each statement the source's search path is set for the
 * transaction only (a statement cannot leave another path to the next); after the last one, the
 * source's row of `pgfanout.replica_position` must be as before. The replica's own triggers stay
 * quiet as for data changes (`session_replication_role = replica`, under which event triggers do
 * not fire either, or the `pgfanout.origin` guard).
 *
 * A statement that fails is a permanent {@link SchemaChangeError} naming the statement, its
 * position and the server's reason (it would fail again on a retry); a lost connection or a lock
 * timeout stays transient. A refused one is an {@link UntrustedMessageError}.
 */
import type pg from 'pg';
import { splitSql, UnterminatedSqlError, type SqlStatement } from '../pg/statements.ts';
import { classifyDatabaseError, describeValue, SchemaChangeError, TransientDatabaseError, UntrustedMessageError, whereInBatch, type ApplyContext } from '../wire/errors.ts';

/** pgfanout's own schema, which no change from the stream may write. */
export const PGFANOUT_SCHEMA = 'pgfanout';

/** First keywords of the statements a schema change may not hold, and why. */
const REFUSED: ReadonlyMap<string, string> = new Map([
  ...['BEGIN', 'START', 'COMMIT', 'END', 'ROLLBACK', 'ABORT', 'SAVEPOINT', 'RELEASE', 'PREPARE'].map((k) => [k, 'transaction control'] as const),
  ...['SET', 'RESET', 'DISCARD', 'LISTEN', 'UNLISTEN', 'LOAD', 'DEALLOCATE'].map((k) => [k, 'session control'] as const),
  ['COPY', 'file or program access'] as const,
  ['DO', 'anonymous code'] as const,
]);

/**
 * The statements of a schema change, or a reason to refuse it (see the module comment). Pure:
 * no server is asked; the server's own check comes when each statement runs.
 */
export function schemaChangeStatements(sql: string, searchPath: string): { readonly statements: readonly SqlStatement[] } | { readonly refused: string } {
  let statements: SqlStatement[];
  let path: SqlStatement[];
  try {
    statements = splitSql(sql);
    path = splitSql(searchPath);
  } catch (err) {
    if (err instanceof UnterminatedSqlError) return { refused: `its text cannot be read: ${err.message}` };
    throw err;
  }
  if (statements.length === 0) return { refused: 'it holds no statement' };
  if (path.some((p) => p.identifiers.has(PGFANOUT_SCHEMA))) return { refused: `its search path ${describeValue(searchPath)} names pgfanout's own schema` };
  for (const [i, statement] of statements.entries()) {
    const which = statements.length > 1 ? `statement ${i + 1} of ${statements.length} (${describeValue(statement.text.trim(), 60)})` : 'its statement';
    const kind = REFUSED.get(statement.keywords[0] ?? '');
    if (kind !== undefined) return { refused: `${which} is ${kind} (${statement.keywords.join(' ')}), which a replicated schema change may not hold` };
    if (statement.identifiers.has(PGFANOUT_SCHEMA)) return { refused: `${which} names pgfanout's own schema` };
    if (statement.unicodeEscapes) return { refused: `${which} uses a Unicode escape (U&'…' or U&"…"), which a replicated schema change may not` };
  }
  return { statements };
}

/** Runs `sql` with `searchPath` on the replica; `where` names the change's position in its batch. */
export async function runSchemaChange(client: pg.ClientBase, sql: string, searchPath: string, where: string, context: ApplyContext): Promise<void> {
  const at = `${where} (${whereInBatch(context)})`;
  const checked = schemaChangeStatements(sql, searchPath);
  if ('refused' in checked) {
    throw new UntrustedMessageError(context.sourceId, `the schema change ${describeValue(sql, 200)} at ${where}: ${checked.refused}`, { batchId: context.batchId, part: context.part });
  }
  const positionSql =
    "SELECT pg_catalog.current_setting('search_path') AS path, (SELECT p::pg_catalog.text FROM pgfanout.replica_position p WHERE p.source_id = $1) AS position";
  let before: { path: string; position: string | null };
  try {
    const { rows } = await client.query<{ path: string; position: string | null }>(positionSql, [context.sourceId]);
    before = rows[0] as { path: string; position: string | null };
  } catch (err) {
    throw classifyDatabaseError(err, `reading the search path and position before the schema change at ${at}`);
  }
  for (const statement of checked.statements) {
    try {
      await client.query("SELECT pg_catalog.set_config('search_path', $1, true)", [searchPath]);
    } catch (err) {
      throw classifyDatabaseError(err, `setting the search path ${JSON.stringify(searchPath)} for the schema change at ${at}`);
    }
    try {
      // The extended protocol (node-postgres' queryMode, not in its type definitions): the server
      // refuses a text of more than one statement.
      const query: pg.QueryConfig & { readonly queryMode: 'extended' } = { text: statement.text, queryMode: 'extended' };
      await client.query(query);
    } catch (err) {
      const classified = classifyDatabaseError(err, `running the schema change at ${at}`);
      if (classified instanceof TransientDatabaseError) throw classified;
      const e = err as { code?: unknown; message?: unknown };
      const message = typeof e.message === 'string' ? e.message : String(err);
      if (e.code === '42601' && /multiple commands/.test(message)) {
        throw new UntrustedMessageError(
          context.sourceId,
          `the schema change ${describeValue(sql, 200)} at ${where}: the server reads more than one statement in ${describeValue(statement.text, 120)}, which pgfanout read as one`,
          { batchId: context.batchId, part: context.part },
        );
      }
      throw new SchemaChangeError(sql, where, message, typeof e.code === 'string' ? e.code : undefined, context, err);
    }
  }
  let after: { path: string; position: string | null };
  try {
    const { rows } = await client.query<{ path: string; position: string | null }>(
      `${positionSql}, pg_catalog.set_config('search_path', $2, true)`,
      [context.sourceId, before.path],
    );
    after = rows[0] as { path: string; position: string | null };
  } catch (err) {
    throw classifyDatabaseError(err, `restoring the search path after the schema change at ${at}`);
  }
  if (after.position !== before.position) {
    throw new UntrustedMessageError(context.sourceId, `the schema change ${describeValue(sql, 200)} at ${where} changed the replica's position of the source`, {
      batchId: context.batchId,
      part: context.part,
    });
  }
}
