import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";

/** The repository root (this file compiles to bench/dist/). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const CONTROLLER_MAIN = join(REPO_ROOT, "controller", "dist", "main.js");

/** USER_HZ: 100 on every Linux architecture node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

/** Where the controller keeps its state: exactly one of the two. */
export type DatabaseTarget = { dataDir: string } | { databaseUrl: string };

export interface ReadyInfo {
  pid: number;
  grpcPort: number;
  httpPort: number;
  adminToken: string | null;
}

function databaseFlags(target: DatabaseTarget): string[] {
  return "dataDir" in target ? ["--data-dir", target.dataDir] : ["--database-url", target.databaseUrl];
}

/**
 * Extra node flags for the controller (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`)
 * from BENCH_CONTROLLER_NODE_ARGS, so a slow run can be profiled without
 * editing the benchmark.
 */
function extraNodeArgs(): string[] {
  return (process.env.BENCH_CONTROLLER_NODE_ARGS ?? "").split(/\s+/).filter(Boolean);
}

/**
 * Extra `gpuorch-controller serve` flags from BENCH_CONTROLLER_ARGS (e.g.
 * `--submit-batch-in-flight 2`), to compare settings without editing a benchmark.
 */
function extraControllerArgs(): string[] {
  return (process.env.BENCH_CONTROLLER_ARGS ?? "").split(/\s+/).filter(Boolean);
}

/**
 * CPU spent between two readings (ms; null when a reading failed) as "X ms/job
 * (Y% of a core)": the submit benchmarks' per-process line.
 */
export function cpuPerJob(before: number | null, after: number | null, jobs: number, wallMs: number): string {
  if (before === null || after === null) return "n/a";
  const ms = after - before;
  return `${(ms / jobs).toFixed(2)} ms/job (${((ms / wallMs) * 100).toFixed(0)}% of a core)`;
}

/**
 * The fields of /proc/PID/stat after the parenthesised command (Linux): [0] is
 * state (field 3), [1] ppid, [11] utime, [12] stime, [13] cutime, [14] cstime.
 * Null when it cannot be read.
 */
function procStat(pid: number | "self"): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return null;
  }
}

function ticksToMs(a: string | undefined, b: string | undefined): number | null {
  const ticks = Number(a) + Number(b);
  return Number.isFinite(ticks) ? (ticks * 1000) / CLOCK_TICKS_PER_SECOND : null;
}

/** utime + stime of one process in ms (Linux); null when it cannot be read. */
export function processCpuMs(pid: number): number | null {
  const f = procStat(pid);
  return f === null ? null : ticksToMs(f[11], f[12]);
}

/** CPU (ms) of this process's children that have exited and been reaped (cutime + cstime); null off Linux. */
export function reapedChildrenCpuMs(): number | null {
  const f = procStat("self");
  return f === null ? null : ticksToMs(f[13], f[14]);
}

/**
 * CPU (ms) used so far by a PostgreSQL cluster started by `startPostgres`:
 * the postmaster (pid in `<dir>/data/postmaster.pid`) and its children now
 * alive (backends, WAL writer, checkpointer...). Backends that already
 * exited are not counted, so read it while the connections are still open.
 * Null off Linux.
 */
export function postgresCpuMs(clusterDir: string): number | null {
  try {
    const postmaster = Number(readFileSync(join(clusterDir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
    let total = processCpuMs(postmaster);
    if (total === null) return null;
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      // Null when the process ended between the listing and the read.
      const f = procStat(Number(entry));
      if (f !== null && Number(f[1]) === postmaster) total += ticksToMs(f[11], f[12]) ?? 0;
    }
    return total;
  } catch {
    return null;
  }
}

/** A child in its own process group, so a failure can kill it and anything it started. */
function spawnGroup(args: string[], stdout: "pipe" | "forward"): ChildProcess {
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    // The controller reads GPUORCH_* and DATABASE_URL: only the flags we pass may configure it.
    env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("GPUORCH_") && k !== "DATABASE_URL")),
  });
  // Controller output is diagnostics: keep the benchmark's stdout for figures only.
  child.stderr?.pipe(process.stderr, { end: false });
  if (stdout === "forward") child.stdout?.pipe(process.stderr, { end: false });
  return child;
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | "timeout"> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve("timeout"), timeoutMs);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/**
 * `gpuorch-controller token create --admin --json` against the database; the
 * PGlite data dir is locked while a controller runs, so call this first there.
 */
export async function createAdminToken(target: DatabaseTarget, timeoutMs = 120_000): Promise<string> {
  return createToken(target, ["--admin"], timeoutMs);
}

/** `gpuorch-controller token create --team TEAM --kind agent --json`: a token for AgentService. */
export async function createAgentToken(target: DatabaseTarget, team: string, timeoutMs = 120_000): Promise<string> {
  return createToken(target, ["--team", team, "--kind", "agent"], timeoutMs);
}

async function createToken(target: DatabaseTarget, kindFlags: string[], timeoutMs: number): Promise<string> {
  const child = spawnGroup([CONTROLLER_MAIN, "token", "create", ...kindFlags, "--json", "--log-level", "warn", ...databaseFlags(target)], "pipe");
  let out = "";
  child.stdout?.setEncoding("utf8").on("data", (d: string) => (out += d));
  try {
    const result = await waitExit(child, timeoutMs);
    if (result === "timeout") throw new Error(`token create did not finish within ${timeoutMs} ms`);
    if (result.code !== 0) throw new Error(`token create exited with ${result.code ?? result.signal}; stdout: ${out.trim()}`);
    const line = out.trim().split("\n").at(-1) ?? "";
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch {
      throw new Error(`token create printed no JSON: ${JSON.stringify(out)}`);
    }
    const token = (parsed as { token?: unknown }).token;
    if (typeof token !== "string" || token === "") throw new Error(`token create printed no token: ${line}`);
    return token;
  } finally {
    killGroup(child, "SIGKILL");
  }
}

/** A running `gpuorch-controller serve`, started on ephemeral ports. */
export class ControllerProcess {
  private constructor(
    private readonly child: ChildProcess,
    readonly ready: ReadyInfo,
  ) {}

  get grpcAddress(): string {
    return `127.0.0.1:${this.ready.grpcPort}`;
  }

  get httpBase(): string {
    return `http://127.0.0.1:${this.ready.httpPort}`;
  }

  /**
   * Spawns the controller and waits (bounded) for its ready file. On any
   * failure the process group is killed before the error propagates.
   */
  static async start(opts: { target: DatabaseTarget; workDir: string; readyTimeoutMs?: number; extraArgs?: string[] }): Promise<ControllerProcess> {
    const readyFile = join(opts.workDir, "ready.json");
    const child = spawnGroup(
      [
        ...extraNodeArgs(),
        CONTROLLER_MAIN,
        "serve",
        "--grpc-port",
        "0",
        "--http-port",
        "0",
        "--ready-file",
        readyFile,
        "--log-level",
        "warn",
        ...databaseFlags(opts.target),
        ...(opts.extraArgs ?? []),
        ...extraControllerArgs(),
      ],
      "forward",
    );
    const deadline = performance.now() + (opts.readyTimeoutMs ?? 60_000);
    try {
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`controller exited with ${child.exitCode ?? child.signalCode} before it was ready`);
        }
        const text = await readFile(readyFile, "utf8").catch((err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT") return null;
          throw err;
        });
        if (text !== null) {
          const ready = JSON.parse(text) as ReadyInfo;
          if (!Number.isInteger(ready.grpcPort) || !Number.isInteger(ready.httpPort)) throw new Error(`bad ready file: ${text}`);
          return new ControllerProcess(child, ready);
        }
        if (performance.now() > deadline) throw new Error(`controller not ready within ${opts.readyTimeoutMs ?? 60_000} ms`);
        await sleep(50);
      }
    } catch (err) {
      killGroup(child, "SIGKILL");
      await waitExit(child, 5_000);
      throw err;
    }
  }

  /** SIGTERM, then require a clean exit (code 0) within `timeoutMs`. */
  async stop(timeoutMs = 15_000): Promise<void> {
    const started = performance.now();
    killGroup(this.child, "SIGTERM");
    const result = await waitExit(this.child, timeoutMs);
    if (result === "timeout") {
      await this.kill();
      throw new Error(`controller did not exit within ${timeoutMs} ms of SIGTERM (killed)`);
    }
    if (result.code !== 0) throw new Error(`controller exited with ${result.code ?? result.signal} after SIGTERM, expected 0`);
    process.stderr.write(`controller stopped cleanly in ${Math.round(performance.now() - started)} ms\n`);
  }

  /**
   * CPU time (user + system) the controller has used so far, in ms, from
   * /proc (Linux); null elsewhere. Tells whether the controller is the bottleneck.
   */
  cpuMs(): number | null {
    return this.child.pid === undefined ? null : processCpuMs(this.child.pid);
  }

  /** How the controller ended (`code 1`, `signal SIGKILL`), or null while it runs: tells a crash from a slow answer. */
  exitStatus(): string | null {
    if (this.child.exitCode !== null) return `code ${this.child.exitCode}`;
    if (this.child.signalCode !== null) return `signal ${this.child.signalCode}`;
    return null;
  }

  /** Resident set size now, in MiB, from /proc (Linux); null elsewhere. */
  rssMiB(): number | null {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.child.pid}/status`, "utf8"));
      return m ? Number(m[1]) / 1024 : null;
    } catch {
      return null;
    }
  }

  /** Last resort for error paths: SIGKILL the whole group and wait for the exit. Idempotent. */
  async kill(): Promise<void> {
    killGroup(this.child, "SIGKILL");
    await waitExit(this.child, 5_000);
  }
}
