-- pgfanout source: upgrade from 1.0.0 to 1.1.0. Run by installSource() (functions/ops/install.ts)
-- in the installer's transaction; afterwards the database holds exactly what
-- pgfanout--1.1.0.sql installs (functions/ops/install.test.ts checks it).

-- pgfanout.version(): the installed version of the source objects.
-- Parameters: none. Returns: text, e.g. '1.1.0'. Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.version() RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT '1.1.0'::text $$;

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
