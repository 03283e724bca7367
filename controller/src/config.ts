import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";

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
});

export type ControllerConfig = z.infer<typeof controllerConfigSchema>;
