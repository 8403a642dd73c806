/**
 * The snapshot every copy reads: a REPEATABLE READ transaction on the source exports it, and a
 * second session closes the batch boundary exactly at it (`pgfanout.mark_snapshot_batch`); an
 * interrupted bootstrap's snapshot is imported again while its exporting session still lives.
 */
import pg from 'pg';
import { BOOTSTRAP_ERROR_CODES, BootstrapError, messageOf, snapshotGone, sqlState } from './errors.ts';
import { readSourceSchema, type SourceSchema } from './schema.ts';
import { MARK_ATTEMPTS } from './session.ts';
import type { BootstrapOptions } from './types.ts';

/** The snapshot every copy reads, and the batch it corresponds to. */
export interface Snapshot extends SourceSchema {
  readonly sourceId: string;
  readonly batchId: string;
  /** pg_export_snapshot() name, importable while `holder`'s transaction is open. */
  readonly name: string;
  readonly resumed: boolean;
}

/**
 * Opens the snapshot transaction on `holder`: the interrupted bootstrap's snapshot when it still
 * exists (`previous`), else a new one whose boundary `marker` closes with mark_snapshot_batch.
 */
export async function takeSnapshot(
  holder: pg.Client,
  marker: pg.Client,
  sourceId: string,
  previous: { batchId: string; snapshotName: string } | undefined,
  o: BootstrapOptions,
  log: (line: string) => void,
): Promise<Snapshot> {
  if (previous !== undefined) {
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    try {
      await holder.query(`SET TRANSACTION SNAPSHOT ${pg.escapeLiteral(previous.snapshotName)}`);
      const name = (await holder.query<{ name: string }>('SELECT pg_catalog.pg_export_snapshot() AS name')).rows[0]?.name as string;
      const schema = await readSourceSchema(holder, o.tables);
      return { sourceId, batchId: previous.batchId, name, ...schema, resumed: true };
    } catch (err) {
      await holder.query('ROLLBACK');
      if (!snapshotGone(err)) throw err;
      log(
        `the snapshot of the interrupted bootstrap (batch ${previous.batchId}) is gone: its source session ended. ` +
          'Starting over with a new snapshot; every table is copied again.',
      );
    }
  }
  for (let attempt = 1; ; attempt++) {
    await holder.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const { rows } = await holder.query<{ snapshot: string; name: string }>(
      'SELECT pg_catalog.pg_current_snapshot()::pg_catalog.text AS snapshot, pg_catalog.pg_export_snapshot() AS name',
    );
    const { snapshot, name } = rows[0] as { snapshot: string; name: string };
    try {
      const marked = await marker.query<{ b: string }>('SELECT pgfanout.mark_snapshot_batch($1::pg_catalog.pg_snapshot)::pg_catalog.text AS b', [snapshot]);
      const schema = await readSourceSchema(holder, o.tables);
      return { sourceId, batchId: marked.rows[0]?.b as string, name, ...schema, resumed: false };
    } catch (err) {
      await holder.query('ROLLBACK');
      if (sqlState(err) !== '40001') {
        if (sqlState(err) === '42883' || sqlState(err) === '42501') {
          throw new BootstrapError(
            BOOTSTRAP_ERROR_CODES.notReady,
            `the source cannot mark a snapshot batch: ${messageOf(err)} (install the current pgfanout on the source; the bootstrapping role needs EXECUTE on pgfanout.mark_snapshot_batch(pg_snapshot))`,
            err,
          );
        }
        throw err;
      }
      if (attempt >= MARK_ATTEMPTS) {
        throw new BootstrapError(
          BOOTSTRAP_ERROR_CODES.snapshotRace,
          `the publisher moved the batch boundary past each of ${attempt} snapshots taken; try again (last refusal: ${messageOf(err)})`,
          err,
        );
      }
    }
  }
}

