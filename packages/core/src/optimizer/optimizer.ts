import type { Catalog, ExistingNodeCapacity } from "../catalog.js";
import type { OptimizerSpec } from "../cost/optimizer-spec.js";
import { bindingConstraintMessage, type BindingFacts } from "./binding.js";
import { hoursText, probabilityPair, splitText, targetText, usd, usdExact } from "./format.js";
import { CoverSolver, materializeTaskPlan, taskModel, type Choice, type FrontierPoint, type TaskModel, type TaskTarget } from "./multi-task.js";
import { buildRequirement, RejectionTally, type Requirement } from "./requirement.js";
import { clusterCandidates, type ClusterCandidate } from "./single-cluster.js";
import type { OptimizeOptions, OptimizeResult, PlanCandidate, PlanTarget, Rejection, RejectionCode } from "./types.js";

const MS_PER_HOUR = 3_600_000;

/**
 * The plan score, lower is better, over feasible plans only:
 *   (1 − w) · (cost + 1 µ$) / (minCost + 1 µ$) + w · hours / minHours
 * with w = performance_weight and the minima over the feasible plans, so both
 * terms are 1 for a plan that is cheapest and fastest at once. The 1 µ$ keeps
 * the ratio finite when a free plan (idle on-prem GPUs at rate 0) exists.
 */
export function planScore(costMicros: bigint, hours: number, minCostMicros: bigint, minHours: number, weight: number): number {
  const c = (Number(costMicros) + 1) / (Number(minCostMicros) + 1);
  const h = minHours > 0 ? hours / minHours : 1;
  return (1 - weight) * c + weight * h;
}

/**
 * Cheapest-or-fastest placement of one job over the catalog and the free
 * capacity of registered nodes. Pure and deterministic; `options.nowMs` is the
 * only clock. See optimizer/README.md for the model, the formulas and the
 * optimality argument.
 */
export function optimize(
  spec: OptimizerSpec,
  catalog: Catalog,
  existingNodes: readonly ExistingNodeCapacity[],
  options: OptimizeOptions,
): OptimizeResult {
  const req = buildRequirement(spec, catalog, options);
  const tally = new RejectionTally();
  return req.mode === "multi_task"
    ? optimizeTasks(req, spec, catalog, existingNodes, tally)
    : optimizeCluster(req, spec, catalog, existingNodes, tally);
}

// ---------------------------------------------------------------- shared text

function typeText(req: Requirement): string {
  if (req.types !== null) return [...req.types].join("/");
  return req.nvidiaOnly ? "NVIDIA GPU" : "accelerator";
}

function unitText(req: Requirement, spec: OptimizerSpec): string {
  const mem = req.memGb > 0 ? ` with ≥${req.memGb} GB` : "";
  if (req.fraction !== null) return `${req.fraction} of a ${typeText(req)}${mem}`;
  if (req.mig) return `a MIG ${spec.resources.mig_profile ?? ""} slice of a ${typeText(req)}${mem}`;
  return `${req.gpus}×${typeText(req)}${mem}`;
}

function requirementText(req: Requirement, spec: OptimizerSpec): string {
  if (req.mode === "multi_task") return `${req.tasks} task${req.tasks === 1 ? "" : "s"} of ${unitText(req, spec)} (${req.parallel} at once)`;
  if (req.multiNode) return `${unitText(req, spec)} across nodes with a high-tier interconnect`;
  return `${unitText(req, spec)} on one node`;
}

function codeText(req: Requirement, spec: OptimizerSpec, code: RejectionCode): string {
  switch (code) {
    case "provider":
      return "in a provider the spec does not allow";
    case "region":
      return "in a region the spec does not allow";
    case "accelerator":
      return `not NVIDIA (${spec.job.framework} needs CUDA)`;
    case "gpu_type":
      return `not ${typeText(req)}`;
    case "gpu_memory":
      return `with less than ${req.memGb} GB per GPU`;
    case "fraction":
      return req.fraction !== null ? `a GPU partition smaller than ${req.fraction}` : "a fractional GPU (the job asks for whole GPUs)";
    case "mig":
      return `without MIG ${spec.resources.mig_profile ?? ""}`;
    case "gpu_count":
      return req.multiNode ? "too few registered nodes with free GPUs for the gang" : `with fewer than ${req.gpus} GPUs${req.mode === "multi_task" ? " per instance" : " per node"} (or too few free)`;
    case "max_gpus_per_node":
      return `over max_gpus_per_node ${req.maxPerNode}`;
    case "interconnect":
      return "without a high-tier interconnect for multi-node";
    case "node_cap":
      return `needing more nodes than the provider cap (${Object.entries(req.nodeCap)
        .map(([p, n]) => `${p} ${n}`)
        .join(", ")})`;
    case "data_locality": {
      const loc = req.data.loc;
      return `away from the dataset (${loc ? `${loc.provider}${loc.region === null ? "" : ` ${loc.region}`}` : "?"}; locality required, replication none)`;
    }
    case "budget":
      return `over budget ${req.budgetMicros === null ? "" : usdExact(req.budgetMicros)}`;
    case "deadline":
      return "finishing after the deadline";
    case "reliability":
      return `below min_reliability ${req.minReliability}`;
    case "capacity":
      return "short of capacity";
  }
}

function rejections(req: Requirement, spec: OptimizerSpec, tally: RejectionTally): Rejection[] {
  return [...tally.counts.entries()]
    .map(([code, count]) => ({ code, count, message: `${count} ${codeText(req, spec, code)}` }))
    .sort((a, b) => b.count - a.count || (a.code < b.code ? -1 : 1));
}

function violations(req: Requirement, total: bigint, hours: number, reliability: number): string[] {
  const out: string[] = [];
  if (req.budgetMicros !== null && total > req.budgetMicros) out.push(`over budget ${usd(total, "ceil")} > ${usdExact(req.budgetMicros)}`);
  if (hours > req.availHours) out.push(`deadline missed by ${hoursText(hours - req.availHours)}`);
  if (reliability < req.minReliability) {
    const [a, b] = probabilityPair(reliability, req.minReliability);
    out.push(`reliability ${a} < ${b}`);
  }
  return out;
}

/** Why a feasible plan ranks after the best one, in cost and time. */
function lossReason(req: Requirement, c: PlanCandidate, best: PlanCandidate): string {
  const dc = c.totalMicros - best.totalMicros;
  const dh = c.hours - best.hours;
  const scores = req.weight > 0 ? ` (score ${c.score.toFixed(3)} vs ${best.score.toFixed(3)} at performance_weight ${req.weight})` : "";
  if (dc > 0n && dh >= 0) return `${usd(dc)} more than best${dh > 0 ? ` and ${hoursText(dh)} slower` : ""}`;
  if (dc > 0n) return `${usd(dc)} more than best for ${hoursText(-dh)} less${scores}`;
  if (dh > 0) return `${hoursText(dh)} slower than best${dc < 0n ? ` for ${usd(-dc)} less${scores}` : ""}`;
  return "ties with best on cost and time; ranked after it by provider, region, zone and instance type";
}

function shapeFacts(req: Requirement, spec: OptimizerSpec, tally: RejectionTally): BindingFacts["shape"] {
  return rejections(req, spec, tally)
    .filter((r) => r.code !== "budget" && r.code !== "deadline" && r.code !== "reliability" && r.code !== "capacity")
    .map((r) => ({ code: r.code, count: r.count, text: codeText(req, spec, r.code) }));
}

// ------------------------------------------------------------ single_cluster

const cmpStr = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Total order of candidates: score, cost, hours, registered nodes before
 * cloud (use what is already paid for), provider, region, zone, instance
 * type, node ids, on-demand before spot (equal cost and time, fewer surprises).
 */
function compareCluster(a: ClusterCandidate, sa: number, b: ClusterCandidate, sb: number): number {
  if (sa !== sb) return sa < sb ? -1 : 1;
  if (a.total !== b.total) return a.total < b.total ? -1 : 1;
  if (a.expectedHours !== b.expectedHours) return a.expectedHours < b.expectedHours ? -1 : 1;
  if (a.kind !== b.kind) return a.kind === "existing" ? -1 : 1;
  return (
    cmpStr(a.provider, b.provider) ||
    cmpStr(a.region, b.region) ||
    cmpStr(a.zone, b.zone) ||
    cmpStr(a.instanceType, b.instanceType) ||
    cmpStr(a.nodeKey, b.nodeKey) ||
    (a.spot === b.spot ? 0 : a.spot ? 1 : -1)
  );
}

function clusterTarget(c: ClusterCandidate): PlanTarget {
  return {
    kind: c.kind,
    provider: c.provider,
    region: c.region,
    zone: c.zone,
    instanceType: c.instanceType,
    nodeIds: c.nodes.map((x) => x.nodeId),
    gpuType: c.gpuType,
    gpuMemoryGb: c.gpuMemoryGb,
    gpusPerNode: c.gpusPerNode,
    nodes: c.n,
    spot: c.spot,
    units: 1,
    microsPerHour: c.microsPerHour,
    baseHours: c.baseHours,
    expectedHours: c.expectedHours,
    expectedInterruptions: c.expectedInterruptions,
    computeMicros: c.compute,
    spotOverheadMicros: c.overhead,
    egressMicros: c.egress,
    totalMicros: c.total,
    reliability: c.reliability,
    offer: c.offer,
  };
}

function clusterPlan(req: Requirement, c: ClusterCandidate, score: number): PlanCandidate {
  const t = clusterTarget(c);
  const completionMs = req.nowMs + c.expectedHours * MS_PER_HOUR;
  const v = violations(req, c.total, c.expectedHours, c.reliability);
  return {
    mode: "single_cluster",
    targets: [t],
    spot: c.spot,
    microsPerHour: c.microsPerHour,
    hours: c.expectedHours,
    computeMicros: c.compute,
    egressMicros: c.egress,
    spotOverheadMicros: c.overhead,
    totalMicros: c.total,
    expectedInterruptions: c.expectedInterruptions,
    reliability: c.reliability,
    completionMs,
    score: v.length === 0 ? score : Number.POSITIVE_INFINITY,
    feasible: v.length === 0,
    violations: v,
    reason: v.length === 0 ? null : v.join("; "),
    summary: `${targetText(t)}, ${hoursText(c.expectedHours)}, ${usd(c.total, "ceil")}`,
  };
}

const BUDGET_OK = 1;
const DEADLINE_OK = 2;
const RELIABLE = 4;
const ALL_OK = BUDGET_OK | DEADLINE_OK | RELIABLE;

function optimizeCluster(
  req: Requirement,
  spec: OptimizerSpec,
  catalog: Catalog,
  existing: readonly ExistingNodeCapacity[],
  tally: RejectionTally,
): OptimizeResult {
  const cands = clusterCandidates(req, catalog, existing, tally);
  const n = cands.length;
  const flags = new Uint8Array(n);
  let minCost: bigint | null = null;
  let minHours = Number.POSITIVE_INFINITY;
  let overBudget = 0;
  let late = 0;
  let unreliable = 0;
  for (let i = 0; i < n; i++) {
    const c = cands[i] as ClusterCandidate;
    let f = 0;
    if (req.budgetMicros === null || c.total <= req.budgetMicros) f |= BUDGET_OK;
    else overBudget++;
    if (c.expectedHours <= req.availHours) f |= DEADLINE_OK;
    else late++;
    if (c.reliability >= req.minReliability) f |= RELIABLE;
    else unreliable++;
    flags[i] = f;
    if (f === ALL_OK) {
      if (minCost === null || c.total < minCost) minCost = c.total;
      if (c.expectedHours < minHours) minHours = c.expectedHours;
    }
  }
  if (overBudget > 0) tally.add("budget", overBudget);
  if (late > 0) tally.add("deadline", late);
  if (unreliable > 0) tally.add("reliability", unreliable);

  const scores = new Float64Array(n).fill(Number.POSITIVE_INFINITY);
  let bestI = -1;
  if (minCost !== null) {
    for (let i = 0; i < n; i++) {
      if (flags[i] !== ALL_OK) continue;
      const c = cands[i] as ClusterCandidate;
      scores[i] = planScore(c.total, c.expectedHours, minCost, minHours, req.weight);
      if (bestI < 0 || compareCluster(c, scores[i] as number, cands[bestI] as ClusterCandidate, scores[bestI] as number) < 0) bestI = i;
    }
  }

  // One row per (kind, provider, GPU type, spot), like SkyPilot's optimizer table: its best member.
  const feasibleGroups = new Map<string, number>();
  const infeasibleGroups = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    if (i === bestI) continue;
    const c = cands[i] as ClusterCandidate;
    const key = `${c.kind}\u0000${c.provider}\u0000${c.gpuType}\u0000${c.spot ? 1 : 0}`;
    if (flags[i] === ALL_OK) {
      const j = feasibleGroups.get(key);
      if (j === undefined || compareCluster(c, scores[i] as number, cands[j] as ClusterCandidate, scores[j] as number) < 0) feasibleGroups.set(key, i);
    } else {
      const j = infeasibleGroups.get(key);
      if (j === undefined || compareCluster(c, 0, cands[j] as ClusterCandidate, 0) < 0) infeasibleGroups.set(key, i);
    }
  }
  const byRank = (a: number, b: number): number => compareCluster(cands[a] as ClusterCandidate, scores[a] as number, cands[b] as ClusterCandidate, scores[b] as number);
  const byCost = (a: number, b: number): number => compareCluster(cands[a] as ClusterCandidate, 0, cands[b] as ClusterCandidate, 0);
  const best = bestI >= 0 ? clusterPlan(req, cands[bestI] as ClusterCandidate, scores[bestI] as number) : null;
  const alternatives: PlanCandidate[] = [];
  for (const i of [...feasibleGroups.values()].sort(byRank).slice(0, req.maxAlternatives)) {
    const p = clusterPlan(req, cands[i] as ClusterCandidate, scores[i] as number);
    if (best !== null) p.reason = lossReason(req, p, best);
    alternatives.push(p);
  }
  for (const i of [...infeasibleGroups.values()].sort(byCost).slice(0, req.maxAlternatives)) alternatives.push(clusterPlan(req, cands[i] as ClusterCandidate, 0));

  let binding: string | null = null;
  if (best === null) {
    const pick = (mask: number, better: (a: ClusterCandidate, b: ClusterCandidate) => boolean): PlanCandidate | null => {
      let k = -1;
      for (let i = 0; i < n; i++) {
        if (((flags[i] as number) & mask) !== mask) continue;
        if (k < 0 || better(cands[i] as ClusterCandidate, cands[k] as ClusterCandidate)) k = i;
      }
      return k < 0 ? null : clusterPlan(req, cands[k] as ClusterCandidate, 0);
    };
    const cheaper = (a: ClusterCandidate, b: ClusterCandidate): boolean => compareCluster(a, 0, b, 0) < 0;
    const faster = (a: ClusterCandidate, b: ClusterCandidate): boolean => a.expectedHours < b.expectedHours || (a.expectedHours === b.expectedHours && cheaper(a, b));
    const sturdier = (a: ClusterCandidate, b: ClusterCandidate): boolean => a.reliability > b.reliability || (a.reliability === b.reliability && cheaper(a, b));
    binding = bindingConstraintMessage({
      requirement: requirementText(req, spec),
      budgetMicros: req.budgetMicros,
      deadlineMs: req.deadlineMs,
      minReliability: req.minReliability,
      relaxBudget: pick(DEADLINE_OK | RELIABLE, cheaper),
      relaxDeadline: pick(BUDGET_OK | RELIABLE, faster),
      relaxReliability: pick(BUDGET_OK | DEADLINE_OK, sturdier),
      anyCheapest: pick(0, cheaper),
      anyFastest: pick(0, faster),
      anyMostReliable: pick(0, sturdier),
      shape: shapeFacts(req, spec, tally),
      offers: catalog.offers.length,
      nodes: existing.length,
      capacity: null,
    });
  }
  return { mode: "single_cluster", best, alternatives, rejections: rejections(req, spec, tally), binding, notes: req.notes, evaluated: n };
}

// ---------------------------------------------------------------- multi_task

function makespanOf(targets: readonly TaskTarget[], choice: Choice | null): number {
  let m = 0;
  for (let c = choice; c !== null; c = c.prev) if (c.t >= 0) m = Math.max(m, (targets[c.t] as TaskTarget).span);
  return m;
}

function taskPlan(req: Requirement, model: TaskModel, targets: readonly TaskTarget[], point: FrontierPoint, score: number): PlanCandidate {
  const p = materializeTaskPlan(req, model, targets, point.choice);
  const completionMs = req.nowMs + p.makespan * MS_PER_HOUR;
  const v = violations(req, p.totalMicros, p.makespan, p.reliability);
  return {
    mode: "multi_task",
    targets: p.targets,
    spot: p.targets.some((t) => t.spot),
    microsPerHour: p.microsPerHour,
    hours: p.makespan,
    computeMicros: p.computeMicros,
    egressMicros: p.egressMicros,
    spotOverheadMicros: p.overheadMicros,
    totalMicros: p.totalMicros,
    expectedInterruptions: p.interruptions,
    reliability: p.reliability,
    completionMs,
    score: v.length === 0 ? score : Number.POSITIVE_INFINITY,
    feasible: v.length === 0,
    violations: v,
    reason: v.length === 0 ? null : v.join("; "),
    summary: `${splitText(p.targets)}; makespan ${hoursText(p.makespan)}, ${usd(p.totalMicros, "ceil")}`,
  };
}

function optimizeTasks(
  req: Requirement,
  spec: OptimizerSpec,
  catalog: Catalog,
  existing: readonly ExistingNodeCapacity[],
  tally: RejectionTally,
): OptimizeResult {
  const model = taskModel(req, catalog, existing, tally);
  const P = req.parallel;
  const availHours = req.availHours;
  const reliable = (t: TaskTarget): boolean => t.reliability >= req.minReliability;
  const inTime = (t: TaskTarget): boolean => t.span <= availHours;
  let late = 0;
  let unreliable = 0;
  for (const t of model.targets) {
    if (!inTime(t)) late++;
    if (!reliable(t)) unreliable++;
  }
  if (late > 0) tally.add("deadline", late);
  if (unreliable > 0) tally.add("reliability", unreliable);
  const within = (cost: number): boolean => cost < Number.POSITIVE_INFINITY && (req.budgetMicros === null || BigInt(cost) <= req.budgetMicros);

  const usable = model.targets.filter((t) => reliable(t) && inTime(t));
  const solver = new CoverSolver(model, usable, P);
  const cheapest = solver.cheapest();
  let best: PlanCandidate | null = null;
  const alternatives: PlanCandidate[] = [];
  if (cheapest !== null && within(cheapest.cost)) {
    const minCost = BigInt(cheapest.cost);
    let kMin = -1;
    let minHours = 0;
    const order: { k: number; bound: number }[] = [];
    if (model.hasFixed && req.weight === 0) {
      // Cost alone decides: the fastest of the cheapest plans, found by binary search (C falls with k).
      const known = solver.thresholds.indexOf(makespanOf(usable, cheapest.choice));
      order.push({ k: solver.firstWithin((c) => c <= cheapest.cost, known < 0 ? solver.size - 1 : known), bound: 1 });
    } else {
      kMin = solver.firstWithin(within);
      minHours = makespanOf(usable, solver.exact(kMin).choice);
      // Thresholds in order of a lower bound on their score; stop once no bound can beat the best
      // found (README, "multi_task optimality"). Without group charges the bound is exact and
      // every point is free, so all are scored (they are the alternatives).
      for (let k = kMin; k < solver.size; k++) {
        const lb = Math.max(solver.lowerBound(k), cheapest.cost);
        order.push({ k, bound: planScore(BigInt(lb), solver.thresholds[k] as number, minCost, minHours, req.weight) });
      }
      order.sort((a, b) => a.bound - b.bound || a.k - b.k);
    }
    const scored: { p: FrontierPoint; m: number; s: number }[] = [];
    const seen = new Set<number>();
    let bestScore = Number.POSITIVE_INFINITY;
    for (const { k, bound } of order) {
      if (model.hasFixed && bound > bestScore) break;
      const p = solver.exact(k);
      if (!within(p.cost)) continue;
      const m = makespanOf(usable, p.choice);
      const s = planScore(BigInt(p.cost), m, minCost, kMin < 0 ? m : minHours, req.weight);
      bestScore = Math.min(bestScore, s);
      scored.push({ p, m, s });
    }
    scored.sort((a, b) => a.s - b.s || a.p.cost - b.p.cost || a.m - b.m);
    const [top, ...rest] = scored;
    if (top !== undefined) {
      best = taskPlan(req, model, usable, top.p, top.s);
      seen.add(top.p.cost);
      for (const r of rest) {
        if (alternatives.length >= req.maxAlternatives) break;
        if (seen.has(r.p.cost)) continue; // the same plan found again at a larger threshold
        seen.add(r.p.cost);
        const alt = taskPlan(req, model, usable, r.p, r.s);
        alt.reason = lossReason(req, alt, best);
        alternatives.push(alt);
      }
    }
    // Faster plans that cost more than the budget, cheapest first (free without group charges; one more DP with them).
    const over = kMin <= 0 ? [] : model.hasFixed ? [kMin - 1] : Array.from({ length: kMin }, (_, i) => kMin - 1 - i);
    let lastCost = -1;
    let overCount = 0;
    for (const k of over) {
      const p = solver.exact(k);
      if (p.cost === Number.POSITIVE_INFINITY || p.cost === lastCost) continue;
      lastCost = p.cost;
      overCount++;
      if (overCount <= req.maxAlternatives) alternatives.push(taskPlan(req, model, usable, p, 0));
    }
    if (overCount > 0) tally.add("budget", overCount);
  } else if (cheapest !== null) {
    tally.add("budget", 1);
    alternatives.push(taskPlan(req, model, usable, cheapest, 0));
  }

  let binding: string | null = null;
  if (best === null) binding = bindingConstraintMessage(taskFacts(req, spec, catalog, existing, tally, model, usable, cheapest, reliable, inTime, within));
  return { mode: "multi_task", best, alternatives, rejections: rejections(req, spec, tally), binding, notes: req.notes, evaluated: model.targets.length };
}

function taskFacts(
  req: Requirement,
  spec: OptimizerSpec,
  catalog: Catalog,
  existing: readonly ExistingNodeCapacity[],
  tally: RejectionTally,
  model: TaskModel,
  usable: readonly TaskTarget[],
  cheapestUsable: FrontierPoint | null,
  reliable: (t: TaskTarget) => boolean,
  inTime: (t: TaskTarget) => boolean,
  within: (cost: number) => boolean,
): BindingFacts {
  const P = req.parallel;
  const all = model.targets;
  const plan = (targets: readonly TaskTarget[], p: FrontierPoint | null): PlanCandidate | null => (p === null ? null : taskPlan(req, model, targets, p, 0));
  /** Fastest plan of `targets` whose cost passes `ok`. */
  const fastest = (targets: readonly TaskTarget[], ok: (cost: number) => boolean): PlanCandidate | null => {
    const s = new CoverSolver(model, targets, P);
    const k = s.firstWithin(ok);
    return k < 0 ? null : plan(targets, s.exact(k));
  };
  /** Highest reliability level r such that the targets at ≥ r cover P (within budget when asked): a binary search, cover cost only falls as r does. */
  const sturdiest = (targets: readonly TaskTarget[], needBudget: boolean): PlanCandidate | null => {
    const levels = [...new Set(targets.map((t) => t.reliability))].sort((a, b) => b - a);
    let lo = 0;
    let hi = levels.length - 1;
    let found: PlanCandidate | null = null;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = levels[mid] as number;
      const sub = targets.filter((t) => t.reliability >= r);
      const point = new CoverSolver(model, sub, P).cheapest();
      if (point !== null && (!needBudget || within(point.cost))) {
        found = plan(sub, point);
        hi = mid - 1;
      } else lo = mid + 1;
    }
    return found;
  };
  let capacity: string | null = null;
  let slots = 0;
  for (const t of all) slots += t.maxCopies * t.slots;
  if (all.length > 0 && slots < P) {
    capacity =
      `needs ${P} × ${unitText(req, spec)} running at once; the matching offers and registered nodes hold ${slots} ` +
      `(at most ${req.maxInstancesPerOffer} on-demand instances per offer, spot scaled by availability, free GPUs on registered nodes)`;
  }
  const relaxBudget = req.budgetMicros === null ? null : plan(usable, cheapestUsable);
  const relaxDeadline = req.deadlineMs === null ? null : fastest(all.filter(reliable), within);
  const relaxReliability = req.minReliability > 0 ? sturdiest(all.filter(inTime), true) : null;
  const blamed = relaxBudget !== null || relaxDeadline !== null || relaxReliability !== null;
  const finite = (c: number): boolean => c < Number.POSITIVE_INFINITY;
  return {
    requirement: requirementText(req, spec),
    budgetMicros: req.budgetMicros,
    deadlineMs: req.deadlineMs,
    minReliability: req.minReliability,
    relaxBudget,
    relaxDeadline,
    relaxReliability,
    anyCheapest: all.length === 0 ? null : plan(all, new CoverSolver(model, all, P).cheapest()),
    anyFastest: blamed || all.length === 0 ? null : fastest(all, finite),
    anyMostReliable: blamed || all.length === 0 ? null : sturdiest(all, false),
    shape: shapeFacts(req, spec, tally),
    offers: catalog.offers.length,
    nodes: existing.length,
    capacity,
  };
}
