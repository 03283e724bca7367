import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  type Catalog,
  DEFAULT_MAX_INSTANCES_PER_OFFER,
  type ExistingNodeCapacity,
  NON_NVIDIA_GPU_TYPES,
  type OptimizeOptions,
  type OptimizeResult,
  type OptimizerSpec,
  type PlanCandidate,
  ceilDiv,
  checkpointIntervalHours,
  hoursOnGpu,
  meteredMicros,
  optimize,
  referenceGpuType,
  resolveCostModel,
  spotExpectation,
} from "@gpuorch/core";
import { formatSpecIssues, parseJobSpec } from "@gpuorch/spec";
import { beforeAll, describe, expect, it } from "vitest";
import { bruteForceCluster } from "../../core/src/optimizer/brute-force.test-util.js";
import { loadCatalogDir, loadShippedCatalog } from "./catalog-files.js";
import { DEFAULT_ONPREM_MICROS_PER_GPU_HOUR } from "./offers.js";

/*
 * Issue §6: the design guide's three example jobs, planned against the shipped catalog and checked
 * against the exhaustive reference. The guide gives each example in one line; the specs below say
 * exactly that and leave every other setting at its default (no budget, no deadline, no dataset,
 * performance_weight 0 = cheapest wins):
 *   1. ResNet-50, 8×A100, 20 h, spot allowed;
 *   2. LLM fine-tune, 8×A100, 6 h (spot not mentioned → the default, on-demand only);
 *   3. HPO sweep, 200 trials of 1 GPU × 2 h, 50 free on-prem GPUs. Spot is allowed: the issue's
 *      own split for this sweep is "80 → aws spot, 70 → gcp spot, 50 → onprem".
 * The README section "The design guide's examples" quotes the plans asserted here.
 */

/** The full public snapshot, when this machine has it (CI may not): that suite skips without it. */
const SEED_DIR = process.env["GPUORCH_PRICING_SEED_DIR"] ?? join(import.meta.dirname, "../../../../shared/data/pricing");
const haveSeed = existsSync(join(SEED_DIR, "aws.csv"));

const NOW = Date.UTC(2026, 10, 1, 12);
const OPTIONS: OptimizeOptions = { nowMs: NOW, maxAlternatives: 10 };

const RESNET_YAML = `
version: 1
job:
  name: resnet50-imagenet
  type: training
  framework: pytorch_ddp
  estimated_hours: 20
entrypoint:
  command: [torchrun, --nproc-per-node=8, train.py]
  args: [--arch, resnet50]
resources:
  gpus: 8
  gpu_type: A100
constraints:
  allow_spot: true
`;

const LLM_FINETUNE_YAML = `
version: 1
job:
  name: llm-finetune
  type: training
  framework: pytorch_ddp
  estimated_hours: 6
entrypoint:
  command: [torchrun, --nproc-per-node=8, finetune.py]
resources:
  gpus: 8
  gpu_type: A100
`;

const HPO_YAML = `
version: 1
job:
  name: hpo-sweep
  type: hpo
  framework: pytorch
  estimated_hours: 2
entrypoint:
  command: [python, train.py]
resources:
  gpus: 1
hpo:
  trials: 200
  parameters:
    lr: {type: loguniform, min: 1.0e-5, max: 1.0e-1}
    batch_size: {type: int, min: 32, max: 512}
  objective: {metric: val_accuracy, direction: maximize}
constraints:
  allow_spot: true
`;

/*
 * The 50 free on-prem GPUs: A100 40 GB, the optimizer's reference GPU (the spec names no type, so
 * its 2 h per trial are A100 hours and a trial takes exactly 2 h on-prem), in 8-GPU servers: six
 * idle ones and two GPUs free on a seventh. Internal rate: DEFAULT_ONPREM_MICROS_PER_GPU_HOUR,
 * USD 1.00 per GPU-hour (README "On-prem rate"), so an on-prem trial costs USD 2.00.
 */
const ONPREM_FREE = [8, 8, 8, 8, 8, 8, 2];
const ONPREM_NODES: ExistingNodeCapacity[] = ONPREM_FREE.map((free, i) => ({
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

function specOf(yaml: string): OptimizerSpec {
  const r = parseJobSpec(yaml);
  if (!r.ok) throw new Error(formatSpecIssues(r.issues, "guide example"));
  return r.spec;
}

function bestOf(res: OptimizeResult): PlanCandidate {
  expect(res.binding).toBeNull();
  expect(res.best).not.toBeNull();
  const best = res.best as PlanCandidate;
  expect(best.feasible).toBe(true);
  expect(best.computeMicros + best.spotOverheadMicros + best.egressMicros).toBe(best.totalMicros);
  return best;
}

/** single_cluster: the optimizer's best equals the exhaustive enumeration's (cost, hours, score and place). */
function expectSameAsBruteForce(spec: OptimizerSpec, catalog: Catalog, nodes: readonly ExistingNodeCapacity[]): PlanCandidate {
  const res = optimize(spec, catalog, nodes, OPTIONS);
  const best = bestOf(res);
  const brute = bruteForceCluster(spec, catalog, nodes, OPTIONS);
  expect(brute).not.toBeNull();
  if (brute === null) return best;
  expect(best.totalMicros).toBe(brute.cost);
  expect(best.hours).toBe(brute.hours);
  expect(best.score).toBe(brute.score);
  const t = best.targets[0];
  expect(`${t?.kind}|${t?.provider}|${t?.region}|${t?.zone}|${t?.instanceType}|${t?.spot}`).toBe(brute.key);
  return best;
}

/**
 * multi_task certificate. bruteForceTasks enumerates every copy-count vector, Π(cap + 1) of them:
 * 17^hundreds for a 200-trial sweep over a real catalog, so it only runs on the property test's
 * small instances. At full size we check optimality with a bound instead: the same targets as the
 * reference builds (optimizer/README "multi_task model"), with copies allowed to be fractional.
 * That relaxation of the covering knapsack is solved exactly by taking targets in order of cost
 * per unit (greedy is optimal for a fractional knapsack), and every integer plan costs at least
 * its value; a plan whose total equals ceil(bound) is therefore the exhaustive optimum: zero gap.
 * Valid only without per-region/per-node data charges and without budget, deadline or reliability
 * limits (then the score with performance_weight 0 ranks by cost alone), which is asserted.
 */
function coverLowerBound(spec: OptimizerSpec, catalog: Catalog, nodes: readonly ExistingNodeCapacity[]): bigint {
  const r = spec.resources;
  const c = spec.constraints;
  expect(spec.execution.mode).toBe("multi_task");
  expect([spec.data.dataset, c.budget_usd, c.deadline, r.gpu_fraction, r.mig_profile, r.gpu_memory_gb, r.max_gpus_per_node]).toEqual(Array(7).fill(undefined));
  expect([c.min_reliability, c.performance_weight, r.gpu_type.length]).toEqual([0, 0, 0]);
  expect([c.allowed_providers, c.excluded_providers, c.allowed_regions, c.excluded_regions].flat()).toEqual([]);
  expect(spec.job.framework).not.toBe("command"); // CUDA: NVIDIA offers only

  const model = resolveCostModel(OPTIONS);
  const est = spec.job.estimated_hours ?? model.defaultEstimatedHours;
  const ref = referenceGpuType(r.gpu_type);
  const ckpt = checkpointIntervalHours(spec.checkpoint, model);
  const tasks = spec.execution.tasks;
  const parallel = Math.min(tasks, spec.execution.max_parallel ?? tasks);
  const waves = Math.ceil(tasks / parallel);
  const targets: { slots: number; cap: number; copyCost: bigint }[] = [];
  for (const o of catalog.offers) {
    if (NON_NVIDIA_GPU_TYPES.has(o.gpuType) || o.gpuCount < 1) continue;
    const slots = Math.floor(o.gpuCount / r.gpus);
    if (slots < 1) continue;
    const unitHours = hoursOnGpu(model.performance, est, ref, o.gpuType, spec.job.type);
    targets.push({ slots, cap: DEFAULT_MAX_INSTANCES_PER_OFFER, copyCost: meteredMicros(o.onDemandMicrosPerHour, waves * unitHours) });
    if (c.allow_spot && o.spotMicrosPerHour !== null) {
      const rate = o.spotInterruptionsPerHour ?? model.defaultSpotInterruptionsPerHour;
      const e = spotExpectation(unitHours, rate, 1, model.restartOverheadHours, ckpt);
      const cap = Math.max(1, Math.floor(DEFAULT_MAX_INSTANCES_PER_OFFER * (o.spotAvailability ?? model.defaultSpotAvailability)));
      targets.push({ slots, cap, copyCost: meteredMicros(o.spotMicrosPerHour, waves * e.expectedHours) });
    }
  }
  for (const x of nodes) {
    const cap = Math.floor(x.freeGpus / r.gpus);
    const unitHours = hoursOnGpu(model.performance, est, ref, x.gpuType, spec.job.type);
    if (cap >= 1) targets.push({ slots: 1, cap, copyCost: meteredMicros(x.microsPerGpuHour * BigInt(r.gpus), waves * unitHours) });
  }
  // Cheapest per unit first: a/sa < b/sb ⇔ a·sb < b·sa, in exact integers.
  targets.sort((a, b) => {
    const d = a.copyCost * BigInt(b.slots) - b.copyCost * BigInt(a.slots);
    return d < 0n ? -1 : d > 0n ? 1 : 0;
  });
  // Bound = Σ copyCost × units / slots, summed over a common denominator (the lcm of slot counts).
  const lcm = targets.reduce((l, t) => {
    let [a, b] = [l, t.slots];
    while (b !== 0) [a, b] = [b, a % b];
    return (l / a) * t.slots;
  }, 1);
  let need = parallel;
  let scaled = 0n;
  for (const t of targets) {
    if (need <= 0) break;
    const units = Math.min(need, t.slots * t.cap);
    scaled += t.copyCost * BigInt(units) * BigInt(lcm / t.slots);
    need -= units;
  }
  expect(need).toBeLessThanOrEqual(0); // enough capacity to run the sweep at all
  return ceilDiv(scaled, BigInt(lcm));
}

/** multi_task: the plan places every trial, its parts add up, and its total meets the lower bound. */
function expectOptimalSweep(spec: OptimizerSpec, catalog: Catalog, nodes: readonly ExistingNodeCapacity[]): PlanCandidate {
  const best = bestOf(optimize(spec, catalog, nodes, OPTIONS));
  expect(best.targets.reduce((n, t) => n + t.units, 0)).toBe(spec.execution.tasks);
  expect(best.targets.reduce((n, t) => n + t.totalMicros, 0n)).toBe(best.totalMicros);
  expect(best.totalMicros).toBe(coverLowerBound(spec, catalog, nodes));
  return best;
}

const onlyTarget = (p: PlanCandidate) => {
  expect(p.targets).toHaveLength(1);
  const t = p.targets[0];
  return { provider: t?.provider, region: t?.region, instanceType: t?.instanceType, nodes: t?.nodes, spot: t?.spot, gpuType: t?.gpuType, gpusPerNode: t?.gpusPerNode };
};

const onpremUnits = (p: PlanCandidate): number => p.targets.filter((t) => t.provider === "onprem").reduce((n, t) => n + t.units, 0);

describe("the design guide's examples on the shipped catalog", () => {
  let catalog: Catalog;
  beforeAll(async () => {
    catalog = await loadShippedCatalog();
  });

  it("ResNet-50 on 8×A100 for 20 h, spot allowed: one a2-highgpu-8g on spot in europe-west4, the exhaustive optimum", () => {
    const best = expectSameAsBruteForce(specOf(RESNET_YAML), catalog, []);
    expect(onlyTarget(best)).toEqual({ provider: "gcp", region: "europe-west4", instanceType: "a2-highgpu-8g", nodes: 1, spot: true, gpuType: "A100", gpusPerNode: 8 });
    // $13.54/h × 20.04 expected hours: $270.85 compute + $0.50 expected interruptions, no egress.
    expect([best.microsPerHour, best.computeMicros, best.spotOverheadMicros, best.egressMicros, best.totalMicros]).toEqual([
      13_542_680n,
      270_853_600n,
      500_403n,
      0n,
      271_354_003n,
    ]);
  });

  it("LLM fine-tune on 8×A100 for 6 h, on-demand: one a2-highgpu-8g in us-central1 (tied with us-east1 on price), the exhaustive optimum", () => {
    const spec = specOf(LLM_FINETUNE_YAML);
    const best = expectSameAsBruteForce(spec, catalog, []);
    expect(onlyTarget(best)).toEqual({ provider: "gcp", region: "us-central1", instanceType: "a2-highgpu-8g", nodes: 1, spot: false, gpuType: "A100", gpusPerNode: 8 });
    expect([best.microsPerHour, best.hours, best.totalMicros]).toEqual([29_387_080n, 6, 176_322_480n]);
    const runnerUp = optimize(spec, catalog, [], OPTIONS).alternatives[0];
    expect(runnerUp?.totalMicros).toBe(best.totalMicros);
    expect(runnerUp?.targets[0]?.region).toBe("us-east1");
  });

  it("HPO sweep, 200 trials × 1 GPU × 2 h with 50 free on-prem A100s: every on-prem GPU used, 150 trials on cloud spot, zero gap to the bound", () => {
    const spec = specOf(HPO_YAML);
    expect([spec.execution.mode, spec.execution.tasks]).toEqual(["multi_task", 200]);
    const best = expectOptimalSweep(spec, catalog, ONPREM_NODES);
    expect(onpremUnits(best)).toBe(50);
    for (const t of best.targets.filter((x) => x.provider === "onprem")) {
      expect(t.units).toBe(ONPREM_NODES.find((n) => n.nodeId === t.nodeIds[0])?.freeGpus);
      expect(t.totalMicros).toBe(BigInt(t.units) * 2_000_000n); // USD 1.00 × 1 GPU × 2 h per trial
    }
    const cloud = best.targets.filter((t) => t.provider !== "onprem");
    expect(cloud.every((t) => t.provider === "gcp" && t.spot)).toBe(true);
    expect(cloud.reduce((n, t) => n + t.units, 0)).toBe(150);
    expect(best.totalMicros).toBe(292_667_912n);
  });
});

describe.skipIf(!haveSeed)("the design guide's examples on the full shared snapshot (aws, gcp, azure)", () => {
  let catalog: Catalog;
  beforeAll(async () => {
    catalog = await loadCatalogDir(SEED_DIR);
  });

  it("ResNet-50: one p4d.24xlarge on spot in aws ap-southeast-2, the exhaustive optimum", () => {
    const best = expectSameAsBruteForce(specOf(RESNET_YAML), catalog, []);
    expect(onlyTarget(best)).toEqual({ provider: "aws", region: "ap-southeast-2", instanceType: "p4d.24xlarge", nodes: 1, spot: true, gpuType: "A100", gpusPerNode: 8 });
  });

  it("LLM fine-tune: one p4d.24xlarge on-demand in aws us-east-2, the exhaustive optimum", () => {
    const best = expectSameAsBruteForce(specOf(LLM_FINETUNE_YAML), catalog, []);
    expect(onlyTarget(best)).toEqual({ provider: "aws", region: "us-east-2", instanceType: "p4d.24xlarge", nodes: 1, spot: false, gpuType: "A100", gpusPerNode: 8 });
  });

  it("HPO sweep: zero gap to the bound; spot H100/T4/A10/L40S trials under USD 2 leave the on-prem GPUs idle", () => {
    const best = expectOptimalSweep(specOf(HPO_YAML), catalog, ONPREM_NODES);
    // At USD 1.00 per on-prem GPU-hour a trial costs USD 2.00 on-prem; the snapshot holds 200
    // units of spot capacity below that per trial, so cost alone leaves on-prem unused.
    expect(onpremUnits(best)).toBe(0);
    expect(best.targets.every((t) => t.spot)).toBe(true);
  });
});
