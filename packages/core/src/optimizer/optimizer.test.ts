import { describe, expect, it } from "vitest";
import { AppError } from "../app-error.js";
import type { Catalog, CatalogOffer, ExistingNodeCapacity } from "../catalog.js";
import type { OptimizerSpec } from "../cost/optimizer-spec.js";
import { requireFeasiblePlan } from "./binding.js";
import { NOW, node, offer, spec, tier } from "./fixtures.test-util.js";
import { optimize } from "./optimizer.js";
import type { OptimizeOptions, OptimizeResult } from "./types.js";

function run(s: OptimizerSpec, offers: CatalogOffer[], nodes: ExistingNodeCapacity[] = [], options: Partial<OptimizeOptions> = {}, egress: Catalog["egress"] = []): OptimizeResult {
  return optimize(s, { offers, egress }, nodes, { nowMs: NOW, ...options });
}

const best = (r: OptimizeResult) => {
  if (r.best === null) throw new Error(`no plan: ${r.binding}`);
  return r.best;
};
const first = (r: OptimizeResult) => {
  const t = best(r).targets[0];
  if (t === undefined) throw new Error("plan without targets");
  return t;
};

describe("single_cluster: shape filters", () => {
  it("picks the cheapest offer that fits, and explains why the others lost", () => {
    const r = run(spec(), [offer({ instanceType: "a", od: "3" }), offer({ instanceType: "b", od: "2.5", provider: "gcp", region: "us-central1" })]);
    expect(first(r).instanceType).toBe("b");
    expect(best(r).totalMicros).toBe(25_000_000n);
    expect(r.alternatives[0]?.reason).toBe("$5.00 more than best");
  });

  it("rents a bigger instance when it is cheaper (whole instance billed), unless max_gpus_per_node forbids it", () => {
    const offers = [offer({ instanceType: "two", gpuCount: 2, od: "10" }), offer({ instanceType: "four", gpuCount: 4, od: "8" })];
    expect(first(run(spec({ resources: { gpus: 2 } }), offers)).instanceType).toBe("four");
    expect(first(run(spec({ resources: { gpus: 2, max_gpus_per_node: 2 } }), offers)).instanceType).toBe("two");
  });

  it("never places a CUDA framework on non-NVIDIA accelerators; `command` may use one it names", () => {
    const offers = [offer({ instanceType: "mi", gpuType: "MI300X", gpuMemoryGb: 192, od: "1" }), offer({ instanceType: "inf", gpuType: "Inferentia2", od: "0.5" }), offer({ instanceType: "nv", od: "3" })];
    const ddp = run(spec(), offers);
    expect(first(ddp).instanceType).toBe("nv");
    expect(ddp.rejections.find((x) => x.code === "accelerator")?.count).toBe(2);
    expect(first(run(spec({ job: { framework: "command" } }), offers)).instanceType).toBe("nv");
    expect(first(run(spec({ job: { framework: "command" }, resources: { gpu_type: ["MI300X"] } }), offers)).instanceType).toBe("mi");
  });

  it("gives fractional GPU rows only to a spec that asks for a fraction at least that large, with gpuCount × memory usable", () => {
    const offers = [
      offer({ instanceType: "g6f.large", gpuType: "L4", gpuCount: 0.125, gpuMemoryGb: 24, od: "0.2" }),
      offer({ instanceType: "g6.xlarge", gpuType: "L4", gpuCount: 1, gpuMemoryGb: 24, od: "0.8" }),
    ];
    const whole = run(spec({ resources: { gpu_type: ["L4"] } }), offers);
    expect(first(whole).instanceType).toBe("g6.xlarge");
    expect(whole.rejections.find((x) => x.code === "fraction")?.count).toBe(1);
    expect(first(run(spec({ resources: { gpu_type: ["L4"], gpu_fraction: 0.125 } }), offers)).instanceType).toBe("g6f.large");
    expect(first(run(spec({ resources: { gpu_type: ["L4"], gpu_fraction: 0.25 } }), offers)).instanceType).toBe("g6.xlarge");
    // 0.125 × 24 GB = 3 GB < 4 GB.
    expect(first(run(spec({ resources: { gpu_type: ["L4"], gpu_fraction: 0.125, gpu_memory_gb: 4 } }), offers)).instanceType).toBe("g6.xlarge");
  });

  it("serves a MIG profile only from a MIG-capable GPU with enough memory", () => {
    const offers = [offer({ instanceType: "t4", gpuType: "T4", gpuMemoryGb: 16, od: "0.5" }), offer({ instanceType: "a100", od: "3" })];
    expect(first(run(spec({ resources: { mig_profile: "3g.20gb" } }), offers)).instanceType).toBe("a100");
    expect(run(spec({ resources: { mig_profile: "7g.80gb" } }), offers).best).toBeNull();
  });

  it("multi-node: only offers with a high-tier interconnect, N = ceil(gpus / GPUs per instance), capped per provider", () => {
    const offers = [
      offer({ instanceType: "p4d.24xlarge", gpuCount: 8, od: "20", interconnect: "efa" }),
      offer({ instanceType: "a2-highgpu-8g", provider: "gcp", region: "us-central1", gpuCount: 8, od: "15" }),
    ];
    const s = spec({ resources: { gpus: 12, requires_multi_node: true } });
    const r = run(s, offers);
    expect(first(r)).toMatchObject({ instanceType: "p4d.24xlarge", nodes: 2, microsPerHour: 40_000_000n });
    expect(r.rejections.find((x) => x.code === "interconnect")?.message).toBe("1 without a high-tier interconnect for multi-node");
    const capped = run(s, offers, [], { limits: { maxNodesPerCluster: { aws: 1 } } });
    expect(capped.best).toBeNull();
    expect(capped.binding).toBe(
      "no offer or registered node can run 12×NVIDIA GPU across nodes with a high-tier interconnect: of 2 offers, 1 without a high-tier interconnect for multi-node, 1 needing more nodes than the provider cap (aws 1, gcp 16, azure 16, onprem 1024)",
    );
  });

  it("says which filter removed everything when nothing has the right shape", () => {
    const r = run(spec({ resources: { gpu_type: ["H200"] } }), [offer({ od: "1" }), offer({ od: "2", gpuType: "MI300X" })]);
    expect(r.binding).toBe("no offer or registered node can run 1×H200 on one node: of 2 offers, 1 not NVIDIA (pytorch_ddp needs CUDA), 1 not H200");
  });

  it("filters providers and regions, on-prem included", () => {
    const offers = [offer({ instanceType: "a", od: "1" }), offer({ instanceType: "b", od: "2", provider: "gcp" }), offer({ instanceType: "c", od: "3", region: "eu-west-1" })];
    const nodes = [node({ nodeId: "n1", rate: "0.01" })];
    expect(first(run(spec({ constraints: { excluded_providers: ["onprem", "aws"] } }), offers, nodes)).instanceType).toBe("b");
    expect(first(run(spec({ constraints: { allowed_regions: ["eu-west-1"] } }), offers, nodes)).instanceType).toBe("c");
    expect(first(run(spec(), offers, nodes)).kind).toBe("existing");
  });
});

describe("single_cluster: cost model", () => {
  it("spot vs on-demand crossover: interruptions without checkpoints make spot dearer; checkpoints flip it back", () => {
    const o = (rate: number): CatalogOffer => offer({ od: "10", spot: "3", spotInterruptionsPerHour: rate, spotAvailability: 1 });
    const calm = run(spec({ constraints: { allow_spot: true } }), [o(0.01)]);
    // μ = 0.01 × 10 h = 0.1; each costs 0.1 h restart + 5 h lost (half the run) → 10.51 h × $3.
    expect(best(calm)).toMatchObject({ spot: true, hours: 10.51, computeMicros: 30_000_000n, spotOverheadMicros: 1_530_000n, totalMicros: 31_530_000n });
    // μ = 5 → 10 + 5 × 5.1 = 35.5 h × $3 = $106.50 > $100 on-demand.
    const stormy = run(spec({ constraints: { allow_spot: true } }), [o(0.5)]);
    expect(best(stormy)).toMatchObject({ spot: false, totalMicros: 100_000_000n });
    expect(stormy.alternatives[0]?.reason).toBe("$6.50 more than best and 25.5 h slower");
    // Checkpoint every 10 min: lost work 5 min → 10 + 5 × (0.1 + 1/12) h = 10.91666… h, metered
    // as 10.916667 h (hours round up to the millionth) × $3 = $32.750001.
    const saved = run(spec({ constraints: { allow_spot: true }, checkpoint: { interval_seconds: 600 } }), [o(0.5)]);
    expect(best(saved).spot).toBe(true);
    expect(best(saved).totalMicros).toBe(32_750_001n);
  });

  it("uses spot only when allowed and priced", () => {
    expect(best(run(spec(), [offer({ od: "10", spot: "1" })])).spot).toBe(false);
    expect(best(run(spec({ constraints: { allow_spot: true } }), [offer({ od: "10" })])).spot).toBe(false);
  });

  it("egress flips the choice: a cheaper region of another cloud loses once the dataset has to move there", () => {
    const offers = [offer({ instanceType: "aws-a100", od: "3" }), offer({ instanceType: "gcp-a100", provider: "gcp", region: "us-central1", od: "2.5" })];
    const egress = [tier("aws", "internet", "0.09"), tier("aws", "inter_region", "0.02")];
    const data = { dataset: "s3://bucket/train", dataset_kind: "s3" as const, size_gb: 1000, replication_policy: "pre-stage" as const };
    const loc = { datasetLocation: { provider: "aws" as const, region: "us-east-1" } };
    const moved = run(spec({ data: { ...data, locality: "prefer" } }), offers, [], loc, egress);
    expect(first(moved).instanceType).toBe("aws-a100");
    const gcp = moved.alternatives.find((a) => a.targets[0]?.provider === "gcp");
    expect(gcp?.egressMicros).toBe(90_000_000n);
    expect(gcp?.reason).toBe("$85.00 more than best");
    expect(first(run(spec({ data: { ...data, locality: "ignore" } }), offers, [], loc, egress)).instanceType).toBe("gcp-a100");
  });

  it("locality required with replication none pins the job to the dataset's region; with a replication policy it pays to move", () => {
    const offers = [offer({ instanceType: "here", od: "3" }), offer({ instanceType: "there", region: "us-west-2", od: "1" })];
    const egress = [tier("aws", "inter_region", "0.02")];
    const loc = { datasetLocation: { provider: "aws" as const, region: "us-east-1" } };
    const pinned = run(spec({ data: { dataset: "s3://b/x", dataset_kind: "s3", size_gb: 100, locality: "required", replication_policy: "none" } }), offers, [], loc, egress);
    expect(first(pinned).instanceType).toBe("here");
    expect(pinned.rejections.find((x) => x.code === "data_locality")?.count).toBe(1);
    const copied = run(spec({ data: { dataset: "s3://b/x", dataset_kind: "s3", size_gb: 100, locality: "required", replication_policy: "pre-stage" } }), offers, [], loc, egress);
    expect(first(copied).instanceType).toBe("there");
    expect(best(copied).egressMicros).toBe(2_000_000n);
  });

  it("on-demand-cache copies once per node and none once per node per attempt", () => {
    const offers = [offer({ instanceType: "p4d", gpuCount: 8, od: "1", interconnect: "efa", region: "us-west-2" })];
    const egress = [tier("aws", "inter_region", "0.01")];
    const loc = { datasetLocation: { provider: "aws" as const, region: "us-east-1" } };
    const s = (policy: "pre-stage" | "on-demand-cache" | "none") =>
      spec({ resources: { gpus: 24, requires_multi_node: true }, data: { dataset: "s3://b/x", dataset_kind: "s3", size_gb: 100, locality: "prefer", replication_policy: policy } });
    expect(best(run(s("pre-stage"), offers, [], loc, egress)).egressMicros).toBe(1_000_000n);
    expect(best(run(s("on-demand-cache"), offers, [], loc, egress)).egressMicros).toBe(3_000_000n);
    expect(best(run(s("none"), offers, [], loc, egress)).egressMicros).toBe(3_000_000n);
  });

  it("scales estimated_hours from the reference GPU (the first gpu_type) by relative throughput", () => {
    const offers = [offer({ instanceType: "t4", gpuType: "T4", gpuMemoryGb: 16, od: "0.5" }), offer({ instanceType: "h100", gpuType: "H100", gpuMemoryGb: 80, od: "8" })];
    const r = run(spec({ resources: { gpu_type: ["T4", "H100"] }, constraints: { performance_weight: 1 } }), offers);
    expect(first(r).gpuType).toBe("H100");
    expect(best(r).hours).toBeCloseTo((10 * 0.16) / 2.3, 10);
    const noEstimate = run(spec({ job: { estimated_hours: undefined } }), [offer({ od: "1" })]);
    expect(best(noEstimate).hours).toBe(1);
    expect(noEstimate.notes).toContain("job.estimated_hours not set: assumed 1 h on A100");
  });

  it("performance_weight trades cost for time: 0 takes the cheap slow GPU, 0.5 the fast one", () => {
    const offers = [offer({ instanceType: "t4", gpuType: "T4", gpuMemoryGb: 16, od: "0.5" }), offer({ instanceType: "h100", gpuType: "H100", gpuMemoryGb: 80, od: "8" })];
    expect(first(run(spec(), offers)).gpuType).toBe("T4");
    const fast = run(spec({ constraints: { performance_weight: 0.5 } }), offers);
    expect(first(fast).gpuType).toBe("H100");
    expect(fast.alternatives[0]?.reason).toBe("58.2 h slower than best for $3.53 less (score 7.687 vs 1.057 at performance_weight 0.5)");
  });

  it("prefers free registered capacity when it is cheaper (hybrid), and gangs registered nodes like the scheduler", () => {
    const nodes = [node({ nodeId: "n1", rate: "0.5" })];
    const r = run(spec({ resources: { gpus: 4 } }), [offer({ gpuCount: 4, od: "4" })], nodes);
    expect(best(r).summary).toBe("4×A100 on onprem dc1 node n1, 10.0 h, $20.00");
    const fabric = [1, 2, 3].map((i) => node({ nodeId: `n${i}`, rate: i === 2 ? "2" : "1", interconnect: "infiniband" }));
    const gang = run(spec({ resources: { gpus: 16, requires_multi_node: true } }), [], fabric);
    expect(first(gang).nodeIds).toEqual(["n1", "n3"]);
    expect(best(gang).totalMicros).toBe(160_000_000n);
  });

  it("breaks exact ties the documented way: registered nodes before cloud, on-demand before spot", () => {
    const tie = offer({ od: "1", spot: "1", spotInterruptionsPerHour: 0, spotAvailability: 1 });
    expect(best(run(spec({ constraints: { allow_spot: true } }), [tie])).spot).toBe(false);
    expect(first(run(spec(), [offer({ od: "1" })], [node({ nodeId: "n1", rate: "1" })])).kind).toBe("existing");
  });

  it("is deterministic: input order does not change the plan", () => {
    const offers = [offer({ instanceType: "a", od: "1" }), offer({ instanceType: "b", od: "1", region: "us-west-2" }), offer({ instanceType: "c", od: "1", provider: "gcp" })];
    const a = run(spec(), offers);
    const b = run(spec(), [...offers].reverse());
    expect(b.best?.summary).toBe(a.best?.summary);
    expect(first(a)).toMatchObject({ provider: "aws", region: "us-east-1", instanceType: "a" });
  });
});

describe("single_cluster: constraints and the binding message", () => {
  const p4de = offer({ instanceType: "p4de.24xlarge", gpuType: "A100-80GB", gpuMemoryGb: 80, gpuCount: 8, od: "40", spot: "7.16", spotInterruptionsPerHour: 0, spotAvailability: 1 });

  it("budget: names the cheapest plan and its price", () => {
    const s = spec({ job: { estimated_hours: 20 }, resources: { gpus: 8, gpu_type: ["A100-80GB"] }, constraints: { allow_spot: true, budget_usd: "100" } });
    const r = run(s, [p4de]);
    expect(r.best).toBeNull();
    expect(r.binding).toBe("cheapest plan costs $143.20 > budget $100.00 (8×A100-80GB spot, aws us-east-1 p4de.24xlarge, 20.0 h, $143.20)");
    expect(r.alternatives[0]?.reason).toBe("over budget $143.20 > $100.00");
    expect(() => requireFeasiblePlan(r)).toThrow(AppError);
    try {
      requireFeasiblePlan(r);
    } catch (e) {
      expect(e).toMatchObject({ code: "RESOURCE_EXHAUSTED", reason: "infeasible_job", message: r.binding });
    }
  });

  it("deadline: names the fastest plan and by how much it is late", () => {
    const s = spec({ constraints: { deadline: new Date(NOW + 6.8 * 3_600_000).toISOString() } });
    const r = run(s, [offer({ od: "1" })]);
    expect(r.binding).toBe("fastest plan misses the deadline 2026-06-01T18:48:00.000Z by 3.2 h (1×A100 on-demand, aws us-east-1 x, 10.0 h, $10.00)");
    expect(r.alternatives[0]?.reason).toBe("deadline missed by 3.2 h");
  });

  it("budget and deadline together: both trade-offs are spelled out", () => {
    const offers = [offer({ instanceType: "slow", gpuType: "T4", gpuMemoryGb: 16, od: "0.5" }), offer({ instanceType: "fast", gpuType: "H100", gpuMemoryGb: 80, od: "40" })];
    const s = spec({ constraints: { budget_usd: "50", deadline: new Date(NOW + 24 * 3_600_000).toISOString() } });
    const r = run(s, offers);
    expect(r.binding).toBe(
      "no plan meets budget and deadline together: cheapest plan meeting the deadline costs $173.92 > budget $50.00 (1×H100 on-demand, aws us-east-1 fast, 4.3 h, $173.92); " +
        "fastest plan within budget misses the deadline 2026-06-02T12:00:00.000Z by 38.5 h (1×T4 on-demand, aws us-east-1 slow, 62.5 h, $31.25)",
    );
  });

  it("reliability: spot below min_reliability is skipped for on-demand; nothing reliable enough is reported with digits that differ", () => {
    const o = offer({ od: "10", spot: "1", spotInterruptionsPerHour: 0, spotAvailability: 0.8 });
    const r = run(spec({ constraints: { allow_spot: true, min_reliability: 0.9 } }), [o]);
    expect(best(r).spot).toBe(false);
    expect(r.alternatives.find((a) => a.spot)?.reason).toBe("reliability 0.800 < 0.900");
    const strict = run(spec({ constraints: { min_reliability: 0.9999 } }), [o]);
    expect(strict.binding).toBe("most reliable plan has reliability 0.9990 < min_reliability 0.9999 (1×A100 on-demand, aws us-east-1 x, 10.0 h, $100.00)");
  });

  it("spot reliability counts interruptions against max_attempts", () => {
    // μ = 0.1 × 10 h = 1 interruption expected; 1 attempt survives none: P(0) = e^-1.
    const o = offer({ od: "10", spot: "1", spotInterruptionsPerHour: 0.1, spotAvailability: 1 });
    const r = run(spec({ constraints: { allow_spot: true }, retry: { max_attempts: 1 }, checkpoint: { interval_seconds: 3600 } }), [o]);
    expect(best(r).reliability).toBeCloseTo(Math.exp(-1), 12);
  });

  it("rejects a malformed budget as INVALID_ARGUMENT", () => {
    expect(() => run(spec({ constraints: { budget_usd: "lots" } }), [offer({ od: "1" })])).toThrow(/constraints\.budget_usd/);
  });
});

describe("multi_task", () => {
  const small = offer({ instanceType: "g5.xlarge", gpuType: "A10G", gpuMemoryGb: 24, od: "1.2" });
  const big = offer({ instanceType: "g5.48xlarge", gpuType: "A10G", gpuMemoryGb: 24, gpuCount: 8, od: "8" });
  const sweep = (tasks: number, over: Parameters<typeof spec>[0] = {}) =>
    spec({ ...over, job: { type: "hpo", framework: "pytorch", estimated_hours: 1, ...over.job }, resources: { gpu_type: ["A10G"], ...over.resources }, execution: { mode: "multi_task", tasks, ...over.execution } });

  it("packs several one-GPU trials onto one 8-GPU instance when that is cheaper", () => {
    const r = run(sweep(8), [small, big]);
    expect(best(r).summary).toBe("8 → aws us-east-1 g5.48xlarge×1; makespan 1.0 h, $8.00");
  });

  it("uses free registered GPUs first when they are cheaper and reports the split", () => {
    const r = run(sweep(8), [small, big], [node({ nodeId: "n1", gpuType: "A10G", gpuMemoryGb: 24, freeGpus: 2, rate: "0.3" })]);
    expect(best(r).summary).toBe("2 → onprem dc1 n1, 6 → aws us-east-1 g5.xlarge×6; makespan 1.0 h, $7.80");
  });

  it("spreads over providers when per-offer capacity runs out", () => {
    const gcp = offer({ instanceType: "g2-standard-4", provider: "gcp", region: "us-central1", gpuType: "A10G", gpuMemoryGb: 24, od: "1.5" });
    const r = run(sweep(5), [small, gcp], [], { limits: { maxInstancesPerOffer: 3 } });
    expect(best(r).summary).toBe("3 → aws us-east-1 g5.xlarge×3, 2 → gcp us-central1 g2-standard-4×2; makespan 1.0 h, $6.60");
  });

  it("max_parallel runs the tasks in waves on fewer slots", () => {
    const r = run(sweep(5, { execution: { max_parallel: 2 } }), [small]);
    expect(best(r)).toMatchObject({ hours: 3, totalMicros: 7_200_000n });
    expect(best(r).summary).toBe("5 → aws us-east-1 g5.xlarge×2; makespan 3.0 h, $7.20");
  });

  it("performance_weight buys a shorter makespan with faster GPUs", () => {
    const h100 = offer({ instanceType: "p5", gpuType: "H100", gpuMemoryGb: 80, od: "9" });
    const s = (w: number) => sweep(4, { resources: { gpu_type: [] }, job: { estimated_hours: 1 }, constraints: { performance_weight: w } });
    expect(first(run(s(0), [small, h100])).gpuType).toBe("A10G");
    const fast = run(s(0.9), [small, h100]);
    expect(first(fast).gpuType).toBe("H100");
    expect(fast.alternatives[0]?.summary).toMatch(/^4 → aws us-east-1 g5\.xlarge×4; makespan 2\.5 h/);
  });

  it("says when the matching capacity cannot hold the units running at once", () => {
    const r = run(sweep(200), [small], [], { limits: { maxInstancesPerOffer: 4 } });
    expect(r.binding).toBe(
      "needs 200 × 1×A10G running at once; the matching offers and registered nodes hold 4 (at most 4 on-demand instances per offer, spot scaled by availability, free GPUs on registered nodes)",
    );
  });

  it("budget binding names the cheapest split", () => {
    const r = run(sweep(8, { constraints: { budget_usd: "5" } }), [small, big]);
    expect(r.binding).toBe("cheapest plan costs $8.00 > budget $5.00 (8 → aws us-east-1 g5.48xlarge×1; makespan 1.0 h, $8.00)");
  });

  it("pre-stage copies the dataset once per region used", () => {
    const west = offer({ instanceType: "g5.xlarge", region: "us-west-2", gpuType: "A10G", gpuMemoryGb: 24, od: "1.2" });
    const r = run(
      sweep(6, { data: { dataset: "s3://b/x", dataset_kind: "s3", size_gb: 100, locality: "prefer", replication_policy: "pre-stage" } }),
      [small, west],
      [],
      { datasetLocation: { provider: "aws", region: "eu-west-1" }, limits: { maxInstancesPerOffer: 3 } },
      [tier("aws", "inter_region", "0.02")],
    );
    expect(best(r).egressMicros).toBe(4_000_000n);
    expect(best(r).totalMicros).toBe(11_200_000n);
  });
});
