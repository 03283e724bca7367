import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { alertChannelsConfigSchema } from "./alerts/channel-config.js";

/** The controller's whole configuration: flags > GPUORCH_* env > config file > defaults. */
export const controllerConfigSchema = z.object({
  grpcHost: z.string().default("127.0.0.1"),
  grpcPort: z.coerce.number().int().min(0).max(65535).default(7070),
  httpHost: z.string().default("127.0.0.1"),
  httpPort: z.coerce.number().int().min(0).max(65535).default(7080),
  /** PostgreSQL URL; without it the controller embeds PGlite in dataDir. */
  databaseUrl: z.string().optional(),
  dataDir: z.string().default(join(homedir(), ".gpuorch", "data")),
  /** Pool size for PostgreSQL. */
  dbPoolMax: z.coerce.number().int().min(1).max(200).default(16),
  /** Group commit: most submissions per INSERT statement. */
  submitBatchMax: z.coerce.number().int().min(1).max(256).default(64),
  /** Group commit: most INSERT statements in flight (PGlite always uses 1). */
  submitBatchInFlight: z.coerce.number().int().min(1).max(64).default(4),
  /** Worker threads that parse submitted specs off the event loop; 0 parses on it. */
  specWorkers: z.coerce.number().int().min(0).max(16).default(1),
  logLevel: z.enum(["trace", "debug", "info", "warn", "error", "fatal", "silent"]).default("info"),
  /** Embedded tour mode: mint an admin token and write it to the CLI config. */
  embedded: z.coerce.boolean().default(false),
  cliConfigPath: z.string().default(join(homedir(), ".gpuorch", "config.yaml")),
  /** Embedded only: run one local agent beside the controller (`pnpm start`). */
  withAgent: z.coerce.boolean().default(false),
  /** The local agent simulates this nvidia-smi capture instead of looking for GPUs. */
  simulateGpus: z.string().optional(),
  /** How long SIGTERM waits for in-flight requests before forcing. */
  shutdownGraceMs: z.coerce.number().int().min(0).default(10_000),
  /** Whether /metrics needs a bearer token (Prometheus scrapers usually have none). */
  metricsAuth: z.coerce.boolean().default(false),
  /** Heartbeat period the controller tells agents at registration. */
  heartbeatIntervalSeconds: z.coerce.number().int().min(1).max(3600).default(5),
  /**
   * How often buffered heartbeats are written to the database (one batched statement).
   * 500 ms keeps a node's liveness in PostgreSQL under 1 s old (p99, 5,000 nodes at 1 Hz:
   * bench/README.md); flushing more often than nodes beat adds statements, not rows.
   */
  heartbeatFlushMs: z.coerce.number().int().min(10).default(500),
  /** A node's GPU readings are written at most this often (its liveness on every flush). */
  heartbeatSampleMs: z.coerce.number().int().min(10).default(5_000),
  /** A ready node silent this long becomes unreachable; default 3 heartbeat intervals. */
  nodeUnreachableMs: z.coerce.number().int().min(1).optional(),
  /** A node silent this long becomes lost. */
  nodeLostMs: z.coerce.number().int().min(1).default(60_000),
  /** How often the node health loop sweeps. */
  nodeHealthIntervalMs: z.coerce.number().int().min(10).default(1_000),
  /** The scheduler runs a pass at least this often (submits, task ends and nodes joining wake it at once). */
  schedulerIntervalMs: z.coerce.number().int().min(10).default(1_000),
  /** Jobs a scheduler pass considers, in queue order. */
  schedulerBatch: z.coerce.number().int().min(1).max(10_000).default(500),
  /** A stop command's grace before SIGKILL to the task's process group. */
  taskStopGraceSeconds: z.coerce.number().int().min(0).max(3600).default(10),
  /** A launched task its agent has not reported this long is launched again (or lost, once it ran). */
  taskLaunchTimeoutMs: z.coerce.number().int().min(100).default(30_000),
  /** Where `serve` writes the bound ports (tests and scripts read it). */
  readyFile: z.string().optional(),

  // Pricing, admission, costs and alerts.
  /**
   * A directory of aws.csv / gcp.csv / azure.csv / egress.csv (the shared
   * snapshot's format) loaded into gpu_pricing on start, each source only if
   * it has no rows yet. The shipped catalog (GCP rows + egress) loads always.
   */
  pricingSeedDir: z.string().optional(),
  /** Providers whose live price APIs are polled (needs credentials and network); default none. */
  pricingRefresh: z.array(z.enum(["aws", "gcp", "azure"])).default([]),
  /** Live refresh period per provider (jittered ±10 %). */
  pricingRefreshTtlMs: z.coerce.number().int().min(1_000).default(15 * 60_000),
  /** AWS regions the refresher asks about (default: every region the Price List knows). */
  pricingAwsRegions: z.array(z.string().min(1)).default([]),
  /** Internal price of one GPU-hour on on-prem nodes (and cloud nodes the catalog does not list), USD. */
  onpremUsdPerGpuHour: z
    .string()
    .regex(/^\d+(\.\d{1,6})?$/, "a decimal USD amount such as 1.00")
    .default("1.00"),
  /** Reject infeasible specs at submit (RESOURCE_EXHAUSTED / HTTP 422 infeasible_job). */
  admission: z.boolean().default(true),
  /** How often running costs are recomputed and persisted (and budgets checked). */
  costIntervalMs: z.coerce.number().int().min(100).default(15_000),
  /** After a spot interruption notice, how long a job waits in checkpointing for its emergency checkpoint before it is requeued without one. */
  checkpointTimeoutMs: z.coerce.number().int().min(1_000).default(120_000),
  /** Budget alert thresholds, percent of the job's budget (up to 1000: runaway overspend); at 100 % the job is stopped. */
  budgetThresholdsPct: z.array(z.coerce.number().int().min(1).max(1000)).min(1).default([50, 80, 100]),
  /** A held GPU averaging under this utilization over the window is flagged. */
  utilizationThresholdPercent: z.coerce.number().min(0).max(100).default(30),
  utilizationWindowMs: z.coerce.number().int().min(1_000).default(15 * 60_000),
  /** Where alerts go (config file or GPUORCH_ALERT_CHANNELS as JSON); alerts are always recorded in the database. */
  alertChannels: alertChannelsConfigSchema.default([{ type: "log" }]),
});

export type ControllerConfig = z.infer<typeof controllerConfigSchema>;
