import { AppError } from "../app-error.js";
import type {
  NodeGpus,
  PendingJob,
  PlaceOptions,
  Placement,
  PlacementDecision,
  SchedJob,
  SchedNode,
  SchedSnapshot,
} from "./types.js";

/*
 * Pure placement: one immutable snapshot in, one decision out. Every choice ends in a comparison
 * of ids with `<` (never localeCompare, which depends on the host's locale), and the input is
 * sorted first, so the output does not depend on the order of the input arrays.
 */

interface WorkGpu {
  index: number;
  model: string;
  memoryGb: number;
  allocatedTo: string | null;
  /** Job id of the backfill reservation holding this free GPU, if any. */
  reservedBy: string | null;
}

interface WorkNode {
  src: SchedNode;
  id: string;
  ready: boolean;
  /** provider+region+network+instanceType: the unit inside which a gang may span nodes. */
  groupKey: string;
  groupLabel: string;
  gpus: WorkGpu[];
}

/** Queue order: priority desc, deadline asc (null last), createdAt asc, id asc. */
export function compareJobsForPlacement(a: SchedJob, b: SchedJob): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  const da = a.deadline === null ? null : a.deadline.getTime();
  const db = b.deadline === null ? null : b.deadline.getTime();
  if (da !== db) {
    if (da === null) return 1;
    if (db === null) return -1;
    return da - db;
  }
  const ca = a.createdAt.getTime();
  const cb = b.createdAt.getTime();
  if (ca !== cb) return ca - cb;
  return cmpStr(a.id, b.id);
}

function cmpStr(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Divisors of n that are ≤ cap, largest first. */
export function gangShapes(gpus: number, cap: number): number[] {
  const out: number[] = [];
  for (let k = Math.min(gpus, cap); k >= 1; k--) if (gpus % k === 0) out.push(k);
  return out;
}

export function placeJobs(snapshot: SchedSnapshot, options: PlaceOptions = {}): PlacementDecision {
  const maxReservations = options.maxReservations ?? 1;
  const nodes = buildWorkNodes(snapshot.nodes);
  const jobs = [...snapshot.jobs];
  assertUniqueIds(jobs.map((j) => j.id), "job");
  jobs.sort(compareJobsForPlacement);

  const cycle: Cycle = { nodes, byId: new Map(nodes.map((n) => [n.id, n])), epoch: 0, failed: new Map() };
  const placements: Placement[] = [];
  const pending: PendingJob[] = [];
  let reservationsLeft = maxReservations;

  for (const job of jobs) {
    const invalid = validateJob(job);
    if (invalid !== null) {
      pending.push({ jobId: job.id, reason: invalid, neverFits: true });
      continue;
    }
    if (job.executionMode === "multi_task") {
      placeUnits(job, cycle, placements, pending);
      continue;
    }
    const kind = job.requiresMultiNode ? "gang" : "single";
    const placed = knownToFail(cycle, job, kind) ? null : job.requiresMultiNode ? bestGang(job, nodes) : bestSingle(job, job.gpus, nodes);
    if (placed !== null) {
      allocate(cycle, job.id, placed, "place");
      placements.push({ jobId: job.id, nodes: placed });
      continue;
    }
    const why = explainFailure(cycle, job, kind);
    const entry: PendingJob = { jobId: job.id, reason: why.reason, neverFits: why.neverFits };
    if (!why.neverFits && reservationsLeft > 0) {
      const held = job.requiresMultiNode ? reserveGang(job, nodes) : reserveSingle(job, nodes);
      if (held !== null) {
        reservationsLeft--;
        allocate(cycle, job.id, held, "hold");
        entry.reservation = held;
      }
    }
    pending.push(entry);
  }
  return { placements, pending };
}

/*
 * Within one call GPUs are only ever taken (placed or held), never given back, so a requirement
 * shape that failed once fails for every later job with the same shape: skip its search. Its
 * reason is reused only while nothing was taken since (same epoch), so the numbers stay exact.
 */
interface Cycle {
  nodes: WorkNode[];
  byId: Map<string, WorkNode>;
  /** Bumped on every placement or hold. */
  epoch: number;
  failed: Map<string, { epoch: number; why: Why }>;
}

type Kind = "single" | "gang" | "unit";

function shapeKey(job: SchedJob, kind: Kind): string {
  return JSON.stringify([kind, job.gpus, job.maxGpusPerNode, job.gpuMemoryGb, [...job.gpuTypes].sort()]);
}

function knownToFail(cycle: Cycle, job: SchedJob, kind: Kind): boolean {
  return cycle.failed.has(shapeKey(job, kind));
}

function explainFailure(cycle: Cycle, job: SchedJob, kind: Kind): Why {
  const key = shapeKey(job, kind);
  const cached = cycle.failed.get(key);
  if (cached !== undefined && cached.epoch === cycle.epoch) return cached.why;
  const why =
    kind === "gang" ? explainGang(job, cycle.nodes) : explainSingle(job, job.gpus, cycle.nodes, kind === "unit" ? "each unit " : "");
  cycle.failed.set(key, { epoch: cycle.epoch, why });
  return why;
}

function buildWorkNodes(input: readonly SchedNode[]): WorkNode[] {
  assertUniqueIds(input.map((n) => n.id), "node");
  const nodes = input.map((src): WorkNode => {
    const gpus = src.gpus.map((g) => ({
      index: g.index,
      model: g.model,
      memoryGb: g.memoryGb,
      allocatedTo: g.allocatedTo,
      reservedBy: null,
    }));
    gpus.sort((a, b) => a.index - b.index);
    for (let i = 1; i < gpus.length; i++) {
      if (gpus[i]?.index === gpus[i - 1]?.index) {
        throw AppError.invalid(`node ${src.id} lists GPU index ${gpus[i]?.index} twice`, [], "duplicate_gpu_index");
      }
    }
    return {
      src,
      id: src.id,
      ready: src.state === "ready",
      groupKey: JSON.stringify([src.provider, src.region, src.network, src.instanceType]),
      groupLabel: `${src.provider}/${src.region}/${src.network} ${src.instanceType}`,
      gpus,
    };
  });
  nodes.sort((a, b) => cmpStr(a.id, b.id));
  return nodes;
}

function assertUniqueIds(ids: string[], what: string): void {
  const seen = new Set<string>();
  for (const id of ids) {
    if (seen.has(id)) throw AppError.invalid(`${what} id ${id} appears twice in the snapshot`, [], `duplicate_${what}_id`);
    seen.add(id);
  }
}

function validateJob(job: SchedJob): string | null {
  if (!Number.isInteger(job.gpus) || job.gpus < 1) return `invalid job: gpus must be a positive integer, got ${job.gpus}`;
  if (job.maxGpusPerNode !== null && (!Number.isInteger(job.maxGpusPerNode) || job.maxGpusPerNode < 1)) {
    return `invalid job: max_gpus_per_node must be a positive integer, got ${job.maxGpusPerNode}`;
  }
  return null;
}

function matches(job: SchedJob, g: WorkGpu): boolean {
  return (job.gpuMemoryGb === null || g.memoryGb >= job.gpuMemoryGb) && (job.gpuTypes.length === 0 || job.gpuTypes.includes(g.model));
}

function isFree(g: WorkGpu): boolean {
  return g.allocatedTo === null && g.reservedBy === null;
}

/** Free, unreserved GPUs of `node` this job may use, lowest index first. */
function usable(job: SchedJob, node: WorkNode): WorkGpu[] {
  return node.gpus.filter((g) => isFree(g) && matches(job, g));
}

function freeCount(node: WorkNode): number {
  let n = 0;
  for (const g of node.gpus) if (isFree(g)) n++;
  return n;
}

function matchingTotal(job: SchedJob, node: WorkNode): number {
  let n = 0;
  for (const g of node.gpus) if (matches(job, g)) n++;
  return n;
}

function allocate(cycle: Cycle, jobId: string, taken: NodeGpus[], how: "place" | "hold"): void {
  cycle.epoch++;
  for (const ng of taken) {
    const node = cycle.byId.get(ng.nodeId);
    for (const g of node?.gpus ?? []) {
      if (!ng.gpuIndices.includes(g.index)) continue;
      if (how === "place") g.allocatedTo = jobId;
      else g.reservedBy = jobId;
    }
  }
}

/**
 * Best fit on one ready node: the feasible node left with the fewest free GPUs, so partly used
 * nodes fill first and whole nodes stay free for large jobs; ties go to the lowest node id.
 */
function bestSingle(job: SchedJob, gpus: number, nodes: WorkNode[]): NodeGpus[] | null {
  if (job.maxGpusPerNode !== null && gpus > job.maxGpusPerNode) return null;
  let best: { node: WorkNode; left: number } | null = null;
  for (const node of nodes) {
    if (!node.ready) continue;
    let fit = 0;
    let free = 0;
    for (const g of node.gpus) {
      if (!isFree(g)) continue;
      free++;
      if (matches(job, g)) fit++;
    }
    if (fit < gpus) continue;
    const left = free - gpus;
    if (best === null || left < best.left) best = { node, left };
    if (left === 0) break; // an exact fit cannot be beaten, and later nodes have larger ids
  }
  if (best === null) return null;
  const take = usable(job, best.node).slice(0, gpus);
  return [{ nodeId: best.node.id, gpuIndices: take.map((g) => g.index) }];
}

interface GangChoice {
  k: number;
  n: number;
  groupKey: string;
  nodes: { node: WorkNode; take: WorkGpu[] }[];
  score: number;
}

/** Per-node shares k for a gang, largest first; k never exceeds the largest registered node. */
function shapesFor(job: SchedJob, nodes: WorkNode[]): number[] {
  let largest = 0;
  for (const n of nodes) largest = Math.max(largest, n.gpus.length);
  return gangShapes(job.gpus, Math.min(job.maxGpusPerNode ?? largest, largest));
}

function groupsOf(nodes: WorkNode[], readyOnly: boolean): [string, WorkNode[]][] {
  const m = new Map<string, WorkNode[]>();
  for (const node of nodes) {
    if (readyOnly && !node.ready) continue;
    const list = m.get(node.groupKey);
    if (list) list.push(node);
    else m.set(node.groupKey, [node]);
  }
  return [...m.entries()].sort((a, b) => cmpStr(a[0], b[0]));
}

/**
 * Gang: N ready nodes of one provider+region+network+instanceType, each giving the same k GPUs,
 * k dividing `gpus` and k ≤ max_gpus_per_node, N = gpus / k. Fewest nodes first (a gang runs at
 * the speed of its inter-node all-reduce), then fewest free GPUs stranded on the touched nodes
 * (best fit), then group key; inside a choice the fullest nodes are taken first, then by id.
 */
function bestGang(job: SchedJob, nodes: WorkNode[]): NodeGpus[] | null {
  const shapes = shapesFor(job, nodes);
  let best: GangChoice | null = null;
  for (const [groupKey, members] of groupsOf(nodes, true)) {
    for (const k of shapes) {
      const n = job.gpus / k;
      if (best !== null && n > best.n) break;
      const cands = members
        .map((node) => ({ node, u: usable(job, node), free: freeCount(node) }))
        .filter((c) => c.u.length >= k)
        .sort((a, b) => a.free - b.free || cmpStr(a.node.id, b.node.id));
      if (cands.length < n) continue;
      const chosen = cands.slice(0, n);
      const score = chosen.reduce((s, c) => s + (c.free - k), 0);
      if (best === null || n < best.n || (n === best.n && score < best.score)) {
        best = { k, n, groupKey, score, nodes: chosen.map((c) => ({ node: c.node, take: c.u.slice(0, k) })) };
      }
      break; // larger k (fewer nodes) found for this group; smaller k only adds nodes
    }
  }
  if (best === null) return null;
  return best.nodes
    .map((c) => ({ nodeId: c.node.id, gpuIndices: c.take.map((g) => g.index) }))
    .sort((a, b) => cmpStr(a.nodeId, b.nodeId));
}

function placeUnits(job: SchedJob, cycle: Cycle, placements: Placement[], pending: PendingJob[]): void {
  const units = [...new Set(job.pendingUnits ?? range(job.tasks))].sort((a, b) => a - b);
  if (units.length === 0) return;
  let placed = 0;
  if (!knownToFail(cycle, job, "unit")) {
    for (const unit of units) {
      const p = bestSingle(job, job.gpus, cycle.nodes);
      if (p === null) break;
      allocate(cycle, job.id, p, "place");
      placements.push({ jobId: job.id, nodes: p, unit });
      placed++;
    }
  }
  const left = units.length - placed;
  if (left === 0) return;
  const why = explainFailure(cycle, job, "unit");
  pending.push({
    jobId: job.id,
    reason: `placed ${placed} of ${units.length} units; ${why.reason}`,
    neverFits: why.neverFits,
    unitsPlaced: placed,
    unitsPending: left,
  });
}

function range(n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(i);
  return out;
}

function describe(job: SchedJob, n: number, free: boolean): string {
  const types = job.gpuTypes.length === 0 ? "" : `${[...job.gpuTypes].sort().join("|")} `;
  const mem = job.gpuMemoryGb === null ? "" : ` of ≥${job.gpuMemoryGb} GB`;
  return `${n} ${free ? "free " : ""}${types}GPU${n === 1 ? "" : "s"}${mem}`;
}

interface Why {
  reason: string;
  neverFits: boolean;
}

function notReady(nodes: WorkNode[]): string {
  const list = nodes.slice(0, 3).map((n) => `${n.id} ${n.src.state}`);
  if (nodes.length > 3) list.push(`${nodes.length - 3} more`);
  return list.join(", ");
}

function explainSingle(job: SchedJob, gpus: number, nodes: WorkNode[], subject: string): Why {
  const need = `${subject}needs ${describe(job, gpus, false)} on one node`;
  if (job.maxGpusPerNode !== null && gpus > job.maxGpusPerNode) {
    return { reason: `${need} but max_gpus_per_node is ${job.maxGpusPerNode} (set requires_multi_node to spread it)`, neverFits: true };
  }
  // One pass: per node, GPUs that match at all, free ignoring holds, and usable now.
  let maxMatching = 0;
  const notReadyHosts: WorkNode[] = [];
  let readyHosts = 0;
  let heldOn: WorkNode | null = null;
  let bestNode: WorkNode | null = null;
  let bestFree = -1;
  for (const node of nodes) {
    let matching = 0;
    let freeIgnoringHolds = 0;
    let usableNow = 0;
    for (const g of node.gpus) {
      if (!matches(job, g)) continue;
      matching++;
      if (g.allocatedTo !== null) continue;
      freeIgnoringHolds++;
      if (g.reservedBy === null) usableNow++;
    }
    maxMatching = Math.max(maxMatching, matching);
    if (matching < gpus) {
      if (node.ready && usableNow > bestFree) {
        bestFree = usableNow;
        bestNode = node;
      }
      continue;
    }
    if (!node.ready) {
      notReadyHosts.push(node);
      continue;
    }
    readyHosts++;
    if (heldOn === null && freeIgnoringHolds >= gpus) heldOn = node;
    if (usableNow > bestFree) {
      bestFree = usableNow;
      bestNode = node;
    }
  }
  if (maxMatching < gpus) {
    const has = maxMatching === 0 ? "no registered node has a matching GPU" : `largest registered node has ${maxMatching} matching`;
    return { reason: `${need}; ${has}`, neverFits: true };
  }
  if (readyHosts === 0) {
    return { reason: `${need}; only nodes that are not ready could hold it (${notReady(notReadyHosts)})`, neverFits: false };
  }
  if (heldOn !== null) {
    // It would fit if the backfill reservations were ignored.
    const holder = heldOn.gpus.find((g) => g.reservedBy !== null)?.reservedBy ?? "?";
    return { reason: `${need}; the free GPUs on ${heldOn.id} are held for higher-priority job ${holder} (backfill reservation)`, neverFits: false };
  }
  const where = bestNode === null ? "" : ` (${bestNode.id})`;
  return { reason: `${need}; largest ready node has ${bestFree} free${where}`, neverFits: false };
}

/**
 * Whether some group has N nodes with ≥k GPUs by `count`; if none, the shape with the largest k
 * that any node can give and the group closest to it, for the reason text.
 */
function gangCoverage(
  job: SchedJob,
  nodes: WorkNode[],
  readyOnly: boolean,
  count: (node: WorkNode) => number,
): { fits: boolean; k: number; n: number; bestGroup: string; bestHave: number } | null {
  const shapes = shapesFor(job, nodes);
  const groups = groupsOf(nodes, readyOnly);
  let reportK = 0;
  let best: { k: number; n: number; bestGroup: string; bestHave: number } | null = null;
  for (const k of shapes) {
    const n = job.gpus / k;
    let top: { label: string; have: number } | null = null;
    for (const [, members] of groups) {
      const have = members.filter((m) => count(m) >= k).length;
      if (have >= n) return { fits: true, k, n, bestGroup: members[0]?.groupLabel ?? "", bestHave: have };
      if (have > 0 && (top === null || have > top.have)) top = { label: members[0]?.groupLabel ?? "", have };
    }
    if (top !== null && reportK === 0) {
      reportK = k;
      best = { k, n, bestGroup: top.label, bestHave: top.have };
    }
  }
  return best === null ? null : { fits: false, ...best };
}

function explainGang(job: SchedJob, nodes: WorkNode[]): Why {
  const cap = job.maxGpusPerNode === null ? "" : ` (≤${job.maxGpusPerNode} per node)`;
  const need = `needs ${describe(job, job.gpus, false)} as a gang${cap}`;
  const ever = gangCoverage(job, nodes, false, (n) => matchingTotal(job, n));
  if (ever === null) return { reason: `${need}; no registered node has a matching GPU`, neverFits: true };
  if (!ever.fits) {
    return {
      reason: `${need}; no provider+region+network group has ${ever.n} nodes of one instance type with ${describe(job, ever.k, false)} each (closest: ${ever.bestGroup} has ${ever.bestHave})`,
      neverFits: true,
    };
  }
  const readyTopo = gangCoverage(job, nodes, true, (n) => matchingTotal(job, n));
  if (readyTopo === null || !readyTopo.fits) {
    const hosts = nodes.filter((n) => !n.ready && matchingTotal(job, n) > 0);
    return { reason: `${need}; it fits the registered topology only with nodes that are not ready (${notReady(hosts)})`, neverFits: false };
  }
  const ignoringHolds = gangCoverage(job, nodes, true, (n) => n.gpus.filter((g) => g.allocatedTo === null && matches(job, g)).length);
  if (ignoringHolds?.fits === true) {
    const holder = nodes.flatMap((n) => n.gpus).find((g) => g.reservedBy !== null)?.reservedBy ?? "?";
    return { reason: `${need}; enough GPUs are free but held for higher-priority job ${holder} (backfill reservation)`, neverFits: false };
  }
  const now = gangCoverage(job, nodes, true, (n) => usable(job, n).length);
  if (now === null) return { reason: `${need}; no ready node has a free matching GPU`, neverFits: false };
  return {
    reason: `${need}; no provider+region+network group has ${now.n} ready nodes of one instance type with ${describe(job, now.k, true)} each (closest: ${now.bestGroup} has ${now.bestHave})`,
    neverFits: false,
  };
}

/**
 * Reservation for a blocked single-node job: the ready node that could hold it once its running
 * jobs end (counting GPUs not already held for an earlier job) with the most usable GPUs now;
 * ties to the smaller node, then id. Hold up to `gpus` of its free matching GPUs.
 */
function reserveSingle(job: SchedJob, nodes: WorkNode[]): NodeGpus[] | null {
  if (job.maxGpusPerNode !== null && job.gpus > job.maxGpusPerNode) return null;
  let best: { node: WorkNode; u: WorkGpu[]; total: number } | null = null;
  for (const node of nodes) {
    if (!node.ready) continue;
    const total = node.gpus.filter((g) => g.reservedBy === null && matches(job, g)).length;
    if (total < job.gpus) continue;
    const u = usable(job, node);
    if (best === null || u.length > best.u.length || (u.length === best.u.length && total < best.total)) best = { node, u, total };
  }
  if (best === null) return null;
  return [{ nodeId: best.node.id, gpuIndices: best.u.slice(0, job.gpus).map((g) => g.index) }];
}

/** Reservation for a blocked gang: the fewest-node shape, nodes with the most usable GPUs now. */
function reserveGang(job: SchedJob, nodes: WorkNode[]): NodeGpus[] | null {
  const shapes = shapesFor(job, nodes);
  let best: { n: number; have: number; picks: { node: WorkNode; u: WorkGpu[] }[]; k: number } | null = null;
  for (const [, members] of groupsOf(nodes, true)) {
    for (const k of shapes) {
      const n = job.gpus / k;
      if (best !== null && n > best.n) break;
      const cands = members
        .filter((node) => node.gpus.filter((g) => g.reservedBy === null && matches(job, g)).length >= k)
        .map((node) => ({ node, u: usable(job, node) }))
        .sort((a, b) => b.u.length - a.u.length || cmpStr(a.node.id, b.node.id));
      if (cands.length < n) continue;
      const picks = cands.slice(0, n);
      const have = picks.reduce((s, p) => s + Math.min(p.u.length, k), 0);
      if (best === null || n < best.n || (n === best.n && have > best.have)) best = { n, have, picks, k };
      break;
    }
  }
  if (best === null) return null;
  const k = best.k;
  return best.picks
    .map((p) => ({ nodeId: p.node.id, gpuIndices: p.u.slice(0, k).map((g) => g.index) }))
    .sort((a, b) => cmpStr(a.nodeId, b.nodeId));
}
