-- pgfanout source: roles and grants. installSource() runs this after the install or
-- upgrade scripts whenever they lead to the newest version (an install stopped at an older
-- targetVersion gets none of it), so every object named here exists; it is idempotent and
-- always describes the newest version.
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
            -- Created a moment ago by an installer in another database of this cluster (the
            -- advisory lock is per database): duplicate_object once it has committed; while it
            -- had not, CREATE ROLE waited for it on pg_authid's unique index and fails there.
            WHEN duplicate_object OR unique_violation THEN
                NULL;
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
    pgfanout.batch_encoding(bigint, integer),
    pgfanout.batch_values(bigint),
    pgfanout.finish_batch(bigint),
    pgfanout.publisher_waiting(boolean),
    pgfanout.status(),
    pgfanout.source_id(),
    pgfanout.version(),
    -- the WAL capture mode's batch protocol
    pgfanout.capture_mode(),
    pgfanout.wal_state(),
    pgfanout.wal_changes(),
    pgfanout.wal_record_batch(bigint, pg_lsn, pg_lsn, integer, text, bigint),
    pgfanout.wal_finish_batch(bigint, pg_lsn),
    pgfanout.wal_skip(pg_lsn),
    pgfanout.wal_status()
TO pgfanout_publisher;
