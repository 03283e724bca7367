-- Custom SQL migration (drizzle-kit cannot express triggers).
-- job_events and allocations are history: rows are only ever inserted.
-- A retention job that must prune them has to say so explicitly
-- (ALTER TABLE … DISABLE TRIGGER in its own migration).
CREATE OR REPLACE FUNCTION gpuorch_forbid_mutation() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation', TABLE = TG_TABLE_NAME;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER job_events_append_only
  BEFORE UPDATE OR DELETE ON job_events
  FOR EACH ROW EXECUTE FUNCTION gpuorch_forbid_mutation();
--> statement-breakpoint
CREATE TRIGGER job_events_no_truncate
  BEFORE TRUNCATE ON job_events
  FOR EACH STATEMENT EXECUTE FUNCTION gpuorch_forbid_mutation();
--> statement-breakpoint
CREATE TRIGGER allocations_append_only
  BEFORE UPDATE OR DELETE ON allocations
  FOR EACH ROW EXECUTE FUNCTION gpuorch_forbid_mutation();
--> statement-breakpoint
CREATE TRIGGER allocations_no_truncate
  BEFORE TRUNCATE ON allocations
  FOR EACH STATEMENT EXECUTE FUNCTION gpuorch_forbid_mutation();
