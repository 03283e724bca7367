import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { canonicalGpuType } from "@gpuorch/spec";
import { describe, expect, it } from "vitest";
import { AWS_FAMILIES, awsFamily } from "./aws-instance-types.js";
import { AZURE_GPU_SIZES } from "./azure.js";
import { OFFER_COLUMNS, SHIPPED_DATA_DIR, loadCatalogDir, loadShippedCatalog, parseEgressCsv, parseGcpN1InstanceName, parseOffersCsv } from "./catalog-files.js";
import { GCP_MACHINE_TYPES } from "./gcp.js";
import { KNOWN_GPU_TYPES } from "./offers.js";

/** The full public snapshot, when this machine has it (CI may not): tests that need it skip without it. */
const SEED_DIR = process.env["GPUORCH_PRICING_SEED_DIR"] ?? join(import.meta.dirname, "../../../../shared/data/pricing");
const haveSeed = existsSync(join(SEED_DIR, "aws.csv"));

const HEADER = OFFER_COLUMNS.join(",");
const row = (over: Partial<Record<(typeof OFFER_COLUMNS)[number], string>> = {}): string =>
  OFFER_COLUMNS.map(
    (c) =>
      over[c] ??
      {
        provider: "aws",
        region: "us-east-1",
        zone: "",
        instance_type: "g4dn.xlarge",
        gpu_type: "T4",
        gpu_count: "1",
        gpu_memory_gb: "16",
        vcpus: "4",
        memory_gb: "16",
        on_demand_usd_per_hour: "0.526",
        spot_usd_per_hour: "0.1766",
      }[c],
  ).join(",");
const parseAws = (text: string) => parseOffersCsv(text, { file: "aws.csv", provider: "aws", source: "seed:aws.csv", allowCompositeNames: true });

describe("the shipped catalog", () => {
  it("holds only the permissively licensed GCP families (A2, A3 High, A3 Mega, G2, G4) and the egress tiers", async () => {
    const c = await loadShippedCatalog();
    expect(c.files).toEqual([
      { file: "gcp.csv", rows: 384 },
      { file: "egress.csv", rows: 146 },
    ]);
    expect(new Set(c.offers.map((o) => o.provider))).toEqual(new Set(["gcp"]));
    expect(c.offers.filter((o) => o.instanceType.includes("+") || o.instanceType.startsWith("a3-ultragpu"))).toEqual([]);
    expect(new Set(c.offers.map((o) => `${o.source} ${o.priceDate}`))).toEqual(new Set(["shipped:gcp.csv 2026-07-30"]));
  });

  it("carries the README's sanity row, spot stats where there is spot, and the interconnect list", async () => {
    const c = await loadShippedCatalog();
    const find = (region: string, type: string) => c.offers.find((o) => o.region === region && o.instanceType === type);
    expect(find("us-central1", "a2-highgpu-8g")).toMatchObject({ gpuType: "A100", gpuCount: 8, onDemandMicrosPerHour: 29_387_080n, spotMicrosPerHour: 15_424_160n, interconnect: null });
    expect(find("us-central1", "a3-highgpu-8g")).toMatchObject({ onDemandMicrosPerHour: 88_490_000n, interconnect: "gpudirect-tcpx", spotAvailability: 0.5 });
    expect(find("us-central1", "g4-standard-6")).toMatchObject({ gpuType: "RTXPRO6000", gpuCount: 0.125 });
    for (const o of c.offers) {
      expect(o.spotInterruptionsPerHour === null).toBe(o.spotMicrosPerHour === null);
      expect(o.spotAvailability === null).toBe(o.spotMicrosPerHour === null);
    }
    expect(new Set(c.offers.filter((o) => o.instanceType === "a3-megagpu-8g").map((o) => o.interconnect))).toEqual(new Set(["gpudirect-tcpxo"]));
    expect(c.egress.find((t) => t.provider === "gcp" && t.sourceRegion === "us-central1" && t.fromGb === 0)).toEqual({
      provider: "gcp",
      scope: "internet",
      sourceRegion: "us-central1",
      fromGb: 0,
      toGb: 1024,
      microsPerGb: 120_000n,
    });
    expect(c.egress.filter((t) => t.scope === "inter_region").map((t) => [t.provider, t.sourceRegion, t.microsPerGb])).toEqual([
      ["aws", "", 10_000n],
      ["gcp", "", 10_000n],
      ["azure", "", 10_000n],
    ]);
  });

  it.skipIf(!haveSeed)("is a verbatim subset of the shared snapshot (same rows, nothing added)", async () => {
    const shipped = (await readFile(join(SHIPPED_DATA_DIR, "gcp.csv"), "utf8")).trim().split("\n");
    const full = new Set((await readFile(join(SEED_DIR, "gcp.csv"), "utf8")).trim().split("\n"));
    expect(shipped.filter((l) => !full.has(l))).toEqual([]);
    expect(await readFile(join(SHIPPED_DATA_DIR, "egress.csv"), "utf8")).toBe(await readFile(join(SEED_DIR, "egress.csv"), "utf8"));
  });

  it("refuses to ship an N1 or A3 Ultra row (their source has no licence)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "gpuorch-shipped-"));
    try {
      await writeFile(join(dir, "egress.csv"), await readFile(join(SHIPPED_DATA_DIR, "egress.csv")));
      await writeFile(join(dir, "gcp.csv"), `${HEADER}\ngcp,us-central1,,a3-ultragpu-8g,H200,8,141,224,2952,84.8,40.1\n`);
      await expect(loadShippedCatalog(dir)).rejects.toThrow(/gcp.csv:2: column instance_type: is not one of the families/);
      await writeFile(join(dir, "gcp.csv"), `${HEADER}\ngcp,us-central1,,n1-highmem-8+nvidia-tesla-t4x1,T4,1,16,8,52,0.82321,0.33816\n`);
      await expect(loadShippedCatalog(dir)).rejects.toThrow(/gcp.csv:2: column instance_type/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!haveSeed)("a seed directory (the full shared snapshot)", () => {
  it("loads every row of aws.csv, gcp.csv, azure.csv and egress.csv with each file's price date", async () => {
    const c = await loadCatalogDir(SEED_DIR);
    expect(c.files).toEqual([
      { file: "aws.csv", rows: 1127 },
      { file: "gcp.csv", rows: 518 },
      { file: "azure.csv", rows: 829 },
      { file: "egress.csv", rows: 146 },
    ]);
    const dates = new Map<string, Set<string>>();
    for (const o of c.offers) {
      const k = o.provider === "gcp" && (o.instanceType.includes("+") || o.instanceType.startsWith("a3-ultragpu")) ? "gcp-may" : o.provider;
      dates.set(k, (dates.get(k) ?? new Set()).add(o.priceDate));
    }
    expect(Object.fromEntries([...dates].map(([k, v]) => [k, [...v]]))).toEqual({ aws: ["2025-11-30"], gcp: ["2026-07-30"], "gcp-may": ["2026-05-20"], azure: ["2026-05-20"] });
    expect(new Set(c.offers.map((o) => o.source))).toEqual(new Set(["seed:aws.csv", "seed:gcp.csv", "seed:azure.csv"]));
  });

  it("matches the README's sanity rows, local-zone rows and interconnects", async () => {
    const c = await loadCatalogDir(SEED_DIR);
    const find = (p: string, region: string, type: string, zone = "") => c.offers.find((o) => o.provider === p && o.region === region && o.zone === zone && o.instanceType === type);
    expect(find("aws", "us-east-1", "p4d.24xlarge")).toMatchObject({ onDemandMicrosPerHour: 21_957_642n, spotMicrosPerHour: 8_590_750n, interconnect: "efa" });
    expect(find("aws", "us-east-1", "p5.48xlarge")).toMatchObject({ onDemandMicrosPerHour: 55_040_000n, spotMicrosPerHour: 28_106_467n, interconnect: "efa" });
    expect(find("aws", "us-east-1", "g4dn.xlarge")).toMatchObject({ onDemandMicrosPerHour: 526_000n, spotMicrosPerHour: 176_600n, interconnect: null });
    expect(find("gcp", "us-central1", "n1-highmem-8+nvidia-tesla-t4x1")).toMatchObject({ gpuType: "T4", onDemandMicrosPerHour: 823_210n, spotMicrosPerHour: 338_160n });
    expect(find("azure", "eastus", "Standard_ND96asr_v4")).toMatchObject({ onDemandMicrosPerHour: 27_197_000n, spotMicrosPerHour: 5_983_340n, interconnect: "infiniband" });
    expect(find("azure", "eastus", "Standard_ND96isr_H100_v5")).toMatchObject({ onDemandMicrosPerHour: 98_320_000n, spotMicrosPerHour: 18_169_536n });
    expect(c.offers.filter((o) => o.provider === "aws" && o.zone !== "").length).toBe(88);
    expect(find("gcp", "us-central1", "a3-ultragpu-8g")?.interconnect).toBe("gpudirect-rdma");
    expect(parseGcpN1InstanceName("n1-highmem-16+nvidia-tesla-v100x2")).toEqual({ machineType: "n1-highmem-16", acceleratorType: "nvidia-tesla-v100", acceleratorCount: 2 });
  });

  it("agrees with the fetchers' hardware tables (AWS families, Azure sizes, GCP machine types)", async () => {
    const c = await loadCatalogDir(SEED_DIR);
    const mismatches: string[] = [];
    for (const o of c.offers) {
      if (o.provider === "aws") {
        const f = AWS_FAMILIES[awsFamily(o.instanceType)];
        // p2: the snapshot counts a K80 board's memory differently per size (12 vs 24 GB); the table uses AWS's per-GPU 12.
        if (!f || f.gpuType !== o.gpuType || (f.gpuMemoryGb !== o.gpuMemoryGb && awsFamily(o.instanceType) !== "p2")) mismatches.push(`aws ${o.instanceType}`);
      } else if (o.provider === "azure") {
        const s = AZURE_GPU_SIZES[o.instanceType];
        // ND96amsr A100 v4: Microsoft's size page says 1900 GiB, the snapshot 1800.
        const memOk = s?.memoryGb === o.memoryGb || o.instanceType === "Standard_ND96amsr_A100_v4";
        if (!s || s.gpuType !== o.gpuType || s.gpuCount !== o.gpuCount || s.gpuMemoryGb !== o.gpuMemoryGb || s.vcpus !== o.vcpus || !memOk) mismatches.push(`azure ${o.instanceType}`);
      } else {
        const t = GCP_MACHINE_TYPES[o.instanceType];
        if (t && (t.gpuType !== o.gpuType || t.gpuCount !== o.gpuCount || t.vcpus !== o.vcpus || t.memoryGb !== o.memoryGb || t.gpuMemoryGb !== o.gpuMemoryGb)) mismatches.push(`gcp ${o.instanceType}`);
      }
    }
    expect([...new Set(mismatches)]).toEqual([]);
    expect(new Set(c.offers.filter((o) => o.provider === "azure").map((o) => o.instanceType))).toEqual(new Set(Object.keys(AZURE_GPU_SIZES)));
  });
});

describe("row validation", () => {
  const expectError = (text: string, message: RegExp) => expect(() => parseAws(text)).toThrow(message);

  it("accepts a good row and an optional price_date column", () => {
    expect(parseAws(`${HEADER}\n${row()}\n`)).toHaveLength(1);
    const dated = parseAws(`${HEADER},price_date\r\n${row()},2031-02-03\r\n`);
    expect(dated[0]?.priceDate).toBe("2031-02-03");
    expect(parseOffersCsv(`${HEADER}\n${row()}\n`, { file: "aws.csv", provider: "aws", source: "x", allowCompositeNames: false, priceDate: "2030-05-06" })[0]?.priceDate).toBe("2030-05-06");
  });

  it("names file, line and column for every kind of bad value", () => {
    expectError(`provider,region\n`, /aws.csv:1: header must be provider,region,zone/);
    expectError(`${HEADER}\n${row()}\n${row({ on_demand_usd_per_hour: "abc" })}\n`, /aws.csv:3: column on_demand_usd_per_hour: must be a decimal USD amount \(got "abc"\)/);
    expectError(`${HEADER}\n${row({ gpu_type: "A100X" })}\n`, /aws.csv:2: column gpu_type: must be one of/);
    expectError(`${HEADER}\n${row({ gpu_count: "0" })}\n`, /column gpu_count: must be a decimal number > 0/);
    expectError(`${HEADER}\n${row({ vcpus: "4.5" })}\n`, /column vcpus: must be a whole number/);
    expectError(`${HEADER}\n${row({ spot_usd_per_hour: "0.6" })}\n`, /column spot_usd_per_hour: must not exceed on_demand_usd_per_hour/);
    expectError(`${HEADER}\n${row({ provider: "gcp" })}\n`, /column provider: must be aws in aws.csv/);
    expectError(`${HEADER}\n${row({ region: "US East" })}\n`, /column region: must be a region code/);
    expectError(`${HEADER}\n${row()}\n${row()}\n`, /aws.csv:3: duplicate offer aws\/us-east-1\/\/g4dn.xlarge \(first on line 2\)/);
    expectError(`${HEADER}\n${row()},extra\n`, /aws.csv:2: expected 11 fields, got 12/);
    expectError(`${HEADER}\n"unterminated,${row()}\n`, /aws.csv:2: unterminated quoted field/);
    expectError(`${HEADER}\n${row({ instance_type: "n1-highmem-8+nvidia-tesla-t4x1" })}\n`, /only allowed for GCP N1 rows/);
    expectError(`${HEADER},price_date\n${row()},2031-02-30\n`, /column price_date: must be a date/);
  });

  it("checks GCP N1 composite names against gpu_count", () => {
    const gcp = (type: string, count: string) =>
      parseOffersCsv(`${HEADER}\n${row({ provider: "gcp", region: "us-central1", instance_type: type, gpu_count: count })}\n`, { file: "gcp.csv", provider: "gcp", source: "seed:gcp.csv", allowCompositeNames: true });
    expect(gcp("n1-highmem-16+nvidia-tesla-t4x2", "2")[0]).toMatchObject({ instanceType: "n1-highmem-16+nvidia-tesla-t4x2", priceDate: "2026-05-20" });
    expect(() => gcp("n1-highmem-16+nvidia-tesla-t4x2", "1")).toThrow(/names 2 accelerators but gpu_count is 1/);
    expect(() => gcp("e2-standard-4+nvidia-tesla-t4x1", "1")).toThrow(/must be an n1- machine type/);
  });

  it("requires each egress ladder to run from 0 to unbounded without gaps", () => {
    const h = "provider,scope,source_region,tier_from_gb,tier_to_gb,usd_per_gb,source,note";
    const parse = (rows: string) => parseEgressCsv(`${h}\n${rows}`, { file: "egress.csv" });
    expect(parse(`aws,internet,us-east-2,0,10240,0.09,src,"a, note"\naws,internet,us-east-2,10240,,0.085,src,\n`)).toHaveLength(2);
    expect(() => parse(`aws,internet,us-east-2,0,10240,0.09,src,\naws,internet,us-east-2,20000,,0.085,src,\n`)).toThrow(/egress.csv:3: column tier_from_gb: tiers of aws\/internet\/us-east-2 must be contiguous from 0: expected 10240/);
    expect(() => parse(`aws,internet,us-east-2,0,10240,0.09,src,\n`)).toThrow(/the last tier of aws\/internet\/us-east-2 must be unbounded/);
    expect(() => parse(`aws,cross_cloud,*,0,,0.01,src,\n`)).toThrow(/egress.csv:2: column scope/);
    expect(() => parse(`aws,internet,*,0,,0.01,,\n`)).toThrow(/column source: must name where/);
  });

  it("reads a seed directory with only some files, and refuses one with none", async () => {
    const dir = await mkdtemp(join(tmpdir(), "gpuorch-seed-"));
    try {
      await expect(loadCatalogDir(dir)).rejects.toThrow(/no aws.csv, gcp.csv, azure.csv or egress.csv/);
      await writeFile(join(dir, "aws.csv"), `${HEADER}\n${row()}\n`);
      const c = await loadCatalogDir(dir, { priceDate: "2031-01-01" });
      expect(c.files).toEqual([{ file: "aws.csv", rows: 1 }]);
      expect(c.offers[0]).toMatchObject({ source: "seed:aws.csv", priceDate: "2031-01-01", spotAvailability: 0.8 });
      expect(c.egress).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe("vocabulary", () => {
  // spec does not export its list; what matters is that a spec can name every type the catalog carries.
  it("accepts only accelerator names a job spec can ask for, in their canonical spelling", () => {
    expect(KNOWN_GPU_TYPES.filter((t) => canonicalGpuType(t) !== t)).toEqual([]);
    expect(KNOWN_GPU_TYPES).toHaveLength(27);
  });
});

