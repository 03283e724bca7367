import type { Clock } from "@gpuorch/core";
import { PricingFetchError } from "./errors.js";
import { type FetchLike, type FetchResult, type HttpRetry, type PriceFetcher, getJson } from "./fetcher.js";
import { type BareOffer, completeOffer, isoDate } from "./offers.js";

/**
 * GCP prices from the Cloud Billing Catalog API's public REST endpoint
 * (GET https://cloudbilling.googleapis.com/v1/services/6F81-5844-456A/skus,
 * paginated by pageToken), called with fetch rather than @google-cloud/billing:
 * the endpoint is one paginated GET authorized by an API key (or an OAuth
 * access token), the gRPC client would add google-gax, grpc-js and
 * google-auth-library for it, and a plain HTTP call is what a local test
 * server can answer byte for byte.
 *
 * Google bills accelerator-optimized VMs by component. This fetcher composes,
 * per region, for the machine types of GCP_MACHINE_TYPES:
 *   vCPUs × "<F> Instance Core" + GiB × "<F> Instance Ram"
 *   + GPUs × "Nvidia … GPU" + bundled Local SSD GiB × "SSD backed Local Storage" / 730
 * for F ∈ {A2, A3, G2}, on-demand and Spot ("Spot Preemptible …" SKUs). A
 * machine type is priced in a region when every on-demand component is
 * priced there (and optionally `availableIn` agrees); spot when every spot
 * component is. NOT covered: N1 + attached GPUs, A3 Ultra/Edge, A4, G4
 * (fractional RTX PRO 6000), TPUs, committed-use and DWS/Flex-start prices,
 * sustained-use discounts, OS licences.
 */
export const GCP_SOURCE = "gcp-cloud-billing";
export const GCP_COMPUTE_SERVICE = "services/6F81-5844-456A";
export const GCP_BILLING_BASE_URL = "https://cloudbilling.googleapis.com";

type Family = "A2" | "A3" | "G2";
/** GPU SKU names as they appear in descriptions ("Nvidia <name> GPU running in …"). */
type GpuSku = "Tesla A100" | "Tesla A100 80GB" | "H100 80GB" | "H100 80GB Mega" | "L4";

export interface GcpMachineType {
  family: Family;
  gpuSku: GpuSku;
  gpuType: string;
  gpuCount: number;
  gpuMemoryGb: number;
  vcpus: number;
  memoryGb: number;
  /** Local SSD that comes with the machine type and is billed with it. */
  bundledLocalSsdGb: number;
}

const m = (family: Family, gpuSku: GpuSku, gpuType: string, gpuCount: number, gpuMemoryGb: number, vcpus: number, memoryGb: number, ssd = 0): GcpMachineType => ({
  family,
  gpuSku,
  gpuType,
  gpuCount,
  gpuMemoryGb,
  vcpus,
  memoryGb,
  bundledLocalSsdGb: ssd,
});

/** Shapes from https://cloud.google.com/compute/docs/accelerator-optimized-machines (A2, A3, G2). */
export const GCP_MACHINE_TYPES: Readonly<Record<string, GcpMachineType>> = {
  "a2-highgpu-1g": m("A2", "Tesla A100", "A100", 1, 40, 12, 85),
  "a2-highgpu-2g": m("A2", "Tesla A100", "A100", 2, 40, 24, 170),
  "a2-highgpu-4g": m("A2", "Tesla A100", "A100", 4, 40, 48, 340),
  "a2-highgpu-8g": m("A2", "Tesla A100", "A100", 8, 40, 96, 680),
  "a2-megagpu-16g": m("A2", "Tesla A100", "A100", 16, 40, 96, 1360),
  "a2-ultragpu-1g": m("A2", "Tesla A100 80GB", "A100-80GB", 1, 80, 12, 170, 375),
  "a2-ultragpu-2g": m("A2", "Tesla A100 80GB", "A100-80GB", 2, 80, 24, 340, 750),
  "a2-ultragpu-4g": m("A2", "Tesla A100 80GB", "A100-80GB", 4, 80, 48, 680, 1500),
  "a2-ultragpu-8g": m("A2", "Tesla A100 80GB", "A100-80GB", 8, 80, 96, 1360, 3000),
  "a3-highgpu-1g": m("A3", "H100 80GB", "H100", 1, 80, 26, 234, 750),
  "a3-highgpu-2g": m("A3", "H100 80GB", "H100", 2, 80, 52, 468, 1500),
  "a3-highgpu-4g": m("A3", "H100 80GB", "H100", 4, 80, 104, 936, 3000),
  "a3-highgpu-8g": m("A3", "H100 80GB", "H100", 8, 80, 208, 1872, 6000),
  "a3-megagpu-8g": m("A3", "H100 80GB Mega", "H100", 8, 80, 208, 1872, 6000),
  "g2-standard-4": m("G2", "L4", "L4", 1, 24, 4, 16),
  "g2-standard-8": m("G2", "L4", "L4", 1, 24, 8, 32),
  "g2-standard-12": m("G2", "L4", "L4", 1, 24, 12, 48),
  "g2-standard-16": m("G2", "L4", "L4", 1, 24, 16, 64),
  "g2-standard-24": m("G2", "L4", "L4", 2, 24, 24, 96),
  "g2-standard-32": m("G2", "L4", "L4", 1, 24, 32, 128),
  "g2-standard-48": m("G2", "L4", "L4", 4, 24, 48, 192),
  "g2-standard-96": m("G2", "L4", "L4", 8, 24, 96, 384),
};

export interface GcpPriceFetcherOptions {
  clock: Clock;
  /** An API key with the Cloud Billing API enabled (sent as ?key=). */
  apiKey?: string;
  /** Or an OAuth 2 access token source (sent as Authorization: Bearer). */
  accessToken?: () => Promise<string>;
  fetch?: FetchLike;
  baseUrl?: string;
  pageSize?: number;
  /**
   * Whether a machine type can be launched in a region. The billing catalog
   * prices components in regions where a type is not offered; without this,
   * every region with all component prices gets a row.
   */
  availableIn?: (machineType: string, region: string) => boolean;
  retry?: HttpRetry;
}

/** One Cloud Billing SKU, as the v1 REST API returns it. */
export interface BillingSku {
  name?: string;
  skuId?: string;
  description?: string;
  category?: { serviceDisplayName?: string; resourceFamily?: string; resourceGroup?: string; usageType?: string };
  serviceRegions?: string[];
  pricingInfo?: {
    effectiveTime?: string;
    pricingExpression?: { usageUnit?: string; tieredRates?: { startUsageAmount?: number; unitPrice?: { currencyCode?: string; units?: string; nanos?: number } }[] };
  }[];
}

type Component = { kind: "core" | "ram"; family: Family } | { kind: "gpu"; gpu: GpuSku } | { kind: "ssd" };

const FAMILY_RE = /^(Spot Preemptible )?(A2|A3|G2) Instance (Core|Ram) running in /;
const GPU_RE = /^Nvidia (Tesla A100 80GB|Tesla A100|H100 80GB Mega|H100 80GB|L4) GPU (running in|attached to Spot Preemptible VMs running in) /;
const SSD_RE = /^SSD backed Local Storage (in|attached to Spot Preemptible VMs in) /;
const UNITS: Record<Component["kind"], string> = { core: "h", ram: "GiBy.h", gpu: "h", ssd: "GiBy.mo" };

/** Which priced component a SKU is, and whether it is the Spot variant; null for everything else. */
export function classifySku(description: string): { component: Component; spot: boolean } | null {
  let r = FAMILY_RE.exec(description);
  if (r) return { component: { kind: r[3] === "Core" ? "core" : "ram", family: r[2] as Family }, spot: r[1] !== undefined };
  r = GPU_RE.exec(description);
  if (r) return { component: { kind: "gpu", gpu: r[1] as GpuSku }, spot: r[2] !== "running in" };
  r = SSD_RE.exec(description);
  if (r) return { component: { kind: "ssd" }, spot: r[1] !== "in" };
  return null;
}

const componentKey = (c: Component, spot: boolean): string =>
  `${spot ? "spot" : "od"}:${c.kind === "gpu" ? `gpu:${c.gpu}` : c.kind === "ssd" ? "ssd" : `${c.kind}:${c.family}`}`;

/** The nanos-per-unit price of a SKU's first tier (compute SKUs have one tier). */
function skuNanos(sku: BillingSku): bigint {
  const bad = (why: string): PricingFetchError => new PricingFetchError("gcp", "malformed", `SKU ${sku.skuId ?? "?"} (${sku.description ?? ""}): ${why}`);
  const info = sku.pricingInfo?.[0];
  const rate = info?.pricingExpression?.tieredRates?.[0];
  const price = rate?.unitPrice;
  if (!price) throw bad("no pricingInfo[0].pricingExpression.tieredRates[0].unitPrice");
  if (price.currencyCode !== "USD") throw bad(`currency ${String(price.currencyCode)}, expected USD`);
  const units = price.units ?? "0";
  const nanos = price.nanos ?? 0;
  if (!/^\d+$/.test(units) || !Number.isInteger(nanos) || nanos < 0 || nanos >= 1e9) throw bad(`price units=${units} nanos=${nanos} unreadable`);
  return BigInt(units) * 1_000_000_000n + BigInt(nanos);
}

/** Per-region nanos prices of each component, from every SKU of the service. */
export function indexComponents(skus: readonly BillingSku[]): Map<string, Map<string, { nanos: bigint; regional: boolean; skuId: string }>> {
  const byRegion = new Map<string, Map<string, { nanos: bigint; regional: boolean; skuId: string }>>();
  for (const sku of skus) {
    const c = classifySku(sku.description ?? "");
    if (!c) continue;
    if (sku.category?.resourceFamily !== "Compute" && sku.category?.resourceFamily !== "Storage") continue;
    const usage = sku.category?.usageType;
    // Commitments and reservations share descriptions' prefixes with other usage types; keep the two we compose.
    if (usage !== (c.spot ? "Preemptible" : "OnDemand")) continue;
    const unit = sku.pricingInfo?.[0]?.pricingExpression?.usageUnit;
    if (unit !== UNITS[c.component.kind]) {
      throw new PricingFetchError("gcp", "malformed", `SKU ${sku.skuId ?? "?"} (${sku.description}): usage unit ${String(unit)}, expected ${UNITS[c.component.kind]}`);
    }
    const nanos = skuNanos(sku);
    const regions = sku.serviceRegions ?? [];
    const regional = regions.length === 1;
    const key = componentKey(c.component, c.spot);
    for (const region of regions) {
      const comps = byRegion.get(region) ?? new Map();
      const prev = comps.get(key);
      // A region-specific SKU beats a multi-region one; two of the same kind must agree.
      if (!prev || (regional && !prev.regional)) comps.set(key, { nanos, regional, skuId: sku.skuId ?? "?" });
      else if (prev.regional === regional && prev.nanos !== nanos) {
        throw new PricingFetchError("gcp", "malformed", `${region}: SKUs ${prev.skuId} and ${sku.skuId ?? "?"} both price ${key} differently`);
      }
      byRegion.set(region, comps);
    }
  }
  return byRegion;
}

/** micro-USD per hour of a machine type from its components' nanos prices; null if one is missing. */
export function composeMachinePrice(t: GcpMachineType, comps: ReadonlyMap<string, { nanos: bigint }>, spot: boolean): bigint | null {
  const get = (c: Component): bigint | null => comps.get(componentKey(c, spot))?.nanos ?? null;
  const core = get({ kind: "core", family: t.family });
  const ram = get({ kind: "ram", family: t.family });
  const gpu = get({ kind: "gpu", gpu: t.gpuSku });
  const ssd = t.bundledLocalSsdGb > 0 ? get({ kind: "ssd" }) : 0n;
  if (core === null || ram === null || gpu === null || ssd === null) return null;
  // Work in nanos × 1000 × 730 so fractional GiB and the monthly SSD rate stay exact until one final rounding.
  const scale = 1000n * 730n;
  const memMilli = BigInt(Math.round(t.memoryGb * 1000));
  const total =
    core * BigInt(t.vcpus) * scale + ram * memMilli * 730n + gpu * BigInt(t.gpuCount) * scale + ssd * BigInt(Math.round(t.bundledLocalSsdGb)) * 1000n;
  const perMicro = 1000n * scale; // nanos → micros
  return (total * 2n + perMicro) / (2n * perMicro);
}

function describeGoogleError(body: string): string {
  try {
    const j = JSON.parse(body) as { error?: { status?: string; message?: string } };
    if (j.error) return `${j.error.status ?? ""} ${j.error.message ?? ""}`.trim();
  } catch {
    // not JSON
  }
  return body.slice(0, 200);
}

/** Google answers a bad API key with 400 INVALID_ARGUMENT (reason API_KEY_INVALID): that is a credentials problem. */
function classifyGoogleError(status: number, body: string): "credentials" | undefined {
  return status === 400 && body.includes("API_KEY_INVALID") ? "credentials" : undefined;
}

export function createGcpPriceFetcher(opts: GcpPriceFetcherOptions): PriceFetcher {
  const doFetch: FetchLike = opts.fetch ?? ((url, init) => fetch(url, init));
  const base = (opts.baseUrl ?? GCP_BILLING_BASE_URL).replace(/\/+$/, "");
  const malformed = (what: string): PricingFetchError => new PricingFetchError("gcp", "malformed", what);

  async function listSkus(signal: AbortSignal): Promise<BillingSku[]> {
    if (!opts.apiKey && !opts.accessToken) {
      throw new PricingFetchError("gcp", "credentials", "no credentials: configure a Cloud Billing API key or an access token");
    }
    const skus: BillingSku[] = [];
    let pageToken = "";
    const seen = new Set<string>();
    do {
      const u = new URL(`${base}/v1/${GCP_COMPUTE_SERVICE}/skus`);
      u.searchParams.set("currencyCode", "USD");
      u.searchParams.set("pageSize", String(opts.pageSize ?? 5000));
      if (pageToken) u.searchParams.set("pageToken", pageToken);
      if (opts.apiKey) u.searchParams.set("key", opts.apiKey);
      const headers: Record<string, string> = {};
      if (opts.accessToken) {
        let token: string;
        try {
          token = await opts.accessToken();
        } catch (e) {
          throw new PricingFetchError("gcp", "credentials", `no access token: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
        }
        headers["authorization"] = `Bearer ${token}`;
      }
      const page = (await getJson("gcp", u.toString(), { fetch: doFetch, headers, signal, describe: describeGoogleError, classify: classifyGoogleError, ...(opts.retry ? { retry: opts.retry } : {}) })) as {
        skus?: unknown;
        nextPageToken?: unknown;
      };
      if (typeof page !== "object" || page === null || !Array.isArray(page.skus)) throw malformed("a skus page has no skus array");
      skus.push(...(page.skus as BillingSku[]));
      const next = page.nextPageToken ?? "";
      if (typeof next !== "string") throw malformed("nextPageToken is not a string");
      if (next && seen.has(next)) throw malformed("nextPageToken repeats");
      seen.add(next);
      pageToken = next;
    } while (pageToken);
    return skus;
  }

  return {
    provider: "gcp",
    source: GCP_SOURCE,
    async fetch(signal: AbortSignal): Promise<FetchResult> {
      const warnings: string[] = [];
      const priceDate = isoDate(opts.clock.now());
      const byRegion = indexComponents(await listSkus(signal));
      const offers: BareOffer[] = [];
      for (const region of [...byRegion.keys()].sort()) {
        const comps = byRegion.get(region)!;
        for (const [instanceType, t] of Object.entries(GCP_MACHINE_TYPES)) {
          if (opts.availableIn && !opts.availableIn(instanceType, region)) continue;
          const od = composeMachinePrice(t, comps, false);
          if (od === null) continue;
          const spot = composeMachinePrice(t, comps, true);
          offers.push({
            provider: "gcp",
            region,
            zone: "",
            instanceType,
            gpuType: t.gpuType,
            gpuCount: t.gpuCount,
            gpuMemoryGb: t.gpuMemoryGb,
            vcpus: t.vcpus,
            memoryGb: t.memoryGb,
            onDemandMicrosPerHour: od,
            spotMicrosPerHour: spot !== null && spot < od ? spot : null,
            priceDate,
            source: GCP_SOURCE,
          });
        }
      }
      if (offers.length === 0) throw malformed("the billing catalog priced none of the A2/A3/G2 machine types");
      return { offers: offers.map((o) => completeOffer(o)), warnings };
    },
  };
}

/** `availableIn` from a catalog's rows: a machine type is available where the catalog already lists it. */
export function availabilityFromOffers(offers: readonly { provider: string; instanceType: string; region: string }[]): (machineType: string, region: string) => boolean {
  const set = new Set(offers.filter((o) => o.provider === "gcp").map((o) => `${o.instanceType}|${o.region}`));
  return (machineType, region) => set.has(`${machineType}|${region}`);
}
