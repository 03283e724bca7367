import type { CatalogOffer } from "@gpuorch/core";
import type { TestDatabase } from "@gpuorch/testing";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Database, Db } from "./open.js";
import {
  createPricingStore,
  listPricingStatus,
  loadCatalogOffers,
  recordPricingFailure,
  replacePricingOffers,
  seedCatalogIfEmpty,
  summarizePricingSources,
} from "./pricing.js";
import { contractDrivers } from "./contract-drivers.test-util.js";

const drivers = contractDrivers();

function offer(over: Partial<CatalogOffer> = {}): CatalogOffer {
  return {
    provider: "gcp",
    region: "us-central1",
    zone: "",
    instanceType: "a3-highgpu-8g",
    gpuType: "H100",
    gpuCount: 8,
    gpuMemoryGb: 80,
    vcpus: 208,
    memoryGb: 1872,
    onDemandMicrosPerHour: 88_490_000n,
    spotMicrosPerHour: 50_609_541n,
    spotInterruptionsPerHour: 0.000263,
    spotAvailability: 0.5,
    interconnect: "gpudirect-tcpx",
    priceDate: "2026-07-30",
    source: "shipped:gcp.csv",
    ...over,
  };
}

describe.each(drivers)("pricing store contract on $name", (driver) => {
  let database: Database;
  let testDb: TestDatabase | undefined;
  let db: Db;
  const t0 = new Date("2030-01-01T00:00:00.000Z");
  const at = (s: number) => new Date(t0.getTime() + s * 1000);

  beforeAll(async () => {
    ({ database, testDb } = await driver.open());
    db = database.db;
  });

  beforeEach(async () => {
    await db.execute(sql`DELETE FROM gpu_pricing`);
    await db.execute(sql`DELETE FROM pricing_source_status`);
  });

  afterAll(async () => {
    await database.close();
    await testDb?.assertNoLeftoverConnections();
  });

  it("round-trips every CatalogOffer field exactly: micro-dollars, fractions, spot stats, interconnect, zone", async () => {
    const rows = [
      offer(),
      offer({ instanceType: "g4-standard-6", gpuType: "RTXPRO6000", gpuCount: 0.125, gpuMemoryGb: 96, vcpus: 6, memoryGb: 22.5, onDemandMicrosPerHour: 559_556n, spotMicrosPerHour: null, spotInterruptionsPerHour: null, spotAvailability: null, interconnect: null }),
      offer({ provider: "aws", region: "us-west-2", zone: "us-west-2-lax-1", instanceType: "g4dn.xlarge", gpuType: "T4", gpuCount: 1, gpuMemoryGb: 16, vcpus: 4, memoryGb: 16, onDemandMicrosPerHour: 1n, spotMicrosPerHour: 1n, interconnect: null, source: "seed:aws.csv", priceDate: "2025-11-30" }),
    ];
    await seedCatalogIfEmpty(db, { offers: rows }, { at: t0 });
    const loaded = await loadCatalogOffers(db);
    const sortKey = (o: CatalogOffer) => `${o.provider}/${o.region}/${o.zone}/${o.instanceType}`;
    expect(loaded).toEqual([...rows].sort((a, b) => sortKey(a).localeCompare(sortKey(b))));
  });

  it("seeds each source only once: a restart never re-inserts or overwrites a source that is present", async () => {
    const first = await seedCatalogIfEmpty(db, { offers: [offer()] }, { at: t0 });
    expect(first).toEqual({ inserted: 1, sources: ["shipped:gcp.csv"] });
    const again = await seedCatalogIfEmpty(db, { offers: [offer({ onDemandMicrosPerHour: 1n }), offer({ source: "seed:gcp.csv", region: "europe-west4" })] }, { at: at(1) });
    expect(again).toEqual({ inserted: 1, sources: ["seed:gcp.csv"] });
    expect((await loadCatalogOffers(db, { region: "us-central1" }))[0]?.onDemandMicrosPerHour).toBe(88_490_000n);
  });

  it("replaces one provider's rows of one source atomically, leaving other sources and providers alone", async () => {
    await seedCatalogIfEmpty(db, { offers: [offer(), offer({ provider: "aws", region: "us-east-1", instanceType: "p5.48xlarge", interconnect: "efa", source: "seed:aws.csv" })] }, { at: t0 });
    const live = [
      offer({ source: "gcp-cloud-billing", priceDate: "2030-01-01", onDemandMicrosPerHour: 90_000_000n }),
      offer({ source: "gcp-cloud-billing", priceDate: "2030-01-01", region: "us-east4", onDemandMicrosPerHour: 91_000_000n }),
    ];
    const res = await replacePricingOffers(db, { provider: "gcp", source: "gcp-cloud-billing", offers: live, at: at(10) });
    expect(res).toEqual({ rowCount: 2, oldestPriceDate: "2030-01-01", newestPriceDate: "2030-01-01" });
    // Second refresh with fewer rows: the dropped offer disappears from that source, the shipped row stays.
    await replacePricingOffers(db, { provider: "gcp", source: "gcp-cloud-billing", offers: live.slice(0, 1), at: at(20) });
    expect(await summarizePricingSources(db)).toEqual([
      { provider: "aws", source: "seed:aws.csv", rows: 1, oldestPriceDate: "2026-07-30", newestPriceDate: "2026-07-30" },
      { provider: "gcp", source: "gcp-cloud-billing", rows: 1, oldestPriceDate: "2030-01-01", newestPriceDate: "2030-01-01" },
      { provider: "gcp", source: "shipped:gcp.csv", rows: 1, oldestPriceDate: "2026-07-30", newestPriceDate: "2026-07-30" },
    ]);
  });

  it("reads one row per offer: newest price date first, then live over seed over shipped", async () => {
    await seedCatalogIfEmpty(
      db,
      {
        offers: [
          offer({ onDemandMicrosPerHour: 1_000_000n }),
          offer({ source: "seed:gcp.csv", onDemandMicrosPerHour: 2_000_000n }),
          offer({ region: "us-east4", onDemandMicrosPerHour: 5_000_000n }),
          offer({ region: "us-east4", source: "seed:gcp.csv", onDemandMicrosPerHour: 6_000_000n, priceDate: "2026-05-20" }),
        ],
      },
      { at: t0 },
    );
    let byRegion = new Map((await loadCatalogOffers(db)).map((o) => [o.region, o]));
    expect(byRegion.get("us-central1")?.source).toBe("seed:gcp.csv"); // same date: seed beats shipped
    expect(byRegion.get("us-east4")?.source).toBe("shipped:gcp.csv"); // newer date wins
    await replacePricingOffers(db, { provider: "gcp", source: "gcp-cloud-billing", offers: [offer({ source: "gcp-cloud-billing", onDemandMicrosPerHour: 3_000_000n })], at: t0 });
    byRegion = new Map((await loadCatalogOffers(db)).map((o) => [o.region, o]));
    expect(byRegion.get("us-central1")).toMatchObject({ source: "gcp-cloud-billing", onDemandMicrosPerHour: 3_000_000n });
    expect(await loadCatalogOffers(db, { provider: "aws" })).toEqual([]);
    expect((await loadCatalogOffers(db, { gpuType: "H100", provider: "gcp", instanceType: "a3-highgpu-8g" })).length).toBe(2);
  });

  it("records failures without touching the rows or the last success; a success clears the error", async () => {
    expect(await listPricingStatus(db)).toEqual([]);
    await recordPricingFailure(db, { provider: "aws", source: "aws-price-list", at: t0, error: "no credentials: Could not load credentials" });
    expect(await listPricingStatus(db)).toEqual([
      { provider: "aws", source: "aws-price-list", lastAttemptAt: t0, lastSuccessAt: null, lastError: "no credentials: Could not load credentials", consecutiveFailures: 1, rowCount: 0, oldestPriceDate: null, newestPriceDate: null },
    ]);
    const live = [offer({ provider: "aws", region: "us-east-1", instanceType: "p5.48xlarge", interconnect: "efa", source: "aws-price-list", priceDate: "2030-01-01" })];
    await replacePricingOffers(db, { provider: "aws", source: "aws-price-list", offers: live, at: at(60) });
    await recordPricingFailure(db, { provider: "aws", source: "aws-price-list", at: at(120), error: "HTTP 500" });
    await recordPricingFailure(db, { provider: "aws", source: "aws-price-list", at: at(180), error: "HTTP 503" });
    const [s] = await listPricingStatus(db);
    expect(s).toEqual({ provider: "aws", source: "aws-price-list", lastAttemptAt: at(180), lastSuccessAt: at(60), lastError: "HTTP 503", consecutiveFailures: 2, rowCount: 1, oldestPriceDate: "2030-01-01", newestPriceDate: "2030-01-01" });
    expect(await loadCatalogOffers(db, { provider: "aws" })).toHaveLength(1);
    await replacePricingOffers(db, { provider: "aws", source: "aws-price-list", offers: live, at: at(240) });
    expect((await listPricingStatus(db))[0]).toMatchObject({ lastError: null, consecutiveFailures: 0, lastSuccessAt: at(240) });
  });

  it("rolls a replace back whole when a row violates a constraint, keeping the previous rows and status", async () => {
    const good = [offer({ source: "gcp-cloud-billing" })];
    await replacePricingOffers(db, { provider: "gcp", source: "gcp-cloud-billing", offers: good, at: t0 });
    const bad = [offer({ source: "gcp-cloud-billing", region: "us-east4" }), offer({ source: "gcp-cloud-billing", spotMicrosPerHour: null })]; // spot stats without a spot price
    await expect(replacePricingOffers(db, { provider: "gcp", source: "gcp-cloud-billing", offers: bad, at: at(1) })).rejects.toMatchObject({
      code: "INVALID_ARGUMENT",
      meta: { constraint: "gpu_pricing_spot_stats_need_spot" },
    });
    expect(await loadCatalogOffers(db)).toEqual(good);
    expect((await listPricingStatus(db))[0]?.lastSuccessAt).toEqual(t0);
  });

  it("refuses offers of another provider or source than the replace names", async () => {
    await expect(replacePricingOffers(db, { provider: "aws", source: "aws-price-list", offers: [offer()], at: t0 })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("createPricingStore exposes the refresher's store over these functions", async () => {
    const store = createPricingStore(db);
    await store.recordFailure({ provider: "azure", source: "azure-retail-prices", at: t0, error: "HTTP 503" });
    await store.replaceOffers({ provider: "azure", source: "azure-retail-prices", offers: [offer({ provider: "azure", region: "eastus", instanceType: "Standard_ND96isr_H100_v5", interconnect: "infiniband", source: "azure-retail-prices" })], at: at(5) });
    expect(await store.listStatus()).toMatchObject([{ provider: "azure", lastSuccessAt: at(5), rowCount: 1, lastError: null }]);
  });
});
