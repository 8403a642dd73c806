-- pgfanout source: upgrade from 1.1.0 to 1.2.0. Run by installSource() (functions/ops/install.ts)
-- in the installer's transaction; afterwards the database holds exactly what
-- pgfanout--1.2.0.sql installs (functions/ops/releases.test.ts checks it). Every object below
-- is copied from pgfanout--1.2.0.sql.

-- pgfanout.version(): the installed version of the source objects.
-- Parameters: none. Returns: text, e.g. '1.2.0'. Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.version() RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT '1.2.0'::text $$;

-- ---------------------------------------------------------------------------------------------
-- TRUNCATE of partitions: capture_truncate logs a partition's TRUNCATE, add_table puts the
-- trigger on every partition, schema_change and captured_ddl keep it on partitions created or
-- attached later, remove_table takes it off.
-- ---------------------------------------------------------------------------------------------

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
                IF log_nr IS NULL OR log_nr NOT IN ('0', '1', '2') THEN
                    hint := pg_sequence_last_value('pgfanout.capture_hint'::regclass);
                    IF hint >= 3 THEN
                        PERFORM pg_notify('pgfanout', '');
                    END IF;
                    log_nr := (coalesce(hint, 0) %% 3)::text;
                    PERFORM set_config('pgfanout.log_table', log_nr, true);
                END IF;
                img := %1$I.hstore(ARRAY['sql', 'search_path'], ARRAY[p_sql, p_search_path]);
                IF log_nr = '0' THEN
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

-- Partitions of tables captured before 1.2.0 get their TRUNCATE trigger.
SELECT pgfanout.refresh_partition_truncates();

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

-- >>> WAL capture mode (objects copied from pgfanout--1.2.0.sql)
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
-- <<< WAL capture mode
