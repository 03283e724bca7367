import { type Clock, type GpuSample, fnv1a32 } from "@gpuorch/core";
import { type Database, type HeartbeatRecord, type NodeStateChange, recordHeartbeats } from "@gpuorch/db";
import type { Logger } from "@gpuorch/runtime";

export interface HeartbeatIngestDeps {
  db: Database["db"];
  clock: Clock;
  logger: Logger;
  /**
   * How often the buffered heartbeats are written (one statement per flush),
   * start to start: a flush that took D ms is followed by the next one after
   * max(0, interval − D), so a heartbeat waits at most one interval plus one
   * flush before it is in the database.
   */
  flushIntervalMs: number;
  /**
   * How often each node's GPU readings are written; liveness (last_heartbeat_at,
   * state) is written on every flush. Default 5000 ms. See the class comment.
   */
  sampleIntervalMs?: number;
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
 * Liveness and readings are written at different rates. A node's liveness
 * (last_heartbeat_at, unreachable/lost → ready) goes out on every flush, so the
 * health sweep and readers see it within one flush interval. Its GPU readings
 * (8 rows per node, each a new tuple and index entry in PostgreSQL) go out at
 * most once per `sampleIntervalMs`: at 5,000 nodes × 8 GPUs × 1 Hz, writing
 * every reading cost PostgreSQL about one core (bench/heartbeat-ingest), while
 * readings a few seconds old are fine for display and placement. Each node
 * writes its readings when its own slot (`floor((at + phase) / interval)`,
 * phase from a hash of its id) changes, so the fleet's reading writes are
 * spread evenly over the interval instead of bunching in one flush. A node
 * seen for the first time, and every node at `stop`, writes its readings at once.
 *
 * States: `idle` (constructed) → `running` (start: the flush timer runs) →
 * `stopped` (stop: timer cleared, a last flush written). `record` works in
 * every state; after stop nothing flushes it.
 */
/** GPU readings, or a function producing them: converted only when the node's readings slot is due. */
export type GpuReadings = GpuSample[] | (() => GpuSample[]);

interface PendingBeat {
  nodeId: string;
  at: Date;
  gpus: GpuReadings;
}

export class HeartbeatIngest {
  private pending = new Map<string, PendingBeat>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inFlight: Promise<void> | null = null;
  private lastFlushStart = 0;
  private currentState: "idle" | "running" | "stopped" = "idle";
  private readonly sampleIntervalMs: number;
  /** Per node: the phase of its readings slot and the last slot written (null: never). */
  private readonly sampleSlots = new Map<string, { phase: number; written: number | null }>();

  constructor(private readonly deps: HeartbeatIngestDeps) {
    this.sampleIntervalMs = Math.max(1, deps.sampleIntervalMs ?? 5_000);
  }

  get state(): "idle" | "running" | "stopped" {
    return this.currentState;
  }

  /** Nodes with a heartbeat not yet written. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Buffers a node's latest heartbeat. Pass the readings as a function to
   * defer building them: at most one heartbeat in `sampleIntervalMs` per node
   * has its readings written, so converting every one is wasted work.
   */
  record(nodeId: string, gpus: GpuReadings): void {
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
    // The last readings of every node are kept, not only those whose slot came up.
    await this.flush({ allSamples: true });
  }

  /** Writes everything buffered now (waits for a flush already in flight first). */
  async flush(opts: { allSamples?: boolean } = {}): Promise<void> {
    while (this.inFlight) await this.inFlight;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.inFlight = this.write(batch, opts.allSamples ?? false).finally(() => {
      this.inFlight = null;
    });
    await this.inFlight;
  }

  private async write(batch: Map<string, PendingBeat>, allSamples: boolean): Promise<void> {
    const t0 = performance.now();
    this.lastFlushStart = t0;
    const records: HeartbeatRecord[] = [];
    const slotsDue: Array<[{ phase: number; written: number | null }, number]> = [];
    for (const rec of batch.values()) {
      let slot = this.sampleSlots.get(rec.nodeId);
      if (!slot) {
        slot = { phase: phaseOf(rec.nodeId, this.sampleIntervalMs), written: null };
        this.sampleSlots.set(rec.nodeId, slot);
      }
      const now = Math.floor((rec.at.getTime() + slot.phase) / this.sampleIntervalMs);
      if (allSamples || slot.written === null || now !== slot.written) {
        records.push({ nodeId: rec.nodeId, at: rec.at, gpus: typeof rec.gpus === "function" ? rec.gpus() : rec.gpus });
        slotsDue.push([slot, now]);
      } else {
        // Liveness only: an empty reading list updates no GPU row.
        records.push({ nodeId: rec.nodeId, at: rec.at, gpus: [] });
      }
    }
    try {
      const out = await (this.deps.write ?? recordHeartbeats)(this.deps.db, records);
      // Only after success: a failed batch is retried with its readings.
      for (const [slot, now] of slotsDue) slot.written = now;
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
    // Start to start: the time the last flush took counts toward the interval.
    const wait = this.lastFlushStart === 0 ? this.deps.flushIntervalMs : Math.max(0, this.lastFlushStart + this.deps.flushIntervalMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush().finally(() => this.schedule());
    }, wait);
  }
}

/** A stable offset in [0, interval) from the node id, spreading nodes' readings slots. */
function phaseOf(nodeId: string, intervalMs: number): number {
  return fnv1a32(nodeId) % intervalMs;
}
