import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import type { Logger } from "@gpuorch/runtime";

/** The agent's entry point and the capture a GPU-less machine simulates (both in this repository). */
const AGENT_MAIN = fileURLToPath(new URL("../../agent/dist/main.js", import.meta.url));
export const SIMULATED_CAPTURE = fileURLToPath(new URL("../../agent/src/gpu/testdata/2x-rtx-a5000-1proc-drv590.44.01-schema-v13.xml", import.meta.url));

export interface LocalAgentOptions {
  controller: string;
  token: string;
  workDir: string;
  logger: Logger;
  /** nvidia-smi to look for; default `nvidia-smi` on PATH. */
  nvidiaSmi?: string;
  /** Force a simulated inventory from this capture. */
  simulateGpus?: string;
  /** Where relative entrypoint paths start (the repository root for `pnpm start`). */
  codeDir: string;
}

export interface LocalAgent {
  /** The capture simulated, or null when the machine's own GPUs are used. */
  simulated: string | null;
  stop(graceMs?: number): Promise<void>;
}

function works(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: "ignore", timeout: 10_000 });
  return r.status === 0;
}

/** A python that can import torch, preferring the first on PATH (the Debian package installs into /usr/bin/python3 only). */
function torchPython(): { python: string; torchrun: string } | null {
  for (const [python, torchrun] of [
    ["python3", "torchrun"],
    ["/usr/bin/python3", "/usr/bin/torchrun"],
  ] as const) {
    if (works(python, ["-c", "import torch"])) return { python, torchrun };
  }
  return null;
}

/**
 * `pnpm start`'s local node: one `gpuorch-agent run` child next to the
 * embedded controller. A machine without nvidia-smi (or where it finds no
 * GPU) gets a simulated node replaying a real capture, so examples run at
 * once; jobs then run on the CPU.
 */
export function startLocalAgent(opts: LocalAgentOptions): LocalAgent {
  const smi = opts.nvidiaSmi ?? "nvidia-smi";
  const simulated = opts.simulateGpus ?? (works(smi, ["-L"]) ? null : SIMULATED_CAPTURE);
  const py = torchPython();
  const args = [
    AGENT_MAIN,
    "run",
    "--controller",
    opts.controller,
    "--token",
    opts.token,
    "--work-dir",
    opts.workDir,
    "--node-name",
    hostname(),
    "--provider",
    "onprem",
    "--region",
    "local",
    "--network",
    "local",
    "--private-ip",
    "127.0.0.1",
    "--code-dir",
    opts.codeDir,
    "--log-level",
    "warn",
    ...(simulated !== null ? ["--simulate-gpus", simulated] : []),
    ...(py ? ["--python", py.python, "--torchrun", py.torchrun] : []),
  ];
  // The agent inherits stderr so its warnings reach the terminal; its own process group is not needed: it stops its tasks itself.
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, GPUORCH_CONFIG: "" } });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.once("exit", (code, signal) => {
    if (!stopping) opts.logger.error({ code, signal }, "the local agent exited; restart the controller to get it back");
  });
  let stopping = false;
  opts.logger.info({ pid: child.pid, simulated, python: py?.python ?? null }, "local agent started");
  if (!py) opts.logger.warn("no python with torch found: pytorch jobs will fail to start (apt-get install python3-torch)");
  return {
    simulated,
    async stop(graceMs = 15_000) {
      stopping = true;
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** True when this is a checkout with the agent built (pnpm start). */
export function localAgentAvailable(): boolean {
  return existsSync(AGENT_MAIN);
}
