import {
  AppError,
  type CatalogOffer,
  type CloudProvider,
  formatUsdMicros,
  INTERCONNECTS,
  type Interconnect,
  parseUsdMicros,
} from "@gpuorch/core";
import { sql } from "drizzle-orm";
import { dbCall } from "./db-errors.js";
import type { Db } from "./open.js";

/**
 * The pricing catalog in `gpu_pricing` and the live-refresh status in
 * `pricing_source_status`. Rows are grouped by source ("shipped:gcp.csv",
 * "seed:aws.csv", "aws-price-list", …); a refresh replaces one provider's
 * rows of one source in one transaction, so readers never see a half
 * written provider. Egress tiers are not stored: no live fetcher produces
 * them, so they come from the shipped/seed CSVs at start-up.
 */

/** How one provider's live refresh went (one row per provider). */
export interface PricingSourceStatus {
  provider: CloudProvider;
  source: string;
  lastAttemptAt: Date | null;
  lastSuccessAt: Date | null;
  lastError: string | null;
  consecutiveFailures: number;
  rowCount: number;
  oldestPriceDate: string | null;
  newestPriceDate: string | null;
}

export interface PricingOfferFilter {
  provider?: CloudProvider;
  region?: string;
  gpuType?: string;
  instanceType?: string;
}

/** Rows per (provider, source) with their price dates: what `gpuorch pricing` shows as the catalog's make-up. */
export interface PricingSourceSummary {
  provider: CloudProvider;
  source: string;
  rows: number;
  oldestPriceDate: string;
  newestPriceDate: string;
}

// Readers take one row per offer: the newest price, and among equal dates a
// live source before a seed directory before the shipped data.
const SOURCE_RANK = sql`CASE WHEN source LIKE 'shipped:%' THEN 2 WHEN source LIKE 'seed:%' THEN 1 ELSE 0 END`;

function toRecordset(offers: readonly CatalogOffer[], at: Date): string {
  return JSON.stringify(
    offers.map((o) => ({
      provider: o.provider,
      region: o.region,
      zone: o.zone,
      instance_type: o.instanceType,
      gpu_type: o.gpuType,
      gpu_count: String(o.gpuCount),
      gpu_memory_gb: String(o.gpuMemoryGb),
      vcpus: o.vcpus,
      memory_gb: String(o.memoryGb),
      on_demand: formatUsdMicros(o.onDemandMicrosPerHour),
      spot: o.spotMicrosPerHour === null ? null : formatUsdMicros(o.spotMicrosPerHour),
      spot_interruptions_per_hour: o.spotInterruptionsPerHour,
      spot_availability: o.spotAvailability,
      interconnect: o.interconnect,
      price_date: o.priceDate,
      source: o.source,
      updated_at: at.toISOString(),
    })),
  );
}

async function insertOffers(db: Db, offers: readonly CatalogOffer[], at: Date): Promise<void> {
  if (offers.length === 0) return;
  await db.execute(sql`
    INSERT INTO gpu_pricing (provider, region, zone, instance_type, gpu_type, gpu_count, gpu_memory_gb, vcpus, memory_gb,
      on_demand_usd_per_hour, spot_usd_per_hour, spot_interruptions_per_hour, spot_availability, interconnect, price_date, source, updated_at)
    SELECT provider::provider, region, zone, instance_type, gpu_type, gpu_count::numeric, gpu_memory_gb::numeric, vcpus, memory_gb::numeric,
      on_demand::numeric, spot::numeric, spot_interruptions_per_hour, spot_availability, interconnect, price_date::date, source, updated_at::timestamptz
    FROM jsonb_to_recordset(${toRecordset(offers, at)}::jsonb) AS r(provider text, region text, zone text, instance_type text, gpu_type text,
      gpu_count text, gpu_memory_gb text, vcpus int, memory_gb text, on_demand text, spot text, spot_interruptions_per_hour double precision,
      spot_availability double precision, interconnect text, price_date text, source text, updated_at text)`);
}

function checkOffers(offers: readonly CatalogOffer[], provider: CloudProvider | null, source: string | null): void {
  for (const o of offers) {
    if ((provider !== null && o.provider !== provider) || (source !== null && o.source !== source)) {
      throw AppError.invalid(`offer ${o.provider}/${o.region}/${o.instanceType} from ${o.source} does not belong to ${provider}/${source}`);
    }
  }
}

function dateRange(offers: readonly CatalogOffer[]): { oldest: string | null; newest: string | null } {
  let oldest: string | null = null;
  let newest: string | null = null;
  for (const o of offers) {
    if (oldest === null || o.priceDate < oldest) oldest = o.priceDate;
    if (newest === null || o.priceDate > newest) newest = o.priceDate;
  }
  return { oldest, newest };
}

/**
 * Replaces every row of (provider, source) with `offers` and records the
 * successful refresh in pricing_source_status, in one transaction.
 */
export async function replacePricingOffers(
  db: Db,
  input: { provider: CloudProvider; source: string; offers: readonly CatalogOffer[]; at: Date },
): Promise<{ rowCount: number; oldestPriceDate: string | null; newestPriceDate: string | null }> {
  checkOffers(input.offers, input.provider, input.source);
  const { oldest, newest } = dateRange(input.offers);
  const at = input.at.toISOString();
  await dbCall(() =>
    db.transaction(async (tx) => {
      await tx.execute(sql`DELETE FROM gpu_pricing WHERE provider = ${input.provider}::provider AND source = ${input.source}`);
      await insertOffers(tx, input.offers, input.at);
      await tx.execute(sql`
        INSERT INTO pricing_source_status (provider, source, last_attempt_at, last_success_at, last_error, consecutive_failures,
          row_count, oldest_price_date, newest_price_date)
        VALUES (${input.provider}::provider, ${input.source}, ${at}::timestamptz, ${at}::timestamptz, NULL, 0,
          ${input.offers.length}, ${oldest}::date, ${newest}::date)
        ON CONFLICT (provider) DO UPDATE SET source = excluded.source, last_attempt_at = excluded.last_attempt_at,
          last_success_at = excluded.last_success_at, last_error = NULL, consecutive_failures = 0, row_count = excluded.row_count,
          oldest_price_date = excluded.oldest_price_date, newest_price_date = excluded.newest_price_date`);
    }),
  );
  return { rowCount: input.offers.length, oldestPriceDate: oldest, newestPriceDate: newest };
}

/** Records a failed refresh attempt; the provider's rows and its last success stay as they were. */
export async function recordPricingFailure(db: Db, input: { provider: CloudProvider; source: string; at: Date; error: string }): Promise<void> {
  const at = input.at.toISOString();
  await dbCall(() =>
    db.execute(sql`
      INSERT INTO pricing_source_status (provider, source, last_attempt_at, last_error, consecutive_failures)
      VALUES (${input.provider}::provider, ${input.source}, ${at}::timestamptz, ${input.error}, 1)
      ON CONFLICT (provider) DO UPDATE SET source = excluded.source, last_attempt_at = excluded.last_attempt_at,
        last_error = excluded.last_error, consecutive_failures = pricing_source_status.consecutive_failures + 1`),
  );
}

interface StatusRow {
  provider: CloudProvider;
  source: string;
  last_attempt_at: string | Date | null;
  last_success_at: string | Date | null;
  last_error: string | null;
  consecutive_failures: number;
  row_count: number;
  oldest_price_date: string | null;
  newest_price_date: string | null;
}

const toDate = (v: string | Date | null): Date | null => (v === null ? null : v instanceof Date ? v : new Date(v));

export async function listPricingStatus(db: Db): Promise<PricingSourceStatus[]> {
  const res = (await dbCall(() =>
    db.execute(sql`
      SELECT provider::text AS provider, source, last_attempt_at, last_success_at, last_error, consecutive_failures, row_count,
        oldest_price_date::text AS oldest_price_date, newest_price_date::text AS newest_price_date
      FROM pricing_source_status ORDER BY provider`),
  )) as unknown as { rows: StatusRow[] };
  return res.rows.map((r) => ({
    provider: r.provider,
    source: r.source,
    lastAttemptAt: toDate(r.last_attempt_at),
    lastSuccessAt: toDate(r.last_success_at),
    lastError: r.last_error,
    consecutiveFailures: Number(r.consecutive_failures),
    rowCount: Number(r.row_count),
    oldestPriceDate: r.oldest_price_date,
    newestPriceDate: r.newest_price_date,
  }));
}

interface OfferRow {
  provider: CloudProvider;
  region: string;
  zone: string;
  instance_type: string;
  gpu_type: string;
  gpu_count: string;
  gpu_memory_gb: string;
  vcpus: number;
  memory_gb: string;
  on_demand: string;
  spot: string | null;
  spot_interruptions_per_hour: number | string | null;
  spot_availability: number | string | null;
  interconnect: string | null;
  price_date: string;
  source: string;
}

const num = (v: number | string | null): number | null => (v === null ? null : Number(v));

function toOffer(r: OfferRow): CatalogOffer {
  if (r.interconnect !== null && !(INTERCONNECTS as readonly string[]).includes(r.interconnect)) {
    throw AppError.internal(`gpu_pricing row ${r.provider}/${r.region}/${r.instance_type} has unknown interconnect ${r.interconnect}`);
  }
  return {
    provider: r.provider,
    region: r.region,
    zone: r.zone,
    instanceType: r.instance_type,
    gpuType: r.gpu_type,
    gpuCount: Number(r.gpu_count),
    gpuMemoryGb: Number(r.gpu_memory_gb),
    vcpus: Number(r.vcpus),
    memoryGb: Number(r.memory_gb),
    onDemandMicrosPerHour: parseUsdMicros(r.on_demand),
    spotMicrosPerHour: r.spot === null ? null : parseUsdMicros(r.spot),
    spotInterruptionsPerHour: num(r.spot_interruptions_per_hour),
    spotAvailability: num(r.spot_availability),
    interconnect: r.interconnect as Interconnect | null,
    priceDate: r.price_date,
    source: r.source,
  };
}

/**
 * The effective catalog: one row per (provider, region, zone, instance
 * type) — the newest price, a live source winning a tie over a seed
 * directory over the shipped data. Ordered by provider, region, zone,
 * instance type.
 */
export async function loadCatalogOffers(db: Db, filter: PricingOfferFilter = {}): Promise<CatalogOffer[]> {
  const where = [sql`TRUE`];
  if (filter.provider) where.push(sql`provider = ${filter.provider}::provider`);
  if (filter.region) where.push(sql`region = ${filter.region}`);
  if (filter.gpuType) where.push(sql`gpu_type = ${filter.gpuType}`);
  if (filter.instanceType) where.push(sql`instance_type = ${filter.instanceType}`);
  const res = (await dbCall(() =>
    db.execute(sql`
      SELECT DISTINCT ON (provider, region, zone, instance_type)
        provider::text AS provider, region, zone, instance_type, gpu_type, gpu_count::text AS gpu_count, gpu_memory_gb::text AS gpu_memory_gb,
        vcpus, memory_gb::text AS memory_gb, on_demand_usd_per_hour::text AS on_demand, spot_usd_per_hour::text AS spot,
        spot_interruptions_per_hour, spot_availability, interconnect, price_date::text AS price_date, source
      FROM gpu_pricing
      WHERE ${sql.join(where, sql` AND `)}
      ORDER BY provider, region, zone, instance_type, price_date DESC, ${SOURCE_RANK}, source`),
  )) as unknown as { rows: OfferRow[] };
  return res.rows.map(toOffer);
}

export async function summarizePricingSources(db: Db): Promise<PricingSourceSummary[]> {
  const res = (await dbCall(() =>
    db.execute(sql`
      SELECT provider::text AS provider, source, count(*)::int AS rows, min(price_date)::text AS oldest, max(price_date)::text AS newest
      FROM gpu_pricing GROUP BY provider, source ORDER BY provider, source`),
  )) as unknown as { rows: { provider: CloudProvider; source: string; rows: number; oldest: string; newest: string }[] };
  return res.rows.map((r) => ({ provider: r.provider, source: r.source, rows: Number(r.rows), oldestPriceDate: r.oldest, newestPriceDate: r.newest }));
}

/**
 * Loads a catalog (the shipped one on first start, a seed directory) into
 * gpu_pricing: each of its sources is inserted only if the table has no row
 * of that source yet, so a restart never overwrites newer prices. Returns the
 * sources it inserted. To replace a source's rows, use replacePricingOffers.
 */
export async function seedCatalogIfEmpty(db: Db, catalog: { offers: readonly CatalogOffer[] }, opts: { at: Date }): Promise<{ inserted: number; sources: string[] }> {
  checkOffers(catalog.offers, null, null);
  const bySource = new Map<string, CatalogOffer[]>();
  for (const o of catalog.offers) bySource.set(o.source, [...(bySource.get(o.source) ?? []), o]);
  return dbCall(() =>
    db.transaction(async (tx) => {
      // Two controllers starting at once on an empty database: one seeds, the other then sees its rows.
      await tx.execute(sql`LOCK TABLE gpu_pricing IN SHARE ROW EXCLUSIVE MODE`);
      const present = (await tx.execute(sql`SELECT DISTINCT source FROM gpu_pricing`)) as unknown as { rows: { source: string }[] };
      const have = new Set(present.rows.map((r) => r.source));
      let inserted = 0;
      const sources: string[] = [];
      for (const [source, offers] of [...bySource].sort((a, b) => a[0].localeCompare(b[0]))) {
        if (have.has(source)) continue;
        await insertOffers(tx, offers, opts.at);
        inserted += offers.length;
        sources.push(source);
      }
      return { inserted, sources };
    }),
  );
}

/**
 * The store @gpuorch/pricing's refresher runs against (its PricingStore
 * interface; db may not import pricing, so the shape is kept in step by a
 * test in packages/pricing).
 */
export function createPricingStore(db: Db): {
  replaceOffers(input: { provider: CloudProvider; source: string; offers: readonly CatalogOffer[]; at: Date }): Promise<{ rowCount: number }>;
  recordFailure(input: { provider: CloudProvider; source: string; at: Date; error: string }): Promise<void>;
  listStatus(): Promise<PricingSourceStatus[]>;
} {
  return {
    replaceOffers: (input) => replacePricingOffers(db, input),
    recordFailure: (input) => recordPricingFailure(db, input),
    listStatus: () => listPricingStatus(db),
  };
}
