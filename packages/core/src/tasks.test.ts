import { describe, expect, it } from "vitest";
import type { JobStatus } from "./job-status.js";
import { type AgentTaskReport, type AttemptTask, type AttemptView, judgeAttempt, masterPortFor, taskStateFromReport } from "./tasks.js";

const T0 = Date.parse("2025-01-01T00:00:00Z");
const at = (s: number): Date => new Date(T0 + s * 1000);

function task(over: Partial<AttemptTask> = {}): AttemptTask {
  const nodeRank = over.nodeRank ?? 0;
  return {
    id: `t-${nodeRank}-${over.unit ?? -1}`,
    nodeRank,
    unit: -1,
    state: "assigned",
    exitCode: null,
    reason: null,
    hostname: `host-${nodeRank}`,
    endedAt: null,
    ...over,
  };
}

/** A single_cluster gang of 2 (node ranks 0 and 1). */
function gang(status: JobStatus, tasks: AttemptTask[]): AttemptView {
  return { status, executionMode: "single_cluster", expected: 2, tasks, maxAttempts: 3 };
}

/** A multi_task job of `expected` units; each task is one placement of a unit. */
function units(status: JobStatus, expected: number, tasks: AttemptTask[], maxAttempts = 3): AttemptView {
  return { status, executionMode: "multi_task", expected, tasks, maxAttempts };
}

const unitTask = (unit: number, state: AttemptTask["state"], over: Partial<AttemptTask> = {}): AttemptTask =>
  task({ id: `u${unit}-${state}-${over.hostname ?? "h"}`, unit, nodeRank: 0, state, hostname: `host-u${unit}`, ...over });

describe("judgeAttempt: single_cluster gang", () => {
  it("moves provisioning → running once every node rank runs", () => {
    const v = judgeAttempt(gang("provisioning", [task({ nodeRank: 0, state: "running" }), task({ nodeRank: 1, state: "running" })]));
    expect(v).toEqual({ kind: "running" });
  });

  it("waits while one rank runs and the other is still assigned", () => {
    const v = judgeAttempt(gang("provisioning", [task({ nodeRank: 0, state: "running" }), task({ nodeRank: 1, state: "assigned" })]));
    expect(v).toEqual({ kind: "none" });
  });

  it("does not count two tasks of the same rank as the whole gang having succeeded", () => {
    const v = judgeAttempt(
      gang("running", [task({ id: "a", nodeRank: 0, state: "succeeded" }), task({ id: "b", nodeRank: 0, state: "succeeded" }), task({ nodeRank: 1, state: "running" })]),
    );
    expect(v).toEqual({ kind: "none" });
  });

  it.each<JobStatus>(["running", "provisioning"])("completes from %s when both ranks succeeded", (status) => {
    const v = judgeAttempt(gang(status, [task({ nodeRank: 0, state: "succeeded", exitCode: 0 }), task({ nodeRank: 1, state: "succeeded", exitCode: 0 })]));
    expect(v.kind).toBe("completed");
    if (v.kind === "completed") expect(v.reason).toContain("2");
  });

  it("fails naming the rank, its host and its reason when one rank failed", () => {
    const failed = task({ nodeRank: 1, state: "failed", exitCode: 3, reason: "exit code 3; last output:\nTraceback\nValueError: bad lr", endedAt: at(5) });
    const v = judgeAttempt(gang("running", [task({ nodeRank: 0, state: "running" }), failed]));
    expect(v.kind).toBe("failed");
    if (v.kind !== "failed") return;
    expect(v.task).toBe(failed);
    expect(v.reason).toContain("node rank 1");
    expect(v.reason).toContain("host-1");
    expect(v.reason).toContain("exit code 3");
    expect(v.reason).toContain("ValueError: bad lr");
  });

  it("falls back to the exit code when a failed rank has no reason", () => {
    const v = judgeAttempt(gang("running", [task({ nodeRank: 0, state: "failed", exitCode: 9, endedAt: at(1) }), task({ nodeRank: 1, state: "running" })]));
    expect(v.kind).toBe("failed");
    if (v.kind === "failed") expect(v.reason).toBe("node rank 0 on host-0 failed with exit code 9");
  });

  it("names the rank that failed first when two failed, whatever their order in the list", () => {
    const later = task({ nodeRank: 0, state: "failed", exitCode: 1, reason: "collateral NCCL error", endedAt: at(20) });
    const earlier = task({ nodeRank: 1, state: "failed", exitCode: 3, reason: "CUDA out of memory", endedAt: at(10) });
    for (const tasks of [
      [later, earlier],
      [earlier, later],
    ]) {
      const v = judgeAttempt(gang("running", tasks));
      expect(v.kind).toBe("failed");
      if (v.kind !== "failed") continue;
      expect(v.task).toBe(earlier);
      expect(v.reason).toContain("node rank 1 on host-1");
      expect(v.reason).toContain("CUDA out of memory");
    }
  });

  it("counts a rank failing after its peer was lost as collateral: the attempt is lost, not failed", () => {
    const lost = task({ nodeRank: 0, state: "lost", reason: "node lost", endedAt: at(1) });
    const failed = task({ nodeRank: 1, state: "failed", exitCode: 1, reason: "exit code 1; Connection reset by peer", endedAt: at(2) });
    const v = judgeAttempt(gang("running", [lost, failed]));
    expect(v).toEqual({ kind: "lost", task: lost, reason: "node rank 0 on host-0 was lost (node lost); node rank 1 on host-1 failed after it" });
  });

  it("counts a rank failing while its peer's node is cut off (agent stream gone) as lost", () => {
    const failed = task({ nodeRank: 1, state: "failed", exitCode: 1, endedAt: at(2) });
    const v = judgeAttempt(gang("running", [task({ nodeRank: 0, state: "running", nodeAvailable: false }), failed]));
    expect(v.kind).toBe("lost");
    if (v.kind === "lost") expect(v.reason).toBe("node rank 0 on host-0 became unreachable; node rank 1 on host-1 failed after it");
  });

  it("still fails a single-node job whose node is cut off when its rank failed (no peer to blame)", () => {
    const v = judgeAttempt({ status: "running", executionMode: "single_cluster", expected: 1, tasks: [task({ state: "failed", exitCode: 1, endedAt: at(1), nodeAvailable: false })], maxAttempts: 3 });
    expect(v.kind).toBe("failed");
  });

  it("reports a lost rank as lost, naming it and why", () => {
    const lost = task({ nodeRank: 1, state: "lost", reason: "the agent restarted", endedAt: at(3) });
    const v = judgeAttempt(gang("running", [task({ nodeRank: 0, state: "running" }), lost]));
    expect(v).toEqual({ kind: "lost", task: lost, reason: "node rank 1 on host-1 was lost: the agent restarted" });
  });

  it("lets a loss win over the other ranks having succeeded", () => {
    const v = judgeAttempt(gang("running", [task({ nodeRank: 0, state: "succeeded", exitCode: 0 }), task({ nodeRank: 1, state: "lost", endedAt: at(1) })]));
    expect(v.kind).toBe("lost");
  });

  it.each<JobStatus>(["pending", "completed", "cancelled", "requeued", "failed"])("does nothing for a job that is %s", (status) => {
    const tasks = [task({ nodeRank: 0, state: "failed", exitCode: 1, endedAt: at(1) }), task({ nodeRank: 1, state: "lost", endedAt: at(2) })];
    expect(judgeAttempt(gang(status, tasks))).toEqual({ kind: "none" });
    const done = [task({ nodeRank: 0, state: "succeeded" }), task({ nodeRank: 1, state: "succeeded" })];
    expect(judgeAttempt(gang(status, done))).toEqual({ kind: "none" });
  });
});

describe("judgeAttempt: multi_task units", () => {
  it("moves provisioning → running as soon as the first unit runs", () => {
    const v = judgeAttempt(units("provisioning", 3, [unitTask(0, "running"), unitTask(1, "assigned"), unitTask(2, "assigned")]));
    expect(v).toEqual({ kind: "running" });
  });

  it("stays put while no unit has started", () => {
    expect(judgeAttempt(units("provisioning", 3, [unitTask(0, "assigned"), unitTask(1, "assigned")]))).toEqual({ kind: "none" });
  });

  it("completes when all N units succeeded, even after a unit was lost and placed again", () => {
    const tasks = [
      unitTask(0, "succeeded"),
      unitTask(1, "lost", { hostname: "spot-a", endedAt: at(1) }),
      unitTask(1, "lost", { hostname: "spot-b", endedAt: at(2) }),
      unitTask(1, "succeeded", { hostname: "spot-c" }),
      unitTask(2, "succeeded"),
    ];
    const v = judgeAttempt(units("running", 3, tasks, 3));
    expect(v).toEqual({ kind: "completed", reason: "all 3 units succeeded" });
  });

  it("does not complete while one of the N units has not succeeded", () => {
    const v = judgeAttempt(units("running", 3, [unitTask(0, "succeeded"), unitTask(1, "succeeded"), unitTask(2, "running")]));
    expect(v).toEqual({ kind: "none" });
  });

  it("fails the job when one unit was lost max_attempts times", () => {
    const tasks = [
      unitTask(0, "running"),
      unitTask(1, "lost", { hostname: "spot-a", endedAt: at(1) }),
      unitTask(1, "lost", { hostname: "spot-b", endedAt: at(2) }),
      unitTask(1, "lost", { hostname: "spot-c", endedAt: at(3) }),
    ];
    const v = judgeAttempt(units("running", 2, tasks, 3));
    expect(v.kind).toBe("failed");
    if (v.kind !== "failed") return;
    expect(v.task.hostname).toBe("spot-c");
    expect(v.reason).toContain("unit 1 was lost 3 times");
    expect(v.reason).toContain("max_attempts 3");
  });

  it("leaves a unit lost fewer than max_attempts times to be placed again", () => {
    const tasks = [unitTask(0, "running"), unitTask(1, "lost", { endedAt: at(1) }), unitTask(1, "lost", { hostname: "spot-b", endedAt: at(2) })];
    expect(judgeAttempt(units("running", 2, tasks, 3))).toEqual({ kind: "none" });
  });

  it("does not add up losses of different units", () => {
    const tasks = [unitTask(0, "lost", { endedAt: at(1) }), unitTask(1, "lost", { endedAt: at(2) }), unitTask(2, "running")];
    expect(judgeAttempt(units("running", 3, tasks, 2))).toEqual({ kind: "none" });
  });

  it("fails the job when a unit failed, naming the unit", () => {
    const v = judgeAttempt(units("running", 2, [unitTask(0, "running"), unitTask(1, "failed", { exitCode: 4, reason: "exit code 4", endedAt: at(1) })]));
    expect(v.kind).toBe("failed");
    if (v.kind === "failed") expect(v.reason).toBe("unit 1 on host-u1 failed: exit code 4");
  });
});

function report(over: Partial<AgentTaskReport>): AgentTaskReport {
  return {
    taskId: "t1",
    jobId: "j1",
    attempt: 1,
    nodeRank: 0,
    state: "running",
    exitCode: null,
    signal: null,
    stopped: false,
    step: null,
    metrics: {},
    message: "",
    lastLines: [],
    changedAt: at(0),
    ...over,
  };
}

describe("taskStateFromReport", () => {
  it("maps starting to assigned and running to running, without a reason", () => {
    expect(taskStateFromReport(report({ state: "starting" }))).toEqual({ state: "assigned", reason: null });
    expect(taskStateFromReport(report({ state: "running" }))).toEqual({ state: "running", reason: null });
  });

  it("maps exit code 0 to succeeded", () => {
    expect(taskStateFromReport(report({ state: "exited", exitCode: 0, lastLines: ["done"] }))).toEqual({ state: "succeeded", reason: null });
  });

  it("maps a non-zero exit to failed, with the exit code and the last output", () => {
    const r = taskStateFromReport(report({ state: "exited", exitCode: 3, lastLines: ["epoch 1", "RuntimeError: boom"] }));
    expect(r.state).toBe("failed");
    expect(r.reason).toBe("exit code 3; last output:\nepoch 1\nRuntimeError: boom");
  });

  it("names the signal when a signal ended the task", () => {
    const r = taskStateFromReport(report({ state: "exited", exitCode: null, signal: "SIGKILL" }));
    expect(r).toEqual({ state: "failed", reason: "signal SIGKILL" });
  });

  it("maps an exit after a stop command to stopped, even with a non-zero code", () => {
    expect(taskStateFromReport(report({ state: "exited", exitCode: 143, stopped: true, message: "job cancelled" }))).toEqual({
      state: "stopped",
      reason: "job cancelled",
    });
    expect(taskStateFromReport(report({ state: "exited", exitCode: null, signal: "SIGTERM", stopped: true })).state).toBe("stopped");
  });

  it("maps failed_to_start to failed with its message", () => {
    expect(taskStateFromReport(report({ state: "failed_to_start", message: "torchrun could not be started: ENOENT" }))).toEqual({
      state: "failed",
      reason: "torchrun could not be started: ENOENT",
    });
    expect(taskStateFromReport(report({ state: "failed_to_start" })).reason).toBe("could not start");
  });

  it("maps lost to lost with its message", () => {
    expect(taskStateFromReport(report({ state: "lost", message: "the agent restarted" }))).toEqual({ state: "lost", reason: "the agent restarted" });
    expect(taskStateFromReport(report({ state: "lost" })).reason).toMatch(/no longer knows/);
  });
});

describe("masterPortFor", () => {
  it("gives the same port for the same job and attempt", () => {
    expect(masterPortFor("0190a6b2-1c3d-7e4f-8a9b-0c1d2e3f4a5b", 2)).toBe(masterPortFor("0190a6b2-1c3d-7e4f-8a9b-0c1d2e3f4a5b", 2));
  });

  it("stays within [base, base + span)", () => {
    for (let i = 0; i < 500; i++) {
      const p = masterPortFor(`job-${i}`, (i % 5) + 1);
      expect(Number.isInteger(p)).toBe(true);
      expect(p).toBeGreaterThanOrEqual(29_500);
      expect(p).toBeLessThan(39_500);
      const q = masterPortFor(`job-${i}`, 1, 40_000, 7);
      expect(q).toBeGreaterThanOrEqual(40_000);
      expect(q).toBeLessThan(40_007);
    }
  });

  it("usually moves to another port on the next attempt (a port stuck in TIME_WAIT is not reused)", () => {
    let differ = 0;
    for (let i = 0; i < 100; i++) if (masterPortFor(`job-${i}`, 1) !== masterPortFor(`job-${i}`, 2)) differ++;
    expect(differ).toBeGreaterThanOrEqual(95);
  });

  it("spreads different jobs over the range", () => {
    const ports = new Set(Array.from({ length: 200 }, (_, i) => masterPortFor(`job-${i}`, 1)));
    expect(ports.size).toBeGreaterThan(180);
  });
});
