-- pgfanout replica 1.0.0 → 1.1.0: the applier verifies duplicates and detects a source that went
-- back in time (replica_applied_batch). Run by installReplica() on a 1.0.0 replica.

CREATE OR REPLACE FUNCTION pgfanout.replica_version() RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT '1.1.0'::text $$;

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
