CREATE TYPE "public"."artifact_type" AS ENUM('checkpoint', 'log', 'model', 'metrics');--> statement-breakpoint
CREATE TYPE "public"."execution_mode" AS ENUM('single_cluster', 'multi_task');--> statement-breakpoint
CREATE TYPE "public"."framework" AS ENUM('pytorch_ddp', 'horovod', 'horovod_elastic', 'tensorflow_multiworker', 'pytorch', 'command');--> statement-breakpoint
CREATE TYPE "public"."job_status" AS ENUM('pending', 'scheduled', 'provisioning', 'running', 'checkpointing', 'requeued', 'completed', 'failed', 'cancelled');--> statement-breakpoint
CREATE TYPE "public"."job_type" AS ENUM('training', 'hpo', 'inference', 'eval');--> statement-breakpoint
CREATE TYPE "public"."provider" AS ENUM('aws', 'gcp', 'azure', 'onprem');--> statement-breakpoint
CREATE TYPE "public"."token_kind" AS ENUM('user', 'agent');--> statement-breakpoint
CREATE TABLE "allocations" (
	"id" uuid PRIMARY KEY NOT NULL,
	"job_id" uuid NOT NULL,
	"attempt" integer NOT NULL,
	"provider" "provider" NOT NULL,
	"region" text NOT NULL,
	"zone" text,
	"instance_type" text NOT NULL,
	"instance_count" integer NOT NULL,
	"gpus_per_instance" numeric NOT NULL,
	"spot" boolean DEFAULT false NOT NULL,
	"price_usd_per_hour" numeric(14, 6) NOT NULL,
	"estimated_hours" numeric NOT NULL,
	"estimated_cost_usd" numeric(18, 6) NOT NULL,
	"prices" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "allocations_instance_count_positive" CHECK ("allocations"."instance_count" > 0),
	CONSTRAINT "allocations_gpus_per_instance_positive" CHECK ("allocations"."gpus_per_instance" > 0),
	CONSTRAINT "allocations_price_nonnegative" CHECK ("allocations"."price_usd_per_hour" >= 0),
	CONSTRAINT "allocations_estimated_hours_nonnegative" CHECK ("allocations"."estimated_hours" >= 0),
	CONSTRAINT "allocations_estimated_cost_nonnegative" CHECK ("allocations"."estimated_cost_usd" >= 0)
);
--> statement-breakpoint
CREATE TABLE "api_tokens" (
	"id" uuid PRIMARY KEY NOT NULL,
	"team_id" uuid,
	"name" text NOT NULL,
	"kind" "token_kind" NOT NULL,
	"is_admin" boolean DEFAULT false NOT NULL,
	"token_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "api_tokens_token_hash_unique" UNIQUE("token_hash"),
	CONSTRAINT "api_tokens_admin_or_team" CHECK ("api_tokens"."is_admin" OR "api_tokens"."team_id" IS NOT NULL),
	CONSTRAINT "api_tokens_token_hash_sha256" CHECK ("api_tokens"."token_hash" ~ '^[0-9a-f]{64}$')
);
--> statement-breakpoint
CREATE TABLE "gpu_pricing" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"provider" "provider" NOT NULL,
	"region" text NOT NULL,
	"zone" text DEFAULT '' NOT NULL,
	"instance_type" text NOT NULL,
	"gpu_type" text NOT NULL,
	"gpu_count" numeric NOT NULL,
	"gpu_memory_gb" numeric NOT NULL,
	"vcpus" integer NOT NULL,
	"memory_gb" numeric NOT NULL,
	"on_demand_usd_per_hour" numeric(14, 6) NOT NULL,
	"spot_usd_per_hour" numeric(14, 6),
	"price_date" date NOT NULL,
	"source" text NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "gpu_pricing_offer_unique" UNIQUE("provider","region","zone","instance_type"),
	CONSTRAINT "gpu_pricing_gpu_count_positive" CHECK ("gpu_pricing"."gpu_count" > 0),
	CONSTRAINT "gpu_pricing_on_demand_nonnegative" CHECK ("gpu_pricing"."on_demand_usd_per_hour" >= 0),
	CONSTRAINT "gpu_pricing_spot_nonnegative" CHECK ("gpu_pricing"."spot_usd_per_hour" >= 0)
);
--> statement-breakpoint
CREATE TABLE "job_artifacts" (
	"id" uuid PRIMARY KEY NOT NULL,
	"job_id" uuid NOT NULL,
	"attempt" integer NOT NULL,
	"type" "artifact_type" NOT NULL,
	"uri" text NOT NULL,
	"step" bigint,
	"bytes" bigint,
	"sha256" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "job_artifacts_bytes_nonnegative" CHECK ("job_artifacts"."bytes" >= 0),
	CONSTRAINT "job_artifacts_sha256_hex" CHECK ("job_artifacts"."sha256" ~ '^[0-9a-f]{64}$')
);
--> statement-breakpoint
CREATE TABLE "job_events" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"job_id" uuid NOT NULL,
	"seq" integer NOT NULL,
	"from_status" "job_status",
	"to_status" "job_status" NOT NULL,
	"attempt" integer NOT NULL,
	"reason" text NOT NULL,
	"actor" text NOT NULL,
	"details" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "job_events_job_seq_unique" UNIQUE("job_id","seq"),
	CONSTRAINT "job_events_seq_min" CHECK ("job_events"."seq" >= 1)
);
--> statement-breakpoint
CREATE TABLE "jobs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"team_id" uuid NOT NULL,
	"name" text NOT NULL,
	"project" text,
	"type" "job_type" NOT NULL,
	"framework" "framework" NOT NULL,
	"execution_mode" "execution_mode" NOT NULL,
	"status" "job_status" DEFAULT 'pending' NOT NULL,
	"status_reason" text,
	"priority" integer NOT NULL,
	"attempt" integer DEFAULT 1 NOT NULL,
	"max_attempts" integer NOT NULL,
	"version" integer DEFAULT 1 NOT NULL,
	"gpus" integer NOT NULL,
	"spec_yaml" text NOT NULL,
	"spec" jsonb NOT NULL,
	"budget_usd" numeric(14, 2),
	"deadline" timestamp with time zone,
	"estimated_cost_usd" numeric(18, 6),
	"running_cost_usd" numeric(18, 6) DEFAULT '0' NOT NULL,
	"target" jsonb,
	"idempotency_key" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"scheduled_at" timestamp with time zone,
	"started_at" timestamp with time zone,
	"finished_at" timestamp with time zone,
	CONSTRAINT "jobs_priority_range" CHECK ("jobs"."priority" BETWEEN 0 AND 1000),
	CONSTRAINT "jobs_attempt_min" CHECK ("jobs"."attempt" >= 1),
	CONSTRAINT "jobs_attempt_max" CHECK ("jobs"."attempt" <= "jobs"."max_attempts"),
	CONSTRAINT "jobs_max_attempts_min" CHECK ("jobs"."max_attempts" >= 1),
	CONSTRAINT "jobs_gpus_min" CHECK ("jobs"."gpus" >= 1),
	CONSTRAINT "jobs_version_min" CHECK ("jobs"."version" >= 1),
	CONSTRAINT "jobs_budget_positive" CHECK ("jobs"."budget_usd" > 0),
	CONSTRAINT "jobs_estimated_cost_nonnegative" CHECK ("jobs"."estimated_cost_usd" >= 0),
	CONSTRAINT "jobs_running_cost_nonnegative" CHECK ("jobs"."running_cost_usd" >= 0)
);
--> statement-breakpoint
CREATE TABLE "teams" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "teams_name_unique" UNIQUE("name")
);
--> statement-breakpoint
ALTER TABLE "allocations" ADD CONSTRAINT "allocations_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "api_tokens" ADD CONSTRAINT "api_tokens_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_artifacts" ADD CONSTRAINT "job_artifacts_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "job_events" ADD CONSTRAINT "job_events_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "jobs" ADD CONSTRAINT "jobs_team_id_teams_id_fk" FOREIGN KEY ("team_id") REFERENCES "public"."teams"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "allocations_job_idx" ON "allocations" USING btree ("job_id","attempt");--> statement-breakpoint
CREATE INDEX "job_artifacts_job_type_created_idx" ON "job_artifacts" USING btree ("job_id","type","created_at");--> statement-breakpoint
CREATE INDEX "jobs_queue_idx" ON "jobs" USING btree ("status","priority" DESC NULLS FIRST,"deadline","created_at");--> statement-breakpoint
CREATE INDEX "jobs_team_created_idx" ON "jobs" USING btree ("team_id","created_at" DESC NULLS FIRST,"id" DESC NULLS FIRST);--> statement-breakpoint
CREATE INDEX "jobs_created_idx" ON "jobs" USING btree ("created_at" DESC NULLS FIRST,"id" DESC NULLS FIRST);--> statement-breakpoint
CREATE UNIQUE INDEX "jobs_team_idempotency_key_unique" ON "jobs" USING btree ("team_id","idempotency_key") WHERE "jobs"."idempotency_key" IS NOT NULL;