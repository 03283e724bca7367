import {
  AppError,
  type Catalog,
  type Clock,
  type ExistingNodeCapacity,
  type OptimizeResult,
  type OptimizerSpec,
  type PlanCandidate,
  type MigrationAlternative,
  type MigrationDecision,
  type MigrationTarget,
  type Principal,
  decideMigration,
  formatUsdMicros,
  optimize,
  sourceEgress,
  transferMicros,
} from "@gpuorch/core";
import { type Database, type JobBrief, attemptAllocation, jobStartedAt, latestCheckpoint, listPricingStatus, loadCatalogOffers, loadPlacementNodes } from "@gpuorch/db";
import type { EgressTier } from "@gpuorch/core";
import type { PlanJobResponse, PlanOption, PlanPart } from "@gpuorch/proto";
import { type Logger } from "@gpuorch/runtime";
import { type JobSpec, catalogGpuModel } from "@gpuorch/spec";
import { parseSpecOrThrow } from "./jobs-api.js";
import { NodePricer } from "./node-pricing.js";
import { admissionKey } from "./admission-key.js";

// A JobSpec must stay assignable to the optimizer's spec (core cannot import spec); this fails to compile if they drift.
export const specFitsOptimizer = (s: JobSpec): OptimizerSpec => s;
type StrayKeys = { [K in keyof OptimizerSpec]: Exclude<keyof OptimizerSpec[K], keyof JobSpec[K]> }[keyof OptimizerSpec];
export const noStrayKeys: [StrayKeys] extends [never] ? true : false = true;

export interface PlannerDeps {
  db: Database["db"];
  clock: Clock;
  logger: Logger;
  /** Egress tiers (not stored in the database; from the shipped files). */
  egress: readonly EgressTier[];
  /** Internal price of one on-prem GPU-hour, micro-USD. */
  onpremMicrosPerGpuHour: bigint;
  /** Reject infeasible specs at submit (RESOURCE_EXHAUSTED infeasible_job). */
  admission: boolean;
}

/** Distinct job shapes admission remembers per catalog and capacity snapshot. */
const ADMISSION_CACHE_MAX = 1_000;

interface CapacitySnapshot {
  at: number;
  free: ExistingNodeCapacity[];
  all: ExistingNodeCapacity[];
}

/** What admission decided for a submitted spec. */
export interface Admission {
  /** The chosen plan's expected total, decimal USD; null when admission was skipped. */
  estimatedCostUsd: string | null;
  best: PlanCandidate | null;
}

/**
 * The controller's view of prices and capacity for planning: the catalog from
 * `gpu_pricing` (reloaded after a refresh) and the registered nodes. PlanJob
 * and admission both run the pure optimizer of core on this.
 */
export class Planner {
  private catalog: Catalog = { offers: [], egress: [] };
  private admissionCache: { catalog: Catalog; capacity: CapacitySnapshot; plans: Map<string, OptimizeResult> } | null = null;
  private pricer: NodePricer;
  private capacity: CapacitySnapshot | null = null;

  constructor(private readonly deps: PlannerDeps) {
    this.pricer = new NodePricer([], deps.onpremMicrosPerGpuHour);
  }

  /** Reads the catalog from the database (at start and after each refresh). */
  async reload(): Promise<void> {
    const offers = await loadCatalogOffers(this.deps.db);
    this.catalog = { offers, egress: this.deps.egress };
    this.pricer = new NodePricer(offers, this.deps.onpremMicrosPerGpuHour);
    this.deps.logger.info({ offers: offers.length, egressTiers: this.deps.egress.length }, "price catalog loaded");
  }

  get offers(): Catalog["offers"] {
    return this.catalog.offers;
  }

  get nodePricer(): NodePricer {
    return this.pricer;
  }

  /** `gpuorch plan`: the plan table for a spec, feasible or not. */
  async plan(_principal: Principal, specYaml: string, limit: number): Promise<PlanJobResponse> {
    const spec = parseSpecOrThrow(specYaml);
    const result = await this.run(spec, limit > 0 ? limit : 20);
    const status = await listPricingStatus(this.deps.db).catch(() => []);
    const stale = status.filter((s) => s.lastError).map((s) => `${s.provider} prices: last refresh failed (${s.lastError})`);
    return toPlanResponse(result, this.catalog.offers.length + (this.capacity?.free.length ?? 0), [...result.notes, ...stale]);
  }

  /**
   * Admission at submit. Capacity of registered nodes counts as if free (a
   * busy fleet is a reason to wait, not to reject). A spec restricted to
   * on-prem is not rejected for want of nodes (nodes may still register, and
   * the scheduler keeps it pending with the reason), only when a plan on the
   * registered nodes exists but breaks its budget, deadline or reliability.
   */
  async admit(spec: JobSpec, key: string = admissionKey(spec)): Promise<Admission> {
    const result = await this.admissionPlan(spec, key);
    if (result.best) return { estimatedCostUsd: formatUsdMicros(result.best.totalMicros), best: result.best };
    const onpremOnly = spec.constraints.allowed_providers.length > 0 && spec.constraints.allowed_providers.every((p) => p === "onprem");
    // On-prem only and no node can take it yet: wait for nodes. A plan that exists but breaks budget/deadline/reliability is rejected.
    const waitForNodes = onpremOnly && result.alternatives.length === 0;
    if (waitForNodes || !this.deps.admission) return { estimatedCostUsd: null, best: null };
    throw new AppError("RESOURCE_EXHAUSTED", `job is infeasible: ${result.binding ?? "no plan meets the spec"}`, {
      reason: "infeasible_job",
      meta: { rejections: result.rejections.slice(0, 5).map((r) => `${r.code}: ${r.message} (${r.count})`).join("; ") },
    });
  }

  /**
   * "Checkpoint and relaunch" (the design guide's alternative to live
   * migration): when an attempt ends on `current` (its allocation), should
   * the next one stay on that kind of target or move to the optimizer's best
   * other feasible one? `decideMigration` moves only when the saving over the
   * remaining work beats the switching cost (moving the checkpoint, a
   * restart) by its hysteresis. Null when the job has no feasible plan or is
   * multi_task (its units are placed one by one anyway).
   */
  async adviseMigration(
    spec: JobSpec,
    current: { provider: string; region: string; instanceType: string; spot: boolean; microsPerHour: bigint; available: boolean },
    work: { remainingHours: number; lostWorkHours: number; checkpointGb: number },
  ): Promise<MigrationDecision | null> {
    const result = await this.run(spec, 10);
    const feasible = [result.best, ...result.alternatives].filter((c): c is PlanCandidate => c !== null && c.feasible && c.mode === "single_cluster");
    if (result.mode !== "single_cluster" || feasible.length === 0) return null;
    const key = (t: { provider: string; region: string; instanceType: string; spot: boolean }) => `${t.provider}/${t.region}/${t.instanceType || "nodes"}${t.spot ? "/spot" : ""}`;
    const currentKey = key(current);
    const src = sourceEgress(this.catalog.egress, { provider: current.provider === "onprem" ? "onprem" : (current.provider as "aws" | "gcp" | "azure"), region: current.region });
    const cur: MigrationTarget = {
      key: currentKey,
      provider: current.provider,
      region: current.region,
      spot: current.spot,
      hourlyMicros: current.microsPerHour,
      interruptionRatePerHour: 0,
      available: current.available,
    };
    const alternatives: MigrationAlternative[] = [];
    const seen = new Set([currentKey]);
    for (const c of feasible) {
      const t = c.targets[0];
      if (!t || seen.has(key(t))) continue;
      seen.add(key(t));
      alternatives.push({
        key: key(t),
        provider: t.provider,
        region: t.region,
        spot: t.spot,
        hourlyMicros: t.microsPerHour,
        interruptionRatePerHour: t.spot ? (t.offer?.spotInterruptionsPerHour ?? 0) * t.nodes : 0,
        available: true,
        // The checkpoint moves with the job (internet egress list prices when no tier matches).
        egressMicros: transferMicros(src, t.provider, t.region, work.checkpointGb, { internet: 90_000n, interRegion: 20_000n }),
      });
    }
    return decideMigration({ current: cur, alternatives, remainingHours: work.remainingHours, restartHours: 5 / 60, lostWorkHours: work.lostWorkHours });
  }

  /**
   * The requeue's stay-or-move advice: the ending attempt's allocation against
   * the optimizer's best other feasible target, over the work left (the
   * spec's estimated_hours less the time the job has run), the work lost since
   * its newest checkpoint, and the checkpoint's size to move.
   */
  async adviseRequeue(job: JobBrief): Promise<{ summary: string; details: Record<string, unknown> } | null> {
    const db = this.deps.db;
    const current = await attemptAllocation(db, job.id, job.attempt);
    if (!current) return null;
    const spec = typeof job.spec === "string" ? (JSON.parse(job.spec) as JobSpec) : (job.spec as unknown as JobSpec);
    const estimate = spec.job.estimated_hours ?? 1;
    const [ckpt, started] = await Promise.all([latestCheckpoint(db, job.id), jobStartedAt(db, job.id)]);
    const now = this.deps.clock.now().getTime();
    const ranHours = started ? (now - started.getTime()) / 3_600_000 : 0;
    const lostWorkHours = ckpt ? Math.max(0, (now - ckpt.createdAt.getTime()) / 3_600_000) : ranHours;
    const decision = await this.adviseMigration(
      spec,
      { ...current, available: true },
      { remainingHours: Math.max(estimate * 0.1, estimate - ranHours), lostWorkHours, checkpointGb: (ckpt?.bytes ?? 0) / 1e9 },
    );
    if (!decision) return null;
    return {
      summary: `migration: ${decision.action} (${decision.reason})`,
      details: {
        action: decision.action,
        target: decision.target.key,
        stay_total_usd: formatUsdMicros(decision.stayTotalMicros),
        move_total_usd: decision.moveTotalMicros === null ? null : formatUsdMicros(decision.moveTotalMicros),
        switch_cost_usd: formatUsdMicros(decision.switchCostMicros),
      },
    };
  }

  /**
   * Admission's plan, shared by specs that differ only where the optimizer
   * does not look (job name and project, entrypoint): a burst of submits of
   * one job shape (a batch of eval or inference jobs, a scripted sweep) runs
   * the optimizer once instead of once each. The cache lives exactly as long
   * as the catalog and the capacity snapshot it was computed on (the latter
   * is refreshed every second), so it adds no staleness of its own beyond
   * `nowMs` (deadlines) being up to that second old.
   */
  private async admissionPlan(spec: JobSpec, key: string): Promise<OptimizeResult> {
    const capacity = await this.existingCapacity();
    let cache = this.admissionCache;
    if (cache === null || cache.catalog !== this.catalog || cache.capacity !== capacity) {
      cache = this.admissionCache = { catalog: this.catalog, capacity, plans: new Map() };
    }
    const hit = cache.plans.get(key);
    if (hit) return hit;
    if (cache.plans.size >= ADMISSION_CACHE_MAX) cache.plans.clear();
    const result = this.optimizeOn(spec, capacity.all, 1);
    cache.plans.set(key, result);
    return result;
  }

  /** Plans and advice: only free GPUs of registered nodes count. */
  private async run(spec: JobSpec, maxAlternatives: number): Promise<OptimizeResult> {
    return this.optimizeOn(spec, (await this.existingCapacity()).free, maxAlternatives);
  }

  private optimizeOn(spec: JobSpec, nodes: readonly ExistingNodeCapacity[], maxAlternatives: number): OptimizeResult {
    return optimize(specFitsOptimizer(spec), this.catalog, nodes, { nowMs: this.deps.clock.now().getTime(), maxAlternatives });
  }

  /** Registered nodes' GPUs by model, free and in total; cached for a second (submits come in bursts). */
  private async existingCapacity(): Promise<CapacitySnapshot> {
    const now = this.deps.clock.now().getTime();
    if (this.capacity && now - this.capacity.at < 1000) return this.capacity;
    const nodes = await loadPlacementNodes(this.deps.db);
    const free: ExistingNodeCapacity[] = [];
    const all: ExistingNodeCapacity[] = [];
    for (const n of nodes) {
      if (n.state !== "ready") continue;
      const byModel = new Map<string, { memGb: number; total: number; free: number }>();
      for (const g of n.gpus) {
        const model = catalogGpuModel(g.name, g.memoryTotalMib);
        const e = byModel.get(model) ?? { memGb: (g.memoryTotalMib * 1024 * 1024) / 1e9, total: 0, free: 0 };
        e.total++;
        if (g.heldBy === null) e.free++;
        byModel.set(model, e);
      }
      const provider = n.provider === "aws" || n.provider === "gcp" || n.provider === "azure" ? n.provider : "onprem";
      for (const [model, e] of byModel) {
        const perGpu = this.pricer.price({ provider: n.provider, region: n.region, zone: n.zone, instanceType: n.instanceType, spot: n.spot, gpuCount: n.gpus.length }, 1);
        const offer = this.pricer.offerFor(n);
        const base = {
          nodeId: n.id,
          provider,
          region: n.region,
          network: n.network,
          gpuType: model,
          gpuMemoryGb: Math.floor(e.memGb),
          microsPerGpuHour: perGpu.microsPerHour,
          interconnect: offer?.interconnect ?? null,
        } as const;
        all.push({ ...base, freeGpus: e.total });
        if (e.free > 0) free.push({ ...base, freeGpus: e.free });
      }
    }
    this.capacity = { at: now, free, all };
    return this.capacity;
  }
}

const usd = (m: bigint): string => formatUsdMicros(m);

function toOption(c: PlanCandidate, rank: number): PlanOption {
  const parts: PlanPart[] = c.targets.map((t) => ({
    provider: t.provider,
    region: t.region,
    zone: t.zone,
    instanceType: t.instanceType || (t.nodeIds.length > 0 ? `${t.nodeIds.length} registered node${t.nodeIds.length > 1 ? "s" : ""}` : ""),
    instanceCount: t.nodes,
    gpusPerInstance: t.gpusPerNode,
    gpuType: t.gpuType,
    spot: t.spot,
    units: c.mode === "multi_task" ? t.units : 0,
    nodeId: t.nodeIds.join(","),
    usdPerHour: usd(t.microsPerHour),
    priceDate: t.offer?.priceDate ?? "",
  }));
  return {
    rank,
    feasible: c.feasible,
    reason: c.reason ?? (c.violations.length > 0 ? c.violations.join("; ") : ""),
    parts,
    usdPerHour: usd(c.microsPerHour),
    estimatedHours: c.hours,
    computeUsd: usd(c.computeMicros),
    egressUsd: usd(c.egressMicros),
    spotOverheadUsd: usd(c.spotOverheadMicros),
    totalUsd: usd(c.totalMicros),
    reliability: c.reliability,
    expectedCompletion: Number.isFinite(c.completionMs) ? new Date(c.completionMs) : undefined,
    score: Number.isFinite(c.score) ? c.score : 0,
  };
}

export function toPlanResponse(r: OptimizeResult, considered: number, notes: string[]): PlanJobResponse {
  const options: PlanOption[] = [];
  let rank = 0;
  if (r.best) options.push(toOption(r.best, ++rank));
  for (const c of r.alternatives) options.push(toOption(c, c.feasible ? ++rank : 0));
  const dates = r.best ? r.best.targets.map((t) => t.offer?.priceDate).filter((d): d is string => !!d) : [];
  const rejections = r.rejections.map((x) => `filtered out ${x.count}: ${x.message}`);
  return {
    feasible: r.best !== null,
    infeasibleReason: r.best ? "" : (r.binding ?? "no plan meets the spec"),
    options,
    offersConsidered: considered,
    oldestPriceDate: dates.sort()[0] ?? "",
    notes: [...notes, ...rejections],
  };
}
