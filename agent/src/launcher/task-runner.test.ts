import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AppError } from "@gpuorch/core";
import { createMemoryLogger, processGroupAlive, waitProcessGroupGone } from "@gpuorch/runtime";
import { buildLaunch, type Launch, type LaunchTask } from "./launch-builder.js";
import { startTask, type StartTaskOptions, type TaskExit, type TaskOutputChunk, taskGuardPath } from "./task-runner.js";

let workDir: string;
beforeEach(async () => {
  workDir = await mkdtemp(join(tmpdir(), "gpuorch-launcher-"));
});
afterEach(async () => {
  await rm(workDir, { recursive: true, force: true });
});

function commandLaunch(command: string, extra: Partial<LaunchTask> = {}): Launch {
  return buildLaunch(
    {
      framework: "command",
      jobId: "job-1",
      attempt: 1,
      entrypoint: { command },
      nodeRank: 0,
      numNodes: 1,
      gpus: [],
      masterAddr: "127.0.0.1",
      masterPort: 29500,
      ...extra,
    },
    { workDir },
  );
}

interface Recorded {
  lines: TaskOutputChunk[];
  progress: { step: number | undefined; metrics: Record<string, number> }[];
  exits: TaskExit[];
}

function recorder(extra: Partial<StartTaskOptions> = {}): { opts: StartTaskOptions; rec: Recorded; waitForLine(text: string): Promise<void> } {
  const rec: Recorded = { lines: [], progress: [], exits: [] };
  const waiters: { text: string; resolve: () => void }[] = [];
  const opts: StartTaskOptions = {
    workDir,
    logger: createMemoryLogger(),
    onOutput: (chunk) => {
      rec.lines.push(chunk);
      for (const w of waiters) if (w.text === chunk.text) w.resolve();
    },
    onProgress: (step, metrics) => rec.progress.push({ step, metrics }),
    onExit: (result) => rec.exits.push(result),
    ...extra,
  };
  const waitForLine = (text: string) =>
    rec.lines.some((l) => l.text === text) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ text, resolve }));
  return { opts, rec, waitForLine };
}

/** Live (non-zombie) PIDs whose process group is `pgid`, from ps (not from the code under test). */
function groupPids(pgid: number): number[] {
  const out = execFileSync("ps", ["-e", "-o", "pid=,pgid=,stat="], { encoding: "utf8" });
  return out
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter(([, g, st]) => Number(g) === pgid && !st?.startsWith("Z"))
    .map(([p]) => Number(p));
}

describe("startTask", () => {
  it("streams stdout and stderr line by line, reads rank tags, parses progress, and reports the exit code", async () => {
    const { opts, rec } = recorder();
    const script = [
      "echo out1",
      "echo err1 >&2",
      "printf '[default0]:GPUORCH_STEP=3\\n[default1]:GPUORCH_METRIC loss=0.5\\n'",
      "echo GPUORCH_STEP=4",
      "printf 'no newline'",
      "exit 3",
    ].join("; ");
    const handle = await startTask(commandLaunch(script), opts);
    expect(handle.pgid).toBe(handle.pid);
    const result = await handle.exited;

    expect(result).toEqual({ exitCode: 3, signal: null, stopped: false, step: 4, metrics: { loss: 0.5 } });
    expect(rec.exits).toEqual([result]);
    expect(rec.lines.filter((l) => l.stream === "stdout")).toEqual([
      { stream: "stdout", text: "out1" },
      { stream: "stdout", text: "GPUORCH_STEP=3", rank: 0 },
      { stream: "stdout", text: "GPUORCH_METRIC loss=0.5", rank: 1 },
      { stream: "stdout", text: "GPUORCH_STEP=4" },
      { stream: "stdout", text: "no newline" },
    ]);
    expect(rec.lines.filter((l) => l.stream === "stderr")).toEqual([{ stream: "stderr", text: "err1" }]);
    expect(rec.progress).toEqual([
      { step: 3, metrics: {} },
      { step: 3, metrics: { loss: 0.5 } },
      { step: 4, metrics: { loss: 0.5 } },
    ]);
  });

  it("runs in the attempt directory with the launch's env over the base env", async () => {
    const { opts, rec } = recorder({ baseEnv: { PATH: process.env.PATH, KEEP: "base", GPUORCH_JOB_ID: "overridden" } });
    const result = await (await startTask(commandLaunch('echo "$PWD|$KEEP|$GPUORCH_JOB_ID|$GPUORCH_ATTEMPT"'), opts)).exited;
    expect(result.exitCode).toBe(0);
    expect(rec.lines.map((l) => l.text)).toEqual([`${workDir}/job-1/attempt-1|base|job-1|1`]);
  });

  it("reads progress from $GPUORCH_PROGRESS_FILE", async () => {
    const { opts, rec } = recorder({ progressPollMs: 20 });
    const script = `printf 'GPUORCH_STEP=7\\nGPUORCH_METRIC acc=0.9\\n' > "$GPUORCH_PROGRESS_FILE"`;
    const result = await (await startTask(commandLaunch(script), opts)).exited;
    expect(result).toMatchObject({ exitCode: 0, step: 7, metrics: { acc: 0.9 } });
    expect(rec.progress.at(-1)).toEqual({ step: 7, metrics: { acc: 0.9 } });
    expect(rec.lines).toEqual([]);
  });

  it("writes the launch's files with their modes before starting", async () => {
    const launch = buildLaunch(
      {
        framework: "horovod_elastic",
        jobId: "job-1",
        attempt: 2,
        entrypoint: { command: ["train.py"] },
        nodeRank: 0,
        numNodes: 2,
        gpus: ["0"],
        masterAddr: "127.0.0.1",
        masterPort: 29500,
        hosts: [
          { host: "10.0.0.1", slots: 1 },
          { host: "10.0.0.2", slots: 1 },
        ],
      },
      { workDir },
    );
    const script = launch.argv[launch.argv.indexOf("--host-discovery-script") + 1] ?? "";
    // Run the discovery script itself, as horovodrun would.
    const { opts, rec } = recorder();
    const result = await (await startTask({ ...launch, argv: [script] }, opts)).exited;
    expect(result.exitCode).toBe(0);
    expect(rec.lines.map((l) => l.text)).toEqual(["10.0.0.1:1", "10.0.0.2:1"]);
    expect((await stat(script)).mode & 0o777).toBe(0o755);
    expect(await readFile(join(launch.attemptDir, "horovod-hosts"), "utf8")).toBe("10.0.0.1:1\n10.0.0.2:1\n");
  });

  it("stop(): SIGTERM to the group, then SIGKILL after the grace; no process of the group survives", async () => {
    const { opts, rec, waitForLine } = recorder();
    // The leader and both grandchildren ignore SIGTERM (an ignored signal stays ignored across fork and exec).
    const script = ["trap '' TERM", "sleep 1000 &", "sh -c 'trap \"\" TERM; sleep 1000; :' &", "echo ready", "wait"].join("\n");
    const handle = await startTask(commandLaunch(script), opts);
    await waitForLine("ready");
    // "ready" can print before the inner shell has forked its sleep: wait (bounded) for all four.
    for (let i = 0; i < 200 && groupPids(handle.pgid).length < 4; i++) await new Promise((r) => setTimeout(r, 25));
    expect(groupPids(handle.pgid).length).toBeGreaterThanOrEqual(4);

    const started = performance.now();
    await handle.stop(300);
    const took = performance.now() - started;

    expect(groupPids(handle.pgid)).toEqual([]);
    // kill(-pgid, 0) may still succeed here: the orphaned grandchildren are
    // zombies until PID 1 reaps them, and a container's PID 1 may never do so.
    expect(took).toBeGreaterThanOrEqual(290);
    expect(rec.exits).toEqual([{ exitCode: null, signal: "SIGKILL", stopped: true, step: undefined, metrics: {} }]);
    const logger = opts.logger as ReturnType<typeof createMemoryLogger>;
    expect(logger.records.some((r) => r.level === "warn" && r.msg?.includes("sending SIGKILL"))).toBe(true);
  });

  it("stop(): a process that honours SIGTERM ends without waiting for the grace", async () => {
    const { opts, waitForLine } = recorder();
    const handle = await startTask(commandLaunch("echo ready; exec sleep 1000"), opts);
    await waitForLine("ready");
    const started = performance.now();
    await handle.stop(30_000);
    expect(performance.now() - started).toBeLessThan(5_000);
    expect(await handle.exited).toMatchObject({ exitCode: null, signal: "SIGTERM", stopped: true });
    expect(groupPids(handle.pgid)).toEqual([]);
    // A second stop after the end is harmless.
    await handle.stop(10);
  });

  it("an abort signal stops the task", async () => {
    const ac = new AbortController();
    const { opts, waitForLine } = recorder({ signal: ac.signal, stopGraceMs: 200 });
    const handle = await startTask(commandLaunch("echo ready; exec sleep 1000"), opts);
    await waitForLine("ready");
    ac.abort();
    expect(await handle.exited).toMatchObject({ signal: "SIGTERM", stopped: true });
  });

  it("processes the leader leaves behind are stopped before onExit", async () => {
    const { opts, rec } = recorder({ stopGraceMs: 200 });
    const handle = await startTask(commandLaunch("trap '' TERM; sleep 1000 & echo left; exit 0"), opts);
    const result = await handle.exited;
    expect(result).toMatchObject({ exitCode: 0, signal: null, stopped: false });
    expect(rec.lines.map((l) => l.text)).toEqual(["left"]);
    expect(groupPids(handle.pgid)).toEqual([]);
  });

  it("a missing executable is a NOT_FOUND AppError", async () => {
    const { opts, rec } = recorder();
    const launch = commandLaunch("x");
    const err = await startTask({ ...launch, argv: [join(workDir, "no-such-binary")] }, opts).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: "NOT_FOUND", reason: "launcher_executable_not_found" });
    expect(rec.exits).toEqual([]);
  });

  it("refuses a standby launch and a launch built for another work dir", async () => {
    const { opts } = recorder();
    const standby = buildLaunch(
      {
        framework: "horovod",
        jobId: "job-1",
        attempt: 1,
        entrypoint: { command: ["train.py"] },
        nodeRank: 1,
        numNodes: 2,
        gpus: ["0"],
        masterAddr: "127.0.0.1",
        masterPort: 29500,
      },
      { workDir },
    );
    await expect(startTask(standby, opts)).rejects.toMatchObject({ code: "FAILED_PRECONDITION", reason: "launch_standby" });
    await expect(startTask(commandLaunch("true"), { ...opts, workDir: "/elsewhere" })).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });
});

describe("task guard: no task outlives its agent", () => {
  it("ends the whole process group when the agent's end of its stdin closes (the agent died)", async () => {
    const child = spawn(process.execPath, [taskGuardPath(), "500", "--", "/bin/sh", "-c", "sleep 60 & sleep 60; wait"], { detached: true, stdio: ["pipe", "ignore", "ignore"] });
    await once(child, "spawn");
    const pgid = child.pid!;
    await new Promise((r) => setTimeout(r, 300));
    expect(processGroupAlive(pgid)).toBe(true);
    child.stdin!.destroy(); // what the kernel does to the pipe when the agent is killed
    expect(await waitProcessGroupGone(pgid, 5_000)).toBe(true);
  });

  it("exits as its command did: the same code, or the same signal, and survives a group SIGTERM until the command ends", async () => {
    const run = async (script: string, signalGroup?: NodeJS.Signals) => {
      const child = spawn(process.execPath, [taskGuardPath(), "500", "--", "/bin/sh", "-c", script], { detached: true, stdio: ["pipe", "ignore", "ignore"] });
      await once(child, "spawn");
      if (signalGroup) {
        await new Promise((r) => setTimeout(r, 300));
        process.kill(-child.pid!, signalGroup);
      }
      const [code, signal] = (await once(child, "exit")) as [number | null, NodeJS.Signals | null];
      return { code, signal };
    };
    expect(await run("exit 7")).toEqual({ code: 7, signal: null });
    expect(await run("kill -KILL $$")).toEqual({ code: null, signal: "SIGKILL" });
    // The shell traps TERM and exits 3 after it: the guard waits for it and reports 3.
    expect(await run("trap 'exit 3' TERM; sleep 5 & wait", "SIGTERM")).toEqual({ code: 3, signal: null });
  });
});
