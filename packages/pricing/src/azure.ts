import type { Clock } from "@gpuorch/core";
import { PricingFetchError } from "./errors.js";
import { type FetchLike, type FetchResult, type HttpRetry, type PriceFetcher, getJson, usdNumberToMicros } from "./fetcher.js";
import { type BareOffer, completeOffer, isoDate, offerKey } from "./offers.js";

/**
 * Azure prices from the public Retail Prices API (no credentials):
 * GET https://prices.azure.com/api/retail/prices?api-version=…&$filter=…,
 * following NextPageLink. One row per (armSkuName, armRegionName): the Linux
 * consumption meter is on-demand, the "… Spot" meter is spot; Windows and
 * "Low Priority" meters are skipped.
 */
export const AZURE_SOURCE = "azure-retail-prices";
export const AZURE_RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices";
export const AZURE_API_VERSION = "2023-01-01-preview";

/**
 * The GPU sizes we price: the Retail API has prices but no hardware, so the
 * accelerator, its memory, vCPUs and RAM come from Microsoft's size pages
 * (https://learn.microsoft.com/azure/virtual-machines/sizes/overview, GPU
 * accelerated family). Fractional counts are GPU partitions (NVads A10 v5,
 * NVas v4). NC H100 v5 sizes use H100 NVL (94 GB).
 */
export interface AzureSize {
  gpuType: string;
  gpuCount: number;
  gpuMemoryGb: number;
  vcpus: number;
  memoryGb: number;
}

const size = (gpuType: string, gpuCount: number, gpuMemoryGb: number, vcpus: number, memoryGb: number): AzureSize => ({
  gpuType,
  gpuCount,
  gpuMemoryGb,
  vcpus,
  memoryGb,
});

export const AZURE_GPU_SIZES: Readonly<Record<string, AzureSize>> = {
  Standard_NC6s_v3: size("V100", 1, 16, 6, 112),
  Standard_NC12s_v3: size("V100", 2, 16, 12, 224),
  Standard_NC24s_v3: size("V100", 4, 16, 24, 448),
  Standard_NC24rs_v3: size("V100", 4, 16, 24, 448),
  Standard_ND40rs_v2: size("V100-32GB", 8, 32, 40, 672),
  Standard_NC4as_T4_v3: size("T4", 1, 16, 4, 28),
  Standard_NC8as_T4_v3: size("T4", 1, 16, 8, 56),
  Standard_NC16as_T4_v3: size("T4", 1, 16, 16, 110),
  Standard_NC64as_T4_v3: size("T4", 4, 16, 64, 440),
  Standard_NC8ads_A10_v4: size("A10", 1, 24, 8, 100),
  Standard_NC16ads_A10_v4: size("A10", 1, 24, 16, 200),
  Standard_NC32ads_A10_v4: size("A10", 2, 24, 32, 400),
  Standard_NV6ads_A10_v5: size("A10", 0.167, 24, 6, 55),
  Standard_NV12ads_A10_v5: size("A10", 0.333, 24, 12, 110),
  Standard_NV18ads_A10_v5: size("A10", 0.5, 24, 18, 220),
  Standard_NV36ads_A10_v5: size("A10", 1, 24, 36, 440),
  Standard_NV36adms_A10_v5: size("A10", 1, 24, 36, 880),
  Standard_NV72ads_A10_v5: size("A10", 2, 24, 72, 880),
  Standard_NC24ads_A100_v4: size("A100-80GB", 1, 80, 24, 220),
  Standard_NC48ads_A100_v4: size("A100-80GB", 2, 80, 48, 440),
  Standard_NC96ads_A100_v4: size("A100-80GB", 4, 80, 96, 880),
  Standard_ND96asr_v4: size("A100", 8, 40, 96, 900),
  Standard_ND96amsr_A100_v4: size("A100-80GB", 8, 80, 96, 1900),
  Standard_NC40ads_H100_v5: size("H100", 1, 94, 40, 320),
  Standard_NCC40ads_H100_v5: size("H100", 1, 94, 40, 320),
  Standard_NC80adis_H100_v5: size("H100", 2, 94, 80, 640),
  Standard_ND96isr_H100_v5: size("H100", 8, 80, 96, 1900),
  Standard_ND96isr_H200_v5: size("H200", 8, 141, 96, 1850),
  Standard_ND96isr_MI300X_v5: size("MI300X", 8, 192, 96, 1850),
  Standard_NV12s_v3: size("M60", 1, 8, 12, 112),
  Standard_NV24s_v3: size("M60", 2, 8, 24, 224),
  Standard_NV48s_v3: size("M60", 4, 8, 48, 448),
  Standard_NV4as_v4: size("MI25", 0.125, 16, 4, 14),
  Standard_NV8as_v4: size("MI25", 0.25, 16, 8, 28),
  Standard_NV16as_v4: size("MI25", 0.5, 16, 16, 56),
  Standard_NV32as_v4: size("MI25", 1, 16, 32, 112),
};

export interface AzurePriceFetcherOptions {
  clock: Clock;
  /** Default: global fetch. */
  fetch?: FetchLike;
  /** Default: https://prices.azure.com/api/retail/prices. NextPageLinks must stay on its origin. */
  baseUrl?: string;
  apiVersion?: string;
  sizes?: Readonly<Record<string, AzureSize>>;
  /** armSkuNames per request ($filter length stays well under URL limits). */
  batchSize?: number;
  retry?: HttpRetry;
}

interface RetailItem {
  currencyCode?: unknown;
  retailPrice?: unknown;
  armRegionName?: unknown;
  armSkuName?: unknown;
  skuName?: unknown;
  meterName?: unknown;
  productName?: unknown;
  serviceName?: unknown;
  type?: unknown;
  unitOfMeasure?: unknown;
  effectiveStartDate?: unknown;
}

export function azureFilter(skus: readonly string[]): string {
  const names = skus.map((s) => `armSkuName eq '${s}'`).join(" or ");
  return `serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and (${names})`;
}

function describeAzureError(body: string): string {
  try {
    const j = JSON.parse(body) as { Error?: { Code?: string; Message?: string } };
    if (j.Error) return `${j.Error.Code ?? ""} ${j.Error.Message ?? ""}`.trim();
  } catch {
    // not JSON: fall through to the raw text
  }
  return body.slice(0, 200);
}

export function createAzurePriceFetcher(opts: AzurePriceFetcherOptions): PriceFetcher {
  const doFetch: FetchLike = opts.fetch ?? ((url, init) => fetch(url, init));
  const baseUrl = opts.baseUrl ?? AZURE_RETAIL_PRICES_URL;
  const origin = new URL(baseUrl).origin;
  const sizes = opts.sizes ?? AZURE_GPU_SIZES;
  const batchSize = Math.max(1, opts.batchSize ?? 10);
  const malformed = (what: string): PricingFetchError => new PricingFetchError("azure", "malformed", what);

  return {
    provider: "azure",
    source: AZURE_SOURCE,
    async fetch(signal: AbortSignal): Promise<FetchResult> {
      const warnings: string[] = [];
      const priceDate = isoDate(opts.clock.now());
      // (sku, region) → latest on-demand and spot meters.
      const rows = new Map<string, { sku: string; region: string; od?: { at: string; micros: bigint }; spot?: { at: string; micros: bigint } }>();
      const skus = Object.keys(sizes).sort();
      for (let i = 0; i < skus.length; i += batchSize) {
        const u = new URL(baseUrl);
        u.searchParams.set("api-version", opts.apiVersion ?? AZURE_API_VERSION);
        u.searchParams.set("$filter", azureFilter(skus.slice(i, i + batchSize)));
        let next: string | null = u.toString();
        const visited = new Set<string>();
        while (next) {
          if (visited.has(next)) throw malformed(`NextPageLink loops back to ${next}`);
          visited.add(next);
          if (new URL(next).origin !== origin) throw malformed(`NextPageLink ${next} leaves ${origin}`);
          const page = (await getJson("azure", next, { fetch: doFetch, signal, describe: describeAzureError, ...(opts.retry ? { retry: opts.retry } : {}) })) as {
            Items?: unknown;
            NextPageLink?: unknown;
          };
          if (typeof page !== "object" || page === null || !Array.isArray(page.Items)) throw malformed("a Retail Prices page has no Items array");
          for (const raw of page.Items as RetailItem[]) {
            const sku = raw.armSkuName;
            const region = raw.armRegionName;
            const skuName = typeof raw.skuName === "string" ? raw.skuName : "";
            const meterName = typeof raw.meterName === "string" ? raw.meterName : "";
            const productName = typeof raw.productName === "string" ? raw.productName : "";
            if (typeof sku !== "string" || typeof region !== "string" || typeof raw.effectiveStartDate !== "string") {
              throw malformed(`an item lacks armSkuName/armRegionName/effectiveStartDate: ${JSON.stringify(raw).slice(0, 200)}`);
            }
            if (!(sku in sizes)) continue; // the filter asked only for ours; tolerate extras
            if (raw.currencyCode !== "USD") throw malformed(`${sku} ${region}: currency ${String(raw.currencyCode)}, expected USD`);
            if (raw.type !== "Consumption" || raw.serviceName !== "Virtual Machines") continue;
            if (productName.includes("Windows") || skuName.includes("Low Priority") || meterName.includes("Low Priority")) continue;
            if (raw.unitOfMeasure !== "1 Hour") throw malformed(`${sku} ${region}: unit ${String(raw.unitOfMeasure)}, expected 1 Hour`);
            if (region === "") continue; // global meters carry no region
            const micros = usdNumberToMicros("azure", raw.retailPrice, `${sku} ${region} retailPrice`);
            const isSpot = skuName.endsWith(" Spot") || meterName.endsWith(" Spot");
            const key = `${sku}|${region}`;
            const row = rows.get(key) ?? { sku, region };
            const slot = isSpot ? "spot" : "od";
            const prev = row[slot];
            if (!prev || raw.effectiveStartDate > prev.at) row[slot] = { at: raw.effectiveStartDate, micros };
            rows.set(key, row);
          }
          const link = page.NextPageLink;
          if (link !== null && link !== undefined && typeof link !== "string") throw malformed("NextPageLink is not a string");
          next = link ? link : null;
        }
      }
      const offers: BareOffer[] = [];
      for (const row of [...rows.values()].sort((a, b) => (a.sku + a.region).localeCompare(b.sku + b.region))) {
        const s = sizes[row.sku]!;
        if (!row.od) {
          warnings.push(`${row.sku} ${row.region}: spot meter without an on-demand meter, skipped`);
          continue;
        }
        if (row.od.micros === 0n) {
          warnings.push(`${row.sku} ${row.region}: zero on-demand price, skipped`);
          continue;
        }
        // A spot meter equal to on-demand is the API's placeholder (seen for ND H200 v5), not a discount.
        const spot = row.spot && row.spot.micros > 0n && row.spot.micros < row.od.micros ? row.spot.micros : null;
        offers.push({
          provider: "azure",
          region: row.region,
          zone: "",
          instanceType: row.sku,
          ...s,
          onDemandMicrosPerHour: row.od.micros,
          spotMicrosPerHour: spot,
          priceDate,
          source: AZURE_SOURCE,
        });
      }
      if (offers.length === 0) throw malformed("the Retail Prices API returned no GPU VM prices");
      const keys = new Set(offers.map(offerKey));
      if (keys.size !== offers.length) throw malformed("duplicate offers");
      return { offers: offers.map((o) => completeOffer(o)), warnings };
    },
  };
}
