import { afterEach, describe, expect, it } from "vitest";
import { AZURE_GPU_SIZES, azureFilter, createAzurePriceFetcher } from "./azure.js";
import { PricingFetchError } from "./errors.js";
import { type RecordedRequest, type RecordingServer, type Reply, startRecordingServer, testdata } from "./recording-server.js";

const NOW = new Date("2030-01-01T00:00:00.000Z");
const clock = { now: () => NOW };
const sizes = {
  Standard_ND96asr_v4: AZURE_GPU_SIZES["Standard_ND96asr_v4"]!,
  Standard_ND96isr_H100_v5: AZURE_GPU_SIZES["Standard_ND96isr_H100_v5"]!,
  Standard_NC4as_T4_v3: AZURE_GPU_SIZES["Standard_NC4as_T4_v3"]!,
};
const ok = (body: string, status = 200): Reply => ({ status, headers: { "content-type": "application/json; charset=utf-8" }, body });

function handler(base: () => string, over?: (r: RecordedRequest, u: URL) => Reply | undefined) {
  return (r: RecordedRequest): Reply => {
    const u = new URL(r.url, "http://x");
    const o = over?.(r, u);
    if (o) return o;
    const filter = u.searchParams.get("$filter") ?? "";
    // The recorded NextPageLinks name the real host; point them at this server.
    const serve = (file: string): Reply => ok(testdata(file).replaceAll("https://prices.azure.com:443", base()));
    if (filter.includes("Standard_ND96isr_H100_v5")) return serve("azure/retail-batch2-page1.json");
    if (u.searchParams.get("$skip") === "1000") return serve("azure/retail-batch1-page2.json");
    return serve("azure/retail-batch1-page1.json");
  };
}

describe("Azure price fetcher against a local Retail Prices API", () => {
  let server: RecordingServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });
  const start = async (over?: (r: RecordedRequest, u: URL) => Reply | undefined): Promise<RecordingServer> => {
    let url = "";
    server = await startRecordingServer(handler(() => url, over));
    url = server.url;
    return server;
  };
  const fetcher = (s: RecordingServer, retry = { maxAttempts: 1 }) =>
    createAzurePriceFetcher({ clock, baseUrl: `${s.url}/api/retail/prices`, sizes, batchSize: 2, retry });

  it("filters per batch of sizes on Virtual Machines consumption prices and follows NextPageLink", async () => {
    const s = await start();
    await fetcher(s).fetch(new AbortController().signal);
    const reqs = s.requests.map((r) => {
      const u = new URL(r.url, "http://x");
      return { method: r.method, path: u.pathname, query: Object.fromEntries(u.searchParams) };
    });
    expect(reqs).toEqual([
      {
        method: "GET",
        path: "/api/retail/prices",
        query: {
          "api-version": "2023-01-01-preview",
          $filter: "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and (armSkuName eq 'Standard_NC4as_T4_v3' or armSkuName eq 'Standard_ND96asr_v4')",
        },
      },
      {
        method: "GET",
        path: "/api/retail/prices",
        query: {
          "api-version": "2023-01-01-preview",
          $filter: "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and (armSkuName eq 'Standard_NC4as_T4_v3' or armSkuName eq 'Standard_ND96asr_v4')",
          $skip: "1000",
        },
      },
      {
        method: "GET",
        path: "/api/retail/prices",
        query: {
          "api-version": "2023-01-01-preview",
          $filter: "serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and (armSkuName eq 'Standard_ND96isr_H100_v5')",
        },
      },
    ]);
  });

  it("keeps Linux consumption and Spot meters, newest per region; skips Windows, Low Priority, DevTest and placeholder spot", async () => {
    const s = await start();
    const { offers, warnings } = await fetcher(s).fetch(new AbortController().signal);
    const byKey = new Map(offers.map((o) => [`${o.region}/${o.instanceType}`, o]));
    expect(byKey.get("eastus/Standard_ND96asr_v4")).toEqual({
      provider: "azure",
      region: "eastus",
      zone: "",
      instanceType: "Standard_ND96asr_v4",
      gpuType: "A100",
      gpuCount: 8,
      gpuMemoryGb: 40,
      vcpus: 96,
      memoryGb: 900,
      onDemandMicrosPerHour: 27_197_000n,
      spotMicrosPerHour: 5_983_340n,
      spotInterruptionsPerHour: expect.closeTo(-Math.log(1 - 0.125) / 730, 12) as unknown as number,
      spotAvailability: 0.7,
      interconnect: "infiniband",
      priceDate: "2030-01-01",
      source: "azure-retail-prices",
    });
    expect(byKey.get("westeurope/Standard_ND96asr_v4")).toMatchObject({ onDemandMicrosPerHour: 30_200_000n, spotMicrosPerHour: null });
    expect(byKey.get("eastus/Standard_ND96isr_H100_v5")).toMatchObject({ onDemandMicrosPerHour: 98_320_000n, spotMicrosPerHour: 18_169_536n, spotAvailability: 0.5 });
    expect(byKey.get("westus/Standard_ND96isr_H100_v5")).toMatchObject({ spotMicrosPerHour: null, spotInterruptionsPerHour: null });
    expect(byKey.get("eastus/Standard_NC4as_T4_v3")).toMatchObject({ gpuType: "T4", onDemandMicrosPerHour: 526_000n, spotMicrosPerHour: 157_800n, interconnect: null });
    expect(byKey.get("jioindiawest/Standard_NC4as_T4_v3")).toMatchObject({ spotMicrosPerHour: null });
    expect(offers).toHaveLength(6);
    expect(warnings).toEqual([]);
  });

  it("retries a 503 and a 429 with backoff, then succeeds", async () => {
    let failures = 0;
    const s = await start(() => (failures++ < 2 ? ok('{"Error":{"Code":"ServiceUnavailable","Message":"try later"}}', failures === 1 ? 503 : 429) : undefined));
    const delays: number[] = [];
    const f = createAzurePriceFetcher({
      clock,
      baseUrl: `${s.url}/api/retail/prices`,
      sizes,
      batchSize: 2,
      retry: { maxAttempts: 3, random: () => 0.5, sleep: async (ms) => void delays.push(ms) },
    });
    const { offers } = await f.fetch(new AbortController().signal);
    expect(offers).toHaveLength(6);
    expect(delays).toEqual([750, 1500]); // equal jitter: ceiling/2 + ceiling/2 × 0.5
  });

  it("fails whole with a typed error: 500 after retries, 429, 400, a malformed page, a NextPageLink to another host", async () => {
    const cases: [(r: RecordedRequest, u: URL) => Reply | undefined, string, number | undefined][] = [
      [() => ok("upstream exploded", 500), "http", 500],
      [() => ok('{"Error":{"Code":"TooManyRequests","Message":"slow down"}}', 429), "throttled", 429],
      [() => ok(testdata("azure/retail-error-400.json"), 400), "http", 400],
      [() => ok(testdata("azure/retail-malformed.json")), "malformed", undefined],
      [() => ok("<html>not json</html>"), "malformed", undefined],
      [(_r, u) => (u.searchParams.has("$skip") ? undefined : ok(JSON.stringify({ Items: [], NextPageLink: "https://evil.example/api/retail/prices?$skip=1" }))), "malformed", undefined],
    ];
    for (const [over, kind, status] of cases) {
      const s = await start(over);
      const err = await fetcher(s, { maxAttempts: 2, sleep: async () => {} } as never)
        .fetch(new AbortController().signal)
        .catch((e: unknown) => e);
      expect(err, kind).toBeInstanceOf(PricingFetchError);
      expect(err).toMatchObject({ provider: "azure", kind, status });
      if (kind === "http" && status === 400) expect((err as Error).message).toContain("BadRequest Invalid OData parameters supplied");
      await s.close();
      server = undefined;
    }
  });

  it("says 'network' when nothing listens", async () => {
    const s = await start();
    await s.close();
    server = undefined;
    await expect(fetcher(s).fetch(new AbortController().signal)).rejects.toMatchObject({ kind: "network", code: "UNAVAILABLE" });
  });

  it("builds its filter from every GPU size by default", () => {
    expect(Object.keys(AZURE_GPU_SIZES)).toHaveLength(36);
    expect(azureFilter(["Standard_A", "Standard_B"])).toBe("serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and (armSkuName eq 'Standard_A' or armSkuName eq 'Standard_B')");
  });
});
