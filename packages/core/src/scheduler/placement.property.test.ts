import { describe, expect, it } from "vitest";
import { compareJobsForPlacement, placeJobs } from "./placement.js";
import type { PlaceOptions, PlacementDecision, SchedGpu, SchedJob, SchedNode, SchedSnapshot } from "./types.js";

/** mulberry32: tiny seeded PRNG so every run checks the same snapshots. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rnd = () => number;
const int = (r: Rnd, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1));
function pick<T>(r: Rnd, xs: readonly T[]): T {
  const x = xs[Math.floor(r() * xs.length)];
  if (x === undefined) throw new Error("pick from empty list");
  return x;
}
function shuffle<T>(r: Rnd, xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    const a = out[i] as T;
    out[i] = out[j] as T;
    out[j] = a;
  }
  return out;
}

const MODELS = [
  { model: "A100-80GB", memoryGb: 80 },
  { model: "A100-40GB", memoryGb: 40 },
  { model: "H100", memoryGb: 80 },
  { model: "T4", memoryGb: 16 },
] as const;

function randomSnapshot(r: Rnd): { snapshot: SchedSnapshot; options: PlaceOptions } {
  const nodes: SchedNode[] = [];
  const nodeCount = r() < 0.1 ? int(r, 0, 1) : int(r, 2, 8);
  for (let i = 0; i < nodeCount; i++) {
    const base = r() < 0.6 ? MODELS[0] : pick(r, MODELS);
    const mixed = r() < 0.15;
    const gpus: SchedGpu[] = [];
    const count = pick(r, [1, 2, 4, 4, 8, 8, 8]);
    for (let g = 0; g < count; g++) {
      const m = mixed ? pick(r, MODELS) : base;
      gpus.push({
        index: g,
        uuid: `GPU-${i}-${g}`,
        model: m.model,
        memoryGb: m.memoryGb,
        allocatedTo: r() < 0.25 ? `running-${int(r, 0, 3)}` : null,
      });
    }
    nodes.push({
      id: `n${int(r, 0, 99)}-${i}`,
      state: r() < 0.8 ? "ready" : pick(r, ["unreachable", "lost", "draining"] as const),
      provider: pick(r, ["aws", "aws", "aws", "gcp"]),
      region: pick(r, ["r1", "r1", "r1", "r2"]),
      zone: null,
      network: pick(r, ["a", "a", "a", "b"]),
      instanceType: pick(r, ["t8", "t8", "t8", "t4"]),
      gpus: shuffle(r, gpus),
    });
  }
  const jobs: SchedJob[] = [];
  const jobCount = int(r, 0, 6);
  for (let i = 0; i < jobCount; i++) {
    const multiTask = r() < 0.25;
    const gang = !multiTask && r() < 0.4;
    jobs.push({
      id: `j${i}`,
      priority: pick(r, [0, 100, 500, 500, 1000]),
      deadline: r() < 0.5 ? null : new Date(Date.UTC(2026, 11, int(r, 1, 3))),
      createdAt: new Date(Date.UTC(2026, 10, int(r, 1, 3))),
      gpus: multiTask ? pick(r, [1, 1, 2, 4]) : gang ? pick(r, [4, 6, 8, 8, 12, 16]) : pick(r, [1, 1, 2, 3, 4, 6, 8, 12, 16]),
      requiresMultiNode: gang,
      maxGpusPerNode: r() < (gang ? 0.1 : 0.6) ? null : gang ? pick(r, [2, 4, 4, 8]) : pick(r, [1, 2, 4, 4, 8]),
      gpuMemoryGb: r() < (gang ? 0.8 : 0.6) ? null : pick(r, [40, 80]),
      gpuTypes: r() < (gang ? 0.8 : 0.6) ? [] : shuffle(r, MODELS.map((m) => m.model)).slice(0, int(r, 1, 2)),
      executionMode: multiTask ? "multi_task" : "single_cluster",
      tasks: int(r, 1, 4),
    });
  }
  return { snapshot: { jobs, nodes }, options: { maxReservations: int(r, 0, 2) } };
}

/** Working state for the replay: node id -> GPU index -> holder ("" = free). */
type State = Map<string, Map<number, string>>;

function initialState(s: SchedSnapshot): State {
  return new Map(s.nodes.map((n) => [n.id, new Map(n.gpus.map((g) => [g.index, g.allocatedTo ?? ""]))]));
}

function matches(job: SchedJob, g: SchedGpu): boolean {
  return (job.gpuMemoryGb === null || g.memoryGb >= job.gpuMemoryGb) && (job.gpuTypes.length === 0 || job.gpuTypes.includes(g.model));
}

/** Usable GPUs of a node for a job under a state; `everything` = all GPUs free, any node state. */
function usableCount(job: SchedJob, n: SchedNode, st: State | null): number {
  if (st !== null && n.state !== "ready") return 0;
  return n.gpus.filter((g) => matches(job, g) && (st === null || st.get(n.id)?.get(g.index) === "")).length;
}

function cap(job: SchedJob): number {
  return job.maxGpusPerNode ?? Number.POSITIVE_INFINITY;
}

function singleFits(job: SchedJob, nodes: readonly SchedNode[], st: State | null): boolean {
  return job.gpus <= cap(job) && nodes.some((n) => usableCount(job, n, st) >= job.gpus);
}

/** Brute force over every subset of nodes and every per-node share k. */
function gangFits(job: SchedJob, nodes: readonly SchedNode[], st: State | null): boolean {
  const total = 1 << nodes.length;
  for (let mask = 1; mask < total; mask++) {
    const sub = nodes.filter((_, i) => (mask & (1 << i)) !== 0);
    const first = sub[0];
    if (first === undefined || job.gpus % sub.length !== 0) continue;
    const k = job.gpus / sub.length;
    if (k > cap(job)) continue;
    const same = sub.every(
      (n) => n.provider === first.provider && n.region === first.region && n.network === first.network && n.instanceType === first.instanceType,
    );
    if (same && sub.every((n) => usableCount(job, n, st) >= k)) return true;
  }
  return false;
}

function fits(job: SchedJob, nodes: readonly SchedNode[], st: State | null): boolean {
  if (job.executionMode === "single_cluster" && job.requiresMultiNode) return gangFits(job, nodes, st);
  return singleFits(job, nodes, st);
}

function freeOnNode(st: State, nodeId: string): number {
  return [...(st.get(nodeId)?.values() ?? [])].filter((h) => h === "").length;
}

/** Replays the decision in queue order and checks every invariant against the state at that moment. */
function checkDecision(s: SchedSnapshot, d: PlacementDecision): void {
  const nodeById = new Map(s.nodes.map((n) => [n.id, n]));
  const st = initialState(s);
  const order = [...s.jobs].sort(compareJobsForPlacement);
  const seenPending = new Set<string>();

  const take = (jobId: string, nodeId: string, idx: number, tag: string): void => {
    const holder = st.get(nodeId)?.get(idx);
    expect(holder, `${tag} ${jobId} takes ${nodeId}#${idx} which is not free`).toBe("");
    st.get(nodeId)?.set(idx, `${tag}:${jobId}`);
  };

  for (const job of order) {
    const mine = d.placements.filter((p) => p.jobId === job.id);
    const pend = d.pending.filter((p) => p.jobId === job.id);
    expect(pend.length).toBeLessThanOrEqual(1);
    const pending = pend[0];
    if (pending) seenPending.add(job.id);

    if (job.executionMode === "multi_task") {
      expect(mine.every((p) => p.unit !== undefined)).toBe(true);
      expect(new Set(mine.map((p) => p.unit)).size).toBe(mine.length);
      for (const p of mine) {
        // a unit: one ready node, `gpus` matching GPUs, best fit at that moment
        expect(p.nodes).toHaveLength(1);
        const ng = p.nodes[0];
        if (!ng) continue;
        checkSingle(job, ng.nodeId, ng.gpuIndices, nodeById, st);
        for (const i of ng.gpuIndices) take(job.id, ng.nodeId, i, "place");
      }
      expect(mine.length + (pending?.unitsPending ?? 0)).toBe(job.tasks);
      if (pending) {
        expect(pending.unitsPlaced).toBe(mine.length);
        expect(fits(job, s.nodes, st), `no further unit of ${job.id} may fit`).toBe(false);
        expect(pending.neverFits).toBe(!fits(job, s.nodes, null));
      }
      continue;
    }

    expect(mine.length + pend.length, `job ${job.id} is either placed or pending`).toBe(1);
    const p = mine[0];
    if (p) {
      expect(p.unit).toBeUndefined();
      if (job.requiresMultiNode) {
        checkGang(job, p.nodes, nodeById, st);
      } else {
        expect(p.nodes).toHaveLength(1);
        const ng = p.nodes[0];
        if (ng) checkSingle(job, ng.nodeId, ng.gpuIndices, nodeById, st);
      }
      for (const ng of p.nodes) for (const i of ng.gpuIndices) take(job.id, ng.nodeId, i, "place");
    } else if (pending) {
      expect(fits(job, s.nodes, st), `pending ${job.id} must not fit now: ${pending.reason}`).toBe(false);
      expect(pending.neverFits, pending.reason).toBe(!fits(job, s.nodes, null));
      expect(pending.reason.length).toBeGreaterThan(10);
      for (const ng of pending.reservation ?? []) {
        expect(nodeById.get(ng.nodeId)?.state).toBe("ready");
        for (const i of ng.gpuIndices) take(job.id, ng.nodeId, i, "hold");
      }
    }
  }
  expect(seenPending.size).toBe(d.pending.length);
  expect(d.pending.filter((p) => p.reservation !== undefined).length).toBeLessThanOrEqual(2);
}

function checkSingle(job: SchedJob, nodeId: string, idx: number[], nodeById: Map<string, SchedNode>, st: State): void {
  const n = nodeById.get(nodeId);
  expect(n?.state).toBe("ready");
  if (!n) return;
  expect(idx).toHaveLength(job.gpus);
  expect(job.gpus).toBeLessThanOrEqual(cap(job));
  for (const i of idx) {
    const g = n.gpus.find((x) => x.index === i);
    expect(g && matches(job, g), `${job.id} got a non-matching GPU ${nodeId}#${i}`).toBe(true);
  }
  // best fit: no other feasible node would be left with fewer free GPUs (ties to the lower id)
  const left = freeOnNode(st, nodeId) - job.gpus;
  for (const other of nodeById.values()) {
    if (other.id === nodeId || usableCount(job, other, st) < job.gpus) continue;
    const otherLeft = freeOnNode(st, other.id) - job.gpus;
    expect(otherLeft > left || (otherLeft === left && other.id > nodeId), `best fit for ${job.id}`).toBe(true);
  }
}

function checkGang(job: SchedJob, nodes: { nodeId: string; gpuIndices: number[] }[], nodeById: Map<string, SchedNode>, st: State): void {
  const ks = new Set(nodes.map((ng) => ng.gpuIndices.length));
  expect(ks.size, `gang ${job.id} is homogeneous`).toBe(1);
  const k = nodes[0]?.gpuIndices.length ?? 0;
  expect(k * nodes.length, `gang ${job.id} is complete`).toBe(job.gpus);
  expect(k).toBeLessThanOrEqual(cap(job));
  expect(new Set(nodes.map((ng) => ng.nodeId)).size).toBe(nodes.length);
  const first = nodeById.get(nodes[0]?.nodeId ?? "");
  for (const ng of nodes) {
    const n = nodeById.get(ng.nodeId);
    expect(n?.state).toBe("ready");
    expect([n?.provider, n?.region, n?.network, n?.instanceType]).toEqual([first?.provider, first?.region, first?.network, first?.instanceType]);
    for (const i of ng.gpuIndices) {
      const g = n?.gpus.find((x) => x.index === i);
      expect(g !== undefined && matches(job, g)).toBe(true);
      expect(st.get(ng.nodeId)?.get(i)).toBe("");
    }
  }
  // fewest nodes: no gang with fewer nodes would have fit at this moment
  const fewer = { ...job };
  for (let m = 1; m < nodes.length; m++) {
    if (job.gpus % m !== 0) continue;
    const sub = { ...fewer, maxGpusPerNode: Math.min(cap(job), job.gpus / m) };
    // brute force restricted to exactly m nodes
    const candidates = [...nodeById.values()];
    const total = 1 << candidates.length;
    for (let mask = 1; mask < total; mask++) {
      const set = candidates.filter((_, i) => (mask & (1 << i)) !== 0);
      if (set.length !== m) continue;
      const f = set[0];
      if (!f) continue;
      const same = set.every((n) => n.provider === f.provider && n.region === f.region && n.network === f.network && n.instanceType === f.instanceType);
      const ok = same && job.gpus / m <= cap(sub) && set.every((n) => usableCount(job, n, st) >= job.gpus / m);
      expect(ok, `gang ${job.id} could have used ${m} nodes`).toBe(false);
    }
  }
}

describe("placeJobs invariants over random snapshots", () => {
  it("holds every invariant and is deterministic on 4000 seeded snapshots", () => {
    let placedJobs = 0;
    let pendingJobs = 0;
    let gangs = 0;
    let holds = 0;
    let neverFits = 0;
    for (let seed = 1; seed <= 4000; seed++) {
      const r = prng(seed);
      const { snapshot, options } = randomSnapshot(r);
      const d = placeJobs(snapshot, options);
      checkDecision(snapshot, d);

      // same input -> same output; the order of the input arrays does not matter either
      expect(placeJobs(snapshot, options)).toEqual(d);
      const shuffled: SchedSnapshot = { jobs: shuffle(r, snapshot.jobs), nodes: shuffle(r, snapshot.nodes) };
      expect(placeJobs(shuffled, options)).toEqual(d);

      neverFits += d.pending.filter((p) => p.neverFits).length;
      placedJobs += new Set(d.placements.map((p) => p.jobId)).size;
      pendingJobs += d.pending.length;
      gangs += d.placements.filter((p) => p.nodes.length > 1).length;
      holds += d.pending.filter((p) => p.reservation).length;
    }

    // the generator must exercise every path, or the invariants above prove little
    expect(placedJobs).toBeGreaterThan(2000);
    expect(pendingJobs).toBeGreaterThan(2000);
    expect(gangs).toBeGreaterThan(150);
    expect(holds).toBeGreaterThan(200);
    expect(neverFits).toBeGreaterThan(200);
    expect(pendingJobs - neverFits).toBeGreaterThan(200);
  });
});
