import { parseArgs } from "node:util";
import { isAppError, toAppError } from "@gpuorch/core";
import { createLogger, loadConfig, type Logger } from "@gpuorch/runtime";
import { agentConfigSchema } from "./agent-config.js";
import { RUN_USAGE, runDaemon } from "./agent-run.js";
import { collectHostInfo, type HostInfo } from "./host-info.js";
import { collectNodeInventory, formatNodeInventory } from "./node-inventory.js";

export const USAGE = `usage: gpuorch-agent <command> [options]

commands:
  inventory   print what this node would register (GPUs, MIG devices, CPU, memory, disk, OS)
  run         the daemon: register with the controller and keep the heartbeat stream

inventory options:
  --nvidia-smi PATH       nvidia-smi to run (env GPUORCH_NVIDIA_SMI_PATH; default: nvidia-smi on PATH)
  --nvidia-smi-xml FILE   read a saved \`nvidia-smi -q -x\` instead of running nvidia-smi
  --nvidia-smi-list FILE  a saved \`nvidia-smi -L\` of the same host (MIG profiles and UUIDs)
  --simulate-gpus FILE    replay a captured \`nvidia-smi -q -x\` as this node's GPUs (marked "simulated")
  --config FILE           YAML/JSON config file
  --json                  print JSON instead of a table

${RUN_USAGE}
exit status: 0 printed (a degraded node is still printed, with its reason), 1 error, 2 usage error
`;

export interface AgentCliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
  /** Injected in tests; default reads the real host. */
  collectHost?: () => Promise<HostInfo>;
  /** Injected in tests; default writes JSON lines to stderr at the configured level. */
  logger?: Logger;
  signal?: AbortSignal;
}

/** Runs one `gpuorch-agent` command; returns the exit status instead of exiting, so tests can call it. */
export async function runAgentCli(argv: readonly string[], io: AgentCliIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "help" || command === "--help" || command === "-h") {
    (command === undefined ? io.stderr : io.stdout)(USAGE);
    return command === undefined ? 2 : 0;
  }
  switch (command) {
    case "inventory":
      return inventory(rest, io);
    case "run":
      return runDaemon(rest, { stderr: io.stderr, env: io.env, ...(io.collectHost ? { collectHost: io.collectHost } : {}), ...(io.logger ? { logger: io.logger } : {}) });
    default:
      io.stderr(`gpuorch-agent: unknown command "${command}"\n\n${USAGE}`);
      return 2;
  }
}

async function inventory(argv: readonly string[], io: AgentCliIo): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        "nvidia-smi": { type: "string" },
        "nvidia-smi-xml": { type: "string" },
        "nvidia-smi-list": { type: "string" },
        "simulate-gpus": { type: "string" },
        config: { type: "string" },
        json: { type: "boolean", default: false },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (e) {
    io.stderr(`gpuorch-agent inventory: ${e instanceof Error ? e.message : String(e)}\n\n${USAGE}`);
    return 2;
  }
  if (values["simulate-gpus"] !== undefined && values["nvidia-smi-xml"] !== undefined) {
    io.stderr("gpuorch-agent inventory: give --simulate-gpus or --nvidia-smi-xml, not both\n");
    return 2;
  }
  try {
    const config = loadConfig(agentConfigSchema, {
      flags: { nvidiaSmiPath: values["nvidia-smi"] },
      env: io.env,
      file: values.config ?? null,
    });
    const logger = io.logger ?? createLogger({ name: "gpuorch-agent", level: config.logLevel });
    const inv = await collectNodeInventory(
      {
        nvidiaSmiPath: config.nvidiaSmiPath,
        nvidiaSmiTimeoutMs: config.nvidiaSmiTimeoutMs,
        ...optional("nvidiaSmiXml", values["nvidia-smi-xml"]),
        ...optional("nvidiaSmiList", values["nvidia-smi-list"]),
        ...optional("simulateGpus", values["simulate-gpus"]),
      },
      { logger, collectHost: io.collectHost ?? collectHostInfo, ...(io.signal ? { signal: io.signal } : {}) },
    );
    io.stdout(values.json ? JSON.stringify(inv, null, 2) + "\n" : formatNodeInventory(inv));
    return 0;
  } catch (e) {
    const err = toAppError(e);
    io.stderr(`gpuorch-agent inventory: ${err.message}${isAppError(e) ? "" : " (unexpected)"}\n`);
    return 1;
  }
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return value === undefined ? {} : ({ [key]: value } as { [P in K]?: string });
}
