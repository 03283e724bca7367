import type { Clock, GpuSample } from "@gpuorch/core";
import { type Database, type HeartbeatRecord, type NodeStateChange, recordHeartbeats } from "@gpuorch/db";
import type { Logger } from "@gpuorch/runtime";

export interface HeartbeatIngestDeps {
  db: Database["db"];
  clock: Clock;
  logger: Logger;
  /** How often the buffered heartbeats are written (one statement per flush). */
  flushIntervalMs: number;
  /** Called after each successful flush with the number of nodes written. */
  onFlush?: (nodes: number, seconds: number) => void;
  /** Nodes a heartbeat brought back to ready. */
  onRevived?: (changes: NodeStateChange[]) => void;
  /** The batched write; default `recordHeartbeats` (tests count calls). */
  write?: typeof recordHeartbeats;
}

/**
 * Heartbeats are never written one by one: the latest per node is kept in
 * memory and every `flushIntervalMs` all of them go to the database in one
 * batched statement (`recordHeartbeats`).
 *
 * States: `idle` (constructed) → `running` (start: the flush timer runs) →
 * `stopped` (stop: timer cleared, a last flush written). `record` works in
 * every state; after stop nothing flushes it.
 */
export class HeartbeatIngest {
  private pending = new Map<string, HeartbeatRecord>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inFlight: Promise<void> | null = null;
  private currentState: "idle" | "running" | "stopped" = "idle";

  constructor(private readonly deps: HeartbeatIngestDeps) {}

  get state(): "idle" | "running" | "stopped" {
    return this.currentState;
  }

  /** Nodes with a heartbeat not yet written. */
  get pendingCount(): number {
    return this.pending.size;
  }

  record(nodeId: string, gpus: GpuSample[]): void {
    this.pending.set(nodeId, { nodeId, at: this.deps.clock.now(), gpus });
  }

  start(): void {
    if (this.currentState !== "idle") return;
    this.currentState = "running";
    this.schedule();
  }

  async stop(): Promise<void> {
    if (this.currentState === "stopped") return;
    this.currentState = "stopped";
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.flush();
  }

  /** Writes everything buffered now (waits for a flush already in flight first). */
  async flush(): Promise<void> {
    while (this.inFlight) await this.inFlight;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.inFlight = this.write(batch).finally(() => {
      this.inFlight = null;
    });
    await this.inFlight;
  }

  private async write(batch: Map<string, HeartbeatRecord>): Promise<void> {
    const t0 = performance.now();
    try {
      const out = await (this.deps.write ?? recordHeartbeats)(this.deps.db, [...batch.values()]);
      this.deps.onFlush?.(batch.size, (performance.now() - t0) / 1000);
      if (out.revived.length > 0) this.deps.onRevived?.(out.revived);
    } catch (err) {
      // Keep them for the next flush unless a newer heartbeat arrived meanwhile.
      for (const [id, rec] of batch) if (!this.pending.has(id)) this.pending.set(id, rec);
      this.deps.logger.error({ err, nodes: batch.size }, "heartbeat flush failed; will retry");
    }
  }

  private schedule(): void {
    if (this.currentState !== "running") return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush().finally(() => this.schedule());
    }, this.deps.flushIntervalMs);
  }
}
