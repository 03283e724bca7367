import type { Catalog, CatalogOffer, ExistingNodeCapacity } from "../catalog.js";
import { spotExpectation, spotReliability } from "../cost/cost-model.js";
import { meteredMicros } from "../cost/metered.js";
import { gangShapes } from "../scheduler/placement.js";
import { baseHoursOn, nodeRejection, offerRejection, spotParams, transferTo, type RejectionTally, type Requirement } from "./requirement.js";
import type { PlanProvider } from "./types.js";

/**
 * One way to run a single_cluster job: `n` identical instances of one offer
 * (on-demand or spot), or registered nodes. Plain fields, built once per
 * candidate; the public PlanCandidate is made only for the rows returned.
 */
export interface ClusterCandidate {
  kind: "cloud" | "existing";
  offer: CatalogOffer | null;
  nodes: readonly ExistingNodeCapacity[];
  provider: PlanProvider;
  region: string;
  zone: string;
  instanceType: string;
  /** Sorted node ids joined by ","; "" for cloud. */
  nodeKey: string;
  gpuType: string;
  gpuMemoryGb: number;
  gpusPerNode: number;
  n: number;
  spot: boolean;
  microsPerHour: bigint;
  baseHours: number;
  expectedHours: number;
  expectedInterruptions: number;
  compute: bigint;
  overhead: bigint;
  egress: bigint;
  total: bigint;
  reliability: number;
}

/**
 * Transfer cost of a placement on `nodes` nodes (see README "Data transfer"):
 * pre-stage copies once; on-demand-cache once per node; none reads remotely
 * once per node per attempt (1 + expected interruptions).
 */
export function egressFor(req: Requirement, provider: PlanProvider, region: string, nodes: number, interruptions: number): bigint {
  const d = req.data;
  if (!d.priced) return 0n;
  switch (d.policy) {
    case "pre-stage":
      return transferTo(req, provider, region, d.sizeGb);
    case "on-demand-cache":
      return BigInt(nodes) * transferTo(req, provider, region, d.sizeGb);
    case "none":
      return BigInt(nodes) * transferTo(req, provider, region, d.sizeGb * (1 + interruptions));
  }
}

function cloudCandidate(req: Requirement, o: CatalogOffer, n: number, spot: boolean, hours: number): ClusterCandidate {
  const unit = spot ? (o.spotMicrosPerHour ?? 0n) : o.onDemandMicrosPerHour;
  const microsPerHour = unit * BigInt(n);
  let expectedHours = hours;
  let mu = 0;
  let reliability = req.model.onDemandReliability;
  if (spot) {
    const p = spotParams(req, o);
    const s = spotExpectation(hours, p.rate, n, req.model.restartOverheadHours, req.checkpointHours);
    expectedHours = s.expectedHours;
    mu = s.expectedInterruptions;
    reliability = spotReliability(p.availability, mu, req.maxAttempts);
  }
  const compute = meteredMicros(microsPerHour, hours);
  const run = spot ? meteredMicros(microsPerHour, expectedHours) : compute;
  const egress = egressFor(req, o.provider, o.region, n, mu);
  return {
    kind: "cloud",
    offer: o,
    nodes: [],
    provider: o.provider,
    region: o.region,
    zone: o.zone,
    instanceType: o.instanceType,
    nodeKey: "",
    gpuType: o.gpuType,
    gpuMemoryGb: o.gpuMemoryGb,
    gpusPerNode: o.gpuCount,
    n,
    spot,
    microsPerHour,
    baseHours: hours,
    expectedHours,
    expectedInterruptions: mu,
    compute,
    overhead: run - compute,
    egress,
    total: run + egress,
    reliability,
  };
}

function existingCandidate(req: Requirement, nodes: readonly ExistingNodeCapacity[], gpusPerNode: number): ClusterCandidate {
  const first = nodes[0];
  if (first === undefined) throw new RangeError("existing candidate without nodes");
  let microsPerHour = 0n;
  for (const x of nodes) microsPerHour += x.microsPerGpuHour * BigInt(gpusPerNode);
  const hours = baseHoursOn(req, first.gpuType);
  const compute = meteredMicros(microsPerHour, hours);
  const egress = egressFor(req, first.provider, first.region, nodes.length, 0);
  const sorted = [...nodes].sort((a, b) => (a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
  return {
    kind: "existing",
    offer: null,
    nodes: sorted,
    provider: first.provider,
    region: first.region,
    zone: "",
    instanceType: "",
    nodeKey: sorted.map((x) => x.nodeId).join(","),
    gpuType: first.gpuType,
    gpuMemoryGb: first.gpuMemoryGb,
    gpusPerNode,
    n: nodes.length,
    spot: false,
    microsPerHour,
    baseHours: hours,
    expectedHours: hours,
    expectedInterruptions: 0,
    compute,
    overhead: 0n,
    egress,
    total: compute + egress,
    reliability: req.model.existingNodeReliability,
  };
}

/**
 * Every feasible-in-shape candidate (budget, deadline and reliability are
 * judged by the caller): each offer that passes the filters once on-demand
 * and once on spot; each registered node that can hold the job; and, for
 * requires_multi_node, registered-node gangs. Exhaustive by construction:
 * a single_cluster plan is one offer × one count (the count is forced by the
 * offer's GPUs) × one pricing, so nothing is pruned on cost.
 */
export function clusterCandidates(
  req: Requirement,
  catalog: Catalog,
  existing: readonly ExistingNodeCapacity[],
  tally: RejectionTally,
): ClusterCandidate[] {
  const out: ClusterCandidate[] = [];
  for (const o of catalog.offers) {
    const r = offerRejection(req, o);
    if (r !== null) {
      tally.add(r);
      continue;
    }
    const n = req.multiNode ? Math.ceil(req.gpus / Math.floor(o.gpuCount)) : 1;
    const hours = baseHoursOn(req, o.gpuType);
    out.push(cloudCandidate(req, o, n, false, hours));
    if (req.allowSpot && o.spotMicrosPerHour !== null) out.push(cloudCandidate(req, o, n, true, hours));
  }
  const usable: ExistingNodeCapacity[] = [];
  for (const x of existing) {
    const r = nodeRejection(req, x);
    if (r !== null) tally.add(r);
    else usable.push(x);
  }
  if (!req.multiNode) {
    for (const x of usable) out.push(existingCandidate(req, [x], req.gpus));
  } else {
    gangsOnNodes(req, usable, tally, out);
  }
  return out;
}

/**
 * Gangs on registered nodes, with the scheduler's rule: nodes of one
 * provider+region+network and one GPU model/memory, k GPUs on each where k
 * divides the job's GPUs (every rank gets a whole share) and k ≤
 * max_gpus_per_node; the N = gpus / k cheapest nodes (then lowest id) that
 * have k free. Each k is its own candidate.
 */
function gangsOnNodes(req: Requirement, usable: readonly ExistingNodeCapacity[], tally: RejectionTally, out: ClusterCandidate[]): void {
  const groups = new Map<string, ExistingNodeCapacity[]>();
  for (const x of usable) {
    const key = `${x.provider}\u0000${x.region}\u0000${x.network}\u0000${x.gpuType}\u0000${x.gpuMemoryGb}`;
    const g = groups.get(key);
    if (g) g.push(x);
    else groups.set(key, [x]);
  }
  for (const g of groups.values()) {
    g.sort((a, b) => (a.microsPerGpuHour !== b.microsPerGpuHour ? (a.microsPerGpuHour < b.microsPerGpuHour ? -1 : 1) : a.nodeId < b.nodeId ? -1 : a.nodeId > b.nodeId ? 1 : 0));
    const first = g[0];
    if (first === undefined) continue;
    const cap = req.nodeCap[first.provider];
    let any = false;
    let capped = false;
    for (const k of gangShapes(req.gpus, req.maxPerNode)) {
      const n = req.gpus / k;
      const fit = g.filter((x) => x.freeGpus >= k);
      if (fit.length < n) continue;
      if (n > cap) {
        capped = true;
        continue;
      }
      any = true;
      out.push(existingCandidate(req, fit.slice(0, n), k));
    }
    if (!any) tally.add(capped ? "node_cap" : "gpu_count", g.length);
  }
}
