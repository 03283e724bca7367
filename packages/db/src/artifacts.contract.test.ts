import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { type JobStatus, type NodeRegistration, replayEvents } from "@gpuorch/core";
import { type TestDatabase, newJobInput } from "@gpuorch/testing";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ArtifactReportRow, type ArtifactVerdict, insertArtifact, latestCheckpoint, latestCheckpointSteps, listArtifacts, recordArtifactReport } from "./artifacts.js";
import { getJobEvents } from "./job-events.js";
import { getJob, insertJob, transitionJob } from "./jobs.js";
import { upsertNodeRegistration } from "./nodes.js";
import type { Database, Db } from "./open.js";
import { endTasks, insertTasks } from "./tasks.js";
import { createTeam } from "./teams.js";
import { contractDrivers } from "./contract-drivers.test-util.js";

// Enough connections that the racing transactions of the fencing test really overlap.
const drivers = contractDrivers({ poolMax: 16 });

const TO_RUNNING: JobStatus[] = ["scheduled", "provisioning", "running"];

const sha = () => randomBytes(32).toString("hex");

const accepted = (v: ArtifactVerdict) => {
  if (!v.accepted) throw new Error(`expected the report to be accepted, got ${v.reason}: ${v.message}`);
  return v;
};
const refusal = (v: ArtifactVerdict) => (v.accepted ? "accepted" : v.reason);

describe.each(drivers)("artifacts contract on $name", (driver) => {
  let database: Database;
  let testDb: TestDatabase | undefined;
  let db: Db;
  let teamId: string;

  beforeAll(async () => {
    ({ database, testDb } = await driver.open());
    db = database.db;
    teamId = (await createTeam(db, { id: randomUUID(), name: `artifacts-${randomUUID().slice(0, 8)}` })).id;
  });

  afterAll(async () => {
    await database.close();
    await testDb?.assertNoLeftoverConnections();
  });

  async function query<T>(q: ReturnType<typeof sql>): Promise<T[]> {
    return ((await db.execute(q)) as unknown as { rows: T[] }).rows;
  }

  function registration(gpus: number): NodeRegistration {
    const hostname = `art-host-${randomUUID().slice(0, 8)}`;
    return {
      nodeId: null,
      hostname,
      labels: { provider: "aws", region: "us-east-1", zone: "a", network: "vpc-1", instanceType: "p5.48xlarge", spot: true, privateIp: "10.0.0.7" },
      cpuCores: 64,
      memoryMib: 512_000,
      agentVersion: "test",
      driverVersion: "550",
      cudaVersion: "12.4",
      degradedReason: null,
      gpus: Array.from({ length: gpus }, (_, index) => ({ index, uuid: `GPU-${hostname}-${index}`, name: "NVIDIA H100 80GB HBM3", memoryTotalMib: 81_559, migEnabled: false, migDevices: [] })),
    };
  }

  async function node(gpus = 4): Promise<string> {
    return (await upsertNodeRegistration(db, registration(gpus), { newId: randomUUID(), now: new Date() })).nodeId;
  }

  /** A task of `attempt` holding `gpu` on `nodeId`. */
  async function task(jobId: string, nodeId: string, attempt: number, gpu = 0): Promise<string> {
    const id = randomUUID();
    await insertTasks(db, [{ id, jobId, attempt, nodeId, nodeRank: 0, numNodes: 1, unit: -1, gpuIndices: [gpu], masterAddr: "10.0.0.7", masterPort: 29500 }]);
    return id;
  }

  /** A running job (attempt 1) with a checkpoint policy, and its rank-0 task on a fresh node. */
  async function runningJob(checkpoint: Record<string, unknown> | null = { uri: "s3://ckpt/run", keep: 3 }) {
    const name = `art-${randomUUID().slice(0, 8)}`;
    const spec: Record<string, unknown> = { job: { name, type: "training" }, resources: { gpus: 1 }, ...(checkpoint ? { checkpoint } : {}) };
    const { job } = await insertJob(db, newJobInput(teamId, { name, gpus: 1, spec, maxAttempts: 5 }));
    for (const to of TO_RUNNING) await transitionJob(db, { jobId: job.id, to, reason: `to ${to}`, actor: "test" });
    const nodeId = await node();
    const taskId = await task(job.id, nodeId, 1);
    return { jobId: job.id, nodeId, taskId };
  }

  /** running → requeued → pending: the job's next attempt. */
  async function requeue(jobId: string): Promise<void> {
    await transitionJob(db, { jobId, to: "requeued", reason: "node lost", actor: "test", expectedFrom: "running" });
    await transitionJob(db, { jobId, to: "pending", reason: "next attempt", actor: "test", expectedFrom: "requeued" });
  }

  /** The job requeued and its attempt 2 running with a task on a fresh node. */
  async function secondAttempt(jobId: string, firstTaskId: string) {
    await endTasks(db, [firstTaskId], "lost", "node lost");
    await requeue(jobId);
    for (const to of TO_RUNNING) await transitionJob(db, { jobId, to, reason: `to ${to}`, actor: "test" });
    const nodeId = await node();
    const taskId = await task(jobId, nodeId, 2);
    expect((await getJob(db, jobId, { teamId: null }))?.attempt).toBe(2);
    return { nodeId, taskId };
  }

  function report(t: { jobId: string; taskId: string }, attempt: number, over: Partial<ArtifactReportRow> = {}): ArtifactReportRow {
    const step = over.step === undefined ? 100 : over.step;
    return {
      artifactId: randomUUID(),
      taskId: t.taskId,
      jobId: t.jobId,
      attempt,
      type: "checkpoint",
      uri: `s3://ckpt/run/${t.jobId}/a${attempt}/step-${step ?? "none"}-${randomUUID().slice(0, 6)}/manifest.json`,
      step,
      bytes: 4096,
      sha256: sha(),
      emergency: false,
      ...over,
    };
  }

  const rowCount = async (jobId: string) =>
    (await query<{ n: number }>(sql`SELECT count(*)::int AS n FROM job_artifacts WHERE job_id = ${jobId}::uuid`))[0]!.n;

  describe("fencing", () => {
    it("accepts a checkpoint of the current attempt's task on its own node and records who sent it", async () => {
      const j = await runningJob();
      const r = report(j, 1, { step: 10, emergency: true, bytes: 123_456_789_012 });
      const v = accepted(await recordArtifactReport(db, j.nodeId, r));
      expect(v.duplicate).toBe(false);
      expect(v.prune).toEqual([]);
      expect(v.artifact).toMatchObject({ id: r.artifactId, jobId: j.jobId, attempt: 1, type: "checkpoint", uri: r.uri, step: 10, bytes: 123_456_789_012, sha256: r.sha256 });
      expect(v.artifact.createdAt).toBeInstanceOf(Date);
      expect((await listArtifacts(db, j.jobId)).map((a) => a.id)).toEqual([r.artifactId]);
      const [row] = await query<{ task_id: string; emergency: boolean; deleted_at: unknown }>(
        sql`SELECT task_id, emergency, deleted_at FROM job_artifacts WHERE id = ${r.artifactId}::uuid`,
      );
      expect(row).toEqual({ task_id: j.taskId, emergency: true, deleted_at: null });
    });

    it("refuses stale_attempt once the job has moved on to attempt 2, and accepts attempt 2's task", async () => {
      const j = await runningJob();
      accepted(await recordArtifactReport(db, j.nodeId, report(j, 1, { step: 10 })));
      const second = await secondAttempt(j.jobId, j.taskId);
      const before = await rowCount(j.jobId);

      // The partitioned agent of attempt 1 comes back with a newer checkpoint: refused, nothing written.
      const late = await recordArtifactReport(db, j.nodeId, report(j, 1, { step: 30 }));
      expect(refusal(late)).toBe("stale_attempt");
      expect(late.accepted ? "" : late.message).toContain("attempt 2");
      // A log of the old attempt is fenced too.
      expect(refusal(await recordArtifactReport(db, j.nodeId, report(j, 1, { type: "log", step: null })))).toBe("stale_attempt");
      // An attempt the job has not reached is no better.
      expect(refusal(await recordArtifactReport(db, second.nodeId, report({ jobId: j.jobId, taskId: second.taskId }, 3, { step: 40 })))).toBe("stale_attempt");
      // The old task claiming the new attempt is not attempt 2's task.
      expect(refusal(await recordArtifactReport(db, j.nodeId, report(j, 2, { step: 40 })))).toBe("task_unknown");
      expect(await rowCount(j.jobId)).toBe(before);

      const v = accepted(await recordArtifactReport(db, second.nodeId, report({ jobId: j.jobId, taskId: second.taskId }, 2, { step: 20 })));
      expect(v.artifact.attempt).toBe(2);
      expect((await latestCheckpoint(db, j.jobId))?.step).toBe(20);
    });

    it("refuses task_unknown for another node's task, another job's task, or no task at all", async () => {
      const j = await runningJob();
      const other = await runningJob();
      const bystander = await node();
      // The right task, reported by another node (an agent speaks only for its own tasks).
      expect(refusal(await recordArtifactReport(db, bystander, report(j, 1)))).toBe("task_unknown");
      expect(refusal(await recordArtifactReport(db, other.nodeId, report(j, 1)))).toBe("task_unknown");
      // Another job's task (on its own node) named in this job's report.
      expect(refusal(await recordArtifactReport(db, other.nodeId, report({ jobId: j.jobId, taskId: other.taskId }, 1)))).toBe("task_unknown");
      expect(refusal(await recordArtifactReport(db, j.nodeId, report({ jobId: j.jobId, taskId: other.taskId }, 1)))).toBe("task_unknown");
      // A task id nobody knows, and one that is not a uuid.
      expect(refusal(await recordArtifactReport(db, j.nodeId, report({ jobId: j.jobId, taskId: randomUUID() }, 1)))).toBe("task_unknown");
      expect(refusal(await recordArtifactReport(db, j.nodeId, report({ jobId: j.jobId, taskId: "task-0" }, 1)))).toBe("task_unknown");
      expect(await rowCount(j.jobId)).toBe(0);
      expect(await rowCount(other.jobId)).toBe(0);
    });

    it("refuses job_unknown for a job that does not exist (or is not a uuid)", async () => {
      const j = await runningJob();
      const ghost = await recordArtifactReport(db, j.nodeId, report({ jobId: randomUUID(), taskId: j.taskId }, 1));
      expect(refusal(ghost)).toBe("job_unknown");
      expect(refusal(await recordArtifactReport(db, j.nodeId, report({ jobId: "job-1", taskId: j.taskId }, 1)))).toBe("job_unknown");
      expect(await rowCount(j.jobId)).toBe(0);
    });
  });

  describe("idempotence", () => {
    it("a resend with the same artifact id is a duplicate: one row, the first report's content, no retention", async () => {
      const j = await runningJob({ uri: "s3://ckpt/run", keep: 1 });
      const r = report(j, 1, { step: 10 });
      const first = accepted(await recordArtifactReport(db, j.nodeId, r));
      const again = accepted(await recordArtifactReport(db, j.nodeId, r));
      expect(again.duplicate).toBe(true);
      expect(again.prune).toEqual([]);
      expect(again.artifact).toEqual(first.artifact);
      // Same id, different content (a buggy resend): the recorded row wins, nothing is rewritten.
      const changed = accepted(await recordArtifactReport(db, j.nodeId, { ...r, uri: `${r.uri}.other`, step: 99, sha256: sha() }));
      expect(changed.duplicate).toBe(true);
      expect(changed.artifact).toEqual(first.artifact);
      expect(await rowCount(j.jobId)).toBe(1);
      expect((await listArtifacts(db, j.jobId)).map((a) => [a.id, a.step, a.uri])).toEqual([[r.artifactId, 10, r.uri]]);
    });

    it("an artifact id already used by another job is refused artifact_id_taken", async () => {
      const j = await runningJob();
      const other = await runningJob();
      const r = report(j, 1, { step: 10 });
      accepted(await recordArtifactReport(db, j.nodeId, r));
      const clash = await recordArtifactReport(db, other.nodeId, { ...report(other, 1, { step: 10 }), artifactId: r.artifactId });
      expect(refusal(clash)).toBe("artifact_id_taken");
      expect(await rowCount(other.jobId)).toBe(0);
    });

    // The agent's ack can be lost (stream drop); its outbox resends on reconnect, after the job moved on.
    it("a resend of an already recorded checkpoint stays a duplicate after the job moved to its next attempt", async () => {
      const j = await runningJob();
      const r = report(j, 1, { step: 42, emergency: true });
      accepted(await recordArtifactReport(db, j.nodeId, r));
      await secondAttempt(j.jobId, j.taskId);
      expect((await latestCheckpoint(db, j.jobId))?.id).toBe(r.artifactId);
      const resend = await recordArtifactReport(db, j.nodeId, r);
      expect(refusal(resend)).toBe("accepted");
      expect(resend.accepted && resend.duplicate).toBe(true);
    });

    it("concurrent resends of one report record one row", async () => {
      const j = await runningJob();
      const r = report(j, 1, { step: 10 });
      const verdicts = await Promise.all(Array.from({ length: 8 }, () => recordArtifactReport(db, j.nodeId, r)));
      expect(verdicts.every((v) => v.accepted)).toBe(true);
      expect(verdicts.filter((v) => v.accepted && !v.duplicate)).toHaveLength(1);
      expect(await rowCount(j.jobId)).toBe(1);
    });
  });

  describe("retention", () => {
    it("keeps the newest `keep` checkpoints by step across attempts and returns exactly the URIs it gave up", async () => {
      const j = await runningJob({ uri: "s3://ckpt/run", keep: 2 });
      const rec = async (t: { jobId: string; taskId: string }, nodeId: string, attempt: number, over: Partial<ArtifactReportRow>) => {
        const r = report(t, attempt, over);
        return { r, v: accepted(await recordArtifactReport(db, nodeId, r)) };
      };
      const s10 = await rec(j, j.nodeId, 1, { step: 10 });
      expect(s10.v.prune).toEqual([]);
      const s20 = await rec(j, j.nodeId, 1, { step: 20 });
      expect(s20.v.prune).toEqual([]);
      // Logs neither count towards `keep` nor are ever pruned.
      const log1 = await rec(j, j.nodeId, 1, { type: "log", step: null, uri: "s3://ckpt/run/logs/a1.log" });
      expect(log1.v.prune).toEqual([]);
      const s30 = await rec(j, j.nodeId, 1, { step: 30 });
      expect(s30.v.prune).toEqual([s10.r.uri]);

      const second = await secondAttempt(j.jobId, j.taskId);
      const t2 = { jobId: j.jobId, taskId: second.taskId };
      // Attempt 2 resumed from step 20 and checkpoints step 20 again: on a tie the newer attempt stays.
      const b20 = await rec(t2, second.nodeId, 2, { step: 20 });
      expect(b20.v.prune).toEqual([s20.r.uri]);
      const b40 = await rec(t2, second.nodeId, 2, { step: 40 });
      expect(b40.v.prune).toEqual([b20.r.uri]);
      // A checkpoint older (by step) than the `keep` newest is given up at once: its own URI comes back.
      const b5 = await rec(t2, second.nodeId, 2, { step: 5 });
      expect(b5.v.prune).toEqual([b5.r.uri]);

      const live = await listArtifacts(db, j.jobId);
      expect(live.filter((a) => a.type === "checkpoint").map((a) => a.uri).sort()).toEqual([s30.r.uri, b40.r.uri].sort());
      expect(live.filter((a) => a.type === "log").map((a) => a.uri)).toEqual([log1.r.uri]);
      expect((await listArtifacts(db, j.jobId, "checkpoint")).map((a) => a.step).sort((x, y) => (x ?? 0) - (y ?? 0))).toEqual([30, 40]);
      expect((await latestCheckpoint(db, j.jobId))?.uri).toBe(b40.r.uri);
      expect((await latestCheckpointSteps(db, [j.jobId])).get(j.jobId)).toBe(40);

      // Every pruned row is still there, marked deleted; nothing was pruned twice.
      const rows = await query<{ uri: string; deleted: boolean }>(
        sql`SELECT uri, deleted_at IS NOT NULL AS deleted FROM job_artifacts WHERE job_id = ${j.jobId}::uuid AND type = 'checkpoint'`,
      );
      const deleted = rows.filter((r) => r.deleted).map((r) => r.uri).sort();
      expect(deleted).toEqual([s10.r.uri, s20.r.uri, b20.r.uri, b5.r.uri].sort());
      const allPruned = [s10, s20, s30, b20, b40, b5].flatMap((x) => x.v.prune).sort();
      expect(allPruned).toEqual(deleted);

      // A resend of a pruned checkpoint is a duplicate: it does not come back to life or prune anything.
      const resend = accepted(await recordArtifactReport(db, second.nodeId, b20.r));
      expect(resend.duplicate).toBe(true);
      expect(resend.prune).toEqual([]);
      expect((await listArtifacts(db, j.jobId, "checkpoint")).map((a) => a.uri)).not.toContain(b20.r.uri);
    });

    it("defaults to keeping 3 when the spec has no checkpoint.keep", async () => {
      const j = await runningJob({ uri: "s3://ckpt/run" });
      const prunes: string[][] = [];
      const uris: string[] = [];
      for (const step of [1, 2, 3, 4, 5]) {
        const r = report(j, 1, { step });
        uris.push(r.uri);
        prunes.push(accepted(await recordArtifactReport(db, j.nodeId, r)).prune);
      }
      expect(prunes).toEqual([[], [], [], [uris[0]], [uris[1]]]);
      expect((await listArtifacts(db, j.jobId)).map((a) => a.step)).toEqual([3, 4, 5]);
    });
  });

  describe("latestCheckpoint", () => {
    it("picks the highest step, the newest attempt on a tie, and ignores logs and other types", async () => {
      const j = await runningJob({ uri: "s3://ckpt/run", keep: 10 });
      expect(await latestCheckpoint(db, j.jobId)).toBeNull();
      expect((await latestCheckpointSteps(db, [j.jobId])).has(j.jobId)).toBe(false);
      const a50 = report(j, 1, { step: 50 });
      accepted(await recordArtifactReport(db, j.nodeId, a50));
      accepted(await recordArtifactReport(db, j.nodeId, report(j, 1, { step: 20 })));
      // Logs, models and metrics with a higher step are not checkpoints.
      accepted(await recordArtifactReport(db, j.nodeId, report(j, 1, { type: "log", step: 900 })));
      accepted(await recordArtifactReport(db, j.nodeId, report(j, 1, { type: "model", step: 901 })));
      accepted(await recordArtifactReport(db, j.nodeId, report(j, 1, { type: "metrics", step: 902 })));
      expect((await latestCheckpoint(db, j.jobId))?.uri).toBe(a50.uri);

      const second = await secondAttempt(j.jobId, j.taskId);
      const b50 = report({ jobId: j.jobId, taskId: second.taskId }, 2, { step: 50 });
      accepted(await recordArtifactReport(db, second.nodeId, b50));
      accepted(await recordArtifactReport(db, second.nodeId, report({ jobId: j.jobId, taskId: second.taskId }, 2, { step: 30 })));
      const latest = await latestCheckpoint(db, j.jobId);
      expect(latest).toMatchObject({ uri: b50.uri, attempt: 2, step: 50, sha256: b50.sha256, type: "checkpoint" });
      expect((await latestCheckpointSteps(db, [j.jobId, randomUUID(), "nope"])).get(j.jobId)).toBe(50);
    });

    it("never returns a checkpoint without a sha256 (not resumable), and answers null for unknown ids", async () => {
      const j = await runningJob({ uri: "s3://ckpt/run", keep: 10 });
      const good = report(j, 1, { step: 10 });
      accepted(await recordArtifactReport(db, j.nodeId, good));
      await insertArtifact(db, { id: randomUUID(), jobId: j.jobId, attempt: 1, type: "checkpoint", uri: "s3://ckpt/run/unverified", step: 99, sha256: null });
      expect((await latestCheckpoint(db, j.jobId))?.uri).toBe(good.uri);
      expect(await latestCheckpoint(db, randomUUID())).toBeNull();
      expect(await latestCheckpoint(db, "not-a-uuid")).toBeNull();
      expect(await listArtifacts(db, "not-a-uuid")).toEqual([]);
    });
  });

  describe("fencing under concurrency", () => {
    /**
     * A commit-time witness: a deferred constraint trigger that runs as each
     * artifact insert commits and notes any row whose attempt is not its job's
     * attempt at that moment. Unfenced inserts (or a fence that read the
     * attempt without holding the job's row) would leave rows here.
     */
    async function installWitness(): Promise<void> {
      await db.execute(sql`CREATE TABLE IF NOT EXISTS test_fence_violations (artifact_id uuid, artifact_attempt int, job_attempt int)`);
      await db.execute(sql`DELETE FROM test_fence_violations`);
      await db.execute(
        sql.raw(`CREATE OR REPLACE FUNCTION test_fence_witness() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
            INSERT INTO test_fence_violations
              SELECT NEW.id, NEW.attempt, j.attempt FROM jobs j WHERE j.id = NEW.job_id AND j.attempt <> NEW.attempt;
            RETURN NULL;
          END $$`),
      );
      await db.execute(sql`DROP TRIGGER IF EXISTS test_fence_witness ON job_artifacts`);
      await db.execute(
        sql`CREATE CONSTRAINT TRIGGER test_fence_witness AFTER INSERT ON job_artifacts DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fence_witness()`,
      );
    }

    async function removeWitness(): Promise<void> {
      await db.execute(sql`DROP TRIGGER IF EXISTS test_fence_witness ON job_artifacts`);
      await db.execute(sql`DROP FUNCTION IF EXISTS test_fence_witness()`);
      await db.execute(sql`DROP TABLE IF EXISTS test_fence_violations`);
    }

    const violations = () => query<{ artifact_id: string; artifact_attempt: number; job_attempt: number }>(sql`SELECT * FROM test_fence_violations`);

    it("the witness sees an unfenced insert of a stale attempt (control)", async () => {
      await installWitness();
      try {
        const j = await runningJob();
        await secondAttempt(j.jobId, j.taskId);
        const id = randomUUID();
        await insertArtifact(db, { id, jobId: j.jobId, attempt: 1, type: "checkpoint", uri: "s3://ckpt/run/sneaky", step: 1, sha256: sha() });
        expect(await violations()).toEqual([{ artifact_id: id, artifact_attempt: 1, job_attempt: 2 }]);
      } finally {
        await removeWitness();
      }
    });

    it("a report racing an in-flight attempt change waits for it and is refused", async () => {
      const j = await runningJob();
      await transitionJob(db, { jobId: j.jobId, to: "requeued", reason: "node lost", actor: "test" });
      let settled: ArtifactVerdict | undefined;
      let pending: Promise<ArtifactVerdict> | undefined;
      await db.transaction(async (tx) => {
        // requeued → pending (attempt 2) is written but not committed while the report arrives.
        await transitionJob(tx, { jobId: j.jobId, to: "pending", reason: "next attempt", actor: "test" });
        pending = recordArtifactReport(db, j.nodeId, report(j, 1, { step: 30 }));
        void pending.then((v) => (settled = v));
        await sleep(300);
        expect(settled, "the report must wait for the attempt change to commit or roll back").toBeUndefined();
      });
      const v = await pending!;
      expect(refusal(v)).toBe("stale_attempt");
      expect(await rowCount(j.jobId)).toBe(0);
    });

    it("a report whose transaction rolled back with an attempt change is judged against the attempt that stands", async () => {
      const j = await runningJob();
      await transitionJob(db, { jobId: j.jobId, to: "requeued", reason: "node lost", actor: "test" });
      let pending: Promise<ArtifactVerdict> | undefined;
      await expect(
        db.transaction(async (tx) => {
          await transitionJob(tx, { jobId: j.jobId, to: "pending", reason: "next attempt", actor: "test" });
          pending = recordArtifactReport(db, j.nodeId, report(j, 1, { step: 30 }));
          await sleep(100);
          throw new Error("roll back");
        }),
      ).rejects.toThrow("roll back");
      // Attempt 1 is still the job's attempt (requeued, not yet pending): its report counts.
      expect(accepted(await pending!).artifact.attempt).toBe(1);
    });

    it("many reports racing requeue → next attempt: no stale attempt ever slips in", async () => {
      await installWitness();
      try {
        const JOBS = driver.name === "pglite" ? 15 : 40;
        /** Reporters per job; each keeps reporting (one at a time) until two reports after attempt 2 was committed. */
        const STREAMS = 3;
        const jobs = await Promise.all(Array.from({ length: JOBS }, () => runningJob({ uri: "s3://ckpt/run", keep: 1000 })));
        const results = await Promise.all(
          jobs.map(async (j, i) => {
            let bumped = false;
            let step = 0;
            // The attempt moves on only once some report of this job has landed, then after a
            // job-specific delay: under load (PGlite serializes everything) a bare timer could
            // fire before any report ran, and the race would not have happened at all.
            let firstLanded!: () => void;
            const landed = new Promise<void>((resolve) => (firstLanded = resolve));
            const transition = (async () => {
              await landed;
              await sleep(1 + (i % 7));
              await transitionJob(db, { jobId: j.jobId, to: "requeued", reason: "node lost", actor: "race" });
              await transitionJob(db, { jobId: j.jobId, to: "pending", reason: "next attempt", actor: "race" });
              bumped = true;
              return performance.now();
            })();
            const stream = async (k: number) => {
              await sleep(k);
              const out: { r: ArtifactReportRow; startedAt: number; v: ArtifactVerdict }[] = [];
              for (let after = 0; after < 2; ) {
                // PGlite answers without leaving the microtask queue: let timers (the transition's start) run.
                await new Promise((resolve) => setImmediate(resolve));
                if (bumped) after++;
                const r = report(j, 1, { step: ++step });
                const startedAt = performance.now();
                out.push({ r, startedAt, v: await recordArtifactReport(db, j.nodeId, r) });
                firstLanded();
              }
              return out;
            };
            const streams = await Promise.all(Array.from({ length: STREAMS }, (_, k) => stream(k)));
            return { j, attemptBumpedAt: await transition, reports: streams.flat() };
          }),
        );

        let acceptedCount = 0;
        let refusedCount = 0;
        for (const { j, attemptBumpedAt, reports } of results) {
          const job = await getJob(db, j.jobId, { teamId: null });
          expect(job?.attempt).toBe(2);
          expect(job?.status).toBe("pending");
          const events = await getJobEvents(db, j.jobId);
          expect(replayEvents(events.map((e) => ({ from: e.fromStatus, to: e.toStatus })))).toBe("pending");
          for (const { r, startedAt, v } of reports) {
            if (v.accepted) {
              acceptedCount++;
              expect(v.artifact.attempt).toBe(1);
              // Accepted ⇒ it started before attempt 2 was committed (afterwards the fence must answer stale).
              expect(startedAt).toBeLessThan(attemptBumpedAt);
            } else {
              refusedCount++;
              expect(v.reason, `${r.artifactId}: ${v.message}`).toBe("stale_attempt");
            }
          }
          // The rows recorded are exactly the accepted reports.
          const ids = (await listArtifacts(db, j.jobId)).map((a) => a.id).sort();
          expect(ids).toEqual(reports.filter((x) => x.v.accepted).map((x) => x.r.artifactId).sort());
          // After the race, attempt 1 is shut out for good.
          expect(refusal(await recordArtifactReport(db, j.nodeId, report(j, 1, { step: 999 })))).toBe("stale_attempt");
        }
        // The race was real: reports landed on both sides of the attempt change.
        expect(acceptedCount).toBeGreaterThan(0);
        expect(refusedCount).toBeGreaterThanOrEqual(JOBS * STREAMS * 2);
        // Every accepted artifact carried the job's attempt at the moment it committed.
        expect(await violations()).toEqual([]);
      } finally {
        await removeWitness();
      }
    });
  });
});
