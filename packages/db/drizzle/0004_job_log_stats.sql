CREATE TABLE "job_log_stats" (
	"job_id" uuid PRIMARY KEY NOT NULL,
	"lines" bigint DEFAULT 0 NOT NULL,
	"dropped" bigint DEFAULT 0 NOT NULL,
	"marker_seq" bigint
);
--> statement-breakpoint
ALTER TABLE "job_log_stats" ADD CONSTRAINT "job_log_stats_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE no action ON UPDATE no action;