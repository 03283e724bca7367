import type { Catalog, CatalogOffer, ExistingNodeCapacity } from "../catalog.js";
import { MIG_CAPABLE_GPU_TYPES, NON_NVIDIA_GPU_TYPES, migProfileMemoryGb } from "../cost/accelerators.js";
import { checkpointIntervalHours, resolveCostModel, spotExpectation, spotReliability } from "../cost/cost-model.js";
import { datasetLocation, sourceEgress, transferMicros, type DataLocation } from "../cost/egress.js";
import { meteredMicros } from "../cost/metered.js";
import type { OptimizerSpec } from "../cost/optimizer-spec.js";
import { hoursOnGpu } from "../cost/performance.js";
import { parseUsdMicros } from "../micros.js";
import { DEFAULT_MAX_INSTANCES_PER_OFFER, DEFAULT_MAX_NODES_PER_CLUSTER, type OptimizeOptions, type PlanProvider } from "./types.js";

/*
 * The reference the optimizer is tested against: the model of optimizer/README.md written a
 * second time, as plainly as possible, sharing only the cost-model arithmetic (cost/) and none
 * of the optimizer's filtering, enumeration or DP. single_cluster: every (offer, pricing) and
 * every subset of registered nodes. multi_task: every vector of copy counts over every target.
 * Exponential; only for the small random instances of the property test.
 */

export interface BruteBest {
  score: number;
  cost: bigint;
  hours: number;
  /** kind|provider|region|zone|instanceType|spot (no node ids: equal-cost node subsets may differ). */
  key: string;
}

interface Setup {
  spec: OptimizerSpec;
  model: ReturnType<typeof resolveCostModel>;
  est: number;
  ref: string;
  ckpt: number | null;
  budget: bigint | null;
  avail: number;
  cuda: boolean;
  need: number;
  nodeGpus: number;
  shared: boolean;
  loc: DataLocation | null;
  priced: boolean;
  pinned: boolean;
  transfer: (provider: PlanProvider, region: string, gb: number) => bigint;
  nodeCap: Record<PlanProvider, number>;
  maxInst: number;
  maxSpot: number | null;
}

function setup(spec: OptimizerSpec, catalog: Catalog, options: OptimizeOptions): Setup {
  const model = resolveCostModel(options);
  const d = spec.data;
  let loc: DataLocation | null = null;
  if (d.locality !== "ignore" && (d.dataset !== undefined || options.datasetLocation)) loc = datasetLocation(d, options.datasetLocation);
  const size = d.size_gb ?? 0;
  const src = loc === null ? null : sourceEgress(catalog.egress, loc);
  const fallback = { internet: model.fallbackInternetMicrosPerGb, interRegion: model.fallbackInterRegionMicrosPerGb };
  const shared = spec.resources.gpu_fraction !== undefined || spec.resources.mig_profile !== undefined;
  return {
    spec,
    model,
    est: spec.job.estimated_hours ?? model.defaultEstimatedHours,
    ref: spec.resources.gpu_type[0] ?? "A100",
    ckpt: checkpointIntervalHours(spec.checkpoint, model),
    budget: spec.constraints.budget_usd === undefined ? null : parseUsdMicros(spec.constraints.budget_usd),
    avail: spec.constraints.deadline === undefined ? Infinity : (Date.parse(spec.constraints.deadline) - options.nowMs) / 3_600_000,
    cuda: spec.job.framework !== "command" || !spec.resources.gpu_type.some((t) => NON_NVIDIA_GPU_TYPES.has(t)),
    need: spec.resources.gpu_fraction ?? (shared ? 1 : spec.resources.gpus),
    nodeGpus: shared ? 1 : spec.resources.gpus,
    shared,
    loc,
    priced: loc !== null && size > 0,
    pinned: loc !== null && d.locality === "required" && d.replication_policy === "none",
    transfer: (p, r, gb) => (src === null || gb <= 0 ? 0n : transferMicros(src, p, r, gb, fallback)),
    nodeCap: { ...DEFAULT_MAX_NODES_PER_CLUSTER, ...(options.limits?.maxNodesPerCluster ?? {}) } as Record<PlanProvider, number>,
    maxInst: options.limits?.maxInstancesPerOffer ?? DEFAULT_MAX_INSTANCES_PER_OFFER,
    maxSpot: options.limits?.maxSpotInstancesPerOffer ?? null,
  };
}

function hoursOn(s: Setup, type: string): number {
  return hoursOnGpu(s.model.performance, s.est, s.ref, type, s.spec.job.type);
}

function placeOk(s: Setup, provider: string, region: string): boolean {
  const c = s.spec.constraints;
  if (c.allowed_providers.length > 0 && !(c.allowed_providers as readonly string[]).includes(provider)) return false;
  if ((c.excluded_providers as readonly string[]).includes(provider)) return false;
  if (c.allowed_regions.length > 0 && !c.allowed_regions.includes(region)) return false;
  if (c.excluded_regions.includes(region)) return false;
  if (s.pinned && s.loc !== null && !(s.loc.provider === provider && (s.loc.region === null || s.loc.region === region))) return false;
  return true;
}

function gpuOk(s: Setup, type: string, memPerGpu: number, usableMem: number): boolean {
  const r = s.spec.resources;
  if (s.cuda && NON_NVIDIA_GPU_TYPES.has(type)) return false;
  if (r.gpu_type.length > 0 && !r.gpu_type.includes(type)) return false;
  if ((r.gpu_memory_gb ?? 0) > usableMem) return false;
  if (r.mig_profile !== undefined && (!MIG_CAPABLE_GPU_TYPES.has(type) || memPerGpu < (migProfileMemoryGb(r.mig_profile) ?? 0))) return false;
  return true;
}

function offerOk(s: Setup, o: CatalogOffer): boolean {
  const r = s.spec.resources;
  if (!placeOk(s, o.provider, o.region)) return false;
  if (!gpuOk(s, o.gpuType, o.gpuMemoryGb, o.gpuCount < 1 ? o.gpuCount * o.gpuMemoryGb : o.gpuMemoryGb)) return false;
  if (r.gpu_fraction === undefined && o.gpuCount < 1) return false;
  if (r.gpu_fraction !== undefined && o.gpuCount < r.gpu_fraction) return false;
  if (o.gpuCount > (r.max_gpus_per_node ?? Infinity)) return false;
  return true;
}

function pricings(s: Setup, o: CatalogOffer): boolean[] {
  return s.spec.constraints.allow_spot && o.spotMicrosPerHour !== null ? [false, true] : [false];
}

function better(a: BruteBest & { kindRank: number }, b: BruteBest & { kindRank: number }): boolean {
  if (a.score !== b.score) return a.score < b.score;
  if (a.cost !== b.cost) return a.cost < b.cost;
  if (a.hours !== b.hours) return a.hours < b.hours;
  if (a.kindRank !== b.kindRank) return a.kindRank < b.kindRank;
  return a.key < b.key;
}

function scoreOf(cost: bigint, hours: number, minCost: bigint, minHours: number, w: number): number {
  return (1 - w) * ((Number(cost) + 1) / (Number(minCost) + 1)) + w * (minHours > 0 ? hours / minHours : 1);
}

interface Cand {
  cost: bigint;
  hours: number;
  reliability: number;
  key: string;
  kindRank: number;
}

function pickBest(s: Setup, cands: readonly Cand[]): BruteBest | null {
  const ok = cands.filter((c) => (s.budget === null || c.cost <= s.budget) && c.hours <= s.avail && c.reliability >= s.spec.constraints.min_reliability);
  if (ok.length === 0) return null;
  let minCost = ok[0]?.cost ?? 0n;
  let minHours = Infinity;
  for (const c of ok) {
    if (c.cost < minCost) minCost = c.cost;
    if (c.hours < minHours) minHours = c.hours;
  }
  let best: (BruteBest & { kindRank: number }) | null = null;
  for (const c of ok) {
    const b = { score: scoreOf(c.cost, c.hours, minCost, minHours, s.spec.constraints.performance_weight), cost: c.cost, hours: c.hours, key: c.key, kindRank: c.kindRank };
    if (best === null || better(b, best)) best = b;
  }
  return best === null ? null : { score: best.score, cost: best.cost, hours: best.hours, key: best.key };
}

function egress(s: Setup, provider: PlanProvider, region: string, nodes: number, interruptions: number): bigint {
  if (!s.priced) return 0n;
  const size = s.spec.data.size_gb ?? 0;
  const policy = s.spec.data.replication_policy;
  if (policy === "pre-stage") return s.transfer(provider, region, size);
  if (policy === "on-demand-cache") return BigInt(nodes) * s.transfer(provider, region, size);
  return BigInt(nodes) * s.transfer(provider, region, size * (1 + interruptions));
}

function subsets<T>(xs: readonly T[], k: number): T[][] {
  if (k === 0) return [[]];
  const out: T[][] = [];
  xs.forEach((x, i) => {
    for (const rest of subsets(xs.slice(i + 1), k - 1)) out.push([x, ...rest]);
  });
  return out;
}

/** Best single_cluster plan by exhaustive enumeration, or null when none is feasible. */
export function bruteForceCluster(spec: OptimizerSpec, catalog: Catalog, nodes: readonly ExistingNodeCapacity[], options: OptimizeOptions): BruteBest | null {
  const s = setup(spec, catalog, options);
  const r = spec.resources;
  const multi = r.requires_multi_node;
  const cands: Cand[] = [];
  for (const o of catalog.offers) {
    if (!offerOk(s, o)) continue;
    let n = 1;
    if (multi) {
      if (o.interconnect === null || o.gpuCount < 1) continue;
      n = Math.ceil(r.gpus / Math.floor(o.gpuCount));
      if (n > s.nodeCap[o.provider]) continue;
    } else if (o.gpuCount < s.need) continue;
    const h = hoursOn(s, o.gpuType);
    for (const spot of pricings(s, o)) {
      const price = (spot ? (o.spotMicrosPerHour as bigint) : o.onDemandMicrosPerHour) * BigInt(n);
      let hours = h;
      let mu = 0;
      let rel = s.model.onDemandReliability;
      if (spot) {
        const e = spotExpectation(h, o.spotInterruptionsPerHour ?? s.model.defaultSpotInterruptionsPerHour, n, s.model.restartOverheadHours, s.ckpt);
        hours = e.expectedHours;
        mu = e.expectedInterruptions;
        rel = spotReliability(o.spotAvailability ?? s.model.defaultSpotAvailability, mu, spec.retry.max_attempts);
      }
      const cost = meteredMicros(price, hours) + egress(s, o.provider, o.region, n, mu);
      cands.push({ cost, hours, reliability: rel, kindRank: 1, key: `cloud|${o.provider}|${o.region}|${o.zone}|${o.instanceType}|${spot}` });
    }
  }
  const okNodes = nodes.filter((x) => placeOk(s, x.provider, x.region) && gpuOk(s, x.gpuType, x.gpuMemoryGb, x.gpuMemoryGb));
  const existing = (chosen: readonly ExistingNodeCapacity[], k: number): void => {
    const first = chosen[0] as ExistingNodeCapacity;
    let perHour = 0n;
    for (const x of chosen) perHour += x.microsPerGpuHour * BigInt(k);
    const h = hoursOn(s, first.gpuType);
    cands.push({
      cost: meteredMicros(perHour, h) + egress(s, first.provider, first.region, chosen.length, 0),
      hours: h,
      reliability: s.model.existingNodeReliability,
      kindRank: 0,
      key: `existing|${first.provider}|${first.region}|||`,
    });
  };
  if (!multi) {
    for (const x of okNodes) if (s.nodeGpus <= (r.max_gpus_per_node ?? Infinity) && x.freeGpus >= s.nodeGpus) existing([x], s.nodeGpus);
  } else {
    const groups = new Map<string, ExistingNodeCapacity[]>();
    for (const x of okNodes) {
      if (x.interconnect === null && x.provider !== "onprem") continue;
      const key = [x.provider, x.region, x.network, x.gpuType, x.gpuMemoryGb].join("|");
      groups.set(key, [...(groups.get(key) ?? []), x]);
    }
    for (const g of groups.values()) {
      for (let k = 1; k <= r.gpus; k++) {
        if (r.gpus % k !== 0 || k > (r.max_gpus_per_node ?? Infinity)) continue;
        const n = r.gpus / k;
        if (n > s.nodeCap[(g[0] as ExistingNodeCapacity).provider]) continue;
        for (const chosen of subsets(g.filter((x) => x.freeGpus >= k), n)) existing(chosen, k);
      }
    }
  }
  return pickBest(s, cands);
}

interface Target {
  slots: number;
  cap: number;
  copyCost: bigint;
  fixed: bigint;
  group: string;
  span: number;
  reliability: number;
}

/** Best multi_task plan by enumerating every copy-count vector, or null when none is feasible. */
export function bruteForceTasks(spec: OptimizerSpec, catalog: Catalog, nodes: readonly ExistingNodeCapacity[], options: OptimizeOptions): BruteBest | null {
  const s = setup(spec, catalog, options);
  const r = spec.resources;
  const tasks = spec.execution.tasks;
  const P = Math.min(tasks, spec.execution.max_parallel ?? tasks);
  const W = Math.ceil(tasks / P);
  const policy = spec.data.replication_policy;
  const size = spec.data.size_gb ?? 0;
  const targets: Target[] = [];
  for (const o of catalog.offers) {
    if (!offerOk(s, o)) continue;
    const slots = s.shared ? (o.gpuCount < 1 ? 1 : Math.floor(o.gpuCount)) : Math.floor(o.gpuCount / r.gpus);
    if (slots < 1) continue;
    const hu = hoursOn(s, o.gpuType);
    for (const spot of pricings(s, o)) {
      const price = spot ? (o.spotMicrosPerHour as bigint) : o.onDemandMicrosPerHour;
      let span = W * hu;
      let rel = s.model.onDemandReliability;
      let mu = 0;
      let cap = s.maxInst;
      if (spot) {
        const rate = o.spotInterruptionsPerHour ?? s.model.defaultSpotInterruptionsPerHour;
        const availability = o.spotAvailability ?? s.model.defaultSpotAvailability;
        const e = spotExpectation(hu, rate, 1, s.model.restartOverheadHours, s.ckpt);
        span = W * e.expectedHours;
        mu = rate * W * hu;
        rel = spotReliability(availability, e.expectedInterruptions, spec.retry.max_attempts);
        cap = s.maxSpot ?? Math.max(1, Math.floor(s.maxInst * availability));
      }
      let e = 0n;
      if (s.priced && policy === "on-demand-cache") e = s.transfer(o.provider, o.region, size);
      if (s.priced && policy === "none") e = s.transfer(o.provider, o.region, size * (1 + mu));
      targets.push({ slots, cap, copyCost: meteredMicros(price, span) + e, fixed: 0n, group: `${o.provider}|${o.region}`, span, reliability: rel });
    }
  }
  for (const x of nodes) {
    if (!placeOk(s, x.provider, x.region) || !gpuOk(s, x.gpuType, x.gpuMemoryGb, x.gpuMemoryGb)) continue;
    if (s.nodeGpus > (r.max_gpus_per_node ?? Infinity)) continue;
    const cap = Math.floor(x.freeGpus / s.nodeGpus);
    if (cap < 1) continue;
    const span = W * hoursOn(s, x.gpuType);
    const fixed = s.priced && policy !== "pre-stage" ? s.transfer(x.provider, x.region, size) : 0n;
    targets.push({
      slots: 1,
      cap,
      copyCost: meteredMicros(x.microsPerGpuHour * BigInt(s.nodeGpus), span),
      fixed,
      group: `${x.provider}|${x.region}`,
      span,
      reliability: s.model.existingNodeReliability,
    });
  }
  const groupCharge = (g: string): bigint => {
    if (!s.priced || policy !== "pre-stage") return 0n;
    const [p, region] = g.split("|") as [PlanProvider, string];
    return s.transfer(p, region, size);
  };
  const cands: Cand[] = [];
  const copies = new Array<number>(targets.length).fill(0);
  const visit = (i: number): void => {
    if (i === targets.length) {
      let covered = 0;
      let cost = 0n;
      let hours = 0;
      let rel = 1;
      const groups = new Set<string>();
      targets.forEach((t, j) => {
        const k = copies[j] as number;
        if (k === 0) return;
        covered += k * t.slots;
        cost += BigInt(k) * t.copyCost + t.fixed;
        hours = Math.max(hours, t.span);
        rel = Math.min(rel, t.reliability);
        groups.add(t.group);
      });
      if (covered < P) return;
      for (const g of groups) cost += groupCharge(g);
      cands.push({ cost, hours, reliability: rel, key: "", kindRank: 0 });
      return;
    }
    const t = targets[i] as Target;
    for (let k = 0; k <= t.cap; k++) {
      copies[i] = k;
      visit(i + 1);
    }
    copies[i] = 0;
  };
  visit(0);
  return pickBest(s, cands);
}
