import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AppError, type AgentTaskReport, type TaskEntrypoint, type TaskLaunchCommand, type TaskLogChunk, type TaskStopCommand } from "@gpuorch/core";
import { createNullLogger, processGroupAlive } from "@gpuorch/runtime";
import { resolveEntrypoint, TaskManager, type TaskManagerDeps } from "./task-manager.js";

const JOB = "0190a6b2-1c3d-7e4f-8a9b-0c1d2e3f4a5b";

let workDir: string;
let managers: TaskManager[] = [];

beforeEach(async () => {
  workDir = await mkdtemp(join(tmpdir(), "gpuorch-tasks-"));
  managers = [];
});
afterEach(async () => {
  // No test may leave a process behind.
  for (const m of managers) await m.stopAll();
  await rm(workDir, { recursive: true, force: true });
});

type Event = { kind: "status"; report: AgentTaskReport } | { kind: "logs"; chunk: TaskLogChunk };

/** Collects what a TaskManager sends, in order, and waits for a status or a line without polling. */
class Recorder {
  readonly events: Event[] = [];
  private waiters: { pred: (e: Event) => boolean; resolve: () => void }[] = [];

  get statuses(): AgentTaskReport[] {
    return this.events.flatMap((e) => (e.kind === "status" ? [e.report] : []));
  }
  get chunks(): TaskLogChunk[] {
    return this.events.flatMap((e) => (e.kind === "logs" ? [e.chunk] : []));
  }
  statusesOf(taskId: string): AgentTaskReport[] {
    return this.statuses.filter((r) => r.taskId === taskId);
  }

  private push(e: Event): void {
    this.events.push(e);
    for (const w of [...this.waiters]) {
      if (w.pred(e)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }
  readonly onStatus = (report: AgentTaskReport): void => this.push({ kind: "status", report });
  readonly onLogs = (chunk: TaskLogChunk): void => this.push({ kind: "logs", chunk });

  private wait(pred: (e: Event) => boolean, what: string, timeoutMs: number): Promise<void> {
    if (this.events.some(pred)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}; saw ${JSON.stringify(this.events.map(describeEvent))}`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  /** The first status (already seen or still to come) of `taskId` in `state`. */
  async until(taskId: string, state: AgentTaskReport["state"], timeoutMs = 15_000): Promise<AgentTaskReport> {
    const pred = (r: AgentTaskReport) => r.taskId === taskId && r.state === state;
    await this.wait((e) => e.kind === "status" && pred(e.report), `${taskId} ${state}`, timeoutMs);
    const found = this.statuses.find(pred);
    if (!found) throw new Error("unreachable");
    return found;
  }

  /** Resolves once a log chunk of `taskId` carried the line `text`. */
  untilLine(taskId: string, text: string, timeoutMs = 15_000): Promise<void> {
    return this.wait((e) => e.kind === "logs" && e.chunk.taskId === taskId && e.chunk.lines.some((l) => l.text === text), `line ${text}`, timeoutMs);
  }
}

function describeEvent(e: Event): string {
  return e.kind === "status" ? `${e.report.taskId}:${e.report.state}` : `${e.chunk.taskId}:logs(${e.chunk.lines.length})`;
}

function manager(extra: Partial<TaskManagerDeps> = {}): { tm: TaskManager; rec: Recorder } {
  const rec = new Recorder();
  const tm = new TaskManager({
    workDir,
    codeDir: workDir,
    logger: createNullLogger(),
    stopGraceMs: 500,
    logBatchMs: 20,
    onStatus: rec.onStatus,
    onLogs: rec.onLogs,
    ...extra,
  });
  managers.push(tm);
  return { tm, rec };
}

function launchCmd(shell: string, over: Partial<TaskLaunchCommand> = {}): TaskLaunchCommand {
  const taskId = over.taskId ?? "task-1";
  return {
    commandId: `launch-${taskId}`,
    taskId,
    jobId: JOB,
    jobName: "test-job",
    attempt: 1,
    framework: "command",
    entrypoint: { uri: "", command: [shell], commandShell: true, args: [], env: {}, workingDir: "" },
    nodeRank: 0,
    numNodes: 1,
    gpus: [],
    masterAddr: "127.0.0.1",
    masterPort: 29500,
    hosts: [],
    unit: -1,
    cpuProcesses: 0,
    checkpoint: null,
    resume: null,
    datasetUri: "",
    ...over,
  };
}

function stopCmd(taskId: string, over: Partial<TaskStopCommand> = {}): TaskStopCommand {
  return { commandId: `stop-${taskId}`, taskId, jobId: JOB, attempt: 1, reason: "job cancelled", graceSeconds: 0, ...over };
}

/** The pgid the manager recorded for a running task (its on-disk task record). */
function recordedPgid(taskId: string): number {
  const rec = JSON.parse(readFileSync(join(workDir, "tasks", `${taskId}.json`), "utf8")) as { pgid: number | null };
  if (rec.pgid === null) throw new Error(`task ${taskId} has no pgid`);
  return rec.pgid;
}

/** A command that runs until the file `gate` exists, then exits with `code`: its end is the test's choice, not a timer's. */
function gated(gate: string, code: number): string {
  return `echo waiting; while [ ! -e '${gate}' ]; do sleep 0.02; done; echo released; exit ${code}`;
}

describe("TaskManager", () => {
  it("reports starting, running, exited(0) in order, sends the output before the exit, and carries the step", async () => {
    // A long batch window: the lines can only arrive before the exit if the manager flushes them at the exit.
    const { tm, rec } = manager({ logBatchMs: 60_000 });
    tm.launch(launchCmd("echo hi; echo GPUORCH_STEP=3", { nodeRank: 1, numNodes: 2 }));
    const exited = await rec.until("task-1", "exited");

    expect(rec.statusesOf("task-1").map((r) => r.state)).toEqual(["starting", "running", "exited"]);
    expect(exited.exitCode).toBe(0);
    expect(exited.stopped).toBe(false);
    expect(exited.step).toBe(3);
    expect(exited.lastLines).toEqual(["hi", "GPUORCH_STEP=3"]);

    const hi = rec.chunks.flatMap((c) => c.lines.map((l) => ({ c, l }))).find(({ l }) => l.text === "hi");
    expect(hi).toBeDefined();
    expect(hi?.l.rank).toBe(1);
    expect(hi?.l.stream).toBe("stdout");
    expect(hi?.c).toMatchObject({ taskId: "task-1", jobId: JOB, attempt: 1, nodeRank: 1 });

    const lastLogAt = rec.events.findLastIndex((e) => e.kind === "logs");
    const exitedAt = rec.events.findIndex((e) => e.kind === "status" && e.report.state === "exited");
    expect(lastLogAt).toBeGreaterThanOrEqual(0);
    expect(lastLogAt).toBeLessThan(exitedAt);
    // The record of a task that ended keeps its end until the controller has it (forget): a
    // restarted agent reports the true end instead of "lost".
    const saved = JSON.parse(readFileSync(join(workDir, "tasks", "task-1.json"), "utf8")) as { exit?: { state: string; exitCode: number } };
    expect(saved.exit).toMatchObject({ state: "exited", exitCode: 0 });
    tm.forget(["task-1"]);
    expect(existsSync(join(workDir, "tasks", "task-1.json"))).toBe(false);
  });

  it("reports a non-zero exit with its code and last lines", async () => {
    const { tm, rec } = manager();
    tm.launch(launchCmd("echo step one; echo boom >&2; exit 7"));
    const exited = await rec.until("task-1", "exited");
    expect(exited.exitCode).toBe(7);
    expect(exited.signal).toBeNull();
    expect(exited.stopped).toBe(false);
    expect(exited.lastLines).toContain("boom");
    const boom = rec.chunks.flatMap((c) => c.lines).find((l) => l.text === "boom");
    expect(boom?.stream).toBe("stderr");
  });

  it("reports failed_to_start when the entrypoint cannot run here", async () => {
    const { tm, rec } = manager();
    tm.launch(launchCmd("", { entrypoint: { uri: "s3://bucket/train.py", command: [], commandShell: false, args: [], env: {}, workingDir: "" } }));
    const failed = await rec.until("task-1", "failed_to_start");
    expect(failed.message).toContain("s3://bucket/train.py");
    expect(tm.activeCount).toBe(0);
  });

  it("runs a replayed launch once and only re-reports the task's state", async () => {
    const { tm, rec } = manager();
    const cmd = launchCmd("sleep 30");
    tm.launch(cmd);
    await rec.until("task-1", "running");
    const pgid = recordedPgid("task-1");
    const before = rec.statuses.length;

    tm.launch(cmd);
    tm.launch({ ...cmd, commandId: "launch-task-1-retry" });

    // A second start would have reported "starting" at once; a replay only repeats the current state.
    const after = rec.statuses.slice(before);
    expect(after.map((r) => r.state)).toEqual(["running", "running"]);
    expect(rec.statusesOf("task-1").filter((r) => r.state === "starting")).toHaveLength(1);
    expect(tm.activeCount).toBe(1);
    expect(tm.reports()).toHaveLength(1);
    expect(recordedPgid("task-1")).toBe(pgid);
  });

  it("refuses a launch for an older attempt than one already launched", async () => {
    const { tm, rec } = manager();
    tm.launch(launchCmd("sleep 30", { taskId: "task-a2", attempt: 2 }));
    await rec.until("task-a2", "running");

    tm.launch(launchCmd("echo should not run", { taskId: "task-a1", attempt: 1 }));
    const refused = await rec.until("task-a1", "failed_to_start");
    expect(refused.message).toContain("stale");
    expect(rec.statusesOf("task-a1").map((r) => r.state)).toEqual(["failed_to_start"]);
    expect(tm.activeCount).toBe(1);
  });

  it("ignores a stop that names another attempt than the task's", async () => {
    const gate = join(workDir, "go");
    const { tm, rec } = manager();
    tm.launch(launchCmd(gated(gate, 5), { attempt: 2 }));
    await rec.until("task-1", "running");
    const before = rec.statuses.length;

    tm.stop(stopCmd("task-1", { attempt: 1 }));
    expect(rec.statuses.length).toBe(before);

    // Had the stop been obeyed, the task would end by SIGTERM as stopped; it ends on its own instead.
    writeFileSync(gate, "");
    const exited = await rec.until("task-1", "exited");
    expect(exited).toMatchObject({ exitCode: 5, signal: null, stopped: false });
    expect(exited.lastLines).toContain("released");
  });

  it("stops a task: SIGTERM to its group, reported exited and stopped, its process group gone", async () => {
    const { tm, rec } = manager();
    tm.launch(launchCmd("sleep 30 & sleep 30; wait"));
    await rec.until("task-1", "running");
    const pgid = recordedPgid("task-1");
    expect(processGroupAlive(pgid)).toBe(true);

    tm.stop(stopCmd("task-1", { reason: "job cancelled by alice" }));
    const exited = await rec.until("task-1", "exited");
    expect(exited.stopped).toBe(true);
    // SIGTERM ended it: it did not need the SIGKILL that follows the grace.
    expect(exited.signal).toBe("SIGTERM");
    expect(exited.message).toBe("job cancelled by alice");
    expect(processGroupAlive(pgid)).toBe(false);
    tm.forget(["task-1"]);
    expect(existsSync(join(workDir, "tasks", "task-1.json"))).toBe(false);
    expect(tm.activeCount).toBe(0);
  });

  it("kills a task that ignores SIGTERM once the grace has passed", async () => {
    const { tm, rec } = manager({ stopGraceMs: 300 });
    tm.launch(launchCmd("trap '' TERM; echo trapped; sleep 30"));
    // Only once the shell said so is SIGTERM ignored (by it and by the sleep it starts).
    await rec.untilLine("task-1", "trapped");
    const pgid = recordedPgid("task-1");
    const t0 = performance.now();
    tm.stop(stopCmd("task-1"));
    const exited = await rec.until("task-1", "exited");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(300);
    expect(exited).toMatchObject({ stopped: true, signal: "SIGKILL", exitCode: null });
    expect(processGroupAlive(pgid)).toBe(false);
  });

  it("refuses new launches while draining and lets running tasks go on", async () => {
    const gate = join(workDir, "go");
    const { tm, rec } = manager();
    tm.launch(launchCmd(gated(gate, 0), { taskId: "old" }));
    await rec.until("old", "running");

    tm.setDraining(true);
    expect(tm.isDraining).toBe(true);
    tm.launch(launchCmd("echo new", { taskId: "new" }));
    const refused = await rec.until("new", "failed_to_start");
    expect(refused.message).toContain("draining");

    writeFileSync(gate, "");
    const exited = await rec.until("old", "exited");
    expect(exited).toMatchObject({ exitCode: 0, stopped: false });

    tm.setDraining(false);
    tm.launch(launchCmd("echo again", { taskId: "after" }));
    expect((await rec.until("after", "exited")).exitCode).toBe(0);
  });

  it("forgets ended tasks but never an active one", async () => {
    const { tm, rec } = manager();
    tm.launch(launchCmd("exit 0", { taskId: "done" }));
    tm.launch(launchCmd("sleep 30", { taskId: "busy" }));
    await rec.until("done", "exited");
    await rec.until("busy", "running");

    tm.forget(["done", "busy", "unknown"]);
    expect(tm.reports().map((r) => r.taskId)).toEqual(["busy"]);
    expect(tm.reports()[0]?.state).toBe("running");
  });

  it("recover() stops the process group a previous agent process left and reports the task lost", async () => {
    const first = manager();
    first.tm.launch(launchCmd("sleep 30", { taskId: "orphan", nodeRank: 0 }));
    await first.rec.until("orphan", "running");
    const pgid = recordedPgid("orphan");

    // The agent restarts: a new manager on the same work dir; the first one is never told.
    const second = manager();
    expect(await second.tm.recover()).toBe(1);
    expect(processGroupAlive(pgid)).toBe(false);
    const reports = second.tm.reports();
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ taskId: "orphan", jobId: JOB, attempt: 1, state: "lost" });
    expect(reports[0]?.message).not.toBe("");
    expect(existsSync(join(workDir, "tasks", "orphan.json"))).toBe(false);
    // Recovering again finds nothing more.
    expect(await manager().tm.recover()).toBe(0);
  });

  it("recover() reports a task that ended before the agent died as it ended (not lost), until forgotten", async () => {
    const first = manager();
    first.tm.launch(launchCmd("exit 0", { taskId: "finished", nodeRank: 0 }));
    await first.rec.until("finished", "exited");
    // The agent is killed before the controller acknowledged the end; a new one starts on the same work dir.
    const second = manager();
    expect(await second.tm.recover()).toBe(1);
    expect(second.tm.reports()).toEqual([expect.objectContaining({ taskId: "finished", state: "exited", exitCode: 0 })]);
    second.tm.forget(["finished"]);
    expect(second.tm.reports()).toEqual([]);
    expect(await manager().tm.recover()).toBe(0);
  });

  it("recover() skips an unreadable task record", async () => {
    mkdirSync(join(workDir, "tasks"), { recursive: true });
    writeFileSync(join(workDir, "tasks", "broken.json"), "{not json");
    const { tm } = manager();
    expect(await tm.recover()).toBe(0);
    expect(tm.reports()).toEqual([]);
    expect(existsSync(join(workDir, "tasks", "broken.json"))).toBe(false);
  });

  it("stopAll() ends running tasks and reports them lost, not exited", async () => {
    const { tm, rec } = manager();
    tm.launch(launchCmd("echo up; sleep 30", { taskId: "a" }));
    tm.launch(launchCmd("sleep 30", { taskId: "b" }));
    await rec.until("a", "running");
    await rec.until("b", "running");
    const pgids = [recordedPgid("a"), recordedPgid("b")];

    await tm.stopAll();
    for (const id of ["a", "b"]) {
      const states = rec.statusesOf(id).map((r) => r.state);
      expect(states.at(-1)).toBe("lost");
      expect(states).not.toContain("exited");
      expect(rec.statusesOf(id).at(-1)?.message).toMatch(/the agent shut down/);
    }
    for (const pgid of pgids) expect(processGroupAlive(pgid)).toBe(false);
    expect(tm.activeCount).toBe(0);
    // No new task after shutdown began.
    tm.launch(launchCmd("echo late", { taskId: "late" }));
    expect((await rec.until("late", "failed_to_start")).message).toContain("draining");
  });

  it("stopAll() also stops a task whose process was still being started", async () => {
    const { tm, rec } = manager();
    tm.launch(launchCmd("sleep 30", { taskId: "young" }));
    // Straight after the launch: the process is being spawned, nothing is running yet.
    await tm.stopAll();
    expect(tm.activeCount).toBe(0);
    const last = rec.statusesOf("young").at(-1);
    expect(last?.state).toBe("lost");
    expect(existsSync(join(workDir, "tasks", "young.json"))).toBe(false);
  });
});

describe("resolveEntrypoint", () => {
  const ep = (over: Partial<TaskEntrypoint>): TaskEntrypoint => ({ uri: "", command: [], commandShell: false, args: [], env: {}, workingDir: "", ...over });
  let codeDir: string;
  beforeEach(() => {
    codeDir = join(workDir, "code");
    mkdirSync(join(codeDir, "proj"), { recursive: true });
    writeFileSync(join(codeDir, "proj", "train.py"), "print('hi')\n");
    writeFileSync(join(codeDir, "proj", "run.sh"), "echo hi\n");
  });
  const errorOf = (fn: () => unknown): AppError => {
    try {
      fn();
    } catch (e) {
      if (e instanceof AppError) return e;
      throw e;
    }
    throw new Error("expected an AppError");
  };

  it("runs a file uri with no command as the program, in its directory", () => {
    const file = join(codeDir, "proj", "train.py");
    expect(resolveEntrypoint(ep({ uri: file, args: ["--lr", "0.1"], env: { A: "1" } }), codeDir)).toEqual({
      command: [file],
      args: ["--lr", "0.1"],
      env: { A: "1" },
      workingDir: join(codeDir, "proj"),
    });
  });

  it("runs a .sh file with sh", () => {
    const file = join(codeDir, "proj", "run.sh");
    expect(resolveEntrypoint(ep({ uri: file }), codeDir).command).toEqual(["sh", file]);
  });

  it("keeps the command and uses a directory uri as the working dir", () => {
    const r = resolveEntrypoint(ep({ uri: join(codeDir, "proj"), command: ["python", "train.py"] }), codeDir);
    expect(r.command).toEqual(["python", "train.py"]);
    expect(r.workingDir).toBe(join(codeDir, "proj"));
  });

  it("keeps the command given with a file uri and an explicit working dir", () => {
    const r = resolveEntrypoint(ep({ uri: join(codeDir, "proj", "train.py"), command: ["python", "-u", "train.py"], workingDir: "/srv" }), codeDir);
    expect(r).toMatchObject({ command: ["python", "-u", "train.py"], workingDir: "/srv" });
  });

  it("takes a file:// URI", () => {
    const file = join(codeDir, "proj", "train.py");
    const r = resolveEntrypoint(ep({ uri: pathToFileURL(file).href }), codeDir);
    expect(r).toMatchObject({ command: [file], workingDir: join(codeDir, "proj") });
  });

  it("resolves a relative uri and a relative working dir from codeDir", () => {
    expect(resolveEntrypoint(ep({ uri: "proj/train.py" }), codeDir)).toMatchObject({
      command: [join(codeDir, "proj", "train.py")],
      workingDir: join(codeDir, "proj"),
    });
    expect(resolveEntrypoint(ep({ command: ["x"], workingDir: "proj" }), codeDir).workingDir).toBe(join(codeDir, "proj"));
  });

  it.each(["s3://bucket/code/train.py", "gs://bucket/train.py", "https://github.com/acme/train.git", "git@github.com:acme/train.git"])(
    "refuses %s as unsupported",
    (uri) => {
      const err = errorOf(() => resolveEntrypoint(ep({ uri, command: ["python", "train.py"] }), codeDir));
      expect(err.code).toBe("FAILED_PRECONDITION");
      expect(err.reason).toBe("entrypoint_unsupported");
      expect(err.message).toContain(uri);
    },
  );

  it("reports a missing path as NOT_FOUND", () => {
    const err = errorOf(() => resolveEntrypoint(ep({ uri: "proj/missing.py" }), codeDir));
    expect(err.code).toBe("NOT_FOUND");
    expect(err.reason).toBe("entrypoint_missing");
    expect(err.message).toContain(join(codeDir, "proj", "missing.py"));
  });

  it("refuses an entrypoint with no command and no uri", () => {
    const err = errorOf(() => resolveEntrypoint(ep({}), codeDir));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.fields.map((f) => f.field)).toContain("entrypoint.command");
    expect(errorOf(() => resolveEntrypoint(ep({ command: ["  "], commandShell: true }), codeDir)).code).toBe("INVALID_ARGUMENT");
  });

  it("keeps a shell command as one string", () => {
    const r = resolveEntrypoint(ep({ command: ["echo hi && python train.py"], commandShell: true }), codeDir);
    expect(r.command).toBe("echo hi && python train.py");
    expect(r.workingDir).toBeUndefined();
  });
});
