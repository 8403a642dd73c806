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
