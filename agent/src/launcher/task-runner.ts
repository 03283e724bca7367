import { spawn } from "node:child_process";
import { accessSync, constants, existsSync } from "node:fs";
import { chmod, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { once } from "node:events";
import { delimiter, isAbsolute, join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { AppError } from "@gpuorch/core";
import { type Logger, processGroupAlive, signalProcessGroup, waitProcessGroupGone } from "@gpuorch/runtime";
import { attemptWorkDir, type Launch } from "./launch-builder.js";
import { LineSplitter, ProgressTracker, splitRankPrefix } from "./output-parser.js";

/**
 * Runs one launch as a child in its own process group and reports its lines,
 * progress and end. States: running → stopping (stop() or the leader exited
 * with members left) → exited (onExit called once, after every member of the
 * group is gone). Stopping is SIGTERM to the group, the grace period, then
 * SIGKILL to the group: torchrun's workers and a script's background jobs
 * must not outlive their task.
 */

export interface TaskOutputChunk {
  stream: "stdout" | "stderr";
  /** One line, without its newline and without torchrun's rank tag. */
  text: string;
  /** The local rank from a `[default0]:` / `[rank0]:` tag, if the line had one. */
  rank?: number;
}

export interface TaskExit {
  /** The leader's exit status; null when a signal ended it. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** True when stop() (or the abort signal) ended the task. */
  stopped: boolean;
  /** The last progress seen, output and progress file together. */
  step: number | undefined;
  metrics: Record<string, number>;
}

export interface StartTaskOptions {
  /** The agent's work root; must be the one the launch was built with. */
  workDir: string;
  logger: Logger;
  onOutput(chunk: TaskOutputChunk): void;
  onExit(result: TaskExit): void;
  onProgress?(step: number | undefined, metrics: Record<string, number>): void;
  /** The environment the launch's env is laid over. Default: the agent's. */
  baseEnv?: Readonly<Record<string, string | undefined>>;
  /** How often `$GPUORCH_PROGRESS_FILE` is read. Default 1 s. */
  progressPollMs?: number;
  /** Grace for an abort and for group members left after the leader exited. Default 10 s. */
  stopGraceMs?: number;
  /** Aborting stops the task with `stopGraceMs`. */
  signal?: AbortSignal;
}

export interface TaskHandle {
  readonly pid: number;
  /** Equal to pid: the leader heads its own group. */
  readonly pgid: number;
  /** SIGTERM to the group, `graceMs` (default 10 s), SIGKILL; resolves once every member is gone and onExit ran. */
  stop(graceMs?: number): Promise<void>;
  /** Resolves with what onExit received. */
  readonly exited: Promise<TaskExit>;
}

const DEFAULT_GRACE_MS = 10_000;
const DEFAULT_PROGRESS_POLL_MS = 1_000;
// Only the end of a large progress file is read: the latest lines are what count.
const PROGRESS_FILE_TAIL_BYTES = 64 * 1024;
// After the group is gone, how long to wait for its pipes to close (a process
// that escaped the group with setsid may hold them open forever).
const PIPE_CLOSE_WAIT_MS = 2_000;

export async function startTask(launch: Launch, opts: StartTaskOptions): Promise<TaskHandle> {
  if (launch.role !== "run") {
    throw AppError.precondition(`job ${launch.jobId} node ${launch.nodeRank}: nothing to run on this node (${launch.role})`, "launch_standby");
  }
  const expectedDir = attemptWorkDir(opts.workDir, launch.jobId, launch.attempt);
  if (posix.resolve(launch.attemptDir) !== posix.resolve(expectedDir)) {
    throw AppError.invalid(`launch was built for ${launch.attemptDir}, not ${expectedDir}`, [{ field: "workDir", message: "differs from the launch's" }]);
  }
  const [exe, ...args] = launch.argv;
  if (exe === undefined) throw AppError.invalid("launch has an empty argv", [{ field: "argv", message: "must not be empty" }]);
  const logger = opts.logger.child({ jobId: launch.jobId, attempt: launch.attempt, nodeRank: launch.nodeRank });
  const graceDefault = opts.stopGraceMs ?? DEFAULT_GRACE_MS;
  const progressFile = launch.env.GPUORCH_PROGRESS_FILE;

  await mkdir(launch.attemptDir, { recursive: true });
  await mkdir(launch.cwd, { recursive: true });
  for (const file of launch.files) {
    const path = posix.join(launch.attemptDir, file.name);
    await writeFile(path, file.content, { mode: file.mode });
    await chmod(path, file.mode); // writeFile's mode is filtered by the umask
  }
  // A re-run of the same attempt must not report the previous run's progress.
  if (progressFile !== undefined) await rm(progressFile, { force: true });

  const env = { ...(opts.baseEnv ?? process.env), ...launch.env };
  if (findExecutable(exe, launch.cwd, env.PATH) === null) {
    throw new AppError("NOT_FOUND", `${exe} could not be started: not found or not executable (PATH=${env.PATH ?? ""})`, {
      reason: "launcher_executable_not_found",
      meta: { argv: launch.argv, cwd: launch.cwd },
    });
  }
  // The guard leads the task's process group and ends it if the agent dies
  // (its stdin is a pipe the agent holds and never writes to).
  const child = spawn(process.execPath, [taskGuardPath(), String(graceDefault), "--", exe, ...args], {
    cwd: launch.cwd,
    env,
    stdio: ["pipe", "pipe", "pipe"],
    // Its own process group (and session), so stop() reaches every process it starts.
    detached: true,
  });
  try {
    await once(child, "spawn");
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new AppError(e.code === "ENOENT" ? "NOT_FOUND" : "UNAVAILABLE", `${exe} could not be started: ${e.message}`, {
      reason: e.code === "ENOENT" ? "launcher_executable_not_found" : "launch_failed",
      cause: err,
      meta: { argv: launch.argv, cwd: launch.cwd },
    });
  }
  const pid = child.pid;
  if (pid === undefined) throw new AppError("INTERNAL", `${exe} started without a pid`, { reason: "launch_failed" });
  logger.info({ pid, argv: launch.argv, cwd: launch.cwd }, "task started");

  const tracker = new ProgressTracker();
  const guard = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      logger.error({ err, pid }, `task ${what} callback failed`);
    }
  };
  const applyLine = (line: string): void => {
    if (tracker.apply(line) && opts.onProgress) {
      const onProgress = opts.onProgress;
      guard("progress", () => onProgress(tracker.step, tracker.metrics));
    }
  };
  const emitLine = (stream: TaskOutputChunk["stream"], line: string): void => {
    const { rank, text } = splitRankPrefix(line);
    guard("output", () => opts.onOutput(rank === undefined ? { stream, text } : { stream, text, rank }));
    applyLine(line);
  };
  const splitters = { stdout: new LineSplitter(), stderr: new LineSplitter() };
  child.stdout.on("data", (chunk: Buffer) => {
    for (const line of splitters.stdout.push(chunk)) emitLine("stdout", line);
  });
  child.stderr.on("data", (chunk: Buffer) => {
    for (const line of splitters.stderr.push(chunk)) emitLine("stderr", line);
  });
  const pipesClosed = Promise.all([once(child.stdout, "close"), once(child.stderr, "close")]).then(() => true);

  const readProgressFile = async (): Promise<void> => {
    if (progressFile === undefined) return;
    let text: string;
    try {
      const buf = await readFile(progressFile);
      text = buf.subarray(Math.max(0, buf.length - PROGRESS_FILE_TAIL_BYTES)).toString("utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") logger.warn({ err, progressFile }, "progress file unreadable");
      return;
    }
    for (const line of text.split("\n")) applyLine(line);
  };
  let polling = false;
  const pollTimer = setInterval(() => {
    if (polling) return;
    polling = true;
    void readProgressFile().finally(() => {
      polling = false;
    });
  }, opts.progressPollMs ?? DEFAULT_PROGRESS_POLL_MS);

  let stopRequested = false;
  let terminating: Promise<void> | undefined;
  const terminateGroup = (graceMs: number): Promise<void> => {
    terminating ??= (async () => {
      if (!signalProcessGroup(pid, "SIGTERM")) return;
      if (await waitProcessGroupGone(pid, graceMs)) return;
      logger.warn({ pid, graceMs }, "task group still alive after SIGTERM and the grace period; sending SIGKILL");
      signalProcessGroup(pid, "SIGKILL");
      // SIGKILL cannot be ignored, but a process in uninterruptible sleep dies only when its I/O ends.
      while (!(await waitProcessGroupGone(pid, 5_000))) {
        logger.warn({ pid }, "task group still alive after SIGKILL");
        signalProcessGroup(pid, "SIGKILL");
      }
    })();
    return terminating;
  };

  // Not events.once: it rejects on a later 'error', and onExit must still run.
  const leaderExit = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once("exit", (code, sig) => resolve([code, sig]));
  });
  child.on("error", (err) => logger.error({ err, pid }, "task process error"));
  const exited = (async (): Promise<TaskExit> => {
    const [exitCode, signal] = await leaderExit;
    // Whatever the leader left behind in its group goes with it.
    if (processGroupAlive(pid)) {
      logger.info({ pid }, "task leader exited with processes left in its group; stopping them");
      await terminateGroup(graceDefault);
    }
    const closed = await Promise.race([pipesClosed, sleep(PIPE_CLOSE_WAIT_MS, false)]);
    if (!closed) {
      logger.warn({ pid }, "task output pipes still open after its group ended (a process left the group); closing them");
      child.stdout.destroy();
      child.stderr.destroy();
    }
    clearInterval(pollTimer);
    for (const line of splitters.stdout.end()) emitLine("stdout", line);
    for (const line of splitters.stderr.end()) emitLine("stderr", line);
    await readProgressFile();
    opts.signal?.removeEventListener("abort", onAbort);
    const result: TaskExit = { exitCode, signal, stopped: stopRequested, step: tracker.step, metrics: tracker.metrics };
    logger.info({ pid, exitCode, signal, stopped: stopRequested, step: tracker.step }, "task exited");
    guard("exit", () => opts.onExit(result));
    return result;
  })();

  const stop = async (graceMs: number = graceDefault): Promise<void> => {
    stopRequested = true;
    await terminateGroup(graceMs);
    await exited;
  };
  function onAbort(): void {
    stop().catch((err: unknown) => logger.error({ err, pid }, "stopping the task on abort failed"));
  }
  if (opts.signal?.aborted) onAbort();
  else opts.signal?.addEventListener("abort", onAbort, { once: true });

  return { pid, pgid: pid, stop, exited };
}

/** The guard script (dist/launcher/task-guard.js), also when this module runs from source under the tests. */
export function taskGuardPath(): string {
  const here = new URL("./task-guard.js", import.meta.url);
  const built = fileURLToPath(here);
  if (existsSync(built)) return built;
  return fileURLToPath(new URL("../../dist/launcher/task-guard.js", import.meta.url));
}

/** Where `exe` would be found (a path, or a name searched in PATH); null when nowhere executable. */
export function findExecutable(exe: string, cwd: string, path: string | undefined): string | null {
  const ok = (p: string): boolean => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (exe.includes("/")) {
    const p = isAbsolute(exe) ? exe : join(cwd, exe);
    return ok(p) ? p : null;
  }
  for (const dir of (path ?? "").split(delimiter)) {
    if (dir && ok(join(dir, exe))) return join(dir, exe);
  }
  return null;
}
