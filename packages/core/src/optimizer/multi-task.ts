import type { Catalog, CatalogOffer, ExistingNodeCapacity } from "../catalog.js";
import { spotExpectation, spotReliability } from "../cost/cost-model.js";
import { meteredMicros } from "../cost/metered.js";
import {
  baseHoursOn,
  nodeRejection,
  offerRejection,
  spotParams,
  transferTo,
  unitsPerInstance,
  type RejectionTally,
  type Requirement,
} from "./requirement.js";
import type { PlanProvider, PlanTarget } from "./types.js";

/*
 * multi_task as a bounded covering knapsack, solved exactly by dynamic
 * programming over the number of concurrent units. See optimizer/README.md
 * ("multi_task optimality") for the model and the proof; in short:
 *
 *  - P = min(tasks, max_parallel) slots must run at once; each slot runs
 *    W = ceil(tasks / P) tasks back to back, so every target is held for
 *    W × (its expected unit hours) = its `span`.
 *  - A cloud target (offer × on-demand/spot) is bought in whole instances,
 *    each giving `slots` units for `copyCost`, at most `maxCopies` of them.
 *    A registered node gives one unit per `nodeGpusPerUnit` free GPUs, billed
 *    per unit, plus a once-per-node `fixedCost` (data copied to that node).
 *    pre-stage copies the dataset once per provider+region: a fixed charge
 *    per group.
 *  - Minimise Σ cost subject to Σ units ≥ P. Costs are integer micro-dollars
 *    held in float64, exact below 2^53 µ$ (≈ $9·10^9), so the DP compares
 *    exact integers.
 *  - The makespan is max span over the targets used. Sorting targets by span
 *    and recording the DP optimum after each distinct span gives C(h), the
 *    cheapest plan using only targets with span ≤ h, for every h: the
 *    cost/makespan Pareto frontier. The score is minimised over it.
 */

export interface TaskTarget {
  kind: "cloud" | "existing";
  offer: CatalogOffer | null;
  node: ExistingNodeCapacity | null;
  provider: PlanProvider;
  region: string;
  zone: string;
  instanceType: string;
  nodeId: string;
  gpuType: string;
  gpuMemoryGb: number;
  spot: boolean;
  /** Units one copy holds: units per instance (cloud), 1 (existing). */
  slots: number;
  maxCopies: number;
  /** Exact integer micro-dollars of one copy (instance incl. spot overhead and per-node data; or one unit on a node). */
  copyCost: number;
  /** Paid once when a registered node is used at all (its data copy); 0 for cloud. */
  fixedCost: number;
  /** Index of the provider+region group (pre-stage fixed charge). */
  group: number;
  /** Hours a slot is held: W × expected unit hours (spot interruptions included). */
  span: number;
  baseSpan: number;
  /** Per unit: availability × P(interruptions ≤ max_attempts − 1); on-demand / node constants. */
  reliability: number;
  /** Expected interruptions of one instance over its span. */
  interruptionsPerCopy: number;
  microsPerHourPerCopy: bigint;
  gpusPerCopy: number;
  computePerCopy: bigint;
  overheadPerCopy: bigint;
  egressPerCopy: bigint;
  fixedEgress: bigint;
}

export interface TaskGroup {
  provider: PlanProvider;
  region: string;
  /** pre-stage transfer to this region; 0 otherwise. */
  fixedEgress: bigint;
  fixedCost: number;
}

export interface TaskModel {
  targets: TaskTarget[];
  groups: TaskGroup[];
  /** Any group has a fixed charge: the DP must use the per-group pass. */
  hasFixed: boolean;
}

const MAX_EXACT = Number.MAX_SAFE_INTEGER;

function exact(micros: bigint): number {
  if (micros > BigInt(MAX_EXACT)) throw new RangeError(`cost ${micros} µ$ exceeds the exact float range`);
  return Number(micros);
}

/** Every usable target, sorted by span then a stable key, with static rejections tallied. */
export function taskModel(req: Requirement, catalog: Catalog, existing: readonly ExistingNodeCapacity[], tally: RejectionTally): TaskModel {
  const groups: TaskGroup[] = [];
  const groupIndex = new Map<string, number>();
  const groupOf = (provider: PlanProvider, region: string): number => {
    const key = `${provider}\u0000${region}`;
    let i = groupIndex.get(key);
    if (i === undefined) {
      i = groups.length;
      const fixedEgress = req.data.policy === "pre-stage" ? transferTo(req, provider, region, req.data.sizeGb) : 0n;
      groups.push({ provider, region, fixedEgress, fixedCost: exact(fixedEgress) });
      groupIndex.set(key, i);
    }
    return i;
  };
  const P = req.parallel;
  const W = req.waves;
  const targets: TaskTarget[] = [];
  for (const o of catalog.offers) {
    const r = offerRejection(req, o);
    if (r !== null) {
      tally.add(r);
      continue;
    }
    const g = groupOf(o.provider, o.region);
    targets.push(cloudTarget(req, o, false, g, P, W));
    if (req.allowSpot && o.spotMicrosPerHour !== null) targets.push(cloudTarget(req, o, true, g, P, W));
  }
  for (const x of existing) {
    const r = nodeRejection(req, x);
    if (r !== null) {
      tally.add(r);
      continue;
    }
    targets.push(nodeTarget(req, x, groupOf(x.provider, x.region), P, W));
  }
  targets.sort(compareTargets);
  return { targets, groups, hasFixed: groups.some((g) => g.fixedCost > 0) };
}

function cloudTarget(req: Requirement, o: CatalogOffer, spot: boolean, group: number, P: number, W: number): TaskTarget {
  const slots = unitsPerInstance(req, o.gpuCount);
  const unitHours = baseHoursOn(req, o.gpuType);
  const price = spot ? (o.spotMicrosPerHour ?? 0n) : o.onDemandMicrosPerHour;
  const baseSpan = W * unitHours;
  let span = baseSpan;
  let reliability = req.model.onDemandReliability;
  let interruptions = 0;
  let cap = req.maxInstancesPerOffer;
  if (spot) {
    const p = spotParams(req, o);
    // Per unit: its own run of unitHours on this instance; the instance is interrupted at rate λ.
    const s = spotExpectation(unitHours, p.rate, 1, req.model.restartOverheadHours, req.checkpointHours);
    span = W * s.expectedHours;
    interruptions = p.rate * baseSpan;
    reliability = spotReliability(p.availability, s.expectedInterruptions, req.maxAttempts);
    cap = req.maxSpotInstancesPerOffer ?? Math.max(1, Math.floor(req.maxInstancesPerOffer * p.availability));
  }
  const compute = meteredMicros(price, baseSpan);
  const run = spot ? meteredMicros(price, span) : compute;
  const d = req.data;
  let egress = 0n;
  if (d.priced && d.policy === "on-demand-cache") egress = transferTo(req, o.provider, o.region, d.sizeGb);
  else if (d.priced && d.policy === "none") egress = transferTo(req, o.provider, o.region, d.sizeGb * (1 + interruptions));
  return {
    kind: "cloud",
    offer: o,
    node: null,
    provider: o.provider,
    region: o.region,
    zone: o.zone,
    instanceType: o.instanceType,
    nodeId: "",
    gpuType: o.gpuType,
    gpuMemoryGb: o.gpuMemoryGb,
    spot,
    slots,
    // More instances than it takes to cover P alone can never help a minimum.
    maxCopies: Math.max(0, Math.min(cap, Math.ceil(P / slots))),
    copyCost: exact(run + egress),
    fixedCost: 0,
    group,
    span,
    baseSpan,
    reliability,
    interruptionsPerCopy: interruptions,
    microsPerHourPerCopy: price,
    gpusPerCopy: o.gpuCount,
    computePerCopy: compute,
    overheadPerCopy: run - compute,
    egressPerCopy: egress,
    fixedEgress: 0n,
  };
}

function nodeTarget(req: Requirement, x: ExistingNodeCapacity, group: number, P: number, W: number): TaskTarget {
  const unitHours = baseHoursOn(req, x.gpuType);
  const baseSpan = W * unitHours;
  const price = x.microsPerGpuHour * BigInt(req.nodeGpusPerUnit);
  const compute = meteredMicros(price, baseSpan);
  const d = req.data;
  const fixedEgress = d.priced && (d.policy === "on-demand-cache" || d.policy === "none") ? transferTo(req, x.provider, x.region, d.sizeGb) : 0n;
  return {
    kind: "existing",
    offer: null,
    node: x,
    provider: x.provider,
    region: x.region,
    zone: "",
    instanceType: "",
    nodeId: x.nodeId,
    gpuType: x.gpuType,
    gpuMemoryGb: x.gpuMemoryGb,
    spot: false,
    slots: 1,
    maxCopies: Math.min(P, Math.floor(x.freeGpus / req.nodeGpusPerUnit)),
    copyCost: exact(compute),
    fixedCost: exact(fixedEgress),
    group,
    span: baseSpan,
    baseSpan,
    reliability: req.model.existingNodeReliability,
    interruptionsPerCopy: 0,
    microsPerHourPerCopy: price,
    gpusPerCopy: req.nodeGpusPerUnit,
    computePerCopy: compute,
    overheadPerCopy: 0n,
    egressPerCopy: 0n,
    fixedEgress,
  };
}

const cmpStr = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Span first (the frontier sweep needs it); then a total order so equal-cost ties resolve the same way every run. */
export function compareTargets(a: TaskTarget, b: TaskTarget): number {
  if (a.span !== b.span) return a.span - b.span;
  if (a.kind !== b.kind) return a.kind === "existing" ? -1 : 1;
  return (
    cmpStr(a.provider, b.provider) ||
    cmpStr(a.region, b.region) ||
    cmpStr(a.zone, b.zone) ||
    cmpStr(a.instanceType, b.instanceType) ||
    cmpStr(a.nodeId, b.nodeId) ||
    (a.spot === b.spot ? 0 : a.spot ? 1 : -1)
  );
}

/** A persistent list of DP decisions: `copies` of target `t`, or (t = -1) opening group `group`. */
export interface Choice {
  t: number;
  copies: number;
  group: number;
  prev: Choice | null;
}

export interface FrontierPoint {
  /** Exact integer micro-dollars. */
  cost: number;
  /** The largest span allowed at this point (the plan's makespan, see README). */
  threshold: number;
  choice: Choice | null;
}

class CoverDp {
  readonly g: Float64Array;
  readonly ch: (Choice | null)[];
  constructor(readonly P: number) {
    this.g = new Float64Array(P + 1).fill(Number.POSITIVE_INFINITY);
    this.g[0] = 0;
    this.ch = new Array<Choice | null>(P + 1).fill(null);
  }

  /** Adds target `i` as a 0/1 choice among copies 0..maxCopies (binary bundles for cloud, multiple choice for nodes). */
  add(targets: readonly TaskTarget[], i: number, g: Float64Array, ch: (Choice | null)[]): void {
    const t = targets[i];
    if (t === undefined || t.maxCopies <= 0) return;
    const P = this.P;
    const fixed = t.fixedCost;
    if (fixed === 0) {
      // Bundles 1, 2, 4, … , rest: any count 0..maxCopies is a sum of a subset of them.
      let rest = t.maxCopies;
      for (let b = 1; rest > 0; b *= 2) {
        const k = Math.min(b, rest);
        rest -= k;
        const w = k * t.slots;
        const c = k * t.copyCost;
        for (let u = P; u >= 1; u--) {
          const j = u > w ? u - w : 0;
          const v = (g[j] as number) + c;
          if (v < (g[u] as number)) {
            g[u] = v;
            ch[u] = { t: i, copies: k, group: t.group, prev: ch[j] ?? null };
          }
        }
      }
    } else {
      // A registered node with a once-per-node charge: choose k units (1..maxCopies) at k·cost + fixed.
      for (let u = P; u >= 1; u--) {
        let best = g[u] as number;
        let bestK = 0;
        let bestJ = 0;
        for (let k = 1; k <= t.maxCopies; k++) {
          const j = u > k * t.slots ? u - k * t.slots : 0;
          const v = (g[j] as number) + k * t.copyCost + fixed;
          if (v < best) {
            best = v;
            bestK = k;
            bestJ = j;
          }
          if (j === 0) break;
        }
        if (bestK > 0) {
          g[u] = best;
          ch[u] = { t: i, copies: bestK, group: t.group, prev: ch[bestJ] ?? null };
        }
      }
    }
  }
}

/**
 * C(h) for every distinct span h of `targets` (sorted by span): the cheapest
 * cover of P units using only targets with span ≤ h. Without fixed charges one
 * incremental DP pass yields them all (adding a target only extends the item
 * set). With pre-stage charges per group, C(h) needs a DP of its own, so it is
 * computed on demand and memoised, and `lowerBound(k)` (the same DP without
 * the group charges, which can only be cheaper) lets the caller skip
 * thresholds that cannot win.
 */
export class CoverSolver {
  readonly thresholds: number[] = [];
  private readonly lb: FrontierPoint[] = [];
  private readonly exactAt = new Map<number, FrontierPoint>();

  constructor(
    private readonly model: TaskModel,
    readonly targets: readonly TaskTarget[],
    private readonly P: number,
  ) {
    const dp = new CoverDp(P);
    let i = 0;
    while (i < targets.length) {
      const h = (targets[i] as TaskTarget).span;
      for (; i < targets.length && (targets[i] as TaskTarget).span === h; i++) dp.add(targets, i, dp.g, dp.ch);
      this.thresholds.push(h);
      this.lb.push({ cost: dp.g[P] as number, threshold: h, choice: dp.ch[P] ?? null });
    }
  }

  get size(): number {
    return this.thresholds.length;
  }

  /** A lower bound of C at threshold index k (exact when there are no fixed charges). */
  lowerBound(k: number): number {
    return (this.lb[k] as FrontierPoint).cost;
  }

  /** C at threshold index k, with its plan; cost Infinity when nothing covers P. */
  exact(k: number): FrontierPoint {
    if (!this.model.hasFixed) return this.lb[k] as FrontierPoint;
    let p = this.exactAt.get(k);
    if (p === undefined) {
      const h = this.thresholds[k] as number;
      let upto = 0;
      while (upto < this.targets.length && (this.targets[upto] as TaskTarget).span <= h) upto++;
      const r = groupedCover(this.model, this.targets, upto, this.P);
      p = { cost: r.cost, threshold: h, choice: r.choice };
      this.exactAt.set(k, p);
    }
    return p;
  }

  /** The cheapest plan overall (largest threshold), or null when nothing covers P. */
  cheapest(): FrontierPoint | null {
    if (this.size === 0) return null;
    const p = this.exact(this.size - 1);
    return p.cost < Number.POSITIVE_INFINITY ? p : null;
  }

  /**
   * Smallest threshold index whose cheapest plan passes `ok` (a cost
   * predicate that holds for every cost below one that holds: a budget), or
   * -1. C is non-increasing in k, so a binary search between where the lower
   * bound first passes and `upTo` (an index known to pass, when the caller has one).
   */
  firstWithin(ok: (cost: number) => boolean, upTo = this.size - 1): number {
    let lo = 0;
    while (lo < this.size && !ok(this.lowerBound(lo))) lo++;
    let hi = upTo;
    if (lo > hi || !ok(this.exact(hi).cost)) return -1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ok(this.exact(mid).cost)) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

/** Cheapest cover using targets[0..upto) with a fixed charge per group opened. */
function groupedCover(model: TaskModel, targets: readonly TaskTarget[], upto: number, P: number): { cost: number; choice: Choice | null } {
  const byGroup = new Map<number, number[]>();
  for (let i = 0; i < upto; i++) {
    const t = targets[i] as TaskTarget;
    const l = byGroup.get(t.group);
    if (l) l.push(i);
    else byGroup.set(t.group, [i]);
  }
  const dp = new CoverDp(P);
  const tmp = new Float64Array(P + 1);
  const tmpCh = new Array<Choice | null>(P + 1).fill(null);
  const order = [...byGroup.keys()].sort((a, b) => a - b);
  for (const gi of order) {
    const grp = model.groups[gi] as TaskGroup;
    const members = byGroup.get(gi) ?? [];
    if (grp.fixedCost === 0) {
      for (const i of members) dp.add(targets, i, dp.g, dp.ch);
      continue;
    }
    // Open the group: every state pays the charge once, the group's targets build on that, and
    // each state then keeps the better of "group closed" and "group open".
    for (let u = 0; u <= P; u++) {
      tmp[u] = (dp.g[u] as number) + grp.fixedCost;
      tmpCh[u] = { t: -1, copies: 0, group: gi, prev: dp.ch[u] ?? null };
    }
    for (const i of members) dp.add(targets, i, tmp, tmpCh);
    for (let u = 1; u <= P; u++) {
      if ((tmp[u] as number) < (dp.g[u] as number)) {
        dp.g[u] = tmp[u] as number;
        dp.ch[u] = tmpCh[u] ?? null;
      }
    }
  }
  return { cost: dp.g[P] as number, choice: dp.ch[P] ?? null };
}

export interface TaskPlan {
  targets: PlanTarget[];
  totalMicros: bigint;
  computeMicros: bigint;
  overheadMicros: bigint;
  egressMicros: bigint;
  microsPerHour: bigint;
  makespan: number;
  reliability: number;
  interruptions: number;
}

/**
 * Turns a DP choice list into plan targets: copies summed per target, the P
 * slots handed out fastest target first, and the tasks (W per slot, the last
 * ones short) after them. Pre-stage copies are charged to the first target
 * of their region.
 */
export function materializeTaskPlan(req: Requirement, model: TaskModel, targets: readonly TaskTarget[], choice: Choice | null): TaskPlan {
  const copies = new Map<number, number>();
  const opened = new Set<number>();
  for (let c = choice; c !== null; c = c.prev) {
    if (c.t < 0) opened.add(c.group);
    else copies.set(c.t, (copies.get(c.t) ?? 0) + c.copies);
  }
  const used = [...copies.keys()].sort((a, b) => a - b);
  let slotsLeft = req.parallel;
  let tasksLeft = req.tasks;
  const out: PlanTarget[] = [];
  const charged = new Set<number>();
  let total = 0n;
  let compute = 0n;
  let overhead = 0n;
  let egress = 0n;
  let perHour = 0n;
  let makespan = 0;
  let reliability = 1;
  let interruptions = 0;
  for (const i of used) {
    const t = targets[i] as TaskTarget;
    const k = copies.get(i) ?? 0;
    const kb = BigInt(k);
    const slots = Math.min(slotsLeft, k * t.slots);
    slotsLeft -= slots;
    const units = Math.min(tasksLeft, slots * req.waves);
    tasksLeft -= units;
    let e = t.egressPerCopy * kb + t.fixedEgress;
    if (opened.has(t.group) && !charged.has(t.group)) {
      charged.add(t.group);
      e += (model.groups[t.group] as TaskGroup).fixedEgress;
    }
    const c = t.computePerCopy * kb;
    const o = t.overheadPerCopy * kb;
    const mph = t.microsPerHourPerCopy * kb;
    const tgt: PlanTarget = {
      kind: t.kind,
      provider: t.provider,
      region: t.region,
      zone: t.zone,
      instanceType: t.instanceType,
      nodeIds: t.kind === "existing" ? [t.nodeId] : [],
      gpuType: t.gpuType,
      gpuMemoryGb: t.gpuMemoryGb,
      gpusPerNode: t.kind === "existing" ? k * t.gpusPerCopy : t.gpusPerCopy,
      nodes: t.kind === "existing" ? 1 : k,
      spot: t.spot,
      units,
      microsPerHour: mph,
      baseHours: t.baseSpan,
      expectedHours: t.span,
      expectedInterruptions: t.interruptionsPerCopy * k,
      computeMicros: c,
      spotOverheadMicros: o,
      egressMicros: e,
      totalMicros: c + o + e,
      reliability: t.reliability,
      offer: t.offer,
    };
    out.push(tgt);
    total += tgt.totalMicros;
    compute += c;
    overhead += o;
    egress += e;
    perHour += mph;
    makespan = Math.max(makespan, t.span);
    reliability = Math.min(reliability, t.reliability);
    interruptions += tgt.expectedInterruptions;
  }
  // A group opened with no target left in it cannot happen in an optimum (its charge would be wasted), but count it if it did.
  for (const gi of opened) {
    if (!charged.has(gi)) {
      const fe = (model.groups[gi] as TaskGroup).fixedEgress;
      egress += fe;
      total += fe;
    }
  }
  return { targets: out, totalMicros: total, computeMicros: compute, overheadMicros: overhead, egressMicros: egress, microsPerHour: perHour, makespan, reliability, interruptions };
}
