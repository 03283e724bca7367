/**
 * Latency of the cost optimizer (`optimize()` of the built `packages/core`), in process, no
 * controller: what admission and `gpuorch plan` spend per spec. Issue goals: p50 < 5 ms for
 * single_cluster specs, < 50 ms for a 200-trial multi_task sweep.
 *
 * Catalog: the full shared snapshot (aws.csv, gcp.csv, azure.csv, egress.csv) through
 * `loadCatalogDir` when the directory exists (`GPUORCH_PRICING_SEED_DIR`, else
 * `<repo>/../shared/data/pricing`), otherwise the shipped catalog (`loadShippedCatalog`, GCP
 * only). Every figure name ends in `_snapshot` or `_shipped` to say which.
 *
 * single_cluster: N specs (default 1,000) from a seeded generator (the same specs every run)
 * varying GPU count, type, memory, spot, multi-node, providers and regions, budget, deadline,
 * dataset locality and replication, checkpointing, reliability and performance weight. One
 * warm-up pass over all of them, then one timed call each; p50/p99 are nearest-rank over the N
 * calls. Sweep: the design guide's 200-trial HPO sweep (1 GPU each, 2 h, any NVIDIA type, spot
 * allowed), without and with 50 free on-prem A100s (6 × 8 + 2 free GPUs on 7 nodes); W warm-up
 * runs, then R timed runs of each.
 *
 * Usage: node bench/dist/optimizer.bench.js [--specs N] [--sweeps R] [--warmup W]
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  type Catalog,
  type CloudProvider,
  type ExistingNodeCapacity,
  type OptimizeOptions,
  type OptimizerSpec,
  optimize,
} from "@gpuorch/core";
import { DEFAULT_ONPREM_MICROS_PER_GPU_HOUR, loadCatalogDir, loadShippedCatalog } from "@gpuorch/pricing";
import { REPO_ROOT } from "./controller-process.js";
import { figure, percentile } from "./latency.js";
import { parseBenchArgs } from "./options.js";

const USAGE = "usage: optimizer.bench.js [--specs N (1000)] [--sweeps R (50)] [--warmup W (5)]";

interface Options {
  specs: number;
  sweeps: number;
  warmup: number;
}

function parseOptions(argv: string[]): Options {
  const { int } = parseBenchArgs(argv, { specs: { type: "string" }, sweeps: { type: "string" }, warmup: { type: "string" } }, USAGE);
  return { specs: int("specs", 1000, 1), sweeps: int("sweeps", 50, 1), warmup: int("warmup", 5, 0) };
}

const NOW = Date.UTC(2026, 10, 1, 12);
const SEED_DIR = process.env["GPUORCH_PRICING_SEED_DIR"] ?? join(REPO_ROOT, "..", "shared", "data", "pricing");

/** mulberry32: a tiny seeded PRNG, so every run times the same specs. */
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
function pick<T>(r: Rnd, xs: readonly T[]): T {
  const x = xs[Math.floor(r() * xs.length)];
  if (x === undefined) throw new Error("pick from an empty list");
  return x;
}

const GPU_TYPES = ["A100", "A100-80GB", "H100", "H200", "B200", "L4", "L40S", "T4", "A10G", "A10", "V100", "RTXPRO6000"];
const FRAMEWORKS = ["pytorch_ddp", "horovod", "tensorflow_multiworker", "pytorch", "command"] as const;

/** One varied single_cluster spec, built as the parser would leave it (defaults present). */
function randomSpec(r: Rnd, regions: Record<CloudProvider, string[]>): { spec: OptimizerSpec; options: OptimizeOptions } {
  const multiNode = r() < 0.3;
  const gpus = multiNode ? pick(r, [16, 16, 32, 64]) : pick(r, [1, 1, 2, 4, 8, 8]);
  const types = r() < 0.25 ? [] : Array.from(new Set([pick(r, GPU_TYPES), ...(r() < 0.4 ? [pick(r, GPU_TYPES)] : [])]));
  const provider = pick(r, ["aws", "gcp", "azure"] as const);
  const region = pick(r, regions[provider]);
  const dataset = r() < 0.5 ? pick(r, ["s3", "gs", "az"] as const) : null;
  const spec: OptimizerSpec = {
    job: { type: "training", framework: multiNode ? pick(r, FRAMEWORKS.slice(0, 3)) : pick(r, FRAMEWORKS), estimated_hours: pick(r, [0.5, 2, 6, 20, 72]) },
    resources: {
      gpus,
      requires_multi_node: multiNode,
      gpu_type: types,
      ...(multiNode ? { max_gpus_per_node: 8 } : {}),
      ...(r() < 0.3 ? { gpu_memory_gb: pick(r, [16, 24, 40, 80]) } : {}),
    },
    data: {
      ...(dataset === null ? {} : { dataset: `${dataset}://bench-data/set/`, dataset_kind: dataset, size_gb: pick(r, [10, 150, 2000]) }),
      locality: dataset === null ? "prefer" : pick(r, ["prefer", "prefer", "required", "ignore"] as const),
      replication_policy: dataset === null ? "none" : pick(r, ["none", "pre-stage", "on-demand-cache"] as const),
    },
    constraints: {
      ...(r() < 0.35 ? { budget_usd: pick(r, ["50", "500", "5000", "50000"]) } : {}),
      ...(r() < 0.25 ? { deadline: new Date(NOW + pick(r, [4, 24, 96, 400]) * 3_600_000).toISOString() } : {}),
      allow_spot: r() < 0.5,
      min_reliability: pick(r, [0, 0, 0, 0.9, 0.99]),
      performance_weight: pick(r, [0, 0, 0.3, 0.7]),
      allowed_providers: r() < 0.25 ? [provider] : [],
      excluded_providers: r() < 0.1 ? ["azure"] : [],
      allowed_regions: r() < 0.15 ? [region] : [],
      excluded_regions: r() < 0.1 ? [pick(r, regions[provider])] : [],
    },
    execution: { mode: "single_cluster", tasks: 1 },
    checkpoint: r() < 0.5 ? { interval_seconds: pick(r, [900, 1800, 3600]) } : {},
    retry: { max_attempts: pick(r, [1, 3, 5]) },
  };
  const options: OptimizeOptions = { nowMs: NOW, ...(dataset !== null && r() < 0.5 ? { datasetLocation: { provider, region } } : {}) };
  return { spec, options };
}

/** The design guide's HPO sweep: 200 trials × 1 GPU × 2 h, any NVIDIA type, spot allowed. */
const SWEEP: OptimizerSpec = {
  job: { type: "hpo", framework: "pytorch", estimated_hours: 2 },
  resources: { gpus: 1, requires_multi_node: false, gpu_type: [] },
  data: { locality: "prefer", replication_policy: "none" },
  constraints: {
    allow_spot: true,
    min_reliability: 0,
    performance_weight: 0,
    allowed_providers: [],
    excluded_providers: [],
    allowed_regions: [],
    excluded_regions: [],
  },
  execution: { mode: "multi_task", tasks: 200 },
  checkpoint: {},
  retry: { max_attempts: 3 },
};

const ONPREM: ExistingNodeCapacity[] = [8, 8, 8, 8, 8, 8, 2].map((free, i) => ({
  nodeId: `dc1-a100-${i + 1}`,
  provider: "onprem",
  region: "dc1",
  network: "dc1-ib",
  gpuType: "A100",
  gpuMemoryGb: 40,
  freeGpus: free,
  microsPerGpuHour: DEFAULT_ONPREM_MICROS_PER_GPU_HOUR,
  interconnect: "infiniband",
}));

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

function report(name: string, samples: number[], goalMs: number): void {
  samples.sort((a, b) => a - b);
  const p50 = percentile(samples, 50);
  console.error(
    `${name}: ${samples.length} calls, p50 ${p50.toFixed(2)} / p90 ${percentile(samples, 90).toFixed(2)} / p99 ${percentile(samples, 99).toFixed(2)} / max ${(samples[samples.length - 1] as number).toFixed(2)} ms; goal p50 < ${goalMs} ms: ${p50 < goalMs ? "met" : "MISSED"}`,
  );
  console.log(figure(`${name}_p50`, p50, "ms"));
  console.log(figure(`${name}_p99`, percentile(samples, 99), "ms"));
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const full = existsSync(join(SEED_DIR, "aws.csv"));
  const catalog: Catalog = full ? await loadCatalogDir(SEED_DIR) : await loadShippedCatalog();
  const suffix = full ? "snapshot" : "shipped";
  console.error(`optimizer: catalog = ${full ? `full snapshot ${SEED_DIR}` : "shipped (GCP only; no full snapshot found)"}: ${catalog.offers.length} offers, ${catalog.egress.length} egress tiers`);
  console.log(figure(`optimizer_catalog_offers_${suffix}`, catalog.offers.length, "offers"));

  const regions: Record<CloudProvider, string[]> = { aws: [], gcp: [], azure: [] };
  for (const o of catalog.offers) if (!regions[o.provider].includes(o.region)) regions[o.provider].push(o.region);
  for (const p of ["aws", "gcp", "azure"] as const) if (regions[p].length === 0) regions[p].push(p === "gcp" ? "us-central1" : p === "aws" ? "us-east-1" : "eastus");

  const r = prng(20261101);
  const cases = Array.from({ length: opts.specs }, () => randomSpec(r, regions));
  let feasible = 0;
  for (const c of cases) if (optimize(c.spec, catalog, [], c.options).best !== null) feasible++; // warm-up pass
  const single: number[] = [];
  for (const c of cases) {
    const t0 = process.hrtime.bigint();
    optimize(c.spec, catalog, [], c.options);
    single.push(ms(t0));
  }
  console.error(`optimizer: single_cluster, ${feasible} of ${cases.length} specs feasible (the rest are answered with their binding constraint)`);
  report(`optimizer_single_cluster_${suffix}`, single, 5);

  for (const [label, nodes] of [
    ["sweep200", [] as ExistingNodeCapacity[]],
    ["sweep200_onprem50", ONPREM],
  ] as const) {
    const options: OptimizeOptions = { nowMs: NOW };
    const summary = optimize(SWEEP, catalog, nodes, options).best?.summary ?? "infeasible";
    for (let i = 0; i < opts.warmup; i++) optimize(SWEEP, catalog, nodes, options);
    const runs: number[] = [];
    for (let i = 0; i < opts.sweeps; i++) {
      const t0 = process.hrtime.bigint();
      optimize(SWEEP, catalog, nodes, options);
      runs.push(ms(t0));
    }
    console.error(`optimizer: ${label}: ${summary.length > 160 ? `${summary.slice(0, 157)}...` : summary}`);
    report(`optimizer_${label}_${suffix}`, runs, 50);
  }
}

main().catch((err: unknown) => {
  console.error("optimizer: FAILED:", err);
  process.exitCode = 1;
});
