import { randomBytes, randomUUID } from "node:crypto";
import { type AgentArtifactReport, type AgentInterruptionReport, type JobEvent, replayEvents } from "@gpuorch/core";
import {
  type Database,
  type TaskRecord,
  createTeam,
  findTasks,
  getJob,
  getJobEvents,
  getNode,
  latestCheckpoint,
  listArtifacts,
  markNodeDisconnected,
  openDatabase,
  applyTaskUpdates,
  transitionJob,
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
const CHECKPOINT_TIMEOUT_MS = 30_000;
const CKPT_URI = "s3://ckpt-bucket/runs";

function trainYaml(name: string, checkpoint: boolean): string {
  return `version: 1
job:
  name: ${name}
  type: training
  framework: pytorch_ddp
entrypoint:
  command: [torchrun, train.py]
resources:
  gpus: 1
${checkpoint ? `checkpoint:\n  uri: ${CKPT_URI}/${name}\n  keep: 3\n  interval_steps: 10\n` : ""}retry:
  max_attempts: 3
`;
}


/** What the agent of `t` reports after uploading (and verifying) a checkpoint at `step`. */
function checkpoint(t: TaskRecord, step: number, over: Partial<AgentArtifactReport> = {}): AgentArtifactReport {
  return {
    artifactId: randomUUID(),
    taskId: t.id,
    jobId: t.jobId,
    attempt: t.attempt,
    nodeRank: t.nodeRank,
    type: "checkpoint",
    uri: `${CKPT_URI}/${t.jobId}/attempt-${t.attempt}/step-${String(step).padStart(12, "0")}/manifest.json`,
    step,
    bytes: 1 << 20,
    sha256: randomBytes(32).toString("hex"),
    emergency: false,
    ...over,
  };
}

function notice(stage: AgentInterruptionReport["stage"], tasks: readonly TaskRecord[] = [], message = ""): AgentInterruptionReport {
  return {
    provider: "aws",
    kind: "spot-interruption",
    at: new Date(Date.now() + 120_000),
    detail: "instance-action: terminate",
    stage,
    message,
    tasks: tasks.map((t) => ({ taskId: t.id, jobId: t.jobId, attempt: t.attempt })),
  };
}

const path = (events: readonly JobEvent[]) => events.map((e) => `${e.fromStatus ?? "∅"}→${e.toStatus}`);
const replay = (events: readonly JobEvent[]) => replayEvents(events.map((e) => ({ from: e.fromStatus, to: e.toStatus })));

describe("fencing at the controller (PostgreSQL)", () => {
  let testDb: TestDatabase;
  let database: Database;
  let db: Database["db"];
  let teamId: string;
  let clock: FakeClock;
  let sessions: AgentSessions;
  let supervisor: TaskSupervisor;
  let scheduler: SchedulerLoop;
  let nodes: [string, string];
  const recorders = new Map<string, RecordingSession>();
  const detachers = new Map<string, () => void>();
  /** The node's current (latest) stream. */
  const session = (nodeId: string) => recorders.get(nodeId)!;
  /** The node's agent (re)connects: a fresh stream replaces any older one. */
  function connect(nodeId: string): RecordingSession {
    const s = new RecordingSession(nodeId);
    recorders.set(nodeId, s);
    detachers.set(nodeId, sessions.attach(s));
    return s;
  }

  beforeEach(async () => {
    testDb = await createTestDatabase();
    database = await openDatabase({ url: testDb.url, poolMax: 8 });
    db = database.db;
    teamId = (await createTeam(db, { id: randomUUID(), name: `fence-${randomUUID().slice(0, 8)}` })).id;
    clock = new FakeClock();
    sessions = new AgentSessions();
    supervisor = new TaskSupervisor({
      db,
      ids,
      clock,
      logger,
      sessions,
      stopGraceSeconds: 30,
      launchTimeoutMs: LAUNCH_TIMEOUT_MS,
      checkpointTimeoutMs: CHECKPOINT_TIMEOUT_MS,
    });
    scheduler = new SchedulerLoop({ db, ids, clock, logger, intervalMs: 60_000, batchLimit: 100, onPlaced: (t, l) => supervisor.launch(t, l) });
    nodes = [await registerNode(db, "host-a", "10.0.0.1", { spot: true }), await registerNode(db, "host-b", "10.0.0.2", { spot: true })];
    recorders.clear();
    detachers.clear();
    for (const n of nodes) connect(n);
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
  /** The details stored on each event (not part of the JobEvent model), by seq. */
  async function eventDetails(jobId: string): Promise<Map<number, unknown>> {
    const r = (await db.execute(`SELECT seq, details FROM job_events WHERE job_id = '${jobId}' ORDER BY seq`)) as unknown as {
      rows: { seq: number; details: unknown }[];
    };
    return new Map(r.rows.map((x) => [Number(x.seq), typeof x.details === "string" ? (JSON.parse(x.details) as unknown) : x.details]));
  }
  const taskById = async (id: string) => (await findTasks(db, { ids: [id] }))[0]!;

  /** Submits a 1-GPU job and places it; returns its task and which node is "A" (where it landed) and "B". */
  async function placed(withCheckpoint = true) {
    const jobId = await submit(db, teamId, trainYaml(`train-${randomUUID().slice(0, 6)}`, withCheckpoint));
    const res = await scheduler.pass();
    expect(res.taskIds).toHaveLength(1);
    const t1 = (await findTasks(db, { jobId }))[0]!;
    const a = t1.nodeId;
    const b = nodes.find((n) => n !== a)!;
    expect(session(a).launches().map((l) => l.taskId)).toEqual([t1.id]);
    return { jobId, t1, a, b };
  }

  async function running(withCheckpoint = true) {
    const p = await placed(withCheckpoint);
    await supervisor.onReports(p.a, [report(p.t1, "running")], true);
    expect((await job(p.jobId)).status).toBe("running");
    return p;
  }

  it("a partitioned agent that comes back cannot touch the job's next attempt", async () => {
    const { jobId, t1, a, b } = await running();
    const launch1 = session(a).launches()[0]!;
    expect(launch1.attempt).toBe(1);
    expect(launch1.checkpoint?.uri).toContain(CKPT_URI);
    expect(launch1.resume).toBeUndefined();

    // A checkpoints step 10: recorded.
    const a10 = checkpoint(t1, 10);
    expect(await supervisor.onArtifact(a, a10)).toEqual({ accepted: true, reason: "", prune: [] });

    // A goes silent: its stream ends (unreachable at once), then the health sweep declares it lost.
    detachers.get(a)!();
    expect(await markNodeDisconnected(db, a)).toBe(true);
    await supervisor.onNodesLost([a]);
    const requeued = await job(jobId);
    expect(requeued.status).toBe("pending");
    expect(requeued.attempt).toBe(2);
    expect(requeued.statusReason).toContain("resumes from the checkpoint at step 10 (attempt 1)");
    expect((await taskById(t1.id)).state).toBe("lost");
    const requeueSeq = (await getJobEvents(db, jobId)).find((e) => e.toStatus === "requeued")!.seq;

    // Attempt 2 goes to B (A is not ready) and resumes from A's step 10.
    expect((await scheduler.pass()).taskIds).toHaveLength(1);
    const t2 = (await findTasks(db, { jobId, attempt: 2 }))[0]!;
    expect(t2.nodeId).toBe(b);
    const launch2 = session(b).launches().at(-1)!;
    expect(launch2.taskId).toBe(t2.id);
    expect(launch2.attempt).toBe(2);
    expect(launch2.resume).toEqual({ uri: a10.uri, sha256: a10.sha256, step: "10", attempt: 1 });

    await supervisor.onReports(b, [report(t2, "running", { step: 11 })], true);
    expect((await job(jobId)).status).toBe("running");
    const b20 = checkpoint(t2, 20);
    expect(await supervisor.onArtifact(b, b20)).toEqual({ accepted: true, reason: "", prune: [] });

    const before = await job(jobId);
    const eventsBefore = await getJobEvents(db, jobId);
    const t2Before = await taskById(t2.id);
    const bSentBefore = session(b).sent.length;

    // A comes back: it reconnects and heartbeats its attempt-1 task as still running (full list)...
    const back = connect(a);
    await supervisor.onReports(a, [report(t1, "running", { step: 31 })], true);
    expect(back.stops().map((s) => [s.taskId, s.jobId, s.attempt])).toEqual([[t1.id, jobId, 1]]);
    expect(back.launches()).toEqual([]);
    // ...reports checkpoints it took meanwhile (a plain one and an emergency one)...
    const a30 = checkpoint(t1, 30);
    const answer = await supervisor.onArtifact(a, a30);
    expect(answer.accepted).toBe(false);
    expect(answer.reason).toContain("attempt 1");
    expect(answer.prune).toEqual([]);
    const a31 = await supervisor.onArtifact(a, checkpoint(t1, 31, { emergency: true }));
    expect(a31.accepted).toBe(false);
    // ...and finally that the attempt-1 task exited 0 (a task_status, then a full heartbeat listing it ended).
    await supervisor.onReports(a, [exited(t1, 0)], false);
    await supervisor.onReports(a, [exited(t1, 0)], true);
    expect(back.forgets()).toEqual([t1.id]);

    // Nothing A said counted.
    const after = await job(jobId);
    expect(after.status).toBe("running");
    expect(after.attempt).toBe(2);
    expect(after.version).toBe(before.version);
    expect(after.statusReason).toBe(before.statusReason);
    expect(after.finishedAt).toBeNull();
    const eventsAfter = await getJobEvents(db, jobId);
    expect(eventsAfter).toEqual(eventsBefore);
    expect(path(eventsAfter)).toEqual([
      "∅→pending",
      "pending→scheduled",
      "scheduled→provisioning",
      "provisioning→running",
      "running→requeued",
      "requeued→pending",
      "pending→scheduled",
      "scheduled→provisioning",
      "provisioning→running",
    ]);
    expect(replay(eventsAfter)).toBe("running");
    // Every event after the requeue (running → requeued → pending) is attempt 2's, and none is about A or its task.
    const details = await eventDetails(jobId);
    for (const e of eventsAfter.filter((x) => x.seq > requeueSeq + 1)) {
      expect(e.attempt).toBe(2);
      expect(e.actor).not.toContain(a);
      expect(`${e.reason} ${JSON.stringify(details.get(e.seq) ?? null)}`).not.toMatch(new RegExp(`${t1.id}|${a}|${t1.hostname}\\b`));
    }
    expect((await taskById(t1.id)).state).toBe("lost");
    expect(await taskById(t2.id)).toEqual(t2Before);
    expect(session(b).sent.length).toBe(bSentBefore);
    expect(session(b).stops()).toEqual([]);

    const live = await listArtifacts(db, jobId);
    expect(live.map((x) => [x.attempt, x.step, x.uri])).toEqual([
      [1, 10, a10.uri],
      [2, 20, b20.uri],
    ]);
    expect(live.map((x) => x.uri)).not.toContain(a30.uri);
    const latest = await latestCheckpoint(db, jobId);
    expect(latest).toMatchObject({ uri: b20.uri, step: 20, attempt: 2, sha256: b20.sha256 });

    // B's attempt is the one that finishes the job.
    await supervisor.onReports(b, [exited(t2, 0)], false);
    const done = await job(jobId);
    expect(done.status).toBe("completed");
    expect(done.attempt).toBe(2);
    expect(replay(await getJobEvents(db, jobId))).toBe("completed");
  });

  it("the old attempt's late 'exited 0' does not complete a job whose next attempt is only placed", async () => {
    const { jobId, t1, a } = await running();
    detachers.get(a)!();
    await markNodeDisconnected(db, a);
    await supervisor.onNodesLost([a]);
    expect((await scheduler.pass()).taskIds).toHaveLength(1);
    const before = await job(jobId);
    expect(before.status).toBe("provisioning");
    connect(a);
    await supervisor.onReports(a, [exited(t1, 0)], true);
    const after = await job(jobId);
    expect(after.status).toBe("provisioning");
    expect(after.version).toBe(before.version);
    expect((await taskById(t1.id)).state).toBe("lost");
  });

  describe("spot interruption notice", () => {
    it("checkpoints the rank-0 task; its emergency checkpoint requeues the job, and the next attempt resumes from it elsewhere", async () => {
      const { jobId, t1, a, b } = await running();
      await supervisor.onArtifact(a, checkpoint(t1, 10));

      await supervisor.onInterruption(a, notice("notice", [t1]));
      expect((await getNode(db, a))?.state).toBe("preempting");
      expect((await getNode(db, b))?.state).toBe("ready");
      const cj = await job(jobId);
      expect(cj.status).toBe("checkpointing");
      expect(cj.attempt).toBe(1);
      expect(cj.statusReason).toContain(`spot interruption notice on ${t1.hostname} (aws spot-interruption`);
      const asks = session(a).checkpointNows();
      expect(asks.map((c) => [c.taskId, c.jobId, c.attempt])).toEqual([[t1.id, jobId, 1]]);
      expect(session(a).stops()).toEqual([]);

      // A second notice (the agent re-sends it after a reconnect) asks again but changes nothing.
      await supervisor.onInterruption(a, notice("notice", [t1]));
      expect((await job(jobId)).version).toBe(cj.version);

      const e42 = checkpoint(t1, 42, { emergency: true });
      const answer = await supervisor.onArtifact(a, e42);
      expect(answer.accepted).toBe(true);
      const j = await job(jobId);
      expect(j.status).toBe("pending");
      expect(j.attempt).toBe(2);
      expect(j.statusReason).toContain("emergency checkpoint at step 42");
      expect(j.statusReason).toContain("resumes from the checkpoint at step 42 (attempt 1)");
      const events = await getJobEvents(db, jobId);
      expect(path(events).slice(-3)).toEqual(["running→checkpointing", "checkpointing→requeued", "requeued→pending"]);
      expect((await eventDetails(jobId)).get(events.find((e) => e.toStatus === "requeued")!.seq)).toMatchObject({ step: 42, uri: e42.uri });
      expect(replay(events)).toBe("pending");
      expect(session(a).stops().map((s) => [s.taskId, s.attempt])).toEqual([[t1.id, 1]]);

      // The notice's "checkpointed" stage afterwards is informational only.
      await supervisor.onInterruption(a, notice("checkpointed", [t1]));
      expect((await job(jobId)).version).toBe(j.version);

      // The preempting node takes no new task: attempt 2 goes to B, from step 42.
      expect((await scheduler.pass()).taskIds).toHaveLength(1);
      const t2 = (await findTasks(db, { jobId, attempt: 2 }))[0]!;
      expect(t2.nodeId).toBe(b);
      expect(session(b).launches().at(-1)?.resume).toEqual({ uri: e42.uri, sha256: e42.sha256, step: "42", attempt: 1 });
    });

    it("a checkpoint_failed report requeues the job from the last uploaded checkpoint", async () => {
      const { jobId, t1, a } = await running();
      await supervisor.onArtifact(a, checkpoint(t1, 10));
      await supervisor.onInterruption(a, notice("notice", [t1]));
      expect((await job(jobId)).status).toBe("checkpointing");

      // A failure report naming another attempt is not about this one.
      await supervisor.onInterruption(a, notice("checkpoint_failed", [{ ...t1, attempt: 7 }], "disk full"));
      expect((await job(jobId)).status).toBe("checkpointing");

      await supervisor.onInterruption(a, notice("checkpoint_failed", [t1], "upload timed out"));
      const j = await job(jobId);
      expect(j.status).toBe("pending");
      expect(j.attempt).toBe(2);
      expect(j.statusReason).toContain("emergency checkpoint failed (upload timed out)");
      expect(j.statusReason).toContain("resumes from the checkpoint at step 10 (attempt 1)");
      expect(path(await getJobEvents(db, jobId)).slice(-3)).toEqual(["running→checkpointing", "checkpointing→requeued", "requeued→pending"]);
      expect(session(a).stops().map((s) => s.taskId)).toEqual([t1.id]);
    });

    it("the sweep requeues a job whose emergency checkpoint never came; a late one is then refused", async () => {
      const { jobId, t1, a } = await running();
      await supervisor.onInterruption(a, notice("notice", [t1]));
      expect(await supervisor.sweepCheckpointing()).toBe(0);
      expect((await job(jobId)).status).toBe("checkpointing");

      clock.advance(CHECKPOINT_TIMEOUT_MS + 60_000);
      expect(await supervisor.sweepCheckpointing()).toBe(1);
      const j = await job(jobId);
      expect(j.status).toBe("pending");
      expect(j.attempt).toBe(2);
      expect(j.statusReason).toContain(`no emergency checkpoint within ${CHECKPOINT_TIMEOUT_MS / 1000} s`);
      expect(replay(await getJobEvents(db, jobId))).toBe("pending");

      // The emergency checkpoint of attempt 1 arrives after all: fenced, and the job is left alone.
      const late = await supervisor.onArtifact(a, checkpoint(t1, 50, { emergency: true }));
      expect(late.accepted).toBe(false);
      const after = await job(jobId);
      expect(after.version).toBe(j.version);
      expect(await latestCheckpoint(db, jobId)).toBeNull();
      expect(await supervisor.sweepCheckpointing()).toBe(0);
    });

    it("a job left in requeued by a controller that died between the two transitions moves on to pending", async () => {
      const { jobId } = await running();
      // What the dead controller managed: running → requeued, not yet requeued → pending.
      await transitionJob(db, { jobId, to: "requeued", reason: "node rank 0 on host-a was lost", actor: "controller:tasks" });
      expect(await supervisor.sweepCheckpointing()).toBe(0); // too fresh: the live path may still be on it
      clock.advance(10_000);
      expect(await supervisor.sweepCheckpointing()).toBe(1);
      const j = await job(jobId);
      expect(j.status).toBe("pending");
      expect(j.attempt).toBe(2);
      expect(j.statusReason).toContain("requeue finished after a controller restart");
      expect(replay(await getJobEvents(db, jobId))).toBe("pending");
    });

    it("a job whose task end was recorded by a controller that died before moving the job is completed at the next start", async () => {
      const { jobId, t1, a } = await running();
      // What the dead controller managed: the task's end, not the job's transition.
      await applyTaskUpdates(db, a, [{ taskId: t1.id, state: "succeeded", exitCode: 0, signal: null, step: 30, reason: null }]);
      expect((await job(jobId)).status).toBe("running");
      const restarted = new TaskSupervisor({ db, ids, clock, logger, sessions, stopGraceSeconds: 30, launchTimeoutMs: LAUNCH_TIMEOUT_MS });
      await restarted.load();
      await restarted.judge(jobId); // waits for the judgement load() started
      expect((await job(jobId)).status).toBe("completed");
      expect(replay(await getJobEvents(db, jobId))).toBe("completed");
    });

    it("a job without checkpoint.uri is requeued at once, with no checkpoint request", async () => {
      const { jobId, t1, a } = await running(false);
      await supervisor.onInterruption(a, notice("notice", [t1]));
      expect((await getNode(db, a))?.state).toBe("preempting");
      const j = await job(jobId);
      expect(j.status).toBe("pending");
      expect(j.attempt).toBe(2);
      expect(j.statusReason).toContain("no checkpoint.uri");
      expect(path(await getJobEvents(db, jobId)).slice(-2)).toEqual(["running→requeued", "requeued→pending"]);
      expect(session(a).checkpointNows()).toEqual([]);
      expect(session(a).stops().map((s) => s.taskId)).toEqual([t1.id]);
    });

    // The agent's ack can be lost (stream drop); its outbox resends on reconnect, after the job moved on.
    it("a resent emergency checkpoint (ack lost) is acknowledged as recorded, not refused", async () => {
      const { jobId, t1, a } = await running();
      await supervisor.onInterruption(a, notice("notice", [t1]));
      const e42 = checkpoint(t1, 42, { emergency: true });
      expect((await supervisor.onArtifact(a, e42)).accepted).toBe(true);
      expect((await job(jobId)).attempt).toBe(2);
      expect((await latestCheckpoint(db, jobId))?.uri).toBe(e42.uri);
      const resend = await supervisor.onArtifact(a, e42);
      expect(resend).toEqual({ accepted: true, reason: "already recorded", prune: [] });
    });
  });
});
