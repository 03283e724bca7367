-- A job row carries its spec twice (the YAML verbatim and the normalized jsonb), together
-- past PostgreSQL's 2 kB TOAST threshold, so every submit compressed both. pglz was ~20% of
-- PostgreSQL's CPU per submitted job; lz4 does the same work for less (bench/submit-h2load,
-- "PostgreSQL ms/job"). Applies to rows written from now on; old rows stay readable.
-- Servers built without lz4 (PGlite, some custom builds) keep pglz.
DO $$
BEGIN
  ALTER TABLE "jobs" ALTER COLUMN "spec_yaml" SET COMPRESSION lz4;
  ALTER TABLE "jobs" ALTER COLUMN "spec" SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
  RAISE NOTICE 'lz4 is not available on this server: job specs stay pglz-compressed';
END $$;
