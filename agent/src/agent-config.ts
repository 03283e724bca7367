import { homedir } from "node:os";
import { join } from "node:path";
import { LOG_LEVELS } from "@gpuorch/runtime";
import { z } from "zod";

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
  /** Heartbeat period; default: what the controller answers at registration. */
  heartbeatSeconds: z.number().int().min(1).max(3600).optional(),
  /** Reconnect backoff: first ceiling and cap (jittered exponential). */
  reconnectBaseMs: z.number().int().min(1).default(500),
  reconnectMaxMs: z.number().int().min(1).default(30_000),
});

export type AgentConfig = z.infer<typeof agentConfigSchema>;
