-- Runs once, when the postgres container initialises its data directory: the two replica
-- databases next to the source database (POSTGRES_DB). pgfanout installs its own schema
-- in each when `pgfanout local` starts.
CREATE DATABASE replica_a;
CREATE DATABASE replica_b;
