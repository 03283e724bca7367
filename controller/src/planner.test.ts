import { randomUUID } from "node:crypto";
import { AppError, type CatalogOffer, type Principal } from "@gpuorch/core";
import {
  type Database,
  createTeam,
  insertJob,
  insertTasks,
  openDatabase,
  recordPricingFailure,
  replacePricingOffers,
  seedCatalogIfEmpty,
  upsertNodeRegistration,
} from "@gpuorch/db";
import { createLogger } from "@gpuorch/runtime";
import { type JobSpec, parseJobSpec } from "@gpuorch/spec";
import { newJobInput } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { admissionKey } from "./admission-key.js";
import { Planner, type PlannerDeps } from "./planner.js";
import { offer } from "./cost-fixtures.test-util.js";

const logger = createLogger({ name: "test", level: "silent" });
const principal: Principal = { tokenId: "t1", teamId: randomUUID(), teamName: "ml", kind: "user", admin: false };

function manualClock(start = new Date("2030-01-01T00:00:00.000Z")) {
  let t = start.getTime();
  return { now: () => new Date(t), advance: (ms: number) => void (t += ms) };
}


/** A small catalog: one row per GPU type, on-demand only (spec specs leave allow_spot off). */
const CATALOG: CatalogOffer[] = [
  offer({ od: "0.526" }),
  offer({ instanceType: "g5.xlarge", gpuType: "A10G", gpuMemoryGb: 24, od: "1.006", priceDate: "2026-02-01" }),
  offer({ provider: "gcp", region: "us-central1", instanceType: "g2-standard-4", gpuType: "L4", gpuMemoryGb: 24, od: "0.70683", priceDate: "2026-01-05", source: "seed:gcp.csv" }),
  offer({ provider: "gcp", region: "us-central1", instanceType: "a2-highgpu-1g", gpuType: "A100", gpuMemoryGb: 40, od: "3.673", priceDate: "2026-01-05", source: "seed:gcp.csv" }),
];

function specYaml(resources: string, extra = "", hours: string | null = "2"): string {
  return `version: 1
job:
  name: plan-me
  type: training
  framework: pytorch_ddp
${hours === null ? "" : `  estimated_hours: ${hours}\n`}entrypoint:
  command: [python, train.py]
resources:
${resources}${extra}`;
}

function spec(yaml: string): JobSpec {
  const p = parseJobSpec(yaml);
  if (!p.ok) throw new Error(`bad spec: ${JSON.stringify(p.issues)}`);
  return p.spec;
}

const THREE_TYPES = specYaml("  gpus: 1\n  gpu_type: [T4, L4, A10G]\n");
const T4_ONLY = specYaml("  gpus: 1\n  gpu_type: [T4]\n");
const T4_BUDGET = specYaml("  gpus: 1\n  gpu_type: [T4]\n", "constraints:\n  budget: 0.5\n");
const ONPREM_T4 = (gpus: number) => specYaml(`  gpus: ${gpus}\n  gpu_type: [T4]\n`, "constraints:\n  allowed_providers: [onprem]\n", "3");

/** An on-prem node in the "lab" region with `gpus` Tesla T4s; returns its id. */
async function registerT4Node(db: Database["db"], hostname: string, gpus: number, now: Date): Promise<string> {
  const out = await upsertNodeRegistration(
    db,
    {
      nodeId: null,
      hostname,
      labels: { provider: "onprem", region: "lab", zone: "", network: "lab-net", instanceType: "", spot: false, privateIp: "10.0.0.5" },
      cpuCores: 16,
      memoryMib: 65_536,
      agentVersion: "test",
      driverVersion: "550",
      cudaVersion: "12.4",
      degradedReason: null,
      gpus: Array.from({ length: gpus }, (_, index) => ({ index, uuid: `GPU-${hostname}-${index}`, name: "Tesla T4", memoryTotalMib: 15_360, migEnabled: false, migDevices: [] })),
    },
    { newId: randomUUID(), now },
  );
  return out.nodeId;
}

async function rejection(p: Promise<unknown>): Promise<AppError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

describe("Planner (PGlite, seeded catalog)", () => {
  let database: Database;
  let db: Database["db"];
  const clock = manualClock();
  const planner = (over: Partial<PlannerDeps> = {}): Planner =>
    new Planner({ db, clock, logger, egress: [], onpremMicrosPerGpuHour: 2_000_000n, admission: true, ...over });
  let p: Planner;

  beforeAll(async () => {
    database = await openDatabase({ memory: true });
    db = database.db;
    expect((await seedCatalogIfEmpty(db, { offers: CATALOG }, { at: clock.now() })).inserted).toBe(4);
    p = planner();
    await p.reload();
  });
  afterAll(async () => {
    await database.close();
  });

  it("reload() reads the catalog from gpu_pricing; before it the planner knows no offers", async () => {
    const fresh = planner();
    expect(fresh.offers).toEqual([]);
    await fresh.reload();
    expect(fresh.offers.map((o) => `${o.provider}/${o.instanceType}`)).toEqual(["aws/g4dn.xlarge", "aws/g5.xlarge", "gcp/a2-highgpu-1g", "gcp/g2-standard-4"]);
    expect(fresh.offers[0]?.onDemandMicrosPerHour).toBe(526_000n);
    // The node pricer follows the reloaded catalog.
    const price = fresh.nodePricer.price({ provider: "aws", region: "us-east-1", zone: "", instanceType: "g5.xlarge", spot: false, gpuCount: 1 }, 1);
    expect(price.microsPerHour).toBe(1_006_000n);
  });

  it("plan() ranks the feasible options cheapest first, each loser with its reason, and reports what it considered", async () => {
    await recordPricingFailure(db, { provider: "gcp", source: "gcp-billing-api", at: clock.now(), error: "HTTP 503 from cloudbilling" });
    const r = await p.plan(principal, THREE_TYPES, 20);
    expect(r.feasible).toBe(true);
    expect(r.infeasibleReason).toBe("");
    expect(r.options.map((o) => [o.rank, o.feasible, o.parts[0]?.gpuType, o.parts[0]?.instanceType, o.totalUsd, o.reason])).toEqual([
      [1, true, "L4", "g2-standard-4", "0.753953", ""],
      [2, true, "A10G", "g5.xlarge", "0.804800", "$0.05 more than best for 0.27 h less"],
      // T4 is the reference GPU (named first): exactly 2 h × $0.526.
      [3, true, "T4", "g4dn.xlarge", "1.052000", "$0.30 more than best and 0.93 h slower"],
    ]);
    const best = r.options[0]!;
    expect(best.parts).toEqual([
      expect.objectContaining({ provider: "gcp", region: "us-central1", instanceCount: 1, gpusPerInstance: 1, spot: false, usdPerHour: "0.706830", priceDate: "2026-01-05", nodeId: "" }),
    ]);
    expect(best.usdPerHour).toBe("0.706830");
    expect(best.computeUsd).toBe("0.753953");
    expect(best.egressUsd).toBe("0.000000");
    expect(best.expectedCompletion?.getTime()).toBeGreaterThan(clock.now().getTime());
    expect(r.offersConsidered).toBe(4);
    expect(r.oldestPriceDate).toBe("2026-01-05");
    expect(r.notes).toEqual(["gcp prices: last refresh failed (HTTP 503 from cloudbilling)", "filtered out 1: 1 not T4/L4/A10G"]);
  });

  it("plan() limits the alternatives to `limit`", async () => {
    const r = await p.plan(principal, THREE_TYPES, 1);
    expect(r.options.map((o) => o.totalUsd)).toEqual(["0.753953", "0.804800"]);
  });

  it("plan() of an infeasible spec is an answer, not an error: the binding constraint and the rejected plan ranked 0", async () => {
    const r = await p.plan(principal, T4_BUDGET, 20);
    expect(r.feasible).toBe(false);
    expect(r.infeasibleReason).toBe("cheapest plan costs $1.06 > budget $0.50 (1×T4 on-demand, aws us-east-1 g4dn.xlarge, 2.0 h, $1.06)");
    expect(r.options.map((o) => [o.rank, o.feasible, o.totalUsd, o.reason])).toEqual([[0, false, "1.052000", "over budget $1.06 > $0.50"]]);
    expect(r.oldestPriceDate).toBe("");
    expect(r.notes).toContain("filtered out 3: 3 not T4");
    expect(r.notes).toContain("filtered out 1: 1 over budget $0.50");
  });

  it("plan() notes what it assumed when the spec leaves estimated_hours out", async () => {
    const r = await p.plan(principal, specYaml("  gpus: 1\n  gpu_type: [T4]\n", "", null), 20);
    expect(r.notes).toContain("job.estimated_hours not set: assumed 1 h on T4");
    expect(r.options[0]?.totalUsd).toBe("0.526000");
  });

  it("plan() rejects an invalid spec with INVALID_ARGUMENT naming the YAML path, line and column", async () => {
    const bad = specYaml("  gpus: -2\n");
    const err = await rejection(p.plan(principal, bad, 20));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.reason).toBe("invalid_spec");
    expect(err.message).toBe("invalid job spec: resources.gpus: expected an integer ≥ 1 and ≤ 4096, got -2");
    expect(err.fields).toEqual([{ field: "resources.gpus", message: "expected an integer ≥ 1 and ≤ 4096, got -2", line: 10, column: 9 }]);

    const unknownType = await rejection(p.plan(principal, specYaml("  gpus: 1\n  gpu_type: [Z9000]\n"), 20));
    expect(unknownType.code).toBe("INVALID_ARGUMENT");
    expect(unknownType.fields.map((f) => f.field)).toEqual(["resources.gpu_type[0]"]);
  });

  it("admit() returns the best plan's total as a decimal USD estimate", async () => {
    const a = await p.admit(spec(T4_ONLY));
    expect(a.estimatedCostUsd).toBe("1.052000");
    expect(a.best?.totalMicros).toBe(1_052_000n);
    expect(a.best?.targets.map((t) => t.instanceType)).toEqual(["g4dn.xlarge"]);
    const three = await p.admit(spec(THREE_TYPES));
    const planned = await p.plan(principal, THREE_TYPES, 20);
    expect(three.estimatedCostUsd).toBe("0.753953");
    expect(three.estimatedCostUsd).toBe(planned.options[0]?.totalUsd);
  });

  it("admit() rejects an infeasible spec: RESOURCE_EXHAUSTED infeasible_job naming the binding constraint with numbers", async () => {
    const err = await rejection(p.admit(spec(T4_BUDGET)));
    expect(err.code).toBe("RESOURCE_EXHAUSTED");
    expect(err.reason).toBe("infeasible_job");
    expect(err.message).toBe("job is infeasible: cheapest plan costs $1.06 > budget $0.50 (1×T4 on-demand, aws us-east-1 g4dn.xlarge, 2.0 h, $1.06)");
    expect(err.meta).toEqual({ rejections: "gpu_type: 3 not T4 (3); budget: 1 over budget $0.50 (1)" });

    // No offer of the shape at all: the shape filters with counts.
    const none = await rejection(p.admit(spec(specYaml("  gpus: 1\n  gpu_type: [H100]\n"))));
    expect(none.reason).toBe("infeasible_job");
    expect(none.message).toMatch(/^job is infeasible: no offer or registered node can run .*: of 4 offers, 4 not H100/);
  });

  it("admit() never rejects a spec restricted to on-prem for want of nodes (no estimate)", async () => {
    await expect(p.admit(spec(ONPREM_T4(1)))).resolves.toEqual({ estimatedCostUsd: null, best: null });
  });

  it("with admission off, an infeasible spec is admitted without an estimate (a feasible one still gets one)", async () => {
    const off = planner({ admission: false });
    await off.reload();
    await expect(off.admit(spec(T4_BUDGET))).resolves.toEqual({ estimatedCostUsd: null, best: null });
    expect((await off.admit(spec(T4_ONLY))).estimatedCostUsd).toBe("1.052000");
  });
});

describe("Planner admission cache", () => {
  it("admissionKey ignores only what the optimizer never reads: name, project, entrypoint", () => {
    const base = spec(T4_ONLY);
    const renamed = spec(T4_ONLY.replace("name: plan-me", "name: other-job\n  project: p2").replace("command: [python, train.py]", "command: [python, eval.py]\n  args: [--seed, '7']"));
    expect(admissionKey(renamed)).toBe(admissionKey(base));
    for (const changed of [THREE_TYPES, T4_BUDGET, specYaml("  gpus: 1\n  gpu_type: [T4]\n", "", "3"), specYaml("  gpus: 2\n  gpu_type: [T4]\n")]) {
      expect(admissionKey(spec(changed))).not.toBe(admissionKey(base));
    }
  });

  it("a cached plan is never reused across budgets, a catalog reload or a capacity change", async () => {
    const database = await openDatabase({ memory: true });
    try {
      const db = database.db;
      const clock = manualClock();
      await seedCatalogIfEmpty(db, { offers: CATALOG }, { at: clock.now() });
      const p = new Planner({ db, clock, logger, egress: [], onpremMicrosPerGpuHour: 2_000_000n, admission: true });
      await p.reload();
      expect((await p.admit(spec(T4_ONLY))).estimatedCostUsd).toBe("1.052000");
      // Same shape under another name: same plan; a budget it breaks: rejected, not served from the cache.
      expect((await p.admit(spec(T4_ONLY.replace("plan-me", "plan-me-too")))).estimatedCostUsd).toBe("1.052000");
      expect((await rejection(p.admit(spec(T4_BUDGET)))).reason).toBe("infeasible_job");
      // New prices: the next admission sees them at once.
      await replacePricingOffers(db, { provider: "aws", source: "seed:test.csv", offers: [offer({ od: "0.300" })], at: clock.now() });
      await p.reload();
      expect((await p.admit(spec(T4_ONLY))).estimatedCostUsd).toBe("0.600000");
      // A node registers: once the capacity snapshot is refreshed, an on-prem-only spec gets its estimate.
      expect(await p.admit(spec(ONPREM_T4(1)))).toEqual({ estimatedCostUsd: null, best: null });
      await registerT4Node(db, "lab-9", 1, clock.now());
      clock.advance(1_001);
      expect((await p.admit(spec(ONPREM_T4(1)))).estimatedCostUsd).toBe("6.000000");
    } finally {
      await database.close();
    }
  });
});

describe("Planner with registered nodes (PGlite)", () => {
  let database: Database;
  let db: Database["db"];
  let nodeId: string;
  const clock = manualClock();
  const make = (): Planner => new Planner({ db, clock, logger, egress: [], onpremMicrosPerGpuHour: 2_000_000n, admission: true });

  beforeAll(async () => {
    database = await openDatabase({ memory: true });
    db = database.db;
    await seedCatalogIfEmpty(db, { offers: CATALOG }, { at: clock.now() });
    nodeId = await registerT4Node(db, "lab-1", 2, clock.now());
  });
  afterAll(async () => {
    await database.close();
  });

  it("counts a ready node's GPUs as capacity: an on-prem-only spec gets an estimate at the internal rate", async () => {
    const p = make();
    await p.reload();
    const one = await p.admit(spec(ONPREM_T4(1)));
    // 1 GPU × $2.00/GPU-h × 3 h (T4 is the reference GPU).
    expect(one.estimatedCostUsd).toBe("6.000000");
    expect(one.best?.targets).toEqual([expect.objectContaining({ kind: "existing", provider: "onprem", region: "lab", nodeIds: [nodeId], gpuType: "T4", gpuMemoryGb: 16, microsPerHour: 2_000_000n })]);
    expect((await p.admit(spec(ONPREM_T4(2)))).estimatedCostUsd).toBe("12.000000");
    // More GPUs than the fleet has: infeasible, but an on-prem-only spec is still not rejected.
    expect(await p.admit(spec(ONPREM_T4(4)))).toEqual({ estimatedCostUsd: null, best: null });

    const planned = await p.plan(principal, ONPREM_T4(1), 20);
    expect(planned.feasible).toBe(true);
    expect(planned.offersConsidered).toBe(5); // 4 catalog rows + the node's free T4s
    expect(planned.options[0]?.parts[0]).toMatchObject({ provider: "onprem", nodeId, instanceType: "1 registered node", usdPerHour: "2.000000", priceDate: "" });
    expect(planned.options[0]?.totalUsd).toBe("6.000000");
  });

  it("admission counts busy GPUs as capacity (a busy fleet is a reason to wait), while plan() shows only free ones", async () => {
    const teamId = (await createTeam(db, { id: randomUUID(), name: `t-${randomUUID().slice(0, 8)}` })).id;
    const jobId = (await insertJob(db, newJobInput(teamId, { gpus: 2 }))).job.id;
    await insertTasks(db, [{ id: randomUUID(), jobId, attempt: 1, nodeId, nodeRank: 0, numNodes: 1, unit: -1, gpuIndices: [0, 1], masterAddr: "", masterPort: 0 }]);
    clock.advance(1_001); // past the planner's one-second capacity cache
    const p = make();
    await p.reload();
    expect((await p.admit(spec(ONPREM_T4(2)))).estimatedCostUsd).toBe("12.000000");
    const planned = await p.plan(principal, ONPREM_T4(2), 20);
    expect(planned.feasible).toBe(false);
    expect(planned.offersConsidered).toBe(4);
    expect(planned.infeasibleReason).toMatch(/^no offer or registered node can run /);
  });
});
