import { AppError } from "@gpuorch/core";
import type { CostClient, JobClient } from "@gpuorch/rpc";
import type { PlanJobResponse, PlanPart, PricingSourceStatus } from "@gpuorch/rpc";
import { formatTable } from "./table.js";

/**
 * `gpuorch plan`, `pricing`, `costs` and `recommendations`: thin renderings of
 * the controller's answers. The JSON forms use snake_case keys and keep money
 * as decimal strings (never floats).
 */

type Print = (s: string) => void;

const usd = (s: string): string => (s === "" ? "-" : `$${trimUsd(s)}`);

/** Totals for people: whole cents (half up), amounts under a cent as they are. --json keeps every digit. */
export function cents(s: string): string {
  if (s === "") return "-";
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(s);
  if (!m) return s;
  const micros = BigInt(m[2]!) * 1_000_000n + BigInt((m[3] ?? "").padEnd(6, "0").slice(0, 6) || "0");
  if (micros !== 0n && micros < 10_000n) return `${m[1]}$${trimUsd(s.replace(/^-/, ""))}`;
  const c = (micros + 5_000n) / 10_000n;
  return `${m[1]}$${c / 100n}.${String(c % 100n).padStart(2, "0")}`;
}

/** "12.340000" → "12.34"; at least two fraction digits, at most six. */
export function trimUsd(s: string): string {
  const m = /^(-?\d+)(?:\.(\d+))?$/.exec(s);
  if (!m) return s;
  const frac = (m[2] ?? "").replace(/0+$/, "");
  return `${m[1]}.${frac.padEnd(2, "0")}`;
}

const hours = (h: number): string => (h >= 100 ? h.toFixed(0) : h >= 10 ? h.toFixed(1) : h.toFixed(2));

function partText(p: PlanPart): string {
  if (p.nodeId) return `${p.units > 0 ? `${p.units} → ` : ""}${p.provider} node ${p.instanceType || p.nodeId} (${p.gpusPerInstance}× ${p.gpuType})`;
  const where = `${p.provider} ${p.region}${p.zone ? `/${p.zone}` : ""}`;
  return `${p.units > 0 ? `${p.units} → ` : ""}${where} ${p.instanceType} ×${p.instanceCount}${p.spot ? " spot" : ""}`;
}

export function planToJson(res: PlanJobResponse): unknown {
  return {
    feasible: res.feasible,
    infeasible_reason: res.infeasibleReason || null,
    offers_considered: res.offersConsidered,
    oldest_price_date: res.oldestPriceDate || null,
    notes: res.notes,
    options: res.options.map((o) => ({
      rank: o.rank,
      feasible: o.feasible,
      reason: o.reason || null,
      parts: o.parts.map((p) => ({
        provider: p.provider,
        region: p.region,
        zone: p.zone || null,
        instance_type: p.instanceType,
        instance_count: p.instanceCount,
        gpus_per_instance: p.gpusPerInstance,
        gpu_type: p.gpuType,
        spot: p.spot,
        units: p.units,
        node_id: p.nodeId || null,
        usd_per_hour: p.usdPerHour,
        price_date: p.priceDate || null,
      })),
      usd_per_hour: o.usdPerHour,
      estimated_hours: o.estimatedHours,
      compute_usd: o.computeUsd,
      egress_usd: o.egressUsd,
      spot_overhead_usd: o.spotOverheadUsd,
      total_usd: o.totalUsd,
      reliability: o.reliability,
      expected_completion: o.expectedCompletion?.toISOString() ?? null,
      score: o.score,
    })),
  };
}

export function formatPlan(res: PlanJobResponse): string {
  const rows = res.options.map((o) => [
    o.rank > 0 ? String(o.rank) : "-",
    o.parts.map(partText).join(" + "),
    usd(o.usdPerHour),
    hours(o.estimatedHours),
    cents(o.totalUsd),
    `${cents(o.computeUsd)} + ${cents(o.egressUsd)} + ${cents(o.spotOverheadUsd)}`,
    o.reliability.toFixed(3),
    o.rank === 1 ? "chosen" : o.reason,
  ]);
  const head = res.feasible
    ? `Plan: ${res.options[0] ? res.options[0].parts.map(partText).join(" + ") : "-"} — ${cents(res.options[0]?.totalUsd ?? "")} total`
    : `Infeasible: ${res.infeasibleReason}`;
  const lines = [head, ""];
  if (rows.length > 0) lines.push(formatTable(["RANK", "TARGET", "$/H", "EST. H", "EST. TOTAL", "COMPUTE + EGRESS + SPOT", "RELIAB.", "WHY"], rows), "");
  lines.push(`${res.offersConsidered} offers considered${res.oldestPriceDate ? `; oldest price used: ${res.oldestPriceDate}` : ""}`);
  for (const n of res.notes) lines.push(`note: ${n}`);
  return lines.join("\n");
}

export async function runPlan(client: JobClient, specYaml: string, limit: number, json: boolean, print: Print): Promise<number> {
  const res = await client.planJob({ specYaml, limit });
  print(json ? JSON.stringify(planToJson(res)) : formatPlan(res));
  // An infeasible spec is an answer, but scripts must be able to tell: exit 1 like a rejected submit.
  return res.feasible ? 0 : 1;
}

export interface PricingFlags {
  gpu?: string[] | undefined;
  provider?: string[] | undefined;
  region?: string[] | undefined;
  spot?: boolean | undefined;
  limit?: number | undefined;
}

const splitList = (xs: string[] | undefined): string[] => (xs ?? []).flatMap((x) => x.split(",")).map((x) => x.trim()).filter(Boolean);

export async function runPricing(client: CostClient, flags: PricingFlags, json: boolean, print: Print): Promise<number> {
  const res = await client.listPrices({
    gpuTypes: splitList(flags.gpu),
    providers: splitList(flags.provider),
    regions: splitList(flags.region),
    spot: flags.spot ?? false,
    limit: flags.limit ?? 0,
  });
  if (json) {
    print(
      JSON.stringify({
        total_rows: res.totalRows,
        rows: res.rows.map((r) => ({
          provider: r.provider,
          region: r.region,
          zone: r.zone || null,
          instance_type: r.instanceType,
          gpu_type: r.gpuType,
          gpu_count: r.gpuCount,
          gpu_memory_gb: r.gpuMemoryGb,
          vcpus: r.vcpus,
          memory_gb: r.memoryGb,
          on_demand_usd_per_hour: r.onDemandUsdPerHour,
          spot_usd_per_hour: r.spotUsdPerHour || null,
          on_demand_usd_per_gpu_hour: r.onDemandUsdPerGpuHour,
          spot_usd_per_gpu_hour: r.spotUsdPerGpuHour || null,
          spot_interruptions_per_hour: r.spotUsdPerHour ? r.spotInterruptionsPerHour : null,
          spot_availability: r.spotUsdPerHour ? r.spotAvailability : null,
          interconnect: r.interconnect || null,
          price_date: r.priceDate,
          source: r.source,
        })),
        sources: res.sources.map(sourceToJson),
      }),
    );
    return 0;
  }
  const rows = res.rows.map((r) => [
    r.provider,
    r.region + (r.zone ? `/${r.zone}` : ""),
    r.instanceType,
    `${r.gpuCount}× ${r.gpuType} ${r.gpuMemoryGb}GB`,
    usd(flags.spot ? r.spotUsdPerGpuHour : r.onDemandUsdPerGpuHour),
    usd(r.onDemandUsdPerHour),
    usd(r.spotUsdPerHour),
    r.interconnect || "-",
    r.priceDate,
  ]);
  print(formatTable(["PROVIDER", "REGION", "INSTANCE", "GPUS", flags.spot ? "SPOT $/GPU-H" : "$/GPU-H", "ON-DEMAND $/H", "SPOT $/H", "INTERCONNECT", "PRICED"], rows));
  print(`${res.rows.length} of ${res.totalRows} rows${res.rows.length < res.totalRows ? " (--limit N for more)" : ""}`);
  for (const s of res.sources) print(`${s.provider}: ${s.state}${s.detail ? ` — ${s.detail}` : ""}`);
  return 0;
}

function sourceToJson(s: PricingSourceStatus): unknown {
  return {
    provider: s.provider,
    state: s.state,
    detail: s.detail || null,
    last_attempt_at: s.lastAttemptAt?.toISOString() ?? null,
    last_success_at: s.lastSuccessAt?.toISOString() ?? null,
    last_error: s.lastError || null,
    row_count: s.rowCount,
    oldest_price_date: s.oldestPriceDate || null,
  };
}

export const COST_GROUPS = ["team", "project", "job"] as const;

/** `--since` accepts an ISO instant or a relative age like 24h, 7d, 30m. */

export async function runCosts(client: CostClient, by: string, since: Date | undefined, json: boolean, print: Print): Promise<number> {
  if (!(COST_GROUPS as readonly string[]).includes(by)) {
    throw AppError.invalid(`--by must be one of ${COST_GROUPS.join(", ")}, got '${by}'`, [{ field: "by", message: `expected ${COST_GROUPS.join(", ")}` }]);
  }
  const res = await client.getCosts({ by, ...(since ? { since } : {}) });
  if (json) {
    print(
      JSON.stringify({
        by,
        since: since?.toISOString() ?? null,
        as_of: res.asOf?.toISOString() ?? null,
        total_usd: res.totalUsd,
        total_gpu_hours: res.totalGpuHours,
        lines: res.lines.map((l) => ({
          key: l.key,
          team: l.team,
          project: l.project || null,
          job_id: l.jobId || null,
          job_name: l.jobName || null,
          status: l.status || null,
          cost_usd: l.costUsd,
          estimated_usd: l.estimatedUsd || null,
          budget_usd: l.budgetUsd || null,
          gpu_hours: l.gpuHours,
          jobs: l.jobs,
        })),
      }),
    );
    return 0;
  }
  const headers =
    by === "job" ? ["JOB", "NAME", "TEAM", "PROJECT", "STATUS", "COST", "ESTIMATED", "BUDGET", "GPU-H"] : [by.toUpperCase(), "JOBS", "COST", "ESTIMATED", "GPU-H"];
  const rows = res.lines.map((l) =>
    by === "job"
      ? [l.jobId, l.jobName, l.team, l.project || "-", l.status, cents(l.costUsd), cents(l.estimatedUsd), cents(l.budgetUsd), l.gpuHours.toFixed(2)]
      : [l.key, String(l.jobs), cents(l.costUsd), cents(l.estimatedUsd), l.gpuHours.toFixed(2)],
  );
  print(formatTable(headers, rows));
  print(`total ${cents(res.totalUsd)}, ${res.totalGpuHours.toFixed(2)} GPU-hours${since ? ` since ${since.toISOString()}` : ""}`);
  return 0;
}

export async function runRecommendations(client: CostClient, json: boolean, print: Print): Promise<number> {
  const res = await client.listRecommendations();
  if (json) {
    print(
      JSON.stringify({
        threshold_percent: res.thresholdPercent,
        window_seconds: res.windowSeconds,
        recommendations: res.recommendations.map((r) => ({
          job_id: r.jobId,
          job_name: r.jobName,
          node_id: r.nodeId,
          hostname: r.hostname,
          gpus: r.gpus,
          mean_utilization_percent: r.meanUtilizationPercent,
          current_gpu_type: r.currentGpuType,
          current_usd_per_hour: r.currentUsdPerHour,
          needed_gpu_memory_gb: r.neededGpuMemoryGb,
          suggested_gpu_type: r.suggestedGpuType || null,
          suggested_provider: r.suggestedProvider || null,
          suggested_region: r.suggestedRegion || null,
          suggested_instance_type: r.suggestedInstanceType || null,
          suggested_usd_per_hour: r.suggestedUsdPerHour || null,
          saving_usd_per_hour: r.savingUsdPerHour || null,
          reason: r.reason,
        })),
      }),
    );
    return 0;
  }
  if (res.recommendations.length === 0) {
    print(`no GPU of a running job is under ${res.thresholdPercent}% utilization over the last ${Math.round(res.windowSeconds / 60)} min`);
    return 0;
  }
  print(
    formatTable(
      ["JOB", "NODE", "GPUS", "UTIL %", "NOW", "$/H", "NEEDS", "SUGGESTED", "$/H", "SAVES $/H"],
      res.recommendations.map((r) => [
        r.jobName || r.jobId,
        r.hostname,
        String(r.gpus),
        r.meanUtilizationPercent.toFixed(0),
        r.currentGpuType,
        usd(r.currentUsdPerHour),
        `${r.neededGpuMemoryGb.toFixed(0)} GB`,
        r.suggestedGpuType ? `${r.suggestedGpuType} (${r.suggestedProvider} ${r.suggestedRegion} ${r.suggestedInstanceType})` : r.reason,
        usd(r.suggestedUsdPerHour),
        usd(r.savingUsdPerHour),
      ]),
    ),
  );
  print(`GPUs under ${res.thresholdPercent}% mean utilization over the last ${Math.round(res.windowSeconds / 60)} min`);
  return 0;
}
