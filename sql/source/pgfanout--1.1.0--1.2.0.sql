-- pgfanout source: upgrade from 1.1.0 to 1.2.0. Run by installSource() (functions/ops/install.ts)
-- in the installer's transaction; afterwards the database holds exactly what
-- pgfanout--1.2.0.sql installs (functions/ops/releases.test.ts checks it). Every object below
-- is copied from pgfanout--1.2.0.sql.

-- pgfanout.version(): the installed version of the source objects.
-- Parameters: none. Returns: text, e.g. '1.2.0'. Tables touched: none.
CREATE OR REPLACE FUNCTION pgfanout.version() RETURNS text
LANGUAGE sql IMMUTABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT '1.2.0'::text $$;
