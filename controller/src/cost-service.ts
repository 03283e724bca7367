import { AppError, type Clock, type CatalogOffer, type Principal, formatUsdMicros } from "@gpuorch/core";
import {
  type CostGrouping,
  type Database,
  costsByGroup,
  insertAlert,
  listPendingDeliveries,
  listPricingStatus,
  recordDeliveryAttempt,
} from "@gpuorch/db";
import type { CostServiceServer, GetCostsResponse, ListPricesResponse, PriceRow, PricingSourceStatus } from "@gpuorch/proto";
import { describePricingStatus } from "@gpuorch/pricing";
import { type Authenticate, unaryHandler } from "@gpuorch/rpc";
import type { Logger } from "@gpuorch/runtime";
import { canonicalGpuType } from "@gpuorch/spec";
import type { Alert, AlertStore } from "./alerts/index.js";
import type { Planner } from "./planner.js";

const PROVIDERS = ["aws", "gcp", "azure"] as const;

/** Live prices older than this count as stale (four refresh periods of the default 15 min TTL). */
export const STALE_AFTER_MS = 60 * 60_000;

/** Per-GPU-hour price of an offer (fractional GPU rows divide by their fraction), micro-USD, rounded up. */
function perGpu(m: bigint, gpuCount: number): bigint {
  const per1000 = BigInt(Math.max(1, Math.round(gpuCount * 1000)));
  return (m * 1000n + per1000 - 1n) / per1000;
}

export interface PriceQuery {
  gpuTypes: string[];
  providers: string[];
  regions: string[];
  spot: boolean;
  limit: number;
}

/** The `gpuorch pricing` table: filtered, cheapest $/GPU-hour first (spot price with --spot). */
export async function listPrices(db: Database["db"], offers: readonly CatalogOffer[], q: PriceQuery, now: Date): Promise<ListPricesResponse> {
  const gpuTypes = q.gpuTypes.map((g) => {
    const c = canonicalGpuType(g);
    if (!c) throw AppError.invalid(`unknown GPU type '${g}'`, [{ field: "gpu_types", message: `'${g}' is not a catalog GPU type (A100, A100-80GB, H100, L4, T4, …)` }]);
    return c;
  });
  for (const p of q.providers) {
    if (!(PROVIDERS as readonly string[]).includes(p)) throw AppError.invalid(`unknown provider '${p}'`, [{ field: "providers", message: `expected ${PROVIDERS.join(", ")}` }]);
  }
  const price = (o: CatalogOffer): bigint => perGpu(q.spot ? (o.spotMicrosPerHour as bigint) : o.onDemandMicrosPerHour, o.gpuCount);
  const rows = offers
    .filter(
      (o) =>
        (gpuTypes.length === 0 || gpuTypes.includes(o.gpuType as (typeof gpuTypes)[number])) &&
        (q.providers.length === 0 || q.providers.includes(o.provider)) &&
        (q.regions.length === 0 || q.regions.includes(o.region)) &&
        (!q.spot || o.spotMicrosPerHour !== null),
    )
    .sort((a, b) => {
      const d = price(a) - price(b);
      if (d !== 0n) return d < 0n ? -1 : 1;
      return `${a.provider}|${a.region}|${a.zone}|${a.instanceType}`.localeCompare(`${b.provider}|${b.region}|${b.zone}|${b.instanceType}`);
    });
  const limit = q.limit > 0 ? q.limit : 50;
  const statuses = await listPricingStatus(db);
  const sources: PricingSourceStatus[] = PROVIDERS.map((p) => {
    const s = statuses.find((x) => x.provider === p);
    const count = offers.filter((o) => o.provider === p).length;
    const dates = offers.filter((o) => o.provider === p).map((o) => o.priceDate).sort();
    return {
      provider: p,
      // stale: the last live refresh failed, or the last success is older than STALE_AFTER_MS.
      state: count === 0 ? "empty" : s?.lastError ? "stale" : !s?.lastSuccessAt ? "shipped" : now.getTime() - s.lastSuccessAt.getTime() > STALE_AFTER_MS ? "stale" : "fresh",
      detail: count === 0 ? "no prices: seed with --pricing-seed-dir or enable --pricing-refresh" : describePricingStatus(s, now),
      lastAttemptAt: s?.lastAttemptAt ?? undefined,
      lastSuccessAt: s?.lastSuccessAt ?? undefined,
      lastError: s?.lastError ?? "",
      rowCount: count,
      oldestPriceDate: dates[0] ?? "",
    };
  });
  return {
    rows: rows.slice(0, limit).map(
      (o): PriceRow => ({
        provider: o.provider,
        region: o.region,
        zone: o.zone,
        instanceType: o.instanceType,
        gpuType: o.gpuType,
        gpuCount: o.gpuCount,
        gpuMemoryGb: o.gpuMemoryGb,
        vcpus: o.vcpus,
        memoryGb: o.memoryGb,
        onDemandUsdPerHour: formatUsdMicros(o.onDemandMicrosPerHour),
        spotUsdPerHour: o.spotMicrosPerHour === null ? "" : formatUsdMicros(o.spotMicrosPerHour),
        onDemandUsdPerGpuHour: formatUsdMicros(perGpu(o.onDemandMicrosPerHour, o.gpuCount)),
        spotUsdPerGpuHour: o.spotMicrosPerHour === null ? "" : formatUsdMicros(perGpu(o.spotMicrosPerHour, o.gpuCount)),
        spotInterruptionsPerHour: o.spotInterruptionsPerHour ?? 0,
        spotAvailability: o.spotAvailability ?? 0,
        interconnect: o.interconnect ?? "",
        priceDate: o.priceDate,
        source: o.source,
      }),
    ),
    totalRows: rows.length,
    sources,
  };
}

export const COST_GROUPINGS: readonly CostGrouping[] = ["team", "project", "job"];

export function parseGrouping(by: string): CostGrouping {
  const b = by === "" ? "team" : by;
  if (!(COST_GROUPINGS as readonly string[]).includes(b)) throw AppError.invalid(`by must be one of ${COST_GROUPINGS.join(", ")}, got '${by}'`, [{ field: "by", message: `expected ${COST_GROUPINGS.join(", ")}` }]);
  return b as CostGrouping;
}

/** Costs for a caller: a team token sees its team only; an admin sees all. */
export async function costsFor(db: Database["db"], principal: Principal, by: CostGrouping, since: Date | null) {
  if (!principal.admin && principal.teamId === null) throw new AppError("PERMISSION_DENIED", "this token belongs to no team; costs need a team token or an admin token", { reason: "no_team" });
  const lines = await costsByGroup(db, { by, since, teamId: principal.admin ? null : principal.teamId });
  const total = lines.reduce((s, l) => s + l.costMicros, 0n);
  const gpuSeconds = lines.reduce((s, l) => s + l.gpuSeconds, 0);
  return { lines, totalMicros: total, gpuHours: gpuSeconds / 3600 };
}

/** GetCosts for a caller (gRPC and HTTP alike). */
export async function getCostsResponse(db: Database["db"], principal: Principal, byText: string, since: Date | null, now: Date): Promise<GetCostsResponse> {
  const by = parseGrouping(byText);
  const r = await costsFor(db, principal, by, since);
  return {
    lines: r.lines.map((l) => ({
      key: l.key,
      team: l.team,
      project: l.project ?? "",
      jobId: l.jobId ?? "",
      jobName: l.jobName ?? "",
      costUsd: formatUsdMicros(l.costMicros),
      estimatedUsd: l.estimatedMicros > 0n ? formatUsdMicros(l.estimatedMicros) : "",
      gpuHours: l.gpuSeconds / 3600,
      jobs: l.jobs,
      budgetUsd: l.budgetMicros === null ? "" : formatUsdMicros(l.budgetMicros),
      status: l.status ?? "",
    })),
    totalUsd: formatUsdMicros(r.totalMicros),
    totalGpuHours: r.gpuHours,
    asOf: now,
  };
}

export interface CostServiceDeps {
  db: Database["db"];
  clock: Clock;
  planner: Planner;
  authenticate: Authenticate;
  logger: Logger;
  onCall?: (method: string, code: string, seconds: number) => void;
  /** Underutilization advice, scoped to `team` (null: all teams, for admins). */
  recommendations: (team: string | null) => Promise<{ thresholdPercent: number; windowSeconds: number; items: import("@gpuorch/proto").Recommendation[] }>;
}

export function createCostServiceImpl(deps: CostServiceDeps): CostServiceServer {
  const opts = (method: string) => ({
    authenticate: deps.authenticate,
    logger: deps.logger,
    method: `CostService/${method}`,
    kinds: ["user"] as const,
    ...(deps.onCall ? { onCall: deps.onCall } : {}),
  });
  return {
    listPrices: unaryHandler(opts("ListPrices"), (req) =>
      listPrices(deps.db, deps.planner.offers, { gpuTypes: req.gpuTypes, providers: req.providers, regions: req.regions, spot: req.spot, limit: req.limit }, deps.clock.now()),
    ),
    getCosts: unaryHandler(opts("GetCosts"), (req, ctx) => getCostsResponse(deps.db, ctx.principal, req.by, req.since ?? null, deps.clock.now())),
    listRecommendations: unaryHandler(opts("ListRecommendations"), async (_req, ctx) => {
      const r = await deps.recommendations(ctx.principal.admin ? null : (ctx.principal.teamName ?? ""));
      return { recommendations: r.items, thresholdPercent: r.thresholdPercent, windowSeconds: r.windowSeconds };
    }),
  };
}

/** The dispatcher's AlertStore on the controller's database. */
export function createDbAlertStore(db: Database["db"]): AlertStore {
  return {
    recordAlert: (alert, deliveries) => insertAlert(db, alert, deliveries),
    recordDeliveryAttempt: (r) => recordDeliveryAttempt(db, r),
    listPendingDeliveries: async (o) => (await listPendingDeliveries(db, o)).map((p) => ({ ...p, alert: p.alert as Alert })),
  };
}

/**
 * A CostService message as the HTTP API's JSON: snake_case keys (the proto
 * field names), dates as RFC 3339, every field present (unlike proto3 JSON,
 * which drops zero values such as `feasible: false`).
 */
export function toSnakeJson(v: unknown): unknown {
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(toSnakeJson);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) continue;
      out[k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = toSnakeJson(x);
    }
    return out;
  }
  return v;
}
