ALTER TYPE "public"."node_state" ADD VALUE 'preempting';--> statement-breakpoint
ALTER TABLE "job_artifacts" ADD COLUMN "task_id" uuid;--> statement-breakpoint
ALTER TABLE "job_artifacts" ADD COLUMN "emergency" boolean DEFAULT false NOT NULL;--> statement-breakpoint
ALTER TABLE "job_artifacts" ADD COLUMN "deleted_at" timestamp with time zone;