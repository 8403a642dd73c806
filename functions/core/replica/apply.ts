/**
 * The apply core: writes one message into a replica, exactly once and in order.
 *
 * `applyMessage` runs in one transaction on the replica:
 * 1. validate the envelope (malformed or unknown-version messages never reach the database);
 * 2. refuse a message of a source the replica does not follow (`sources`), before anything else;
 * 3. lock the source's position (`pgfanout.replica_lock`; every read and write of pgfanout's
 *    replica_* tables goes through the protocol's SQL functions, called from protocol.ts);
 * 4. a message whose batch is not its `prev` + 1 is refused (batches are consecutive, so nothing
 *    can jump the position); one at or below the recorded position is a duplicate once it matches
 *    the replica's record of that batch (position.ts: same origin, or same part digest; nothing
 *    happens), and stops the replica when it does not; one that does not follow the position is a
 *    gap (refused with both positions named); a new batch from an earlier WAL position of the
 *    same source system and timeline is refused;
 * 5. a part that is not final is staged; the final part applies every staged part (read back one
 *    at a time and checked against the digest chain), then itself, and records the batch as
 *    applied with its part digests and origin, all in the same transaction.
 *
 * A change to pgfanout's own schema is refused; so is a schema change on a replica that does not
 * allow them (`allowSchemaChanges`), or one holding transaction control or more than it shows
 * (schema-change.ts); an INSERT that no longer carries a replica column the replica would leave
 * NULL is schema drift (batch-applier.ts). Each refusal is a permanent error that stops the
 * replica: nothing of the message is applied.
 *
 * Changes are applied with set-based statements over runs of changes to one table with one
 * operation (split wherever a later change touches a row an earlier one in the run touched, so the
 * result is the same as applying them one by one). Which changes share a run is planned per batch:
 * - in the batch's order (`planning: 'in-order'`, and always under the origin guard, where
 *   foreign keys and the replica's triggers fire): a run is consecutive changes;
 * - per table (the default under `session_replication_role = replica`, where neither fires):
 *   changes to different tables commute, so each table collects its own runs, written in the
 *   batch's order within the table. A change may also join an earlier run of its table past other
 *   changes of that table when it provably commutes with them: the table's only unique (or
 *   exclusion) index is the identity, the change carries it in every image, no change passed over
 *   touches the same identity value, and an INSERT leaves no column to a default. A table with
 *   triggers that fire in replica mode, rules, inheritance or partitions keeps its exact place in
 *   the batch; TRUNCATE, split changes and schema changes are barriers for every table.
 * Keys compare as the replica compares them (type and collation), never as text where the two
 * differ, and DEFERRABLE keys and other unique constraints shape the runs (`Joining` in
 * statements.ts); DEFERRABLE unique constraints, which PostgreSQL does not check under
 * `session_replication_role = replica`, are checked before commit for the keys the batch wrote.
 *
 * What the applier reads from the replica's catalog (columns, types, identities) is kept per
 * connection across messages ({@link replicaCatalog}), forgotten on any failed apply, after a
 * schema change, and after a minute (CATALOG_MAX_AGE_MS), so changes made on the replica by hand
 * are seen.
 *
 * Values travel as text and are converted by the replica server with the column type's input
 * function (`$1::text` cast to the type named from the catalog, without typmod, then assigned, so
 * a too long varchar is an error, never silently cut). Identifiers are always quoted; values are
 * always parameters.
 *
 * Rows are matched by a replica unique identity (primary key, or a unique, non-partial,
 * non-expression index over NOT NULL columns) whose columns the change's old image carries;
 * otherwise by the whole old row, compared as text after a round trip through the column type,
 * touching exactly one matching row (by tableoid and ctid), so duplicate rows work.
 *
 * The replica's own triggers and foreign-key triggers do not fire: `session_replication_role =
 * replica` for the transaction, or where the role may not set it, the fallback
 * `pgfanout.origin = <source id>` that pgfanout's capture trigger honours (the replica's other
 * triggers then do fire).
 */
import type pg from 'pg';
import { parseEnvelope } from '../wire/envelope.ts';
import { bodyDigest } from '../wire/digest.ts';
import { classifyDatabaseError, describeValue, GapError, InvalidArgumentError, MalformedMessageError, UntrustedMessageError, whereInBatch, type ApplyContext } from '../wire/errors.ts';
import { checkConflictMode, type ConflictMode } from './conflicts.ts';
import { TableFilter } from './filter.ts';
import { checkDuplicate, checkOriginForward, decide, positionText, refuseBeforeBootstrap } from './position.ts';
import { advance, appliedBatch, lockPosition, stagedPart, stagePart } from './protocol.ts';
import { replicaCatalog } from './catalog.ts';
import { beginSession, type ReplicaTriggers, type ReplicationRole } from './session.ts';
import { BatchApplier } from './batch-applier.ts';

/** How {@link applyMessage} groups changes into statements. */
export type Planning = 'per-table' | 'in-order';

/** Options of {@link applyMessage}. */
export interface ApplyOptions {
  /**
   * The source ids (`pgfanout.source_id()` on each source) this replica follows: a message of any
   * other source is refused (a permanent `UNTRUSTED_MESSAGE` error) before the replica is touched.
   * The deployed applier always sets it (PGFANOUT_SOURCE_IDS); absent, any source is accepted,
   * which only tests and tools reading one known stream should rely on.
   * @default any source
   */
  readonly sources?: readonly string[];
  /**
   * Whether this replica runs the schema changes (`S` changes) of its sources. Off, a schema
   * change stops the replica with a permanent `UNTRUSTED_MESSAGE` error naming the statement:
   * running a statement from the stream is a trust the replica's operator grants. On, each
   * statement still runs only if it is exactly the statements it shows, none of them transaction
   * or session control, `COPY`, `DO` or naming pgfanout's own schema (see schema-change.ts).
   * @default false
   */
  readonly allowSchemaChanges?: boolean;
  /** Tables to apply (`schema.table`, `"schema"."table"` or `schema.*`); empty or absent means all. */
  readonly include?: readonly string[];
  /** Tables never to apply, same forms; wins over `include`. */
  readonly exclude?: readonly string[];
  /**
   * `replica`: `SET LOCAL session_replication_role = replica` (fails without the privilege);
   * `origin-guard`: `SET LOCAL pgfanout.origin = <source id>`; `auto`: the first that works.
   * @default 'auto'
   */
  readonly replicationRole?: ReplicationRole;
  /**
   * Under the origin guard (the role may not set session_replication_role), a replica table's
   * own triggers fire on applied changes: `refuse` stops the apply with an error naming them and
   * the fix; `fire` lets them, for replicas whose triggers are meant to (see session.ts).
   * @default 'refuse'
   */
  readonly replicaTriggers?: ReplicaTriggers;
  /**
   * How changes are grouped into set-based statements (see the module comment): `per-table`
   * groups changes by table where that provably gives the same result (only under
   * `session_replication_role = replica`); `in-order` keeps the batch's order across tables.
   * @default 'per-table'
   */
  readonly planning?: Planning;
  /**
   * Run every check and write of the apply, then roll the transaction back instead of committing:
   * the result (or the error) says what applying the message would do now, and nothing changes.
   * @default false
   */
  readonly dryRun?: boolean;
  /**
   * What a change that does not fit the replica's row does (see conflicts.ts): `error` stops the
   * apply (an UPDATE or DELETE of a missing row, an INSERT of an existing key), for one-way
   * replicas that must never differ; `apply-remote` applies the incoming change and
   * `keep-local` keeps the replica's row, both recording the conflict in
   * `pgfanout.replica_conflict`, for databases that are each other's replica.
   * @default 'error'
   */
  readonly conflicts?: ConflictMode;
}

/** What {@link applyMessage} did. */
export interface ApplyResult {
  /** `applied`: the batch is applied; `staged`: a non-final part was stored; `duplicate`: nothing to do. */
  readonly outcome: 'applied' | 'staged' | 'duplicate';
  /**
   * For a duplicate of an applied batch: true when it was checked against the replica's record of
   * that batch, false when the replica keeps none (older than its history, copied by a bootstrap,
   * or skipped). Absent otherwise.
   */
  readonly verified?: boolean;
  readonly sourceId: string;
  readonly batchId: string;
  readonly part: number;
  /** Changes written to the replica by this call (0 unless `applied`). */
  readonly changes: number;
  /** Changes of the batch left out by include/exclude (0 unless `applied`). */
  readonly skipped: number;
  /** The message's source time, as the publisher sent it. */
  readonly sourceTime?: string;
  /** How triggers were kept quiet: `replica` or `origin-guard` (absent for duplicates). */
  readonly replicationRole?: 'replica' | 'origin-guard';
  /** Conflicts detected and resolved (absent unless `applied` with a conflict mode other than `error`). */
  readonly conflicts?: number;
}

/** The checked form of {@link ApplyOptions}. */
interface CheckedOptions {
  /** Undefined: any source. */
  readonly sources: ReadonlySet<string> | undefined;
  readonly allowSchemaChanges: boolean;
  readonly filter: TableFilter;
  readonly mode: ReplicationRole;
  readonly conflicts: ConflictMode;
  readonly planning: Planning;
  readonly dryRun: boolean;
  readonly replicaTriggers: ReplicaTriggers;
}

/** Checks options once, naming the option, the value and what is allowed. */
function checkOptions(options: ApplyOptions): CheckedOptions {
  const mode = options.replicationRole ?? 'auto';
  if (mode !== 'auto' && mode !== 'replica' && mode !== 'origin-guard') {
    throw new InvalidArgumentError(`replicationRole ${describeValue(mode)} is not allowed; expected 'replica', 'origin-guard' or 'auto'`);
  }
  const planning = options.planning ?? 'per-table';
  if (planning !== 'per-table' && planning !== 'in-order') {
    throw new InvalidArgumentError(`planning ${describeValue(planning)} is not allowed; expected 'per-table' or 'in-order'`);
  }
  const replicaTriggers = options.replicaTriggers ?? 'refuse';
  if (replicaTriggers !== 'refuse' && replicaTriggers !== 'fire') {
    throw new InvalidArgumentError(`replicaTriggers ${describeValue(replicaTriggers)} is not allowed; expected 'refuse' or 'fire'`);
  }
  let sources: ReadonlySet<string> | undefined;
  if (options.sources !== undefined) {
    if (!Array.isArray(options.sources) || options.sources.length === 0 || options.sources.some((id) => typeof id !== 'string' || id.trim() === '')) {
      throw new InvalidArgumentError(`sources ${describeValue(options.sources)} is not allowed; expected a non-empty list of source ids (pgfanout.source_id() on each source)`);
    }
    sources = new Set(options.sources);
  }
  if (options.allowSchemaChanges !== undefined && typeof options.allowSchemaChanges !== 'boolean') {
    throw new InvalidArgumentError(`allowSchemaChanges ${describeValue(options.allowSchemaChanges)} is not allowed; expected true or false`);
  }
  return {
    replicaTriggers,
    sources,
    allowSchemaChanges: options.allowSchemaChanges === true,
    filter: new TableFilter(options.include, options.exclude),
    mode,
    conflicts: checkConflictMode(options.conflicts ?? 'error'),
    planning,
    dryRun: options.dryRun === true,
  };
}

/**
 * A replica's applier: its options checked once (an invalid option fails here, at start-up,
 * not on every message), then {@link Applier.apply} for each message.
 */
export class Applier {
  readonly #options: CheckedOptions;

  constructor(options: ApplyOptions = {}) {
    this.#options = checkOptions(options);
  }

  /**
   * Applies one message body to the replica. See the module comment for the steps. Throws a
   * `PgfanoutError`: permanent for malformed messages, unknown versions, gaps, schema
   * mismatches and data errors; transient for connection loss, serialization failures and the
   * like. A failed apply leaves nothing applied and the position unchanged. The client must not
   * be inside a transaction.
   */
  apply(client: pg.ClientBase, body: string): Promise<ApplyResult> {
    return applyChecked(client, body, this.#options);
  }
}

/** Applies one message with `options` (checked on each call; a long-lived applier uses {@link Applier}). */
export async function applyMessage(client: pg.ClientBase, body: string, options: ApplyOptions = {}): Promise<ApplyResult> {
  return new Applier(options).apply(client, body);
}

async function applyChecked(client: pg.ClientBase, body: string, options: CheckedOptions): Promise<ApplyResult> {
  const envelope = parseEnvelope(body);
  const { filter, mode, conflicts, planning } = options;
  const context: ApplyContext = { sourceId: envelope.source, batchId: envelope.batch, part: envelope.part };
  const base = {
    sourceId: envelope.source,
    batchId: envelope.batch,
    part: envelope.part,
    ...(envelope.time === undefined ? {} : { sourceTime: envelope.time }),
  };
  const where = `(${whereInBatch({ sourceId: envelope.source, batchId: envelope.batch, part: envelope.part })})`;
  if (options.sources !== undefined && !options.sources.has(envelope.source)) {
    throw new UntrustedMessageError(
      envelope.source,
      `this replica follows only source${options.sources.size > 1 ? 's' : ''} ${[...options.sources].join(', ')} (its sources option, PGFANOUT_SOURCE_IDS)`,
      { batchId: envelope.batch, part: envelope.part },
    );
  }
  let role: 'replica' | 'origin-guard';
  try {
    role = await beginSession(client, mode, envelope.source);
  } catch (err) {
    throw classifyDatabaseError(err, `starting the apply transaction ${where}`);
  }
  try {
    const locked = await lockPosition(client, envelope.source);
    const position = locked.position;
    if (position.appliedBatchId === 0n && position.part === null) refuseBeforeBootstrap(locked, envelope);
    const digest = bodyDigest(body);
    const stagedFirst = position.part !== null && BigInt(envelope.batch) === position.batchId && envelope.part === 0 ? locked.stagedFirstDigest : undefined;
    const decision = decide(position, envelope, digest, stagedFirst);
    if (decision.kind === 'refuse') throw new UntrustedMessageError(envelope.source, decision.reason, { batchId: envelope.batch, part: envelope.part });
    if (decision.kind === 'applied-before') {
      const verified = checkDuplicate(await appliedBatch(client, envelope.source, envelope.batch), envelope, digest);
      await client.query('ROLLBACK');
      return { outcome: 'duplicate', ...base, verified, changes: 0, skipped: 0 };
    }
    if (decision.kind === 'duplicate') {
      await client.query('ROLLBACK');
      return { outcome: 'duplicate', ...base, changes: 0, skipped: 0 };
    }
    if (decision.kind === 'gap') {
      throw new GapError(envelope.source, decision.expected, `${positionText(envelope.batch, envelope.part)} (prev ${envelope.prev})`);
    }
    if (envelope.part === 0) checkOriginForward(position, envelope);
    if (decision.kind === 'stage') {
      // Part 0 drops whatever was staged before (a batch that starts over, decision.restart).
      await stagePart(client, envelope, digest, body);
      await client.query(options.dryRun ? 'ROLLBACK' : 'COMMIT');
      return { outcome: 'staged', ...base, changes: 0, skipped: 0, replicationRole: role };
    }

    // Per-table planning is valid only while session_replication_role = replica is in effect.
    const applier = new BatchApplier(client, context, {
      filter,
      conflicts,
      perTable: role === 'replica' && planning === 'per-table',
      allowSchemaChanges: options.allowSchemaChanges,
      checkDeferrable: role === 'replica',
      refuseTriggers: role === 'origin-guard' && options.replicaTriggers === 'refuse',
    });
    const partDigests: string[] = [];
    for (let part = 0; part < envelope.part; part++) {
      const staged = await stagedPart(client, envelope.source, envelope.batch, part);
      if (staged === undefined) throw new GapError(envelope.source, `staged ${positionText(envelope.batch, part)}`, `the final ${positionText(envelope.batch, envelope.part)} without it`);
      // What was staged must be what arrived: its digest, and the chain of `after` digests from this message back.
      const stagedEnvelope = parseEnvelope(staged.body);
      const stagedDigest = bodyDigest(staged.body);
      if (stagedDigest !== staged.digest || (part > 0 && stagedEnvelope.after !== partDigests[part - 1]) || stagedEnvelope.source !== envelope.source || stagedEnvelope.batch !== envelope.batch) {
        throw new UntrustedMessageError(envelope.source, `the staged ${positionText(envelope.batch, part)} is not the part that arrived (its digest or its link to the part before differs)`, {
          batchId: envelope.batch,
          part: envelope.part,
        });
      }
      partDigests.push(stagedDigest);
      await applier.part(stagedEnvelope.changes, part);
    }
    if (envelope.part > 0 && envelope.after !== partDigests[envelope.part - 1]) {
      throw new UntrustedMessageError(envelope.source, `the final ${positionText(envelope.batch, envelope.part)} does not follow the staged part before it (digest ${partDigests[envelope.part - 1]}, after ${envelope.after})`, {
        batchId: envelope.batch,
        part: envelope.part,
      });
    }
    partDigests.push(digest);
    await applier.part(envelope.changes, envelope.part);
    await applier.finish();
    if (applier.seen !== envelope.count) {
      throw new MalformedMessageError('count', String(envelope.count), `the number of changes in batch ${envelope.batch}'s parts, ${applier.seen}`);
    }
    // The position, the batch's record (part digests, origin), its staged parts dropped (also those
    // of an encoding it started over from) and the end of the kept history, in one call.
    await advance(client, { source: envelope.source, batch: envelope.batch, partDigests, time: envelope.time, origin: envelope.origin });
    await client.query(options.dryRun ? 'ROLLBACK' : 'COMMIT');
    // A schema change rolled back by a dry run must not stay in what was read of the catalog.
    if (options.dryRun) replicaCatalog(client).invalidate();
    return {
      outcome: 'applied',
      ...base,
      changes: applier.applied,
      skipped: applier.skipped,
      replicationRole: role,
      ...(applier.conflictCount > 0 ? { conflicts: applier.conflictCount } : {}),
    };
  } catch (err) {
    // What was read of the catalog may be what the error is about, or from a rolled-back schema change.
    replicaCatalog(client).invalidate();
    try {
      await client.query('ROLLBACK');
    } catch {
      // The connection is gone; the server rolls the transaction back itself. The original error says why.
    }
    const e = err as { code?: string; message?: string };
    if ((e.code === '42P01' || e.code === '3F000') && /pgfanout\.replica_|schema "pgfanout"/.test(e.message ?? '')) {
      throw classifyDatabaseError(err, `applying ${where}: this database has no pgfanout replica tables; install them first (installReplica)`);
    }
    if (e.code === '42883' && /pgfanout\.replica_/.test(e.message ?? '')) {
      throw classifyDatabaseError(err, `applying ${where}: this database has pgfanout replica tables older than the 1.2.0 protocol functions the applier calls; upgrade them (installReplica)`);
    }
    throw classifyDatabaseError(err, `applying ${where}`);
  }
}
