import { describe, expect, it } from "vitest";
import type { Catalog, CatalogOffer, CloudProvider, EgressTier, ExistingNodeCapacity, Interconnect } from "../catalog.js";
import type { OptimizerSpec } from "../cost/optimizer-spec.js";
import type { Framework } from "../job-status.js";
import { bruteForceCluster, bruteForceTasks, type BruteBest } from "./brute-force.test-util.js";
import { optimize } from "./optimizer.js";
import type { OptimizeOptions, OptimizeResult } from "./types.js";

/** mulberry32: tiny seeded PRNG so every run checks the same instances. */
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

const NOW = Date.UTC(2026, 5, 1, 12);
const PROVIDERS: readonly CloudProvider[] = ["aws", "gcp", "azure"];
const REGIONS = ["r1", "r1", "r2", "r3"];
const GPUS = [
  { type: "A100", mem: 40 },
  { type: "A100-80GB", mem: 80 },
  { type: "H100", mem: 80 },
  { type: "T4", mem: 16 },
  { type: "L4", mem: 24 },
  { type: "MI300X", mem: 192 },
  { type: "Inferentia2", mem: 32 },
  { type: "Weird9000", mem: 48 },
] as const;
const FRAMEWORKS: readonly Framework[] = ["pytorch_ddp", "horovod", "pytorch", "command", "command", "tensorflow_multiworker"];

function randomOffer(r: Rnd, i: number, smallCounts: boolean): CatalogOffer {
  const g = pick(r, GPUS);
  const gpuCount = pick(r, smallCounts ? [0.25, 0.5, 1, 1, 2, 4] : [0.25, 0.5, 1, 1, 2, 4, 8, 8]);
  const od = BigInt(int(r, 50_000, 40_000_000));
  const hasSpot = r() < 0.6;
  return {
    provider: pick(r, PROVIDERS),
    region: pick(r, REGIONS),
    zone: r() < 0.15 ? "z1" : "",
    instanceType: `it${i}-${int(r, 0, 9)}`,
    gpuType: g.type,
    gpuCount,
    gpuMemoryGb: g.mem,
    vcpus: 8,
    memoryGb: 64,
    onDemandMicrosPerHour: od,
    spotMicrosPerHour: hasSpot ? (od * BigInt(int(r, 15, 100))) / 100n : null,
    spotInterruptionsPerHour: hasSpot && r() < 0.8 ? pick(r, [0.0005, 0.005, 0.05, 0.3]) : null,
    spotAvailability: hasSpot && r() < 0.8 ? pick(r, [0.5, 0.8, 0.95, 1]) : null,
    interconnect: r() < 0.5 ? pick(r, ["efa", "infiniband", "gpudirect-tcpx"] as Interconnect[]) : null,
    priceDate: "2026-01-01",
    source: "test",
  };
}

function randomEgress(r: Rnd): EgressTier[] {
  const out: EgressTier[] = [];
  for (const provider of PROVIDERS) {
    if (r() < 0.15) continue;
    const region = r() < 0.5 ? "" : pick(r, REGIONS);
    const tiers = int(r, 1, 3);
    let from = 0;
    for (let t = 0; t < tiers; t++) {
      const to = t === tiers - 1 ? null : from + int(r, 100, 2000);
      out.push({ provider, scope: "internet", sourceRegion: region, fromGb: from, toGb: to, microsPerGb: BigInt(int(r, 20_000, 150_000)) });
      if (to !== null) from = to;
    }
    if (r() < 0.8) out.push({ provider, scope: "inter_region", sourceRegion: "", fromGb: 0, toGb: null, microsPerGb: BigInt(int(r, 0, 30_000)) });
  }
  return out;
}

function randomNode(r: Rnd, i: number, maxFree: number): ExistingNodeCapacity {
  const g = pick(r, GPUS.slice(0, 5));
  return {
    nodeId: `n${int(r, 0, 9)}${i}`,
    provider: r() < 0.7 ? "onprem" : pick(r, PROVIDERS),
    region: pick(r, ["dc1", "r1"]),
    network: pick(r, ["a", "a", "b"]),
    gpuType: g.type,
    gpuMemoryGb: g.mem,
    freeGpus: int(r, 0, maxFree),
    microsPerGpuHour: BigInt(pick(r, [0, 300_000, 900_000, 2_000_000, 4_000_000, 9_000_000])),
    interconnect: r() < 0.6 ? "infiniband" : null,
  };
}

interface Instance {
  spec: OptimizerSpec;
  catalog: Catalog;
  nodes: ExistingNodeCapacity[];
  options: OptimizeOptions;
}

function randomInstance(r: Rnd, multiTask: boolean): Instance {
  const offers = Array.from({ length: multiTask ? int(r, 1, 5) : int(r, 0, 9) }, (_, i) => randomOffer(r, i, multiTask));
  const nodes = Array.from({ length: multiTask ? int(r, 0, 3) : r() < 0.5 ? 0 : int(r, 1, 4) }, (_, i) => randomNode(r, i, multiTask ? 4 : 8));
  const multiNode = !multiTask && r() < 0.4;
  const share = !multiNode && r() < 0.2 ? pick(r, ["fraction", "fraction", "mig"] as const) : null;
  const framework = pick(r, FRAMEWORKS);
  const types = r() < (multiTask ? 0.75 : 0.5) ? [] : shuffle(r, GPUS.map((g) => g.type)).slice(0, int(r, 1, 3));
  const tasks = multiTask ? int(r, 1, 6) : 1;
  const kind = pick(r, ["none", "s3", "gs", "az", "file"] as const);
  const datasetKind = kind === "none" ? undefined : kind;
  const spec: OptimizerSpec = {
    job: { type: multiTask ? pick(r, ["hpo", "inference", "eval"] as const) : "training", framework, ...(r() < 0.85 ? { estimated_hours: pick(r, [0.5, 1, 3, 10, 40]) } : {}) },
    resources: {
      gpus: share !== null ? 1 : multiTask ? pick(r, [1, 1, 2]) : multiNode ? pick(r, [2, 4, 8, 12, 16]) : pick(r, [1, 1, 2, 4, 8]),
      requires_multi_node: multiNode,
      gpu_type: types,
      ...(r() < (multiTask ? 0.15 : 0.3) ? { gpu_memory_gb: pick(r, [8, 16, 40, 80]) } : {}),
      ...(r() < 0.3 ? { max_gpus_per_node: pick(r, [1, 2, 4, 8]) } : {}),
      ...(share === "fraction" ? { gpu_fraction: pick(r, [0.2, 0.25, 0.5]) } : {}),
      ...(share === "mig" ? { mig_profile: pick(r, ["1g.10gb", "3g.40gb", "7g.80gb"]) } : {}),
    },
    data: {
      ...(datasetKind === undefined ? {} : { dataset: `${datasetKind}://bucket/data`, dataset_kind: datasetKind }),
      ...(r() < 0.8 ? { size_gb: pick(r, [1, 50, 700, 3000]) } : {}),
      locality: pick(r, ["prefer", "required", "ignore"] as const),
      replication_policy: pick(r, ["none", "pre-stage", "on-demand-cache"] as const),
    },
    constraints: {
      ...(r() < 0.4 ? { budget_usd: pick(r, ["0.5", "5", "50", "500", "5000"]) } : {}),
      ...(r() < 0.3 ? { deadline: new Date(NOW + pick(r, [0.5, 2, 12, 60]) * 3_600_000).toISOString() } : {}),
      allow_spot: r() < 0.6,
      min_reliability: pick(r, [0, 0, 0.5, 0.9, 0.99]),
      performance_weight: pick(r, [0, 0, 0.3, 0.7, 1]),
      allowed_providers: r() < 0.15 ? [pick(r, ["aws", "gcp", "onprem"] as const)] : [],
      excluded_providers: r() < 0.1 ? ["azure"] : [],
      allowed_regions: r() < 0.1 ? ["r1", "dc1"] : [],
      excluded_regions: r() < 0.1 ? ["r3"] : [],
    },
    execution: { mode: multiTask ? "multi_task" : "single_cluster", tasks, ...(multiTask && r() < 0.4 ? { max_parallel: int(r, 1, 3) } : {}) },
    checkpoint: r() < 0.5 ? { interval_seconds: pick(r, [600, 3600, 7200]) } : r() < 0.3 ? { interval_steps: 1000 } : {},
    retry: { max_attempts: int(r, 1, 4) },
  };
  const options: OptimizeOptions = {
    nowMs: NOW,
    ...(r() < 0.3 ? { datasetLocation: { provider: pick(r, ["aws", "gcp", "onprem"] as const), region: pick(r, ["r1", "r2", "dc1"]) } } : {}),
    limits: {
      maxNodesPerCluster: { aws: int(r, 1, 4), gcp: int(r, 1, 4), azure: int(r, 1, 4), onprem: int(r, 1, 4) },
      maxInstancesPerOffer: int(r, 1, 2),
      ...(r() < 0.3 ? { maxSpotInstancesPerOffer: int(r, 1, 2) } : {}),
    },
  };
  return { spec, catalog: { offers, egress: randomEgress(r) }, nodes, options };
}

function keyOf(res: OptimizeResult): string {
  const t = res.best?.targets[0];
  if (t === undefined) return "";
  return `${t.kind}|${t.provider}|${t.region}|${t.zone}|${t.instanceType}|${t.kind === "existing" ? "" : t.spot}`;
}

function expectSameBest(res: OptimizeResult, brute: BruteBest | null, withKey: boolean, label: string): void {
  if (brute === null) {
    expect(res.best, label).toBeNull();
    expect(res.binding, label).toEqual(expect.any(String));
    return;
  }
  expect(res.best, label).not.toBeNull();
  const best = res.best;
  if (best === null) return;
  expect(best.totalMicros, label).toBe(brute.cost);
  expect(best.hours, label).toBe(brute.hours);
  expect(best.score, label).toBe(brute.score);
  expect(best.feasible, label).toBe(true);
  if (withKey) expect(keyOf(res), label).toBe(brute.key);
}

describe("optimizer against the brute-force reference", () => {
  it("single_cluster: the same best plan (zero cost gap) on 3000 random specs × catalogs", () => {
    const r = prng(20260601);
    let feasible = 0;
    const stats = { spot: 0, gang: 0, existingGang: 0, existing: 0, shared: 0, egress: 0, weighted: 0, bindingBudget: 0, bindingDeadline: 0, bindingReliability: 0 };
    for (let i = 0; i < 3000; i++) {
      const x = randomInstance(r, false);
      const res = optimize(x.spec, x.catalog, x.nodes, x.options);
      const brute = bruteForceCluster(x.spec, x.catalog, x.nodes, x.options);
      expectSameBest(res, brute, true, `instance ${i}: ${JSON.stringify(x.spec.resources)}`);
      if (brute !== null) feasible++;
      const b = res.best;
      if (b !== null) {
        const t = b.targets[0];
        if (b.spot) stats.spot++;
        if (x.spec.resources.requires_multi_node && (t?.nodes ?? 0) > 1) stats.gang++;
        if (x.spec.resources.requires_multi_node && t?.kind === "existing") stats.existingGang++;
        if (t?.kind === "existing") stats.existing++;
        if (x.spec.resources.gpu_fraction !== undefined || x.spec.resources.mig_profile !== undefined) stats.shared++;
        if (b.egressMicros > 0n) stats.egress++;
        if (x.spec.constraints.performance_weight > 0) stats.weighted++;
      } else {
        if (res.binding?.includes("budget")) stats.bindingBudget++;
        if (res.binding?.includes("deadline")) stats.bindingDeadline++;
        if (res.binding?.includes("reliability")) stats.bindingReliability++;
      }
      // Determinism: shuffled inputs give the identical answer.
      const again = optimize(x.spec, { offers: shuffle(r, x.catalog.offers), egress: shuffle(r, x.catalog.egress) }, shuffle(r, x.nodes), x.options);
      expect(again.best?.summary, `instance ${i} shuffled`).toBe(res.best?.summary);
      expect(again.binding).toBe(res.binding);
    }
    // The generator must exercise both outcomes and every part of the model.
    expect(feasible).toBeGreaterThan(600);
    expect(feasible).toBeLessThan(2700);
    expect(stats.spot).toBeGreaterThan(50);
    expect(stats.gang).toBeGreaterThan(40);
    expect(stats.existingGang).toBeGreaterThan(25);
    expect(stats.existing).toBeGreaterThan(150);
    expect(stats.shared).toBeGreaterThan(70);
    expect(stats.egress).toBeGreaterThan(80);
    expect(stats.weighted).toBeGreaterThan(250);
    expect(stats.bindingBudget).toBeGreaterThan(100);
    expect(stats.bindingDeadline).toBeGreaterThan(80);
    expect(stats.bindingReliability).toBeGreaterThan(80);
  });

  it("multi_task: the DP finds the exhaustive optimum (zero gap) on 2000 random sweeps", () => {
    const r = prng(777);
    let feasible = 0;
    const stats = { prestage: 0, weighted: 0, multiTarget: 0, existing: 0, spot: 0, multiCopy: 0, infeasibleWithTargets: 0 };
    for (let i = 0; i < 2000; i++) {
      const x = randomInstance(r, true);
      const res = optimize(x.spec, x.catalog, x.nodes, x.options);
      const brute = bruteForceTasks(x.spec, x.catalog, x.nodes, x.options);
      expectSameBest(res, brute, false, `instance ${i}: ${JSON.stringify({ res: x.spec.resources, ex: x.spec.execution, data: x.spec.data })}`);
      const best = res.best;
      if (best === null) {
        if (res.alternatives.length > 0) stats.infeasibleWithTargets++;
        continue;
      }
      feasible++;
      if (x.spec.data.replication_policy === "pre-stage" && best.egressMicros > 0n) stats.prestage++;
      if (x.spec.constraints.performance_weight > 0) stats.weighted++;
      if (best.targets.length > 1) stats.multiTarget++;
      if (best.targets.some((t) => t.kind === "existing")) stats.existing++;
      if (best.spot) stats.spot++;
      if (best.targets.some((t) => t.nodes > 1)) stats.multiCopy++;
      // The split is a real plan: every task placed, and the parts add up to the total.
      expect(best.targets.reduce((n, t) => n + t.units, 0)).toBe(x.spec.execution.tasks);
      expect(best.targets.reduce((n, t) => n + t.totalMicros, 0n)).toBe(best.totalMicros);
      expect(best.computeMicros + best.spotOverheadMicros + best.egressMicros).toBe(best.totalMicros);
      for (const t of best.targets) {
        if (t.kind === "cloud") expect(t.nodes).toBeLessThanOrEqual(Math.max(x.options.limits?.maxInstancesPerOffer ?? 16, x.options.limits?.maxSpotInstancesPerOffer ?? 0));
      }
    }
    // The generator must exercise every part of the model, not just easy covers.
    expect(feasible).toBeGreaterThan(500);
    expect(stats.multiTarget).toBeGreaterThan(100);
    expect(stats.prestage).toBeGreaterThan(30);
    expect(stats.weighted).toBeGreaterThan(200);
    expect(stats.existing).toBeGreaterThan(200);
    expect(stats.spot).toBeGreaterThan(40);
    expect(stats.multiCopy).toBeGreaterThan(30);
    expect(stats.infeasibleWithTargets).toBeGreaterThan(50);
  });
});
