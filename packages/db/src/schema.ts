/**
 * The drizzle schema: the single source for `drizzle-kit generate`, which
 * writes the SQL migrations under `packages/db/drizzle/`. Column names are
 * snake_case in SQL and camelCase in TypeScript. Enum values come from
 * @gpuorch/core so the database and the domain can never disagree.
 *
 * Triggers (append-only `job_events` and `allocations`) are not expressible
 * here; they live in a custom migration (`drizzle-kit generate --custom`).
 */
import {
  ARTIFACT_TYPES,
  EXECUTION_MODES,
  FRAMEWORKS,
  INTERCONNECTS,
  JOB_STATUSES,
  JOB_TYPES,
  type JobTarget,
  type MigDeviceSpec,
  NODE_STATES,
  PROVIDERS,
  TASK_STATES,
  TOKEN_KINDS,
} from "@gpuorch/core";
import { sql } from "drizzle-orm";
import {
  bigint,
  bigserial,
  boolean,
  check,
  date,
  doublePrecision,
  index,
  integer,
  jsonb,
  numeric,
  pgEnum,
  primaryKey,
  real,
  pgTable,
  text,
  timestamp,
  unique,
  uniqueIndex,
  uuid,
} from "drizzle-orm/pg-core";

export const jobStatusEnum = pgEnum("job_status", JOB_STATUSES);
export const jobTypeEnum = pgEnum("job_type", JOB_TYPES);
export const frameworkEnum = pgEnum("framework", FRAMEWORKS);
export const executionModeEnum = pgEnum("execution_mode", EXECUTION_MODES);
export const artifactTypeEnum = pgEnum("artifact_type", ARTIFACT_TYPES);
export const providerEnum = pgEnum("provider", PROVIDERS);
export const tokenKindEnum = pgEnum("token_kind", TOKEN_KINDS);
export const nodeStateEnum = pgEnum("node_state", NODE_STATES);
export const taskStateEnum = pgEnum("task_state", TASK_STATES);

const createdAt = () => timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow();
const tstz = (name: string) => timestamp(name, { withTimezone: true, mode: "date" });

export const teams = pgTable("teams", {
  id: uuid("id").primaryKey(),
  name: text("name").notNull().unique("teams_name_unique"),
  createdAt: createdAt(),
});

export const apiTokens = pgTable(
  "api_tokens",
  {
    id: uuid("id").primaryKey(),
    teamId: uuid("team_id").references(() => teams.id),
    name: text("name").notNull(),
    kind: tokenKindEnum("kind").notNull(),
    isAdmin: boolean("is_admin").notNull().default(false),
    // sha256 hex of the bearer token; the token itself is never stored.
    tokenHash: text("token_hash").notNull().unique("api_tokens_token_hash_unique"),
    createdAt: createdAt(),
    lastUsedAt: tstz("last_used_at"),
    revokedAt: tstz("revoked_at"),
  },
  (t) => [
    check("api_tokens_admin_or_team", sql`${t.isAdmin} OR ${t.teamId} IS NOT NULL`),
    check("api_tokens_token_hash_sha256", sql`${t.tokenHash} ~ '^[0-9a-f]{64}$'`),
  ],
);

export const jobs = pgTable(
  "jobs",
  {
    id: uuid("id").primaryKey(),
    teamId: uuid("team_id")
      .notNull()
      .references(() => teams.id),
    name: text("name").notNull(),
    project: text("project"),
    type: jobTypeEnum("type").notNull(),
    framework: frameworkEnum("framework").notNull(),
    executionMode: executionModeEnum("execution_mode").notNull(),
    status: jobStatusEnum("status").notNull().default("pending"),
    statusReason: text("status_reason"),
    priority: integer("priority").notNull(),
    attempt: integer("attempt").notNull().default(1),
    maxAttempts: integer("max_attempts").notNull(),
    // Bumped by every status transition and only by them: seq of the
    // transition's event == the new version (see transitionJob).
    version: integer("version").notNull().default(1),
    gpus: integer("gpus").notNull(),
    specYaml: text("spec_yaml").notNull(),
    spec: jsonb("spec").$type<Record<string, unknown>>().notNull(),
    budgetUsd: numeric("budget_usd", { precision: 14, scale: 2 }),
    deadline: tstz("deadline"),
    estimatedCostUsd: numeric("estimated_cost_usd", { precision: 18, scale: 6 }),
    runningCostUsd: numeric("running_cost_usd", { precision: 18, scale: 6 }).notNull().default("0"),
    target: jsonb("target").$type<JobTarget>(),
    idempotencyKey: text("idempotency_key"),
    createdAt: createdAt(),
    updatedAt: tstz("updated_at").notNull().defaultNow(),
    scheduledAt: tstz("scheduled_at"),
    startedAt: tstz("started_at"),
    finishedAt: tstz("finished_at"),
    // Persisted by the cost tracker from the tasks' held spans (see costs.ts).
    gpuSeconds: numeric("gpu_seconds", { precision: 20, scale: 3 }).notNull().default("0"),
    costUpdatedAt: tstz("cost_updated_at"),
  },
  (t) => [
    check("jobs_priority_range", sql`${t.priority} BETWEEN 0 AND 1000`),
    check("jobs_attempt_min", sql`${t.attempt} >= 1`),
    check("jobs_attempt_max", sql`${t.attempt} <= ${t.maxAttempts}`),
    check("jobs_max_attempts_min", sql`${t.maxAttempts} >= 1`),
    check("jobs_gpus_min", sql`${t.gpus} >= 1`),
    check("jobs_version_min", sql`${t.version} >= 1`),
    check("jobs_budget_positive", sql`${t.budgetUsd} > 0`),
    check("jobs_estimated_cost_nonnegative", sql`${t.estimatedCostUsd} >= 0`),
    check("jobs_running_cost_nonnegative", sql`${t.runningCostUsd} >= 0`),
    // The scheduler's queue order. DESC indexes say NULLS FIRST (PostgreSQL's
    // default for DESC) so a plain `ORDER BY … DESC` can walk them.
    index("jobs_queue_idx").on(t.status, t.priority.desc().nullsFirst(), t.deadline, t.createdAt),
    // Keyset pagination, newest first, per team and across teams (admin).
    index("jobs_team_created_idx").on(t.teamId, t.createdAt.desc().nullsFirst(), t.id.desc().nullsFirst()),
    index("jobs_created_idx").on(t.createdAt.desc().nullsFirst(), t.id.desc().nullsFirst()),
    uniqueIndex("jobs_team_idempotency_key_unique")
      .on(t.teamId, t.idempotencyKey)
      .where(sql`${t.idempotencyKey} IS NOT NULL`),
  ],
);

export const jobEvents = pgTable(
  "job_events",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    jobId: uuid("job_id")
      .notNull()
      .references(() => jobs.id),
    seq: integer("seq").notNull(),
    fromStatus: jobStatusEnum("from_status"),
    toStatus: jobStatusEnum("to_status").notNull(),
    attempt: integer("attempt").notNull(),
    reason: text("reason").notNull(),
    actor: text("actor").notNull(),
    details: jsonb("details").$type<Record<string, unknown>>(),
    createdAt: createdAt(),
  },
  (t) => [unique("job_events_job_seq_unique").on(t.jobId, t.seq), check("job_events_seq_min", sql`${t.seq} >= 1`)],
);

export const allocations = pgTable(
  "allocations",
  {
    id: uuid("id").primaryKey(),
    jobId: uuid("job_id")
      .notNull()
      .references(() => jobs.id),
    attempt: integer("attempt").notNull(),
    provider: providerEnum("provider").notNull(),
    region: text("region").notNull(),
    zone: text("zone"),
    instanceType: text("instance_type").notNull(),
    instanceCount: integer("instance_count").notNull(),
    gpusPerInstance: numeric("gpus_per_instance").notNull(),
    spot: boolean("spot").notNull().default(false),
    priceUsdPerHour: numeric("price_usd_per_hour", { precision: 14, scale: 6 }).notNull(),
    estimatedHours: numeric("estimated_hours").notNull(),
    estimatedCostUsd: numeric("estimated_cost_usd", { precision: 18, scale: 6 }).notNull(),
    // The catalog rows the optimizer priced this decision with.
    prices: jsonb("prices").$type<unknown[]>().notNull(),
    createdAt: createdAt(),
  },
  (t) => [
    check("allocations_instance_count_positive", sql`${t.instanceCount} > 0`),
    check("allocations_gpus_per_instance_positive", sql`${t.gpusPerInstance} > 0`),
    check("allocations_price_nonnegative", sql`${t.priceUsdPerHour} >= 0`),
    check("allocations_estimated_hours_nonnegative", sql`${t.estimatedHours} >= 0`),
    check("allocations_estimated_cost_nonnegative", sql`${t.estimatedCostUsd} >= 0`),
    index("allocations_job_idx").on(t.jobId, t.attempt),
  ],
);

export const jobArtifacts = pgTable(
  "job_artifacts",
  {
    id: uuid("id").primaryKey(),
    jobId: uuid("job_id")
      .notNull()
      .references(() => jobs.id),
    attempt: integer("attempt").notNull(),
    type: artifactTypeEnum("type").notNull(),
    uri: text("uri").notNull(),
    step: bigint("step", { mode: "number" }),
    bytes: bigint("bytes", { mode: "number" }),
    sha256: text("sha256"),
    /** The task (and node rank) that uploaded it; null for rows written before 0008. */
    taskId: uuid("task_id"),
    /** A checkpoint taken because of an interruption notice. */
    emergency: boolean("emergency").notNull().default(false),
    /** Set when retention (checkpoint.keep) gave the object up for deletion: never resumed from again. */
    deletedAt: timestamp("deleted_at", { withTimezone: true }),
    createdAt: createdAt(),
  },
  (t) => [
    check("job_artifacts_bytes_nonnegative", sql`${t.bytes} >= 0`),
    check("job_artifacts_sha256_hex", sql`${t.sha256} ~ '^[0-9a-f]{64}$'`),
    index("job_artifacts_job_type_created_idx").on(t.jobId, t.type, t.createdAt),
  ],
);

/**
 * The pricing catalog: one row per offer (provider, region, zone, instance
 * type) per source. Several sources may price the same offer (the shipped
 * CSVs, a seed directory, a provider's live price API); a refresh replaces
 * only its own source's rows, and readers take one row per offer (newest
 * price_date first; a live source before a seed before the shipped data —
 * see packages/db/src/pricing.ts). Owned by @gpuorch/pricing's refresher.
 */
export const gpuPricing = pgTable(
  "gpu_pricing",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    provider: providerEnum("provider").notNull(),
    region: text("region").notNull(),
    // '' rather than NULL so the unique key below treats "no zone" as one value.
    zone: text("zone").notNull().default(""),
    instanceType: text("instance_type").notNull(),
    gpuType: text("gpu_type").notNull(),
    gpuCount: numeric("gpu_count").notNull(),
    gpuMemoryGb: numeric("gpu_memory_gb").notNull(),
    vcpus: integer("vcpus").notNull(),
    memoryGb: numeric("memory_gb").notNull(),
    onDemandUsdPerHour: numeric("on_demand_usd_per_hour", { precision: 14, scale: 6 }).notNull(),
    spotUsdPerHour: numeric("spot_usd_per_hour", { precision: 14, scale: 6 }),
    // Expected spot interruptions per running hour and the chance spot capacity can be had;
    // both NULL exactly when there is no spot price (see @gpuorch/pricing SPOT_STATS.md).
    spotInterruptionsPerHour: doublePrecision("spot_interruptions_per_hour"),
    spotAvailability: doublePrecision("spot_availability"),
    // High-tier interconnect (core INTERCONNECTS) or NULL: only these serve requires_multi_node.
    interconnect: text("interconnect"),
    priceDate: date("price_date", { mode: "string" }).notNull(),
    source: text("source").notNull(),
    updatedAt: tstz("updated_at").notNull().defaultNow(),
  },
  (t) => [
    unique("gpu_pricing_offer_source_unique").on(t.provider, t.region, t.zone, t.instanceType, t.source),
    index("gpu_pricing_provider_source_idx").on(t.provider, t.source),
    check("gpu_pricing_gpu_count_positive", sql`${t.gpuCount} > 0`),
    check("gpu_pricing_on_demand_nonnegative", sql`${t.onDemandUsdPerHour} >= 0`),
    check("gpu_pricing_spot_nonnegative", sql`${t.spotUsdPerHour} >= 0`),
    check("gpu_pricing_spot_interruptions_nonnegative", sql`${t.spotInterruptionsPerHour} >= 0`),
    check("gpu_pricing_spot_availability_range", sql`${t.spotAvailability} >= 0 AND ${t.spotAvailability} <= 1`),
    check(
      "gpu_pricing_spot_stats_need_spot",
      sql`${t.spotUsdPerHour} IS NOT NULL OR (${t.spotInterruptionsPerHour} IS NULL AND ${t.spotAvailability} IS NULL)`,
    ),
    check("gpu_pricing_interconnect_known", sql.raw(`"interconnect" IN (${INTERCONNECTS.map((i) => `'${i}'`).join(", ")})`)),
    check("gpu_pricing_source_nonempty", sql`${t.source} <> ''`),
  ],
);

/**
 * One row per cloud provider: how its live price refresh went, so
 * `gpuorch pricing` and /metrics can show how stale the catalog is. No row =
 * never attempted (the catalog is as shipped/seeded).
 */
export const pricingSourceStatus = pgTable(
  "pricing_source_status",
  {
    provider: providerEnum("provider").primaryKey(),
    // The gpu_pricing.source the refresh writes ("aws-price-list", …).
    source: text("source").notNull(),
    lastAttemptAt: tstz("last_attempt_at"),
    lastSuccessAt: tstz("last_success_at"),
    // NULL after a success; the failure's message otherwise (kept until the next success).
    lastError: text("last_error"),
    consecutiveFailures: integer("consecutive_failures").notNull().default(0),
    // Rows the last successful refresh wrote, and the price dates they span.
    rowCount: integer("row_count").notNull().default(0),
    oldestPriceDate: date("oldest_price_date", { mode: "string" }),
    newestPriceDate: date("newest_price_date", { mode: "string" }),
  },
  (t) => [
    check("pricing_source_status_row_count_nonnegative", sql`${t.rowCount} >= 0`),
    check("pricing_source_status_failures_nonnegative", sql`${t.consecutiveFailures} >= 0`),
  ],
);

/**
 * Registered GPU nodes. Labels are plain text ('' when unknown) so the
 * identity key (hostname, provider, region, zone) is total: an agent
 * registering again without its persisted id finds its row.
 */
export const nodes = pgTable(
  "nodes",
  {
    id: uuid("id").primaryKey(),
    hostname: text("hostname").notNull(),
    provider: text("provider").notNull().default(""),
    region: text("region").notNull().default(""),
    zone: text("zone").notNull().default(""),
    network: text("network").notNull().default(""),
    instanceType: text("instance_type").notNull().default(""),
    spot: boolean("spot").notNull().default(false),
    privateIp: text("private_ip").notNull().default(""),
    state: nodeStateEnum("state").notNull().default("ready"),
    degradedReason: text("degraded_reason"),
    cpuCores: integer("cpu_cores").notNull().default(0),
    memoryMib: bigint("memory_mib", { mode: "number" }).notNull().default(0),
    agentVersion: text("agent_version").notNull().default(""),
    driverVersion: text("driver_version").notNull().default(""),
    cudaVersion: text("cuda_version").notNull().default(""),
    labels: jsonb("labels").$type<Record<string, string>>().notNull().default({}),
    registeredAt: tstz("registered_at").notNull().defaultNow(),
    lastHeartbeatAt: tstz("last_heartbeat_at"),
  },
  (t) => [
    uniqueIndex("nodes_identity_unique").on(t.hostname, t.provider, t.region, t.zone),
    // No index on last_heartbeat_at: every heartbeat flush rewrites it, and an index on it makes
    // each of those updates non-HOT (a new index entry per node per flush). The health sweep
    // scans the table instead — thousands of rows, once a second.
  ],
);

/** A node's GPUs, replaced on every registration; heartbeats update the reading columns. */
export const nodeGpus = pgTable(
  "node_gpus",
  {
    nodeId: uuid("node_id")
      .notNull()
      .references(() => nodes.id, { onDelete: "cascade" }),
    index: integer("index").notNull(),
    uuid: text("uuid").notNull().default(""),
    name: text("name").notNull(),
    memoryTotalMib: bigint("memory_total_mib", { mode: "number" }).notNull().default(0),
    migEnabled: boolean("mig_enabled").notNull().default(false),
    migDevices: jsonb("mig_devices").$type<MigDeviceSpec[]>().notNull().default([]),
    utilizationGpuPercent: real("utilization_gpu_percent"),
    utilizationMemoryPercent: real("utilization_memory_percent"),
    memoryUsedMib: bigint("memory_used_mib", { mode: "number" }),
    temperatureC: real("temperature_c"),
    powerDrawW: real("power_draw_w"),
    updatedAt: tstz("updated_at"),
  },
  (t) => [primaryKey({ name: "node_gpus_pkey", columns: [t.nodeId, t.index] })],
);

/**
 * One node's share of a job attempt: a rank group of a gang (unit -1) or one
 * multi_task unit (node_rank 0). Rows are never deleted; the state says
 * whether the task still holds its GPUs (assigned, running).
 */
export const tasks = pgTable(
  "tasks",
  {
    id: uuid("id").primaryKey(),
    jobId: uuid("job_id")
      .notNull()
      .references(() => jobs.id),
    attempt: integer("attempt").notNull(),
    nodeId: uuid("node_id")
      .notNull()
      .references(() => nodes.id),
    nodeRank: integer("node_rank").notNull(),
    numNodes: integer("num_nodes").notNull(),
    unit: integer("unit").notNull().default(-1),
    gpuIndices: jsonb("gpu_indices").$type<number[]>().notNull(),
    state: taskStateEnum("state").notNull().default("assigned"),
    exitCode: integer("exit_code"),
    signal: text("signal"),
    step: bigint("step", { mode: "number" }),
    reason: text("reason"),
    masterAddr: text("master_addr").notNull(),
    masterPort: integer("master_port").notNull(),
    createdAt: createdAt(),
    launchSentAt: tstz("launch_sent_at"),
    startedAt: tstz("started_at"),
    endedAt: tstz("ended_at"),
    // What this task's GPUs cost per hour (its share of the node's price), fixed at placement.
    usdMicrosPerHour: bigint("usd_micros_per_hour", { mode: "bigint" }).notNull().default(sql`0`),
  },
  (t) => [
    check("tasks_node_rank_range", sql`${t.nodeRank} >= 0 AND ${t.nodeRank} < ${t.numNodes}`),
    check("tasks_unit_min", sql`${t.unit} >= -1`),
    index("tasks_job_attempt_idx").on(t.jobId, t.attempt),
    index("tasks_active_node_idx")
      .on(t.nodeId)
      .where(sql`${t.state} IN ('assigned', 'running')`),
  ],
);

/**
 * The GPUs an active task holds. The primary key is the last line of
 * defence against double placement: two schedulers can never both hold
 * (node, gpu). Rows are deleted when their task ends.
 */
export const taskGpus = pgTable(
  "task_gpus",
  {
    nodeId: uuid("node_id")
      .notNull()
      .references(() => nodes.id),
    gpuIndex: integer("gpu_index").notNull(),
    taskId: uuid("task_id")
      .notNull()
      .references(() => tasks.id),
    jobId: uuid("job_id")
      .notNull()
      .references(() => jobs.id),
  },
  (t) => [primaryKey({ name: "task_gpus_pkey", columns: [t.nodeId, t.gpuIndex] }), index("task_gpus_task_idx").on(t.taskId)],
);

/** Job output as agents streamed it; bounded per job (oldest dropped, with a marker line). */
export const jobLogs = pgTable(
  "job_logs",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    jobId: uuid("job_id")
      .notNull()
      .references(() => jobs.id),
    attempt: integer("attempt").notNull(),
    rank: integer("rank").notNull(),
    nodeRank: integer("node_rank").notNull(),
    stream: text("stream").notNull(),
    text: text("text").notNull(),
    at: tstz("at").notNull(),
  },
  (t) => [index("job_logs_job_id_idx").on(t.jobId, t.id), check("job_logs_stream", sql`${t.stream} IN ('stdout', 'stderr', 'system')`)],
);

// ---- job log stats (logs issue: `gpuorch logs`; owned by packages/db/src/job-logs.ts) ----

/**
 * Per-job counters for `job_logs`, so bounding a job's output never counts
 * its rows: `lines` is how many stored lines the job has (the drop marker
 * excluded), `dropped` how many of its oldest lines were deleted, and
 * `marker_seq` the id of its one "older lines dropped" marker line. Appends
 * lock this row first, which also makes one job's line ids commit in order.
 */
export const jobLogStats = pgTable("job_log_stats", {
  jobId: uuid("job_id")
    .primaryKey()
    .references(() => jobs.id),
  lines: bigint("lines", { mode: "number" }).notNull().default(0),
  dropped: bigint("dropped", { mode: "number" }).notNull().default(0),
  markerSeq: bigint("marker_seq", { mode: "number" }),
});

/** Alerts raised by the controller (budgets, nodes, utilization, pricing); immutable. */
export const alerts = pgTable(
  "alerts",
  {
    id: uuid("id").primaryKey(),
    // At most one alert per key (e.g. budget:<job>:80) is ever stored.
    dedupeKey: text("dedupe_key"),
    kind: text("kind").notNull(),
    severity: text("severity").notNull(),
    team: text("team").notNull(),
    project: text("project"),
    jobId: uuid("job_id"),
    nodeId: uuid("node_id"),
    message: text("message").notNull(),
    details: jsonb("details").$type<Record<string, unknown>>().notNull(),
    createdAt: tstz("created_at").notNull(),
  },
  (t) => [
    uniqueIndex("alerts_dedupe_key_unique").on(t.dedupeKey).where(sql`${t.dedupeKey} IS NOT NULL`),
    index("alerts_created_idx").on(t.createdAt),
    check("alerts_severity", sql`${t.severity} IN ('info', 'warning', 'critical')`),
  ],
);

/** One alert to one channel; `attempts` counts the rows in alert_delivery_attempts. */
export const alertDeliveries = pgTable(
  "alert_deliveries",
  {
    id: uuid("id").primaryKey(),
    alertId: uuid("alert_id")
      .notNull()
      .references(() => alerts.id),
    channel: text("channel").notNull(),
    channelType: text("channel_type").notNull(),
    status: text("status").notNull().default("pending"),
    attempts: integer("attempts").notNull().default(0),
    lastHttpStatus: integer("last_http_status"),
    lastError: text("last_error"),
    updatedAt: tstz("updated_at").notNull().defaultNow(),
  },
  (t) => [
    check("alert_deliveries_status", sql`${t.status} IN ('pending', 'delivered', 'failed')`),
    index("alert_deliveries_pending_idx").on(t.alertId).where(sql`${t.status} = 'pending'`),
  ],
);

export const alertDeliveryAttempts = pgTable(
  "alert_delivery_attempts",
  {
    deliveryId: uuid("delivery_id")
      .notNull()
      .references(() => alertDeliveries.id),
    attempt: integer("attempt").notNull(),
    status: text("status").notNull(),
    httpStatus: integer("http_status"),
    error: text("error"),
    at: tstz("at").notNull(),
  },
  (t) => [primaryKey({ columns: [t.deliveryId, t.attempt] })],
);
