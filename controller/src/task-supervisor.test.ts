import { randomUUID } from "node:crypto";
import { replayEvents } from "@gpuorch/core";
import {
  type Database,
  type TaskRecord,
  cancelJob,
  createTeam,
  findTasks,
  getJob,
  getJobEvents,
  openDatabase,
} from "@gpuorch/db";
import { createLogger } from "@gpuorch/runtime";
import { type TestDatabase, createTestDatabase } from "@gpuorch/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AgentSessions } from "./agent-sessions.js";
import { SchedulerLoop } from "./scheduler-loop.js";
import { TaskSupervisor } from "./task-supervisor.js";
import { FakeClock, RecordingSession, exited, registerNode, report, submit } from "./supervisor.test-util.js";

const logger = createLogger({ name: "test", level: "silent" });
const ids = { newId: () => randomUUID() };
const LAUNCH_TIMEOUT_MS = 60_000;

function gangYaml(name: string, maxAttempts: number): string {
  return `version: 1
job:
  name: ${name}
  type: training
  framework: pytorch_ddp
entrypoint:
  command: [torchrun, train.py]
  args: [--epochs, "3"]
  env:
    FOO: bar
resources:
  gpus: 2
  max_gpus_per_node: 1
  requires_multi_node: true
retry:
  max_attempts: ${maxAttempts}
`;
}


describe("TaskSupervisor (PostgreSQL)", () => {
  let testDb: TestDatabase;
  let database: Database;
  let db: Database["db"];
  let teamId: string;
  let clock: FakeClock;
  let sessions: AgentSessions;
  let supervisor: TaskSupervisor;
  let scheduler: SchedulerLoop;
  let nodeA: string;
  let nodeB: string;
  let sA: RecordingSession;
  let sB: RecordingSession;
  const session = (nodeId: string) => (nodeId === nodeA ? sA : sB);

  beforeEach(async () => {
    testDb = await createTestDatabase();
    database = await openDatabase({ url: testDb.url, poolMax: 8 });
    db = database.db;
    teamId = (await createTeam(db, { id: randomUUID(), name: `sup-${randomUUID().slice(0, 8)}` })).id;
    clock = new FakeClock();
    sessions = new AgentSessions();
    supervisor = new TaskSupervisor({ db, ids, clock, logger, sessions, stopGraceSeconds: 30, launchTimeoutMs: LAUNCH_TIMEOUT_MS });
    scheduler = new SchedulerLoop({ db, ids, clock, logger, intervalMs: 60_000, batchLimit: 100, onPlaced: (t) => supervisor.launch(t) });
    nodeA = await registerNode(db, "host-a", "10.0.0.1");
    nodeB = await registerNode(db, "host-b", "10.0.0.2");
    sA = new RecordingSession(nodeA);
    sB = new RecordingSession(nodeB);
    sessions.attach(sA);
    sessions.attach(sB);
  });

  afterEach(async () => {
    await database.close();
    await testDb.assertNoLeftoverConnections();
  });

  const job = async (id: string) => {
    const j = await getJob(db, id, { teamId: null });
    if (!j) throw new Error(`job ${id} missing`);
    return j;
  };
  const transitions = async (id: string) => (await getJobEvents(db, id)).map((e) => `${e.fromStatus ?? "∅"}→${e.toStatus}`);
  const tasksOf = async (jobId: string, attempt?: number) =>
    (await findTasks(db, { jobId, ...(attempt !== undefined ? { attempt } : {}) })).sort((x, y) => x.nodeRank - y.nodeRank);
  async function holdsOf(taskId: string): Promise<number> {
    const r = (await db.execute(`SELECT count(*)::int AS n FROM task_gpus WHERE task_id = '${taskId}'`)) as unknown as { rows: { n: number }[] };
    return r.rows[0]!.n;
  }

  /** Submits a 2-node gang and places it (the scheduler hands the tasks to supervisor.launch). */
  async function placedGang(maxAttempts = 3): Promise<{ jobId: string; r0: TaskRecord; r1: TaskRecord }> {
    const jobId = await submit(db, teamId, gangYaml(`gang-${randomUUID().slice(0, 6)}`, maxAttempts));
    const res = await scheduler.pass();
    expect(res.taskIds).toHaveLength(2);
    const [r0, r1] = await tasksOf(jobId);
    return { jobId, r0: r0!, r1: r1! };
  }

  async function runningGang(maxAttempts = 3) {
    const g = await placedGang(maxAttempts);
    await supervisor.onReports(g.r0.nodeId, [report(g.r0, "running")], true);
    await supervisor.onReports(g.r1.nodeId, [report(g.r1, "running")], true);
    expect((await job(g.jobId)).status).toBe("running");
    return g;
  }

  it("launches each rank on its node, then follows reports: provisioning → running → completed", async () => {
    const { jobId, r0, r1 } = await placedGang();
    for (const t of [r0, r1]) {
      const launches = session(t.nodeId).launches();
      expect(launches).toHaveLength(1);
      const l = launches[0]!;
      expect(l.commandId).toBe(`launch:${t.id}`);
      expect(l.taskId).toBe(t.id);
      expect(l.jobId).toBe(jobId);
      expect(l.attempt).toBe(1);
      expect(l.nodeRank).toBe(t.nodeRank);
      expect(l.numNodes).toBe(2);
      expect(l.masterAddr).toBe(r0.masterAddr);
      expect(l.masterPort).toBe(r0.masterPort);
      expect(l.gpus).toEqual(t.gpuIndices.map(String));
      expect(l.entrypoint?.command).toEqual(["torchrun", "train.py"]);
      expect(l.entrypoint?.args).toEqual(["--epochs", "3"]);
      expect(l.entrypoint?.env).toEqual({ FOO: "bar" });
      expect(l.hosts.map((h) => h.host)).toEqual([r0.nodeId === nodeA ? "10.0.0.1" : "10.0.0.2", r1.nodeId === nodeA ? "10.0.0.1" : "10.0.0.2"]);
    }
    expect(r0.masterAddr).toBe(r0.nodeId === nodeA ? "10.0.0.1" : "10.0.0.2");
    expect((await tasksOf(jobId)).every((t) => t.launchSentAt !== null)).toBe(true);
    expect((await job(jobId)).status).toBe("provisioning");

    // One rank running is not enough for the job.
    await supervisor.onReports(r0.nodeId, [report(r0, "running")], true);
    expect((await job(jobId)).status).toBe("provisioning");
    await supervisor.onReports(r1.nodeId, [report(r1, "running")], true);
    expect((await job(jobId)).status).toBe("running");

    await supervisor.onReports(r0.nodeId, [exited(r0, 0)], false);
    expect((await job(jobId)).status).toBe("running");
    await supervisor.onReports(r1.nodeId, [exited(r1, 0)], false);
    const done = await job(jobId);
    expect(done.status).toBe("completed");
    expect(await transitions(jobId)).toEqual(["∅→pending", "pending→scheduled", "scheduled→provisioning", "provisioning→running", "running→completed"]);
    const events = await getJobEvents(db, jobId);
    expect(replayEvents(events.map((e) => ({ from: e.fromStatus, to: e.toStatus })))).toBe("completed");
    expect((await tasksOf(jobId)).map((t) => t.state)).toEqual(["succeeded", "succeeded"]);
    expect(await holdsOf(r0.id)).toBe(0);
    expect(await holdsOf(r1.id)).toBe(0);
    // Nobody was told to stop.
    expect([...sA.stops(), ...sB.stops()]).toEqual([]);
  });

  it("fails the job when one rank exits 3, naming the rank, and stops the other rank", async () => {
    const { jobId, r0, r1 } = await runningGang();
    await supervisor.onReports(r1.nodeId, [exited(r1, 3)], false);
    const j = await job(jobId);
    expect(j.status).toBe("failed");
    expect(j.statusReason).toContain("node rank 1");
    expect(j.statusReason).toContain("exit code 3");
    const stops = session(r0.nodeId).stops();
    expect(stops.map((s) => s.taskId)).toEqual([r0.id]);
    expect(stops[0]!.commandId).toBe(`stop:${r0.id}`);
    expect(stops[0]!.attempt).toBe(1);
    expect(session(r1.nodeId).stops()).toEqual([]);
    expect((await transitions(jobId)).at(-1)).toBe("running→failed");
  });

  it("requeues a running gang when a node is lost and attempts are left", async () => {
    const { jobId, r0, r1 } = await runningGang(2);
    await supervisor.onNodesLost([r1.nodeId]);
    const [t0, t1] = await tasksOf(jobId, 1);
    expect(t1!.state).toBe("lost");
    expect(await holdsOf(r1.id)).toBe(0);
    expect(session(r0.nodeId).stops().map((s) => s.taskId)).toEqual([r0.id]);
    // The survivor still holds its GPU until its agent confirms the stop.
    expect(t0!.state).toBe("running");
    const j = await job(jobId);
    expect(j.status).toBe("pending");
    expect(j.attempt).toBe(2);
    expect((await transitions(jobId)).slice(-2)).toEqual(["running→requeued", "requeued→pending"]);
  });

  it("fails a running gang when a node is lost and no attempts are left", async () => {
    const { jobId, r0, r1 } = await runningGang(1);
    await supervisor.onNodesLost([r1.nodeId]);
    const j = await job(jobId);
    expect(j.status).toBe("failed");
    expect(j.attempt).toBe(1);
    expect(j.statusReason).toContain("no attempts left");
    expect(session(r0.nodeId).stops().map((s) => s.taskId)).toEqual([r0.id]);
    expect((await transitions(jobId)).at(-1)).toBe("running→failed");
  });

  describe("full heartbeat reconcile", () => {
    it("stops a running task the database does not know", async () => {
      const stranger = randomUUID();
      const strangerJob = randomUUID();
      await supervisor.onReports(
        nodeA,
        [report({ id: stranger, jobId: strangerJob, attempt: 1, nodeRank: 0 } as TaskRecord, "running")],
        true,
      );
      const stops = sA.stops();
      expect(stops.map((s) => [s.taskId, s.jobId])).toEqual([[stranger, strangerJob]]);
      expect(sA.forgets()).toEqual([]);
    });

    it("tells the agent to forget an ended task once it is recorded", async () => {
      const { r0, r1 } = await runningGang();
      await supervisor.onReports(r0.nodeId, [exited(r0, 0)], true);
      expect(session(r0.nodeId).forgets()).toEqual([r0.id]);
      expect((await findTasks(db, { ids: [r0.id] }))[0]!.state).toBe("succeeded");
      // The other node's running task is neither forgotten nor stopped.
      await supervisor.onReports(r1.nodeId, [report(r1, "running")], true);
      expect(session(r1.nodeId).forgets()).toEqual([]);
      expect(session(r1.nodeId).stops()).toEqual([]);
    });

    it("declares a running task the agent no longer reports lost only after launchTimeoutMs, and requeues the job", async () => {
      const { jobId, r0, r1 } = await runningGang(2);
      // Within the timeout, absence is not yet proof.
      await supervisor.onReports(r1.nodeId, [], true);
      expect((await findTasks(db, { ids: [r1.id] }))[0]!.state).toBe("running");
      expect((await job(jobId)).status).toBe("running");

      clock.advance(LAUNCH_TIMEOUT_MS + 1_000);
      await supervisor.onReports(r1.nodeId, [], true);
      const t1 = (await findTasks(db, { ids: [r1.id] }))[0]!;
      expect(t1.state).toBe("lost");
      expect(await holdsOf(r1.id)).toBe(0);
      const j = await job(jobId);
      expect(j.status).toBe("pending");
      expect(j.attempt).toBe(2);
      expect((await transitions(jobId)).slice(-2)).toEqual(["running→requeued", "requeued→pending"]);
      expect(session(r0.nodeId).stops().map((s) => s.taskId)).toEqual([r0.id]);
      // The lost task is not launched again.
      expect(session(r1.nodeId).launches()).toHaveLength(1);
    });

    it("fails the job instead when the missing running task uses up the last attempt", async () => {
      const { jobId, r1 } = await runningGang(1);
      clock.advance(LAUNCH_TIMEOUT_MS + 1_000);
      await supervisor.onReports(r1.nodeId, [], true);
      const j = await job(jobId);
      expect(j.status).toBe("failed");
      expect(j.statusReason).toContain("no attempts left");
    });

    it("re-sends the launch (same command id) of an assigned task the agent does not report, after the timeout", async () => {
      const { jobId, r0 } = await placedGang();
      const s = session(r0.nodeId);
      expect(s.launches()).toHaveLength(1);
      await supervisor.onReports(r0.nodeId, [], true);
      expect(s.launches()).toHaveLength(1);

      clock.advance(LAUNCH_TIMEOUT_MS + 1_000);
      await supervisor.onReports(r0.nodeId, [], true);
      const launches = s.launches();
      expect(launches).toHaveLength(2);
      expect(launches[1]!.commandId).toBe(launches[0]!.commandId);
      expect(launches[1]!.commandId).toBe(`launch:${r0.id}`);
      expect(launches[1]!.attempt).toBe(1);
      expect((await findTasks(db, { ids: [r0.id] }))[0]!.state).toBe("assigned");
      expect((await job(jobId)).status).toBe("provisioning");
    });
  });

  it("ends (without relaunching) a cancelled job's assigned task that its agent never got, freeing its GPU", async () => {
    const { jobId, r0, r1 } = await placedGang();
    await cancelJob(db, { jobId, scope: { teamId: null }, reason: "user asked", actor: "test" });
    await supervisor.stopJob(jobId, "job cancelled");
    // The agent never knew the task (its launch was lost): the stop is a no-op there, its heartbeats list nothing.
    clock.advance(LAUNCH_TIMEOUT_MS + 1_000);
    await supervisor.onReports(r0.nodeId, [], true);
    const t0 = (await findTasks(db, { ids: [r0.id] }))[0]!;
    expect(t0.state).toBe("stopped");
    expect(await holdsOf(r0.id)).toBe(0);
    expect(session(r0.nodeId).launches()).toHaveLength(1);
    // The other node still reports its task: it stays until its agent confirms the stop.
    await supervisor.onReports(r1.nodeId, [report(r1, "starting")], true);
    expect((await findTasks(db, { ids: [r1.id] }))[0]!.state).toBe("assigned");
    expect((await job(jobId)).status).toBe("cancelled");
  });

  it("does not relaunch an assigned task of an attempt that was requeued; it ends it", async () => {
    const { jobId, r0, r1 } = await placedGang(2);
    await supervisor.onNodesLost([r1.nodeId]);
    expect((await job(jobId)).attempt).toBe(2);
    clock.advance(LAUNCH_TIMEOUT_MS + 1_000);
    await supervisor.onReports(r0.nodeId, [], true);
    // No launch of the stale attempt 1 was sent again.
    expect(session(r0.nodeId).launches().filter((l) => l.taskId === r0.id)).toHaveLength(1);
    expect((await findTasks(db, { ids: [r0.id] }))[0]!.state).toBe("stopped");
    expect(await holdsOf(r0.id)).toBe(0);
    expect((await job(jobId)).status).toBe("pending");
  });

  it("multi_task: a lost unit is placed again; lost max_attempts times, the job fails and the other unit is stopped", async () => {
    const yaml = `version: 1
job:
  name: shards
  type: inference
  framework: command
entrypoint:
  command: [python, embed.py]
resources:
  gpus: 1
execution:
  tasks: 2
  max_parallel: 2
retry:
  max_attempts: 2
`;
    const jobId = await submit(db, teamId, yaml);
    expect((await scheduler.pass()).taskIds).toHaveLength(2);
    const first = await findTasks(db, { jobId });
    const onB = first.find((t) => t.nodeId === nodeB)!;
    const onA = first.find((t) => t.nodeId === nodeA)!;
    await supervisor.onReports(nodeA, [report(onA, "running")], true);
    await supervisor.onReports(nodeB, [report(onB, "running")], true);
    expect((await job(jobId)).status).toBe("running");

    await supervisor.onNodesLost([nodeB]);
    expect((await job(jobId)).status).toBe("running");
    expect(sA.stops()).toEqual([]);
    // The lost unit (and only it) is placed again, in the same attempt.
    const again = await scheduler.pass();
    expect(again.taskIds).toHaveLength(1);
    const replacement = (await findTasks(db, { ids: again.taskIds }))[0]!;
    expect(replacement.unit).toBe(onB.unit);
    expect(replacement.attempt).toBe(1);
    expect(sB.launches().map((l) => l.taskId)).toEqual([onB.id, replacement.id]);

    await supervisor.onNodesLost([nodeB]);
    const j = await job(jobId);
    expect(j.status).toBe("failed");
    expect(j.statusReason).toContain(`unit ${onB.unit} was lost 2 times`);
    expect(sA.stops().map((s) => s.taskId)).toEqual([onA.id]);
  });

  it("cancel: stops every active task; a later stopped exit ends the task and frees its GPUs", async () => {
    const { jobId, r0, r1 } = await runningGang();
    const { changed } = await cancelJob(db, { jobId, scope: { teamId: null }, reason: "user asked", actor: "test" });
    expect(changed).toBe(true);
    await supervisor.stopJob(jobId, "job cancelled");
    for (const t of [r0, r1]) expect(session(t.nodeId).stops().map((s) => s.taskId)).toEqual([t.id]);

    await supervisor.onReports(r0.nodeId, [exited(r0, 143, { stopped: true, signal: "SIGTERM" })], false);
    const t0 = (await findTasks(db, { ids: [r0.id] }))[0]!;
    expect(t0.state).toBe("stopped");
    expect(await holdsOf(r0.id)).toBe(0);
    expect(await holdsOf(r1.id)).toBe(1);
    const j = await job(jobId);
    expect(j.status).toBe("cancelled");
    expect((await transitions(jobId)).at(-1)).toBe("running→cancelled");
  });

  it("ignores a replayed report: the same exit twice changes nothing the second time", async () => {
    const { jobId, r1 } = await runningGang();
    await supervisor.onReports(r1.nodeId, [exited(r1, 3)], false);
    const after = await job(jobId);
    expect(after.status).toBe("failed");
    const sentA = sA.sent.length;
    const sentB = sB.sent.length;
    const tasksBefore = await tasksOf(jobId);

    await supervisor.onReports(r1.nodeId, [exited(r1, 3)], false);
    const again = await job(jobId);
    expect(again.version).toBe(after.version);
    expect(again.statusReason).toBe(after.statusReason);
    expect(await tasksOf(jobId)).toEqual(tasksBefore);
    expect(sA.sent.length).toBe(sentA);
    expect(sB.sent.length).toBe(sentB);
    expect((await getJobEvents(db, jobId)).length).toBe(after.version);
  });
});
