DROP INDEX "nodes_state_heartbeat_idx";--> statement-breakpoint
-- Heartbeat flushes rewrite every live node's row and, every few seconds, its GPU rows. Room left
-- on each page lets PostgreSQL update them in place (HOT: no new index entries), which
-- bench/heartbeat-ingest measured as the cost that dominated the flush. Applies to pages
-- written from now on.
ALTER TABLE "nodes" SET (fillfactor = 50);--> statement-breakpoint
ALTER TABLE "node_gpus" SET (fillfactor = 50);
