import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { REPO_ROOT } from "./controller-process.js";

export const AGENT_MAIN = join(REPO_ROOT, "agent", "dist", "main.js");

/** A real 2-GPU capture (2 × RTX A5000, `nvidia-smi -q -x`, schema v13) the simulated nodes are cut from. */
export const SOURCE_CAPTURE = join(REPO_ROOT, "agent", "src", "gpu", "testdata", "2x-rtx-a5000-1proc-drv590.44.01-schema-v13.xml");

/**
 * Writes an `nvidia-smi -q -x` document with `gpus` GPUs to `path`, built from
 * the 2-GPU capture: its `<gpu>` blocks repeated in turn, each copy with its
 * own PCI id, UUID and minor number (the agent takes a GPU's index from its
 * position). The captures under agent/src/gpu/testdata are kept byte-for-byte,
 * so the variant is made here, in a temporary directory.
 */
export async function writeSimulatedCapture(path: string, gpus: number): Promise<void> {
  const xml = readFileSync(SOURCE_CAPTURE, "utf8");
  const blocks = [...xml.matchAll(/<gpu id="[^"]*">[\s\S]*?<\/gpu>/g)].map((m) => m[0]);
  const first = xml.indexOf("<gpu id=");
  const end = xml.lastIndexOf("</gpu>") + "</gpu>".length;
  if (blocks.length === 0 || first < 0) throw new Error(`${SOURCE_CAPTURE}: no <gpu> blocks`);
  const copies: string[] = [];
  for (let i = 0; i < gpus; i++) {
    const bus = (0x10 + i).toString(16).toUpperCase().padStart(2, "0");
    copies.push(
      blocks[i % blocks.length]!.replace(/<gpu id="[^"]*">/, `<gpu id="00000000:${bus}:00.0">`)
        .replace(/<uuid>[^<]*<\/uuid>/, `<uuid>GPU-0b0b0b0b-bench-4000-8000-${i.toString(16).padStart(12, "0")}</uuid>`)
        .replace(/<minor_number>[^<]*<\/minor_number>/, `<minor_number>${i}</minor_number>`),
    );
  }
  const head = xml.slice(0, first).replace(/<attached_gpus>\d+<\/attached_gpus>/, `<attached_gpus>${gpus}</attached_gpus>`);
  await writeFile(path, head + copies.join("\n\n\t") + xml.slice(end));
}

export interface AgentProcessOptions {
  controller: string;
  token: string;
  workDir: string;
  nodeName: string;
  captureFile: string;
  heartbeatSeconds?: number;
  logLevel?: string;
}

/** A running `gpuorch-agent run` with simulated GPUs, in its own process group. */
export class AgentProcess {
  private constructor(private readonly child: ChildProcess) {}

  get pid(): number | undefined {
    return this.child.pid;
  }

  static start(opts: AgentProcessOptions): AgentProcess {
    const child = spawn(
      process.execPath,
      [
        AGENT_MAIN,
        "run",
        "--controller",
        opts.controller,
        "--token",
        opts.token,
        "--work-dir",
        opts.workDir,
        "--node-name",
        opts.nodeName,
        "--simulate-gpus",
        opts.captureFile,
        "--heartbeat-seconds",
        String(opts.heartbeatSeconds ?? 1),
        "--log-level",
        opts.logLevel ?? "warn",
      ],
      {
        cwd: REPO_ROOT,
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
        // Only the flags above may configure the agent.
        env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("GPUORCH_"))),
      },
    );
    // Diagnostics only: the benchmark's stdout is for figures.
    child.stderr?.pipe(process.stderr, { end: false });
    child.stdout?.pipe(process.stderr, { end: false });
    return new AgentProcess(child);
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  /** CPU time (user + system) used so far, ms, from /proc (Linux); null elsewhere. */
  cpuMs(): number | null {
    try {
      const stat = readFileSync(`/proc/${this.child.pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ticks = Number(fields[11]) + Number(fields[12]);
      return Number.isFinite(ticks) ? ticks * 10 : null;
    } catch {
      return null;
    }
  }

  /** Signals the whole group, then waits (bounded) for the exit; SIGKILL when SIGTERM is not enough. Idempotent. */
  async stop(timeoutMs = 15_000): Promise<void> {
    this.signal("SIGTERM");
    if (!(await this.waitExit(timeoutMs))) {
      this.signal("SIGKILL");
      await this.waitExit(5_000);
    }
  }

  private signal(sig: NodeJS.Signals): void {
    if (this.child.pid === undefined || this.exited) return;
    try {
      process.kill(-this.child.pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
    }
  }

  private waitExit(timeoutMs: number): Promise<boolean> {
    if (this.exited) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.child.once("exit", () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
}
