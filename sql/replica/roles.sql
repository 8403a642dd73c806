-- pgfanout replica: roles and grants. installReplica() runs this after the install or upgrade
-- scripts whenever they lead to the newest version (an install stopped at an older
-- targetVersion gets none of it), so every object named here exists; it is idempotent and
-- always describes the newest version.
--
-- pgfanout_applier (NOLOGIN): the applier's login role is made a member of it. It may read the
-- replica_* tables (positions, staging, history, conflicts) and change them only through the apply
-- protocol's functions (since 1.2.0; see the replica script). Writing the replicated tables themselves
-- is granted table by table by the replica's owner, as for any application role; setting
-- session_replication_role needs superuser (rds_superuser on RDS, or GRANT SET ON PARAMETER on
-- PostgreSQL 15+), otherwise the applier uses its documented fallback, pgfanout.origin.
--
-- Creating the role needs CREATEROLE (on Amazon RDS the master user has it). Where the
-- installing role lacks it, a role with it creates the role first:
--   CREATE ROLE pgfanout_applier NOLOGIN;

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'pgfanout_applier') THEN
        BEGIN
            CREATE ROLE pgfanout_applier NOLOGIN;
        EXCEPTION
            -- Created a moment ago by an installer in another database of this cluster (the
            -- advisory lock is per database): duplicate_object once it has committed; while it
            -- had not, CREATE ROLE waited for it on pg_authid's unique index and fails there.
            WHEN duplicate_object OR unique_violation THEN
                NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'pgfanout: role pgfanout_applier does not exist and role % may not create it', current_user
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = 'Run CREATE ROLE pgfanout_applier NOLOGIN as a role with CREATEROLE, then install again.';
        END;
    END IF;
END
$roles$;

GRANT USAGE ON SCHEMA pgfanout TO pgfanout_applier;
GRANT SELECT ON
    pgfanout.replica_position,
    pgfanout.replica_staged_part,
    pgfanout.replica_staged_value
TO pgfanout_applier;
REVOKE ALL ON FUNCTION pgfanout.replica_start(text, bigint) FROM PUBLIC;
-- The applier only reads whether a bootstrap is in progress; the bootstrap runs as the owner.
GRANT SELECT ON pgfanout.replica_bootstrap, pgfanout.replica_bootstrap_table TO pgfanout_applier;
REVOKE ALL ON FUNCTION pgfanout.replica_skip(text, bigint, text, text[]) FROM PUBLIC;
GRANT SELECT ON pgfanout.replica_skipped TO pgfanout_applier;
GRANT EXECUTE ON FUNCTION pgfanout.replica_version() TO pgfanout_applier;
GRANT SELECT ON pgfanout.replica_conflict TO pgfanout_applier;
-- The applied batches' digests and origins, kept for the last batches only.
GRANT SELECT ON pgfanout.replica_applied_batch TO pgfanout_applier;

-- The applier writes the replica_* tables only through the apply protocol's functions
-- (SECURITY DEFINER): the write rights versions before 1.2.0 granted are taken back, and the
-- protocol is granted. Every replica_* function is revoked from PUBLIC by the install scripts;
-- only these are granted.
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON
    pgfanout.replica_position,
    pgfanout.replica_staged_part,
    pgfanout.replica_staged_value,
    pgfanout.replica_applied_batch,
    pgfanout.replica_conflict
FROM pgfanout_applier;
GRANT EXECUTE ON FUNCTION
    pgfanout.replica_lock(text),
    pgfanout.replica_applied_batch(text, bigint),
    pgfanout.replica_stage_part(text, bigint, integer, text, text, text),
    pgfanout.replica_staged_part(text, bigint, integer),
    pgfanout.replica_advance(text, bigint, text[], timestamptz, text, bigint, pg_lsn),
    pgfanout.replica_stage_value(text, bigint, integer[], integer[], text[]),
    pgfanout.replica_staged_value(text, bigint, integer),
    pgfanout.replica_clear_values(text, bigint),
    pgfanout.replica_record_conflict(text, bigint, text, text, text, text, text, text, jsonb, jsonb, jsonb, jsonb),
    pgfanout.replica_state(text)
TO pgfanout_applier;
