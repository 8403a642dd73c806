-- pgfanout replica 1.2.0: where each source's stream stands on this replica, and staging for
-- batches that arrive in several parts. Run by installReplica(); safe to run again.
--
-- A database can be a source and a replica at once, so every object here is named replica_*.
--
-- How the applier uses it (functions/core/replica/apply.ts), always inside the transaction that applies
-- the changes, so the position and the data can never disagree:
--   1. lock the source's row of replica_position (FOR UPDATE);
--   2. a message at or below the position is a duplicate: nothing happens;
--   3. a message that does not follow the position is a gap: refused, nothing happens;
--   4. a part that is not final is stored in replica_staged_part and the position records it;
--   5. the final part applies the staged parts (read back one at a time) and itself, then
--      deletes the staged parts and records the batch as applied (replica_position) with its
--      parts' digests and origin (replica_applied_batch), against which a message at or below
--      the position is verified before it is dropped as a duplicate.
-- replica_staged_value holds, only during that transaction, the pieces of values of changes
-- too large for one message; the replica concatenates them itself (string_agg).

CREATE SCHEMA IF NOT EXISTS pgfanout;

-- pgfanout.replica_version(): the installed replica version.
-- Parameters: none. Returns: text. Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.replica_version() RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT '1.2.0'::text $$;

-- One row per source this replica follows.
--   batch_id:         the batch applied last (state 'applied') or being staged (state 'staging')
--   part:             last staged part of batch_id; NULL when batch_id is applied whole
--   applied_batch_id: the batch applied whole last (batch_id - 1 while staging)
--   part_digest:      digest of the last staged part (the next part's "after" must equal it)
--   source_time:      source time of the last applied batch, as the publisher sent it
CREATE TABLE IF NOT EXISTS pgfanout.replica_position (
    source_id        text        PRIMARY KEY,
    batch_id         bigint      NOT NULL CHECK (batch_id >= 0),
    part             integer     CHECK (part >= 0),
    state            text        NOT NULL CHECK (state IN ('applied', 'staging')),
    applied_batch_id bigint      NOT NULL CHECK (applied_batch_id >= 0),
    part_digest      text,
    applied_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    source_time      timestamptz,
    CONSTRAINT replica_position_state_part CHECK ((state = 'applied') = (part IS NULL)),
    CONSTRAINT replica_position_state_batch CHECK (
        (state = 'applied' AND applied_batch_id = batch_id) OR
        (state = 'staging' AND applied_batch_id < batch_id AND part_digest IS NOT NULL))
);

-- The batches this replica applied last, per source, so that a message of a batch at or below the
-- position is recognised as a duplicate only when it is one (pgfanout.replica_position holds only
-- the latest batch). The applier writes a row in the transaction that applies the batch and
-- deletes rows more than 1000 batches behind it (REPLICA_HISTORY_BATCHES in
-- functions/core/replica/position.ts); older batches, batches copied by a bootstrap and skipped
-- batches have no row, and a message of one of them is dropped as a duplicate unverified.
--   part_digests:    the digest of each part's body (functions/core/wire/digest.ts), by part
--   origin_system, origin_timeline, origin_lsn: the envelope's origin (source system identifier,
--                    timeline, WAL position of the batch's making), NULL when it carried none
CREATE TABLE IF NOT EXISTS pgfanout.replica_applied_batch (
    source_id       text        NOT NULL,
    batch_id        bigint      NOT NULL CHECK (batch_id > 0),
    part_digests    text[]      NOT NULL CHECK (pg_catalog.cardinality(part_digests) > 0),
    origin_system   text,
    origin_timeline bigint,
    origin_lsn      pg_lsn,
    applied_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (source_id, batch_id),
    CONSTRAINT replica_applied_batch_origin CHECK (
        (origin_system IS NULL) = (origin_timeline IS NULL) AND (origin_system IS NULL) = (origin_lsn IS NULL))
);

-- Parts of a batch staged until its final part arrives (deleted in that final transaction).
CREATE TABLE IF NOT EXISTS pgfanout.replica_staged_part (
    source_id text        NOT NULL,
    batch_id  bigint      NOT NULL,
    part      integer     NOT NULL CHECK (part >= 0),
    digest    text        NOT NULL,
    body      text        NOT NULL,
    staged_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (source_id, batch_id, part)
);

-- Pieces of the values of one split change, written and deleted inside one apply transaction
-- (so nothing here outlives a commit: it needs no WAL).
CREATE UNLOGGED TABLE IF NOT EXISTS pgfanout.replica_staged_value (
    source_id text    NOT NULL,
    batch_id  bigint  NOT NULL,
    slot      integer NOT NULL,
    seq       integer NOT NULL,
    value     text,
    PRIMARY KEY (source_id, batch_id, slot, seq)
);

-- A bootstrap in progress (`pgfanout bootstrap`, functions/ops/bootstrap.ts): this replica's
-- tables are being copied from a snapshot of the source, and replica_position gets the source's
-- row only when every table is copied. While a row is here the applier lets the source's
-- messages wait in the queue instead of applying them.
--   batch_id:      the batch the snapshot corresponds to (pgfanout.mark_snapshot_batch on the
--                  source): the copy holds batches 1..batch_id, the applier starts after it
--   snapshot_name: the source's exported snapshot the copies import (pg_export_snapshot); it
--                  exists only while the bootstrap's source transaction stays open
CREATE TABLE IF NOT EXISTS pgfanout.replica_bootstrap (
    source_id     text        PRIMARY KEY,
    batch_id      bigint      NOT NULL CHECK (batch_id >= 0),
    snapshot_name text        NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT pg_catalog.now()
);

-- The tables of a bootstrap in progress. A table is copied in one transaction that also sets
-- copied_at here, so a copy interrupted anywhere leaves the table empty and copied_at NULL.
CREATE TABLE IF NOT EXISTS pgfanout.replica_bootstrap_table (
    source_id    text        NOT NULL REFERENCES pgfanout.replica_bootstrap ON DELETE CASCADE,
    table_schema text        NOT NULL,
    table_name   text        NOT NULL,
    rows_copied  bigint,
    copied_at    timestamptz,
    PRIMARY KEY (source_id, table_schema, table_name)
);

-- pgfanout.replica_start(p_source_id, p_batch_id): records that this replica already holds the
-- source's state up to and including batch p_batch_id (a replica seeded from a snapshot whose
-- stream position is known), so the applier starts after it. Idempotent for the same position.
-- Parameters: source id, batch id. Returns: void. Tables touched: replica_position.
CREATE OR REPLACE FUNCTION pgfanout.replica_start(p_source_id text, p_batch_id bigint) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_batch bigint;
    current_state text;
BEGIN
    IF p_source_id IS NULL OR p_source_id = '' OR p_batch_id IS NULL OR p_batch_id < 0 THEN
        RAISE EXCEPTION 'pgfanout.replica_start: source id % and batch id % are not allowed; expected a source id and a batch id >= 0',
            quote_nullable(p_source_id), coalesce(p_batch_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pgfanout.replica_position (source_id, batch_id, part, state, applied_batch_id)
    VALUES (p_source_id, p_batch_id, NULL, 'applied', p_batch_id)
    ON CONFLICT (source_id) DO NOTHING;
    SELECT p.batch_id, p.state INTO current_batch, current_state
      FROM pgfanout.replica_position p WHERE p.source_id = p_source_id FOR UPDATE;
    IF current_batch <> p_batch_id OR current_state <> 'applied' THEN
        RAISE EXCEPTION 'pgfanout.replica_start: source % is already at batch % (%); refusing to move it to %',
            p_source_id, current_batch, current_state, p_batch_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
END
$$;

-- Batches an operator skipped on this replica (pgfanout redrive --skip): their changes are not
-- on this replica, which may therefore differ from the source in the tables they touched.
--   previous_state/previous_part: where replica_position stood (a batch half staged is dropped)
--   tables:  the tables the batch touched, as far as the operator's tool could read them
--   reason:  why it was skipped (e.g. the error that parked it in the dead-letter queue)
CREATE TABLE IF NOT EXISTS pgfanout.replica_skipped (
    source_id      text        NOT NULL,
    batch_id       bigint      NOT NULL CHECK (batch_id > 0),
    previous_state text        NOT NULL,
    previous_part  integer,
    tables         text[],
    reason         text,
    skipped_by     text        NOT NULL DEFAULT current_user,
    skipped_at     timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (source_id, batch_id)
);

-- pgfanout.replica_skip(p_source_id, p_batch_id, p_reason, p_tables): records batch p_batch_id
-- of the source as applied without applying it, so the applier continues with the batch after
-- it; staged parts of that batch are dropped. Only the next batch the replica expects may be
-- skipped (the batch after the applied one, whole or half staged): anything else is refused,
-- naming the position. Each skip is recorded in replica_skipped.
-- Parameters: source id, batch id, reason (may be NULL), tables the batch touched (may be NULL).
-- Returns: the replica_skipped row. Tables touched: replica_position, replica_staged_part,
-- replica_staged_value, replica_skipped.
CREATE OR REPLACE FUNCTION pgfanout.replica_skip(p_source_id text, p_batch_id bigint, p_reason text DEFAULT NULL, p_tables text[] DEFAULT NULL)
RETURNS pgfanout.replica_skipped
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pos pgfanout.replica_position;
    skipped pgfanout.replica_skipped;
BEGIN
    IF p_source_id IS NULL OR p_source_id = '' OR p_batch_id IS NULL OR p_batch_id < 1 THEN
        RAISE EXCEPTION 'pgfanout.replica_skip: source id % and batch id % are not allowed; expected a source id and a batch id >= 1',
            quote_nullable(p_source_id), coalesce(p_batch_id::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO pgfanout.replica_position (source_id, batch_id, part, state, applied_batch_id)
    VALUES (p_source_id, 0, NULL, 'applied', 0)
    ON CONFLICT (source_id) DO NOTHING;
    SELECT * INTO pos FROM pgfanout.replica_position p WHERE p.source_id = p_source_id FOR UPDATE;
    IF p_batch_id <> pos.applied_batch_id + 1 THEN
        RAISE EXCEPTION 'pgfanout.replica_skip: source % has applied batch % (%); only the next batch, %, may be skipped, not %',
            p_source_id, pos.applied_batch_id,
            CASE WHEN pos.state = 'staging' THEN format('batch %s staged up to part %s', pos.batch_id, pos.part) ELSE 'nothing staged' END,
            pos.applied_batch_id + 1, p_batch_id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    DELETE FROM pgfanout.replica_staged_part s WHERE s.source_id = p_source_id;
    DELETE FROM pgfanout.replica_staged_value s WHERE s.source_id = p_source_id;
    UPDATE pgfanout.replica_position p
       SET batch_id = p_batch_id, part = NULL, state = 'applied', applied_batch_id = p_batch_id,
           part_digest = NULL, applied_at = pg_catalog.now()
     WHERE p.source_id = p_source_id;
    INSERT INTO pgfanout.replica_skipped (source_id, batch_id, previous_state, previous_part, tables, reason)
    VALUES (p_source_id, p_batch_id, pos.state, pos.part, p_tables, p_reason)
    RETURNING * INTO skipped;
    RETURN skipped;
END
$$;

-- Conflicts the applier detected and resolved (ApplyOptions.conflicts 'apply-remote' or
-- 'keep-local', for databases that are each other's replica): one row per conflicting change.
--   kind:       insert_exists (an INSERT whose key is already here), update_differs /
--               delete_differs (the row found by identity no longer holds the change's old
--               image in the columns the old image carries), update_missing / delete_missing
--               (no row has the change's old identity)
--   resolution: apply-remote (the incoming change was applied: an UPDATE of a missing row
--               inserts its new row) or keep-local (the row here was left as it was)
--   key, local_row, old_row, new_row: the identity, this replica's row before the change
--               (NULL when missing), the change's old image and new image, as JSON
--   change:     where the change sits in its batch (part and index)
CREATE TABLE IF NOT EXISTS pgfanout.replica_conflict (
    conflict_id  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_id    text        NOT NULL,
    batch_id     bigint      NOT NULL,
    change       text        NOT NULL,
    table_schema text        NOT NULL,
    table_name   text        NOT NULL,
    op           text        NOT NULL CHECK (op IN ('I', 'U', 'D')),
    kind         text        NOT NULL CHECK (kind IN ('insert_exists', 'update_differs', 'update_missing', 'delete_differs', 'delete_missing')),
    resolution   text        NOT NULL CHECK (resolution IN ('apply-remote', 'keep-local')),
    key          jsonb,
    local_row    jsonb,
    old_row      jsonb,
    new_row      jsonb,
    detected_at  timestamptz NOT NULL DEFAULT pg_catalog.now()
);
