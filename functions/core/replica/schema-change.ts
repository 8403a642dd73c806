/**
 * Runs a schema change (an `S` change: a DDL statement logged by `pgfanout.replicate_ddl` or the
 * DDL event triggers) on a replica, inside the apply transaction, at its place among the data
 * changes.
 *
 * The statement runs as the applier's role, with the source's search path (the schemas its
 * unqualified names resolved in there) for the statement only, through the simple query
 * protocol so that a string of several statements runs as it did on the source. The replica's
 * own triggers stay quiet as for data changes (`session_replication_role = replica`, under which
 * event triggers do not fire either, or the `pgfanout.origin` guard).
 *
 * A statement that fails is a permanent {@link SchemaChangeError} naming the statement, its
 * position and the server's reason (it would fail again on a retry); a lost connection or a lock
 * timeout stays transient.
 */
import type pg from 'pg';
import { classifyDatabaseError, SchemaChangeError, TransientDatabaseError, type ApplyContext } from '../wire/errors.ts';

/** Runs `sql` with `searchPath` on the replica; `where` names the change's position in its batch. */
export async function runSchemaChange(client: pg.ClientBase, sql: string, searchPath: string, where: string, context: ApplyContext): Promise<void> {
  const at = `${where} (batch ${context.batchId}, part ${context.part}, source ${context.sourceId})`;
  let previous: string;
  try {
    const { rows } = await client.query<{ path: string }>(
      "SELECT pg_catalog.current_setting('search_path') AS path, pg_catalog.set_config('search_path', $1, true)",
      [searchPath],
    );
    previous = (rows[0] as { path: string }).path;
  } catch (err) {
    throw classifyDatabaseError(err, `setting the search path ${JSON.stringify(searchPath)} for the schema change at ${at}`);
  }
  try {
    // No parameters: the simple query protocol, which runs every statement of the string.
    await client.query(sql);
  } catch (err) {
    const classified = classifyDatabaseError(err, `running the schema change at ${at}`);
    if (classified instanceof TransientDatabaseError) throw classified;
    const e = err as { code?: unknown; message?: unknown };
    throw new SchemaChangeError(sql, where, typeof e.message === 'string' ? e.message : String(err), typeof e.code === 'string' ? e.code : undefined, context, err);
  }
  try {
    await client.query("SELECT pg_catalog.set_config('search_path', $1, true)", [previous]);
  } catch (err) {
    throw classifyDatabaseError(err, `restoring the search path after the schema change at ${at}`);
  }
}
