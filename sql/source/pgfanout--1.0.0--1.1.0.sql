-- pgfanout source: upgrade from 1.0.0 to 1.1.0. Run by installSource() (functions/ops/install.ts)
-- in the installer's transaction; afterwards the database holds exactly what
-- pgfanout--1.1.0.sql installs (functions/ops/releases.test.ts checks it). Every object below
-- is copied from pgfanout--1.1.0.sql.
--
-- 1.1.0:
--   * capture converts rows with hstore(pgfanout.as_record(row)): a function hstore(<row type>)
--     created next to hstore by another role is never run with the installer's rights;
--   * the loop guard pgfanout.origin switches capture off only for sessions that may use it
--     (pgfanout.origin_trusted);
--   * DDL capture logs only the statements of pgfanout's owner and of roles allowed with
--     pgfanout.ddl_capture_role (others' changes to those tables are refused), and never a
--     statement holding transaction control (pgfanout.transaction_control);
--   * grants by a loop over the schema's functions (no hand-kept REVOKE list);
--   * pgfanout.batch_encoding: the message size and the origin (system identifier, timeline,
--     WAL position) every publish of a batch carries, recorded at its first publish.

-- pgfanout.version(): the installed version of the source objects.
-- Parameters: none. Returns: text, e.g. '1.1.0'. Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.version() RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT '1.1.0'::text $$;

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

-- pgfanout.capture_truncate(): the statement-level trigger function add_table installs
-- (AFTER TRUNCATE ... FOR EACH STATEMENT): one 'T' event. Statement triggers are not
-- cloned to partitions, so it fires on the added table itself.
-- Parameters: none. Returns: NULL.
-- Tables touched: inserts into event_log_0/1/2; reads capture_hint.
CREATE OR REPLACE FUNCTION pgfanout.capture_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    log_nr text := current_setting('pgfanout.log_table', true);
    hint   bigint;
BEGIN
    IF current_setting('pgfanout.origin', true) <> '' AND pgfanout.origin_trusted() THEN
        RETURN NULL;
    END IF;
    IF log_nr IS NULL OR log_nr = '' THEN
        hint := pg_sequence_last_value('pgfanout.capture_hint'::regclass);
        IF hint >= 3 THEN
            PERFORM pg_notify('pgfanout', '');
        END IF;
        log_nr := (coalesce(hint, 0) % 3)::text;
        PERFORM set_config('pgfanout.log_table', log_nr, true);
    END IF;
    IF log_nr = '0' THEN
        INSERT INTO pgfanout.event_log_0 (ev_op, ev_schema, ev_table) VALUES (TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME);
    ELSIF log_nr = '1' THEN
        INSERT INTO pgfanout.event_log_1 (ev_op, ev_schema, ev_table) VALUES (TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME);
    ELSE
        INSERT INTO pgfanout.event_log_2 (ev_op, ev_schema, ev_table) VALUES (TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END
$$;

-- pgfanout.schema_change(sql, search_path, schema, table, created, log): logs one schema
-- change event (when p_log), adds the tables in p_created that lie in an auto-add schema,
-- and refreshes changed identities. Internal: replicate_ddl and the DDL event triggers.
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
        END
        $body$
    $sql$, h);
END
$install$;

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
            IF EXISTS (SELECT 1 FROM pgfanout.auto_add_schema a WHERE a.schema_name = obj.nspname)
               OR EXISTS (SELECT 1 FROM pgfanout.captured_table ct JOIN pg_class c ON c.oid = ct.reloid
                           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = obj.nspname) THEN
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
