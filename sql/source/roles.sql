-- pgfanout source: roles and grants. installSource() runs this after the install or
-- upgrade scripts, every time; it is idempotent and always describes the newest version.
--
-- pgfanout_publisher (NOLOGIN): the publisher's login role is made a member of it. It may
-- run exactly the batch protocol and nothing else: no table of pgfanout or of the
-- application can be read or written through it, and no capture function (add_table,
-- remove_table, ...) can be called. The protocol functions are SECURITY DEFINER, so they
-- read and write pgfanout's tables as their owner.
--
-- Creating the role needs CREATEROLE (on Amazon RDS the master user has it). Where the
-- installing role lacks it, a role with it creates the role first:
--   CREATE ROLE pgfanout_publisher NOLOGIN;

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgfanout_publisher') THEN
        BEGIN
            CREATE ROLE pgfanout_publisher NOLOGIN;
        EXCEPTION
            WHEN duplicate_object THEN
                NULL; -- created a moment ago by an installer in another database of this cluster
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'pgfanout: role pgfanout_publisher does not exist and role % may not create it', current_user
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'Run CREATE ROLE pgfanout_publisher NOLOGIN as a role with CREATEROLE, then install again.';
        END;
    END IF;
END
$roles$;

GRANT USAGE ON SCHEMA pgfanout TO pgfanout_publisher;

GRANT EXECUTE ON FUNCTION
    pgfanout.next_batch(),
    pgfanout.batch_values(bigint),
    pgfanout.finish_batch(bigint),
    pgfanout.publisher_waiting(boolean),
    pgfanout.status(),
    pgfanout.source_id(),
    pgfanout.version()
TO pgfanout_publisher;

-- Functions of later versions: this file also runs after installing an older version on request.
DO $grants$
BEGIN
    IF pg_catalog.to_regprocedure('pgfanout.batch_encoding(bigint, integer)') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION pgfanout.batch_encoding(bigint, integer) TO pgfanout_publisher;
    END IF;
    -- The WAL capture mode's publisher protocol (1.2.0).
    IF pg_catalog.to_regprocedure('pgfanout.wal_state()') IS NOT NULL THEN
        GRANT EXECUTE ON FUNCTION
            pgfanout.capture_mode(),
            pgfanout.wal_state(),
            pgfanout.wal_changes(),
            pgfanout.wal_record_batch(bigint, pg_lsn, pg_lsn, integer, text, bigint),
            pgfanout.wal_finish_batch(bigint, pg_lsn),
            pgfanout.wal_skip(pg_lsn),
            pgfanout.wal_status()
        TO pgfanout_publisher;
    END IF;
END
$grants$;
