import type { IdSource } from "@gpuorch/core";
import { type Logger, backoffDelay, createIdSource, sleep as realSleep } from "@gpuorch/runtime";
import type { Alert } from "./alert.js";
import type { AlertStore, DeliveryStatus, NewAlertDelivery, PendingDelivery } from "./alert-store.js";
import { type AlertChannel, createAlertChannel } from "./channels.js";
import type { AlertChannelConfig } from "./channel-config.js";
import type { AttemptOutcome } from "./http-post.js";

export interface AlertDispatcherDeps {
  /** Parsed by `alertChannelsConfigSchema` (names unique). */
  channels: readonly AlertChannelConfig[];
  store: AlertStore;
  logger: Logger;
  /** Wall clock (timestamps, Retry-After dates); default `new Date()`. */
  now?: () => Date;
  /** [0, 1) for backoff jitter; default Math.random. */
  random?: () => number;
  /** Aborting it stops the dispatcher (the ShutdownManager's signal). */
  signal?: AbortSignal;
  /** Delivery ids; default UUIDv7. */
  ids?: IdSource;
  /** The wait between attempts; tests inject one that does not wait. Must reject when `signal` aborts. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Attempts running at once, over all channels; default 4. */
  concurrency?: number;
  /** Deliveries held in memory waiting for a slot; beyond it they stay pending in the store for the sweep. Default 1000. */
  maxQueue?: number;
  /** How long stop() waits for attempts in flight before cutting them off; default 5 s. */
  stopTimeoutMs?: number;
  /** Pending deliveries are re-read from the store this often (0: only at start); default 60 s. */
  resumeIntervalMs?: number;
  /** Backoff between attempts: equal jitter, ceiling base × 2^n up to max. Default 1 s .. 60 s. */
  backoff?: { baseMs: number; maxMs: number };
  /** Cap on a receiver's Retry-After; default 5 min. */
  maxRetryAfterMs?: number;
}

export type AlertDispatcherState = "idle" | "running" | "stopping" | "stopped";

export interface DispatchResult {
  alertId: string;
  /** An alert with the same dedupeKey was already recorded: nothing was recorded or sent. */
  duplicate: boolean;
  deliveries: { deliveryId: string; channel: string }[];
}

interface Job {
  deliveryId: string;
  channel: AlertChannel;
  alert: Alert;
  attempt: number;
}

/** After a cut-off attempt is aborted, how long stop() still waits for it to record itself. */
const ABORT_GRACE_MS = 1_000;

/**
 * Sends alerts to the configured channels, durably and at least once.
 *
 * `dispatch` records the alert and one delivery row per matching channel
 * in the store before anything is sent, then queues the deliveries; up to
 * `concurrency` attempts run at once, each recorded in the store. Retryable
 * failures wait (backoff or Retry-After) outside the slots and go back to
 * the queue; every attempt of a delivery carries the same delivery id, so
 * receivers can drop duplicates.
 *
 * States: `idle` (dispatch records and queues, nothing is sent) → `running`
 * (start: resumes pending deliveries from the store, then sweeps every
 * `resumeIntervalMs`) → `stopping` → `stopped` (stop: waits for attempts in
 * flight up to `stopTimeoutMs`, then aborts them; queued and backing-off
 * deliveries stay pending in the store for the next start; dispatch still
 * records).
 */
export class AlertDispatcher {
  private readonly channels = new Map<string, AlertChannel>();
  private readonly queue: Job[] = [];
  /** Deliveries this process holds (queued, in flight, or waiting to retry): the sweep skips them. */
  private readonly known = new Set<string>();
  /** Attempts running (a delivery's next attempt may start before its previous one's bookkeeping ends: keyed by attempt, not delivery). */
  private readonly inFlight = new Set<{ done: Promise<void>; abort: AbortController }>();
  private readonly waiting = new Map<string, AbortController>();
  /** Deliveries finished while a sweep's read was in flight (its rows may predate the finish). */
  private finishedDuringSweep: Set<string> | null = null;
  private idleWaiters: (() => void)[] = [];
  private sweepTimer: ReturnType<typeof setTimeout> | null = null;
  private sweeping: Promise<number> | null = null;
  private currentState: AlertDispatcherState = "idle";
  private stopping: Promise<void> | null = null;
  private readonly logger: Logger;
  private readonly now: () => Date;
  private readonly random: () => number;
  private readonly ids: IdSource;
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  private readonly concurrency: number;
  private readonly maxQueue: number;
  private readonly stopTimeoutMs: number;
  private readonly resumeIntervalMs: number;
  private readonly backoff: { baseMs: number; maxMs: number };

  constructor(private readonly deps: AlertDispatcherDeps) {
    this.logger = deps.logger.child({ component: "alerts" });
    this.now = deps.now ?? (() => new Date());
    this.random = deps.random ?? Math.random;
    this.ids = deps.ids ?? createIdSource();
    this.sleep = deps.sleep ?? realSleep;
    this.concurrency = Math.max(1, deps.concurrency ?? 4);
    this.maxQueue = Math.max(1, deps.maxQueue ?? 1000);
    this.stopTimeoutMs = deps.stopTimeoutMs ?? 5_000;
    this.resumeIntervalMs = deps.resumeIntervalMs ?? 60_000;
    this.backoff = deps.backoff ?? { baseMs: 1_000, maxMs: 60_000 };
    const channelDeps = { logger: this.logger, now: this.now, maxRetryAfterMs: deps.maxRetryAfterMs ?? 300_000 };
    for (const config of deps.channels) {
      const ch = createAlertChannel(config, channelDeps);
      if (this.channels.has(ch.name)) throw new Error(`duplicate alert channel name '${ch.name}' (parse the list with alertChannelsConfigSchema)`);
      this.channels.set(ch.name, ch);
    }
  }

  get state(): AlertDispatcherState {
    return this.currentState;
  }

  /** Deliveries waiting for a slot, attempts running, deliveries waiting to retry. */
  get stats(): { queued: number; inFlight: number; retrying: number } {
    return { queued: this.queue.length, inFlight: this.inFlight.size, retrying: this.waiting.size };
  }

  /** Channel names and safe targets, for the start-up log line and the admin API. */
  get channelSummary(): { name: string; type: string; target: string }[] {
    return [...this.channels.values()].map((c) => ({ name: c.name, type: c.type, target: c.target }));
  }

  start(): void {
    if (this.currentState !== "idle") return;
    this.currentState = "running";
    if (this.deps.signal) {
      if (this.deps.signal.aborted) {
        void this.stop();
        return;
      }
      this.deps.signal.addEventListener("abort", () => void this.stop(), { once: true });
    }
    this.logger.info({ channels: this.channelSummary }, "alert dispatcher started");
    this.pump();
    this.sweepLoop();
  }

  /**
   * Records `alert` with one pending delivery per channel that accepts it,
   * then queues them. Resolves once the store has them (rejects, sending
   * nothing, when the store fails: the caller should not consider the alert
   * raised). An alert no channel accepts is still recorded; one whose
   * dedupeKey was already recorded is neither recorded nor sent.
   */
  async dispatch(alert: Alert): Promise<DispatchResult> {
    const targets = [...this.channels.values()].filter((c) => c.accepts(alert));
    const rows: NewAlertDelivery[] = targets.map((c) => ({ deliveryId: this.ids.newId(), alertId: alert.id, channel: c.name, channelType: c.type }));
    const { created } = await this.deps.store.recordAlert(alert, rows);
    if (!created) {
      this.logger.debug({ alertId: alert.id, dedupeKey: alert.dedupeKey }, "alert already raised; not sent again");
      return { alertId: alert.id, duplicate: true, deliveries: [] };
    }
    rows.forEach((r, i) => this.enqueue({ deliveryId: r.deliveryId, channel: targets[i]!, alert, attempt: 1 }));
    return { alertId: alert.id, duplicate: false, deliveries: rows.map((r) => ({ deliveryId: r.deliveryId, channel: r.channel })) };
  }

  /**
   * Reads pending deliveries from the store and queues those this process
   * does not hold: after a restart, and for deliveries the full queue turned
   * away. Returns how many were queued. Runs at start and every `resumeIntervalMs`.
   */
  async resumePending(): Promise<number> {
    if (this.sweeping) return this.sweeping;
    const run = async (): Promise<number> => {
      const finished = new Set<string>();
      this.finishedDuringSweep = finished;
      let pending: PendingDelivery[];
      try {
        pending = await this.deps.store.listPendingDeliveries({ limit: this.maxQueue });
      } finally {
        this.finishedDuringSweep = null;
      }
      let queued = 0;
      for (const p of pending) {
        if (this.known.has(p.deliveryId) || finished.has(p.deliveryId)) continue;
        const channel = this.channels.get(p.channel);
        if (!channel) {
          // Left pending it would be read again by every sweep, forever.
          this.logger.warn({ deliveryId: p.deliveryId, alertId: p.alert.id, channel: p.channel }, "pending alert delivery for a channel no longer configured; marking it failed");
          await this.record(p.deliveryId, p.attempts + 1, "failed", { kind: "permanent", error: `channel '${p.channel}' is no longer configured` });
          continue;
        }
        if (this.enqueue({ deliveryId: p.deliveryId, channel, alert: p.alert, attempt: p.attempts + 1 })) queued++;
      }
      if (queued > 0) this.logger.info({ queued }, "resumed pending alert deliveries");
      return queued;
    };
    this.sweeping = run().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  /** Resolves when nothing is queued, in flight or waiting to retry (tests; a drain before stop). */
  drain(): Promise<void> {
    if (this.isIdle()) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  async stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.currentState = "stopping";
    if (this.sweepTimer) clearTimeout(this.sweepTimer);
    this.sweepTimer = null;
    for (const w of this.waiting.values()) w.abort();
    const left = this.queue.length + this.waiting.size;
    for (const j of this.queue.splice(0)) this.known.delete(j.deliveryId);
    const flights = () => Promise.all([...this.inFlight.values()].map((f) => f.done));
    if (this.inFlight.size > 0 && !(await settlesWithin(flights(), this.stopTimeoutMs))) {
      this.logger.warn({ inFlight: this.inFlight.size, timeoutMs: this.stopTimeoutMs }, "alert deliveries still in flight at stop; cutting them off (they stay pending)");
      for (const f of this.inFlight.values()) f.abort.abort();
      await settlesWithin(flights(), ABORT_GRACE_MS);
    }
    await this.sweeping?.catch(() => {});
    this.currentState = "stopped";
    if (left > 0) this.logger.info({ pending: left }, "alert deliveries left pending for the next start");
    this.settleIdle();
  }

  /** False when the delivery is already held, or the queue is full (it stays pending for the sweep). */
  private enqueue(job: Job): boolean {
    if (this.known.has(job.deliveryId)) return false;
    if (this.currentState === "stopping" || this.currentState === "stopped") return false;
    if (this.queue.length >= this.maxQueue) {
      this.logger.warn({ deliveryId: job.deliveryId, alertId: job.alert.id, maxQueue: this.maxQueue }, "alert delivery queue full; the delivery stays pending for the next sweep");
      return false;
    }
    this.known.add(job.deliveryId);
    this.queue.push(job);
    this.pump();
    return true;
  }

  private pump(): void {
    while (this.currentState === "running" && this.inFlight.size < this.concurrency && this.queue.length > 0) {
      const job = this.queue.shift()!;
      const flight = { done: Promise.resolve(), abort: new AbortController() };
      flight.done = this.runAttempt(job, flight.abort.signal)
        .catch((err: unknown) => {
          // runAttempt handles its own failures; reaching here is a bug, and the delivery stays pending.
          this.logger.error({ err, deliveryId: job.deliveryId }, "alert delivery attempt failed unexpectedly");
          this.known.delete(job.deliveryId);
        })
        .finally(() => {
          this.inFlight.delete(flight);
          this.pump();
          this.settleIdle();
        });
      this.inFlight.add(flight);
    }
  }

  private async runAttempt(job: Job, signal: AbortSignal): Promise<void> {
    const { channel, alert, attempt, deliveryId } = job;
    let outcome: AttemptOutcome;
    try {
      outcome = await channel.attempt(alert, { deliveryId, attempt, signal });
    } catch (err) {
      outcome = { kind: "retryable", error: err instanceof Error ? err.message : String(err) };
    }
    const last = attempt >= channel.maxAttempts;
    let status: DeliveryStatus;
    switch (outcome.kind) {
      case "delivered":
        status = "delivered";
        break;
      case "permanent":
        status = "failed";
        break;
      case "retryable":
        status = last ? "failed" : "pending";
        break;
      case "interrupted":
        status = "pending";
        break;
    }
    await this.record(deliveryId, attempt, status, outcome);
    const log = { deliveryId, alertId: alert.id, kind: alert.kind, channel: channel.name, target: channel.target, attempt, ...("httpStatus" in outcome && outcome.httpStatus !== undefined ? { httpStatus: outcome.httpStatus } : {}) };
    const error = outcome.kind === "delivered" ? undefined : outcome.error;
    if (status === "delivered") {
      this.logger.debug(log, "alert delivered");
    } else if (status === "failed") {
      this.logger.error({ ...log, error }, last && outcome.kind === "retryable" ? `alert delivery failed after ${attempt} attempts; giving up` : "alert delivery failed permanently");
    } else if (outcome.kind === "interrupted") {
      this.logger.info({ ...log, error }, "alert delivery interrupted; left pending");
    } else {
      this.logger.warn({ ...log, error }, "alert delivery attempt failed; will retry");
    }
    if (status !== "pending" || outcome.kind === "interrupted" || this.currentState !== "running") {
      this.finish(deliveryId);
      return;
    }
    const delay = outcome.kind === "retryable" && outcome.retryAfterMs !== undefined ? outcome.retryAfterMs : backoffDelay(attempt - 1, { ...this.backoff, jitter: "equal" }, this.random);
    this.scheduleRetry({ ...job, attempt: attempt + 1 }, delay);
  }

  /** Waits outside the concurrency slots, then requeues (ahead of the bound: the delivery is already held). */
  private scheduleRetry(job: Job, delayMs: number): void {
    const ac = new AbortController();
    this.waiting.set(job.deliveryId, ac);
    this.sleep(delayMs, ac.signal).then(
      () => {
        this.waiting.delete(job.deliveryId);
        if (this.currentState !== "running") {
          this.finish(job.deliveryId);
          return;
        }
        this.queue.push(job);
        this.pump();
      },
      () => {
        // Aborted by stop(): the delivery stays pending in the store.
        this.waiting.delete(job.deliveryId);
        this.finish(job.deliveryId);
      },
    );
  }

  private async record(deliveryId: string, attempt: number, status: DeliveryStatus, outcome: AttemptOutcome): Promise<void> {
    try {
      await this.deps.store.recordDeliveryAttempt({
        deliveryId,
        attempt,
        status,
        ...("httpStatus" in outcome && outcome.httpStatus !== undefined ? { httpStatus: outcome.httpStatus } : {}),
        ...(outcome.kind !== "delivered" ? { error: outcome.error } : {}),
        at: this.now(),
      });
    } catch (err) {
      // The row stays as it was: a delivered alert may be sent again after a restart (receivers dedupe on the delivery id).
      this.logger.error({ err, deliveryId, attempt, status }, "could not record an alert delivery attempt");
    }
  }

  private finish(deliveryId: string): void {
    this.known.delete(deliveryId);
    this.finishedDuringSweep?.add(deliveryId);
    this.settleIdle();
  }

  private isIdle(): boolean {
    return this.queue.length === 0 && this.inFlight.size === 0 && this.waiting.size === 0;
  }

  private settleIdle(): void {
    if (!this.isIdle() || this.idleWaiters.length === 0) return;
    const ws = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of ws) w();
  }

  private sweepLoop(): void {
    if (this.currentState !== "running") return;
    this.resumePending()
      .catch((err: unknown) => this.logger.error({ err }, "could not read pending alert deliveries; will retry at the next sweep"))
      .finally(() => {
        if (this.currentState !== "running" || this.resumeIntervalMs <= 0) return;
        this.sweepTimer = setTimeout(() => {
          this.sweepTimer = null;
          this.sweepLoop();
        }, this.resumeIntervalMs);
        this.sweepTimer.unref?.();
      });
  }
}

export function createAlertDispatcher(deps: AlertDispatcherDeps): AlertDispatcher {
  return new AlertDispatcher(deps);
}

async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
