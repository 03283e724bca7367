import { DescribeSpotPriceHistoryCommand, EC2Client, type SpotPrice } from "@aws-sdk/client-ec2";
import { type Filter, GetProductsCommand, PricingClient, type PricingClientConfig } from "@aws-sdk/client-pricing";
import { type Clock, parseUsdMicros } from "@gpuorch/core";
import { AWS_ACCELERATOR_COUNTS, AWS_FAMILIES, awsFamily, awsRegionAndZone } from "./aws-instance-types.js";
import { PricingFetchError } from "./errors.js";
import type { FetchResult, PriceFetcher } from "./fetcher.js";
import { type BareOffer, completeOffer, isoDate, offerKey } from "./offers.js";

/**
 * AWS prices from the providers' own APIs:
 * - on-demand: Price List Query API `GetProducts` (ServiceCode AmazonEC2),
 *   one paginated query per accelerated instance family, Linux, shared
 *   tenancy, no pre-installed software, capacitystatus Used;
 * - spot: EC2 `DescribeSpotPriceHistory` per region (Linux/UNIX), the price in
 *   effect now in each Availability Zone, averaged over the region's AZs (and
 *   separately over each Local Zone group's AZs), as the shipped snapshot did.
 */
export const AWS_SOURCE = "aws-price-list";

/** Price List `instanceFamily` values that hold accelerated instance types. */
export const AWS_INSTANCE_FAMILIES = ["GPU instance", "Machine Learning ASIC Instances"] as const;

export interface AwsPriceFetcherOptions {
  clock: Clock;
  /** Default: the SDK's provider chain (env, shared config, SSO, instance role…). */
  credentials?: PricingClientConfig["credentials"];
  /** Price List API endpoint override (tests); the API itself lives in us-east-1. */
  pricingEndpoint?: string;
  pricingRegion?: string;
  /** EC2 endpoint override for every region (tests). */
  ec2Endpoint?: string;
  /** Only these regions (default: every region the Price List prices an accelerated type in). */
  regions?: readonly string[];
  /** SDK attempts per request (default 3; the SDK backs off between them). */
  maxAttempts?: number;
}

const TERM = (Field: string, Value: string): Filter => ({ Type: "TERM_MATCH", Field, Value });

export const AWS_PRODUCT_FILTERS: readonly Filter[] = [
  TERM("operatingSystem", "Linux"),
  TERM("tenancy", "Shared"),
  TERM("preInstalledSw", "NA"),
  TERM("capacitystatus", "Used"),
  TERM("licenseModel", "No License required"),
  TERM("operation", "RunInstances"),
];

// Errors that mean "this account may not use that region", not "the data is bad".
const REGION_NOT_ENABLED = new Set(["OptInRequired", "AuthFailure", "UnauthorizedOperation"]);
const CREDENTIAL_ERRORS = new Set([
  "CredentialsProviderError",
  "UnrecognizedClientException",
  "InvalidClientTokenId",
  "SignatureDoesNotMatch",
  "AccessDeniedException",
  "AuthFailure",
  "UnauthorizedOperation",
  "ExpiredTokenException",
]);
const THROTTLING_ERRORS = new Set(["ThrottlingException", "Throttling", "RequestLimitExceeded", "TooManyRequestsException"]);

function sdkError(e: unknown, what: string, signal: AbortSignal): PricingFetchError {
  if (e instanceof PricingFetchError) return e;
  const err = e as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
  const name = err?.name ?? "";
  const status = err?.$metadata?.httpStatusCode;
  const msg = `${what}: ${name ? `${name}: ` : ""}${err?.message ?? String(e)}`;
  const opts = { cause: e, ...(status === undefined ? {} : { status }) };
  if (signal.aborted || name === "AbortError") return new PricingFetchError("aws", "aborted", msg, opts);
  if (CREDENTIAL_ERRORS.has(name)) return new PricingFetchError("aws", "credentials", msg, opts);
  if (THROTTLING_ERRORS.has(name) || status === 429) return new PricingFetchError("aws", "throttled", msg, opts);
  if (status !== undefined && status >= 300) return new PricingFetchError("aws", "http", msg, opts);
  if (["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "EPIPE"].includes(err?.code ?? "") || name === "TimeoutError") {
    return new PricingFetchError("aws", "network", msg, opts);
  }
  // A 2xx the SDK could not deserialize, or anything else unexpected.
  return new PricingFetchError("aws", "malformed", msg, opts);
}

interface AwsProduct {
  instanceType: string;
  region: string;
  zone: string;
  vcpus: number;
  memoryGb: number;
  gpuAttr: string | undefined;
  onDemand: bigint;
}

function malformed(what: string): PricingFetchError {
  return new PricingFetchError("aws", "malformed", what);
}

/** One PriceList entry (a JSON string) → the fields we keep, or a reason to skip it. */
export function parseAwsPriceListItem(raw: string): AwsProduct | { skip: string } {
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch {
    throw malformed("a PriceList entry is not JSON");
  }
  const d = doc as {
    product?: { sku?: string; attributes?: Record<string, string> };
    terms?: { OnDemand?: Record<string, { priceDimensions?: Record<string, { unit?: string; pricePerUnit?: { USD?: string } }> }> };
  };
  const a = d.product?.attributes;
  if (!a || typeof a["instanceType"] !== "string") throw malformed("a PriceList entry has no product.attributes.instanceType");
  const instanceType = a["instanceType"];
  if (a["marketoption"] !== undefined && a["marketoption"] !== "OnDemand") return { skip: `${instanceType}: marketoption ${a["marketoption"]}` };
  const place = awsRegionAndZone(a["regionCode"] ?? "", a["locationType"] ?? "");
  if (!place) return { skip: `${instanceType}: location ${a["regionCode"] ?? "?"} (${a["locationType"] ?? "?"}) is not a region or zone group` };
  const vcpus = Number(a["vcpu"]);
  const mem = /^([\d.,]+)\s*GiB$/.exec(a["memory"] ?? "");
  if (!Number.isInteger(vcpus) || vcpus <= 0 || !mem) throw malformed(`${instanceType} ${place.region}: vcpu ${a["vcpu"]} / memory ${a["memory"]} unreadable`);
  const terms = Object.values(d.terms?.OnDemand ?? {});
  const dims = terms.flatMap((t) => Object.values(t.priceDimensions ?? {})).filter((p) => p.unit === "Hrs");
  if (terms.length !== 1 || dims.length !== 1) throw malformed(`${instanceType} ${place.region}: expected one OnDemand hourly price, got ${dims.length}`);
  const usd = dims[0]!.pricePerUnit?.USD;
  if (typeof usd !== "string" || !/^\d+(\.\d+)?$/.test(usd)) throw malformed(`${instanceType} ${place.region}: price ${JSON.stringify(usd)} unreadable`);
  const onDemand = parseUsdMicros(usd);
  if (onDemand === 0n) return { skip: `${instanceType} ${place.region}: zero on-demand price` };
  return { instanceType, ...place, vcpus, memoryGb: Number(mem[1]!.replace(/,/g, "")), gpuAttr: a["gpu"], onDemand };
}

/** The zone group an AZ belongs to: "" for a region's own AZ ("us-east-1a"), the group for a Local Zone AZ. */
export function awsZoneGroupOfAz(region: string, az: string): string | null {
  if (new RegExp(`^${region.replace(/-/g, "\\-")}[a-z]$`).test(az)) return "";
  const m = /^(.+-\d+)[a-z]$/.exec(az);
  return m && m[1]!.startsWith(`${region}-`) ? m[1]! : null;
}

/** Mean micro-USD of the latest price per AZ, per (instance type, zone group). */
export function averageSpotByZoneGroup(region: string, history: readonly SpotPrice[]): Map<string, bigint> {
  const latest = new Map<string, { at: number; micros: bigint; type: string; group: string }>();
  for (const h of history) {
    if (!h.InstanceType || !h.AvailabilityZone || h.SpotPrice === undefined) throw malformed(`spot history entry without type/AZ/price in ${region}`);
    if (!/^\d+(\.\d+)?$/.test(h.SpotPrice)) throw malformed(`spot price ${JSON.stringify(h.SpotPrice)} in ${region} unreadable`);
    const group = awsZoneGroupOfAz(region, h.AvailabilityZone);
    if (group === null) throw malformed(`AZ ${h.AvailabilityZone} is not in ${region}`);
    const at = h.Timestamp instanceof Date ? h.Timestamp.getTime() : 0;
    const k = `${h.InstanceType}|${h.AvailabilityZone}`;
    const prev = latest.get(k);
    if (!prev || at > prev.at) latest.set(k, { at, micros: parseUsdMicros(h.SpotPrice), type: h.InstanceType, group });
  }
  const sums = new Map<string, { sum: bigint; n: bigint }>();
  for (const v of latest.values()) {
    const k = `${v.type}|${v.group}`;
    const s = sums.get(k) ?? { sum: 0n, n: 0n };
    s.sum += v.micros;
    s.n += 1n;
    sums.set(k, s);
  }
  const out = new Map<string, bigint>();
  for (const [k, s] of sums) out.set(k, (s.sum * 2n + s.n) / (2n * s.n)); // rounded half up
  return out;
}

export function createAwsPriceFetcher(opts: AwsPriceFetcherOptions): PriceFetcher {
  const maxAttempts = opts.maxAttempts ?? 3;
  const common = { maxAttempts, ...(opts.credentials ? { credentials: opts.credentials } : {}) };
  const pricing = new PricingClient({
    region: opts.pricingRegion ?? "us-east-1",
    ...common,
    ...(opts.pricingEndpoint ? { endpoint: opts.pricingEndpoint } : {}),
  });
  const ec2Clients = new Map<string, EC2Client>();
  const ec2 = (region: string): EC2Client => {
    let c = ec2Clients.get(region);
    if (!c) {
      c = new EC2Client({ region, ...common, ...(opts.ec2Endpoint ? { endpoint: opts.ec2Endpoint } : {}) });
      ec2Clients.set(region, c);
    }
    return c;
  };

  async function onDemand(signal: AbortSignal, warnings: string[]): Promise<AwsProduct[]> {
    const products: AwsProduct[] = [];
    for (const family of AWS_INSTANCE_FAMILIES) {
      let token: string | undefined;
      do {
        const cmd = new GetProductsCommand({
          ServiceCode: "AmazonEC2",
          Filters: [...AWS_PRODUCT_FILTERS, TERM("instanceFamily", family)],
          FormatVersion: "aws_v1",
          MaxResults: 100,
          ...(token ? { NextToken: token } : {}),
        });
        let out;
        try {
          out = await pricing.send(cmd, { abortSignal: signal });
        } catch (e) {
          throw sdkError(e, `GetProducts (${family})`, signal);
        }
        if (!Array.isArray(out.PriceList)) throw malformed(`GetProducts (${family}): no PriceList in the response`);
        for (const item of out.PriceList as unknown[]) {
          const p = parseAwsPriceListItem(typeof item === "string" ? item : String(item));
          if ("skip" in p) warnings.push(p.skip);
          else products.push(p);
        }
        if (out.NextToken !== undefined && out.NextToken === token) throw malformed("GetProducts returned the same NextToken twice");
        token = out.NextToken || undefined;
      } while (token);
    }
    return products;
  }

  async function spot(region: string, types: readonly string[], signal: AbortSignal, warnings: string[]): Promise<Map<string, bigint>> {
    const now = opts.clock.now();
    const history: SpotPrice[] = [];
    let token: string | undefined;
    do {
      const cmd = new DescribeSpotPriceHistoryCommand({
        InstanceTypes: [...types] as never[],
        ProductDescriptions: ["Linux/UNIX"],
        // StartTime = EndTime = now: the price in effect now in each AZ.
        StartTime: now,
        EndTime: now,
        MaxResults: 1000,
        ...(token ? { NextToken: token } : {}),
      });
      let out;
      try {
        out = await ec2(region).send(cmd, { abortSignal: signal });
      } catch (e) {
        const name = (e as { name?: string }).name ?? "";
        if (REGION_NOT_ENABLED.has(name) && !signal.aborted) {
          warnings.push(`${region}: no spot prices (${name}: the account may not have this region enabled)`);
          return new Map();
        }
        throw sdkError(e, `DescribeSpotPriceHistory (${region})`, signal);
      }
      history.push(...(out.SpotPriceHistory ?? []));
      if (out.NextToken && out.NextToken === token) throw malformed(`DescribeSpotPriceHistory (${region}) returned the same nextToken twice`);
      token = out.NextToken || undefined;
    } while (token);
    return averageSpotByZoneGroup(region, history);
  }

  return {
    provider: "aws",
    source: AWS_SOURCE,
    async fetch(signal: AbortSignal): Promise<FetchResult> {
      const warnings: string[] = [];
      const priceDate = isoDate(opts.clock.now());
      const offers: BareOffer[] = [];
      const seen = new Set<string>();
      for (const p of await onDemand(signal, warnings)) {
        if (opts.regions && !opts.regions.includes(p.region)) continue;
        const family = AWS_FAMILIES[awsFamily(p.instanceType)];
        if (!family) {
          warnings.push(`${p.instanceType}: unknown accelerator family, skipped (add it to AWS_FAMILIES)`);
          continue;
        }
        const gpuCount = AWS_ACCELERATOR_COUNTS[p.instanceType] ?? Number(p.gpuAttr);
        if (!(gpuCount > 0)) {
          warnings.push(`${p.instanceType}: no accelerator count (gpu attribute ${JSON.stringify(p.gpuAttr)}), skipped`);
          continue;
        }
        const offer: BareOffer = {
          provider: "aws",
          region: p.region,
          zone: p.zone,
          instanceType: p.instanceType,
          gpuType: family.gpuType,
          gpuCount,
          gpuMemoryGb: family.gpuMemoryGb,
          vcpus: p.vcpus,
          memoryGb: p.memoryGb,
          onDemandMicrosPerHour: p.onDemand,
          spotMicrosPerHour: null,
          priceDate,
          source: AWS_SOURCE,
        };
        const key = offerKey(offer);
        if (seen.has(key)) throw malformed(`GetProducts listed ${key} twice`);
        seen.add(key);
        offers.push(offer);
      }
      const regions = [...new Set(offers.map((o) => o.region))].sort();
      for (const region of regions) {
        const inRegion = offers.filter((o) => o.region === region);
        const types = [...new Set(inRegion.map((o) => o.instanceType))].sort();
        const prices = await spot(region, types, signal, warnings);
        for (const o of inRegion) {
          const price = prices.get(`${o.instanceType}|${o.zone}`);
          // Spot above on-demand never happens on AWS today (spot is capped at on-demand); keep the cap explicit.
          if (price !== undefined) o.spotMicrosPerHour = price > o.onDemandMicrosPerHour ? o.onDemandMicrosPerHour : price;
        }
      }
      if (offers.length === 0) throw malformed("GetProducts returned no accelerated instance prices");
      return { offers: offers.map((o) => completeOffer(o)), warnings };
    },
  };
}
