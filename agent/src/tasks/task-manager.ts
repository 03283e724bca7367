import { randomUUID } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, type WriteStream, writeFileSync } from "node:fs";
import { basename, dirname, extname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  AppError,
  type AgentArtifactReport,
  type AgentTaskReport,
  type AgentTaskState,
  type TaskEntrypoint,
  type TaskLaunchCommand,
  type TaskLogChunk,
  type TaskLogLine,
  type TaskCheckpointNowCommand,
  type TaskStopCommand,
  toAppError,
} from "@gpuorch/core";
import { type Logger, processGroupAlive, signalProcessGroup, waitProcessGroupGone } from "@gpuorch/runtime";
import { type ObjectStore, type OpenStoreOptions, openObjectStore } from "@gpuorch/storage";
import { attemptKeyPrefix, downloadCheckpoint } from "../checkpoints/checkpoints.js";
import { type CheckpointNowResult, TaskCheckpointer, checkpointPaths } from "../checkpoints/task-checkpointer.js";
import { type LaunchEntrypoint, type LauncherPaths, attemptWorkDir, buildLaunch, startTask, type TaskHandle } from "../launcher/index.js";
import { fetchDataset, fetchEntrypoint } from "../fetch/index.js";
import { signalWorkers } from "./process-tree.js";

export interface TaskManagerDeps {
  /** The agent's work root: attempts run under `<workDir>/<jobId>/attempt-<n>`, task records in `<workDir>/tasks`. */
  workDir: string;
  logger: Logger;
  paths?: Partial<LauncherPaths>;
  /** Relative entrypoint paths are taken from here. */
  codeDir: string;
  /** Grace of a stop without one of its own, and at agent shutdown. */
  stopGraceMs: number;
  /** A task changed state: sent to the controller at once. */
  onStatus: (report: AgentTaskReport) => void;
  /** Output, batched per task. */
  onLogs: (chunk: TaskLogChunk) => void;
  now?: () => Date;
  /** Output batching: a chunk goes when it has this many lines or is this old. */
  logBatchLines?: number;
  logBatchMs?: number;
  /** An object the agent uploaded and verified (checkpoint, log): to the controller, via the outbox. */
  onArtifact?: (report: AgentArtifactReport) => void;
  /** A checkpoint-now request ended (done or failed). */
  onCheckpointNow?: (cmd: TaskCheckpointNowCommand, result: CheckpointNowResult) => void;
  /** Endpoints for object stores (tests, on-prem gateways); credentials come from the providers' chains. */
  storeOptions?: OpenStoreOptions;
  /** How often a task's checkpoint directory is scanned. Default 1 s. */
  checkpointPollMs?: number;
  /** How long a task's end waits for its last checkpoint and log upload. Default 300 s. */
  finalUploadTimeoutMs?: number;
  /** How long a checkpoint-now waits for the job's checkpoint. Default 120 s. */
  checkpointNowTimeoutMs?: number;
  /** Largest entrypoint or dataset fetched from an object store. Default 10 GiB. */
  maxFetchBytes?: number;
  newId?: () => string;
}

interface Entry {
  cmd: TaskLaunchCommand;
  state: AgentTaskState;
  report: AgentTaskReport;
  handle: TaskHandle | null;
  stopRequested: boolean;
  tail: string[];
  pending: TaskLogLine[];
  flushTimer: ReturnType<typeof setTimeout> | null;
  checkpointer?: TaskCheckpointer | null;
  /** This node's output of the task, uploaded as a log artifact when it ends. */
  logFile?: { path: string; stream: WriteStream } | null;
  /** The checkpoint policy's store, opened once per task. */
  store?: { store: ObjectStore; baseKey: string } | null;
}

/** A task record kept on disk while it runs, so a restarted agent can find and stop what its predecessor started. */
interface TaskFile {
  taskId: string;
  jobId: string;
  attempt: number;
  nodeRank: number;
  pgid: number | null;
  /** Set once the task has ended: its final report, kept until the controller says it recorded it (forget). */
  exit?: AgentTaskReport;
}

const TAIL_LINES = 20;
const MAX_SEEN_COMMANDS = 10_000;

/**
 * The agent's tasks: runs launch and stop commands, keeps every task's true
 * state until the controller says it has recorded the end (forget), and
 * batches their output into log chunks.
 *
 * Commands are idempotent and fenced: a command id seen before does nothing
 * (the current state is reported again), a launch of a task already known
 * does nothing, a launch for an older attempt of a job than one already seen
 * is refused, and a stop names its attempt and only stops that attempt.
 * While draining, new launches are refused and running tasks go on.
 */
export class TaskManager {
  private readonly tasks = new Map<string, Entry>();
  private readonly seen = new Set<string>();
  private readonly attempts = new Map<string, number>();
  /** Starts in flight (the process is being spawned): stopAll waits for them, so none escapes a shutdown. */
  private readonly starting = new Set<Promise<void>>();
  private draining = false;
  private shuttingDown = false;
  private readonly recordsDir: string;

  constructor(private readonly deps: TaskManagerDeps) {
    this.recordsDir = join(deps.workDir, "tasks");
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Every task's current report (the heartbeat's full list). */
  reports(): AgentTaskReport[] {
    return [...this.tasks.values()].map((e) => e.report);
  }

  /** How many tasks are starting or running. */
  get activeCount(): number {
    let n = 0;
    for (const e of this.tasks.values()) if (e.state === "starting" || e.state === "running") n++;
    return n;
  }

  private now(): Date {
    return this.deps.now?.() ?? new Date();
  }

  private remember(commandId: string): boolean {
    if (this.seen.has(commandId)) return false;
    this.seen.add(commandId);
    if (this.seen.size > MAX_SEEN_COMMANDS) {
      const oldest = this.seen.values().next().value;
      if (oldest !== undefined) this.seen.delete(oldest);
    }
    return true;
  }

  private setState(e: Entry, state: AgentTaskState, patch: Partial<AgentTaskReport> = {}): void {
    e.state = state;
    e.report = { ...e.report, ...patch, state, changedAt: this.now() };
    this.deps.onStatus(e.report);
  }

  /**
   * Finds tasks a previous agent process left behind (records in the work
   * dir), stops their process groups and keeps them as `lost`, so the
   * controller learns at once that they did not survive.
   */
  async recover(): Promise<number> {
    if (!existsSync(this.recordsDir)) return 0;
    let n = 0;
    for (const name of readdirSync(this.recordsDir)) {
      if (!name.endsWith(".json")) continue;
      const path = join(this.recordsDir, name);
      let rec: TaskFile;
      try {
        rec = JSON.parse(readFileSync(path, "utf8")) as TaskFile;
      } catch {
        rmSync(path, { force: true });
        continue;
      }
      if (rec.exit) {
        // It ended before the agent went away, and the controller may not know yet: report the true end.
        const report: AgentTaskReport = { ...rec.exit, changedAt: new Date(rec.exit.changedAt) };
        this.tasks.set(rec.taskId, {
          cmd: { taskId: rec.taskId, jobId: rec.jobId, attempt: rec.attempt, nodeRank: rec.nodeRank } as TaskLaunchCommand,
          state: report.state,
          report,
          handle: null,
          stopRequested: false,
          tail: [],
          pending: [],
          flushTimer: null,
        });
        n++;
        continue;
      }
      if (rec.pgid !== null && processGroupAlive(rec.pgid)) {
        this.deps.logger.warn({ taskId: rec.taskId, pgid: rec.pgid }, "stopping a task left by an earlier agent process");
        signalProcessGroup(rec.pgid, "SIGTERM");
        if (!(await waitProcessGroupGone(rec.pgid, this.deps.stopGraceMs))) {
          signalProcessGroup(rec.pgid, "SIGKILL");
          await waitProcessGroupGone(rec.pgid, 5_000);
        }
      }
      const report: AgentTaskReport = {
        taskId: rec.taskId,
        jobId: rec.jobId,
        attempt: rec.attempt,
        nodeRank: rec.nodeRank,
        state: "lost",
        exitCode: null,
        signal: null,
        stopped: false,
        step: null,
        metrics: {},
        message: "the agent restarted; the task's processes were stopped",
        lastLines: [],
        changedAt: this.now(),
      };
      this.tasks.set(rec.taskId, {
        cmd: { taskId: rec.taskId, jobId: rec.jobId, attempt: rec.attempt, nodeRank: rec.nodeRank } as TaskLaunchCommand,
        state: "lost",
        report,
        handle: null,
        stopRequested: false,
        tail: [],
        pending: [],
        flushTimer: null,
      });
      rmSync(path, { force: true });
      n++;
    }
    return n;
  }

  private writeRecord(cmd: TaskLaunchCommand, pgid: number | null, exit?: AgentTaskReport): void {
    mkdirSync(this.recordsDir, { recursive: true });
    const rec: TaskFile = { taskId: cmd.taskId, jobId: cmd.jobId, attempt: cmd.attempt, nodeRank: cmd.nodeRank, pgid, ...(exit ? { exit } : {}) };
    const path = join(this.recordsDir, `${cmd.taskId}.json`);
    writeFileSync(`${path}.tmp`, JSON.stringify(rec));
    renameSync(`${path}.tmp`, path);
  }

  private dropRecord(taskId: string): void {
    rmSync(join(this.recordsDir, `${taskId}.json`), { force: true });
  }

  launch(cmd: TaskLaunchCommand): void {
    const known = this.tasks.get(cmd.taskId);
    if (!this.remember(cmd.commandId) || known) {
      if (known) this.deps.onStatus(known.report);
      return;
    }
    const base: AgentTaskReport = {
      taskId: cmd.taskId,
      jobId: cmd.jobId,
      attempt: cmd.attempt,
      nodeRank: cmd.nodeRank,
      state: "starting",
      exitCode: null,
      signal: null,
      stopped: false,
      step: null,
      metrics: {},
      message: "",
      lastLines: [],
      changedAt: this.now(),
    };
    const e: Entry = { cmd, state: "starting", report: base, handle: null, stopRequested: false, tail: [], pending: [], flushTimer: null };
    this.tasks.set(cmd.taskId, e);
    const newest = this.attempts.get(cmd.jobId) ?? 0;
    if (cmd.attempt < newest) {
      this.setState(e, "failed_to_start", { message: `stale launch: attempt ${cmd.attempt} of job ${cmd.jobId} is older than attempt ${newest}` });
      return;
    }
    if (this.draining) {
      this.setState(e, "failed_to_start", { message: "the node is draining and takes no new tasks" });
      return;
    }
    this.attempts.set(cmd.jobId, cmd.attempt);
    this.setState(e, "starting");
    const started = this.start(e);
    this.starting.add(started);
    void started.finally(() => this.starting.delete(started));
  }

  private async start(e: Entry): Promise<void> {
    const { cmd } = e;
    const logger = this.deps.logger.child({ taskId: cmd.taskId, jobId: cmd.jobId, attempt: cmd.attempt });
    try {
      const fetched = await this.fetchInputs(e, logger);
      const entrypoint = resolveEntrypoint(fetched.entrypoint, this.deps.codeDir);
      const extraEnv = { ...fetched.env, ...(await this.prepareCheckpoints(e, logger)) };
      const launch = buildLaunch(
        {
          framework: cmd.framework,
          jobId: cmd.jobId,
          attempt: cmd.attempt,
          entrypoint,
          nodeRank: cmd.nodeRank,
          numNodes: cmd.numNodes,
          gpus: cmd.gpus,
          ...(cmd.cpuProcesses > 0 ? { cpuProcesses: cmd.cpuProcesses } : {}),
          masterAddr: cmd.masterAddr,
          masterPort: cmd.masterPort,
          ...(cmd.hosts.length === cmd.numNodes ? { hosts: cmd.hosts } : {}),
        },
        { workDir: this.deps.workDir, ...(this.deps.paths ? { paths: this.deps.paths } : {}) },
      );
      Object.assign(launch.env, extraEnv);
      for (const w of launch.warnings) logger.warn({ warning: w }, "launch adjusted");
      if (launch.role === "standby") {
        // horovodrun on node 0 runs this node's ranks: nothing to start here, the task just holds the GPUs.
        this.setState(e, "running");
        return;
      }
      if (e.stopRequested) {
        this.setState(e, "exited", { stopped: true, message: "stopped before it started" });
        return;
      }
      const nproc = cmd.gpus.length > 0 ? cmd.gpus.length : Math.max(1, cmd.cpuProcesses);
      const handle = await startTask(launch, {
        workDir: this.deps.workDir,
        logger,
        stopGraceMs: this.deps.stopGraceMs,
        onOutput: (chunk) => {
          const rank = cmd.unit >= 0 ? cmd.unit : chunk.rank === undefined ? cmd.nodeRank : cmd.nodeRank * nproc + chunk.rank;
          this.output(e, { rank, stream: chunk.stream, text: chunk.text, at: this.now() });
        },
        onProgress: (step, metrics) => {
          e.report = { ...e.report, step: step ?? null, metrics: { ...metrics } };
        },
        onExit: (exit) => {
          this.flushLogs(e);
          if (this.shuttingDown && !e.stopRequested) {
            this.dropRecord(cmd.taskId);
            e.checkpointer?.stop();
            e.logFile?.stream.end();
            this.setState(e, "lost", { message: "the agent shut down and stopped the task", lastLines: e.tail.slice(-TAIL_LINES) });
            return;
          }
          // The end is reported once the last checkpoint and the log are safe in the store.
          void this.uploadAtEnd(e, logger).finally(() => {
            this.setState(e, "exited", {
              exitCode: exit.exitCode,
              signal: exit.signal,
              stopped: exit.stopped || e.stopRequested,
              step: exit.step ?? e.report.step,
              metrics: { ...exit.metrics },
              lastLines: e.tail.slice(-TAIL_LINES),
            });
            // Durable until forgotten: an agent killed before the controller hears of the end reports it after its restart.
            this.writeRecord(cmd, null, e.report);
          });
        },
      });
      e.handle = handle;
      this.writeRecord(cmd, handle.pgid);
      const argv0 = basename(launch.argv[0] ?? "");
      if (e.checkpointer) {
        e.checkpointer.setSignalJob(() => signalWorkers(handle.pid, argv0));
        e.checkpointer.start();
      }
      this.setState(e, "running");
      if (e.stopRequested) void handle.stop(this.deps.stopGraceMs);
    } catch (err) {
      const appErr = toAppError(err);
      logger.warn({ err: appErr.message }, "task could not start");
      this.setState(e, "failed_to_start", { message: appErr.message });
    }
  }

  /**
   * Code and data from object stores (s3://, minio://, az://, gs://): the
   * entrypoint is fetched into the node's cache (archives extracted) and run
   * from there; a dataset the spec asks to fetch lands in the cache too and
   * is GPUORCH_DATASET_DIR. Both are verified against the store's checksum
   * and refused over `maxFetchBytes`.
   */
  private async fetchInputs(e: Entry, logger: Logger): Promise<{ entrypoint: TaskEntrypoint; env: Record<string, string> }> {
    const { cmd } = e;
    const opts = (field: string) => ({
      cacheDir: join(this.deps.workDir, "cache"),
      maxBytes: this.deps.maxFetchBytes ?? 10 * 1024 ** 3,
      logger,
      field,
      ...(this.deps.storeOptions ? { store: this.deps.storeOptions } : {}),
    });
    let entrypoint = cmd.entrypoint;
    const env: Record<string, string> = {};
    if (OBJECT_URI.test(entrypoint.uri)) {
      const got = await fetchEntrypoint(entrypoint.uri, opts("entrypoint.uri"));
      logger.info({ uri: entrypoint.uri, path: got.path, bytes: got.bytes, cached: got.cached }, "entrypoint fetched");
      entrypoint = { ...entrypoint, uri: got.path };
    }
    if (cmd.datasetUri) {
      const got = await fetchDataset(cmd.datasetUri, opts("data.dataset"));
      logger.info({ uri: cmd.datasetUri, path: got.path, bytes: got.bytes, files: got.files, cached: got.cached }, "dataset fetched");
      env.GPUORCH_DATASET_DIR = got.path;
    }
    return { entrypoint, env };
  }

  /**
   * Before the launch: downloads the checkpoint the attempt resumes from
   * (verified against the controller's record) and sets up the task's
   * checkpoint directory, trigger file and log file. Returns the job's extra
   * environment (GPUORCH_CHECKPOINT_DIR, GPUORCH_CHECKPOINT_TRIGGER,
   * GPUORCH_RESUME_FROM, GPUORCH_RESUME_STEP, …).
   */
  private async prepareCheckpoints(e: Entry, logger: Logger): Promise<Record<string, string>> {
    const { cmd } = e;
    const env: Record<string, string> = {};
    const attemptDir = attemptWorkDir(this.deps.workDir, cmd.jobId, cmd.attempt);
    if (cmd.resume) {
      const { store, location } = openObjectStore(cmd.resume.uri, this.deps.storeOptions, "launch.resume.uri");
      const dest = join(attemptDir, "resume", `node-${cmd.nodeRank}`);
      const started = Date.now();
      const got = await downloadCheckpoint(store, location.key, cmd.resume.sha256, dest);
      logger.info({ step: got.step, bytes: got.bytes, ms: Date.now() - started, from: cmd.resume.uri }, "resuming from checkpoint");
      env.GPUORCH_RESUME_FROM = got.dir;
      env.GPUORCH_RESUME_STEP = String(got.step);
      this.output(e, { rank: cmd.nodeRank, stream: "stderr", text: `[gpuorch] resuming from the checkpoint at step ${got.step} (attempt ${cmd.resume.attempt})`, at: this.now() });
    }
    const policy = cmd.checkpoint;
    if (!policy) return env;
    const { store, location } = openObjectStore(policy.uri, this.deps.storeOptions, "checkpoint.uri");
    e.store = { store, baseKey: location.key };
    const paths = checkpointPaths(attemptDir);
    mkdirSync(paths.localDir, { recursive: true });
    rmSync(paths.triggerFile, { force: true });
    env.GPUORCH_CHECKPOINT_DIR = paths.localDir;
    env.GPUORCH_CHECKPOINT_TRIGGER = paths.triggerFile;
    env.GPUORCH_CHECKPOINT_KEEP = String(policy.keep);
    if (policy.intervalSteps !== null) env.GPUORCH_CHECKPOINT_INTERVAL_STEPS = String(policy.intervalSteps);
    if (policy.intervalSeconds !== null) env.GPUORCH_CHECKPOINT_INTERVAL_SECONDS = String(policy.intervalSeconds);
    e.checkpointer = new TaskCheckpointer({
      policy,
      jobId: cmd.jobId,
      attempt: cmd.attempt,
      taskId: cmd.taskId,
      nodeRank: cmd.nodeRank,
      ...paths,
      store,
      baseKey: location.key,
      report: (r) => this.deps.onArtifact?.(r),
      logger,
      newId: this.deps.newId ?? randomUUID,
      now: () => this.now(),
      ...(this.deps.checkpointPollMs !== undefined ? { pollMs: this.deps.checkpointPollMs } : {}),
    });
    const logPath = join(attemptDir, "logs", cmd.unit >= 0 ? `unit-${cmd.unit}.log` : `node-${cmd.nodeRank}.log`);
    mkdirSync(dirname(logPath), { recursive: true });
    e.logFile = { path: logPath, stream: createWriteStream(logPath, { flags: "a" }) };
    return env;
  }

  /** The task's last checkpoint and its log file go to the store and are reported (bounded by finalUploadTimeoutMs). */
  private async uploadAtEnd(e: Entry, logger: Logger): Promise<void> {
    const timeout = this.deps.finalUploadTimeoutMs ?? 300_000;
    await e.checkpointer?.finish(timeout);
    const log = e.logFile;
    if (!log || !e.store) return;
    await new Promise<void>((res) => log.stream.end(res));
    const { cmd } = e;
    const key = `${attemptKeyPrefix(e.store.baseKey, cmd.jobId, cmd.attempt)}logs/${basename(log.path)}`;
    try {
      const put = await e.store.store.putFile(key, log.path, { signal: AbortSignal.timeout(timeout) });
      this.deps.onArtifact?.({
        artifactId: (this.deps.newId ?? randomUUID)(),
        taskId: cmd.taskId,
        jobId: cmd.jobId,
        attempt: cmd.attempt,
        nodeRank: cmd.nodeRank,
        type: "log",
        uri: put.uri,
        step: null,
        bytes: put.bytes,
        sha256: put.sha256,
        emergency: false,
      });
    } catch (err) {
      logger.warn({ err: toAppError(err).message, key }, "uploading the task's log failed");
    }
  }

  /** Checkpoint-now (controller command): the job's trigger, then the upload, reported as an emergency checkpoint. */
  checkpointNow(cmd: TaskCheckpointNowCommand): void {
    if (!this.remember(cmd.commandId)) return;
    const e = this.tasks.get(cmd.taskId);
    if (!e || e.cmd.attempt !== cmd.attempt || e.state !== "running") {
      this.deps.logger.warn({ taskId: cmd.taskId, attempt: cmd.attempt }, "checkpoint-now for a task not running here; ignored");
      return;
    }
    void this.requestCheckpoint(e, cmd.reason).then((result) => this.deps.onCheckpointNow?.(cmd, result));
  }

  /** Emergency checkpoints of every running task that has a checkpoint URI (a spot notice); resolves with each outcome. */
  async checkpointAllNow(reason: string): Promise<{ taskId: string; jobId: string; attempt: number; result: CheckpointNowResult }[]> {
    const running = [...this.tasks.values()].filter((e) => e.state === "running" && e.checkpointer);
    return Promise.all(running.map(async (e) => ({ taskId: e.cmd.taskId, jobId: e.cmd.jobId, attempt: e.cmd.attempt, result: await this.requestCheckpoint(e, reason) })));
  }

  private requestCheckpoint(e: Entry, reason: string): Promise<CheckpointNowResult> {
    if (!e.checkpointer) return Promise.resolve({ ok: false, message: "the job has no checkpoint.uri" });
    return e.checkpointer.requestNow(reason, this.deps.checkpointNowTimeoutMs ?? 120_000);
  }

  private output(e: Entry, line: TaskLogLine): void {
    e.logFile?.stream.write(`${line.at.toISOString()} ${line.stream} ${line.rank} ${line.text}\n`);
    e.tail.push(line.text);
    if (e.tail.length > TAIL_LINES) e.tail.shift();
    e.pending.push(line);
    if (e.pending.length >= (this.deps.logBatchLines ?? 200)) {
      this.flushLogs(e);
      return;
    }
    e.flushTimer ??= setTimeout(() => this.flushLogs(e), this.deps.logBatchMs ?? 200);
  }

  private flushLogs(e: Entry): void {
    if (e.flushTimer) clearTimeout(e.flushTimer);
    e.flushTimer = null;
    if (e.pending.length === 0) return;
    const lines = e.pending;
    e.pending = [];
    this.deps.onLogs({ taskId: e.cmd.taskId, jobId: e.cmd.jobId, attempt: e.cmd.attempt, nodeRank: e.cmd.nodeRank, lines });
  }

  stop(cmd: TaskStopCommand): void {
    const e = this.tasks.get(cmd.taskId);
    if (!this.remember(cmd.commandId) && !(e && (e.state === "starting" || e.state === "running") && !e.stopRequested)) return;
    if (!e) return;
    if (cmd.attempt !== e.cmd.attempt) {
      this.deps.logger.warn({ taskId: cmd.taskId, attempt: cmd.attempt, running: e.cmd.attempt }, "ignoring a stop for another attempt");
      return;
    }
    if (e.state !== "starting" && e.state !== "running") {
      this.deps.onStatus(e.report);
      return;
    }
    e.stopRequested = true;
    e.report = { ...e.report, message: cmd.reason };
    this.deps.logger.info({ taskId: cmd.taskId, reason: cmd.reason }, "stopping task");
    const grace = cmd.graceSeconds > 0 ? cmd.graceSeconds * 1000 : this.deps.stopGraceMs;
    if (e.handle) void e.handle.stop(grace);
    else if (e.state === "running") this.setState(e, "exited", { stopped: true }); // a standby task has no process
  }

  /** The controller recorded these tasks' ends: drop them. */
  forget(taskIds: readonly string[]): void {
    for (const id of taskIds) {
      const e = this.tasks.get(id);
      if (e && e.state !== "starting" && e.state !== "running") {
        this.tasks.delete(id);
        this.dropRecord(id);
      }
    }
  }

  setDraining(drain: boolean): void {
    this.draining = drain;
    this.deps.logger.info({ drain }, drain ? "draining: no new tasks" : "no longer draining");
  }

  /** Agent shutdown: stop every task (no process outlives the agent that started it). */
  async stopAll(): Promise<void> {
    this.shuttingDown = true;
    this.draining = true;
    await Promise.all(this.starting);
    await Promise.all(
      [...this.tasks.values()].map(async (e) => {
        if (e.handle) await e.handle.stop(this.deps.stopGraceMs);
      }),
    );
  }
}

const OBJECT_URI = /^(s3|gs|az|minio):\/\//i;

/**
 * The entrypoint as the launcher takes it. `uri` may name a local file or
 * directory (absolute, file://, or relative to `codeDir`); a file with no
 * command is the program itself, a directory is the working directory.
 * Object-store URIs are fetched before this (fetchInputs); git is refused clearly.
 */
export function resolveEntrypoint(e: TaskEntrypoint, codeDir: string): LaunchEntrypoint {
  let command: LaunchEntrypoint["command"] = e.commandShell ? (e.command[0] ?? "") : e.command;
  let workingDir = e.workingDir;
  if (e.uri !== "") {
    let path: string;
    if (/^file:\/\//i.test(e.uri)) path = fileURLToPath(e.uri);
    else if (/^[a-z][a-z0-9+.-]*:/i.test(e.uri) || /^[^/]+@[^/]+:/.test(e.uri)) {
      throw new AppError("FAILED_PRECONDITION", `entrypoint.uri ${e.uri}: this agent runs code from local paths, file:// and object stores (s3, minio, az, gs); git is not supported yet`, {
        reason: "entrypoint_unsupported",
      });
    } else path = isAbsolute(e.uri) ? e.uri : resolve(codeDir, e.uri);
    if (!existsSync(path)) {
      throw new AppError("NOT_FOUND", `entrypoint.uri ${e.uri}: ${path} does not exist on this node`, { reason: "entrypoint_missing" });
    }
    if (statSync(path).isDirectory()) {
      workingDir ||= path;
    } else {
      workingDir ||= dirname(path);
      if (e.command.length === 0) command = extname(path) === ".sh" ? ["sh", path] : [path];
    }
  }
  if (typeof command === "string" ? command.trim() === "" : command.length === 0) {
    throw AppError.invalid("entrypoint: no command and no runnable uri", [{ field: "entrypoint.command", message: "required" }]);
  }
  return { command, args: e.args, env: e.env, ...(workingDir ? { workingDir: isAbsolute(workingDir) ? workingDir : resolve(codeDir, workingDir) } : {}) };
}
