CREATE TABLE "pricing_source_status" (
	"provider" "provider" PRIMARY KEY NOT NULL,
	"source" text NOT NULL,
	"last_attempt_at" timestamp with time zone,
	"last_success_at" timestamp with time zone,
	"last_error" text,
	"consecutive_failures" integer DEFAULT 0 NOT NULL,
	"row_count" integer DEFAULT 0 NOT NULL,
	"oldest_price_date" date,
	"newest_price_date" date,
	CONSTRAINT "pricing_source_status_row_count_nonnegative" CHECK ("pricing_source_status"."row_count" >= 0),
	CONSTRAINT "pricing_source_status_failures_nonnegative" CHECK ("pricing_source_status"."consecutive_failures" >= 0)
);
--> statement-breakpoint
ALTER TABLE "gpu_pricing" DROP CONSTRAINT "gpu_pricing_offer_unique";--> statement-breakpoint
ALTER TABLE "gpu_pricing" ADD COLUMN "spot_interruptions_per_hour" double precision;--> statement-breakpoint
ALTER TABLE "gpu_pricing" ADD COLUMN "spot_availability" double precision;--> statement-breakpoint
ALTER TABLE "gpu_pricing" ADD COLUMN "interconnect" text;--> statement-breakpoint
CREATE INDEX "gpu_pricing_provider_source_idx" ON "gpu_pricing" USING btree ("provider","source");--> statement-breakpoint
ALTER TABLE "gpu_pricing" ADD CONSTRAINT "gpu_pricing_offer_source_unique" UNIQUE("provider","region","zone","instance_type","source");--> statement-breakpoint
ALTER TABLE "gpu_pricing" ADD CONSTRAINT "gpu_pricing_spot_interruptions_nonnegative" CHECK ("gpu_pricing"."spot_interruptions_per_hour" >= 0);--> statement-breakpoint
ALTER TABLE "gpu_pricing" ADD CONSTRAINT "gpu_pricing_spot_availability_range" CHECK ("gpu_pricing"."spot_availability" >= 0 AND "gpu_pricing"."spot_availability" <= 1);--> statement-breakpoint
ALTER TABLE "gpu_pricing" ADD CONSTRAINT "gpu_pricing_spot_stats_need_spot" CHECK ("gpu_pricing"."spot_usd_per_hour" IS NOT NULL OR ("gpu_pricing"."spot_interruptions_per_hour" IS NULL AND "gpu_pricing"."spot_availability" IS NULL));--> statement-breakpoint
ALTER TABLE "gpu_pricing" ADD CONSTRAINT "gpu_pricing_interconnect_known" CHECK ("interconnect" IN ('efa', 'gpudirect-tcpx', 'gpudirect-tcpxo', 'gpudirect-rdma', 'infiniband'));--> statement-breakpoint
ALTER TABLE "gpu_pricing" ADD CONSTRAINT "gpu_pricing_source_nonempty" CHECK ("gpu_pricing"."source" <> '');