import { homedir } from "node:os";
import { join } from "node:path";
import { LOG_LEVELS } from "@gpuorch/runtime";
import { z } from "zod";
import { IMDS_MODES } from "./imds/node-labels.js";

/**
 * The agent's configuration: flags, then `GPUORCH_*` environment variables
 * (`GPUORCH_NVIDIA_SMI_PATH`, `GPUORCH_CONTROLLER`, `GPUORCH_TOKEN`, …), then
 * an optional `--config` file. Parsed in main, never at import time.
 */
export const agentConfigSchema = z.object({
  nvidiaSmiPath: z.string().min(1).default("nvidia-smi"),
  nvidiaSmiTimeoutMs: z.number().int().positive().default(10_000),
  // Commands print their result on stdout; only problems belong on stderr by default.
  logLevel: z.enum(LOG_LEVELS).default("warn"),
  /** host:port of the controller's gRPC endpoint (`run`). */
  controller: z.string().min(1).optional(),
  /** Agent token (`gpo_a_…`, from `gpuorch-controller token create --kind agent`). */
  token: z.string().min(1).optional(),
  /** Where the agent keeps its state (the node id). */
  workDir: z.string().min(1).default(join(homedir(), ".gpuorch", "agent")),
  /** The name the node registers under; default the host name. */
  nodeName: z.string().min(1).optional(),
  provider: z.string().default(""),
  region: z.string().default(""),
  zone: z.string().default(""),
  network: z.string().default(""),
  instanceType: z.string().default(""),
  spot: z.boolean().default(false),
  privateIp: z.string().default(""),
  /**
   * Fill the labels left empty from the cloud's instance metadata service
   * (`GPUORCH_IMDS`): off (default; on-prem nodes never wait on it), auto, aws, gcp, azure.
   */
  imds: z.enum(IMDS_MODES).default("off"),
  /** Base URL of the metadata service instead of the provider's own (`GPUORCH_IMDS_ENDPOINT`). */
  imdsEndpoint: z.url({ protocol: /^https?$/ }).optional(),
  /** Per metadata request (`GPUORCH_IMDS_TIMEOUT_MS`); a whole read takes at most three times this. */
  imdsTimeoutMs: z.number().int().min(1).max(60_000).default(1000),
  /** Heartbeat period; default: what the controller answers at registration. */
  heartbeatSeconds: z.number().int().min(1).max(3600).optional(),
  /** torchrun and python the launcher runs (the first python3 on PATH may lack torch). */
  torchrunPath: z.string().min(1).default("torchrun"),
  pythonPath: z.string().min(1).default("python3"),
  /** Relative entrypoint paths are resolved from here; default the agent's working directory. */
  codeDir: z.string().min(1).optional(),
  /** Grace before SIGKILL when stopping a task without a grace of its own, and at agent shutdown. */
  stopGraceMs: z.number().int().min(0).default(10_000),
  /**
   * Spot interruption notices (`GPUORCH_INTERRUPTION`): auto (default) polls
   * the provider's metadata service on spot nodes of aws/gcp/azure; off; or
   * a provider to poll regardless of the labels.
   */
  interruption: z.enum(["off", "auto", "aws", "gcp", "azure"]).default("auto"),
  /** Base URL the notices are read from instead of the provider's own (tests, proxies). Default: imdsEndpoint. */
  interruptionEndpoint: z.url({ protocol: /^https?$/ }).optional(),
  /** Poll period; default per provider (AWS 5 s, GCP 1 s, Azure 5 s). */
  interruptionIntervalMs: z.number().int().min(50).max(60_000).optional(),
  /** How long an emergency checkpoint may take: the job's checkpoint plus its upload. */
  checkpointNowTimeoutMs: z.number().int().min(100).default(120_000),
  /** Largest entrypoint or dataset the agent fetches from an object store (bytes). */
  maxFetchBytes: z.number().int().min(1).default(10 * 1024 ** 3),
  /** How often a task's checkpoint directory is scanned for complete checkpoints. */
  checkpointPollMs: z.number().int().min(10).default(1_000),
  /** Object-store endpoints for S3-compatible gateways, Azurite or a GCS emulator; credentials come from each provider's standard chain. */
  s3Endpoint: z.url({ protocol: /^https?$/ }).optional(),
  azureEndpoint: z.url({ protocol: /^https?$/ }).optional(),
  gcsEndpoint: z.url({ protocol: /^https?$/ }).optional(),
  /** Reconnect backoff: first ceiling and cap (jittered exponential). */
  reconnectBaseMs: z.number().int().min(1).default(500),
  reconnectMaxMs: z.number().int().min(1).default(30_000),
});

export type AgentConfig = z.infer<typeof agentConfigSchema>;
