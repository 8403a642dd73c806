-- pgfanout source, version 1.2.0: capture triggers, the event log and the batch protocol.
--
-- Installs 1.2.0 from nothing. A database at 1.0.0 or 1.1.0 gets the same objects from
-- the upgrade scripts (functions/ops/install.test.ts checks that the two agree).
-- Released scripts are frozen: a change after a release is a new upgrade script plus a new
-- install script, never an edit of a released one.
--
-- Plain SQL (no custom extension), for PostgreSQL 13 and later. Run it through
-- installSource() in functions/ops/install.ts, which wraps it in a transaction under
-- an advisory lock and then applies roles.sql. Running it again changes nothing and
-- loses nothing: every object is created only when missing or replaced by an identical
-- definition, and state rows are inserted only when missing.
--
-- Capture
--   pgfanout.add_table(regclass)      row trigger (INSERT/UPDATE/DELETE) + statement trigger (TRUNCATE;
--                                     also on each partition of a partitioned table)
--   pgfanout.remove_table(regclass)   drops them
--   pgfanout.uncaptured_partitions()  partitions whose TRUNCATE is not captured (created by DDL
--                                     pgfanout did not see; pgfanout.refresh_table fixes them)
--   pgfanout.add_all_tables(name)     adds every table of a schema that is not added yet
--   pgfanout.show_tables()            what is captured, with its row identity
--   Each change is written, inside the writer's transaction, to the event log as the
--   hstore of the row: every column as its type's own text output (hstore(record)).
--   Row identity is chosen at add_table: the primary key; else the unique, non-partial,
--   non-expression index over NOT NULL columns with the fewest columns; else none, in
--   which case the whole old row identifies it.
--
-- Batch protocol (the publisher, role pgfanout_publisher)
--   pgfanout.next_batch()             the open batch if there is one (same id, same events,
--                                     every time); else a new batch of every event whose
--                                     transaction committed since the previous batch; else no row
--   pgfanout.batch_values(batch_id)   the open batch's events, one row per column value, in
--                                     ev_id, image, col order; read it with
--                                     COPY (SELECT * FROM pgfanout.batch_values($1)) TO STDOUT
--   pgfanout.finish_batch(batch_id)   closes the open batch; rotates the log when it can
--   pgfanout.publisher_waiting(bool)  while true, capture sends NOTIFY pgfanout once per transaction
--   pgfanout.status()                 positions and backlog
--
-- Bootstrap (the operator seeding a new replica; not the publisher)
--   pgfanout.mark_snapshot_batch(pg_snapshot)
--                                     closes a batch boundary exactly at a snapshot S taken
--                                     by the caller: returns the batch id B such that batches
--                                     1..B hold exactly the transactions visible in S. A copy
--                                     of the tables made under S plus batches B+1, ... is the
--                                     source's state; see functions/ops/bootstrap.ts.
--
-- Batches are PgQ-style snapshot batches: a batch is the set of events whose transaction is
-- visible in the batch's snapshot and was not visible in the previous batch's snapshot.
-- Visibility of a transaction is all or nothing, so a transaction is never split across
-- batches, and a transaction that started early and committed late lands in the batch
-- taken after its commit, whatever its event ids are. Within a batch, events are ordered by
-- ev_id: writes to the same row are serialised by the row lock, so the later writer's event
-- always gets the larger id (the sequence has CACHE 1 so that this holds across sessions),
-- and the replica applies a whole batch atomically.

CREATE SCHEMA IF NOT EXISTS pgfanout;
COMMENT ON SCHEMA pgfanout IS 'pgfanout: change capture, event log and batch protocol (source); replica_* objects (replica)';

-- hstore is trusted since PostgreSQL 13, so a database owner can create it. It is used
-- where it already is; every reference below names its real schema.
CREATE EXTENSION IF NOT EXISTS hstore;

-- One row: who this source is.
CREATE TABLE IF NOT EXISTS pgfanout.source_info (
    singleton    boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    source_id    uuid        NOT NULL DEFAULT gen_random_uuid(),
    installed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pgfanout.source_info (singleton) VALUES (true) ON CONFLICT (singleton) DO NOTHING;

-- One row: which log table capture writes and since when, whether a publisher is waiting
-- for a NOTIFY, and the rotation settings and counters. Capture itself reads the same
-- facts from the capture_hint sequence (below), which the functions changing this row
-- keep in step.
CREATE TABLE IF NOT EXISTS pgfanout.capture_state (
    singleton         boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    log_table         integer     NOT NULL DEFAULT 0 CHECK (log_table BETWEEN 0 AND 2),
    log_table_since   timestamptz NOT NULL DEFAULT now(),
    publisher_waiting boolean     NOT NULL DEFAULT false,
    waiting_since     timestamptz,
    -- How long a log table stays current before finish_batch switches to the next one.
    rotation_interval interval    NOT NULL DEFAULT '1 minute' CHECK (rotation_interval >= '0'::interval),
    rotations         bigint      NOT NULL DEFAULT 0,
    truncations       bigint      NOT NULL DEFAULT 0
);
INSERT INTO pgfanout.capture_state (singleton) VALUES (true) ON CONFLICT (singleton) DO NOTHING;

-- Event ids. CACHE 1 is required: with a per-session cache, a later write to a row could
-- get a smaller id than the earlier one, and ev_id order would no longer follow row order.
CREATE SEQUENCE IF NOT EXISTS pgfanout.event_id_seq AS bigint CACHE 1;

-- The event log: a parent for reading and three tables written in turn. A table is
-- emptied only by TRUNCATE (see pgfanout.rotate_log for when that is safe).
DO $install$
DECLARE
    h text := (SELECT n.nspname FROM pg_catalog.pg_extension x
               JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
               WHERE x.extname = 'hstore');
    nr integer;
BEGIN
    EXECUTE format($sql$
        CREATE TABLE IF NOT EXISTS pgfanout.event_log (
            ev_id     bigint      NOT NULL DEFAULT nextval('pgfanout.event_id_seq'::regclass),
            ev_txid   xid8        NOT NULL DEFAULT pg_current_xact_id(),
            ev_time   timestamptz NOT NULL DEFAULT clock_timestamp(),
            ev_op     text        NOT NULL,  -- TG_OP: INSERT, UPDATE, DELETE, TRUNCATE; SCHEMA (a schema change)
            ev_schema text        NOT NULL,
            ev_table  text        NOT NULL,
            ev_key    %1$I.hstore,
            ev_new    %1$I.hstore
        )$sql$, h);
    FOR nr IN 0..2 LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS pgfanout.%I () INHERITS (pgfanout.event_log)', 'event_log_' || nr);
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON pgfanout.%I (ev_txid)', 'event_log_' || nr || '_txid', 'event_log_' || nr);
    END LOOP;
END
$install$;

-- The batch cursor, one row: the last batch created, the last batch finished, and the
-- snapshot up to which every committed event belongs to a batch. Batches after
-- finished_batch_id are open; next_batch serves the lowest of them. Usually at most one is
-- open; mark_snapshot_batch can add another behind it.
CREATE TABLE IF NOT EXISTS pgfanout.batch_cursor (
    singleton         boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    last_batch_id     bigint      NOT NULL DEFAULT 0,
    finished_batch_id bigint      NOT NULL DEFAULT 0,
    last_snapshot     pg_snapshot NOT NULL DEFAULT pg_current_snapshot(),
    CONSTRAINT batch_cursor_order CHECK (finished_batch_id BETWEEN 0 AND last_batch_id)
);
INSERT INTO pgfanout.batch_cursor (singleton) VALUES (true) ON CONFLICT (singleton) DO NOTHING;

-- Batches served. Only non-empty batches get ids, densely: 1, 2, 3, ...
CREATE TABLE IF NOT EXISTS pgfanout.batch (
    batch_id         bigint      PRIMARY KEY,
    prev_batch_id    bigint      NOT NULL,
    prev_snapshot    pg_snapshot NOT NULL,
    snapshot         pg_snapshot NOT NULL,
    event_count      bigint      NOT NULL,
    first_event_time timestamptz,
    last_event_time  timestamptz,
    max_ev_id        bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    CHECK (prev_batch_id = batch_id - 1)
);

-- Tables whose changes are captured.
CREATE TABLE IF NOT EXISTS pgfanout.captured_table (
    reloid           oid         PRIMARY KEY,
    identity_kind    text        NOT NULL CHECK (identity_kind IN ('primary key', 'unique index', 'none')),
    identity_index   oid,
    identity_columns text[]      NOT NULL,
    added_at         timestamptz NOT NULL DEFAULT now()
);


-- pgfanout.version(): the installed version of the source objects.
-- Parameters: none. Returns: text, e.g. '1.2.0'. Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.version() RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT '1.2.0'::text $$;

-- pgfanout.source_id(): the uuid generated at install, identifying this source's event stream.
-- Parameters: none. Returns: text (uuid). Tables touched: reads source_info.
CREATE OR REPLACE FUNCTION pgfanout.source_id() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT source_id::text FROM pgfanout.source_info $$;


-- Capture hint, read by the capture trigger once per transaction with
-- pg_sequence_last_value (a function call, far cheaper than a query): value =
-- current log table (0..2) + 3 if a publisher is waiting for a NOTIFY. Sequences are not
-- transactional, so this is only ever a hint: which log table a writer uses does not
-- matter for correctness (see rotate_log), and a missed or extra NOTIFY only costs latency
-- or a wake-up. capture_state holds the same facts transactionally; rotate_log and
-- publisher_waiting keep the hint in step with it.
CREATE SEQUENCE IF NOT EXISTS pgfanout.capture_hint AS bigint MINVALUE 0 MAXVALUE 5 START 0 CACHE 1;


-- pgfanout.as_record(anyelement): the row it is given, typed as record. Capture converts a
-- row with hstore(pgfanout.as_record(row)), never hstore(row): overload resolution picks a
-- function for the argument's type, and for a row of table app.t a function hstore(app.t)
-- created next to hstore's own (by any role with CREATE in hstore's schema) would win over
-- hstore(record) and run with the installer's rights inside the SECURITY DEFINER capture.
-- Typed as record, the argument matches hstore(record) exactly, and a second function with
-- that signature cannot exist in the schema. hstore(record) reads the row's real type (its
-- column names) from the value itself. PL/pgSQL on purpose: a SQL function would be inlined
-- and hand hstore an expression of the table's type again.
-- Parameters: a row. Returns: the same row as record. Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.as_record(r anyelement) RETURNS record
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
    RETURN r;
END
$$;

-- pgfanout.origin_trusted(): whether this session may switch capture off with the loop guard,
-- the setting pgfanout.origin (any role can set a setting, so the setting alone proves
-- nothing). True when the session's login role (session_user: SET ROLE does not change it)
-- is a member of pgfanout_applier (the applier of a database that is also a replica, see
-- sql/replica/roles.sql), or may run pgfanout.replicate_ddl (which quiets capture while its
-- statement runs, because replicas replay the statement); that includes pgfanout's owner and
-- superusers. Capture asks only when the setting is non-empty.
-- Parameters: none. Returns: boolean. Tables touched: reads pg_roles.
CREATE OR REPLACE FUNCTION pgfanout.origin_trusted() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT has_function_privilege(session_user, 'pgfanout.replicate_ddl(text)', 'EXECUTE')
        OR EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'pgfanout_applier' AND pg_has_role(session_user, r.oid, 'MEMBER'))
$$;


-- The row-level capture trigger functions add_table installs (AFTER INSERT OR UPDATE OR
-- DELETE ... FOR EACH ROW), one event per row change:
--   pgfanout.capture_key()            tables with an identity: ev_key holds its columns
--   pgfanout.capture_full()           tables without one: ev_key holds the whole old row
--   pgfanout.capture_key_partition(), pgfanout.capture_full_partition()
--                                     the same for partitioned tables (the trigger is cloned
--                                     to every partition); events name the partitioned table
-- Parameters (trigger arguments): the identity columns (capture_key), nothing
--   (capture_full); the partition variants take the added table's oid first.
--   (TG_ARGV is used whole where it can be: slicing it on every row costs.)
-- Returns: NULL (AFTER trigger). Tables touched: inserts into event_log_0/1/2; reads the
--   capture_hint sequence once per transaction (and pg_class per row for partitions).
--
-- These run on every write of every application, so they are built for cost:
-- * Does nothing when the setting pgfanout.origin is non-empty (the applier's loop guard)
--   and the session may use it (pgfanout.origin_trusted); for anyone else the setting
--   changes nothing.
-- * The first change of a transaction reads the capture hint, sends NOTIFY pgfanout if a
--   publisher waits, and keeps the log table in the transaction-local setting
--   pgfanout.log_table; later changes read only that setting. (Any other value found
--   there is treated as unset: any table would be safe, see rotate_log.)
-- * Values are captured as text under the output settings that make every type's text
--   exact and re-readable (DateStyle ISO, IntervalStyle postgres, extra_float_digits >= 1),
--   checked on every row; rows written under other settings go through pgfanout.row_text.
-- * SECURITY DEFINER (writers need no rights on the log, and cannot forge events) but
--   without SET search_path: that clause alone costs about 5 us of CPU per row. Instead
--   every name in the body is schema-qualified, operators included, so nothing resolves
--   through the caller's search_path: types, functions, operators and relations all name
--   their schema, column defaults are stored resolved, casts are found by type.
-- * Every call whose arguments have fixed types (hstore's slice, ?&, hstore(text[], text[]))
--   matches hstore's own function exactly. The row itself goes through
--   pgfanout.as_record, so hstore(record) is the only function that can match it: a
--   function hstore(<the table's row type>) that a role with CREATE in hstore's schema
--   adds is never called (it would run with the installer's rights).
-- * Few PL/pgSQL expressions, and INSERTs that take plain parameters: each expression is
--   set up once per transaction and table, each statement's expressions on every
--   execution, and with one or two rows per statement that setup is most of the cost.
-- * The identity image is sliced by the column names recorded at add_table; if one of
--   them is missing (renamed since), the whole old row is logged instead, so the event
--   still identifies the row. remove_table + add_table records the new names
--   (show_tables reports identity_ok = false until then).
DO $install$
DECLARE
    h text := (SELECT n.nspname FROM pg_catalog.pg_extension x
               JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
               WHERE x.extname = 'hstore');
    -- %1$I hstore's schema, %2$s extra declarations, %3$s statements naming the table,
    -- %4$s / %5$s the schema / table name, %6$s / %7$s the old-row image as hstore /
    -- under exact output settings, %8$s the exact-output test.
    body text := $body$
        DECLARE
            log_nr  pg_catalog.text := CASE
                WHEN pg_catalog.current_setting('pgfanout.origin', true) OPERATOR(pg_catalog.<>) '' THEN 'origin'
                ELSE pg_catalog.current_setting('pgfanout.log_table', true) END;
            hint    pg_catalog.int8;
            key_row %1$I.hstore;
            new_row %1$I.hstore;
            %2$s
        BEGIN
            IF log_nr OPERATOR(pg_catalog.=) ANY ('{0,1,2}'::pg_catalog.text[]) AND %8$s THEN
                new_row := CASE WHEN TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN %1$I.hstore(pgfanout.as_record(NEW)) END;
                key_row := CASE WHEN TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN %6$s END;
            ELSE
                IF log_nr OPERATOR(pg_catalog.=) 'origin' THEN
                    IF pgfanout.origin_trusted() THEN
                        RETURN NULL;
                    END IF;
                    log_nr := pg_catalog.current_setting('pgfanout.log_table', true);
                END IF;
                IF log_nr IS NULL OR log_nr OPERATOR(pg_catalog.<>) ALL ('{0,1,2}'::pg_catalog.text[]) THEN
                    -- The transaction's first change.
                    hint := pg_catalog.pg_sequence_last_value('pgfanout.capture_hint'::pg_catalog.regclass);
                    IF hint OPERATOR(pg_catalog.>=) 3 THEN
                        PERFORM pg_catalog.pg_notify('pgfanout', '');
                    END IF;
                    log_nr := pg_catalog.set_config('pgfanout.log_table',
                        (coalesce(hint, 0) OPERATOR(pg_catalog.%%) 3)::pg_catalog.text, true);
                END IF;
                IF %8$s THEN
                    new_row := CASE WHEN TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN %1$I.hstore(pgfanout.as_record(NEW)) END;
                    key_row := CASE WHEN TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN %6$s END;
                ELSE
                    new_row := CASE WHEN TG_OP OPERATOR(pg_catalog.<>) 'DELETE' THEN pgfanout.row_text(NEW) END;
                    key_row := CASE WHEN TG_OP OPERATOR(pg_catalog.<>) 'INSERT' THEN %7$s END;
                END IF;
            END IF;
            %3$s
            IF log_nr OPERATOR(pg_catalog.=) '0' THEN
                INSERT INTO pgfanout.event_log_0 (ev_op, ev_schema, ev_table, ev_key, ev_new)
                VALUES (TG_OP, %4$s, %5$s, key_row, new_row);
            ELSIF log_nr OPERATOR(pg_catalog.=) '1' THEN
                INSERT INTO pgfanout.event_log_1 (ev_op, ev_schema, ev_table, ev_key, ev_new)
                VALUES (TG_OP, %4$s, %5$s, key_row, new_row);
            ELSE
                INSERT INTO pgfanout.event_log_2 (ev_op, ev_schema, ev_table, ev_key, ev_new)
                VALUES (TG_OP, %4$s, %5$s, key_row, new_row);
            END IF;
            RETURN NULL;
        END
    $body$;
    exact text := $exact$(pg_catalog.left(pg_catalog.current_setting('DateStyle'), 3) OPERATOR(pg_catalog.=) 'ISO'
                 AND pg_catalog.current_setting('IntervalStyle') OPERATOR(pg_catalog.=) 'postgres'
                 AND pg_catalog.current_setting('extra_float_digits')::pg_catalog.int4 OPERATOR(pg_catalog.>=) 1)$exact$;
    root_decl text := 'sch pg_catalog.text; tbl pg_catalog.text;';
    root_lookup text := 'SELECT n.nspname, c.relname INTO sch, tbl
                           FROM pg_catalog.pg_class c
                           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                          WHERE c.oid OPERATOR(pg_catalog.=) TG_ARGV[0]::pg_catalog.oid;';
    -- The identity columns of the old row; the whole old row if one of them is missing
    -- (renamed since add_table). For an UPDATE the new row shows which columns exist.
    key_image text := 'CASE WHEN coalesce(new_row, %1$I.hstore(pgfanout.as_record(OLD))) OPERATOR(%1$I.?&) %2$s'
                      ' THEN %1$I.slice(%1$I.hstore(pgfanout.as_record(OLD)), %2$s) ELSE %1$I.hstore(pgfanout.as_record(OLD)) END';
    key_image_exact text := 'CASE WHEN coalesce(new_row, pgfanout.row_text(OLD)) OPERATOR(%1$I.?&) %2$s'
                            ' THEN %1$I.slice(pgfanout.row_text(OLD), %2$s) ELSE pgfanout.row_text(OLD) END';
    full_image text := format('%1$I.hstore(pgfanout.as_record(OLD))', h);
    full_image_exact text := 'pgfanout.row_text(OLD)';
    fn record;
BEGIN
    -- pgfanout.row_text(anyelement): a row as hstore under exact output settings.
    -- Parameters: a row. Returns: hstore. Tables touched: none.
    EXECUTE format($sql$
        CREATE OR REPLACE FUNCTION pgfanout.row_text(r anyelement) RETURNS %1$I.hstore
        LANGUAGE sql STABLE
        SET search_path = pg_catalog, pg_temp
        SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET extra_float_digits = 1
        AS $fn$ SELECT %1$I.hstore(pgfanout.as_record(r)) $fn$
    $sql$, h);

    FOR fn IN
        SELECT * FROM (VALUES
            ('capture_key', '', '', 'TG_TABLE_SCHEMA', 'TG_TABLE_NAME',
             format(key_image, h, 'TG_ARGV'), format(key_image_exact, h, 'TG_ARGV')),
            ('capture_full', '', '', 'TG_TABLE_SCHEMA', 'TG_TABLE_NAME', full_image, full_image_exact),
            ('capture_key_partition', root_decl, root_lookup, 'sch', 'tbl',
             format(key_image, h, 'TG_ARGV[1:]'), format(key_image_exact, h, 'TG_ARGV[1:]')),
            ('capture_full_partition', root_decl, root_lookup, 'sch', 'tbl', full_image, full_image_exact)
        ) AS f(name, decl, lookup, sch, tbl, image, image_exact)
    LOOP
        EXECUTE format('CREATE OR REPLACE FUNCTION pgfanout.%I() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS %L',
                       fn.name, format(body, h, fn.decl, fn.lookup, fn.sch, fn.tbl, fn.image, fn.image_exact, exact));
    END LOOP;
END
$install$;

-- TRUNCATE capture, for plain and partitioned tables.
--   pgfanout.capture_truncate()        the statement-level trigger function (AFTER TRUNCATE ...
--                                      FOR EACH STATEMENT) on every captured table and on every
--                                      partition, at every level, of a captured partitioned table
--   pgfanout.capture_partition_truncates(regclass)
--                                      installs it on the partitions of one captured table
--   pgfanout.refresh_partition_truncates()
--                                      the same for every captured table; drops it from tables
--                                      that are no longer partitions of a captured table
-- How PostgreSQL 13 to 18 fire TRUNCATE triggers on a partition tree (checked on real servers in
-- functions/core/source/partition-truncate.test.ts):
-- * Statement-level triggers are not cloned to partitions; only row-level ones are
--   (https://www.postgresql.org/docs/current/sql-createtrigger.html: "Creating a row-level
--   trigger on a partitioned table will cause an identical 'clone' trigger to be created on each
--   of its existing partitions; and any partitions created or attached later will have an
--   identical trigger, too"), and TRUNCATE triggers can only be statement-level. So a partition
--   needs a trigger of its own, and one created or attached later gets it from add_table's
--   helpers: DDL capture and replicate_ddl (through schema_change) and refresh_table.
-- * TRUNCATE of a partition fires that partition's triggers and those of the partitions below it,
--   never its parent's.
-- * TRUNCATE of a partitioned table fires its own triggers and then those of every partition
--   below it, in one statement: unlike other statements, whose statement-level triggers fire on
--   the named table only (https://www.postgresql.org/docs/current/trigger-definition.html), TRUNCATE
--   truncates each table of the tree as its own target (ExecuteTruncate; reported as a
--   difference to the documentation in https://postgrespro.com/list/thread-id/2455649).
-- So one TRUNCATE logs one event per truncated subtree, not per table: a partition's trigger logs
-- nothing when the last event this session logged, in this transaction, is a TRUNCATE of the same
-- captured table covering this partition (the whole table, or an ancestor partition): nothing
-- was logged in between, so that event already empties it on the replicas.
--
-- A TRUNCATE event names the captured table (ev_schema, ev_table), as row events do; a TRUNCATE
-- of one of its partitions carries the partition's name as its old image: 'schema' and 'table'
-- (the envelope's `old`, see functions/core/wire/envelope.ts).
DO $install$
DECLARE
    h text := (SELECT n.nspname FROM pg_catalog.pg_extension x
               JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
               WHERE x.extname = 'hstore');
BEGIN
    -- pgfanout.capture_truncate(): one TRUNCATE event. Without arguments it is on a captured
    -- table itself; with one (the captured table's oid) on one of its partitions.
    -- Parameters: [the captured partitioned table's oid]. Returns: NULL.
    -- Tables touched: inserts into event_log_0/1/2; reads capture_hint, event_log (the
    --   session's last event, for partitions).
    EXECUTE format($sql$
        CREATE OR REPLACE FUNCTION pgfanout.capture_truncate() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $body$
        DECLARE
            log_nr text := current_setting('pgfanout.log_table', true);
            hint   bigint;
            sch    text := TG_TABLE_SCHEMA;
            tbl    text := TG_TABLE_NAME;
            part   %1$I.hstore;
            prev_ev record;
            last_ev bigint;
        BEGIN
            IF current_setting('pgfanout.origin', true) <> '' AND pgfanout.origin_trusted() THEN
                RETURN NULL;
            END IF;
            IF TG_NARGS > 0 THEN
                -- A partition: of the captured table TG_ARGV[0] still (else detached since)?
                IF NOT EXISTS (SELECT 1 FROM pg_partition_ancestors(TG_RELID) a
                                WHERE a.relid = TG_ARGV[0]::oid AND a.relid <> TG_RELID) THEN
                    RETURN NULL;
                END IF;
                SELECT n.nspname, c.relname INTO sch, tbl
                  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.oid = TG_ARGV[0]::oid;
                -- Covered by the TRUNCATE this session logged last, in this transaction?
                BEGIN
                    last_ev := currval('pgfanout.event_id_seq'::regclass);
                EXCEPTION WHEN object_not_in_prerequisite_state THEN
                    last_ev := NULL;  -- nothing logged in this session yet
                END;
                SELECT e.ev_key INTO prev_ev
                  FROM pgfanout.event_log e
                 WHERE e.ev_txid = pg_current_xact_id() AND e.ev_id = last_ev
                   AND e.ev_op = 'TRUNCATE' AND e.ev_schema = sch AND e.ev_table = tbl;
                IF FOUND AND (prev_ev.ev_key IS NULL OR EXISTS (
                        SELECT 1 FROM pg_partition_ancestors(TG_RELID) a
                         WHERE a.relid = to_regclass(format('%%I.%%I', prev_ev.ev_key OPERATOR(%1$I.->) 'schema',
                                                                       prev_ev.ev_key OPERATOR(%1$I.->) 'table')))) THEN
                    RETURN NULL;
                END IF;
                part := %1$I.hstore(ARRAY['schema', 'table'], ARRAY[TG_TABLE_SCHEMA::text, TG_TABLE_NAME::text]);
            END IF;
            IF log_nr IS NULL OR log_nr = '' THEN
                hint := pg_sequence_last_value('pgfanout.capture_hint'::regclass);
                IF hint >= 3 THEN
                    PERFORM pg_notify('pgfanout', '');
                END IF;
                log_nr := (coalesce(hint, 0) %% 3)::text;
                PERFORM set_config('pgfanout.log_table', log_nr, true);
            END IF;
            IF log_nr = '0' THEN
                INSERT INTO pgfanout.event_log_0 (ev_op, ev_schema, ev_table, ev_key) VALUES (TG_OP, sch, tbl, part);
            ELSIF log_nr = '1' THEN
                INSERT INTO pgfanout.event_log_1 (ev_op, ev_schema, ev_table, ev_key) VALUES (TG_OP, sch, tbl, part);
            ELSE
                INSERT INTO pgfanout.event_log_2 (ev_op, ev_schema, ev_table, ev_key) VALUES (TG_OP, sch, tbl, part);
            END IF;
            RETURN NULL;
        END
        $body$
    $sql$, h);
END
$install$;

-- pgfanout.capture_partition_truncates(regclass): installs the trigger pgfanout_capture_truncate
-- (pgfanout.capture_truncate with the table's oid) on every partition, at every level, of a
-- captured partitioned table that lacks it, and replaces one installed for another table.
-- Internal: add_table, refresh_partition_truncates.
-- Parameters: the captured table (a plain table has no partitions: nothing to do).
-- Returns: the number of triggers installed. Tables touched: the partitions' triggers.
CREATE OR REPLACE FUNCTION pgfanout.capture_partition_truncates(p_table regclass) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part  record;
    added integer := 0;
BEGIN
    FOR part IN
        SELECT format('%I.%I', n.nspname, c.relname) AS qualified,
               (SELECT tg.tgargs FROM pg_trigger tg WHERE tg.tgrelid = t.relid AND tg.tgname = 'pgfanout_capture_truncate') AS args
          FROM pg_partition_tree(p_table) t
          JOIN pg_class c ON c.oid = t.relid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE t.relid <> p_table::oid AND c.relkind IN ('r', 'p')
         ORDER BY t.level, c.oid
    LOOP
        -- tgargs: each argument followed by a zero byte.
        CONTINUE WHEN part.args = convert_to(p_table::oid::text, 'UTF8') || '\x00'::bytea;
        IF part.args IS NOT NULL THEN
            EXECUTE format('DROP TRIGGER pgfanout_capture_truncate ON %s', part.qualified);
        END IF;
        EXECUTE format('CREATE TRIGGER pgfanout_capture_truncate AFTER TRUNCATE ON %s'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION pgfanout.capture_truncate(%L)',
                       part.qualified, p_table::oid::text);
        added := added + 1;
    END LOOP;
    RETURN added;
END
$$;

-- pgfanout.refresh_partition_truncates(): after a schema change (a partition created, attached
-- or detached) or remove_table: every partition of a captured partitioned table gets the
-- TRUNCATE trigger (capture_partition_truncates), and tables that are no longer partitions of
-- the captured table their trigger names lose it. Also what to run after creating partitions
-- by DDL that neither DDL capture nor replicate_ddl saw (pgfanout.refresh_table does the same
-- for one table); pgfanout.uncaptured_partitions() lists such partitions.
-- Internal: schema_change, remove_table. Parameters: none. Returns: the number of triggers
-- installed. Tables touched: reads captured_table; triggers of partitions.
CREATE OR REPLACE FUNCTION pgfanout.refresh_partition_truncates() RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t     record;
    added integer := 0;
BEGIN
    FOR t IN
        SELECT format('%I.%I', n.nspname, c.relname) AS qualified, tg.tgrelid,
               convert_from(substring(tg.tgargs FROM 1 FOR length(tg.tgargs) - 1), 'UTF8') AS root
          FROM pg_trigger tg
          JOIN pg_class c ON c.oid = tg.tgrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE tg.tgname = 'pgfanout_capture_truncate' AND tg.tgnargs = 1
         ORDER BY tg.tgrelid
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pgfanout.captured_table ct WHERE ct.reloid::text = t.root)
           OR NOT EXISTS (SELECT 1 FROM pg_partition_ancestors(t.tgrelid) a WHERE a.relid::text = t.root AND a.relid <> t.tgrelid) THEN
            EXECUTE format('DROP TRIGGER pgfanout_capture_truncate ON %s', t.qualified);
        END IF;
    END LOOP;
    FOR t IN
        SELECT ct.reloid::regclass AS rel
          FROM pgfanout.captured_table ct JOIN pg_class c ON c.oid = ct.reloid
         WHERE c.relkind = 'p'
           AND EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = ct.reloid AND tg.tgname = 'pgfanout_capture')
         ORDER BY ct.reloid
    LOOP
        added := added + pgfanout.capture_partition_truncates(t.rel);
    END LOOP;
    RETURN added;
END
$$;

-- pgfanout.uncaptured_partitions(): partitions of captured tables whose TRUNCATE would not be
-- captured (created or attached by DDL that neither DDL capture nor replicate_ddl saw); run
-- pgfanout.refresh_table(<the captured table>) for each. Empty when all is well.
-- Parameters: none. Returns: the captured table and the partition, as schema-qualified names.
-- Tables touched: reads captured_table, pg_trigger.
CREATE OR REPLACE FUNCTION pgfanout.uncaptured_partitions() RETURNS TABLE (captured_table text, partition text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%I.%I', rn.nspname, r.relname), format('%I.%I', pn.nspname, p.relname)
      FROM pgfanout.captured_table ct
      JOIN pg_class r ON r.oid = ct.reloid AND r.relkind = 'p'
      JOIN pg_namespace rn ON rn.oid = r.relnamespace
     CROSS JOIN LATERAL pg_partition_tree(ct.reloid::regclass) t
      JOIN pg_class p ON p.oid = t.relid AND p.relkind IN ('r', 'p')
      JOIN pg_namespace pn ON pn.oid = p.relnamespace
     WHERE t.relid <> ct.reloid
       AND NOT EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = t.relid AND tg.tgname = 'pgfanout_capture_truncate'
                          AND tg.tgargs = convert_to(ct.reloid::text, 'UTF8') || '\x00'::bytea)
     ORDER BY 1, 2
$$;


-- The capture mode (see "WAL capture mode" below for the rest of it).

ALTER TABLE pgfanout.source_info
    ADD COLUMN IF NOT EXISTS capture_mode text NOT NULL DEFAULT 'trigger' CHECK (capture_mode IN ('trigger', 'wal'));

-- Batches of the WAL mode: the transactions of the slot's stream whose commit records start
-- (pgoutput's Begin "final LSN") from first_lsn to last_lsn. end_lsn is the end of the last
-- commit record, recorded when the batch is finished (the slot's confirmed position then).
CREATE TABLE IF NOT EXISTS pgfanout.wal_batch (
    batch_id          bigint      PRIMARY KEY,
    prev_batch_id     bigint      NOT NULL,
    first_lsn         pg_lsn      NOT NULL,
    last_lsn          pg_lsn      NOT NULL,
    end_lsn           pg_lsn,
    max_message_bytes integer     NOT NULL CHECK (max_message_bytes > 0),
    origin_system     numeric(20, 0) NOT NULL,
    origin_timeline   bigint      NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    CHECK (prev_batch_id = batch_id - 1),
    CHECK (first_lsn <= last_lsn)
);

-- pgfanout.capture_mode(): how this source captures changes.
-- Parameters: none. Returns: 'trigger' or 'wal'. Tables touched: reads source_info.
CREATE OR REPLACE FUNCTION pgfanout.capture_mode() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT capture_mode FROM pgfanout.source_info $$;

-- pgfanout.wal_slot_name(): the logical replication slot of this source in WAL mode.
-- Parameters: none. Returns: text. Tables touched: reads source_info.
CREATE OR REPLACE FUNCTION pgfanout.wal_slot_name() RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'pgfanout_' || replace(source_id::text, '-', '') FROM pgfanout.source_info $$;

-- pgfanout.is_added(regclass): whether a table is captured: it has the capture trigger
-- (trigger mode) or is a member of the publication (WAL mode).
-- Parameters: the table. Returns: boolean. Tables touched: reads pg_trigger / pg_publication_rel.
CREATE OR REPLACE FUNCTION pgfanout.is_added(p_table regclass) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN pgfanout.capture_mode() = 'wal'
                THEN EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
                              WHERE p.pubname = 'pgfanout' AND pr.prrelid = p_table)
                ELSE EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = 'pgfanout_capture') END
$$;

-- pgfanout.identity_of(regclass): the row identity add_table would choose.
-- Parameters: the table. Returns: kind ('primary key' | 'unique index' | 'none'), the
--   index oid (or NULL) and the key columns in index order (empty for none).
-- Tables touched: reads pg_index, pg_attribute.
CREATE OR REPLACE FUNCTION pgfanout.identity_of(p_table regclass,
    OUT identity_kind text, OUT identity_index oid, OUT identity_columns text[])
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(best.kind, 'none'), best.indexrelid, coalesce(best.cols, '{}'::text[])
    FROM (SELECT 1) AS one
    LEFT JOIN LATERAL (
        SELECT CASE WHEN i.indisprimary THEN 'primary key' ELSE 'unique index' END AS kind,
               i.indexrelid,
               array_agg(a.attname::text ORDER BY k.ord) AS cols
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
        LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = p_table
          AND i.indisvalid AND i.indislive
          AND (i.indisprimary OR (i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL))
          AND k.ord <= i.indnkeyatts
        GROUP BY i.indexrelid, i.indisprimary, ic.relname
        -- every key column is a plain NOT NULL column (attnum 0 would be an expression)
        HAVING bool_and(k.attnum > 0 AND a.attnotnull IS TRUE)
        ORDER BY i.indisprimary DESC, count(*), ic.relname COLLATE "C", i.indexrelid
        LIMIT 1
    ) AS best ON true
$$;

-- pgfanout.add_table(regclass): starts capturing a table's changes.
-- Parameters: the table (plain or partitioned; not a partition, view, temporary table or
--   one of pgfanout's own). Returns: void.
-- Tables touched: captured_table (insert); creates triggers pgfanout_capture (row) and
--   pgfanout_capture_truncate (statement) on the table and, for a partitioned table, on each of
--   its partitions (see pgfanout.capture_truncate).
-- Errors when the table is already added, naming it.
CREATE OR REPLACE FUNCTION pgfanout.add_table(p_table regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel      record;
    ident    record;
    qualified text;
    trigger_args text[];
BEGIN
    IF pgfanout.capture_mode() = 'wal' THEN
        PERFORM pgfanout.wal_add_table(p_table);
        RETURN;
    END IF;
    IF p_table IS NULL THEN
        RAISE EXCEPTION 'pgfanout.add_table: the table must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relname, n.nspname, c.relkind, c.relpersistence, c.relispartition
      INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgfanout.add_table: no relation has oid %', p_table::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    qualified := format('%I.%I', rel.nspname, rel.relname);
    IF rel.nspname = 'pgfanout' THEN
        RAISE EXCEPTION 'pgfanout.add_table: % is one of pgfanout''s own tables; they are not captured', qualified
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'pgfanout.add_table: % is a %, not a table; only plain and partitioned tables can be added', qualified,
            CASE rel.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table'
                             WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index' WHEN 'I' THEN 'partitioned index'
                             WHEN 'c' THEN 'composite type' ELSE format('relation of kind %L', rel.relkind) END
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF rel.relpersistence = 't' THEN
        RAISE EXCEPTION 'pgfanout.add_table: % is a temporary table; only permanent and unlogged tables can be added', qualified
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF rel.relispartition THEN
        RAISE EXCEPTION 'pgfanout.add_table: % is a partition of %; add the partitioned table instead', qualified,
            (SELECT format('%I.%I', pn.nspname, pc.relname)
               FROM pg_inherits inh JOIN pg_class pc ON pc.oid = inh.inhparent
               JOIN pg_namespace pn ON pn.oid = pc.relnamespace
              WHERE inh.inhrelid = p_table LIMIT 1)
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = 'pgfanout_capture') THEN
        RAISE EXCEPTION 'pgfanout.add_table: table % is already added', qualified
            USING ERRCODE = 'duplicate_object',
                  HINT = 'pgfanout.show_tables() lists the added tables; pgfanout.remove_table() removes one.';
    END IF;
    -- A row left by a table that was dropped while added, whose oid now names this table.
    DELETE FROM pgfanout.captured_table WHERE reloid = p_table;

    SELECT * INTO ident FROM pgfanout.identity_of(p_table);
    -- Trigger arguments: [the partitioned table's oid,] the identity columns.
    trigger_args := CASE WHEN rel.relkind = 'p' THEN ARRAY[p_table::oid::text] ELSE '{}'::text[] END
                    || ident.identity_columns;
    EXECUTE format('CREATE TRIGGER pgfanout_capture AFTER INSERT OR UPDATE OR DELETE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION pgfanout.%I(%s)',
                   qualified,
                   CASE WHEN ident.identity_kind = 'none' THEN 'capture_full' ELSE 'capture_key' END
                   || CASE WHEN rel.relkind = 'p' THEN '_partition' ELSE '' END,
                   coalesce((SELECT string_agg(quote_literal(a), ', ' ORDER BY o)
                               FROM unnest(trigger_args) WITH ORDINALITY AS args(a, o)), ''));
    EXECUTE format('CREATE TRIGGER pgfanout_capture_truncate AFTER TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION pgfanout.capture_truncate()',
                   qualified);
    INSERT INTO pgfanout.captured_table (reloid, identity_kind, identity_index, identity_columns)
    VALUES (p_table, ident.identity_kind, ident.identity_index, ident.identity_columns);
    PERFORM pgfanout.capture_partition_truncates(p_table);
END
$$;

-- pgfanout.remove_table(regclass): stops capturing a table. Events already logged stay
-- in the log and are published.
-- Parameters: the table. Returns: void.
-- Tables touched: captured_table (delete); drops the table's pgfanout triggers (and its
--   partitions' TRUNCATE triggers).
CREATE OR REPLACE FUNCTION pgfanout.remove_table(p_table regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    qualified text;
BEGIN
    IF pgfanout.capture_mode() = 'wal' THEN
        PERFORM pgfanout.wal_remove_table(p_table);
        RETURN;
    END IF;
    IF p_table IS NULL THEN
        RAISE EXCEPTION 'pgfanout.remove_table: the table must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT format('%I.%I', n.nspname, c.relname) INTO qualified
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = 'pgfanout_capture') THEN
        RAISE EXCEPTION 'pgfanout.remove_table: table % is not added', coalesce(qualified, p_table::oid::text)
            USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('DROP TRIGGER pgfanout_capture ON %s', qualified);
    EXECUTE format('DROP TRIGGER IF EXISTS pgfanout_capture_truncate ON %s', qualified);
    DELETE FROM pgfanout.captured_table WHERE reloid = p_table;
    PERFORM pgfanout.refresh_partition_truncates();
END
$$;

-- pgfanout.add_all_tables(name): adds every plain or partitioned table of a schema that is
-- not added yet (partitions, temporary tables and pgfanout's own tables are skipped).
-- Parameters: the schema name. Returns: the tables added, in name order.
-- Tables touched: as add_table.
CREATE OR REPLACE FUNCTION pgfanout.add_all_tables(p_schema name) RETURNS SETOF regclass
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t regclass;
BEGIN
    IF p_schema IS NULL THEN
        RAISE EXCEPTION 'pgfanout.add_all_tables: the schema must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = p_schema) THEN
        RAISE EXCEPTION 'pgfanout.add_all_tables: schema % does not exist', quote_ident(p_schema)
            USING ERRCODE = 'invalid_schema_name';
    END IF;
    IF p_schema = 'pgfanout' THEN
        RETURN;
    END IF;
    FOR t IN
        SELECT c.oid::regclass
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = p_schema
           AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
           AND NOT pgfanout.is_added(c.oid::regclass)
         ORDER BY c.relname COLLATE "C"
    LOOP
        PERFORM pgfanout.add_table(t);
        RETURN NEXT t;
    END LOOP;
END
$$;

-- pgfanout.show_tables(): the captured tables.
-- Parameters: none. Returns: one row per table: schema and table name (current names),
--   identity kind, identity columns (as recorded at add_table), identity_ok (false when
--   one of those columns no longer exists under that name: remove_table + add_table
--   records the current ones; until then updates and deletes log the whole old row),
--   added_at.
-- Tables touched: reads captured_table.
CREATE OR REPLACE FUNCTION pgfanout.show_tables()
RETURNS TABLE (table_schema name, table_name name, identity_kind text, identity_columns text[],
               identity_ok boolean, added_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT n.nspname, c.relname, t.identity_kind, t.identity_columns,
           NOT EXISTS (SELECT 1 FROM unnest(t.identity_columns) AS k(name)
                        WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                                           WHERE a.attrelid = t.reloid AND a.attname = k.name
                                             AND a.attnum > 0 AND NOT a.attisdropped)),
           t.added_at
      FROM pgfanout.captured_table t
      JOIN pg_class c ON c.oid = t.reloid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE pgfanout.is_added(t.reloid::regclass)
     ORDER BY n.nspname COLLATE "C", c.relname COLLATE "C"
$$;


-- pgfanout.publisher_waiting(boolean): the publisher says it is idle and LISTENing
-- (true), or busy (false). While true, each capturing transaction sends one NOTIFY
-- pgfanout (empty payload); while false, none, so sustained load pays no NOTIFY lock.
-- Parameters: waiting. Returns: void.
-- Tables touched: capture_state (update), capture_hint (setval).
CREATE OR REPLACE FUNCTION pgfanout.publisher_waiting(p_waiting boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_waiting IS NULL THEN
        RAISE EXCEPTION 'pgfanout.publisher_waiting: the flag must be true or false, not NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE pgfanout.capture_state
       SET publisher_waiting = p_waiting,
           waiting_since = CASE WHEN p_waiting THEN coalesce(waiting_since, now()) END
     WHERE publisher_waiting IS DISTINCT FROM p_waiting;
    PERFORM setval('pgfanout.capture_hint', s.log_table + CASE WHEN s.publisher_waiting THEN 3 ELSE 0 END, true)
       FROM pgfanout.capture_state s;
END
$$;


-- pgfanout.append_batch(prev_id, prev_snapshot, snapshot): the one place a batch is made.
-- Counts the events of transactions visible in `snapshot` and not in `prev_snapshot` (the
-- newest boundary); when there are any, records them as batch prev_id + 1. Either way the
-- boundary moves to `snapshot`. Internal: next_batch and mark_snapshot_batch call it with
-- batch_cursor locked, and every statement here runs with a snapshot at least as new as
-- `snapshot`, so every event of a transaction visible in it is seen.
-- Returns: the new batch's id, event count and event times; all NULL when nothing committed.
-- Tables touched: reads event_log; batch (insert), batch_cursor (update).
CREATE OR REPLACE FUNCTION pgfanout.append_batch(p_prev_id bigint, p_prev_snapshot pg_snapshot, p_snapshot pg_snapshot,
    OUT o_batch_id bigint, OUT o_event_count bigint, OUT o_first_event_time timestamptz, OUT o_last_event_time timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n       bigint;
    t_first timestamptz;
    t_last  timestamptz;
    max_id  bigint;
BEGIN
    SELECT count(*), min(e.ev_time), max(e.ev_time), max(e.ev_id)
      INTO n, t_first, t_last, max_id
      FROM pgfanout.event_log e
     WHERE (e.ev_txid >= pg_snapshot_xmax(p_prev_snapshot)
            OR e.ev_txid = ANY (ARRAY(SELECT pg_snapshot_xip(p_prev_snapshot))))
       AND e.ev_txid < pg_snapshot_xmax(p_snapshot)
       AND pg_visible_in_snapshot(e.ev_txid, p_snapshot);
    IF n = 0 THEN
        -- Nothing committed in between: move the boundary on without using an id.
        UPDATE pgfanout.batch_cursor SET last_snapshot = p_snapshot;
        RETURN;
    END IF;
    INSERT INTO pgfanout.batch (batch_id, prev_batch_id, prev_snapshot, snapshot, event_count,
                                first_event_time, last_event_time, max_ev_id)
    VALUES (p_prev_id + 1, p_prev_id, p_prev_snapshot, p_snapshot, n, t_first, t_last, max_id);
    UPDATE pgfanout.batch_cursor SET last_batch_id = p_prev_id + 1, last_snapshot = p_snapshot;
    o_batch_id := p_prev_id + 1;
    o_event_count := n;
    o_first_event_time := t_first;
    o_last_event_time := t_last;
END
$$;

-- pgfanout.next_batch(): the batch the publisher should publish now.
-- Parameters: none.
-- Returns: the open (served, not finished) batch if there is one, with the same id and
--   events every time (the lowest one, finished_batch_id + 1, when mark_snapshot_batch
--   added another); else a new batch of the events of every transaction that committed
--   since the previous batch's snapshot, with the next id; else no row (nothing new).
-- Tables touched: batch_cursor (locked, updated), batch (insert), reads event_log.
CREATE OR REPLACE FUNCTION pgfanout.next_batch()
RETURNS TABLE (batch_id bigint, prev_batch_id bigint, event_count bigint,
               first_event_time timestamptz, last_event_time timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cur     record;
    snap    pg_snapshot;
    made    record;
BEGIN
    SELECT * INTO cur FROM pgfanout.batch_cursor FOR UPDATE;
    IF cur.last_batch_id > cur.finished_batch_id THEN
        RETURN QUERY
            SELECT b.batch_id, b.prev_batch_id, b.event_count, b.first_event_time, b.last_event_time
              FROM pgfanout.batch b WHERE b.batch_id = cur.finished_batch_id + 1;
        RETURN;
    END IF;
    -- Every statement below runs with a snapshot at least as new as snap, so every event
    -- of a transaction visible in snap is visible to it.
    snap := pg_current_snapshot();
    IF pg_snapshot_xmax(cur.last_snapshot) > pg_snapshot_xmax(snap) THEN
        -- Transaction ids only grow: this log was restored into, or copied to, another cluster.
        RAISE EXCEPTION 'pgfanout.next_batch: the log position (snapshot %) is ahead of this server''s transaction ids (snapshot %)',
            cur.last_snapshot, snap
            USING ERRCODE = 'data_corrupted',
                  HINT = 'The pgfanout schema was restored from a dump or copied from another server; reinstall it to start a new stream.';
    END IF;
    SELECT * INTO made FROM pgfanout.append_batch(cur.last_batch_id, cur.last_snapshot, snap);
    IF made.o_batch_id IS NOT NULL THEN
        RETURN QUERY SELECT made.o_batch_id, cur.last_batch_id, made.o_event_count, made.o_first_event_time, made.o_last_event_time;
    END IF;
END
$$;

-- pgfanout.batch_values(bigint): the open batch's events, one row per captured column value.
-- Parameters: the batch id (must be the open batch).
-- Returns: ev_id, ev_txid (xid8 as decimal text), ev_time, ev_op ('I' | 'U' | 'D' | 'T' | 'S'),
--   ev_schema, ev_table, image ('k' old identity, 'n' new row (for 'S', a schema change:
--   'search_path' and 'sql'), '-' an event without column values such as TRUNCATE), col,
--   value (the column's text output, NULL for SQL NULL);
--   ordered by ev_id, image, col (bytewise).
-- Tables touched: reads batch, event_log.
DO $install$
DECLARE
    h text := (SELECT n.nspname FROM pg_catalog.pg_extension x
               JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
               WHERE x.extname = 'hstore');
BEGIN
    EXECUTE format($sql$
        CREATE OR REPLACE FUNCTION pgfanout.batch_values(p_batch_id bigint)
        RETURNS TABLE (ev_id bigint, ev_txid text, ev_time timestamptz, ev_op text, ev_schema text,
                       ev_table text, image text, col text, value text)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $body$
        #variable_conflict use_column
        DECLARE
            b   record;
            cur record;
        BEGIN
            IF p_batch_id IS NULL THEN
                RAISE EXCEPTION 'pgfanout.batch_values: the batch id must not be NULL'
                    USING ERRCODE = 'null_value_not_allowed';
            END IF;
            SELECT * INTO cur FROM pgfanout.batch_cursor;
            SELECT * INTO b FROM pgfanout.batch bt WHERE bt.batch_id = p_batch_id;
            IF NOT FOUND OR (b.finished_at IS NULL AND (p_batch_id <> cur.finished_batch_id + 1 OR cur.last_batch_id = cur.finished_batch_id)) THEN
                RAISE EXCEPTION 'pgfanout.batch_values: batch %% is not the open batch (%%)', p_batch_id,
                    CASE WHEN cur.last_batch_id > cur.finished_batch_id
                         THEN format('the open batch is %%s', cur.finished_batch_id + 1)
                         ELSE format('no batch is open; the last finished batch is %%s', cur.finished_batch_id) END
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Only the batch returned by pgfanout.next_batch() can be read; a finished batch''s events may be gone.';
            END IF;
            IF b.finished_at IS NOT NULL THEN
                RAISE EXCEPTION 'pgfanout.batch_values: batch %% is finished; its events may have been rotated out of the log', p_batch_id
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            RETURN QUERY
                SELECT e.ev_id, e.ev_txid::text, e.ev_time, left(e.ev_op, 1), e.ev_schema, e.ev_table, v.image, v.col, v.value
                  FROM (SELECT * FROM pgfanout.event_log l
                         WHERE (l.ev_txid >= pg_snapshot_xmax(b.prev_snapshot)
                                OR l.ev_txid = ANY (ARRAY(SELECT pg_snapshot_xip(b.prev_snapshot))))
                           AND l.ev_txid < pg_snapshot_xmax(b.snapshot)
                           AND pg_visible_in_snapshot(l.ev_txid, b.snapshot)
                         ORDER BY l.ev_id) AS e
                 CROSS JOIN LATERAL (
                        SELECT 'k'::text AS image, kv.key AS col, kv.value AS value FROM %1$I.each(e.ev_key) AS kv
                        UNION ALL
                        SELECT 'n'::text, nv.key, nv.value FROM %1$I.each(e.ev_new) AS nv
                        UNION ALL
                        SELECT '-'::text, NULL::text, NULL::text
                         WHERE coalesce(%1$I.akeys(e.ev_key), '{}') = '{}'
                           AND coalesce(%1$I.akeys(e.ev_new), '{}') = '{}'
                       ) AS v
                 ORDER BY e.ev_id, v.image COLLATE "C", v.col COLLATE "C";
        END
        $body$
    $sql$, h);
END
$install$;


-- pgfanout.rotate_log(): empties log tables whose events are all published, and moves
-- capture to the next table when the current one is old enough. Called by finish_batch.
-- Parameters: none. Returns: void.
-- Tables touched: capture_state (locked, updated), event_log_0/1/2 (TRUNCATE),
--   capture_hint (setval).
--
-- Why a TRUNCATE here loses nothing. A log table T is truncated only while this
-- transaction holds ACCESS EXCLUSIVE on T, taken with NOWAIT (so writers never queue
-- behind it; if any transaction holds a lock on T we simply try again at a later
-- finish_batch). Holding it means no transaction that has written to T is still running:
-- a writer keeps its ROW EXCLUSIVE lock on T until it commits or aborts. So every row in
-- T belongs to a finished transaction, and the check below, which runs after the lock
-- with a fresh READ COMMITTED snapshot, sees all of the committed ones. The check is
-- that each of them is visible in batch_cursor.last_snapshot, with no batch open: every
-- event of a transaction visible in that snapshot is in a finished batch (the batches
-- 1..N cover exactly the transactions visible in snapshot N and not in the install
-- snapshot, and no capture trigger existed before install). So every row in T is
-- published, and T is provably fully consumed. Writers that read a stale current table
-- (a REPEATABLE READ snapshot taken before a switch) may write to T after it was
-- truncated; that is safe too, because the same check is applied before T is truncated
-- again, and batches read all three tables. Under REPEATABLE READ or SERIALIZABLE the
-- check could miss a commit that happened after this transaction's snapshot, so rotation
-- only runs in READ COMMITTED. The table switch itself is only a hint to writers (the
-- capture_hint sequence, which is not transactional): whichever table a writer picks,
-- the argument above holds.
CREATE OR REPLACE FUNCTION pgfanout.rotate_log() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    st        record;
    cur       record;
    nr        integer;
    tbl       text;
    leftover  boolean;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN;
    END IF;
    SELECT * INTO st FROM pgfanout.capture_state FOR UPDATE;
    SELECT * INTO cur FROM pgfanout.batch_cursor FOR UPDATE;
    IF cur.last_batch_id <> cur.finished_batch_id THEN
        RETURN;
    END IF;
    FOR nr IN 0..2 LOOP
        CONTINUE WHEN nr = st.log_table;
        tbl := 'event_log_' || nr;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM pgfanout.%I)', tbl) INTO leftover;
        CONTINUE WHEN NOT leftover;
        BEGIN
            EXECUTE format('LOCK TABLE pgfanout.%I IN ACCESS EXCLUSIVE MODE NOWAIT', tbl);
        EXCEPTION WHEN lock_not_available THEN
            CONTINUE;
        END;
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM pgfanout.%I l WHERE l.ev_txid >= pg_snapshot_xmin($1)'
                       ' AND NOT pg_visible_in_snapshot(l.ev_txid, $1))', tbl)
           INTO leftover USING cur.last_snapshot;
        CONTINUE WHEN leftover;
        EXECUTE format('TRUNCATE pgfanout.%I', tbl);
        UPDATE pgfanout.capture_state SET truncations = truncations + 1;
    END LOOP;
    nr := (st.log_table + 1) % 3;
    IF now() - st.log_table_since >= st.rotation_interval THEN
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM pgfanout.%I)', 'event_log_' || nr) INTO leftover;
        IF NOT leftover THEN
            UPDATE pgfanout.capture_state
               SET log_table = nr, log_table_since = now(), rotations = rotations + 1;
        END IF;
    END IF;
    PERFORM setval('pgfanout.capture_hint', s.log_table + CASE WHEN s.publisher_waiting THEN 3 ELSE 0 END, true)
       FROM pgfanout.capture_state s;
END
$$;

-- pgfanout.finish_batch(bigint): the publisher has published the batch.
-- Parameters: the batch id. Returns: void. Finishing an already finished batch does
--   nothing; any id other than the open batch's is an error naming both ids.
-- Tables touched: batch_cursor, batch (update, old rows pruned), then as rotate_log.
CREATE OR REPLACE FUNCTION pgfanout.finish_batch(p_batch_id bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur record;
BEGIN
    IF p_batch_id IS NULL THEN
        RAISE EXCEPTION 'pgfanout.finish_batch: the batch id must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO cur FROM pgfanout.batch_cursor FOR UPDATE;
    IF p_batch_id >= 1 AND p_batch_id <= cur.finished_batch_id THEN
        RETURN;
    END IF;
    IF p_batch_id <> cur.finished_batch_id + 1 OR cur.last_batch_id = cur.finished_batch_id THEN
        IF cur.last_batch_id > cur.finished_batch_id THEN
            RAISE EXCEPTION 'pgfanout.finish_batch: cannot finish batch %: the open batch is %', p_batch_id, cur.finished_batch_id + 1
                USING ERRCODE = 'invalid_parameter_value';
        ELSE
            RAISE EXCEPTION 'pgfanout.finish_batch: cannot finish batch %: no batch is open and the last finished batch is %',
                p_batch_id, cur.finished_batch_id
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    UPDATE pgfanout.batch SET finished_at = now() WHERE batch_id = p_batch_id;
    UPDATE pgfanout.batch_cursor SET finished_batch_id = p_batch_id;
    -- Keep the last thousand batches for inspection.
    DELETE FROM pgfanout.batch WHERE batch_id < p_batch_id - 1000;
    PERFORM pgfanout.rotate_log();
END
$$;

-- pgfanout.status(): positions and backlog, cheap enough to call often.
-- Parameters: none.
-- Returns: last_batch_id (last served), finished_batch_id, open_batch_id (the open batch
--   next_batch serves, or NULL), pending_events (events of the open batches plus an
--   estimate of those not yet in a batch, from the event id sequence),
--   oldest_pending_event_time (estimate),
--   publisher_waiting, log_table, rotations, truncations.
-- Tables touched: reads batch_cursor, batch, capture_state, event_log.
CREATE OR REPLACE FUNCTION pgfanout.status()
RETURNS TABLE (last_batch_id bigint, finished_batch_id bigint, open_batch_id bigint, pending_events bigint,
               oldest_pending_event_time timestamptz, publisher_waiting boolean, log_table integer,
               rotations bigint, truncations bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    cur      record;
    st       record;
    open_b   record;
    seen_id  bigint;
    unbatched bigint;
    oldest   timestamptz;
BEGIN
    SELECT * INTO cur FROM pgfanout.batch_cursor;
    SELECT * INTO st FROM pgfanout.capture_state;
    SELECT min(b.batch_id) AS batch_id, sum(b.event_count)::bigint AS event_count,
           min(b.first_event_time) AS first_event_time
      INTO open_b FROM pgfanout.batch b
     WHERE b.batch_id > cur.finished_batch_id AND b.batch_id <= cur.last_batch_id;
    seen_id := coalesce((SELECT max(b.max_ev_id) FROM pgfanout.batch b), 0);
    unbatched := greatest(coalesce(pg_sequence_last_value('pgfanout.event_id_seq'::regclass), 0) - seen_id, 0);
    -- The oldest event not in a batch is found through the ev_txid index: the lowest
    -- txids that were running at, or started after, the last snapshot.
    SELECT min(e.ev_time) INTO oldest FROM (
        (SELECT l.ev_time FROM pgfanout.event_log l
          WHERE l.ev_txid = ANY (ARRAY(SELECT pg_snapshot_xip(cur.last_snapshot)))
          ORDER BY l.ev_txid LIMIT 1)
        UNION ALL
        (SELECT l.ev_time FROM pgfanout.event_log l
          WHERE l.ev_txid >= pg_snapshot_xmax(cur.last_snapshot)
          ORDER BY l.ev_txid LIMIT 1)
    ) AS e;
    RETURN QUERY SELECT cur.last_batch_id, cur.finished_batch_id, open_b.batch_id,
        coalesce(open_b.event_count, 0) + CASE WHEN oldest IS NULL THEN 0 ELSE greatest(unbatched, 1) END,
        CASE WHEN open_b.batch_id IS NULL THEN oldest ELSE least(open_b.first_event_time, oldest) END,
        st.publisher_waiting, st.log_table, st.rotations, st.truncations;
END
$$;


-- pgfanout.mark_snapshot_batch(pg_snapshot): closes a batch boundary exactly at the
-- caller's snapshot S, so that a copy of the tables made under S (exported with
-- pg_export_snapshot() and imported by the copying sessions) plus the batches after the
-- returned id is exactly the source's history: nothing missing, nothing twice.
-- Parameters: S, from pg_current_snapshot() in a transaction that is still open (call this
--   from another session, in READ COMMITTED, right after taking S).
-- Returns: bigint B: batches 1..B hold exactly the events of the transactions visible in S.
--   B is a new batch (last + 1) of the events of every transaction visible in S and not in
--   the newest boundary; when there is no such event, B is the last batch (no new id).
--   An open batch stays as it is and is served first (next_batch serves open batches in id
--   order): it is neither split nor skipped, and it is re-served byte for byte.
-- Errors: S older than the newest boundary (a batch or position taken after S): SQLSTATE
--   40001, the caller takes a new snapshot and calls again; S not visible to the calling
--   transaction (a snapshot from the future or another server): 22023.
-- Tables touched: batch_cursor (locked, updated), batch (insert), reads event_log.
-- Not granted to pgfanout_publisher; the owner runs it (GRANT EXECUTE to an operator role).
CREATE OR REPLACE FUNCTION pgfanout.mark_snapshot_batch(p_snapshot pg_snapshot) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    mine    pg_snapshot := pg_current_snapshot();
    cur     record;
BEGIN
    IF p_snapshot IS NULL THEN
        RAISE EXCEPTION 'pgfanout.mark_snapshot_batch: the snapshot must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- "a covers b": every transaction visible in b is visible in a.
    -- This call's queries must see every event of every transaction visible in S.
    IF NOT (pg_snapshot_xmax(mine) >= pg_snapshot_xmax(p_snapshot)
            AND NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(mine) x WHERE pg_visible_in_snapshot(x, p_snapshot))) THEN
        RAISE EXCEPTION 'pgfanout.mark_snapshot_batch: snapshot % is not visible to this transaction (snapshot %)', p_snapshot, mine
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass pg_current_snapshot() of a transaction of this server that is still open, and call this function in READ COMMITTED.';
    END IF;
    SELECT * INTO cur FROM pgfanout.batch_cursor FOR UPDATE;
    IF NOT (pg_snapshot_xmax(p_snapshot) >= pg_snapshot_xmax(cur.last_snapshot)
            AND NOT EXISTS (SELECT 1 FROM pg_snapshot_xip(p_snapshot) x WHERE pg_visible_in_snapshot(x, cur.last_snapshot))) THEN
        RAISE EXCEPTION 'pgfanout.mark_snapshot_batch: snapshot % is older than the newest batch boundary (snapshot %, after batch %)',
            p_snapshot, cur.last_snapshot, cur.last_batch_id
            USING ERRCODE = 'serialization_failure',
                  HINT = 'The publisher moved on after the snapshot was taken: take a new snapshot and call again.';
    END IF;
    -- As in next_batch: the events of transactions visible in S and not in the boundary.
    -- This call's snapshot is newer than S (checked above), so it sees all of them.
    RETURN coalesce((SELECT o_batch_id FROM pgfanout.append_batch(cur.last_batch_id, cur.last_snapshot, p_snapshot)),
                    cur.last_batch_id);
END
$$;


-- Grants: see the end of this script (no function here is for everyone).


-- Schema changes through the stream
--
--   pgfanout.replicate_ddl(text)            runs a DDL statement here and logs it for every
--                                           replica, in the same transaction
--   pgfanout.auto_add_schema(name, bool)    tables that replicated DDL creates in this schema
--                                           are added to capture at once
--   pgfanout.refresh_table(regclass)        re-reads a captured table's row identity and
--                                           re-installs its trigger
--   pgfanout.set_old_image(regclass, text)  what UPDATE and DELETE events carry as the old
--                                           image: 'identity' (the default) or 'full' (the
--                                           whole old row, for conflict detection)
--   pgfanout.enable_ddl_capture(), pgfanout.disable_ddl_capture()
--                                           event triggers that log CREATE/ALTER/DROP TABLE
--                                           in schemas with captured tables (superuser only;
--                                           rds_superuser on Amazon RDS), for pgfanout's
--                                           owner and the roles allowed with
--   pgfanout.ddl_capture_role(name, bool)   (no other role may change those tables then)
--
-- A schema change is one event: ev_op 'SCHEMA' ('S' in batch_values), no old image, and as
-- new image 'sql' (the statement text) and 'search_path' (the schemas its unqualified names
-- resolved in, quoted, comma-separated); ev_schema and ev_table name the table it is about
-- when that is known, else ''. Replicas run the statement at its place among the changes.
-- After every schema change, tables whose row identity changed get their triggers
-- re-installed (so the events after an ALTER TABLE carry the new identity), and log rows of
-- dropped tables are removed from captured_table.

-- Schemas in which tables created by replicated DDL are added to capture.
CREATE TABLE IF NOT EXISTS pgfanout.auto_add_schema (
    schema_name name        PRIMARY KEY,
    added_at    timestamptz NOT NULL DEFAULT now()
);

-- What UPDATE and DELETE events of a captured table carry as the old image.
ALTER TABLE pgfanout.captured_table
    ADD COLUMN IF NOT EXISTS old_image text NOT NULL DEFAULT 'identity' CHECK (old_image IN ('identity', 'full'));

-- pgfanout.use_full_old_image(regclass): points a captured table's row trigger at the
-- capture function that logs the whole old row (capture_full, capture_full_partition),
-- keeping its arguments except the identity columns. Internal: set_old_image, refresh_table.
-- Parameters: the table. Returns: void. Tables touched: reads captured_table, pg_trigger.
CREATE OR REPLACE FUNCTION pgfanout.use_full_old_image(p_table regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trg       record;
    args      text[] := '{}';
    arg       bytea := '';
    keep      integer;
    i         integer;
    qualified text;
BEGIN
    SELECT t.tgargs, t.tgnargs, p.proname::text AS fn, ct.identity_columns
      INTO trg
      FROM pg_trigger t
      JOIN pg_proc p ON p.oid = t.tgfoid
      JOIN pgfanout.captured_table ct ON ct.reloid = t.tgrelid
     WHERE t.tgrelid = p_table AND t.tgname = 'pgfanout_capture';
    IF NOT FOUND OR trg.fn NOT LIKE 'capture\_key%' THEN
        RETURN;
    END IF;
    -- tgargs: each argument followed by a zero byte.
    FOR i IN 0 .. length(trg.tgargs) - 1 LOOP
        IF get_byte(trg.tgargs, i) = 0 THEN
            args := args || convert_from(arg, 'UTF8');
            arg := '';
        ELSE
            arg := arg || substring(trg.tgargs FROM i + 1 FOR 1);
        END IF;
    END LOOP;
    keep := trg.tgnargs - coalesce(array_length(trg.identity_columns, 1), 0);
    SELECT format('%I.%I', n.nspname, c.relname) INTO qualified
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table;
    EXECUTE format('DROP TRIGGER pgfanout_capture ON %s', qualified);
    EXECUTE format('CREATE TRIGGER pgfanout_capture AFTER INSERT OR UPDATE OR DELETE ON %s'
                   ' FOR EACH ROW EXECUTE FUNCTION pgfanout.%I(%s)',
                   qualified, replace(trg.fn, 'capture_key', 'capture_full'),
                   (SELECT coalesce(string_agg(quote_literal(a), ', ' ORDER BY o), '')
                      FROM unnest(args[1:keep]) WITH ORDINALITY AS x(a, o)));
END
$$;

-- pgfanout.refresh_table(regclass): re-installs a captured table's triggers for its current
-- row identity and column names (remove_table + add_table), keeping when it was added and
-- its old image setting. Events already logged are not touched.
-- Parameters: the table (must be added). Returns: void.
-- Tables touched: captured_table; the table's pgfanout triggers.
CREATE OR REPLACE FUNCTION pgfanout.refresh_table(p_table regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ct record;
BEGIN
    IF p_table IS NULL THEN
        RAISE EXCEPTION 'pgfanout.refresh_table: the table must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT * INTO ct FROM pgfanout.captured_table WHERE reloid = p_table;
    PERFORM pgfanout.remove_table(p_table);
    PERFORM pgfanout.add_table(p_table);
    IF ct.reloid IS NOT NULL THEN
        UPDATE pgfanout.captured_table SET added_at = ct.added_at, old_image = ct.old_image WHERE reloid = p_table;
        IF ct.old_image = 'full' THEN
            PERFORM pgfanout.use_full_old_image(p_table);
        END IF;
    END IF;
END
$$;

-- pgfanout.set_old_image(regclass, text): what the table's UPDATE and DELETE events carry as
-- the old image: 'identity' (its row identity columns; the default) or 'full' (the whole old
-- row, so that a replica can tell whether its row still holds what the source's row held:
-- conflict detection for multi-master). Tables without a row identity always log the whole
-- old row.
-- Parameters: the table (must be added), 'identity' or 'full'. Returns: void.
-- Tables touched: captured_table; the table's pgfanout triggers.
CREATE OR REPLACE FUNCTION pgfanout.set_old_image(p_table regclass, p_image text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_table IS NULL OR p_image IS NULL OR p_image NOT IN ('identity', 'full') THEN
        RAISE EXCEPTION 'pgfanout.set_old_image: table % and old image % are not allowed; expected an added table and ''identity'' or ''full''',
            coalesce(p_table::text, 'NULL'), quote_nullable(p_image)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p_table AND t.tgname = 'pgfanout_capture') THEN
        RAISE EXCEPTION 'pgfanout.set_old_image: table % is not added', p_table
            USING ERRCODE = 'undefined_object';
    END IF;
    UPDATE pgfanout.captured_table SET old_image = p_image WHERE reloid = p_table;
    PERFORM pgfanout.refresh_table(p_table);
END
$$;

-- pgfanout.refresh_identities(): after a schema change, refreshes every captured table whose
-- row identity (kind or columns) is no longer what its triggers were installed for, and
-- forgets captured_table rows of dropped tables. Internal: schema_change.
-- Parameters: none. Returns: the tables refreshed.
-- Tables touched: captured_table; triggers as refresh_table.
CREATE OR REPLACE FUNCTION pgfanout.refresh_identities() RETURNS SETOF regclass
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    DELETE FROM pgfanout.captured_table ct WHERE NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = ct.reloid);
    FOR t IN
        SELECT ct.reloid::regclass AS rel, ct.identity_kind, ct.identity_columns, i.identity_kind AS now_kind, i.identity_columns AS now_columns
          FROM pgfanout.captured_table ct
         CROSS JOIN LATERAL pgfanout.identity_of(ct.reloid::regclass) AS i
         WHERE EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = ct.reloid AND tg.tgname = 'pgfanout_capture')
         ORDER BY ct.reloid
    LOOP
        IF t.now_kind IS DISTINCT FROM t.identity_kind OR t.now_columns IS DISTINCT FROM t.identity_columns THEN
            PERFORM pgfanout.refresh_table(t.rel);
            RETURN NEXT t.rel;
        END IF;
    END LOOP;
END
$$;

-- pgfanout.schema_change(sql, search_path, schema, table, created, log): logs one schema
-- change event (when p_log), adds the tables in p_created that lie in an auto-add schema,
-- refreshes changed identities, and gives partitions created or attached since the TRUNCATE
-- trigger of their captured table (refresh_partition_truncates). Internal: replicate_ddl and the
-- DDL event triggers.
-- A statement replicas would refuse (transaction or session control, COPY, DO; see
-- pgfanout.transaction_control) is refused here.
-- Parameters: the statement text; the search path it ran under; the schema and table it is
--   about ('' when not known); oids of the tables it created; whether to log it.
-- Returns: void. Tables touched: event_log_0/1/2 (insert), capture_hint (read),
--   captured_table and triggers (as add_table, refresh_identities).
DO $install$
DECLARE
    h text := (SELECT n.nspname FROM pg_catalog.pg_extension x
               JOIN pg_catalog.pg_namespace n ON n.oid = x.extnamespace
               WHERE x.extname = 'hstore');
BEGIN
    EXECUTE format($sql$
        CREATE OR REPLACE FUNCTION pgfanout.schema_change(p_sql text, p_search_path text, p_schema text, p_table text,
                                                          p_created oid[], p_log boolean)
        RETURNS void
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
        AS $body$
        DECLARE
            log_nr text := current_setting('pgfanout.log_table', true);
            hint   bigint;
            img    %1$I.hstore;
            t      regclass;
            tc     text;
        BEGIN
            IF p_sql IS NULL OR btrim(p_sql) = '' OR p_search_path IS NULL OR p_schema IS NULL OR p_table IS NULL OR p_log IS NULL THEN
                RAISE EXCEPTION 'pgfanout.schema_change: statement %%, search path %%, schema %%, table %% are not allowed; expected a statement and text values (no NULL)',
                    quote_nullable(left(p_sql, 200)), quote_nullable(p_search_path), quote_nullable(p_schema), quote_nullable(p_table)
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF p_log THEN
                tc := pgfanout.transaction_control(p_sql);
                IF tc IS NOT NULL THEN
                    RAISE EXCEPTION 'pgfanout: a schema change for the replicas must not hold transaction or session control, COPY or DO (replicas refuse them), and this one holds %%: %%',
                        tc, left(p_sql, 200)
                        USING ERRCODE = 'invalid_transaction_termination',
                              HINT = 'Replicas run a schema change inside the transaction that applies its batch. Send the schema change as its own query, without BEGIN/COMMIT, SET or DO around it (a transaction opened by the client is fine), or run it through pgfanout.replicate_ddl(...).';
                END IF;
                IF pgfanout.capture_mode() = 'wal' THEN
                    PERFORM pgfanout.wal_schema_message(p_sql, p_search_path, p_schema, p_table);
                    log_nr := 'wal';
                ELSIF log_nr IS NULL OR log_nr NOT IN ('0', '1', '2') THEN
                    hint := pg_sequence_last_value('pgfanout.capture_hint'::regclass);
                    IF hint >= 3 THEN
                        PERFORM pg_notify('pgfanout', '');
                    END IF;
                    log_nr := (coalesce(hint, 0) %% 3)::text;
                    PERFORM set_config('pgfanout.log_table', log_nr, true);
                END IF;
                img := %1$I.hstore(ARRAY['sql', 'search_path'], ARRAY[p_sql, p_search_path]);
                IF log_nr = 'wal' THEN
                    NULL; -- sent as a logical message above
                ELSIF log_nr = '0' THEN
                    INSERT INTO pgfanout.event_log_0 (ev_op, ev_schema, ev_table, ev_new) VALUES ('SCHEMA', p_schema, p_table, img);
                ELSIF log_nr = '1' THEN
                    INSERT INTO pgfanout.event_log_1 (ev_op, ev_schema, ev_table, ev_new) VALUES ('SCHEMA', p_schema, p_table, img);
                ELSE
                    INSERT INTO pgfanout.event_log_2 (ev_op, ev_schema, ev_table, ev_new) VALUES ('SCHEMA', p_schema, p_table, img);
                END IF;
            END IF;
            FOR t IN
                SELECT c.oid::regclass
                  FROM pg_class c
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                  JOIN pgfanout.auto_add_schema a ON a.schema_name = n.nspname
                 WHERE c.oid = ANY (coalesce(p_created, '{}'))
                   AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relpersistence <> 't'
                   AND NOT EXISTS (SELECT 1 FROM pg_trigger tg WHERE tg.tgrelid = c.oid AND tg.tgname = 'pgfanout_capture')
                 ORDER BY c.oid
            LOOP
                PERFORM pgfanout.add_table(t);
            END LOOP;
            PERFORM pgfanout.refresh_identities();
            PERFORM pgfanout.refresh_partition_truncates();
        END
        $body$
    $sql$, h);
END
$install$;

-- pgfanout.replicate_ddl(text): runs a statement (usually DDL) on this database and logs it
-- in the same transaction, so every replica runs it at the same place among the changes: a
-- replica never sees a row with a column before the ALTER TABLE that added it. If the
-- statement fails, nothing is logged (the error rolls the transaction back).
-- SECURITY INVOKER: the statement runs with the caller's own rights (a definer function would
-- let anyone who may call it run DDL as pgfanout's owner), and without a search_path clause,
-- so its names resolve as the caller's would; the search path is logged with it and set on
-- the replicas. Logging goes through the definer function schema_change, so the caller
-- needs EXECUTE on both, which pgfanout's owner grants; whoever has it may make every
-- replica run a statement as its applier role.
-- Data changes the statement makes itself (an UPDATE backfilling a new column) are not
-- captured row by row: replicas replay them by running the statement.
-- Parameters: the statement text (several statements separated by ';' run as one).
-- Returns: void. Tables touched: as schema_change.
CREATE OR REPLACE FUNCTION pgfanout.replicate_ddl(p_sql text) RETURNS void
LANGUAGE plpgsql SECURITY INVOKER
AS $$
DECLARE
    path    pg_catalog.text;
    before  pg_catalog.oid[];
    created pg_catalog.oid[];
    origin  pg_catalog.text := pg_catalog.current_setting('pgfanout.origin', true);
    wal     pg_catalog.bool;
BEGIN
    IF p_sql IS NULL OR pg_catalog.btrim(p_sql) OPERATOR(pg_catalog.=) '' THEN
        RAISE EXCEPTION 'pgfanout.replicate_ddl: the statement is %; expected the text of a statement to run', pg_catalog.quote_nullable(p_sql)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    path := (SELECT coalesce(pg_catalog.string_agg(pg_catalog.quote_ident(s), ', ' ORDER BY o), '')
               FROM pg_catalog.unnest(pg_catalog.current_schemas(false)) WITH ORDINALITY AS x(s, o));
    before := ARRAY(SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog."char"[]));
    -- The statement's own data changes are replayed by the statement: keep capture quiet.
    PERFORM pg_catalog.set_config('pgfanout.origin', 'replicate_ddl', true);
    -- WAL mode (its publication exists; pg_publication is readable by every role): mark the
    -- statement's own data changes for the publisher to leave out.
    wal := EXISTS (SELECT 1 FROM pg_catalog.pg_publication p WHERE p.pubname OPERATOR(pg_catalog.=) 'pgfanout');
    IF wal THEN
        PERFORM pgfanout.wal_quiet(true);
    END IF;
    EXECUTE p_sql;
    IF wal THEN
        PERFORM pgfanout.wal_quiet(false);
    END IF;
    PERFORM pg_catalog.set_config('pgfanout.origin', coalesce(origin, ''), true);
    created := ARRAY(SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}'::pg_catalog."char"[])
                     EXCEPT SELECT pg_catalog.unnest(before));
    PERFORM pgfanout.schema_change(p_sql, path, '', '', created, true);
END
$$;

-- pgfanout.auto_add_schema(name, boolean): whether tables that replicate_ddl (or captured
-- DDL) creates in the schema are added to capture at once. Idempotent.
-- Parameters: the schema (must exist); true to add it (the default), false to remove it.
-- Returns: void. Tables touched: auto_add_schema.
CREATE OR REPLACE FUNCTION pgfanout.auto_add_schema(p_schema name, p_enabled boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_schema IS NULL OR p_enabled IS NULL THEN
        RAISE EXCEPTION 'pgfanout.auto_add_schema: schema % and flag % are not allowed; expected a schema name and true or false',
            quote_nullable(p_schema), coalesce(p_enabled::text, 'NULL')
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_schema = 'pgfanout' THEN
        RAISE EXCEPTION 'pgfanout.auto_add_schema: schema pgfanout holds pgfanout''s own tables; they are not captured'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_enabled AND NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = p_schema) THEN
        RAISE EXCEPTION 'pgfanout.auto_add_schema: schema % does not exist', quote_ident(p_schema)
            USING ERRCODE = 'invalid_schema_name';
    END IF;
    IF p_enabled THEN
        INSERT INTO pgfanout.auto_add_schema (schema_name) VALUES (p_schema) ON CONFLICT (schema_name) DO NOTHING;
    ELSE
        DELETE FROM pgfanout.auto_add_schema WHERE schema_name = p_schema;
    END IF;
END
$$;

-- Roles whose schema changes DDL capture logs for the replicas, besides pgfanout's owner
-- (see pgfanout.ddl_capture_allowed). Empty at install.
CREATE TABLE IF NOT EXISTS pgfanout.ddl_capture_role (
    role_name name        PRIMARY KEY,
    added_at  timestamptz NOT NULL DEFAULT now()
);

-- pgfanout.ddl_capture_role(name, boolean): allows a role's schema changes to be captured by
-- the DDL event triggers and run on every replica (true, the default), or stops allowing it
-- (false). Whoever is allowed can make every replica run any statement as its applier role,
-- so allow only the roles that run migrations. Idempotent.
-- Parameters: the role (must exist to be allowed); true or false. Returns: void.
-- Tables touched: ddl_capture_role.
CREATE OR REPLACE FUNCTION pgfanout.ddl_capture_role(p_role name, p_allowed boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_role IS NULL OR p_allowed IS NULL THEN
        RAISE EXCEPTION 'pgfanout.ddl_capture_role: role % and flag % are not allowed; expected a role name and true or false',
            quote_nullable(p_role), coalesce(p_allowed::text, 'NULL')
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_allowed AND NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_role) THEN
        RAISE EXCEPTION 'pgfanout.ddl_capture_role: role % does not exist', quote_ident(p_role)
            USING ERRCODE = 'undefined_object';
    END IF;
    IF p_allowed THEN
        INSERT INTO pgfanout.ddl_capture_role (role_name) VALUES (p_role) ON CONFLICT (role_name) DO NOTHING;
    ELSE
        DELETE FROM pgfanout.ddl_capture_role WHERE role_name = p_role;
    END IF;
END
$$;

-- pgfanout.ddl_capture_allowed(): whether DDL capture may log this session's schema changes:
-- its login role (session_user) is a member of pgfanout's owner (the role that installed it;
-- superusers are members of every role) or of a role allowed with ddl_capture_role.
-- Parameters: none. Returns: boolean. Tables touched: reads ddl_capture_role.
CREATE OR REPLACE FUNCTION pgfanout.ddl_capture_allowed() RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_has_role(session_user, (SELECT n.nspowner FROM pg_namespace n WHERE n.nspname = 'pgfanout'), 'MEMBER')
        OR EXISTS (SELECT 1 FROM pgfanout.ddl_capture_role d JOIN pg_roles r ON r.rolname = d.role_name
                    WHERE pg_has_role(session_user, r.oid, 'MEMBER'))
$$;

-- pgfanout.transaction_control(text): the first statement in a string of SQL statements that
-- replicas refuse to run as a schema change, or NULL when there is none; a schema change is
-- logged only without one. Replicas run it inside the transaction that applies its batch,
-- where a COMMIT would end that transaction half way, and refuse (functions/core/replica/
-- schema-change.ts) transaction control (BEGIN, START, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT,
-- RELEASE, PREPARE), session control (SET, RESET, DISCARD, LISTEN, UNLISTEN, LOAD, DEALLOCATE),
-- COPY and DO: the same first words are refused here, at the source, before the statement
-- reaches the stream. Reads the string as PostgreSQL's lexer does, far enough to split it
-- into statements: comments (-- and nested /* */), quoted strings ('', E'' with backslash
-- escapes; standard_conforming_strings on, the default), quoted identifiers, dollar-quoted
-- text, parentheses, and the BEGIN ATOMIC ... END body of CREATE FUNCTION or PROCEDURE.
-- Parameters: the statements. Returns: the first word of the refused statement (upper
-- case), or NULL.
-- Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.transaction_control(p_sql text) RETURNS text
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       text[] := regexp_split_to_array(coalesce(p_sql, ''), '');
    n       integer := coalesce(array_length(s, 1), 0);
    i       integer := 1;
    j       integer;
    k       integer;
    c       text;
    word    text;
    tag     text;
    nwords  integer := 0;     -- words read of the current statement
    first   text;             -- its first two words, lower case ('' for a quoted identifier)
    second  text;
    routine boolean := false; -- it is CREATE [OR REPLACE] FUNCTION | PROCEDURE
    parens  integer := 0;
    blocks  integer := 0;     -- BEGIN (ATOMIC) / CASE ... END nesting inside a routine's body
    depth   integer;
BEGIN
    WHILE i <= n LOOP
        c := s[i];
        IF c = '-' AND i < n AND s[i + 1] = '-' THEN
            WHILE i <= n AND s[i] <> E'\n' LOOP
                i := i + 1;
            END LOOP;
        ELSIF c = '/' AND i < n AND s[i + 1] = '*' THEN
            depth := 1;
            i := i + 2;
            WHILE i <= n AND depth > 0 LOOP
                IF s[i] = '/' AND i < n AND s[i + 1] = '*' THEN
                    depth := depth + 1;
                    i := i + 2;
                ELSIF s[i] = '*' AND i < n AND s[i + 1] = '/' THEN
                    depth := depth - 1;
                    i := i + 2;
                ELSE
                    i := i + 1;
                END IF;
            END LOOP;
        ELSIF c = '''' OR c = '"' THEN
            -- a string or quoted identifier; a doubled quote stands for itself
            i := i + 1;
            LOOP
                EXIT WHEN i > n;
                IF s[i] = c THEN
                    IF i < n AND s[i + 1] = c THEN
                        i := i + 2;
                    ELSE
                        i := i + 1;
                        EXIT;
                    END IF;
                ELSE
                    i := i + 1;
                END IF;
            END LOOP;
            IF c = '"' THEN
                nwords := nwords + 1;
                IF nwords = 1 THEN
                    first := '';
                ELSIF nwords = 2 THEN
                    second := '';
                END IF;
            END IF;
        ELSIF c = '$' THEN
            -- $tag$ ... $tag$ (a tag does not start with a digit), else a parameter such as $1
            j := i + 1;
            WHILE j <= n AND (s[j] ~ '^[[:alnum:]_]$' OR ascii(s[j]) > 127) LOOP
                j := j + 1;
            END LOOP;
            IF j <= n AND s[j] = '$' AND (j = i + 1 OR s[i + 1] !~ '^[0-9]$') THEN
                tag := array_to_string(s[i:j], '');
                k := j + 1;
                i := n + 1;
                WHILE k + length(tag) - 1 <= n LOOP
                    IF s[k] = '$' AND array_to_string(s[k:k + length(tag) - 1], '') = tag THEN
                        i := k + length(tag);
                        EXIT;
                    END IF;
                    k := k + 1;
                END LOOP;
            ELSE
                i := j;
            END IF;
        ELSIF c ~ '^[0-9]$' THEN
            WHILE i <= n AND s[i] ~ '^[[:alnum:]_.]$' LOOP
                i := i + 1;
            END LOOP;
        ELSIF c ~ '^[[:alpha:]_]$' OR ascii(c) > 127 THEN
            j := i + 1;
            WHILE j <= n AND (s[j] ~ '^[[:alnum:]_$]$' OR ascii(s[j]) > 127) LOOP
                j := j + 1;
            END LOOP;
            word := lower(array_to_string(s[i:j - 1], ''));
            i := j;
            IF word = 'e' AND i <= n AND s[i] = '''' THEN
                -- an escape string: a backslash takes the next character with it
                i := i + 1;
                LOOP
                    EXIT WHEN i > n;
                    IF s[i] = '\' THEN
                        i := i + 2;
                    ELSIF s[i] = '''' THEN
                        IF i < n AND s[i + 1] = '''' THEN
                            i := i + 2;
                        ELSE
                            i := i + 1;
                            EXIT;
                        END IF;
                    ELSE
                        i := i + 1;
                    END IF;
                END LOOP;
                CONTINUE;
            END IF;
            nwords := nwords + 1;
            IF nwords = 1 THEN
                first := word;
                IF word IN ('begin', 'start', 'commit', 'end', 'rollback', 'abort', 'savepoint', 'release', 'prepare',
                            'set', 'reset', 'discard', 'listen', 'unlisten', 'load', 'deallocate', 'copy', 'do') THEN
                    RETURN upper(word);
                END IF;
            ELSIF nwords = 2 THEN
                second := word;
                routine := first = 'create' AND word IN ('function', 'procedure');
            ELSIF nwords = 4 AND first = 'create' AND second = 'or' AND NOT routine THEN
                routine := word IN ('function', 'procedure');
            ELSIF routine THEN
                IF word = 'begin' OR (word = 'case' AND blocks > 0) THEN
                    blocks := blocks + 1;
                ELSIF word = 'end' AND blocks > 0 THEN
                    blocks := blocks - 1;
                END IF;
            END IF;
        ELSIF c = '(' THEN
            parens := parens + 1;
            i := i + 1;
        ELSIF c = ')' THEN
            parens := greatest(parens - 1, 0);
            i := i + 1;
        ELSIF c = ';' THEN
            IF parens = 0 AND blocks = 0 THEN
                nwords := 0;
                first := NULL;
                second := NULL;
                routine := false;
            END IF;
            i := i + 1;
        ELSE
            i := i + 1;
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

-- pgfanout.captured_ddl(query, search_path, drop): the work of the DDL event triggers. Logs
-- the client's query text once per client message (a string of several statements fires the
-- triggers once per statement) when the command touched a table in a schema with captured
-- tables or in an auto-add schema (never pgfanout's own or temporary ones), then as
-- schema_change. Such a command by a role DDL capture may not log (ddl_capture_allowed) is
-- refused with an error: it would either run its text on every replica or leave the replicas
-- behind the source's schema. Internal: only callable from an event trigger (it reads
-- pg_event_trigger_ddl_commands / pg_event_trigger_dropped_objects, which raise otherwise).
-- Parameters: current_query(); the client's search path; true for sql_drop.
-- Returns: void. Tables touched: as schema_change.
CREATE OR REPLACE FUNCTION pgfanout.captured_ddl(p_query text, p_search_path text, p_drop boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    obj      record;
    sch      text;
    tbl      text;
    created  oid[] := '{}';
    relevant boolean := false;
    seen     text;
BEGIN
    IF p_drop THEN
        FOR obj IN
            SELECT d.objid, d.schema_name, d.object_name
              FROM pg_event_trigger_dropped_objects() d
             WHERE d.object_type = 'table' AND d.original AND NOT d.is_temporary AND d.schema_name <> 'pgfanout'
        LOOP
            IF EXISTS (SELECT 1 FROM pgfanout.captured_table ct WHERE ct.reloid = obj.objid)
               OR EXISTS (SELECT 1 FROM pgfanout.auto_add_schema a WHERE a.schema_name = obj.schema_name)
               OR EXISTS (SELECT 1 FROM pgfanout.captured_table ct JOIN pg_class c ON c.oid = ct.reloid
                           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = obj.schema_name) THEN
                relevant := true;
                sch := coalesce(sch, obj.schema_name);
                tbl := coalesce(tbl, obj.object_name);
            END IF;
        END LOOP;
    ELSE
        FOR obj IN
            SELECT d.objid, d.command_tag, n.nspname, c.relname, c.relpersistence
              FROM pg_event_trigger_ddl_commands() d
              JOIN pg_class c ON c.oid = d.objid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE d.classid = 'pg_class'::regclass AND d.object_type = 'table' AND NOT d.in_extension
               AND n.nspname <> 'pgfanout' AND c.relpersistence <> 't'
        LOOP
            IF obj.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS') THEN
                created := created || obj.objid;
            END IF;
            -- A partition of a captured table is one of its tables wherever its schema is.
            IF EXISTS (SELECT 1 FROM pgfanout.auto_add_schema a WHERE a.schema_name = obj.nspname)
               OR EXISTS (SELECT 1 FROM pgfanout.captured_table ct JOIN pg_class c ON c.oid = ct.reloid
                           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = obj.nspname)
               OR EXISTS (SELECT 1 FROM pgfanout.captured_table ct WHERE ct.reloid = pg_partition_root(obj.objid)) THEN
                relevant := true;
                sch := coalesce(sch, obj.nspname::text);
                tbl := coalesce(tbl, obj.relname::text);
            END IF;
        END LOOP;
    END IF;
    IF NOT relevant THEN
        RETURN;
    END IF;
    IF NOT pgfanout.ddl_capture_allowed() THEN
        RAISE EXCEPTION 'pgfanout: role % may not change table %.% while DDL capture is on: captured statements run on every replica, and the role is not allowed to make them', session_user, quote_ident(sch), quote_ident(tbl)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Run schema changes as an allowed role, preferably through pgfanout.replicate_ddl(...); pgfanout''s owner allows a role with SELECT pgfanout.ddl_capture_role(''<role>'').';
    END IF;
    IF p_query IS NULL OR btrim(p_query) = '' THEN
        RAISE EXCEPTION 'pgfanout: DDL capture cannot log a change of table %.%: the session''s query text is not available', quote_ident(sch), quote_ident(tbl)
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Run the statement through pgfanout.replicate_ddl(...) instead.';
    END IF;
    -- One client message, one event: statement_timestamp() is the time the message arrived.
    seen := statement_timestamp()::text || ' ' || md5(p_query);
    PERFORM pgfanout.schema_change(p_query, p_search_path, sch, tbl, created,
                                   seen IS DISTINCT FROM current_setting('pgfanout.ddl_logged', true));
    PERFORM set_config('pgfanout.ddl_logged', seen, true);
END
$$;

-- pgfanout.capture_ddl(): the event trigger function enable_ddl_capture installs on
-- ddl_command_end (CREATE TABLE, CREATE TABLE AS, ALTER TABLE) and sql_drop (DROP TABLE).
-- Does nothing for the applier (pgfanout.origin set by a session that may use it, see
-- origin_trusted, or session_replication_role = replica, under which event triggers do not
-- fire) and inside replicate_ddl, which logs itself.
-- SECURITY DEFINER without SET search_path, so current_schemas() shows the client's search
-- path; every name in the body is schema-qualified.
-- Returns: event_trigger. Tables touched: as captured_ddl.
CREATE OR REPLACE FUNCTION pgfanout.capture_ddl() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER
AS $$
BEGIN
    IF pg_catalog.current_setting('pgfanout.origin', true) OPERATOR(pg_catalog.<>) '' AND pgfanout.origin_trusted() THEN
        RETURN;
    END IF;
    PERFORM pgfanout.captured_ddl(
        pg_catalog.current_query(),
        (SELECT coalesce(pg_catalog.string_agg(pg_catalog.quote_ident(s), ', ' ORDER BY o), '')
           FROM pg_catalog.unnest(pg_catalog.current_schemas(false)) WITH ORDINALITY AS x(s, o)),
        TG_EVENT OPERATOR(pg_catalog.=) 'sql_drop');
END
$$;

-- pgfanout.enable_ddl_capture(): installs the event triggers pgfanout_ddl_command_end and
-- pgfanout_ddl_drop, so CREATE/ALTER/DROP TABLE in a schema with captured tables is logged
-- for the replicas like replicate_ddl, without calling it, when pgfanout's owner or a role
-- allowed with ddl_capture_role runs it; anyone else's such statement fails. A string holding
-- transaction or session control (BEGIN; ...; COMMIT;, SET ...), COPY or DO is refused. Creating event
-- triggers needs a superuser (on Amazon RDS / Aurora: a member of rds_superuser).
-- Limits: the logged text is current_query(), the whole string the client sent: a string
-- of several statements is replayed whole (including any data changes in it, which are
-- also captured row by row: keep DDL and DML in separate strings); DDL run inside a function
-- logs the call of that function; statements that refer to temporary objects or to
-- objects only this database has cannot be replayed. replicate_ddl has none of these limits.
-- Parameters: none. Returns: void. Idempotent.
CREATE OR REPLACE FUNCTION pgfanout.enable_ddl_capture() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgfanout_ddl_command_end') THEN
        CREATE EVENT TRIGGER pgfanout_ddl_command_end ON ddl_command_end
            WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'ALTER TABLE')
            EXECUTE FUNCTION pgfanout.capture_ddl();
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = 'pgfanout_ddl_drop') THEN
        CREATE EVENT TRIGGER pgfanout_ddl_drop ON sql_drop
            WHEN TAG IN ('DROP TABLE')
            EXECUTE FUNCTION pgfanout.capture_ddl();
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'pgfanout.enable_ddl_capture: role % may not create event triggers', current_user
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Event triggers need a superuser (on Amazon RDS and Aurora, a member of rds_superuser). Without one, run schema changes through pgfanout.replicate_ddl(...).';
END
$$;

-- pgfanout.disable_ddl_capture(): drops the event triggers enable_ddl_capture installed.
-- Parameters: none. Returns: void. Idempotent.
CREATE OR REPLACE FUNCTION pgfanout.disable_ddl_capture() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DROP EVENT TRIGGER IF EXISTS pgfanout_ddl_command_end;
    DROP EVENT TRIGGER IF EXISTS pgfanout_ddl_drop;
END
$$;

-- The message size the batch is published with, recorded by batch_encoding the first time
-- it is served to a publisher: every later publish of the batch uses it, so a publisher
-- restarted with another size re-publishes the same messages, byte for byte.
ALTER TABLE pgfanout.batch ADD COLUMN IF NOT EXISTS max_message_bytes integer CHECK (max_message_bytes > 0);
-- Where on the source the batch was made, recorded with max_message_bytes and published in
-- every message of the batch (the envelope's `origin`): the cluster's system identifier, its
-- timeline and the WAL insert position, in the transaction of the next_batch that served the
-- batch first. A source that went back in time (a crash that lost commits, a failover to a
-- standby that lacked them, a restored backup) makes batches again with ids already used and
-- another origin (another LSN, timeline or system), which a replica recognises.
ALTER TABLE pgfanout.batch ADD COLUMN IF NOT EXISTS origin_system numeric(20, 0),
    ADD COLUMN IF NOT EXISTS origin_timeline bigint,
    ADD COLUMN IF NOT EXISTS origin_lsn pg_lsn;

-- pgfanout.batch_encoding(bigint, integer): what every message of the open batch carries
-- besides its changes, the same every time the batch is published.
-- The first call for a batch records the caller's message size and the batch's origin; every
-- later call (a publisher that restarted, perhaps with other settings, and is served the same
-- batch again) returns what was recorded, so the batch is always published as the same
-- messages. Call it in the transaction of next_batch:
--   SELECT ... FROM pgfanout.next_batch() b CROSS JOIN LATERAL pgfanout.batch_encoding(b.batch_id, $1)
-- Parameters: the open batch's id; the caller's message size in bytes (positive).
-- Returns: max_message_bytes (the size to encode the batch with); origin_system (the source
--   cluster's system identifier, unsigned decimal text), origin_timeline, origin_lsn (pg_lsn
--   text): where the batch was made.
-- Errors: NULL or non-positive arguments, or a batch that is not the open one (22023).
-- Tables touched: batch (update), reads batch_cursor.
CREATE OR REPLACE FUNCTION pgfanout.batch_encoding(p_batch_id bigint, p_max_message_bytes integer,
    OUT max_message_bytes integer, OUT origin_system text, OUT origin_timeline bigint, OUT origin_lsn text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur record;
    lsn pg_lsn := pg_current_wal_insert_lsn();
BEGIN
    IF p_batch_id IS NULL OR p_max_message_bytes IS NULL OR p_max_message_bytes <= 0 THEN
        RAISE EXCEPTION 'pgfanout.batch_encoding: batch id % and message size % are not allowed; expected a batch id and a positive size in bytes',
            coalesce(p_batch_id::text, 'NULL'), coalesce(p_max_message_bytes::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO cur FROM pgfanout.batch_cursor;
    IF p_batch_id <> cur.finished_batch_id + 1 OR cur.last_batch_id = cur.finished_batch_id THEN
        RAISE EXCEPTION 'pgfanout.batch_encoding: batch % is not the open batch (%)', p_batch_id,
            CASE WHEN cur.last_batch_id > cur.finished_batch_id
                 THEN format('the open batch is %s', cur.finished_batch_id + 1)
                 ELSE format('no batch is open; the last finished batch is %s', cur.finished_batch_id) END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The timeline WAL is written on now is the first 8 hex digits of its segment's file name.
    UPDATE pgfanout.batch b
       SET max_message_bytes = p_max_message_bytes,
           origin_system = (SELECT CASE WHEN c.system_identifier < 0 THEN c.system_identifier::numeric + 18446744073709551616
                                        ELSE c.system_identifier::numeric END FROM pg_control_system() c),
           origin_timeline = ('x' || lpad(substr(pg_walfile_name(lsn), 1, 8), 16, '0'))::bit(64)::bigint,
           origin_lsn = lsn
     WHERE b.batch_id = p_batch_id AND b.max_message_bytes IS NULL;
    SELECT b.max_message_bytes, b.origin_system::text, b.origin_timeline, b.origin_lsn::text
      INTO max_message_bytes, origin_system, origin_timeline, origin_lsn
      FROM pgfanout.batch b WHERE b.batch_id = p_batch_id;
END
$$;

-- WAL capture mode
--
-- A source captures in one of two modes, chosen at install (pgfanout install --capture) and
-- recorded in source_info.capture_mode:
--   trigger  (the default) the capture triggers and the event log above; any PostgreSQL 13+.
--   wal      no trigger: the tables are members of the publication "pgfanout", and the
--            publisher reads a logical replication slot (plugin pgoutput) through the SQL
--            interface, publishing each transaction in commit order as the same envelopes.
--            Needs wal_level = logical (on Amazon RDS / Aurora: rds.logical_replication = 1,
--            https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/PostgreSQL.Concepts.General.FeatureSupport.LogicalReplication.html)
--            and a role with REPLICATION (rds_replication) as pgfanout's owner.
--
--   pgfanout.capture_mode()              'trigger' or 'wal'
--   pgfanout.set_capture_mode(text)      chooses the mode while nothing is captured yet
--   pgfanout.wal_slot_name()             the slot of this source: pgfanout_<source id hex>
--   pgfanout.wal_create_slot()           creates the slot when missing (run outside any
--                                        transaction that wrote: PostgreSQL requires it)
--   pgfanout.wal_drop()                  drops the slot and the publication (before uninstalling)
--   add_table / remove_table / add_all_tables / show_tables manage the publication in WAL mode;
--   add_table gives a table without a primary key a replica identity (USING INDEX the unique
--   index row identity would use, else FULL) and says so with a NOTICE.
--
-- Publisher protocol in WAL mode (role pgfanout_publisher). Batches are numbered densely like
-- trigger batches (batch_cursor holds the last and finished ids). A batch is one or more whole
-- transactions of the slot's stream, recorded (wal_batch) before any of its messages is
-- published, so a publisher that restarts serves the same transactions under the same id:
--   pgfanout.wal_state()                 the slot's position, the last finished batch and the
--                                        open one (recorded, not finished), if any
--   pgfanout.wal_changes()               the slot's pending changes (peek: the slot does not
--                                        move), pgoutput binary messages; read it through a
--                                        cursor. Rows up to the setting pgfanout.wal_read_rows
--                                        (PostgreSQL stops at the first commit past it).
--   pgfanout.wal_record_batch(...)       records the next batch's transactions
--   pgfanout.wal_finish_batch(id, lsn)   the batch is published: finishes it and moves the
--                                        slot past its last commit
--   pgfanout.wal_skip(lsn)               moves the slot over transactions with no published
--                                        change while no batch is open
-- Schema changes (schema_change, from replicate_ddl or DDL capture) travel as transactional
-- logical messages (pg_logical_emit_message, prefix 'pgfanout'), so they sit among the changes
-- of their transaction at the place they were made; pgoutput forwards messages from
-- PostgreSQL 14. replicate_ddl marks the statement's own data changes with messages
-- {"quiet":true} ... {"quiet":false}: replicas replay them by running the statement.

-- pgfanout.set_capture_mode(text): chooses how this source captures, while nothing is captured
-- yet (no table added, no batch made); choosing the current mode does nothing. 'wal' checks
-- wal_level and creates the publication "pgfanout" (tables are added to it by add_table);
-- the slot is created by wal_create_slot, which cannot run in a transaction that wrote.
-- 'trigger' drops the publication (and the slot when it can).
-- Parameters: 'trigger' or 'wal'. Returns: void. Tables touched: source_info.
CREATE OR REPLACE FUNCTION pgfanout.set_capture_mode(p_mode text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_mode text := pgfanout.capture_mode();
BEGIN
    IF p_mode IS NULL OR p_mode NOT IN ('trigger', 'wal') THEN
        RAISE EXCEPTION 'pgfanout.set_capture_mode: capture mode % is not allowed; expected ''trigger'' or ''wal''', quote_nullable(p_mode)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_mode = current_mode THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM pgfanout.captured_table) OR (SELECT last_batch_id FROM pgfanout.batch_cursor) > 0 THEN
        RAISE EXCEPTION 'pgfanout.set_capture_mode: this source captures in % mode and has added tables or published batches; the mode is chosen at install, before anything is captured', current_mode
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Remove the tables (pgfanout.remove_table) of a source that never published, or install pgfanout on a new source database.';
    END IF;
    IF p_mode = 'wal' THEN
        IF current_setting('wal_level') <> 'logical' THEN
            RAISE EXCEPTION 'pgfanout.set_capture_mode: WAL capture needs wal_level = logical; this server has wal_level = %', current_setting('wal_level')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Set wal_level = logical and restart the server (on Amazon RDS and Aurora: rds.logical_replication = 1 in the parameter group, then reboot), or use the trigger mode.';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'pgfanout') THEN
            CREATE PUBLICATION pgfanout WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true);
        END IF;
    ELSE
        DROP PUBLICATION IF EXISTS pgfanout;
        PERFORM pg_drop_replication_slot(s.slot_name) FROM pg_replication_slots s
          WHERE s.slot_name = pgfanout.wal_slot_name() AND NOT s.active;
    END IF;
    UPDATE pgfanout.source_info SET capture_mode = p_mode;
END
$$;

-- pgfanout.wal_create_slot(): creates this source's logical replication slot (plugin pgoutput)
-- when it is missing; changes committed after it are published. Run it in a transaction that
-- has not written (the installer runs it on its own after the install). Creating a slot waits
-- for the transactions running at that moment to end.
-- Parameters: none. Returns: the slot name. Errors when not in WAL mode.
-- Tables touched: none (creates the slot).
CREATE OR REPLACE FUNCTION pgfanout.wal_create_slot() RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    slot text := pgfanout.wal_slot_name();
BEGIN
    IF pgfanout.capture_mode() <> 'wal' THEN
        RAISE EXCEPTION 'pgfanout.wal_create_slot: this source captures in % mode, not wal', pgfanout.capture_mode()
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = slot) THEN
        PERFORM pg_create_logical_replication_slot(slot, 'pgoutput');
    END IF;
    RETURN slot;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'pgfanout.wal_create_slot: role % may not create replication slots', current_user
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'pgfanout''s owner needs the REPLICATION attribute (on Amazon RDS and Aurora: GRANT rds_replication TO <owner>).';
END
$$;

-- pgfanout.wal_drop(): drops this source's slot and publication, so no WAL is kept for a
-- source that is going away. Run it before DROP SCHEMA pgfanout CASCADE, with the publisher
-- stopped (an active slot cannot be dropped).
-- Parameters: none. Returns: void. Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.wal_drop() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_drop_replication_slot(s.slot_name) FROM pg_replication_slots s WHERE s.slot_name = pgfanout.wal_slot_name();
    DROP PUBLICATION IF EXISTS pgfanout;
END
$$;

-- pgfanout.wal_add_table(regclass): add_table in WAL mode. Checks the table as add_table
-- does, gives it a replica identity when it has no primary key (USING INDEX the unique index
-- over NOT NULL columns that identity_of picks, else FULL; a NOTICE says which), and adds it
-- to the publication. A replica identity set by hand (USING INDEX or FULL) is kept.
-- Parameters: the table. Returns: void. Tables touched: captured_table (insert); the table's
--   replica identity; publication pgfanout.
CREATE OR REPLACE FUNCTION pgfanout.wal_add_table(p_table regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel       record;
    ident     record;
    qualified text;
    kind      text;
    cols      text[];
    idx       oid;
BEGIN
    IF p_table IS NULL THEN
        RAISE EXCEPTION 'pgfanout.add_table: the table must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT c.relname, n.nspname, c.relkind, c.relpersistence, c.relispartition, c.relreplident
      INTO rel
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = p_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgfanout.add_table: no relation has oid %', p_table::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    qualified := format('%I.%I', rel.nspname, rel.relname);
    IF rel.nspname = 'pgfanout' THEN
        RAISE EXCEPTION 'pgfanout.add_table: % is one of pgfanout''s own tables; they are not captured', qualified
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'pgfanout.add_table: % is not a table (relation kind %); only plain and partitioned tables can be added', qualified, rel.relkind
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF rel.relpersistence <> 'p' THEN
        RAISE EXCEPTION 'pgfanout.add_table: % is a % table; in WAL capture mode only permanent tables can be added (their changes are not in the WAL)', qualified,
            CASE rel.relpersistence WHEN 't' THEN 'temporary' ELSE 'unlogged' END
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF rel.relispartition THEN
        RAISE EXCEPTION 'pgfanout.add_table: % is a partition; add the partitioned table instead', qualified
            USING ERRCODE = 'wrong_object_type';
    END IF;
    IF pgfanout.is_added(p_table) THEN
        RAISE EXCEPTION 'pgfanout.add_table: table % is already added', qualified
            USING ERRCODE = 'duplicate_object',
                  HINT = 'pgfanout.show_tables() lists the added tables; pgfanout.remove_table() removes one.';
    END IF;
    DELETE FROM pgfanout.captured_table WHERE reloid = p_table;
    SELECT * INTO ident FROM pgfanout.identity_of(p_table);
    BEGIN
        IF rel.relreplident = 'f' THEN
            kind := 'none';
        ELSIF rel.relreplident = 'i' THEN
            SELECT i.indexrelid INTO idx FROM pg_index i WHERE i.indrelid = p_table AND i.indisreplident;
            kind := 'unique index';
        ELSIF rel.relreplident = 'd' AND ident.identity_kind = 'primary key' THEN
            kind := 'primary key';
            idx := ident.identity_index;
        ELSIF ident.identity_kind = 'unique index' THEN
            EXECUTE format('ALTER TABLE %s REPLICA IDENTITY USING INDEX %I', qualified,
                           (SELECT relname FROM pg_class WHERE oid = ident.identity_index));
            RAISE NOTICE 'pgfanout.add_table: % has no primary key: its replica identity is now the unique index %', qualified,
                (SELECT relname FROM pg_class WHERE oid = ident.identity_index);
            kind := 'unique index';
            idx := ident.identity_index;
        ELSE
            EXECUTE format('ALTER TABLE %s REPLICA IDENTITY FULL', qualified);
            RAISE NOTICE 'pgfanout.add_table: % has no primary key and no unique index over NOT NULL columns: its replica identity is now FULL (updates and deletes carry the whole old row)', qualified;
            kind := 'none';
        END IF;
        EXECUTE format('ALTER PUBLICATION pgfanout ADD TABLE %s', qualified);
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE EXCEPTION 'pgfanout.add_table: role % may not change table % (replica identity, publication membership): %', current_user, qualified, SQLERRM
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'In WAL capture mode pgfanout''s owner must own the table (or be a member of its owner).';
    END;
    cols := CASE WHEN kind = 'none' THEN '{}'::text[] ELSE
        ARRAY(SELECT a.attname::text FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
               WHERE i.indexrelid = idx AND k.ord <= i.indnkeyatts ORDER BY k.ord) END;
    INSERT INTO pgfanout.captured_table (reloid, identity_kind, identity_index, identity_columns, old_image)
    VALUES (p_table, kind, CASE WHEN kind = 'none' THEN NULL ELSE idx END, cols, CASE WHEN kind = 'none' THEN 'full' ELSE 'identity' END);
END
$$;

-- pgfanout.wal_remove_table(regclass): remove_table in WAL mode: drops the table from the
-- publication (its replica identity stays as it is).
-- Parameters: the table. Returns: void. Tables touched: captured_table (delete); publication.
CREATE OR REPLACE FUNCTION pgfanout.wal_remove_table(p_table regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    qualified text;
BEGIN
    IF p_table IS NULL THEN
        RAISE EXCEPTION 'pgfanout.remove_table: the table must not be NULL'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT format('%I.%I', n.nspname, c.relname) INTO qualified
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = p_table;
    IF NOT pgfanout.is_added(p_table) THEN
        RAISE EXCEPTION 'pgfanout.remove_table: table % is not added', coalesce(qualified, p_table::oid::text)
            USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('ALTER PUBLICATION pgfanout DROP TABLE %s', qualified);
    DELETE FROM pgfanout.captured_table WHERE reloid = p_table;
END
$$;

-- The key pgfanout's logical messages are signed with. pg_logical_emit_message may be run by
-- every role, so a message with prefix 'pgfanout' proves nothing by itself; the publisher
-- publishes only messages whose signature it can check: the hex SHA-256 of key || the
-- transaction's 32-bit xid (decimal) || SHA-256 of the JSON body, as "<signature> <body>".
-- Only pgfanout's owner and the publisher (through wal_state) read the key.
CREATE TABLE IF NOT EXISTS pgfanout.wal_key (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    key       bytea   NOT NULL DEFAULT decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex')
);
INSERT INTO pgfanout.wal_key (singleton) VALUES (true) ON CONFLICT (singleton) DO NOTHING;

-- pgfanout.wal_message(json): emits a signed transactional logical message with prefix
-- 'pgfanout' (see wal_key). Internal: wal_schema_message, wal_quiet.
-- Returns: void. Tables touched: reads wal_key (assigns the transaction an xid).
CREATE OR REPLACE FUNCTION pgfanout.wal_message(p_body text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    xid text := (pg_current_xact_id()::text::numeric % 4294967296)::text;
BEGIN
    PERFORM pg_logical_emit_message(true, 'pgfanout',
        encode(sha256((SELECT k.key FROM pgfanout.wal_key k) || convert_to(xid, 'UTF8') || sha256(convert_to(p_body, 'UTF8'))), 'hex') || ' ' || p_body);
END
$$;

-- pgfanout.wal_schema_message(sql, search_path, schema, table): a schema change in WAL mode:
-- a transactional logical message with prefix 'pgfanout' holding the JSON object
-- {"sql", "search_path", "schema", "table"}, decoded at its place in the transaction.
-- Internal: schema_change. Errors on PostgreSQL 13, whose pgoutput does not forward messages.
-- Returns: void. Tables touched: none (writes WAL).
CREATE OR REPLACE FUNCTION pgfanout.wal_schema_message(p_sql text, p_search_path text, p_schema text, p_table text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF current_setting('server_version_num')::int < 140000 THEN
        RAISE EXCEPTION 'pgfanout: schema changes cannot be replicated in WAL capture mode on PostgreSQL %: pgoutput forwards logical messages from PostgreSQL 14',
            current_setting('server_version')
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Run the statement on the source and on every replica by hand, or use the trigger capture mode on PostgreSQL 13.';
    END IF;
    PERFORM pgfanout.wal_message(json_build_object('sql', p_sql, 'search_path', p_search_path, 'schema', p_schema, 'table', p_table)::text);
END
$$;

-- pgfanout.wal_quiet(boolean): in WAL mode, marks the start (true) or end (false) of data
-- changes the replicas replay by running a schema change (replicate_ddl's statement), with a
-- transactional logical message {"quiet": true|false}; does nothing in trigger mode (there the
-- setting pgfanout.origin keeps capture quiet). Internal: replicate_ddl, whose callers need
-- EXECUTE on it in WAL mode besides replicate_ddl and schema_change.
-- Returns: void. Tables touched: reads source_info.
CREATE OR REPLACE FUNCTION pgfanout.wal_quiet(p_quiet boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pgfanout.capture_mode() = 'wal' AND current_setting('server_version_num')::int >= 140000 THEN
        PERFORM pgfanout.wal_message(json_build_object('quiet', coalesce(p_quiet, false))::text);
    END IF;
END
$$;

-- pgfanout.wal_state(): where the publisher of a WAL-mode source stands. A recorded batch
-- whose last commit the slot has already passed was published and finished but for its
-- record (a publisher stopped between the two): it is recorded as finished here.
-- Parameters: none.
-- Returns: slot_name, slot_lsn (the slot's confirmed position; NULL when the slot is missing),
--   finished_batch_id, finished_end_lsn (end of the last finished batch's last commit, or
--   NULL), open_batch_id, open_first_lsn, open_last_lsn, open_max_message_bytes,
--   origin_system, origin_timeline (the open batch's, else this server's now),
--   message_key (hex: the key pgfanout's logical messages are signed with, see wal_key).
-- Tables touched: batch_cursor (locked), wal_batch (update).
CREATE OR REPLACE FUNCTION pgfanout.wal_state(
    OUT slot_name text, OUT slot_lsn text, OUT finished_batch_id bigint, OUT finished_end_lsn text,
    OUT open_batch_id bigint, OUT open_first_lsn text, OUT open_last_lsn text, OUT open_max_message_bytes integer,
    OUT origin_system text, OUT origin_timeline bigint, OUT message_key text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur  record;
    b    record;
    slot pg_lsn;
BEGIN
    IF pgfanout.capture_mode() <> 'wal' THEN
        RAISE EXCEPTION 'pgfanout.wal_state: this source captures in % mode, not wal', pgfanout.capture_mode()
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    slot_name := pgfanout.wal_slot_name();
    message_key := (SELECT encode(k.key, 'hex') FROM pgfanout.wal_key k);
    SELECT s.confirmed_flush_lsn INTO slot FROM pg_replication_slots s WHERE s.slot_name = wal_state.slot_name;
    slot_lsn := slot::text;
    SELECT * INTO cur FROM pgfanout.batch_cursor FOR UPDATE;
    SELECT * INTO b FROM pgfanout.wal_batch w WHERE w.batch_id = cur.finished_batch_id + 1 AND cur.last_batch_id > cur.finished_batch_id;
    IF b.batch_id IS NOT NULL AND slot IS NOT NULL AND slot > b.last_lsn THEN
        UPDATE pgfanout.wal_batch SET end_lsn = slot, finished_at = now() WHERE batch_id = b.batch_id;
        UPDATE pgfanout.batch_cursor SET finished_batch_id = b.batch_id;
        cur.finished_batch_id := b.batch_id;
        b := NULL;
    END IF;
    finished_batch_id := cur.finished_batch_id;
    finished_end_lsn := (SELECT w.end_lsn::text FROM pgfanout.wal_batch w WHERE w.batch_id = cur.finished_batch_id);
    IF b.batch_id IS NOT NULL THEN
        open_batch_id := b.batch_id;
        open_first_lsn := b.first_lsn::text;
        open_last_lsn := b.last_lsn::text;
        open_max_message_bytes := b.max_message_bytes;
        origin_system := b.origin_system::text;
        origin_timeline := b.origin_timeline;
    ELSE
        SELECT CASE WHEN c.system_identifier < 0 THEN c.system_identifier::numeric + 18446744073709551616
                    ELSE c.system_identifier::numeric END::text
          INTO origin_system FROM pg_control_system() c;
        origin_timeline := ('x' || lpad(substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8), 16, '0'))::bit(64)::bigint;
    END IF;
END
$$;

-- pgfanout.wal_changes(): the pending changes of this source's slot, without moving it:
-- pg_logical_slot_peek_binary_changes with pgoutput (protocol version 1, publication
-- pgfanout, logical messages from PostgreSQL 14), up to the number of rows in the setting
-- pgfanout.wal_read_rows (default 10000; PostgreSQL ends at the first commit past it, so
-- transactions come whole). Values are text under fixed output settings (ISO dates, postgres
-- intervals, shortest exact floats, hex bytea, UTC), so a batch read again gives the same text.
-- Read it through a cursor: the rows are kept by the server, not the client.
-- Parameters: none. Returns: lsn (text), xid (text), data (one pgoutput message).
-- Tables touched: none (decodes the WAL).
CREATE OR REPLACE FUNCTION pgfanout.wal_changes() RETURNS TABLE (lsn text, xid text, data bytea)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET extra_float_digits = 1
SET bytea_output = 'hex' SET TimeZone = 'UTC'
AS $$
DECLARE
    n integer := coalesce(nullif(current_setting('pgfanout.wal_read_rows', true), '')::integer, 10000);
BEGIN
    IF pgfanout.capture_mode() <> 'wal' THEN
        RAISE EXCEPTION 'pgfanout.wal_changes: this source captures in % mode, not wal', pgfanout.capture_mode()
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF current_setting('server_version_num')::int >= 140000 THEN
        RETURN QUERY SELECT c.lsn::text, c.xid::text, c.data
          FROM pg_logical_slot_peek_binary_changes(pgfanout.wal_slot_name(), NULL, n,
                 'proto_version', '1', 'publication_names', 'pgfanout', 'messages', 'true') c;
    ELSE
        RETURN QUERY SELECT c.lsn::text, c.xid::text, c.data
          FROM pg_logical_slot_peek_binary_changes(pgfanout.wal_slot_name(), NULL, n,
                 'proto_version', '1', 'publication_names', 'pgfanout') c;
    END IF;
EXCEPTION WHEN undefined_object THEN
    RAISE EXCEPTION 'pgfanout.wal_changes: %', SQLERRM
        USING ERRCODE = 'undefined_object',
              HINT = 'The slot is missing: create it with SELECT pgfanout.wal_create_slot(). A slot the server invalidated (max_slot_wal_keep_size) lost changes: every replica must be bootstrapped again.';
END
$$;

-- pgfanout.wal_record_batch(id, first_lsn, last_lsn, max_message_bytes, origin_system,
-- origin_timeline): records the next batch before any of its messages is published: the
-- transactions whose commits start from first_lsn to last_lsn. Call it once per batch, with
-- the origin wal_state returned.
-- Returns: void. Errors: an id that is not the next one, or a batch open (22023).
-- Tables touched: batch_cursor, wal_batch (insert).
CREATE OR REPLACE FUNCTION pgfanout.wal_record_batch(p_batch_id bigint, p_first_lsn pg_lsn, p_last_lsn pg_lsn,
    p_max_message_bytes integer, p_origin_system text, p_origin_timeline bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur record;
BEGIN
    SELECT * INTO cur FROM pgfanout.batch_cursor FOR UPDATE;
    IF p_batch_id IS DISTINCT FROM cur.last_batch_id + 1 OR cur.last_batch_id <> cur.finished_batch_id
       OR p_first_lsn IS NULL OR p_last_lsn IS NULL OR p_first_lsn > p_last_lsn
       OR p_max_message_bytes IS NULL OR p_max_message_bytes <= 0 OR p_origin_system IS NULL OR p_origin_timeline IS NULL THEN
        RAISE EXCEPTION 'pgfanout.wal_record_batch: batch % from % to % (% bytes) is not allowed; expected batch % (no batch open), LSNs in order, a positive size and an origin',
            coalesce(p_batch_id::text, 'NULL'), coalesce(p_first_lsn::text, 'NULL'), coalesce(p_last_lsn::text, 'NULL'),
            coalesce(p_max_message_bytes::text, 'NULL'), cur.last_batch_id + 1
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pgfanout.wal_batch (batch_id, prev_batch_id, first_lsn, last_lsn, max_message_bytes, origin_system, origin_timeline)
    VALUES (p_batch_id, p_batch_id - 1, p_first_lsn, p_last_lsn, p_max_message_bytes, p_origin_system::numeric, p_origin_timeline);
    UPDATE pgfanout.batch_cursor SET last_batch_id = p_batch_id;
END
$$;

-- pgfanout.wal_finish_batch(id, end_lsn): the open batch is published (SNS accepted every
-- message of it): finishes it and moves the slot's confirmed position to end_lsn, the end of
-- its last commit record, so the slot no longer serves those transactions and the WAL before
-- them can be removed. Finishing a finished batch does nothing.
-- Returns: void. Errors: another batch is open, or end_lsn is not past the batch (22023).
-- Tables touched: batch_cursor, wal_batch (update, old rows pruned); the slot.
CREATE OR REPLACE FUNCTION pgfanout.wal_finish_batch(p_batch_id bigint, p_end_lsn pg_lsn) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur  record;
    b    record;
    slot text := pgfanout.wal_slot_name();
BEGIN
    SELECT * INTO cur FROM pgfanout.batch_cursor FOR UPDATE;
    IF p_batch_id >= 1 AND p_batch_id <= cur.finished_batch_id THEN
        RETURN;
    END IF;
    SELECT * INTO b FROM pgfanout.wal_batch w WHERE w.batch_id = p_batch_id;
    IF p_batch_id IS DISTINCT FROM cur.finished_batch_id + 1 OR cur.last_batch_id = cur.finished_batch_id
       OR b.batch_id IS NULL OR p_end_lsn IS NULL OR p_end_lsn <= b.last_lsn THEN
        RAISE EXCEPTION 'pgfanout.wal_finish_batch: cannot finish batch % at %: the open batch is %', coalesce(p_batch_id::text, 'NULL'),
            coalesce(p_end_lsn::text, 'NULL'),
            CASE WHEN cur.last_batch_id > cur.finished_batch_id THEN format('%s (last commit at %s)', cur.finished_batch_id + 1, b.last_lsn) ELSE 'none' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE pgfanout.wal_batch SET end_lsn = p_end_lsn, finished_at = now() WHERE batch_id = p_batch_id;
    UPDATE pgfanout.batch_cursor SET finished_batch_id = p_batch_id;
    DELETE FROM pgfanout.wal_batch WHERE batch_id < p_batch_id - 1000;
    PERFORM pg_replication_slot_advance(slot, p_end_lsn)
       FROM pg_replication_slots s WHERE s.slot_name = slot AND s.confirmed_flush_lsn < p_end_lsn;
END
$$;

-- pgfanout.wal_skip(lsn): moves the slot's confirmed position to lsn over transactions that
-- carried no published change (other tables, pgfanout's own bookkeeping), so the slot does
-- not hold WAL for them. Only while no batch is open; never moves the slot back.
-- Returns: void. Tables touched: reads batch_cursor; the slot.
CREATE OR REPLACE FUNCTION pgfanout.wal_skip(p_lsn pg_lsn) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur  record;
    slot text := pgfanout.wal_slot_name();
BEGIN
    SELECT * INTO cur FROM pgfanout.batch_cursor;
    IF cur.last_batch_id <> cur.finished_batch_id OR p_lsn IS NULL OR p_lsn > pg_current_wal_flush_lsn() THEN
        RAISE EXCEPTION 'pgfanout.wal_skip: cannot move the slot to %: %', coalesce(p_lsn::text, 'NULL'),
            CASE WHEN cur.last_batch_id <> cur.finished_batch_id THEN format('batch %s is open', cur.finished_batch_id + 1) ELSE 'not a flushed WAL position' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_replication_slot_advance(slot, p_lsn)
       FROM pg_replication_slots s WHERE s.slot_name = slot AND s.confirmed_flush_lsn < p_lsn;
END
$$;

-- pgfanout.wal_status(): the slot of a WAL-mode source, for status and alarms.
-- Parameters: none. Returns: slot_name, active, wal_status (reserved | extended | unreserved |
--   lost, PostgreSQL 13+), restart_lsn, confirmed_lsn, retained_bytes (WAL the slot keeps
--   from being removed: current position - restart_lsn), lag_bytes (current position -
--   confirmed position); no row when the slot is missing.
-- Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.wal_status()
RETURNS TABLE (slot_name text, active boolean, wal_status text, restart_lsn text, confirmed_lsn text, retained_bytes numeric, lag_bytes numeric)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.slot_name::text, s.active, s.wal_status, s.restart_lsn::text, s.confirmed_flush_lsn::text,
           pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)
      FROM pg_replication_slots s WHERE s.slot_name = pgfanout.wal_slot_name()
$$;

-- Nothing here is for everyone: PostgreSQL grants EXECUTE to PUBLIC on every new function,
-- and SECURITY DEFINER functions must not be callable by everyone. Every function of the
-- source side (all of schema pgfanout except the replica side's replica_* functions) loses
-- PUBLIC's EXECUTE here, so a function added later cannot be forgotten. pgfanout's tables
-- and sequences grant nothing to PUBLIC from the start. roles.sql grants the batch protocol
-- to pgfanout_publisher.
DO $grants$
DECLARE
    path pg_catalog.text := pg_catalog.current_setting('search_path');
    f    pg_catalog.regprocedure;
BEGIN
    -- With only pg_catalog on the path, a function's name prints schema-qualified.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    FOR f IN
        SELECT p.oid::pg_catalog.regprocedure
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pgfanout'::pg_catalog.regnamespace
           AND p.proname::pg_catalog.text NOT LIKE 'replica\_%'
         ORDER BY p.oid
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', path, true);
END
$grants$;
