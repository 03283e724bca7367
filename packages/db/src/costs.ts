import { type JobStatus, parseUsdMicros } from "@gpuorch/core";
import { sql } from "drizzle-orm";
import { dbCall, sqlRows } from "./db-errors.js";
import type { Db } from "./open.js";

/**
 * Spending, derived from durable facts only: every task row carries the
 * price of what it holds (`usd_micros_per_hour`: its GPUs' share of the
 * node's hourly price, fixed when it was placed) and the span it held it
 * (`created_at` → `ended_at`, or now while it still holds it). So a job's
 * cost is exact at any moment, also right after a controller crash: the
 * instance kept billing while the controller was away, and so does the sum.
 * `jobs.running_cost_usd` is that sum persisted (by the cost tracker, on an
 * interval and at every state change) for cheap reads.
 *
 * Arithmetic is PostgreSQL numeric (exact decimal) and each task's cost is
 * rounded once, to the micro-dollar; totals are sums of those integers.
 */


/** One job's persisted spending after a refresh. */
export interface JobSpend {
  jobId: string;
  name: string;
  teamId: string;
  team: string;
  project: string | null;
  status: JobStatus;
  /** Micro-USD spent so far (every attempt). */
  spentMicros: bigint;
  /** GPU-seconds held so far. */
  gpuSeconds: number;
  budgetMicros: bigint | null;
  estimatedMicros: bigint | null;
  /** When its first task was placed (null: never placed). */
  firstPlacedAt: Date | null;
  /** Micro-USD per hour of what it holds right now. */
  burnMicrosPerHour: bigint;
}

interface SpendRow {
  job_id: string;
  name: string;
  team_id: string;
  team: string;
  project: string | null;
  status: JobStatus;
  spent: string;
  gpu_seconds: string | number;
  budget: string | null;
  estimated: string | null;
  first_placed_at: Date | string | null;
  burn: string;
}

const micros = (s: string | null): bigint | null => (s === null ? null : BigInt(s));

/**
 * Recomputes and persists `running_cost_usd` (and GPU-seconds) of the jobs
 * that can still be spending: non-terminal ones, those named in `jobIds`,
 * and those that ended within `settleSeconds` (their last task's end may
 * have been written after the previous refresh). Returns every refreshed
 * job's spend, for budget checks and metrics.
 */
export async function refreshJobCosts(db: Db, opts: { jobIds?: readonly string[]; settleSeconds?: number } = {}): Promise<JobSpend[]> {
  const ids = `{${(opts.jobIds ?? []).join(",")}}`;
  const settle = opts.settleSeconds ?? 300;
  const r = await sqlRows<SpendRow>(
    db,
    sql`
      WITH target AS (
        SELECT j.id FROM jobs j
        WHERE j.status NOT IN ('completed', 'failed', 'cancelled')
           OR j.id = ANY(${ids}::uuid[])
           OR j.finished_at > now() - make_interval(secs => ${settle})
      ), spend AS (
        SELECT t.job_id,
          COALESCE(sum(round(t.usd_micros_per_hour::numeric * extract(epoch FROM (COALESCE(t.ended_at, now()) - t.created_at)) / 3600)), 0)::bigint AS spent,
          COALESCE(sum(jsonb_array_length(t.gpu_indices) * extract(epoch FROM (COALESCE(t.ended_at, now()) - t.created_at))), 0) AS gpu_seconds,
          min(t.created_at) AS first_placed_at,
          COALESCE(sum(t.usd_micros_per_hour) FILTER (WHERE t.ended_at IS NULL), 0)::bigint AS burn
        FROM tasks t JOIN target ON target.id = t.job_id
        GROUP BY t.job_id
      ), upd AS (
        UPDATE jobs SET running_cost_usd = round(spend.spent::numeric / 1000000, 6), gpu_seconds = round(spend.gpu_seconds::numeric, 3), cost_updated_at = now()
        FROM spend WHERE jobs.id = spend.job_id
        RETURNING jobs.id
      )
      SELECT j.id AS job_id, j.name, j.team_id, tm.name AS team, j.project, j.status,
        COALESCE(spend.spent, 0)::text AS spent, COALESCE(spend.gpu_seconds, 0)::float8 AS gpu_seconds,
        CASE WHEN j.budget_usd IS NULL THEN NULL ELSE round(j.budget_usd * 1000000)::bigint::text END AS budget,
        CASE WHEN j.estimated_cost_usd IS NULL THEN NULL ELSE round(j.estimated_cost_usd * 1000000)::bigint::text END AS estimated,
        spend.first_placed_at, COALESCE(spend.burn, 0)::text AS burn
      FROM target JOIN jobs j ON j.id = target.id JOIN teams tm ON tm.id = j.team_id
      LEFT JOIN spend ON spend.job_id = j.id`,
  );
  return r.map((x) => ({
    jobId: x.job_id,
    name: x.name,
    teamId: x.team_id,
    team: x.team,
    project: x.project,
    status: x.status,
    spentMicros: BigInt(x.spent),
    gpuSeconds: Number(x.gpu_seconds),
    budgetMicros: micros(x.budget),
    estimatedMicros: micros(x.estimated),
    firstPlacedAt: x.first_placed_at === null ? null : new Date(x.first_placed_at),
    burnMicrosPerHour: BigInt(x.burn),
  }));
}

export type CostGrouping = "team" | "project" | "job";

export interface CostGroupLine {
  key: string;
  team: string;
  project: string | null;
  jobId: string | null;
  jobName: string | null;
  status: JobStatus | null;
  costMicros: bigint;
  estimatedMicros: bigint;
  budgetMicros: bigint | null;
  gpuSeconds: number;
  jobs: number;
}

interface GroupRow {
  team: string;
  project: string | null;
  job_id: string | null;
  job_name: string | null;
  status: JobStatus | null;
  cost: string;
  estimated: string;
  budget: string | null;
  gpu_seconds: string | number;
  jobs: string | number;
}

/**
 * Spending grouped by team, team+project or job, computed from the tasks'
 * held spans clipped to [since, now]: "since" means money spent since then,
 * not jobs created since then. `teamId` restricts to one team (team tokens).
 */
export async function costsByGroup(db: Db, opts: { by: CostGrouping; since?: Date | null; teamId?: string | null }): Promise<CostGroupLine[]> {
  const since = opts.since ? opts.since.toISOString() : null;
  const team = opts.teamId ?? null;
  const byJob = opts.by === "job";
  const project = opts.by === "team" ? sql`NULL::text` : sql`j.project`;
  const r = await sqlRows<GroupRow>(
    db,
    sql`
      WITH per_job AS (
        SELECT t.job_id,
          COALESCE(sum(round(t.usd_micros_per_hour::numeric * greatest(0, extract(epoch FROM (COALESCE(t.ended_at, now()) - greatest(t.created_at, COALESCE(${since}::timestamptz, t.created_at))))) / 3600)), 0) AS cost,
          COALESCE(sum(jsonb_array_length(t.gpu_indices) * greatest(0, extract(epoch FROM (COALESCE(t.ended_at, now()) - greatest(t.created_at, COALESCE(${since}::timestamptz, t.created_at)))))), 0) AS gpu_seconds
        FROM tasks t
        WHERE ${since}::timestamptz IS NULL OR COALESCE(t.ended_at, now()) > ${since}::timestamptz
        GROUP BY t.job_id
      )
      SELECT tm.name AS team, ${project} AS project,
        ${byJob ? sql`j.id::text` : sql`NULL::text`} AS job_id,
        ${byJob ? sql`j.name` : sql`NULL::text`} AS job_name,
        ${byJob ? sql`j.status::text` : sql`NULL::text`} AS status,
        ${byJob ? sql`CASE WHEN j.budget_usd IS NULL THEN NULL ELSE round(j.budget_usd * 1000000)::bigint::text END` : sql`NULL::text`} AS budget,
        sum(per_job.cost)::bigint::text AS cost,
        sum(COALESCE(round(j.estimated_cost_usd * 1000000), 0))::bigint::text AS estimated,
        sum(per_job.gpu_seconds)::float8 AS gpu_seconds,
        count(*) AS jobs
      FROM per_job JOIN jobs j ON j.id = per_job.job_id JOIN teams tm ON tm.id = j.team_id
      WHERE ${team}::uuid IS NULL OR j.team_id = ${team}::uuid
      GROUP BY 1, 2, 3, 4, 5, 6
      ORDER BY sum(per_job.cost) DESC, 1, 2 NULLS FIRST, 3`,
  );
  return r.map((x) => ({
    key: opts.by === "team" ? x.team : opts.by === "project" ? `${x.team}/${x.project ?? "-"}` : (x.job_id ?? ""),
    team: x.team,
    project: x.project,
    jobId: x.job_id,
    jobName: x.job_name,
    status: x.status,
    costMicros: BigInt(x.cost),
    estimatedMicros: BigInt(x.estimated),
    budgetMicros: micros(x.budget),
    gpuSeconds: Number(x.gpu_seconds),
    jobs: Number(x.jobs),
  }));
}

/** Spending and GPU-hours per team and project over all time, for metrics. */
export async function costTotalsByTeamProject(db: Db): Promise<{ team: string; project: string; costMicros: bigint; gpuSeconds: number }[]> {
  const r = await sqlRows<{ team: string; project: string | null; cost: string; gpu_seconds: string | number }>(
    db,
    sql`SELECT tm.name AS team, j.project, round(sum(j.running_cost_usd) * 1000000)::bigint::text AS cost, sum(j.gpu_seconds)::float8 AS gpu_seconds
        FROM jobs j JOIN teams tm ON tm.id = j.team_id
        GROUP BY tm.name, j.project`,
  );
  return r.map((x) => ({ team: x.team, project: x.project ?? "", costMicros: BigInt(x.cost), gpuSeconds: Number(x.gpu_seconds) }));
}

/** The estimate the optimizer made at admission, stored with the job. */
export async function setJobEstimate(db: Db, jobId: string, estimatedUsd: string): Promise<void> {
  await dbCall(() => db.execute(sql`UPDATE jobs SET estimated_cost_usd = ${estimatedUsd}::numeric WHERE id = ${jobId}::uuid`));
}

/** One allocation row: the decision the job runs under, with the prices it was made with (append-only). */
export interface NewAllocation {
  id: string;
  jobId: string;
  attempt: number;
  provider: string;
  region: string;
  zone: string | null;
  instanceType: string;
  instanceCount: number;
  gpusPerInstance: number;
  spot: boolean;
  microsPerHour: bigint;
  estimatedHours: number;
  estimatedMicros: bigint;
  prices: unknown[];
}

const usdText = (m: bigint): string => {
  const neg = m < 0n;
  const a = neg ? -m : m;
  return `${neg ? "-" : ""}${a / 1_000_000n}.${(a % 1_000_000n).toString().padStart(6, "0")}`;
};

export async function insertAllocations(tx: Db, allocs: readonly NewAllocation[]): Promise<void> {
  if (allocs.length === 0) return;
  const payload = JSON.stringify(
    allocs.map((a) => ({
      id: a.id,
      job_id: a.jobId,
      attempt: a.attempt,
      provider: a.provider,
      region: a.region,
      zone: a.zone,
      instance_type: a.instanceType,
      instance_count: a.instanceCount,
      gpus_per_instance: a.gpusPerInstance,
      spot: a.spot,
      price: usdText(a.microsPerHour),
      hours: a.estimatedHours,
      cost: usdText(a.estimatedMicros),
      prices: a.prices,
    })),
  );
  await dbCall(() =>
    tx.execute(sql`
      INSERT INTO allocations (id, job_id, attempt, provider, region, zone, instance_type, instance_count, gpus_per_instance, spot,
        price_usd_per_hour, estimated_hours, estimated_cost_usd, prices)
      SELECT id, job_id, attempt, provider::provider, region, zone, instance_type, instance_count, gpus_per_instance, spot,
        price::numeric, hours, cost::numeric, prices
      FROM jsonb_to_recordset(${payload}::jsonb) AS r(id uuid, job_id uuid, attempt int, provider text, region text, zone text, instance_type text,
        instance_count int, gpus_per_instance numeric, spot boolean, price text, hours numeric, cost text, prices jsonb)`),
  );
}

/** The latest reading of every GPU held by a running task, with what the task pays for it. */
export interface HeldGpuReading {
  jobId: string;
  jobName: string;
  team: string;
  project: string | null;
  nodeId: string;
  hostname: string;
  gpuIndex: number;
  gpuName: string;
  memoryTotalMib: number;
  memoryUsedMib: number | null;
  utilizationPercent: number | null;
  readAt: Date | null;
  /** The task's price per hour divided over its GPUs, micro-USD. */
  microsPerGpuHour: bigint;
  specGpuMemoryGb: number | null;
}

export async function heldGpuReadings(db: Db): Promise<HeldGpuReading[]> {
  const r = await sqlRows<{
    job_id: string;
    job_name: string;
    team: string;
    project: string | null;
    node_id: string;
    hostname: string;
    gpu_index: number;
    gpu_name: string;
    memory_total_mib: string | number;
    memory_used_mib: string | number | null;
    util: number | null;
    read_at: Date | string | null;
    per_gpu: string;
    spec_mem: number | null;
  }>(
    db,
    sql`SELECT t.job_id, j.name AS job_name, tm.name AS team, j.project, t.node_id, n.hostname, g.index AS gpu_index, g.name AS gpu_name,
          g.memory_total_mib, g.memory_used_mib, g.utilization_gpu_percent AS util, g.updated_at AS read_at,
          (t.usd_micros_per_hour / greatest(1, jsonb_array_length(t.gpu_indices)))::text AS per_gpu,
          (j.spec->'resources'->>'gpu_memory_gb')::float8 AS spec_mem
        FROM tasks t
        JOIN task_gpus h ON h.task_id = t.id
        JOIN node_gpus g ON g.node_id = h.node_id AND g.index = h.gpu_index
        JOIN nodes n ON n.id = t.node_id
        JOIN jobs j ON j.id = t.job_id JOIN teams tm ON tm.id = j.team_id
        WHERE t.state = 'running'
        ORDER BY t.job_id, t.node_id, g.index`,
  );
  return r.map((x) => ({
    jobId: x.job_id,
    jobName: x.job_name,
    team: x.team,
    project: x.project,
    nodeId: x.node_id,
    hostname: x.hostname,
    gpuIndex: Number(x.gpu_index),
    gpuName: x.gpu_name,
    memoryTotalMib: Number(x.memory_total_mib),
    memoryUsedMib: x.memory_used_mib === null ? null : Number(x.memory_used_mib),
    utilizationPercent: x.util,
    readAt: x.read_at === null ? null : new Date(x.read_at),
    microsPerGpuHour: BigInt(x.per_gpu),
    specGpuMemoryGb: x.spec_mem,
  }));
}

/** One GPU's latest utilization for /metrics, with the team and project of the job holding it (empty when idle). */
export interface GpuUtilizationSample {
  hostname: string;
  gpuIndex: number;
  gpuName: string;
  utilizationPercent: number;
  memoryUsedMib: number | null;
  team: string;
  project: string;
}

/** Every GPU with a reading on a node that is not lost, ordered by host and index. */
export async function gpuUtilizationSamples(db: Db): Promise<GpuUtilizationSample[]> {
  const r = await sqlRows<{
    hostname: string;
    gpu_index: number;
    gpu_name: string;
    util: number;
    mem: string | number | null;
    team: string | null;
    project: string | null;
  }>(
    db,
    sql`SELECT n.hostname, g.index AS gpu_index, g.name AS gpu_name, g.utilization_gpu_percent AS util, g.memory_used_mib AS mem,
          tm.name AS team, j.project
        FROM node_gpus g
        JOIN nodes n ON n.id = g.node_id
        LEFT JOIN task_gpus h ON h.node_id = g.node_id AND h.gpu_index = g.index
        LEFT JOIN jobs j ON j.id = h.job_id
        LEFT JOIN teams tm ON tm.id = j.team_id
        WHERE n.state <> 'lost' AND g.utilization_gpu_percent IS NOT NULL
        ORDER BY n.hostname, g.index`,
  );
  return r.map((x) => ({
    hostname: x.hostname,
    gpuIndex: Number(x.gpu_index),
    gpuName: x.gpu_name,
    utilizationPercent: Number(x.util),
    memoryUsedMib: x.mem === null ? null : Number(x.mem),
    team: x.team ?? "",
    project: x.project ?? "",
  }));
}

/** What an attempt was placed on (its first allocation row; multi-node gangs share one) with the summed hourly price, or null. */
export async function attemptAllocation(
  db: Db,
  jobId: string,
  attempt: number,
): Promise<{ provider: string; region: string; instanceType: string; spot: boolean; microsPerHour: bigint } | null> {
  const [r] = await sqlRows<{ provider: string; region: string; instance_type: string; spot: boolean; total: string }>(
    db,
    sql`SELECT provider, region, instance_type, spot, (sum(price_usd_per_hour) OVER ())::text AS total
        FROM allocations WHERE job_id = ${jobId}::uuid AND attempt = ${attempt} ORDER BY created_at LIMIT 1`,
  );
  return r ? { provider: r.provider, region: r.region, instanceType: r.instance_type, spot: r.spot, microsPerHour: parseUsdMicros(r.total) } : null;
}
