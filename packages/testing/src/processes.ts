import { type ChildProcess, type SpawnOptions, spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { processGroupAlive, signalProcessGroup } from "@gpuorch/runtime";

export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnedProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<ProcessExit>;
  /** True until the process exits. */
  running(): boolean;
  /** stdout and stderr so far, interleaved as they arrived (last 1 MiB). */
  output(): string;
  /** Resolves with the output once it matches `re` (rejects if the process exits first or on timeout). */
  waitForOutput(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /**
   * SIGTERM to the whole process group, then SIGKILL after `graceMs`
   * (default 5 s). Resolves with the exit. Safe to call twice.
   */
  stop(opts?: { graceMs?: number; signal?: NodeJS.Signals }): Promise<ProcessExit>;
}

export interface SpawnProcessOptions extends Omit<SpawnOptions, "detached" | "stdio"> {
  /** Names the process in errors and leftover reports (default: the command). */
  name?: string;
  /** Feed this to stdin, then close it (default: stdin closed). */
  input?: string;
}

const OUTPUT_LIMIT = 1 << 20;
const tracked = new Set<SpawnedProcess>();

/**
 * Spawns a child in its own process group and remembers it until it and its
 * group are gone, so a test can prove it left nothing behind
 * (`assertNoLeftoverProcesses`). Output is captured; use `output()`.
 */
export function spawnProcess(cmd: string, args: readonly string[], opts: SpawnProcessOptions = {}): SpawnedProcess {
  const { name = cmd, input, ...spawnOpts } = opts;
  const child = spawn(cmd, args, { ...spawnOpts, detached: true, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  const listeners = new Set<() => void>();
  const append = (chunk: Buffer) => {
    out += chunk.toString("utf8");
    if (out.length > OUTPUT_LIMIT) out = out.slice(out.length - OUTPUT_LIMIT);
    for (const l of listeners) l();
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  child.stdin?.on("error", () => {
    // EPIPE when the child exits before reading its input: its exit status tells the story.
  });
  child.stdin?.end(input ?? "");

  let exit: ProcessExit | undefined;
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      for (const l of listeners) l();
      resolve(exit);
    });
    child.once("error", (err) => {
      // Spawn failure (ENOENT, EACCES): there is no process to wait for.
      out += `\n[spawn error] ${err.message}\n`;
      if (exit === undefined) {
        exit = { code: null, signal: null };
        for (const l of listeners) l();
        resolve(exit);
      }
    });
  });

  const pid = child.pid ?? -1;
  const proc: SpawnedProcess = {
    name,
    pid,
    child,
    exited,
    running: () => exit === undefined,
    output: () => out,
    waitForOutput(re, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(re);
          if (m) done(() => resolve(m));
          else if (exit !== undefined) done(() => reject(new Error(`${name} exited (${JSON.stringify(exit)}) before printing ${re}; output:\n${out}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`${name} did not print ${re} within ${timeoutMs} ms; output:\n${out}`))), timeoutMs);
        const done = (f: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          f();
        };
        listeners.add(check);
        check();
      });
    },
    async stop({ graceMs = 5_000, signal = "SIGTERM" } = {}) {
      if (pid > 0) {
        const deadline = Date.now() + graceMs;
        signalProcessGroup(pid, signal);
        const timer = setTimeout(() => signalProcessGroup(pid, "SIGKILL"), graceMs);
        try {
          await exited;
        } finally {
          clearTimeout(timer);
        }
        // The leader is gone; give the rest of its group the same grace, then kill it.
        while (processGroupAlive(pid) && Date.now() < deadline) await sleep(20);
        if (processGroupAlive(pid)) {
          signalProcessGroup(pid, "SIGKILL");
          const killDeadline = Date.now() + 2_000;
          while (processGroupAlive(pid) && Date.now() < killDeadline) await sleep(10);
        }
      }
      return exited;
    },
  };
  tracked.add(proc);
  return proc;
}

/** Tracked processes (or their process groups) that are still alive. */
export function leftoverProcesses(): SpawnedProcess[] {
  const left: SpawnedProcess[] = [];
  for (const p of tracked) {
    if (p.running() || (p.pid > 0 && processGroupAlive(p.pid))) left.push(p);
    else tracked.delete(p);
  }
  return left;
}

/** Throws naming every spawned process (or process group) still alive. */
export function assertNoLeftoverProcesses(): void {
  const left = leftoverProcesses();
  if (left.length > 0) {
    throw new Error(`processes left behind: ${left.map((p) => `${p.name} (pid ${p.pid})`).join(", ")}`);
  }
}

/** Stops every tracked process (afterAll safety net); returns how many were running. */
export async function stopAllProcesses(graceMs = 2_000): Promise<number> {
  const left = leftoverProcesses();
  await Promise.all(left.map((p) => p.stop({ graceMs })));
  return left.length;
}
