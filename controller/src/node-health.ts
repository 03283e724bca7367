import type { Clock } from "@gpuorch/core";
import { type Database, type NodeStateChange, markNodeStates, withSingletonLock } from "@gpuorch/db";
import { type Logger, sleep } from "@gpuorch/runtime";

/** Advisory-lock key of the node health sweep: one controller replica sweeps at a time. */
export const NODE_HEALTH_LOCK_KEY = 725_312_804_201n;

export interface NodeHealthLoopDeps {
  db: Database["db"];
  clock: Clock;
  logger: Logger;
  intervalMs: number;
  /** A ready node silent this long becomes unreachable. */
  unreachableAfterMs: number;
  /** A node silent this long becomes lost. */
  lostAfterMs: number;
  /** Runs before each sweep (the heartbeat ingest's flush), so the sweep judges current data. */
  beforeSweep?: () => Promise<void>;
  onChanges?: (changes: NodeStateChange[]) => void;
  /** Runs after each sweep of this replica (e.g. requeueing jobs whose emergency checkpoint never came). */
  afterSweep?: () => Promise<void>;
}

/**
 * The node health loop: every `intervalMs`, behind a Postgres advisory lock,
 * moves silent nodes ready → unreachable → lost (`markNodeStates`); a
 * heartbeat brings them back (the ingest does that).
 *
 * States: `idle` → `running` (start) → `stopped` (stop: aborts the wait,
 * waits for a sweep in progress).
 */
export class NodeHealthLoop {
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  /** When this controller started watching: silence before it is not the nodes' fault (the controller was down). */
  private readonly startedAt: number;

  constructor(private readonly deps: NodeHealthLoopDeps) {
    this.startedAt = deps.clock.now().getTime();
  }

  get state(): "idle" | "running" | "stopped" {
    return this.abort.signal.aborted ? "stopped" : this.loop ? "running" : "idle";
  }

  start(): void {
    if (this.loop || this.abort.signal.aborted) return;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort(new DOMException("node health loop stopped", "AbortError"));
    await this.loop;
  }

  /** One sweep; returns what changed (empty when another replica holds the lock). */
  async sweep(): Promise<NodeStateChange[]> {
    const { deps } = this;
    await deps.beforeSweep?.();
    const now = deps.clock.now().getTime();
    // A node's silence counts from its last heartbeat or this controller's start, whichever is later:
    // after a controller restart, agents get the full periods to reconnect before they are judged.
    const cutoff = (afterMs: number): Date => new Date(this.startedAt < now - afterMs ? now - afterMs : 0);
    const res = await withSingletonLock(deps.db, NODE_HEALTH_LOCK_KEY, (tx) =>
      markNodeStates(tx, { unreachableBefore: cutoff(deps.unreachableAfterMs), lostBefore: cutoff(deps.lostAfterMs) }),
    );
    if (!res.acquired) return [];
    for (const c of res.value) {
      deps.logger.warn({ nodeId: c.nodeId, hostname: c.hostname, from: c.from, to: c.to }, `node ${c.to}`);
    }
    if (res.value.length > 0) deps.onChanges?.(res.value);
    await deps.afterSweep?.();
    return res.value;
  }

  private async run(): Promise<void> {
    const { signal } = this.abort;
    // After a controller restart every agent needs a moment to reconnect; judging
    // silence before that would flap every node to unreachable.
    let wait = Math.max(this.deps.intervalMs, this.deps.unreachableAfterMs);
    while (!signal.aborted) {
      try {
        await sleep(wait, signal);
        wait = this.deps.intervalMs;
      } catch {
        return;
      }
      try {
        await this.sweep();
      } catch (err) {
        this.deps.logger.error({ err }, "node health sweep failed");
      }
    }
  }
}
