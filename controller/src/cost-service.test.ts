import { randomUUID } from "node:crypto";
import { AppError, type CatalogOffer, type Principal, parseUsdMicros } from "@gpuorch/core";
import { type Database, createTeam, insertJob, insertTasks, openDatabase, recordPricingFailure, replacePricingOffers, upsertNodeRegistration } from "@gpuorch/db";
import { newJobInput } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type PriceQuery, getCostsResponse, STALE_AFTER_MS, listPrices, parseGrouping, toSnakeJson } from "./cost-service.js";
import { offer } from "./cost-fixtures.test-util.js";

const offerAws = (o: Parameters<typeof offer>[0]): CatalogOffer => offer({ source: "aws-price-list", ...o });
const NOW = new Date("2030-01-02T00:00:00.000Z");


const AWS = [
  offerAws({ instanceType: "p4d.24xlarge", gpuType: "A100", gpuCount: 8, gpuMemoryGb: 40, od: "32.7726", spot: "12", interconnect: "efa" }),
  offerAws({ od: "0.526", spot: "0.2" }),
  offerAws({ region: "us-west-2", od: "0.526", priceDate: "2026-01-12" }),
  // $98.320001 / 8 = 12.290000125 per GPU-hour: rounded up to 12.290001.
  offerAws({ instanceType: "p5.48xlarge", gpuType: "H100", gpuCount: 8, gpuMemoryGb: 80, od: "98.320001", spot: "40", interconnect: "efa" }),
];
const GCP = [
  offerAws({ provider: "gcp", region: "us-central1", instanceType: "a2-highgpu-1g", gpuType: "A100", gpuMemoryGb: 40, od: "3.673", spot: "1.1", priceDate: "2025-12-01", source: "shipped:gcp.csv" }),
  // Half an L4: $0.35 for the half is $0.70 per GPU-hour.
  offerAws({ provider: "gcp", region: "us-central1", instanceType: "g2-half", gpuType: "L4", gpuCount: 0.5, gpuMemoryGb: 24, od: "0.35", priceDate: "2025-12-01", source: "shipped:gcp.csv" }),
  offerAws({ provider: "gcp", region: "us-central1", instanceType: "a2-ultragpu-1g", gpuType: "A100-80GB", gpuMemoryGb: 80, od: "5.0688", priceDate: "2025-12-01", source: "shipped:gcp.csv" }),
];
const OFFERS = [...GCP, ...AWS];

const q = (over: Partial<PriceQuery> = {}): PriceQuery => ({ gpuTypes: [], providers: [], regions: [], spot: false, limit: 0, ...over });
const keyOf = (r: { provider: string; region: string; instanceType: string }) => `${r.provider}/${r.region}/${r.instanceType}`;

async function rejection(p: Promise<unknown> | (() => unknown)): Promise<AppError> {
  let err: unknown = null;
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(AppError);
  return err as AppError;
}

describe("cost service (PGlite)", () => {
  let database: Database;
  let db: Database["db"];

  beforeAll(async () => {
    database = await openDatabase({ memory: true });
    db = database.db;
  });
  afterAll(async () => {
    await database.close();
  });

  describe("listPrices", () => {
    it("sorts by on-demand $/GPU-hour (fractional rows per full GPU, rounded up), then by key", async () => {
      const r = await listPrices(db, OFFERS, q(), NOW);
      expect(r.rows.map((x) => [keyOf(x), x.onDemandUsdPerGpuHour])).toEqual([
        ["aws/us-east-1/g4dn.xlarge", "0.526000"],
        ["aws/us-west-2/g4dn.xlarge", "0.526000"],
        ["gcp/us-central1/g2-half", "0.700000"],
        ["gcp/us-central1/a2-highgpu-1g", "3.673000"],
        ["aws/us-east-1/p4d.24xlarge", "4.096575"],
        ["gcp/us-central1/a2-ultragpu-1g", "5.068800"],
        ["aws/us-east-1/p5.48xlarge", "12.290001"],
      ]);
      expect(r.totalRows).toBe(7);
      expect(r.rows[2]).toEqual({
        provider: "gcp",
        region: "us-central1",
        zone: "",
        instanceType: "g2-half",
        gpuType: "L4",
        gpuCount: 0.5,
        gpuMemoryGb: 24,
        vcpus: 4,
        memoryGb: 16,
        onDemandUsdPerHour: "0.350000",
        spotUsdPerHour: "",
        onDemandUsdPerGpuHour: "0.700000",
        spotUsdPerGpuHour: "",
        spotInterruptionsPerHour: 0,
        spotAvailability: 0,
        interconnect: "",
        priceDate: "2025-12-01",
        source: "shipped:gcp.csv",
      });
      expect(r.rows[4]).toMatchObject({ onDemandUsdPerHour: "32.772600", spotUsdPerHour: "12.000000", spotUsdPerGpuHour: "1.500000", spotInterruptionsPerHour: 0.002, spotAvailability: 0.9, interconnect: "efa" });
    });

    it("with spot, sorts by the spot price and drops rows that have none", async () => {
      const r = await listPrices(db, OFFERS, q({ spot: true }), NOW);
      expect(r.rows.map((x) => [keyOf(x), x.spotUsdPerGpuHour])).toEqual([
        ["aws/us-east-1/g4dn.xlarge", "0.200000"],
        ["gcp/us-central1/a2-highgpu-1g", "1.100000"],
        ["aws/us-east-1/p4d.24xlarge", "1.500000"],
        ["aws/us-east-1/p5.48xlarge", "5.000000"],
      ]);
      expect(r.totalRows).toBe(4);
    });

    it("filters by canonicalised GPU types, providers and regions", async () => {
      // "a100-40gb" is the catalog's A100, "h100_80gb" its H100; A100-80GB is another type.
      const byType = await listPrices(db, OFFERS, q({ gpuTypes: ["a100-40gb", "h100_80gb"] }), NOW);
      expect(byType.rows.map(keyOf)).toEqual(["gcp/us-central1/a2-highgpu-1g", "aws/us-east-1/p4d.24xlarge", "aws/us-east-1/p5.48xlarge"]);
      const lower = await listPrices(db, OFFERS, q({ gpuTypes: ["t4"], providers: ["aws"] }), NOW);
      expect(lower.rows.map(keyOf)).toEqual(["aws/us-east-1/g4dn.xlarge", "aws/us-west-2/g4dn.xlarge"]);
      const gcp = await listPrices(db, OFFERS, q({ providers: ["gcp"] }), NOW);
      expect(gcp.rows.map(keyOf)).toEqual(["gcp/us-central1/g2-half", "gcp/us-central1/a2-highgpu-1g", "gcp/us-central1/a2-ultragpu-1g"]);
      const west = await listPrices(db, OFFERS, q({ regions: ["us-west-2"] }), NOW);
      expect(west.rows.map(keyOf)).toEqual(["aws/us-west-2/g4dn.xlarge"]);
      expect((await listPrices(db, OFFERS, q({ providers: ["azure"] }), NOW)).rows).toEqual([]);
    });

    it("rejects an unknown GPU type or provider with INVALID_ARGUMENT naming the field", async () => {
      const gpu = await rejection(listPrices(db, OFFERS, q({ gpuTypes: ["H100", "Z9000"] }), NOW));
      expect(gpu.code).toBe("INVALID_ARGUMENT");
      expect(gpu.message).toBe("unknown GPU type 'Z9000'");
      expect(gpu.fields).toHaveLength(1);
      expect(gpu.fields[0]?.field).toBe("gpu_types");
      expect(gpu.fields[0]?.message).toContain("'Z9000' is not a catalog GPU type");
      const provider = await rejection(listPrices(db, OFFERS, q({ providers: ["aws", "oracle"] }), NOW));
      expect(provider.code).toBe("INVALID_ARGUMENT");
      expect(provider.message).toBe("unknown provider 'oracle'");
      expect(provider.fields).toEqual([{ field: "providers", message: "expected aws, gcp, azure" }]);
      // On-prem has no prices to list.
      expect((await rejection(listPrices(db, OFFERS, q({ providers: ["onprem"] }), NOW))).fields[0]?.field).toBe("providers");
    });

    it("returns at most `limit` rows (0 = 50) and the number that matched", async () => {
      const two = await listPrices(db, OFFERS, q({ limit: 2 }), NOW);
      expect(two.rows.map(keyOf)).toEqual(["aws/us-east-1/g4dn.xlarge", "aws/us-west-2/g4dn.xlarge"]);
      expect(two.totalRows).toBe(7);
      const many = Array.from({ length: 60 }, (_, i) => offerAws({ instanceType: `t${String(i).padStart(2, "0")}`, od: "1" }));
      const def = await listPrices(db, many, q(), NOW);
      expect(def.rows).toHaveLength(50);
      expect(def.totalRows).toBe(60);
      expect(def.rows[49]?.instanceType).toBe("t49");
    });

    it("reports each provider's source state: empty, shipped, fresh, then stale after a failed refresh", async () => {
      const before = await listPrices(db, OFFERS, q(), NOW);
      expect(before.sources.map((s) => [s.provider, s.state, s.rowCount, s.oldestPriceDate, s.detail])).toEqual([
        ["aws", "shipped", 4, "2026-01-10", "never refreshed: prices as shipped/seeded"],
        ["gcp", "shipped", 3, "2025-12-01", "never refreshed: prices as shipped/seeded"],
        ["azure", "empty", 0, "", "no prices: seed with --pricing-seed-dir or enable --pricing-refresh"],
      ]);

      const refreshedAt = new Date(NOW.getTime() - 60_000);
      await replacePricingOffers(db, { provider: "aws", source: "aws-price-list", offers: AWS, at: refreshedAt });
      const fresh = await listPrices(db, OFFERS, q(), NOW);
      expect(fresh.sources[0]).toEqual({
        provider: "aws",
        state: "fresh",
        detail: "refreshed 60s ago (4 rows, prices of 2026-01-10)",
        lastAttemptAt: refreshedAt,
        lastSuccessAt: refreshedAt,
        lastError: "",
        rowCount: 4,
        oldestPriceDate: "2026-01-10",
      });
      expect(fresh.sources.map((s) => s.state)).toEqual(["fresh", "shipped", "empty"]);

      const failedAt = new Date(NOW.getTime() - 30_000);
      await recordPricingFailure(db, { provider: "aws", source: "aws-price-list", at: failedAt, error: "HTTP 429 throttled" });
      const stale = await listPrices(db, OFFERS, q(), NOW);
      expect(stale.sources[0]).toMatchObject({
        state: "stale",
        detail: "last error 30s ago: HTTP 429 throttled; refreshed 60s ago (4 rows, prices of 2026-01-10)",
        lastAttemptAt: failedAt,
        lastSuccessAt: refreshedAt,
        lastError: "HTTP 429 throttled",
      });
      // A provider whose live refresh was asked for but never succeeded is stale too (its rows are only the shipped ones).
      await recordPricingFailure(db, { provider: "gcp", source: "gcp-billing-api", at: failedAt, error: "no credentials" });
      const gcp = (await listPrices(db, OFFERS, q(), NOW)).sources[1];
      expect(gcp).toMatchObject({ provider: "gcp", state: "stale", detail: "never refreshed: no credentials", lastSuccessAt: undefined, lastError: "no credentials" });
      // A success older than STALE_AFTER_MS is stale by age.
      const later = new Date(refreshedAt.getTime() + STALE_AFTER_MS + 1_000);
      await replacePricingOffers(db, { provider: "aws", source: "aws-price-list", offers: AWS, at: refreshedAt });
      expect((await listPrices(db, OFFERS, q(), new Date(refreshedAt.getTime() + STALE_AFTER_MS))).sources[0]!.state).toBe("fresh");
      expect((await listPrices(db, OFFERS, q(), later)).sources[0]!.state).toBe("stale");
    });
  });

  it("parseGrouping: empty is team; team, project, job; anything else names the field `by`", async () => {
    expect(parseGrouping("")).toBe("team");
    expect(parseGrouping("team")).toBe("team");
    expect(parseGrouping("project")).toBe("project");
    expect(parseGrouping("job")).toBe("job");
    const err = await rejection(() => parseGrouping("node"));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.message).toBe("by must be one of team, project, job, got 'node'");
    expect(err.fields).toEqual([{ field: "by", message: "expected team, project, job" }]);
    expect((await rejection(() => parseGrouping("Team"))).fields[0]?.field).toBe("by");
  });

  it("toSnakeJson: snake_case keys, dates as RFC 3339, undefined dropped, false/0/empty kept, nested arrays converted", () => {
    const out = toSnakeJson({
      feasible: false,
      offersConsidered: 0,
      infeasibleReason: "",
      asOf: new Date("2030-01-02T03:04:05.678Z"),
      expectedCompletion: undefined,
      nothing: null,
      notes: ["a", "b"],
      options: [{ rank: 1, usdPerGpuHour: "1.5", parts: [{ instanceType: "g5.xlarge", priceDate: "2026-01-01", nodeId: undefined }] }],
      matrix: [[{ gpuType: "T4" }]],
    });
    expect(out).toEqual({
      feasible: false,
      offers_considered: 0,
      infeasible_reason: "",
      as_of: "2030-01-02T03:04:05.678Z",
      nothing: null,
      notes: ["a", "b"],
      options: [{ rank: 1, usd_per_gpu_hour: "1.5", parts: [{ instance_type: "g5.xlarge", price_date: "2026-01-01" }] }],
      matrix: [[{ gpu_type: "T4" }]],
    });
    expect(toSnakeJson(new Date("2030-01-01T00:00:00.000Z"))).toBe("2030-01-01T00:00:00.000Z");
    expect(toSnakeJson([1, "x", null])).toEqual([1, "x", null]);
  });

  describe("getCostsResponse", () => {
    const T0 = "2030-01-01T00:00:00.000Z";
    let alpha: { id: string; name: string };
    let beta: { id: string; name: string };
    let a1: string;
    let a2: string;
    let b1: string;
    const asTeam = (t: { id: string; name: string }): Principal => ({ tokenId: randomUUID(), teamId: t.id, teamName: t.name, kind: "user", admin: false });
    const admin: Principal = { tokenId: randomUUID(), teamId: null, teamName: null, kind: "user", admin: true };

    /** A finished task: `$/h` over [T0, T0 + seconds] on `gpus` (explicit spans, so costs are exact). */
    async function span(nodeId: string, jobId: string, gpus: number[], usdPerHour: string, seconds: number): Promise<void> {
      const id = randomUUID();
      await insertTasks(db, [{ id, jobId, attempt: 1, nodeId, nodeRank: 0, numNodes: 1, unit: -1, gpuIndices: gpus, masterAddr: "", masterPort: 0, microsPerHour: parseUsdMicros(usdPerHour) }]);
      await db.execute(
        `UPDATE tasks SET state = 'succeeded', created_at = '${T0}'::timestamptz, ended_at = '${T0}'::timestamptz + interval '${seconds} seconds' WHERE id = '${id}'`,
      );
    }

    beforeAll(async () => {
      const suffix = randomUUID().slice(0, 6);
      alpha = await createTeam(db, { id: randomUUID(), name: `alpha-${suffix}` });
      beta = await createTeam(db, { id: randomUUID(), name: `beta-${suffix}` });
      const nodeId = (
        await upsertNodeRegistration(
          db,
          {
            nodeId: null,
            hostname: "cost-node",
            labels: { provider: "onprem", region: "lab", zone: "", network: "", instanceType: "", spot: false, privateIp: "" },
            cpuCores: 8,
            memoryMib: 32_768,
            agentVersion: "test",
            driverVersion: "",
            cudaVersion: "",
            degradedReason: null,
            gpus: [0, 1, 2, 3].map((index) => ({ index, uuid: `GPU-c-${index}`, name: "Tesla T4", memoryTotalMib: 15_360, migEnabled: false, migDevices: [] })),
          },
          { newId: randomUUID(), now: NOW },
        )
      ).nodeId;
      a1 = (await insertJob(db, newJobInput(alpha.id, { name: "a-one", project: "llm", gpus: 1, budgetUsd: "5", estimatedCostUsd: "1.5" }))).job.id;
      a2 = (await insertJob(db, newJobInput(alpha.id, { name: "a-two", gpus: 2 }))).job.id;
      b1 = (await insertJob(db, newJobInput(beta.id, { name: "b-one", project: "vision", gpus: 1 }))).job.id;
      await span(nodeId, a1, [0], "4", 1800); // $2.00, 0.5 GPU-h
      await span(nodeId, a2, [1, 2], "3", 3600); // $3.00, 2 GPU-h
      await span(nodeId, b1, [3], "6", 3600); // $6.00, 1 GPU-h
    });

    it("a team principal sees only its own team", async () => {
      const r = await getCostsResponse(db, asTeam(alpha), "", null, NOW);
      expect(r).toEqual({
        lines: [{ key: alpha.name, team: alpha.name, project: "", jobId: "", jobName: "", costUsd: "5.000000", estimatedUsd: "1.500000", gpuHours: 2.5, jobs: 2, budgetUsd: "", status: "" }],
        totalUsd: "5.000000",
        totalGpuHours: 2.5,
        asOf: NOW,
      });
      const b = await getCostsResponse(db, asTeam(beta), "team", null, NOW);
      expect(b.lines.map((l) => [l.key, l.costUsd, l.estimatedUsd])).toEqual([[beta.name, "6.000000", ""]]);
      expect(b.totalUsd).toBe("6.000000");
    });

    it("an admin sees every team, most expensive first", async () => {
      const r = await getCostsResponse(db, admin, "team", null, NOW);
      expect(r.lines.map((l) => [l.key, l.costUsd, l.gpuHours, l.jobs])).toEqual([
        [beta.name, "6.000000", 1, 1],
        [alpha.name, "5.000000", 2.5, 2],
      ]);
      expect(r.totalUsd).toBe("11.000000");
      expect(r.totalGpuHours).toBe(3.5);
    });

    it("groups by project and by job (the job's budget and status)", async () => {
      const byProject = await getCostsResponse(db, asTeam(alpha), "project", null, NOW);
      expect(byProject.lines.map((l) => [l.key, l.project, l.costUsd])).toEqual([
        [`${alpha.name}/-`, "", "3.000000"],
        [`${alpha.name}/llm`, "llm", "2.000000"],
      ]);
      const byJob = await getCostsResponse(db, asTeam(alpha), "job", null, NOW);
      expect(byJob.lines).toEqual([
        { key: a2, team: alpha.name, project: "", jobId: a2, jobName: "a-two", costUsd: "3.000000", estimatedUsd: "", gpuHours: 2, jobs: 1, budgetUsd: "", status: "pending" },
        { key: a1, team: alpha.name, project: "llm", jobId: a1, jobName: "a-one", costUsd: "2.000000", estimatedUsd: "1.500000", gpuHours: 0.5, jobs: 1, budgetUsd: "5.000000", status: "pending" },
      ]);
      const adminJobs = await getCostsResponse(db, admin, "job", null, NOW);
      expect(adminJobs.lines.map((l) => l.jobId)).toEqual([b1, a2, a1]);
    });

    it("since clips the spans: money spent since then", async () => {
      const r = await getCostsResponse(db, asTeam(alpha), "job", new Date("2030-01-01T00:15:00.000Z"), NOW);
      // a2: 45 min × $3/h on 2 GPUs; a1: 15 min × $4/h on 1 GPU.
      expect(r.lines.map((l) => [l.jobId, l.costUsd, l.gpuHours])).toEqual([
        [a2, "2.250000", 1.5],
        [a1, "1.000000", 0.25],
      ]);
      expect(r.totalUsd).toBe("3.250000");
      expect(r.totalGpuHours).toBe(1.75);
    });

    it("rejects an unknown grouping", async () => {
      expect((await rejection(getCostsResponse(db, admin, "gpu", null, NOW))).fields[0]?.field).toBe("by");
    });
  });
});
