-- pgfanout replica: roles and grants. installReplica() runs this after the install or upgrade
-- scripts whenever they lead to the newest version (an install stopped at an older
-- targetVersion gets none of it), so every object named here exists; it is idempotent and
-- always describes the newest version.
--
-- pgfanout_applier (NOLOGIN): the applier's login role is made a member of it. It may read and
-- write the replica_* tables (positions and staging). Writing the replicated tables themselves
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
GRANT SELECT, INSERT, UPDATE, DELETE ON
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
GRANT SELECT, INSERT ON pgfanout.replica_conflict TO pgfanout_applier;
-- The applied batches' digests and origins, kept for the last batches only.
GRANT SELECT, INSERT, UPDATE, DELETE ON pgfanout.replica_applied_batch TO pgfanout_applier;
