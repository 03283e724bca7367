CREATE TYPE "public"."task_state" AS ENUM('assigned', 'running', 'succeeded', 'failed', 'stopped', 'lost');--> statement-breakpoint
CREATE TABLE "job_logs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"job_id" uuid NOT NULL,
	"attempt" integer NOT NULL,
	"rank" integer NOT NULL,
	"node_rank" integer NOT NULL,
	"stream" text NOT NULL,
	"text" text NOT NULL,
	"at" timestamp with time zone NOT NULL,
	CONSTRAINT "job_logs_stream" CHECK ("job_logs"."stream" IN ('stdout', 'stderr', 'system'))
);
--> statement-breakpoint
CREATE TABLE "task_gpus" (
	"node_id" uuid NOT NULL,
	"gpu_index" integer NOT NULL,
	"task_id" uuid NOT NULL,
	"job_id" uuid NOT NULL,
	CONSTRAINT "task_gpus_pkey" PRIMARY KEY("node_id","gpu_index")
);
--> statement-breakpoint
CREATE TABLE "tasks" (
	"id" uuid PRIMARY KEY NOT NULL,
	"job_id" uuid NOT NULL,
	"attempt" integer NOT NULL,
	"node_id" uuid NOT NULL,
	"node_rank" integer NOT NULL,
	"num_nodes" integer NOT NULL,
	"unit" integer DEFAULT -1 NOT NULL,
	"gpu_indices" jsonb NOT NULL,
	"state" "task_state" DEFAULT 'assigned' NOT NULL,
	"exit_code" integer,
	"signal" text,
	"step" bigint,
	"reason" text,
	"master_addr" text NOT NULL,
	"master_port" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"launch_sent_at" timestamp with time zone,
	"started_at" timestamp with time zone,
	"ended_at" timestamp with time zone,
	CONSTRAINT "tasks_node_rank_range" CHECK ("tasks"."node_rank" >= 0 AND "tasks"."node_rank" < "tasks"."num_nodes"),
	CONSTRAINT "tasks_unit_min" CHECK ("tasks"."unit" >= -1)
);
--> statement-breakpoint
ALTER TABLE "job_logs" ADD CONSTRAINT "job_logs_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "task_gpus" ADD CONSTRAINT "task_gpus_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "task_gpus" ADD CONSTRAINT "task_gpus_task_id_tasks_id_fk" FOREIGN KEY ("task_id") REFERENCES "public"."tasks"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "task_gpus" ADD CONSTRAINT "task_gpus_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tasks" ADD CONSTRAINT "tasks_job_id_jobs_id_fk" FOREIGN KEY ("job_id") REFERENCES "public"."jobs"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "tasks" ADD CONSTRAINT "tasks_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "job_logs_job_id_idx" ON "job_logs" USING btree ("job_id","id");--> statement-breakpoint
CREATE INDEX "task_gpus_task_idx" ON "task_gpus" USING btree ("task_id");--> statement-breakpoint
CREATE INDEX "tasks_job_attempt_idx" ON "tasks" USING btree ("job_id","attempt");--> statement-breakpoint
CREATE INDEX "tasks_active_node_idx" ON "tasks" USING btree ("node_id") WHERE "tasks"."state" IN ('assigned', 'running');