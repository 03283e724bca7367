CREATE TYPE "public"."node_state" AS ENUM('ready', 'unreachable', 'lost', 'draining');--> statement-breakpoint
CREATE TABLE "node_gpus" (
	"node_id" uuid NOT NULL,
	"index" integer NOT NULL,
	"uuid" text DEFAULT '' NOT NULL,
	"name" text NOT NULL,
	"memory_total_mib" bigint DEFAULT 0 NOT NULL,
	"mig_enabled" boolean DEFAULT false NOT NULL,
	"mig_devices" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"utilization_gpu_percent" real,
	"utilization_memory_percent" real,
	"memory_used_mib" bigint,
	"temperature_c" real,
	"power_draw_w" real,
	"updated_at" timestamp with time zone,
	CONSTRAINT "node_gpus_pkey" PRIMARY KEY("node_id","index")
);
--> statement-breakpoint
CREATE TABLE "nodes" (
	"id" uuid PRIMARY KEY NOT NULL,
	"hostname" text NOT NULL,
	"provider" text DEFAULT '' NOT NULL,
	"region" text DEFAULT '' NOT NULL,
	"zone" text DEFAULT '' NOT NULL,
	"network" text DEFAULT '' NOT NULL,
	"instance_type" text DEFAULT '' NOT NULL,
	"spot" boolean DEFAULT false NOT NULL,
	"private_ip" text DEFAULT '' NOT NULL,
	"state" "node_state" DEFAULT 'ready' NOT NULL,
	"degraded_reason" text,
	"cpu_cores" integer DEFAULT 0 NOT NULL,
	"memory_mib" bigint DEFAULT 0 NOT NULL,
	"agent_version" text DEFAULT '' NOT NULL,
	"driver_version" text DEFAULT '' NOT NULL,
	"cuda_version" text DEFAULT '' NOT NULL,
	"labels" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"registered_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_heartbeat_at" timestamp with time zone
);
--> statement-breakpoint
ALTER TABLE "node_gpus" ADD CONSTRAINT "node_gpus_node_id_nodes_id_fk" FOREIGN KEY ("node_id") REFERENCES "public"."nodes"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "nodes_identity_unique" ON "nodes" USING btree ("hostname","provider","region","zone");--> statement-breakpoint
CREATE INDEX "nodes_state_heartbeat_idx" ON "nodes" USING btree ("state","last_heartbeat_at");