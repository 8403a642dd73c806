/**
 * The replica's side before the copy: one transaction checks every table (created from the
 * source's definition when missing), empties what must be emptied, and records the bootstrap.
 */
import type pg from 'pg';
import { qualified, quoteIdent } from '#core/pg/sql.ts';
import { BOOTSTRAP_ERROR_CODES, BootstrapError, messageOf } from './errors.ts';
import { columnProblems, createStatements, REPLICA_COLUMNS_SQL, type SourceTable } from './schema.ts';
import { quietTriggers } from './session.ts';
import type { Snapshot } from './snapshot.ts';
import type { BootstrapOptions } from './types.ts';

/**
 * Checks and prepares the replica in one transaction (nothing changes when a check fails) and
 * records the bootstrap. Returns the tables it created and those an interrupted run already
 * copied under the same snapshot.
 */
export async function prepareReplica(ctl: pg.Client, snap: Snapshot, o: BootstrapOptions, previousExists: boolean): Promise<{ created: Set<string>; copied: Set<string> }> {
  const name = o.replicaName;
  await ctl.query('BEGIN');
  try {
    await ctl.query("SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)");
    const position = await ctl.query<{ applied: string }>(
      'SELECT applied_batch_id::pg_catalog.text AS applied FROM pgfanout.replica_position WHERE source_id = $1 FOR UPDATE',
      [snap.sourceId],
    );
    const following = position.rows[0];
    if (following !== undefined && !o.force) {
      throw new BootstrapError(
        BOOTSTRAP_ERROR_CODES.alreadyFollowing,
        `replica ${name} already follows source ${snap.sourceId} (applied batch ${following.applied}); bootstrap is for a new or empty replica: pass --force to empty its tables and copy them again`,
      );
    }
    const created = new Set<string>();
    const problems: string[] = [];
    const nonEmpty: string[] = [];
    const existing: SourceTable[] = [];
    for (const table of snap.tables) {
      const { rows } = await ctl.query<{ name: string; type: string; not_null: boolean; generated: string; has_default: boolean }>(REPLICA_COLUMNS_SQL, [table.ref.schema, table.ref.table]);
      if (rows.length === 0) {
        created.add(table.name);
        continue;
      }
      existing.push(table);
      problems.push(...columnProblems(table, rows.map((r) => ({ name: r.name, type: r.type, notNull: r.not_null, generated: r.generated, hasDefault: r.has_default }))));
      const { rows: any } = await ctl.query(`SELECT 1 FROM ${qualified(table.ref.schema, table.ref.table)} LIMIT 1`);
      if (any.length > 0) nonEmpty.push(table.name);
    }
    if (problems.length > 0) {
      throw new BootstrapError(BOOTSTRAP_ERROR_CODES.schemaMismatch, `replica ${name}: ${problems.join('; ')}; nothing was changed on the replica`);
    }
    if (nonEmpty.length > 0 && !o.force && !previousExists) {
      throw new BootstrapError(
        BOOTSTRAP_ERROR_CODES.notEmpty,
        `replica ${name}: table(s) ${nonEmpty.join(', ')} hold rows; bootstrap copies into empty tables: pass --force to empty them first`,
      );
    }
    if (following !== undefined) {
      for (const t of ['replica_position', 'replica_staged_part', 'replica_staged_value']) {
        await ctl.query(`DELETE FROM pgfanout.${quoteIdent(t)} WHERE source_id = $1`, [snap.sourceId]);
      }
    }
    await quietTriggers(ctl, snap.sourceId);
    for (const table of snap.tables) {
      if (!created.has(table.name)) continue;
      for (const statement of createStatements(table)) {
        await ctl.query(statement).catch((err: unknown) => {
          throw new BootstrapError(BOOTSTRAP_ERROR_CODES.schemaMismatch, `replica ${name}: could not create table ${table.name} from the source's definition: ${messageOf(err)}`, err);
        });
      }
    }
    let copied = new Set<string>();
    if (snap.resumed) {
      const { rows } = await ctl.query<{ schema: string; table: string }>(
        'SELECT table_schema AS schema, table_name AS table FROM pgfanout.replica_bootstrap_table WHERE source_id = $1 AND copied_at IS NOT NULL',
        [snap.sourceId],
      );
      copied = new Set(rows.map((r) => `${r.schema}.${r.table}`));
      await ctl.query('UPDATE pgfanout.replica_bootstrap SET snapshot_name = $2 WHERE source_id = $1', [snap.sourceId, snap.name]);
    } else {
      await ctl.query('DELETE FROM pgfanout.replica_bootstrap WHERE source_id = $1', [snap.sourceId]);
      await ctl.query('INSERT INTO pgfanout.replica_bootstrap (source_id, batch_id, snapshot_name) VALUES ($1, $2::pg_catalog.int8, $3)', [snap.sourceId, snap.batchId, snap.name]);
    }
    for (const table of snap.tables) {
      await ctl.query(
        'INSERT INTO pgfanout.replica_bootstrap_table (source_id, table_schema, table_name) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
        [snap.sourceId, table.ref.schema, table.ref.table],
      );
    }
    const toEmpty = existing.filter((t) => nonEmpty.includes(t.name) && !copied.has(t.name));
    if (toEmpty.length > 0) {
      // One statement, so foreign keys among the copied tables do not stand in the way.
      await ctl.query(`TRUNCATE TABLE ${toEmpty.map((t) => qualified(t.ref.schema, t.ref.table)).join(', ')}`).catch((err: unknown) => {
        throw new BootstrapError(BOOTSTRAP_ERROR_CODES.notReady, `replica ${name}: could not empty ${toEmpty.map((t) => t.name).join(', ')}: ${messageOf(err)}`, err);
      });
    }
    await ctl.query('COMMIT');
    return { created, copied };
  } catch (err) {
    await ctl.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

