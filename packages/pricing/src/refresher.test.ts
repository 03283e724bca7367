import type { CatalogOffer, CloudProvider } from "@gpuorch/core";
import { createPricingStore, loadCatalogOffers, openDatabase, seedCatalogIfEmpty } from "@gpuorch/db";
import { createMemoryLogger } from "@gpuorch/runtime";
import { describe, expect, it } from "vitest";
import { loadShippedCatalog } from "./catalog-files.js";
import { PricingFetchError } from "./errors.js";
import type { FetchResult, PriceFetcher } from "./fetcher.js";
import { completeOffer } from "./offers.js";
import {
  DEFAULT_PRICING_TTL_MS,
  type PricingSourceStatus,
  type PricingStore,
  createPricingRefresher,
  describePricingStatus,
  pricingStalenessSeconds,
} from "./refresher.js";

const T0 = Date.parse("2030-01-01T00:00:00.000Z");
const MIN = 60_000;

/** Fake time: the refresher's sleeps wait here until the test advances the clock past them. */
function fakeTime() {
  let now = T0;
  const pending: { until: number; resolve: () => void }[] = [];
  const sleeps: number[] = [];
  return {
    clock: { now: () => new Date(now) },
    sleeps,
    sleep(ms: number, signal: AbortSignal): Promise<void> {
      sleeps.push(ms);
      return new Promise<void>((resolve, reject) => {
        if (signal.aborted) return reject(new DOMException("aborted", "AbortError"));
        const entry = { until: now + ms, resolve };
        pending.push(entry);
        signal.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")), { once: true });
      });
    },
    /** Moves the clock by `ms` and wakes every sleep that is due. */
    async advance(ms: number): Promise<void> {
      now += ms;
      for (const p of pending.splice(0)) {
        if (p.until <= now) p.resolve();
        else pending.push(p);
      }
      await settle();
    },
    get now() {
      return now;
    },
  };
}

/** Lets promise chains run to their next real wait (no timers involved). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((r) => setImmediate(r));
}

function memoryStore(): PricingStore & { rows: Map<string, CatalogOffer[]>; status: Map<CloudProvider, PricingSourceStatus> } {
  const rows = new Map<string, CatalogOffer[]>();
  const status = new Map<CloudProvider, PricingSourceStatus>();
  const blank = (provider: CloudProvider, source: string): PricingSourceStatus => ({
    provider,
    source,
    lastAttemptAt: null,
    lastSuccessAt: null,
    lastError: null,
    consecutiveFailures: 0,
    rowCount: 0,
    oldestPriceDate: null,
    newestPriceDate: null,
  });
  return {
    rows,
    status,
    async replaceOffers({ provider, source, offers, at }) {
      rows.set(`${provider}/${source}`, [...offers]);
      const dates = offers.map((o) => o.priceDate).sort();
      status.set(provider, { ...blank(provider, source), lastAttemptAt: at, lastSuccessAt: at, rowCount: offers.length, oldestPriceDate: dates[0] ?? null, newestPriceDate: dates.at(-1) ?? null });
      return { rowCount: offers.length };
    },
    async recordFailure({ provider, source, at, error }) {
      const s = status.get(provider) ?? blank(provider, source);
      status.set(provider, { ...s, source, lastAttemptAt: at, lastError: error, consecutiveFailures: s.consecutiveFailures + 1 });
    },
    async listStatus() {
      return [...status.values()];
    },
  };
}

function offer(provider: CloudProvider, price: bigint, source: string): CatalogOffer {
  return completeOffer({
    provider,
    region: "r1",
    zone: "",
    instanceType: `${provider}-8gpu`,
    gpuType: "H100",
    gpuCount: 8,
    gpuMemoryGb: 80,
    vcpus: 96,
    memoryGb: 1024,
    onDemandMicrosPerHour: price,
    spotMicrosPerHour: null,
    priceDate: "2030-01-01",
    source,
  });
}

/** A fetcher that plays a script of outcomes, one per call (the last repeats). */
function scripted(provider: CloudProvider, script: (() => FetchResult | Promise<FetchResult>)[]): PriceFetcher & { calls: number } {
  const f = {
    provider,
    source: `${provider}-live`,
    calls: 0,
    async fetch(): Promise<FetchResult> {
      const step = script[Math.min(f.calls, script.length - 1)]!;
      f.calls++;
      return step();
    },
  };
  return f;
}
const ok = (provider: CloudProvider, price: bigint) => (): FetchResult => ({ offers: [offer(provider, price, `${provider}-live`)], warnings: [] });
const fail = (provider: CloudProvider, kind: "http" | "credentials", msg: string) => (): never => {
  throw new PricingFetchError(provider, kind, msg);
};

describe("pricing refresher", () => {
  it("refreshes every provider at start, then every ttl ± jitter", async () => {
    const time = fakeTime();
    const store = memoryStore();
    const aws = scripted("aws", [ok("aws", 1n), ok("aws", 2n)]);
    const gcp = scripted("gcp", [ok("gcp", 5n)]);
    const refreshed: string[] = [];
    const r = createPricingRefresher({
      fetchers: [aws, gcp],
      store,
      clock: time.clock,
      logger: createMemoryLogger(),
      random: () => 0.5, // no jitter: exactly the ttl
      sleep: time.sleep,
      onRefreshed: (p) => refreshed.push(p),
    });
    expect(r.state).toBe("idle");
    r.start();
    expect(r.state).toBe("running");
    await settle();
    expect([aws.calls, gcp.calls]).toEqual([1, 1]);
    expect(refreshed).toEqual(["aws", "gcp"]);
    expect(store.rows.get("aws/aws-live")?.[0]?.onDemandMicrosPerHour).toBe(1n);
    expect(time.sleeps).toEqual([DEFAULT_PRICING_TTL_MS]);
    await time.advance(DEFAULT_PRICING_TTL_MS - 1);
    expect(aws.calls).toBe(1);
    await time.advance(1);
    expect([aws.calls, gcp.calls]).toEqual([2, 2]);
    expect(store.rows.get("aws/aws-live")?.[0]?.onDemandMicrosPerHour).toBe(2n);
    await r.stop();
    expect(r.state).toBe("stopped");
  });

  it("spreads refreshes by the jitter: ttl × (1 ± jitter)", async () => {
    for (const [random, expected] of [
      [0, 0.8 * 10 * MIN],
      [0.999999, 1.2 * 10 * MIN],
    ] as const) {
      const time = fakeTime();
      const r = createPricingRefresher({ fetchers: [scripted("aws", [ok("aws", 1n)])], store: memoryStore(), clock: time.clock, logger: createMemoryLogger(), random: () => random, sleep: time.sleep, ttlMs: 10 * MIN, jitter: 0.2 });
      r.start();
      await settle();
      expect(time.sleeps[0]).toBeCloseTo(expected, -1);
      await r.stop();
    }
  });

  it("keeps the last good prices when a fetch fails, records the error, retries with backoff, and clears it on success", async () => {
    const time = fakeTime();
    const store = memoryStore();
    const logger = createMemoryLogger();
    const aws = scripted("aws", [ok("aws", 7n), fail("aws", "http", "GetProducts: HTTP 500"), fail("aws", "http", "GetProducts: HTTP 503"), ok("aws", 8n)]);
    const r = createPricingRefresher({ fetchers: [aws], store, clock: time.clock, logger, random: () => 0.5, sleep: time.sleep });
    r.start();
    await settle();
    await time.advance(DEFAULT_PRICING_TTL_MS); // second call fails
    expect(aws.calls).toBe(2);
    expect(store.rows.get("aws/aws-live")?.[0]?.onDemandMicrosPerHour).toBe(7n);
    expect(store.status.get("aws")).toMatchObject({ lastError: "aws prices: GetProducts: HTTP 500", consecutiveFailures: 1, lastSuccessAt: new Date(T0) });
    expect(logger.records.some((l) => l.level === "warn" && l.fields["provider"] === "aws" && l.fields["kind"] === "http")).toBe(true);
    // Backoff after the first failure: equal jitter of 60 s → 45 s at random 0.5.
    expect(time.sleeps.at(-1)).toBe(45_000);
    await time.advance(45_000);
    expect(aws.calls).toBe(3);
    expect(time.sleeps.at(-1)).toBe(90_000); // second failure: ceiling 120 s
    expect(store.status.get("aws")?.consecutiveFailures).toBe(2);
    await time.advance(90_000);
    expect(aws.calls).toBe(4);
    expect(store.rows.get("aws/aws-live")?.[0]?.onDemandMicrosPerHour).toBe(8n);
    expect(store.status.get("aws")).toMatchObject({ lastError: null, consecutiveFailures: 0 });
    await r.stop();
  });

  it("without credentials leaves the catalog alone, says so in the status, and tries again only after a ttl", async () => {
    const time = fakeTime();
    const store = memoryStore();
    const gcp = scripted("gcp", [fail("gcp", "credentials", "configure a Cloud Billing API key or an access token")]);
    const r = createPricingRefresher({ fetchers: [gcp], store, clock: time.clock, logger: createMemoryLogger(), random: () => 0.5, sleep: time.sleep });
    r.start();
    await settle();
    expect(store.rows.size).toBe(0);
    const status = store.status.get("gcp");
    expect(describePricingStatus(status, time.clock.now())).toBe("never refreshed: no credentials: gcp prices: configure a Cloud Billing API key or an access token");
    expect(pricingStalenessSeconds(status, time.clock.now())).toBeNull();
    expect(time.sleeps).toEqual([DEFAULT_PRICING_TTL_MS]);
    await r.stop();
  });

  it("does not fetch a provider another process refreshed within the ttl; it waits for that refresh to age", async () => {
    const time = fakeTime();
    const store = memoryStore();
    await store.replaceOffers({ provider: "azure", source: "azure-live", offers: [offer("azure", 3n, "azure-live")], at: new Date(T0 - 5 * MIN) });
    const azure = scripted("azure", [ok("azure", 4n)]);
    const r = createPricingRefresher({ fetchers: [azure], store, clock: time.clock, logger: createMemoryLogger(), random: () => 0.5, sleep: time.sleep });
    expect(await r.refresh("azure")).toEqual({ provider: "azure", outcome: "fresh", lastSuccessAt: new Date(T0 - 5 * MIN) });
    r.start();
    await settle();
    expect(azure.calls).toBe(0);
    expect(time.sleeps).toEqual([10 * MIN]);
    await time.advance(10 * MIN);
    expect(azure.calls).toBe(1);
    await r.stop();
  });

  it("stop() aborts a fetch in flight and resolves; an outer AbortSignal stops it too", async () => {
    const time = fakeTime();
    let seen: AbortSignal | undefined;
    const hanging: PriceFetcher = {
      provider: "aws",
      source: "aws-live",
      fetch: (signal) =>
        new Promise<FetchResult>((_resolve, reject) => {
          seen = signal;
          signal.addEventListener("abort", () => reject(new PricingFetchError("aws", "aborted", "aborted")), { once: true });
        }),
    };
    const store = memoryStore();
    const r = createPricingRefresher({ fetchers: [hanging], store, clock: time.clock, logger: createMemoryLogger(), sleep: time.sleep });
    r.start();
    await settle();
    await r.stop();
    expect(seen?.aborted).toBe(true);
    expect(store.status.size).toBe(0); // an abort is not a failure
    expect(r.state).toBe("stopped");

    const outer = new AbortController();
    const r2 = createPricingRefresher({ fetchers: [scripted("gcp", [ok("gcp", 1n)])], store, clock: time.clock, logger: createMemoryLogger(), sleep: time.sleep, signal: outer.signal });
    r2.start();
    await settle();
    outer.abort();
    await r2.stop();
    expect(r2.state).toBe("stopped");
  });

  it("with no fetchers (no credentials configured anywhere) starts and stops without doing anything", async () => {
    const logger = createMemoryLogger();
    const r = createPricingRefresher({ fetchers: [], store: memoryStore(), clock: fakeTime().clock, logger });
    r.start();
    await r.stop();
    expect(logger.records.map((l) => l.msg)).toContain("no price fetchers configured; the catalog stays as shipped");
  });

  it("describes a provider's state for `gpuorch pricing`", () => {
    const now = new Date(T0);
    const s: PricingSourceStatus = {
      provider: "aws",
      source: "aws-price-list",
      lastAttemptAt: new Date(T0 - 2 * MIN),
      lastSuccessAt: new Date(T0 - 20 * MIN),
      lastError: null,
      consecutiveFailures: 0,
      rowCount: 1127,
      oldestPriceDate: "2029-12-31",
      newestPriceDate: "2029-12-31",
    };
    expect(describePricingStatus(undefined, now)).toBe("never refreshed: prices as shipped/seeded");
    expect(describePricingStatus(s, now)).toBe("refreshed 20m ago (1127 rows, prices of 2029-12-31)");
    expect(describePricingStatus({ ...s, lastError: "aws prices: HTTP 500" }, now)).toBe("last error 2m ago: aws prices: HTTP 500; refreshed 20m ago (1127 rows, prices of 2029-12-31)");
    expect(pricingStalenessSeconds(s, now)).toBe(1200);
  });
});

describe("pricing refresher on the real store (PGlite)", () => {
  it("seeds the shipped catalog, lays live rows over it, and keeps them when a later fetch fails", async () => {
    const database = await openDatabase({ memory: true });
    try {
      const time = fakeTime();
      const shipped = await loadShippedCatalog();
      expect(await seedCatalogIfEmpty(database.db, shipped, { at: time.clock.now() })).toEqual({ inserted: 384, sources: ["shipped:gcp.csv"] });
      const live = completeOffer({ ...shipped.offers.find((o) => o.region === "us-central1" && o.instanceType === "a3-highgpu-8g")!, onDemandMicrosPerHour: 80_000_000n, priceDate: "2030-01-01", source: "gcp-live" });
      const gcp = scripted("gcp", [() => ({ offers: [live], warnings: [] }), fail("gcp", "http", "HTTP 503")]);
      const aws = scripted("aws", [fail("aws", "credentials", "Could not load credentials from any providers")]);
      const store: PricingStore = createPricingStore(database.db);
      const r = createPricingRefresher({ fetchers: [aws, gcp], store, clock: time.clock, logger: createMemoryLogger(), random: () => 0.5, sleep: time.sleep });
      // The loop's steps, awaited one by one (database calls take real time).
      expect(await r.refresh("aws")).toMatchObject({ outcome: "failed", kind: "credentials" });
      expect(await r.refresh("gcp")).toMatchObject({ outcome: "refreshed", rowCount: 1 });
      await time.advance(DEFAULT_PRICING_TTL_MS);
      expect(await r.refresh("gcp")).toMatchObject({ outcome: "failed", kind: "http" });
      const a3 = await loadCatalogOffers(database.db, { provider: "gcp", region: "us-central1", instanceType: "a3-highgpu-8g" });
      expect(a3).toEqual([live]);
      expect(await loadCatalogOffers(database.db)).toHaveLength(384);
      const status = new Map((await store.listStatus()).map((st) => [st.provider, st]));
      expect(describePricingStatus(status.get("aws"), time.clock.now())).toBe("never refreshed: no credentials: aws prices: Could not load credentials from any providers");
      expect(status.get("gcp")).toMatchObject({ lastSuccessAt: new Date(T0), lastError: "gcp prices: HTTP 503", rowCount: 1, consecutiveFailures: 1 });
    } finally {
      await database.close();
    }
  });
});
