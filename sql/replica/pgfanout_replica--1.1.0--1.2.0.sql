-- pgfanout replica 1.1.0 → 1.2.0. Run by installReplica() on a 1.1.0 replica; afterwards the
-- database holds exactly what pgfanout_replica--1.2.0.sql installs (functions/ops/releases.test.ts
-- checks it).

CREATE OR REPLACE FUNCTION pgfanout.replica_version() RETURNS text
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT '1.2.0'::text $$;
