/**
 * Applies the changes of one batch inside the caller's transaction: plans them into runs (per
 * table where that provably gives the same result, else in the batch's order), writes each run
 * with one set-based statement, stages the pieces of split values, applies TRUNCATE and schema
 * changes at their place. See apply.ts for the rules.
 */
import type pg from 'pg';
import { checkImages, checkSchemaChange, checkTruncatedPartition, type ChangeHead, type ChangeItem, type RowImage } from '../wire/envelope.ts';
import {
  classifyDatabaseError,
  DatabaseError,
  describeValue,
  MalformedMessageError,
  RowNotFoundError,
  SchemaDriftError,
  SchemaMismatchError,
  UnknownTableError,
  UntrustedMessageError,
  whereInBatch,
  type ApplyContext,
} from '../wire/errors.ts';
import { applyChecked, type ConflictMode } from './conflicts.ts';
import { clearValues, stagedValues, stageValues } from './protocol.ts';
import { PGFANOUT_SCHEMA, runSchemaChange } from './schema-change.ts';
import type { TableFilter } from './filter.ts';
import { refuseReplicaTriggers, triggerNames } from './session.ts';
import { CATALOG_MAX_AGE_MS, CATALOG_SQL, IDENTITIES_SQL, replicaCatalog, type ReplicaCatalog } from './catalog.ts';
import {
  deferredCheckSql,
  joiningOf,
  placementOf,
  keyClassesSql,
  snapshotCuts,
  stagedSource,
  statementName,
  statementSql,
  unnestSource,
  type ColumnInfo,
  type DeferrableUnique,
  type RowSource,
  type Shape,
  type TableInfo,
} from './statements.ts';
import { qualified, quoteIdent } from '../pg/sql.ts';

/** Rows per set-based statement, and text bytes, before a run is written. */
const RUN_MAX_ROWS = 5000;
const RUN_MAX_BYTES = 8 * 1024 * 1024;
/** Key values of DEFERRABLE unique constraints kept per table for the check before commit; beyond, the whole table is checked. */
const DEFERRED_MAX_KEYS = 100_000;

/** Changes written together by one set-based statement. */
interface Run {
  readonly shape: Shape;
  readonly signature: string;
  /** The lane the run belongs to: a table (`Shape.table.quoted`) or ORDERED. */
  readonly lane: string;
  /** Order of creation in the batch; runs are written in this order. */
  readonly seq: number;
  readonly columns: (string | null)[][];
  rows: number;
  bytes: number;
  /** Identity values touched by the run (old and new keys), to keep a row to one change per run. */
  readonly touched: Set<string>;
  /** Where the run's first and last changes are in the batch, for error messages. */
  readonly first: string;
  last: string;
  /** No later change may join (an `alone` change, see Joining). */
  readonly sealed: boolean;
}

/** The key values a batch wrote into one table's DEFERRABLE unique constraints, to check before commit. */
interface DeferredKeys {
  readonly table: TableInfo;
  /** Per constraint (in table.deferrableUniques' order): distinct key values, as JSON of their texts. */
  readonly values: Set<string>[];
  /** Too many to keep, or some arrived in pieces: check the whole table. */
  whole: boolean;
}

/** The lane of changes that keep their place in the batch (every change, under in-order planning). */
const ORDERED = '';

/** The runs buffered for one table under per-table planning. */
interface Lane {
  /** In creation order. */
  readonly runs: Run[];
  /** The latest run of each statement shape. */
  readonly bySignature: Map<string, Run>;
  /** For each identity value (of Shape.commuteKey), the seq of the last run that touched it. */
  readonly lastTouch: Map<string, number>;
  /** The seq of the last run holding a change that must not be passed (no commute key); 0: none. */
  fence: number;
}

interface Pending {
  readonly head: ChangeHead;
  readonly index: string;
  readonly slots: Map<string, number>;
  readonly columns: { old: string[]; new: string[] };
  readonly nullSlots: Set<number>;
}

/** Applies the changes of one batch, in order, inside the caller's transaction. */
export class BatchApplier {
  readonly #client: pg.ClientBase;
  readonly #context: ApplyContext;
  readonly #filter: TableFilter;
  /** The connection's catalog knowledge, shared with the next messages; its maps, for short. */
  readonly #catalog: ReplicaCatalog;
  readonly #tables: Map<string, TableInfo>;
  readonly #shapes: Map<string, Shape>;
  /** Runs not written yet, in creation order; the lanes of per-table planning; rows and bytes they hold. */
  #runs: Run[] = [];
  readonly #lanes = new Map<string, Lane>();
  #runSeq = 0;
  #bufferedRows = 0;
  #bufferedBytes = 0;
  /** Group changes per table (see apply.ts); only valid under `session_replication_role = replica`. */
  readonly #perTable: boolean;
  /**
   * Check DEFERRABLE unique constraints before commit: under `session_replication_role = replica`
   * PostgreSQL does not. Their index only reports a possible duplicate; the check is the internal
   * constraint trigger `unique_key_recheck` (src/backend/commands/constraint.c), created enabled
   * in origin mode ('O'), and triggers so enabled do not fire, nor are queued, in replica mode
   * (TriggerEnabled in src/backend/commands/trigger.c;
   * https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-SESSION-REPLICATION-ROLE:
   * "triggers and rules (that have not been altered from their default configuration) will not
   * fire on the replica"). So `SET CONSTRAINTS ALL IMMEDIATE` checks nothing either: two rows
   * with one DEFERRABLE key are committed silently (tested in apply-keys.test.ts).
   */
  readonly #checkDeferrable: boolean;
  readonly #deferred = new Map<string, DeferredKeys>();
  /** TRUNCATEs of one source transaction, written together: tables or partitions, quoted and for messages. */
  #truncate: { txid: string; tables: { quoted: string; display: string }[] } | undefined;
  #pending: Pending | undefined;
  #seq = 0;
  /** Changes seen (the envelope's count), applied, and skipped by the filter. */
  seen = 0;
  applied = 0;
  skipped = 0;

  /** How conflicts are handled, and how many were. */
  readonly #conflicts: ConflictMode;
  conflictCount = 0;
  /** Whether `S` changes run here (ApplyOptions.allowSchemaChanges). */
  readonly #allowSchemaChanges: boolean;

  /** Refuse tables whose own triggers would fire (the origin guard is in effect and the options do not allow them). */
  readonly #refuseTriggers: boolean;
  /** Tables whose triggers were checked in this batch. */
  readonly #triggersChecked = new Set<string>();

  constructor(
    client: pg.ClientBase,
    context: ApplyContext,
    options: {
      readonly filter: TableFilter;
      readonly conflicts: ConflictMode;
      readonly perTable: boolean;
      readonly allowSchemaChanges?: boolean;
      readonly checkDeferrable?: boolean;
      readonly refuseTriggers?: boolean;
    },
  ) {
    const { filter, conflicts, perTable } = options;
    this.#allowSchemaChanges = options.allowSchemaChanges === true;
    this.#checkDeferrable = options.checkDeferrable ?? false;
    this.#refuseTriggers = options.refuseTriggers === true;
    this.#client = client;
    this.#context = context;
    this.#filter = filter;
    this.#perTable = perTable;
    this.#catalog = replicaCatalog(client);
    this.#tables = this.#catalog.tables;
    this.#shapes = this.#catalog.shapes;
    this.#conflicts = conflicts;
  }

  /** Runs a schema change at its place in the batch, then forgets what it knew of the replica's tables. */
  async #schemaChange(head: ChangeHead, neu: RowImage | undefined, where: string): Promise<void> {
    const { sql, searchPath } = checkSchemaChange(neu, `${where}.new`);
    await this.#flush();
    if (head.table !== '' && !this.#filter.applies(head.schema, head.table)) {
      this.skipped++;
      return;
    }
    if (!this.#allowSchemaChanges) {
      throw new UntrustedMessageError(
        this.#context.sourceId,
        `the schema change ${describeValue(sql, 200)} at ${where}: this replica does not run schema changes from the stream (allowSchemaChanges is off); ` +
          'run it on the replica by hand and skip the batch, or allow schema changes for this replica',
        { batchId: this.#context.batchId, part: this.#context.part },
      );
    }
    await runSchemaChange(this.#client, sql, searchPath, where, this.#context);
    // Any table may have changed (and statements may name several): forget them all.
    this.#catalog.invalidate();
    this.applied++;
  }

  /** Applies the items of one part. */
  async part(items: readonly ChangeItem[], part: number): Promise<void> {
    for (let i = 0; i < items.length; i++) {
      const item = items[i] as ChangeItem;
      const where = `part ${part} changes[${i}]`;
      if (item.op === '+') {
        if (this.#pending === undefined) throw new MalformedMessageError(`${where}.op`, '"+"', 'a continuation only while a split change is open');
        await this.#stage(item, where);
        if (!item.more) await this.#finishPending(where);
        continue;
      }
      if (this.#pending !== undefined) throw new MalformedMessageError(`${where}.op`, describeValue(item.op), `"+", continuing the split change ${this.#pending.index}`);
      this.seen++;
      if (item.more) {
        await this.#flush();
        this.#pending = { head: item, index: where, slots: new Map(), columns: { old: [], new: [] }, nullSlots: new Set() };
        await this.#stage(item, where);
        continue;
      }
      checkImages(item.op, item.old !== undefined, item.new !== undefined, where);
      await this.#change(item, item.old, item.new, where);
    }
  }

  /** Writes what is still buffered; checks nothing is left open. */
  async finish(): Promise<void> {
    if (this.#pending !== undefined) throw new MalformedMessageError(this.#pending.index, 'a split change never finished', 'a last "+" item without "more"');
    await this.#flush();
    await this.#checkDeferred();
  }

  /** Remembers the key values a written row holds in its table's DEFERRABLE unique constraints. */
  #noteDeferred(table: TableInfo, neu: RowImage | undefined): void {
    if (!this.#checkDeferrable || table.deferrableUniques.length === 0) return;
    let keys = this.#deferred.get(table.quoted);
    if (keys === undefined) {
      keys = { table, values: table.deferrableUniques.map(() => new Set<string>()), whole: false };
      this.#deferred.set(table.quoted, keys);
    }
    if (keys.whole) return;
    if (neu === undefined) {
      keys.whole = true;
      return;
    }
    table.deferrableUniques.forEach((unique, i) => {
      const set = keys.values[i] as Set<string>;
      set.add(JSON.stringify(unique.columns.map((c) => neu[c] ?? null)));
      if (set.size > DEFERRED_MAX_KEYS) keys.whole = true;
    });
    if (keys.whole) for (const set of keys.values) set.clear();
  }

  /**
   * Checks, before commit, that the batch left no DEFERRABLE unique key held by two rows: only
   * rows the batch wrote can collide, so only their keys are looked up (one statement per
   * constraint), or the whole table when there were too many to keep.
   */
  async #checkDeferred(): Promise<void> {
    for (const { table, values, whole } of this.#deferred.values()) {
      for (const [i, unique] of table.deferrableUniques.entries()) {
        let source: RowSource | undefined;
        if (!whole) {
          const keys = [...(values[i] as Set<string>)].map((k) => JSON.parse(k) as (string | null)[]);
          if (keys.length === 0) continue;
          source = unnestSource(unique.columns.map((_, c) => keys.map((k) => k[c] ?? null)), keys.length);
        }
        const { rows } = await this.#query(deferredCheckSql(table, unique, source), source?.params ?? [], `checking unique constraint ${quoteIdent(unique.name)} of replica table ${table.display}`);
        const row = rows[0] as Record<string, string | null> | undefined;
        if (row !== undefined) throw this.#deferredViolation(table, unique, unique.columns.map((_, c) => row[`v${c}`] ?? null));
      }
    }
    this.#deferred.clear();
  }

  #deferredViolation(table: TableInfo, unique: DeferrableUnique, values: readonly (string | null)[]): DatabaseError {
    const shown = values.map((v) => (v === null ? 'NULL' : describeValue(v).slice(1, -1))).join(', ');
    return new DatabaseError(
      `replica table ${table.display}: unique constraint ${quoteIdent(unique.name)} (DEFERRABLE) is violated by (${unique.columns.map(quoteIdent).join(', ')})=(${shown}) ` +
        `when the batch's changes are applied (${whereInBatch(this.#context)}); ` +
        'PostgreSQL does not check DEFERRABLE constraints under session_replication_role = replica, so the applier checks the keys a batch wrote before it commits; ' +
        'the replica differs from the source; nothing applied',
      '23505',
      undefined,
    );
  }

  async #query(sql: string, params: unknown[], what: string): Promise<pg.QueryResult> {
    try {
      return await this.#client.query({ name: statementName(sql), text: sql, values: params });
    } catch (err) {
      throw classifyDatabaseError(err, `${what} (${whereInBatch(this.#context)})`);
    }
  }

  async #table(schema: string, table: string): Promise<TableInfo> {
    const cacheKey = `${schema}\u0000${table}`;
    const cached = this.#tables.get(cacheKey);
    if (cached && performance.now() - cached.readAt < CATALOG_MAX_AGE_MS) return cached;
    if (cached) this.#catalog.invalidate(schema, table);
    const display = `${quoteIdent(schema)}.${quoteIdent(table)}`;
    const { rows } = await this.#query(CATALOG_SQL, [schema, table], `reading the catalog of replica table ${display}`);
    if (rows.length === 0) throw new UnknownTableError(display, this.#context);
    const columns = new Map<string, ColumnInfo>();
    const first = rows[0] as {
      oid: string;
      independent: boolean;
      unique_indexes: number;
      immediate_indexes: number;
      deferrable_exclusion: boolean;
      deferrable_uniques: DeferrableUnique[] | null;
      origin_triggers: [string, string, string][];
    };
    for (const row of rows as { name: string | null; cast_type: string; collation: string | null; exact_text: boolean; generated: boolean; identity: string; has_default: boolean }[]) {
      if (row.name === null) continue;
      columns.set(row.name, {
        name: row.name,
        castType: row.cast_type,
        generated: row.generated,
        identity: row.identity !== '',
        identityAlways: row.identity === 'a',
        hasDefault: row.has_default,
        collation: row.collation ?? undefined,
        exactText: row.exact_text,
      });
    }
    const ids = await this.#query(IDENTITIES_SQL, [first.oid], `reading the unique indexes of replica table ${display}`);
    const info: TableInfo = {
      schema,
      table,
      display,
      quoted: qualified(schema, table),
      columns,
      identities: (ids.rows as { columns: string[] }[]).map((r) => r.columns),
      uniqueIndexes: first.unique_indexes,
      immediateIndexes: first.immediate_indexes,
      deferrableUniques: first.deferrable_uniques ?? [],
      deferrableExclusion: first.deferrable_exclusion,
      independent: first.independent,
      originTriggers: triggerNames(first.origin_triggers),
      readAt: performance.now(),
    };
    this.#tables.set(cacheKey, info);
    return info;
  }

  /** Refuses, once per table and batch, a table whose own triggers would fire on the change. */
  async #checkTriggers(schema: string, table: string): Promise<void> {
    const key = `${schema}\u0000${table}`;
    if (this.#triggersChecked.has(key)) return;
    const info = await this.#table(schema, table);
    if (info.originTriggers.length > 0) throw await refuseReplicaTriggers(this.#client, info, this.#context);
    this.#triggersChecked.add(key);
  }

  /** The statement shape of a change, checked against the replica table (cached by layout). */
  async #shape(op: 'I' | 'U' | 'D', head: ChangeHead, oldColumns: readonly string[], newColumns: readonly string[], signature: string): Promise<Shape> {
    const cached = this.#shapes.get(signature);
    if (cached && performance.now() - cached.table.readAt < CATALOG_MAX_AGE_MS) return cached;
    const table = await this.#table(head.schema, head.table);
    for (const [image, names] of [['old', oldColumns], ['new', newColumns]] as const) {
      for (const name of names) {
        if (!table.columns.has(name)) {
          throw new SchemaMismatchError(table.display, name, `has no column ${quoteIdent(name)} (in the change's ${image} image)`, this.#context);
        }
      }
    }
    if (op === 'I') this.#checkDrift(table, newColumns);
    let key: readonly string[] | undefined;
    if (op !== 'I') {
      const old = new Set(oldColumns);
      key = table.identities.find((identity) => identity.every((c) => old.has(c)));
    }
    const shape: Shape = { op, table, oldColumns, newColumns, key, ...placementOf(op, table, oldColumns, newColumns), joining: joiningOf(op, table, key) };
    this.#shapes.set(signature, shape);
    return shape;
  }

  /** Refuses a data change to pgfanout's own schema (positions, staging, the source's log in multi-master). */
  #refuseOwnSchema(head: ChangeHead, where: string): void {
    if (head.schema !== PGFANOUT_SCHEMA) return;
    throw new UntrustedMessageError(this.#context.sourceId, `${where} is a change to ${quoteIdent(head.schema)}.${quoteIdent(head.table)}: pgfanout's own tables are never written from the stream`, {
      batchId: this.#context.batchId,
      part: this.#context.part,
    });
  }

  /**
   * Schema drift: an INSERT carries the source's whole new row, so a replica column it lacks that
   * the replica would fill with NULL (no default, not generated, not an identity) is a column the
   * source no longer has (dropped or renamed there without `replicate_ddl`). UPDATEs are not
   * checked: a new image that leaves a column out leaves it as it is.
   */
  #checkDrift(table: TableInfo, newColumns: readonly string[]): void {
    const carried = new Set(newColumns);
    const missing = [...table.columns.values()].filter((c) => !carried.has(c.name) && !c.generated && !c.identity && !c.hasDefault).map((c) => c.name);
    if (missing.length === 0) return;
    throw new SchemaDriftError(
      table.display,
      missing,
      `the source's rows no longer carry column${missing.length > 1 ? 's' : ''} ${missing.map(quoteIdent).join(', ')}, which the replica would leave NULL ` +
        '(dropped or renamed on the source without pgfanout.replicate_ddl); apply the same change to the replica, or give the column a default if it is the replica\'s own',
      this.#context,
    );
  }

  async #change(head: ChangeHead, old: RowImage | undefined, neu: RowImage | undefined, where: string): Promise<void> {
    if (head.op === 'S') return this.#schemaChange(head, neu, where);
    this.#refuseOwnSchema(head, where);
    if (!this.#filter.applies(head.schema, head.table)) {
      this.skipped++;
      return;
    }
    if (this.#refuseTriggers) await this.#checkTriggers(head.schema, head.table);
    if (head.op === 'T') {
      await this.#flushRun();
      const table = await this.#table(head.schema, head.table);
      const target = old === undefined ? table : await this.#partition(table, old, where);
      if (this.#truncate && this.#truncate.txid !== head.txid) await this.#flushTruncate();
      this.#truncate ??= { txid: head.txid, tables: [] };
      if (!this.#truncate.tables.some((t) => t.quoted === target.quoted)) this.#truncate.tables.push({ quoted: target.quoted, display: target.display });
      this.applied++;
      return;
    }
    await this.#flushTruncate();
    const op = head.op;
    const oldColumns = old ? Object.keys(old) : [];
    const newColumns = neu ? Object.keys(neu) : [];
    const signature = `${op}\u0000${head.schema}\u0000${head.table}\u0000${oldColumns.join('\u0000')}\u0001${newColumns.join('\u0000')}`;
    const shape = await this.#shape(op, head, oldColumns, newColumns, signature);
    if (op !== 'D') this.#noteDeferred(shape.table, neu);
    if (this.#conflicts !== 'error') {
      // One change at a time, each looking at the row it touches first.
      await this.#flushRun();
      const position = { sourceId: this.#context.sourceId, batchId: this.#context.batchId, change: where };
      const checked = await applyChecked((sql, params, what) => this.#query(sql, params, `${what} (${where})`), shape.table, op, old, neu, this.#conflicts, position);
      if (checked.conflict !== undefined) this.conflictCount++;
      this.applied++;
      return;
    }
    await this.#add(shape, signature, old, neu, where);
  }

  /**
   * The replica's partition a `T` change names (its `old` image) under the table it names: a
   * partition, at any level, of that table here too, or a SchemaMismatchError saying what differs.
   */
  async #partition(table: TableInfo, old: RowImage, where: string): Promise<{ quoted: string; display: string }> {
    const named = checkTruncatedPartition(old, `${where}.old`);
    const display = `${quoteIdent(named.schema)}.${quoteIdent(named.table)}`;
    const { rows } = await this.#query(
      `SELECT c.relkind::pg_catalog.text AS kind,
              EXISTS (SELECT 1 FROM pg_catalog.pg_partition_ancestors(c.oid) a
                       WHERE a.relid OPERATOR(pg_catalog.=) $3::pg_catalog.regclass AND a.relid OPERATOR(pg_catalog.<>) c.oid) AS inside
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
        WHERE n.nspname OPERATOR(pg_catalog.=) $1 AND c.relname OPERATOR(pg_catalog.=) $2`,
      [named.schema, named.table, table.quoted],
      `looking up partition ${display} of replica table ${table.display}`,
    );
    const found = rows[0] as { kind: string; inside: boolean } | undefined;
    if (found?.inside !== true) {
      const why = found === undefined ? `no table ${display} exists here` : `${display} is not a partition of it here`;
      throw new SchemaMismatchError(
        table.display,
        undefined,
        `has no partition ${display}, which the source truncated (${why}); partition the replica's table as the source's ` +
          '(pgfanout bootstrap creates the partitions; later ones come with pgfanout.replicate_ddl or DDL capture), or empty the replica\'s matching rows by hand and skip this batch',
        this.#context,
      );
    }
    return { quoted: qualified(named.schema, named.table), display };
  }

  /** Puts one change into a run (which one: see the module comment), writing runs as needed. */
  async #add(shape: Shape, signature: string, old: RowImage | undefined, neu: RowImage | undefined, where: string): Promise<void> {
    const lane = this.#perTable && shape.placement === 'table' ? shape.table.quoted : ORDERED;
    const last = this.#runs.at(-1);
    // A change of the ordered lane keeps its exact place, so when one is buffered it is the only
    // buffered run: whatever comes next, of any lane, writes it first (unless it joins it).
    if (lane !== ORDERED && last?.lane === ORDERED) await this.#flushRun();
    if (shape.op !== 'I' && shape.key === undefined) {
      // Whole-row matching touches one row per statement, written now, after its lane.
      if (lane === ORDERED) await this.#flushRun();
      else await this.#flushLane(lane);
      await this.#execute(shape, unnestSource([...shape.oldColumns.map((c) => [old?.[c] ?? null]), ...shape.newColumns.map((c) => [neu?.[c] ?? null])], 1), where);
      this.applied++;
      return;
    }
    const keyColumns = shape.commuteKey ?? shape.key;
    const keys: string[] = [];
    if (keyColumns !== undefined) {
      if (shape.op !== 'I') keys.push(JSON.stringify(keyColumns.map((c) => old?.[c] ?? null)));
      // An INSERT's key matters only where changes pass each other by key.
      if (shape.op === 'U' || (shape.op === 'I' && shape.commuteKey !== undefined)) keys.push(JSON.stringify(keyColumns.map((c) => neu?.[c] ?? null)));
    }
    // How this change may join the latest run of its lane (see Joining in statements.ts).
    const alone = shape.joining === 'alone' || (shape.joining === 'key-text' && shape.op === 'U' && (shape.key as readonly string[]).some((c) => old?.[c] !== neu?.[c]));
    const joins = (candidate: Run) =>
      candidate.signature === signature && !candidate.sealed && !alone && (shape.joining === 'snapshot' || !keys.some((k) => candidate.touched.has(k)));
    let run: Run | undefined;
    let tableLane: Lane | undefined;
    if (lane === ORDERED) {
      if (last?.lane === ORDERED && joins(last)) run = last;
      else await this.#flushRun();
    } else {
      tableLane = this.#lanes.get(lane);
      if (tableLane === undefined) {
        tableLane = { runs: [], bySignature: new Map(), lastTouch: new Map(), fence: 0 };
        this.#lanes.set(lane, tableLane);
      }
      if (shape.commuteKey !== undefined) {
        // The table's latest run of this shape, if no change after it in the table (nor in it)
        // touches the same identity value and none of them may not be passed.
        const candidate = tableLane.bySignature.get(signature);
        const lastTouch = tableLane.lastTouch;
        if (candidate !== undefined && candidate.seq > tableLane.fence && keys.every((k) => (lastTouch.get(k) ?? 0) < candidate.seq)) run = candidate;
      } else {
        const candidate = tableLane.runs.at(-1);
        if (candidate !== undefined && joins(candidate)) run = candidate;
      }
    }
    if (run === undefined) {
      run = { shape, signature, lane, seq: ++this.#runSeq, columns: [...shape.oldColumns, ...shape.newColumns].map(() => []), rows: 0, bytes: 0, touched: new Set(), first: where, last: where, sealed: alone };
      this.#runs.push(run);
      if (tableLane !== undefined) {
        tableLane.runs.push(run);
        tableLane.bySignature.set(signature, run);
      }
    }
    let i = 0;
    const before = run.bytes;
    for (const c of shape.oldColumns) {
      const v = (old as RowImage)[c] ?? null;
      (run.columns[i++] as (string | null)[]).push(v);
      if (v !== null) run.bytes += v.length;
    }
    for (const c of shape.newColumns) {
      const v = (neu as RowImage)[c] ?? null;
      (run.columns[i++] as (string | null)[]).push(v);
      if (v !== null) run.bytes += v.length;
    }
    for (const k of keys) run.touched.add(k);
    if (tableLane !== undefined) {
      if (shape.commuteKey !== undefined) for (const k of keys) tableLane.lastTouch.set(k, run.seq);
      else tableLane.fence = run.seq;
    }
    run.rows++;
    run.last = where;
    this.applied++;
    this.#bufferedRows++;
    this.#bufferedBytes += run.bytes - before;
    if (this.#bufferedRows >= RUN_MAX_ROWS || this.#bufferedBytes >= RUN_MAX_BYTES) await this.#flushRun();
  }

  async #flush(): Promise<void> {
    await this.#flushRun();
    await this.#flushTruncate();
  }

  async #flushTruncate(): Promise<void> {
    const truncate = this.#truncate;
    if (truncate === undefined) return;
    this.#truncate = undefined;
    const names = truncate.tables.map((t) => t.quoted).join(', ');
    await this.#query(`TRUNCATE TABLE ${names}`, [], `truncating replica table${truncate.tables.length > 1 ? 's' : ''} ${truncate.tables.map((t) => t.display).join(', ')}`);
  }

  /** Writes every buffered run, in creation order. */
  async #flushRun(): Promise<void> {
    const runs = this.#runs;
    this.#runs = [];
    this.#lanes.clear();
    this.#bufferedRows = 0;
    this.#bufferedBytes = 0;
    for (const run of runs) await this.#write(run);
  }

  /** Writes the buffered runs of one table, in order, leaving other tables' runs buffered. */
  async #flushLane(lane: string): Promise<void> {
    const tableLane = this.#lanes.get(lane);
    if (tableLane === undefined) return;
    this.#lanes.delete(lane);
    this.#runs = this.#runs.filter((run) => run.lane !== lane);
    for (const run of tableLane.runs) {
      this.#bufferedRows -= run.rows;
      this.#bufferedBytes -= run.bytes;
      await this.#write(run);
    }
  }

  async #write(run: Run): Promise<void> {
    if (run.shape.joining === 'snapshot' && run.shape.op === 'U' && run.rows > 1) return this.#writeSnapshot(run);
    await this.#execute(run.shape, unnestSource(run.columns, run.rows), run.rows === 1 ? run.first : `one of the changes ${run.first} … ${run.last}`);
  }

  /**
   * Writes a run of UPDATEs matched by a DEFERRABLE key: as few statements as the replica's
   * equality allows: one query classes the keys, snapshotCuts plans the statements.
   */
  async #writeSnapshot(run: Run): Promise<void> {
    const plan = unnestSource(run.columns, run.rows);
    const { rows } = await this.#query(keyClassesSql(run.shape, plan), plan.params, `planning updates of replica table ${run.shape.table.display}`);
    const classes = (rows as { o: string; n: string; oh: boolean; nh: boolean }[]).map((r) => ({ o: Number(r.o), n: Number(r.n), oh: r.oh, nh: r.nh }));
    let start = 0;
    for (const end of [...snapshotCuts(classes), run.rows]) {
      if (end <= start) continue;
      const rows = end - start;
      await this.#execute(run.shape, unnestSource(run.columns.map((c) => c.slice(start, end)), rows), `one of the changes ${run.first} … ${run.last}`);
      start = end;
    }
  }

  /** Runs one statement for `source` and checks it touched exactly one row per change. */
  async #execute(shape: Shape, source: RowSource, where: string): Promise<void> {
    const sql = statementSql(shape, source);
    const verb = { I: 'inserting into', U: 'updating', D: 'deleting from' }[shape.op];
    const result = await this.#query(sql, source.params, `${verb} replica table ${shape.table.display}`);
    if (result.rowCount !== source.rows) {
      const how = shape.key ? `by ${shape.key.map(quoteIdent).join(', ')}` : 'matching the whole old row';
      if ((result.rowCount ?? 0) > source.rows) {
        throw new RowNotFoundError(shape.table.display, `${result.rowCount} rows matched ${how} for ${source.rows} changes (${where}): a key is held by more than one row`, this.#context);
      }
      throw new RowNotFoundError(shape.table.display, `${source.rows - (result.rowCount ?? 0)} of ${source.rows} rows to ${shape.op === 'U' ? 'update' : 'delete'} not found ${how} (${where})`, this.#context);
    }
  }

  /** Stores the values of one item of a split change (protocol.ts, `pgfanout.replica_stage_value`). */
  async #stage(item: ChangeItem, where: string): Promise<void> {
    const pending = this.#pending as Pending;
    const slots: number[] = [];
    const seqs: number[] = [];
    const values: (string | null)[] = [];
    for (const image of ['old', 'new'] as const) {
      const row = item[image];
      if (row === undefined) continue;
      for (const [name, value] of Object.entries(row)) {
        const slotKey = `${image}\u0000${name}`;
        let slot = pending.slots.get(slotKey);
        if (slot === undefined) {
          slot = pending.slots.size;
          pending.slots.set(slotKey, slot);
          pending.columns[image].push(name);
          if (value === null) pending.nullSlots.add(slot);
        } else if (value === null || pending.nullSlots.has(slot)) {
          throw new MalformedMessageError(`${where}.${image}[${JSON.stringify(name)}]`, 'a continued NULL', 'continuations of string values only');
        }
        slots.push(slot);
        seqs.push(this.#seq++);
        values.push(value);
      }
    }
    if (slots.length === 0) return;
    await stageValues(this.#query.bind(this), this.#context, slots, seqs, values);
  }

  /** Applies a split change from its staged pieces, then forgets them. */
  async #finishPending(where: string): Promise<void> {
    const pending = this.#pending as Pending;
    this.#pending = undefined;
    const head = pending.head;
    const { old: oldColumns, new: newColumns } = pending.columns;
    checkImages(head.op, oldColumns.length > 0, newColumns.length > 0, pending.index);
    if (head.op === 'S' || head.op === 'T') {
      // A statement must be whole to run, and a TRUNCATE's partition name whole to look up
      // (another writer of the format may split even so small a change): read them back.
      const columns = head.op === 'S' ? newColumns : oldColumns;
      const image = head.op === 'S' ? 'new' : 'old';
      const values = await stagedValues(this.#query.bind(this), this.#context, columns.map((c) => pending.slots.get(`${image}\u0000${c}`) as number));
      const whole = Object.fromEntries(columns.map((c) => [c, values.get(pending.slots.get(`${image}\u0000${c}`) as number) ?? null]));
      if (head.op === 'S') await this.#schemaChange(head, whole, pending.index);
      else await this.#change(head, whole, undefined, pending.index);
    } else if ((this.#refuseOwnSchema(head, pending.index), !this.#filter.applies(head.schema, head.table))) this.skipped++;
    else {
      const op = head.op as 'I' | 'U' | 'D';
      const signature = `${op}\u0000${head.schema}\u0000${head.table}\u0000${oldColumns.join('\u0000')}\u0001${newColumns.join('\u0000')}`;
      const shape = await this.#shape(op, head, oldColumns, newColumns, signature);
      if (op !== 'D') this.#noteDeferred(shape.table, undefined);
      // Slots were numbered in arrival order, old image first: make v0… follow the shape's order.
      const order = [...oldColumns.map((c) => pending.slots.get(`old\u0000${c}`)), ...newColumns.map((c) => pending.slots.get(`new\u0000${c}`))] as number[];
      const identity = order.every((slot, i) => slot === i);
      if (!identity) throw new MalformedMessageError(pending.index, 'a split change whose old image continues after its new image', 'the old image first, then the new image');
      await this.#execute(shape, stagedSource(order.length, this.#context.sourceId, this.#context.batchId), where);
      this.applied++;
    }
    await clearValues(this.#query.bind(this), this.#context);
  }
}
