import { type Clock, type IdSource, DEFAULT_BUDGET_THRESHOLDS_PCT, checkBudget, formatUsdMicros, isTerminal } from "@gpuorch/core";
import { type Database, type JobSpend, existingAlertKeys, refreshJobCosts, withSingletonLock } from "@gpuorch/db";
import type { Logger } from "@gpuorch/runtime";
import { setTimeout as sleep } from "node:timers/promises";
import { type AlertDispatcher, budgetThresholdAlert } from "./alerts/index.js";

const COST_TRACKER_LOCK_KEY = 0x6770_6f72_6363_6f73n; // "gporccos"

export interface CostTrackerDeps {
  db: Database["db"];
  clock: Clock;
  ids: IdSource;
  logger: Logger;
  /** How often running costs are recomputed and persisted. */
  intervalMs: number;
  thresholdsPct?: readonly number[];
  dispatcher: AlertDispatcher | null;
  /** Stops a job that spent its budget (fails it with `budget_exceeded`, stops its tasks). */
  stopForBudget: (jobId: string, reason: string) => Promise<void>;
  /** After each refresh, every refreshed job's spend (metrics). */
  onRefreshed?: (spends: readonly JobSpend[]) => void;
}

/**
 * Persists each job's running cost (jobs.running_cost_usd, gpu_seconds) on an
 * interval and whenever a job changes state (`touch`), raises budget alerts
 * once per threshold (the alert's dedupe key makes that hold across
 * restarts), and stops a job at 100 % of its budget. Costs are derived from
 * the tasks' durable held spans, so a controller restart loses nothing: the
 * next refresh recomputes the same totals, including the time it was down.
 *
 * States: idle → running (start) → stopped (stop; a last refresh is written).
 */
export class CostTracker {
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  private touched = new Set<string>();
  private wake: (() => void) | null = null;
  private readonly previous = new Map<string, bigint>();
  private readonly stopping = new Set<string>();

  constructor(private readonly deps: CostTrackerDeps) {}

  start(): void {
    if (this.loop) return;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.wake?.();
    await this.loop;
    await this.refresh().catch((err: unknown) => this.deps.logger.error({ err }, "last cost refresh failed"));
  }

  /** A job changed state: persist its cost now (soon, batched with others). */
  touch(jobId: string): void {
    this.touched.add(jobId);
    this.wake?.();
  }

  /** One refresh under the singleton lock; returns the spends (empty when another replica holds it). */
  async refresh(): Promise<JobSpend[]> {
    const ids = [...this.touched];
    this.touched = new Set();
    const res = await withSingletonLock(this.deps.db, COST_TRACKER_LOCK_KEY, (tx) => refreshJobCosts(tx, { jobIds: ids }));
    if (!res.acquired) return [];
    const spends = res.value;
    this.deps.onRefreshed?.(spends);
    await this.checkBudgets(spends);
    return spends;
  }

  private async checkBudgets(spends: readonly JobSpend[]): Promise<void> {
    const withBudget = spends.filter((s) => s.budgetMicros !== null && s.budgetMicros > 0n && s.spentMicros > 0n);
    if (withBudget.length === 0) return;
    const thresholds = this.deps.thresholdsPct ?? DEFAULT_BUDGET_THRESHOLDS_PCT;
    // 100 is always armed (checkBudget announces the stop it triggers).
    const armed = [...new Set([...thresholds, 100])];
    const keys = withBudget.flatMap((s) => armed.map((p) => `budget:${s.jobId}:${p}`));
    const alerted = await existingAlertKeys(this.deps.db, keys);
    for (const s of withBudget) {
      const already = armed.filter((p) => alerted.has(`budget:${s.jobId}:${p}`));
      const check = checkBudget({
        budgetMicros: s.budgetMicros as bigint,
        previousSpentMicros: this.previous.get(s.jobId) ?? 0n,
        spentMicros: s.spentMicros,
        thresholdsPct: thresholds,
        alreadyAlertedPct: already,
      });
      this.previous.set(s.jobId, s.spentMicros);
      if (isTerminal(s.status)) this.previous.delete(s.jobId);
      for (const crossing of check.newlyCrossed) {
        const subject = { jobId: s.jobId, jobName: s.name, team: s.team, ...(s.project ? { project: s.project } : {}), budgetMicros: s.budgetMicros as bigint, spentMicros: s.spentMicros };
        const alert = budgetThresholdAlert(subject, crossing, { now: () => this.deps.clock.now(), ids: this.deps.ids });
        if (this.deps.dispatcher) {
          await this.deps.dispatcher.dispatch(alert).catch((err: unknown) => this.deps.logger.error({ err, jobId: s.jobId }, "recording a budget alert failed"));
        } else {
          this.deps.logger.warn({ jobId: s.jobId, threshold: crossing.thresholdPct }, alert.message);
        }
      }
      if (check.decision.action === "checkpoint_and_stop" && !isTerminal(s.status) && !this.stopping.has(s.jobId)) {
        this.stopping.add(s.jobId);
        const reason = `budget_exceeded: spent $${formatUsdMicros(s.spentMicros, 2)} of budget $${formatUsdMicros(s.budgetMicros as bigint, 2)}`;
        this.deps.logger.warn({ jobId: s.jobId }, reason);
        await this.deps
          .stopForBudget(s.jobId, reason)
          .catch((err: unknown) => this.deps.logger.error({ err, jobId: s.jobId }, "stopping a job over budget failed"))
          .finally(() => this.stopping.delete(s.jobId));
      }
    }
  }

  private async run(): Promise<void> {
    const { signal } = this.abort;
    while (!signal.aborted) {
      if (this.touched.size === 0) {
        const wait = new AbortController();
        const onStop = (): void => wait.abort();
        signal.addEventListener("abort", onStop, { once: true });
        this.wake = () => wait.abort();
        await sleep(this.deps.intervalMs, undefined, { signal: wait.signal }).catch(() => {});
        signal.removeEventListener("abort", onStop);
        this.wake = null;
        // A touch wakes us at once; let others of the same burst join this refresh.
        if (!signal.aborted && this.touched.size > 0) await sleep(50);
      }
      if (signal.aborted) return;
      try {
        await this.refresh();
      } catch (err) {
        this.deps.logger.error({ err }, "cost refresh failed");
        await sleep(Math.min(this.deps.intervalMs, 1000), undefined, { signal }).catch(() => {});
      }
    }
  }
}
