-- pgfanout replica 1.1.0 → 1.2.0. Run by installReplica() on a 1.1.0 replica; afterwards the
-- database holds exactly what pgfanout_replica--1.2.0.sql installs (functions/ops/releases.test.ts
-- checks it).

CREATE OR REPLACE FUNCTION pgfanout.replica_version() RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT '1.2.0'::text $$;

-- ============================================================================================
-- The replica protocol (since 1.2.0). Every change of the replica_* tables goes through these
-- functions, as the source's batch protocol goes through next_batch and finish_batch; the
-- applier's module functions/core/replica/protocol.ts is their only caller.
--
-- Apply, in the transaction that applies a message (granted to pgfanout_applier):
--   replica_lock(source)                          lock the source's position (created on its
--                                                 first message) and read what deciding needs
--   replica_applied_batch(source, batch)          the record of a batch applied before
--   replica_stage_part(source, batch, part, …)    a part that is not final: staged, position moved
--   replica_staged_part(source, batch, part)      the final part: each staged part read back
--   replica_stage_value / replica_staged_value /
--   replica_clear_values                          the pieces of one split change
--   replica_record_conflict(…)                    a conflict detected and resolved
--   replica_advance(source, batch, digests, …)    the batch is applied: position, its record, and
--                                                 the end of the kept history
-- Operators (pgfanout status, verify, redrive, bootstrap; not granted to the applier except
-- replica_state): replica_state, replica_start, replica_skip, replica_bootstrap_begin,
-- replica_bootstrap_record, replica_bootstrap_tables, replica_bootstrap_copy_begin,
-- replica_bootstrap_copy_done, replica_bootstrap_finish.
--
-- The invariants they keep, whoever calls them: a source's position only moves to the batch
-- after the one applied (never past a batch, never back), part by part from 0 with each part
-- following the digest of the one before; a batch is recorded as applied only with exactly the
-- parts that were staged for it; nothing is written for a source that has no position. A refusal
-- raises object_not_in_prerequisite_state (55000) naming the position; an argument that is not
-- allowed raises invalid_parameter_value (22023). Like the source's protocol, the functions are
-- SECURITY DEFINER with search_path pg_catalog, pg_temp: the applier's role reads the tables and
-- writes them only through here.
-- ============================================================================================

-- pgfanout.replica_position_text(position): a position as the protocol's errors name it.
-- Parameters: a replica_position row. Returns: text. Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.replica_position_text(p_position pgfanout.replica_position) RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_position.state = 'staging'
                THEN pg_catalog.format('applied batch %s, staging batch %s up to part %s', p_position.applied_batch_id, p_position.batch_id, p_position.part)
                ELSE pg_catalog.format('applied batch %s, nothing staged', p_position.applied_batch_id) END
$$;

-- pgfanout.replica_check_source(p_function, p_source_id, p_batch_id): refuses a missing source id
-- or a batch id below 1, naming the function (its callers call it only then, saving a function call
-- on every apply). Parameters: the caller's name, source id, batch id. Returns: void.
-- Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.replica_check_source(p_function text, p_source_id text, p_batch_id bigint) RETURNS void
LANGUAGE plpgsql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_source_id IS NULL OR p_source_id = '' OR p_batch_id IS NULL OR p_batch_id < 1 THEN
        RAISE EXCEPTION 'pgfanout.%: source id % and batch id % are not allowed; expected a source id and a batch id >= 1',
            p_function, quote_nullable(p_source_id), coalesce(p_batch_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

-- pgfanout.replica_lock(p_source_id): starts the apply of a message. Locks the source's row of
-- replica_position (FOR UPDATE, until the transaction ends), creating it at batch 0 on the
-- source's first message, and returns what deciding about the message needs.
-- Parameters: source id.
-- Returns one row: the position (batch_id, part, applied_batch_id, part_digest; part is NULL
--   when nothing is staged); staged_first_digest, the digest of the staged part 0 while a batch is
--   being staged; the origin recorded with the applied batch (NULL when none); created, true when
--   this call created the position; and, while a bootstrap of the source is in progress, its
--   batch, start and how many of its tables are copied (NULL otherwise).
-- Tables touched: replica_position (insert, lock); reads replica_applied_batch,
--   replica_staged_part, replica_bootstrap, replica_bootstrap_table.
-- Invariant: two applies of one source never run at once; the position read is the one written.
CREATE OR REPLACE FUNCTION pgfanout.replica_lock(p_source_id text,
    OUT batch_id bigint, OUT part integer, OUT applied_batch_id bigint, OUT part_digest text, OUT staged_first_digest text,
    OUT origin_system text, OUT origin_timeline bigint, OUT origin_lsn pg_lsn, OUT created boolean,
    OUT bootstrap_batch_id bigint, OUT bootstrap_started_at timestamptz, OUT bootstrap_tables_copied integer, OUT bootstrap_tables integer)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    position_state text;
    inserted integer;
BEGIN
    IF p_source_id IS NULL OR p_source_id = '' THEN
        RAISE EXCEPTION 'pgfanout.replica_lock: source id % is not allowed; expected a source id', quote_nullable(p_source_id)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    created := false;
    -- The position and the origin of the batch applied last, in one statement (the common case).
    SELECT p.batch_id, p.part, p.applied_batch_id, p.part_digest, p.state, h.origin_system, h.origin_timeline, h.origin_lsn
      INTO batch_id, part, applied_batch_id, part_digest, position_state, origin_system, origin_timeline, origin_lsn
      FROM pgfanout.replica_position p
      LEFT JOIN pgfanout.replica_applied_batch h ON h.source_id = p.source_id AND h.batch_id = p.applied_batch_id
     WHERE p.source_id = p_source_id FOR UPDATE OF p;
    IF NOT FOUND THEN
        INSERT INTO pgfanout.replica_position (source_id, batch_id, part, state, applied_batch_id)
        VALUES (p_source_id, 0, NULL, 'applied', 0)
        ON CONFLICT (source_id) DO NOTHING;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        created := inserted = 1;
        SELECT p.batch_id, p.part, p.applied_batch_id, p.part_digest, p.state, h.origin_system, h.origin_timeline, h.origin_lsn
          INTO batch_id, part, applied_batch_id, part_digest, position_state, origin_system, origin_timeline, origin_lsn
          FROM pgfanout.replica_position p
          LEFT JOIN pgfanout.replica_applied_batch h ON h.source_id = p.source_id AND h.batch_id = p.applied_batch_id
         WHERE p.source_id = p_source_id FOR UPDATE OF p;
    END IF;
    IF position_state = 'staging' THEN
        SELECT s.digest INTO staged_first_digest
          FROM pgfanout.replica_staged_part s WHERE s.source_id = p_source_id AND s.batch_id = replica_lock.batch_id AND s.part = 0;
    ELSIF applied_batch_id = 0 THEN
        SELECT b.batch_id, b.started_at,
               (SELECT pg_catalog.count(t.copied_at)::integer FROM pgfanout.replica_bootstrap_table t WHERE t.source_id = p_source_id),
               (SELECT pg_catalog.count(*)::integer FROM pgfanout.replica_bootstrap_table t WHERE t.source_id = p_source_id)
          INTO bootstrap_batch_id, bootstrap_started_at, bootstrap_tables_copied, bootstrap_tables
          FROM pgfanout.replica_bootstrap b WHERE b.source_id = p_source_id;
    END IF;
END
$$;

-- pgfanout.replica_applied_batch(p_source_id, p_batch_id): the replica's record of an applied
-- batch, against which a message at or below the position is checked before it is dropped.
-- Parameters: source id, batch id. Returns: no row when the replica keeps no record of the batch
--   (older than the kept history, copied by a bootstrap, skipped); else its parts' digests and
--   origin (NULL when the batch carried none).
-- Tables touched: reads replica_applied_batch.
CREATE OR REPLACE FUNCTION pgfanout.replica_applied_batch(p_source_id text, p_batch_id bigint)
RETURNS TABLE (part_digests text[], origin_system text, origin_timeline bigint, origin_lsn pg_lsn)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT h.part_digests, h.origin_system, h.origin_timeline, h.origin_lsn
      FROM pgfanout.replica_applied_batch h WHERE h.source_id = p_source_id AND h.batch_id = p_batch_id
$$;

-- pgfanout.replica_stage_part(p_source_id, p_batch_id, p_part, p_after, p_digest, p_body): stores a
-- part of a batch that is not its final part and moves the position to it. Part 0 must be of the
-- batch after the applied one; it drops whatever was staged before (a batch that starts over in
-- another encoding). Part N > 0 must follow the staged part N - 1 of the same batch, and p_after
-- must be that part's digest.
-- Parameters: source id, batch id, part, the digest of the part before (NULL for part 0), this
--   part's digest, its message body.
-- Returns: void. Tables touched: replica_position, replica_staged_part.
-- Invariant: the staged parts of a source are parts 0..N of the batch after the applied one,
--   each following the one before.
CREATE OR REPLACE FUNCTION pgfanout.replica_stage_part(p_source_id text, p_batch_id bigint, p_part integer, p_after text, p_digest text, p_body text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos pgfanout.replica_position;
BEGIN
    IF p_source_id IS NULL OR p_source_id = '' OR p_batch_id IS NULL OR p_batch_id < 1 THEN
        PERFORM pgfanout.replica_check_source('replica_stage_part', p_source_id, p_batch_id);
    END IF;
    IF p_part IS NULL OR p_part < 0 OR p_digest IS NULL OR p_body IS NULL OR (p_part > 0 AND p_after IS NULL) THEN
        RAISE EXCEPTION 'pgfanout.replica_stage_part: part %, after %, digest % and a body % are not allowed; expected a part >= 0, the digest of the part before (for a part > 0), a digest and a body',
            coalesce(p_part::text, 'NULL'), quote_nullable(p_after), quote_nullable(p_digest), CASE WHEN p_body IS NULL THEN 'NULL' ELSE 'given' END
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO pos FROM pgfanout.replica_position p WHERE p.source_id = p_source_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgfanout.replica_stage_part: source % has no position on this replica; an apply starts with pgfanout.replica_lock', p_source_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF p_part = 0 THEN
        IF p_batch_id <> pos.applied_batch_id + 1 THEN
            RAISE EXCEPTION 'pgfanout.replica_stage_part: source % is at % (%); only batch % may be staged, not batch %',
                p_source_id, pos.applied_batch_id, pgfanout.replica_position_text(pos), pos.applied_batch_id + 1, p_batch_id
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        DELETE FROM pgfanout.replica_staged_part s WHERE s.source_id = p_source_id;
    ELSIF pos.state <> 'staging' OR pos.batch_id <> p_batch_id OR pos.part <> p_part - 1 THEN
        RAISE EXCEPTION 'pgfanout.replica_stage_part: source % is at % (%); batch % part % does not follow it',
            p_source_id, pos.applied_batch_id, pgfanout.replica_position_text(pos), p_batch_id, p_part
            USING ERRCODE = 'object_not_in_prerequisite_state';
    ELSIF p_after <> pos.part_digest THEN
        RAISE EXCEPTION 'pgfanout.replica_stage_part: batch % part % of source % follows digest %, but the staged part % has digest %',
            p_batch_id, p_part, p_source_id, p_after, pos.part, pos.part_digest
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO pgfanout.replica_staged_part (source_id, batch_id, part, digest, body)
    VALUES (p_source_id, p_batch_id, p_part, p_digest, p_body);
    UPDATE pgfanout.replica_position p
       SET batch_id = p_batch_id, part = p_part, state = 'staging', part_digest = p_digest, applied_at = pg_catalog.now()
     WHERE p.source_id = p_source_id;
END
$$;

-- pgfanout.replica_staged_part(p_source_id, p_batch_id, p_part): a staged part, read back.
-- Parameters: source id, batch id, part. Returns: its body and digest; no row when not staged.
-- Tables touched: reads replica_staged_part.
CREATE OR REPLACE FUNCTION pgfanout.replica_staged_part(p_source_id text, p_batch_id bigint, p_part integer)
RETURNS TABLE (body text, digest text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.body, s.digest FROM pgfanout.replica_staged_part s
     WHERE s.source_id = p_source_id AND s.batch_id = p_batch_id AND s.part = p_part
$$;

-- pgfanout.replica_advance(p_source_id, p_batch_id, p_part_digests, p_source_time, p_origin_system,
-- p_origin_timeline, p_origin_lsn): records batch p_batch_id as applied, in the transaction that
-- applied its changes: moves the position to it, drops its staged parts, records its parts'
-- digests and origin in replica_applied_batch and forgets the records more than 1000 batches
-- behind it.
-- Parameters: source id; batch id, the batch after the applied one; the digest of each of its
--   parts (parts 0..N-1 are the staged ones, with their digests, N the final part); the source
--   time (NULL keeps the one recorded); the origin's system, timeline and WAL position (all NULL
--   or none).
-- Returns: void. Tables touched: replica_position, replica_staged_part, replica_applied_batch.
-- Invariant: the position moves by exactly one batch, and only over the parts that were staged.
CREATE OR REPLACE FUNCTION pgfanout.replica_advance(p_source_id text, p_batch_id bigint, p_part_digests text[],
    p_source_time timestamptz DEFAULT NULL, p_origin_system text DEFAULT NULL, p_origin_timeline bigint DEFAULT NULL, p_origin_lsn pg_lsn DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos pgfanout.replica_position;
    parts integer := coalesce(pg_catalog.cardinality(p_part_digests), 0);
    staged text[];
    moved_rows integer;
BEGIN
    IF p_source_id IS NULL OR p_source_id = '' OR p_batch_id IS NULL OR p_batch_id < 1 THEN
        PERFORM pgfanout.replica_check_source('replica_advance', p_source_id, p_batch_id);
    END IF;
    IF parts = 0 OR pg_catalog.array_position(p_part_digests, NULL) IS NOT NULL
       OR (p_origin_system IS NULL) <> (p_origin_timeline IS NULL) OR (p_origin_system IS NULL) <> (p_origin_lsn IS NULL) THEN
        RAISE EXCEPTION 'pgfanout.replica_advance: part digests % and origin (%, %, %) are not allowed; expected a digest for each part and an origin given whole or not at all',
            coalesce(p_part_digests::text, 'NULL'), quote_nullable(p_origin_system), coalesce(p_origin_timeline::text, 'NULL'), coalesce(p_origin_lsn::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The common case in one statement: the position moves only from the batch before, over
    -- exactly the parts staged for this one (the UPDATE locks the row and checks it as it stands);
    -- the record is written, the kept history cut and the staged parts dropped with it.
    WITH moved AS (
        UPDATE pgfanout.replica_position p
           SET batch_id = p_batch_id, part = NULL, state = 'applied', applied_batch_id = p_batch_id, part_digest = NULL,
               applied_at = pg_catalog.now(), source_time = coalesce(p_source_time, p.source_time)
         WHERE p.source_id = p_source_id AND p.applied_batch_id = p_batch_id - 1
           AND (parts = 1 OR (p.state = 'staging' AND p.batch_id = p_batch_id AND p.part = parts - 2
                              AND (SELECT pg_catalog.array_agg(s.digest ORDER BY s.part) FROM pgfanout.replica_staged_part s
                                    WHERE s.source_id = p_source_id AND s.batch_id = p_batch_id) = p_part_digests[1:parts - 1]))
        RETURNING p.source_id
    ), recorded AS (
        INSERT INTO pgfanout.replica_applied_batch AS h (source_id, batch_id, part_digests, origin_system, origin_timeline, origin_lsn)
        SELECT m.source_id, p_batch_id, p_part_digests, p_origin_system, p_origin_timeline, p_origin_lsn FROM moved m
        ON CONFLICT (source_id, batch_id) DO UPDATE
           SET part_digests = excluded.part_digests, origin_system = excluded.origin_system, origin_timeline = excluded.origin_timeline,
               origin_lsn = excluded.origin_lsn, applied_at = pg_catalog.now()
    ), forgotten AS (
        DELETE FROM pgfanout.replica_applied_batch h
         WHERE h.source_id = p_source_id AND h.batch_id <= p_batch_id - 1000 AND EXISTS (SELECT FROM moved)
    ), dropped AS (
        -- Also the parts of an encoding that a batch of one part started over from.
        DELETE FROM pgfanout.replica_staged_part s WHERE s.source_id = p_source_id AND EXISTS (SELECT FROM moved)
    )
    SELECT pg_catalog.count(*)::integer INTO moved_rows FROM moved;
    IF moved_rows = 1 THEN
        RETURN;
    END IF;
    -- Refused: say why.
    SELECT * INTO pos FROM pgfanout.replica_position p WHERE p.source_id = p_source_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgfanout.replica_advance: source % has no position on this replica; an apply starts with pgfanout.replica_lock', p_source_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF p_batch_id <> pos.applied_batch_id + 1 THEN
        RAISE EXCEPTION 'pgfanout.replica_advance: source % is at % (%); only batch % may be recorded as applied, not batch %',
            p_source_id, pos.applied_batch_id, pgfanout.replica_position_text(pos), pos.applied_batch_id + 1, p_batch_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF pos.state <> 'staging' OR pos.batch_id <> p_batch_id OR pos.part <> parts - 2 THEN
        RAISE EXCEPTION 'pgfanout.replica_advance: batch % of source % has % parts, so parts 0 to % must be staged, but the source is at %',
            p_batch_id, p_source_id, parts, parts - 2, pgfanout.replica_position_text(pos)
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT pg_catalog.array_agg(s.digest ORDER BY s.part) INTO staged
      FROM pgfanout.replica_staged_part s WHERE s.source_id = p_source_id AND s.batch_id = p_batch_id;
    RAISE EXCEPTION 'pgfanout.replica_advance: batch % of source % was staged with part digests %, not %',
        p_batch_id, p_source_id, coalesce(staged::text, 'none'), p_part_digests[1:parts - 1]::text
        USING ERRCODE = 'object_not_in_prerequisite_state';
END
$$;

-- pgfanout.replica_stage_value(p_source_id, p_batch_id, p_slots, p_seqs, p_values): stores pieces
-- of the values of one split change (too large for one message) while its batch is applied.
-- Parameters: source id, the batch being applied (the one after the applied batch); for each
--   piece its slot (the value it belongs to), sequence number and text, as three arrays of one
--   length.
-- Returns: void. Tables touched: replica_staged_value (insert); reads replica_position.
-- Invariant: pieces are only ever of the batch being applied.
CREATE OR REPLACE FUNCTION pgfanout.replica_stage_value(p_source_id text, p_batch_id bigint, p_slots integer[], p_seqs integer[], p_values text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    applied bigint;
BEGIN
    IF p_source_id IS NULL OR p_source_id = '' OR p_batch_id IS NULL OR p_batch_id < 1 THEN
        PERFORM pgfanout.replica_check_source('replica_stage_value', p_source_id, p_batch_id);
    END IF;
    IF p_slots IS NULL OR p_seqs IS NULL OR p_values IS NULL
       OR pg_catalog.cardinality(p_slots) <> pg_catalog.cardinality(p_seqs) OR pg_catalog.cardinality(p_slots) <> pg_catalog.cardinality(p_values) THEN
        RAISE EXCEPTION 'pgfanout.replica_stage_value: slots, sequence numbers and values must be three arrays of one length'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT p.applied_batch_id INTO applied FROM pgfanout.replica_position p WHERE p.source_id = p_source_id;
    IF applied IS NULL OR p_batch_id <> applied + 1 THEN
        RAISE EXCEPTION 'pgfanout.replica_stage_value: source % %; only pieces of the batch after the applied one may be staged, not of batch %',
            p_source_id, CASE WHEN applied IS NULL THEN 'has no position on this replica' ELSE pg_catalog.format('has applied batch %s', applied) END, p_batch_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO pgfanout.replica_staged_value (source_id, batch_id, slot, seq, value)
    SELECT p_source_id, p_batch_id, x.slot, x.seq, x.value
      FROM ROWS FROM (pg_catalog.unnest(p_slots), pg_catalog.unnest(p_seqs), pg_catalog.unnest(p_values)) AS x(slot, seq, value);
END
$$;

-- pgfanout.replica_staged_value(p_source_id, p_batch_id, p_slot): one value of a split change,
-- its pieces concatenated in order by the replica itself.
-- Parameters: source id, batch id, slot. Returns: the value (NULL when it has no pieces).
-- Tables touched: reads replica_staged_value.
CREATE OR REPLACE FUNCTION pgfanout.replica_staged_value(p_source_id text, p_batch_id bigint, p_slot integer) RETURNS text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.string_agg(s.value, '' ORDER BY s.seq) FROM pgfanout.replica_staged_value s
     WHERE s.source_id = p_source_id AND s.batch_id = p_batch_id AND s.slot = p_slot
$$;

-- pgfanout.replica_clear_values(p_source_id, p_batch_id): forgets the pieces of a split change once
-- it is applied. Parameters: source id, batch id. Returns: void.
-- Tables touched: replica_staged_value (delete).
CREATE OR REPLACE FUNCTION pgfanout.replica_clear_values(p_source_id text, p_batch_id bigint) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM pgfanout.replica_staged_value s WHERE s.source_id = p_source_id AND s.batch_id = p_batch_id
$$;

-- pgfanout.replica_record_conflict(...): records a conflict the applier detected and resolved
-- while applying the batch after the applied one (see the replica_conflict table).
-- Parameters: source id, batch id, where the change sits in its batch, table schema and name, op
--   (I, U, D), kind, resolution, and key, local row, old row, new row as JSON (each may be NULL).
-- Returns: the conflict's id. Tables touched: replica_conflict (insert); reads replica_position.
-- Invariant: conflicts are recorded only for the batch being applied.
CREATE OR REPLACE FUNCTION pgfanout.replica_record_conflict(p_source_id text, p_batch_id bigint, p_change text, p_table_schema text, p_table_name text,
    p_op text, p_kind text, p_resolution text, p_key jsonb, p_local_row jsonb, p_old_row jsonb, p_new_row jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    applied bigint;
    id bigint;
BEGIN
    IF p_source_id IS NULL OR p_source_id = '' OR p_batch_id IS NULL OR p_batch_id < 1 THEN
        PERFORM pgfanout.replica_check_source('replica_record_conflict', p_source_id, p_batch_id);
    END IF;
    SELECT p.applied_batch_id INTO applied FROM pgfanout.replica_position p WHERE p.source_id = p_source_id;
    IF applied IS NULL OR p_batch_id <> applied + 1 THEN
        RAISE EXCEPTION 'pgfanout.replica_record_conflict: source % %; only conflicts of the batch after the applied one may be recorded, not of batch %',
            p_source_id, CASE WHEN applied IS NULL THEN 'has no position on this replica' ELSE pg_catalog.format('has applied batch %s', applied) END, p_batch_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO pgfanout.replica_conflict (source_id, batch_id, change, table_schema, table_name, op, kind, resolution, key, local_row, old_row, new_row)
    VALUES (p_source_id, p_batch_id, p_change, p_table_schema, p_table_name, p_op, p_kind, p_resolution, p_key, p_local_row, p_old_row, p_new_row)
    RETURNING conflict_id INTO id;
    RETURN id;
END
$$;

-- pgfanout.replica_state(p_source_id): where the replica stands for a source, for status, verify
-- and bootstrap. Parameters: source id.
-- Returns one row: the position (NULLs when the replica has none for the source): batch_id, part,
--   state, applied_batch_id, applied_at, source_time; and the bootstrap in progress (NULLs when
--   none): its batch, snapshot name, start, tables copied and tables.
-- Tables touched: reads replica_position, replica_bootstrap, replica_bootstrap_table.
CREATE OR REPLACE FUNCTION pgfanout.replica_state(p_source_id text,
    OUT batch_id bigint, OUT part integer, OUT state text, OUT applied_batch_id bigint, OUT applied_at timestamptz, OUT source_time timestamptz,
    OUT bootstrap_batch_id bigint, OUT bootstrap_snapshot_name text, OUT bootstrap_started_at timestamptz,
    OUT bootstrap_tables_copied integer, OUT bootstrap_tables integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.batch_id, p.part, p.state, p.applied_batch_id, p.applied_at, p.source_time,
           b.batch_id, b.snapshot_name, b.started_at,
           CASE WHEN b.source_id IS NOT NULL THEN (SELECT pg_catalog.count(t.copied_at)::integer FROM pgfanout.replica_bootstrap_table t WHERE t.source_id = p_source_id) END,
           CASE WHEN b.source_id IS NOT NULL THEN (SELECT pg_catalog.count(*)::integer FROM pgfanout.replica_bootstrap_table t WHERE t.source_id = p_source_id) END
      FROM (SELECT 1) AS one
      LEFT JOIN pgfanout.replica_position p ON p.source_id = p_source_id
      LEFT JOIN pgfanout.replica_bootstrap b ON b.source_id = p_source_id
$$;

-- pgfanout.replica_bootstrap_begin(p_source_id, p_force): the bootstrap's first step on the
-- replica. Locks the source's position (FOR UPDATE) and returns the batch it has applied (NULL
-- when the replica does not follow the source). With p_force, a replica that follows the source
-- forgets it: its position, staged parts and values, and its record of applied batches (batches
-- at or below the bootstrap's are then dropped unverified, as copied ones are).
-- Parameters: source id, whether to forget a position. Returns: the applied batch id, or NULL.
-- Tables touched: replica_position, replica_staged_part, replica_staged_value,
--   replica_applied_batch.
CREATE OR REPLACE FUNCTION pgfanout.replica_bootstrap_begin(p_source_id text, p_force boolean) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    applied bigint;
BEGIN
    IF p_source_id IS NULL OR p_source_id = '' OR p_force IS NULL THEN
        RAISE EXCEPTION 'pgfanout.replica_bootstrap_begin: source id % and force % are not allowed; expected a source id and true or false',
            quote_nullable(p_source_id), coalesce(p_force::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT p.applied_batch_id INTO applied FROM pgfanout.replica_position p WHERE p.source_id = p_source_id FOR UPDATE;
    IF applied IS NOT NULL AND p_force THEN
        DELETE FROM pgfanout.replica_position p WHERE p.source_id = p_source_id;
        DELETE FROM pgfanout.replica_staged_part s WHERE s.source_id = p_source_id;
        DELETE FROM pgfanout.replica_staged_value s WHERE s.source_id = p_source_id;
        DELETE FROM pgfanout.replica_applied_batch h WHERE h.source_id = p_source_id;
    END IF;
    RETURN applied;
END
$$;

-- pgfanout.replica_bootstrap_record(p_source_id, p_batch_id, p_snapshot_name, p_resume, p_schemas,
-- p_tables): records a bootstrap of the source at batch p_batch_id and its tables. Resuming, the
-- recorded bootstrap must be at that batch: it takes the new snapshot name and keeps what was
-- copied; otherwise any earlier bootstrap of the source is replaced.
-- Parameters: source id, batch id (>= 0), the exported snapshot's name, whether to resume, the
--   tables as two arrays of one length (schemas, names).
-- Returns: the tables already copied (schema, name), when resuming.
-- Tables touched: replica_bootstrap, replica_bootstrap_table; reads replica_position.
-- Invariant: a source has a bootstrap in progress or a position, never both.
CREATE OR REPLACE FUNCTION pgfanout.replica_bootstrap_record(p_source_id text, p_batch_id bigint, p_snapshot_name text, p_resume boolean, p_schemas text[], p_tables text[])
RETURNS TABLE (table_schema text, table_name text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    recorded bigint;
BEGIN
    IF p_source_id IS NULL OR p_source_id = '' OR p_batch_id IS NULL OR p_batch_id < 0 OR p_snapshot_name IS NULL OR p_resume IS NULL
       OR p_schemas IS NULL OR p_tables IS NULL OR pg_catalog.cardinality(p_schemas) <> pg_catalog.cardinality(p_tables) THEN
        RAISE EXCEPTION 'pgfanout.replica_bootstrap_record: source id %, batch id %, snapshot %, resume % and the tables are not allowed; expected a source id, a batch id >= 0, a snapshot name, true or false, and two arrays of one length',
            quote_nullable(p_source_id), coalesce(p_batch_id::text, 'NULL'), quote_nullable(p_snapshot_name), coalesce(p_resume::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT FROM pgfanout.replica_position p WHERE p.source_id = p_source_id) THEN
        RAISE EXCEPTION 'pgfanout.replica_bootstrap_record: source % has a position on this replica; a bootstrap starts with pgfanout.replica_bootstrap_begin(source, true)', p_source_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT b.batch_id INTO recorded FROM pgfanout.replica_bootstrap b WHERE b.source_id = p_source_id FOR UPDATE;
    IF p_resume THEN
        IF recorded IS DISTINCT FROM p_batch_id THEN
            RAISE EXCEPTION 'pgfanout.replica_bootstrap_record: source % has % on this replica; cannot resume one at batch %',
                p_source_id, CASE WHEN recorded IS NULL THEN 'no bootstrap' ELSE pg_catalog.format('a bootstrap at batch %s', recorded) END, p_batch_id
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        UPDATE pgfanout.replica_bootstrap b SET snapshot_name = p_snapshot_name WHERE b.source_id = p_source_id;
    ELSE
        -- Its tables' rows explicitly: under session_replication_role = replica the ON DELETE CASCADE does not fire.
        DELETE FROM pgfanout.replica_bootstrap_table t WHERE t.source_id = p_source_id;
        DELETE FROM pgfanout.replica_bootstrap b WHERE b.source_id = p_source_id;
        INSERT INTO pgfanout.replica_bootstrap (source_id, batch_id, snapshot_name) VALUES (p_source_id, p_batch_id, p_snapshot_name);
    END IF;
    INSERT INTO pgfanout.replica_bootstrap_table (source_id, table_schema, table_name)
    SELECT p_source_id, x.s, x.t FROM ROWS FROM (pg_catalog.unnest(p_schemas), pg_catalog.unnest(p_tables)) AS x(s, t)
    ON CONFLICT DO NOTHING;
    RETURN QUERY SELECT t.table_schema, t.table_name FROM pgfanout.replica_bootstrap_table t
                  WHERE t.source_id = p_source_id AND t.copied_at IS NOT NULL ORDER BY 1, 2;
END
$$;

-- pgfanout.replica_bootstrap_tables(p_source_id): the tables of the source's bootstrap in progress.
-- Parameters: source id. Returns: schema, name, rows copied and when (NULL while not copied).
-- Tables touched: reads replica_bootstrap_table.
CREATE OR REPLACE FUNCTION pgfanout.replica_bootstrap_tables(p_source_id text)
RETURNS TABLE (table_schema text, table_name text, rows_copied bigint, copied_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.table_schema, t.table_name, t.rows_copied, t.copied_at FROM pgfanout.replica_bootstrap_table t
     WHERE t.source_id = p_source_id ORDER BY 1, 2
$$;

-- pgfanout.replica_bootstrap_copy_begin(p_source_id, p_schema, p_table): starts the copy of one
-- table of a bootstrap: locks its record (FOR UPDATE) until the copying transaction ends.
-- Parameters: source id, table schema and name. Returns: whether it was copied before (its copy
--   is then emptied and done again), NULL when the bootstrap has no such table (another took over).
-- Tables touched: replica_bootstrap_table (lock).
CREATE OR REPLACE FUNCTION pgfanout.replica_bootstrap_copy_begin(p_source_id text, p_schema text, p_table text) RETURNS boolean
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    SELECT t.copied_at IS NOT NULL FROM pgfanout.replica_bootstrap_table t
     WHERE t.source_id = p_source_id AND t.table_schema = p_schema AND t.table_name = p_table FOR UPDATE
$$;

-- pgfanout.replica_bootstrap_copy_done(p_source_id, p_schema, p_table, p_rows): marks one table of
-- a bootstrap copied, in the transaction that copied it.
-- Parameters: source id, table schema and name, rows copied. Returns: void.
-- Tables touched: replica_bootstrap_table.
CREATE OR REPLACE FUNCTION pgfanout.replica_bootstrap_copy_done(p_source_id text, p_schema text, p_table text, p_rows bigint) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE pgfanout.replica_bootstrap_table t SET rows_copied = p_rows, copied_at = pg_catalog.now()
     WHERE t.source_id = p_source_id AND t.table_schema = p_schema AND t.table_name = p_table;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'pgfanout.replica_bootstrap_copy_done: the bootstrap of source % has no table %.%', quote_nullable(p_source_id), quote_ident(p_schema), quote_ident(p_table)
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

-- pgfanout.replica_bootstrap_finish(p_source_id): ends a bootstrap whose tables are all copied:
-- records the position at its batch (pgfanout.replica_start) and forgets the bootstrap, so the
-- applier starts after that batch.
-- Parameters: source id. Returns: the batch the position starts at.
-- Tables touched: replica_bootstrap, replica_bootstrap_table, replica_position.
-- Invariant: a position is recorded only over tables that were all copied.
CREATE OR REPLACE FUNCTION pgfanout.replica_bootstrap_finish(p_source_id text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    recorded bigint;
    missing text;
BEGIN
    SELECT b.batch_id INTO recorded FROM pgfanout.replica_bootstrap b WHERE b.source_id = p_source_id FOR UPDATE;
    IF recorded IS NULL THEN
        RAISE EXCEPTION 'pgfanout.replica_bootstrap_finish: source % has no bootstrap in progress on this replica', quote_nullable(p_source_id)
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    SELECT pg_catalog.string_agg(pg_catalog.format('%I.%I', t.table_schema, t.table_name), ', ' ORDER BY t.table_schema, t.table_name) INTO missing
      FROM pgfanout.replica_bootstrap_table t WHERE t.source_id = p_source_id AND t.copied_at IS NULL;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'pgfanout.replica_bootstrap_finish: table(s) % of the bootstrap of source % are not copied', missing, p_source_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM pgfanout.replica_start(p_source_id, recorded);
    DELETE FROM pgfanout.replica_bootstrap_table t WHERE t.source_id = p_source_id;
    DELETE FROM pgfanout.replica_bootstrap b WHERE b.source_id = p_source_id;
    RETURN recorded;
END
$$;

-- Nothing here is for everyone: PostgreSQL grants EXECUTE to PUBLIC on every new function, and
-- SECURITY DEFINER functions must not be callable by everyone. Every function of the replica side
-- (the replica_* functions of schema pgfanout) loses PUBLIC's EXECUTE here, so a function added
-- later cannot be forgotten. roles.sql grants the apply protocol to pgfanout_applier.
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
           AND p.proname::pg_catalog.text LIKE 'replica\_%'
         ORDER BY p.oid
    LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
    PERFORM pg_catalog.set_config('search_path', path, true);
END
$grants$;
