import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  CLOUD_PROVIDERS,
  type Catalog,
  type CatalogOffer,
  type CloudProvider,
  EGRESS_SCOPES,
  type EgressScope,
  type EgressTier,
  type AppError,
  parseUsdMicros,
} from "@gpuorch/core";
import { CsvSyntaxError, parseCsv } from "./csv.js";
import { catalogFileError } from "./errors.js";
import { type BareOffer, KNOWN_GPU_TYPES, completeOffer, offerKey } from "./offers.js";

/**
 * Reading the catalog CSVs: the subset shipped in this package's data/ and
 * any "seed directory" in the same format (the full snapshot in
 * shared/data/pricing is one). Every row is validated; the first bad one
 * fails the whole load with `file:line: column X: why`.
 */

export const OFFER_COLUMNS = [
  "provider",
  "region",
  "zone",
  "instance_type",
  "gpu_type",
  "gpu_count",
  "gpu_memory_gb",
  "vcpus",
  "memory_gb",
  "on_demand_usd_per_hour",
  "spot_usd_per_hour",
] as const;
/** Optional trailing column: a row's own price date (YYYY-MM-DD). */
export const PRICE_DATE_COLUMN = "price_date";
export const EGRESS_COLUMNS = ["provider", "scope", "source_region", "tier_from_gb", "tier_to_gb", "usd_per_gb", "source", "note"] as const;

/** The package's shipped data directory (next to src/ and dist/ alike). */
export const SHIPPED_DATA_DIR = fileURLToPath(new URL("../data/", import.meta.url));

/**
 * Price dates of the snapshot in shared/data/pricing (its README), used for
 * rows whose file has no price_date column.
 */
export function snapshotPriceDate(provider: CloudProvider, instanceType: string): string {
  switch (provider) {
    case "aws":
      return "2025-11-30";
    case "azure":
      return "2026-05-20";
    case "gcp":
      // N1+GPU and A3 Ultra came from the May catalog; A2/A3 High/A3 Mega/G2/G4 from Cyclenerd's 2026-07-30 pricing.yml.
      return instanceType.startsWith("n1-") || instanceType.startsWith("a3-ultragpu-") ? "2026-05-20" : "2026-07-30";
  }
}

/**
 * GCP families whose shipped rows come from Cyclenerd's Apache-2.0 data. The
 * shipped loader refuses any other GCP row (N1+GPU and A3 Ultra came from an
 * unlicensed catalog and may only arrive through a seed directory).
 */
export const SHIPPABLE_GCP_PREFIXES = ["a2-highgpu-", "a2-megagpu-", "a2-ultragpu-", "a3-highgpu-", "a3-megagpu-", "g2-standard-", "g4-standard-"] as const;

/** GCP N1 rows name the host and its attached GPUs: `n1-highmem-8+nvidia-tesla-t4x1`. */
export interface GcpN1InstanceName {
  machineType: string;
  acceleratorType: string;
  acceleratorCount: number;
}

const N1_NAME = /^(.+)\+(.+)x(\d+)$/;

export function parseGcpN1InstanceName(name: string): GcpN1InstanceName | null {
  const m = N1_NAME.exec(name);
  if (!m) return null;
  return { machineType: m[1]!, acceleratorType: m[2]!, acceleratorCount: Number(m[3]) };
}

export interface OffersCsvOptions {
  /** Shown in errors and used for the source label, e.g. "gcp.csv". */
  file: string;
  provider: CloudProvider;
  /** CatalogOffer.source of every row ("shipped:gcp.csv", "seed:aws.csv"). */
  source: string;
  /** Price date for rows without a price_date column; default: the snapshot's date. */
  priceDate?: string;
  /** Accept GCP `n1-…+accelerator×n` names (seed directories only). */
  allowCompositeNames: boolean;
  /** Only these instance-type prefixes are accepted (the shipped licence guard). */
  allowedPrefixes?: readonly string[];
}

const DECIMAL = /^\d+(\.\d+)?$/;
const REGION = /^[a-z0-9]+(-[a-z0-9]+)*$/;
const INSTANCE_TYPE = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

function validDate(s: string): boolean {
  if (!DATE.test(s)) return false;
  const d = new Date(`${s}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === s;
}

function parseRecords(text: string, file: string): { line: number; fields: string[] }[] {
  try {
    return parseCsv(text);
  } catch (e) {
    if (e instanceof CsvSyntaxError) throw catalogFileError(file, e.line, null, e.message);
    throw e;
  }
}

function checkHeader(file: string, header: { line: number; fields: string[] } | undefined, expected: readonly string[], optional: readonly string[]): string[] {
  if (!header) throw catalogFileError(file, 1, null, "empty file: expected a header line");
  const got = header.fields.map((f) => f.trim());
  const okLength = got.length === expected.length || got.length === expected.length + optional.length;
  const okNames = expected.every((c, i) => got[i] === c) && got.slice(expected.length).every((c, i) => optional[i] === c);
  if (!okLength || !okNames) {
    const want = optional.length > 0 ? `${expected.join(",")}[,${optional.join(",")}]` : expected.join(",");
    throw catalogFileError(file, header.line, null, `header must be ${want}, got ${got.join(",")}`);
  }
  return got;
}

/** Parses one provider's offers CSV (aws.csv, gcp.csv, azure.csv). */
export function parseOffersCsv(text: string, opts: OffersCsvOptions): CatalogOffer[] {
  const { file } = opts;
  const records = parseRecords(text, file);
  const header = checkHeader(file, records[0], OFFER_COLUMNS, [PRICE_DATE_COLUMN]);
  const hasDate = header.length > OFFER_COLUMNS.length;
  if (opts.priceDate !== undefined && !validDate(opts.priceDate)) {
    throw catalogFileError(file, 1, null, `price date override ${JSON.stringify(opts.priceDate)} is not YYYY-MM-DD`);
  }
  const seen = new Map<string, number>();
  const offers: CatalogOffer[] = [];
  for (const rec of records.slice(1)) {
    const line = rec.line;
    if (rec.fields.length !== header.length) {
      throw catalogFileError(file, line, null, `expected ${header.length} fields, got ${rec.fields.length}`);
    }
    const get = (col: string): string => rec.fields[header.indexOf(col)]!.trim();
    const fail = (col: string, msg: string): AppError => catalogFileError(file, line, col, `${msg} (got ${JSON.stringify(get(col))})`);
    const positive = (col: string, max: number): number => {
      const s = get(col);
      const v = Number(s);
      if (!DECIMAL.test(s) || !(v > 0) || v > max) throw fail(col, `must be a decimal number > 0 and <= ${max}`);
      return v;
    };
    const money = (col: string): bigint => {
      const s = get(col);
      if (!DECIMAL.test(s)) throw fail(col, "must be a decimal USD amount");
      const v = parseUsdMicros(s);
      if (v <= 0n) throw fail(col, "must be > 0");
      return v;
    };

    const provider = get("provider");
    if (provider !== opts.provider) throw fail("provider", `must be ${opts.provider} in ${file}`);
    const region = get("region");
    if (!REGION.test(region)) throw fail("region", "must be a region code like us-east-1");
    const zone = get("zone");
    if (zone !== "" && !REGION.test(zone)) throw fail("zone", "must be empty or a zone code");
    const instanceType = get("instance_type");
    if (!INSTANCE_TYPE.test(instanceType)) throw fail("instance_type", "must be an instance type name");
    if (opts.allowedPrefixes && !opts.allowedPrefixes.some((p) => instanceType.startsWith(p))) {
      throw fail("instance_type", `is not one of the families this file may carry (${opts.allowedPrefixes.join(", ")})`);
    }
    const gpuType = get("gpu_type");
    if (!KNOWN_GPU_TYPES.includes(gpuType)) throw fail("gpu_type", `must be one of ${KNOWN_GPU_TYPES.join(", ")}`);
    const gpuCount = positive("gpu_count", 64);
    const gpuMemoryGb = positive("gpu_memory_gb", 1024);
    const vcpusRaw = get("vcpus");
    const vcpus = Number(vcpusRaw);
    if (!/^\d+$/.test(vcpusRaw) || vcpus < 1 || vcpus > 4096) throw fail("vcpus", "must be a whole number from 1 to 4096");
    const memoryGb = positive("memory_gb", 65536);
    const onDemand = money("on_demand_usd_per_hour");
    const spot = get("spot_usd_per_hour") === "" ? null : money("spot_usd_per_hour");
    if (spot !== null && spot > onDemand) throw fail("spot_usd_per_hour", "must not exceed on_demand_usd_per_hour");

    if (instanceType.includes("+")) {
      const n1 = opts.provider === "gcp" && opts.allowCompositeNames ? parseGcpN1InstanceName(instanceType) : null;
      if (!n1) throw fail("instance_type", "a `machine+acceleratorxN` name is only allowed for GCP N1 rows in a seed directory");
      if (!n1.machineType.startsWith("n1-")) throw fail("instance_type", "the host of a composite name must be an n1- machine type");
      if (n1.acceleratorCount !== gpuCount) throw fail("instance_type", `names ${n1.acceleratorCount} accelerators but gpu_count is ${gpuCount}`);
    }

    let priceDate = opts.priceDate ?? snapshotPriceDate(opts.provider, instanceType);
    if (hasDate) {
      priceDate = get(PRICE_DATE_COLUMN);
      if (!validDate(priceDate)) throw fail(PRICE_DATE_COLUMN, "must be a date YYYY-MM-DD");
    }

    const bare: BareOffer = {
      provider: opts.provider,
      region,
      zone,
      instanceType,
      gpuType,
      gpuCount,
      gpuMemoryGb,
      vcpus,
      memoryGb,
      onDemandMicrosPerHour: onDemand,
      spotMicrosPerHour: spot,
      priceDate,
      source: opts.source,
    };
    const key = offerKey(bare);
    const prev = seen.get(key);
    if (prev !== undefined) throw catalogFileError(file, line, null, `duplicate offer ${key} (first on line ${prev})`);
    seen.set(key, line);
    offers.push(completeOffer(bare));
  }
  return offers;
}

/** Parses egress.csv. `*` as source_region means "every region of the provider" (EgressTier.sourceRegion ""). */
export function parseEgressCsv(text: string, opts: { file: string }): EgressTier[] {
  const { file } = opts;
  const records = parseRecords(text, file);
  const header = checkHeader(file, records[0], EGRESS_COLUMNS, []);
  const tiers: (EgressTier & { line: number })[] = [];
  for (const rec of records.slice(1)) {
    const line = rec.line;
    if (rec.fields.length !== header.length) throw catalogFileError(file, line, null, `expected ${header.length} fields, got ${rec.fields.length}`);
    const get = (col: string): string => rec.fields[header.indexOf(col)]!.trim();
    const fail = (col: string, msg: string): AppError => catalogFileError(file, line, col, `${msg} (got ${JSON.stringify(get(col))})`);
    const provider = get("provider");
    if (!(CLOUD_PROVIDERS as readonly string[]).includes(provider)) throw fail("provider", `must be one of ${CLOUD_PROVIDERS.join(", ")}`);
    const scope = get("scope");
    if (!(EGRESS_SCOPES as readonly string[]).includes(scope)) throw fail("scope", `must be one of ${EGRESS_SCOPES.join(", ")}`);
    const sourceRegion = get("source_region");
    if (sourceRegion !== "*" && !REGION.test(sourceRegion)) throw fail("source_region", "must be * or a region code");
    const fromRaw = get("tier_from_gb");
    if (!DECIMAL.test(fromRaw)) throw fail("tier_from_gb", "must be a decimal number >= 0");
    const fromGb = Number(fromRaw);
    const toRaw = get("tier_to_gb");
    let toGb: number | null = null;
    if (toRaw !== "") {
      if (!DECIMAL.test(toRaw) || !(Number(toRaw) > fromGb)) throw fail("tier_to_gb", "must be empty (unbounded) or a number above tier_from_gb");
      toGb = Number(toRaw);
    }
    const usd = get("usd_per_gb");
    if (!DECIMAL.test(usd)) throw fail("usd_per_gb", "must be a decimal USD amount >= 0");
    if (get("source") === "") throw fail("source", "must name where the tier came from");
    tiers.push({
      provider: provider as CloudProvider,
      scope: scope as EgressScope,
      sourceRegion: sourceRegion === "*" ? "" : sourceRegion,
      fromGb,
      toGb,
      microsPerGb: parseUsdMicros(usd),
      line,
    });
  }
  // Each (provider, scope, source region) must be one ladder: 0 → … → unbounded, no gaps or overlaps.
  const ladders = new Map<string, (EgressTier & { line: number })[]>();
  for (const t of tiers) {
    const k = `${t.provider}/${t.scope}/${t.sourceRegion || "*"}`;
    ladders.set(k, [...(ladders.get(k) ?? []), t]);
  }
  for (const [k, ladder] of ladders) {
    ladder.sort((a, b) => a.fromGb - b.fromGb);
    let expectFrom = 0;
    for (const [i, t] of ladder.entries()) {
      if (t.fromGb !== expectFrom) throw catalogFileError(file, t.line, "tier_from_gb", `tiers of ${k} must be contiguous from 0: expected ${expectFrom}, got ${t.fromGb}`);
      if (t.toGb === null && i !== ladder.length - 1) throw catalogFileError(file, t.line, "tier_to_gb", `only the last tier of ${k} may be unbounded`);
      expectFrom = t.toGb ?? Number.POSITIVE_INFINITY;
    }
    const last = ladder[ladder.length - 1]!;
    if (last.toGb !== null) throw catalogFileError(file, last.line, "tier_to_gb", `the last tier of ${k} must be unbounded`);
  }
  return tiers.map(({ line: _line, ...t }) => t);
}

/** A catalog read from files, with what was read. */
export interface LoadedCatalog extends Catalog {
  offers: CatalogOffer[];
  egress: EgressTier[];
  /** The files read and how many rows each gave, in read order. */
  files: { file: string; rows: number }[];
}

async function readIfPresent(path: string): Promise<string | null> {
  try {
    return await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
}

/**
 * The catalog shipped with the package: GCP A2/A3 High/A3 Mega/G2/G4 rows and
 * the egress tiers, all from permissively licensed sources (data/PROVENANCE.md).
 */
export async function loadShippedCatalog(dir: string = SHIPPED_DATA_DIR): Promise<LoadedCatalog> {
  const out: LoadedCatalog = { offers: [], egress: [], files: [] };
  const gcp = await readFile(join(dir, "gcp.csv"), "utf8");
  const offers = parseOffersCsv(gcp, {
    file: "gcp.csv",
    provider: "gcp",
    source: "shipped:gcp.csv",
    allowCompositeNames: false,
    allowedPrefixes: SHIPPABLE_GCP_PREFIXES,
  });
  out.offers.push(...offers);
  out.files.push({ file: "gcp.csv", rows: offers.length });
  const egress = parseEgressCsv(await readFile(join(dir, "egress.csv"), "utf8"), { file: "egress.csv" });
  out.egress.push(...egress);
  out.files.push({ file: "egress.csv", rows: egress.length });
  return out;
}

export interface LoadCatalogDirOptions {
  /** Price date for every row without a price_date column (default: the shared snapshot's dates). */
  priceDate?: string;
  /** Source label prefix (default "seed"): rows get "<prefix>:<file>". */
  sourcePrefix?: string;
}

/**
 * Reads a seed directory: aws.csv, gcp.csv, azure.csv and egress.csv, each
 * only if present (a directory with none of them is an error: likely a typo).
 */
export async function loadCatalogDir(dir: string, opts: LoadCatalogDirOptions = {}): Promise<LoadedCatalog> {
  const prefix = opts.sourcePrefix ?? "seed";
  const out: LoadedCatalog = { offers: [], egress: [], files: [] };
  for (const provider of CLOUD_PROVIDERS) {
    const file = `${provider}.csv`;
    const text = await readIfPresent(join(dir, file));
    if (text === null) continue;
    const offers = parseOffersCsv(text, {
      file,
      provider,
      source: `${prefix}:${file}`,
      allowCompositeNames: true,
      ...(opts.priceDate === undefined ? {} : { priceDate: opts.priceDate }),
    });
    out.offers.push(...offers);
    out.files.push({ file, rows: offers.length });
  }
  const egressText = await readIfPresent(join(dir, "egress.csv"));
  if (egressText !== null) {
    const egress = parseEgressCsv(egressText, { file: "egress.csv" });
    out.egress.push(...egress);
    out.files.push({ file: "egress.csv", rows: egress.length });
  }
  if (out.files.length === 0) {
    throw catalogFileError(dir, 0, null, "no aws.csv, gcp.csv, azure.csv or egress.csv in this directory");
  }
  return out;
}
