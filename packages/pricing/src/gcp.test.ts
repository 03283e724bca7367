import { afterEach, describe, expect, it } from "vitest";
import { PricingFetchError } from "./errors.js";
import { GCP_MACHINE_TYPES, availabilityFromOffers, classifySku, composeMachinePrice, createGcpPriceFetcher, indexComponents } from "./gcp.js";
import { type RecordedRequest, type RecordingServer, type Reply, startRecordingServer, testdata } from "./recording-server.js";

const NOW = new Date("2030-01-01T00:00:00.000Z");
const clock = { now: () => NOW };
const PAGE2 = "CgwI2t6QqgYQuJ6VywISDTZGODEtNTg0NC00NTZB";
const ALL_TYPES = Object.keys(GCP_MACHINE_TYPES);
// europe-west4: A2 standard only; us-central1: everything but A3 Mega; us-east4: everything.
const EXPECTED_OFFERS = [
  ...ALL_TYPES.filter((t) => t.startsWith("a2-highgpu") || t.startsWith("a2-megagpu")).map((t) => `europe-west4/${t}`),
  ...ALL_TYPES.filter((t) => t !== "a3-megagpu-8g").map((t) => `us-central1/${t}`),
  ...ALL_TYPES.map((t) => `us-east4/${t}`),
];
const ok = (body: string, status = 200): Reply => ({ status, headers: { "content-type": "application/json; charset=UTF-8" }, body });

function handler(over?: (r: RecordedRequest, u: URL) => Reply | undefined) {
  return (r: RecordedRequest): Reply => {
    const u = new URL(r.url, "http://x");
    const o = over?.(r, u);
    if (o) return o;
    return ok(testdata(u.searchParams.get("pageToken") === PAGE2 ? "gcp/skus-page2.json" : "gcp/skus-page1.json"));
  };
}

describe("GCP price fetcher against a local Cloud Billing Catalog endpoint", () => {
  let server: RecordingServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });
  const fetcher = (s: RecordingServer, extra: Partial<Parameters<typeof createGcpPriceFetcher>[0]> = {}) =>
    createGcpPriceFetcher({ clock, apiKey: "AIzaTestKey", baseUrl: s.url, retry: { maxAttempts: 1 }, ...extra });

  it("lists the Compute Engine SKUs with the API key, USD, and pageToken pagination", async () => {
    server = await startRecordingServer(handler());
    await fetcher(server).fetch(new AbortController().signal);
    const reqs = server.requests.map((r) => {
      const u = new URL(r.url, "http://x");
      return { method: r.method, path: u.pathname, query: Object.fromEntries(u.searchParams), auth: r.headers["authorization"] };
    });
    expect(reqs).toEqual([
      { method: "GET", path: "/v1/services/6F81-5844-456A/skus", query: { currencyCode: "USD", pageSize: "5000", key: "AIzaTestKey" }, auth: undefined },
      { method: "GET", path: "/v1/services/6F81-5844-456A/skus", query: { currencyCode: "USD", pageSize: "5000", pageToken: PAGE2, key: "AIzaTestKey" }, auth: undefined },
    ]);
  });

  it("sends an OAuth access token as a bearer header instead of a key", async () => {
    server = await startRecordingServer(handler());
    await createGcpPriceFetcher({ clock, accessToken: async () => "ya29.token", baseUrl: server.url }).fetch(new AbortController().signal);
    expect(server.requests.map((r) => [new URL(r.url, "http://x").searchParams.has("key"), r.headers["authorization"]])).toEqual([
      [false, "Bearer ya29.token"],
      [false, "Bearer ya29.token"],
    ]);
  });

  it("composes machine prices from core + RAM + GPU + bundled Local SSD SKUs (matching Google's published totals)", async () => {
    server = await startRecordingServer(handler());
    const { offers } = await fetcher(server).fetch(new AbortController().signal);
    const get = (region: string, type: string) => offers.find((o) => o.region === region && o.instanceType === type);
    // The shipped snapshot (Cyclenerd, from the same API) says 3.673385 / 5.068798 / 11.06125 / 88.49 / 0.706832 in us-central1.
    expect(get("us-central1", "a2-highgpu-1g")).toEqual({
      provider: "gcp",
      region: "us-central1",
      zone: "",
      instanceType: "a2-highgpu-1g",
      gpuType: "A100",
      gpuCount: 1,
      gpuMemoryGb: 40,
      vcpus: 12,
      memoryGb: 85,
      onDemandMicrosPerHour: 3_673_385n,
      spotMicrosPerHour: 1_928_020n, // 12 × 0.012644 + 85 × 0.0016948 + 1.632234
      spotInterruptionsPerHour: expect.closeTo(-Math.log(1 - 0.125) / 730, 12) as unknown as number,
      spotAvailability: 0.7,
      interconnect: null,
      priceDate: "2030-01-01",
      source: "gcp-cloud-billing",
    });
    expect(get("us-central1", "a2-ultragpu-1g")?.onDemandMicrosPerHour).toBe(5_068_798n);
    expect(get("us-central1", "a3-highgpu-1g")?.onDemandMicrosPerHour).toBe(11_061_250n);
    expect(get("us-central1", "a3-highgpu-8g")).toMatchObject({ onDemandMicrosPerHour: 88_490_000n, interconnect: "gpudirect-tcpx", spotAvailability: 0.5 });
    // Spot local SSD (0.048/GiB-month) is part of the spot total too: 208×0.01482 + 1872×0.001986 + 8×5.3 + 6000×0.048/730.
    expect(get("us-central1", "a3-highgpu-8g")?.spotMicrosPerHour).toBe(49_594_873n);
    // A region-specific L4 SKU (Iowa) beats the Americas one in us-central1; us-east4 gets the Americas price.
    expect(get("us-central1", "g2-standard-4")?.onDemandMicrosPerHour).toBe(706_832n);
    expect(get("us-east4", "g2-standard-4")?.onDemandMicrosPerHour).toBe(746_792n);
    // A3 Mega: its GPU is priced only in us-east4.
    expect(get("us-central1", "a3-megagpu-8g")).toBeUndefined();
    expect(get("us-east4", "a3-megagpu-8g")).toMatchObject({ interconnect: "gpudirect-tcpxo", spotMicrosPerHour: null });
    // europe-west4 has A2 standard on-demand only (no spot GPU SKU, no A100 80GB).
    expect(get("europe-west4", "a2-highgpu-8g")).toMatchObject({ spotMicrosPerHour: null, spotInterruptionsPerHour: null });
    expect(get("europe-west4", "a2-ultragpu-1g")).toBeUndefined();
    expect(offers.map((o) => `${o.region}/${o.instanceType}`)).toEqual(EXPECTED_OFFERS);
  });

  it("keeps only the regions `availableIn` allows", async () => {
    server = await startRecordingServer(handler());
    const availableIn = availabilityFromOffers([
      { provider: "gcp", instanceType: "a2-highgpu-8g", region: "europe-west4" },
      { provider: "aws", instanceType: "a2-highgpu-8g", region: "us-central1" },
    ]);
    const { offers } = await fetcher(server, { availableIn }).fetch(new AbortController().signal);
    expect(offers.map((o) => `${o.region}/${o.instanceType}`)).toEqual(["europe-west4/a2-highgpu-8g"]);
  });

  it("reports missing credentials without making a request", async () => {
    server = await startRecordingServer(handler());
    const f = createGcpPriceFetcher({ clock, baseUrl: server.url });
    await expect(f.fetch(new AbortController().signal)).rejects.toMatchObject({ kind: "credentials", code: "FAILED_PRECONDITION" });
    expect(server.requests).toEqual([]);
  });

  it("fails whole with a typed error: bad key, API disabled, quota, 500, wrong unit, bad JSON, a failing second page", async () => {
    const cases: [(r: RecordedRequest, u: URL) => Reply | undefined, string, number | undefined, string?][] = [
      [() => ok(testdata("gcp/error-400-api-key.json"), 400), "credentials", 400, "API key not valid"],
      [() => ok(testdata("gcp/error-403-disabled.json"), 403), "credentials", 403, "PERMISSION_DENIED"],
      [() => ok(testdata("gcp/error-429.json"), 429), "throttled", 429, "RESOURCE_EXHAUSTED"],
      [() => ok("Internal error", 500), "http", 500],
      [() => ok(testdata("gcp/skus-wrong-unit.json")), "malformed", undefined, "usage unit GBy.h"],
      [() => ok('{"skus": [], "nextPageToken": 7}'), "malformed", undefined],
      [() => ok("{"), "malformed", undefined],
      [(_r, u) => (u.searchParams.get("pageToken") === PAGE2 ? ok("Service Unavailable", 503) : undefined), "http", 503],
    ];
    for (const [over, kind, status, text] of cases) {
      server = await startRecordingServer(handler(over));
      const err = await fetcher(server)
        .fetch(new AbortController().signal)
        .catch((e: unknown) => e);
      expect(err, kind).toBeInstanceOf(PricingFetchError);
      expect(err).toMatchObject({ provider: "gcp", kind, status });
      if (text) expect((err as Error).message).toContain(text);
      expect((err as Error).message).not.toContain("AIzaTestKey");
      await server.close();
      server = undefined;
    }
  });
});

describe("GCP SKU classification and composition", () => {
  it("recognises the component SKUs and their Spot variants, nothing else", () => {
    expect(classifySku("A2 Instance Core running in Americas")).toEqual({ component: { kind: "core", family: "A2" }, spot: false });
    expect(classifySku("Spot Preemptible G2 Instance Ram running in Iowa")).toEqual({ component: { kind: "ram", family: "G2" }, spot: true });
    expect(classifySku("Nvidia Tesla A100 80GB GPU attached to Spot Preemptible VMs running in Americas")).toEqual({ component: { kind: "gpu", gpu: "Tesla A100 80GB" }, spot: true });
    expect(classifySku("Nvidia H100 80GB Mega GPU running in Virginia")).toEqual({ component: { kind: "gpu", gpu: "H100 80GB Mega" }, spot: false });
    expect(classifySku("SSD backed Local Storage attached to Spot Preemptible VMs in Americas")).toEqual({ component: { kind: "ssd" }, spot: true });
    expect(classifySku("N1 Predefined Instance Core running in Americas")).toBeNull();
    expect(classifySku("Commitment v1: A2 Cpu in Americas for 1 Year")).toBeNull();
  });

  it("refuses two same-scope SKUs that price one component differently", () => {
    const sku = (id: string, nanos: number) => ({
      skuId: id,
      description: "A2 Instance Core running in Americas",
      category: { resourceFamily: "Compute", usageType: "OnDemand" },
      serviceRegions: ["us-central1", "us-east4"],
      pricingInfo: [{ pricingExpression: { usageUnit: "h", tieredRates: [{ unitPrice: { currencyCode: "USD", units: "0", nanos } }] } }],
    });
    expect(() => indexComponents([sku("A", 1), sku("B", 2)])).toThrow(/price od:core:A2 differently/);
    expect(indexComponents([sku("A", 1), sku("B", 1)]).get("us-east4")?.get("od:core:A2")?.nanos).toBe(1n);
  });

  it("returns null when a component is missing", () => {
    expect(composeMachinePrice(GCP_MACHINE_TYPES["g2-standard-4"]!, new Map(), false)).toBeNull();
  });
});
