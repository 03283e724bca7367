import { randomUUID } from "node:crypto";
import { AppError, type JobStatus, replayEvents } from "@gpuorch/core";
import { type TestDatabase, createTestDatabase, newJobInput } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getJobEvents } from "./job-events.js";
import { cancelJob, getJob, insertJob, transitionJob } from "./jobs.js";
import { type Database, openDatabase } from "./open.js";
import { createTeam } from "./teams.js";

const JOBS = 200;

/** How one racer fared: the status it moved the job to, or the error it lost with. */
type Outcome = { won: JobStatus } | { lost: AppError };

async function race(to: JobStatus, attempt: () => Promise<unknown>): Promise<Outcome> {
  try {
    await attempt();
    return { won: to };
  } catch (e) {
    if (!(e instanceof AppError)) throw e;
    return { lost: e };
  }
}

/** A loser must have lost to the winner's commit, not to anything else. */
function expectLostRace(o: Outcome): void {
  expect("lost" in o).toBe(true);
  if (!("lost" in o)) return;
  const e = o.lost;
  const ok = (e.code === "ABORTED" && e.reason === "version_conflict") || e.code === "FAILED_PRECONDITION";
  expect(ok, `${e.code}/${e.reason}: ${e.message}`).toBe(true);
}

describe("concurrent transitions on PostgreSQL", () => {
  let testDb: TestDatabase;
  let database: Database;
  let teamId: string;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    // Enough connections that racing transactions really overlap.
    database = await openDatabase({ url: testDb.url, poolMax: 32 });
    teamId = (await createTeam(database.db, { id: randomUUID(), name: "racers" })).id;
  });

  afterAll(async () => {
    await database.close();
    await testDb.assertNoLeftoverConnections();
  });

  async function newJobs(n: number): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) ids.push((await insertJob(database.db, newJobInput(teamId))).job.id);
    return ids;
  }

  /** Final status of a job, after checking its log replays legally to it with gap-free seq. */
  async function checkedFinalStatus(jobId: string): Promise<JobStatus> {
    const job = await getJob(database.db, jobId, { teamId: null });
    if (!job) throw new Error(`job ${jobId} vanished`);
    const events = await getJobEvents(database.db, jobId);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.length).toBe(job.version);
    expect(replayEvents(events.map((e) => ({ from: e.fromStatus, to: e.toStatus })))).toBe(job.status);
    return job.status;
  }

  it(`lets exactly one of cancel and schedule win on each of ${JOBS} jobs`, async () => {
    const db = database.db;
    const ids = await newJobs(JOBS);
    // Each racer acts on what it saw: the job pending at version 1.
    const results = await Promise.all(
      ids.map(async (jobId) => {
        const [cancel, schedule] = await Promise.all([
          race("cancelled", () => transitionJob(db, { jobId, to: "cancelled", reason: "user", actor: "cli", expectedFrom: "pending" })),
          race("scheduled", () => transitionJob(db, { jobId, to: "scheduled", reason: "placed", actor: "scheduler", expectedVersion: 1 })),
        ]);
        return { jobId, outcomes: [cancel, schedule] };
      }),
    );
    const lossKinds = new Map<string, number>();
    for (const { jobId, outcomes } of results) {
      const winners = outcomes.filter((o): o is { won: JobStatus } => "won" in o);
      expect(winners, `job ${jobId}`).toHaveLength(1);
      const loser = outcomes.find((o) => "lost" in o);
      if (loser) expectLostRace(loser);
      if (loser && "lost" in loser) lossKinds.set(loser.lost.reason, (lossKinds.get(loser.lost.reason) ?? 0) + 1);
      expect(await checkedFinalStatus(jobId)).toBe(winners[0]?.won);
    }
    // Both kinds of loss are legitimate; which one happens depends on timing.
    expect([...lossKinds.values()].reduce((a, b) => a + b, 0)).toBe(JOBS);
  });

  it("lets exactly one of two concurrent schedule attempts win", async () => {
    const db = database.db;
    const ids = await newJobs(JOBS);
    const results = await Promise.all(
      ids.map((jobId) =>
        Promise.all(
          ["scheduler-a", "scheduler-b"].map((actor) =>
            race("scheduled", () => transitionJob(db, { jobId, to: "scheduled", reason: "placed", actor })),
          ),
        ),
      ),
    );
    for (const [i, outcomes] of results.entries()) {
      expect(outcomes.filter((o) => "won" in o)).toHaveLength(1);
      for (const o of outcomes.filter((x) => "lost" in x)) expectLostRace(o);
      expect(await checkedFinalStatus(ids[i] ?? "")).toBe("scheduled");
    }
  });

  it("cancelJob retries through racing progress and always ends cancelled", async () => {
    const db = database.db;
    const ids = await newJobs(50);
    await Promise.all(
      ids.map(async (jobId) => {
        const progress = (async () => {
          for (const to of ["scheduled", "provisioning", "running"] as const) {
            const o = await race(to, () => transitionJob(db, { jobId, to, reason: "progress", actor: "scheduler" }));
            if ("lost" in o) return;
          }
        })();
        const cancel = cancelJob(db, { jobId, scope: { teamId }, reason: "user", actor: "cli" });
        const [, res] = await Promise.all([progress, cancel]);
        expect(res.changed).toBe(true);
      }),
    );
    for (const jobId of ids) expect(await checkedFinalStatus(jobId)).toBe("cancelled");
  });
});
