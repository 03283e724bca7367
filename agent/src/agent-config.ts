import { LOG_LEVELS } from "@gpuorch/runtime";
import { z } from "zod";

/**
 * The agent's configuration: flags, then `GPUORCH_*` environment variables
 * (`GPUORCH_NVIDIA_SMI_PATH`, …), then an optional `--config` file. Parsed in
 * main, never at import time. Grows with the link, launcher and uploader.
 */
export const agentConfigSchema = z.object({
  nvidiaSmiPath: z.string().min(1).default("nvidia-smi"),
  nvidiaSmiTimeoutMs: z.number().int().positive().default(10_000),
  // Commands print their result on stdout; only problems belong on stderr by default.
  logLevel: z.enum(LOG_LEVELS).default("warn"),
});

export type AgentConfig = z.infer<typeof agentConfigSchema>;
