import { createHash, randomUUID } from "node:crypto";
import { AppError, JOB_STATUSES, type JobStatus, canTransition, isTerminal, replayEvents } from "@gpuorch/core";
import { type TestDatabase, newJobInput } from "@gpuorch/testing";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { insertArtifact, listArtifacts } from "./artifacts.js";
import { findPgError, toDbAppError } from "./db-errors.js";
import { insertJobs } from "./job-batch-insert.js";
import { getJobEvents } from "./job-events.js";
import { cancelJob, countJobsByStatus, getJob, insertJob, listJobs, transitionJob } from "./jobs.js";
import { type Database, type Db, openDatabase, runMigrations } from "./open.js";
import { encodePageToken } from "./page-token.js";
import { allocations } from "./schema.js";
import { createTeam, ensureTeam, getTeamByName } from "./teams.js";
import { findPrincipalByTokenHash, insertApiToken, revokeToken } from "./tokens.js";
import { contractDrivers } from "./contract-drivers.test-util.js";

/** One driver under test: how to get a migrated database, and how to get at it again. */
const drivers = contractDrivers();

/** The AppError `p` rejects with; fails the test if it resolves or throws something else. */
async function rejection(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error("expected a rejection");
}

/** Shortest legal path from pending to each state. */
const PATH_TO: Record<JobStatus, JobStatus[]> = {
  pending: [],
  scheduled: ["scheduled"],
  provisioning: ["scheduled", "provisioning"],
  running: ["scheduled", "provisioning", "running"],
  checkpointing: ["scheduled", "provisioning", "running", "checkpointing"],
  requeued: ["scheduled", "requeued"],
  completed: ["scheduled", "provisioning", "running", "completed"],
  failed: ["failed"],
  cancelled: ["cancelled"],
};

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

describe.each(drivers)("repository contract on $name", (driver) => {
  let database: Database;
  let testDb: TestDatabase | undefined;
  let db: Db;

  beforeAll(async () => {
    ({ database, testDb } = await driver.open());
    db = database.db;
  });

  afterAll(async () => {
    await database.close();
    await testDb?.assertNoLeftoverConnections();
  });

  async function team(prefix = "team") {
    return createTeam(db, { id: randomUUID(), name: `${prefix}-${randomUUID().slice(0, 8)}` });
  }

  async function jobIn(status: JobStatus, teamId: string, maxAttempts = 3) {
    const { job } = await insertJob(db, newJobInput(teamId, { maxAttempts }));
    let cur = job;
    for (const to of PATH_TO[status]) cur = await transitionJob(db, { jobId: job.id, to, reason: `to ${to}`, actor: "test" });
    return cur;
  }

  describe("submit and read", () => {
    it("stores a job with its verbatim spec and returns it with money as decimal strings", async () => {
      const t = await team();
      const deadline = new Date("2030-01-02T03:04:05.678Z");
      const input = newJobInput(t.id, { project: "llm", budgetUsd: "1234.50", deadline, specYaml: "# kept verbatim\njob: {}\n" });
      const { job, deduplicated } = await insertJob(db, input);
      expect(deduplicated).toBe(false);
      expect(job).toMatchObject({
        id: input.id,
        teamId: t.id,
        teamName: t.name,
        project: "llm",
        status: "pending",
        statusReason: null,
        attempt: 1,
        version: 1,
        budgetUsd: "1234.50",
        runningCostUsd: "0.000000",
        estimatedCostUsd: null,
        specYaml: "# kept verbatim\njob: {}\n",
        target: null,
        scheduledAt: null,
      });
      expect(job.deadline).toEqual(deadline);
      expect(job.createdAt).toBeInstanceOf(Date);
      expect(await getJob(db, job.id, { teamId: t.id })).toEqual(job);
    });

    it("records the creating event (seq 1, ∅ → pending, submitted) in the same statement", async () => {
      const t = await team();
      const { job } = await insertJob(db, newJobInput(t.id, { actor: "alice" }));
      const events = await getJobEvents(db, job.id);
      expect(events).toEqual([
        {
          jobId: job.id,
          seq: 1,
          fromStatus: null,
          toStatus: "pending",
          attempt: 1,
          reason: "submitted",
          actor: "alice",
          createdAt: job.createdAt,
        },
      ]);
    });

    it("returns the existing job for a repeated idempotency key, per team", async () => {
      const [a, b] = [await team(), await team()];
      const first = await insertJob(db, newJobInput(a.id, { idempotencyKey: "k-1" }));
      const again = await insertJob(db, newJobInput(a.id, { idempotencyKey: "k-1", name: "other" }));
      expect(again.deduplicated).toBe(true);
      expect(again.job).toEqual(first.job);
      expect(await getJobEvents(db, first.job.id)).toHaveLength(1);
      const otherTeam = await insertJob(db, newJobInput(b.id, { idempotencyKey: "k-1" }));
      expect(otherTeam.deduplicated).toBe(false);
      expect(otherTeam.job.id).not.toBe(first.job.id);
    });

    it("deduplicates concurrent submits with one idempotency key to one job", async () => {
      const t = await team();
      const results = await Promise.all(
        Array.from({ length: 8 }, () => insertJob(db, newJobInput(t.id, { idempotencyKey: "same" }))),
      );
      expect(new Set(results.map((r) => r.job.id)).size).toBe(1);
      expect(results.filter((r) => !r.deduplicated)).toHaveLength(1);
    });

    it("hides another team's job (null, as if missing) but shows it to admins", async () => {
      const [a, b] = [await team(), await team()];
      const { job } = await insertJob(db, newJobInput(a.id));
      expect(await getJob(db, job.id, { teamId: b.id })).toBeNull();
      expect(await getJob(db, job.id, { teamId: null })).toEqual(job);
      expect(await getJob(db, randomUUID(), { teamId: null })).toBeNull();
      expect(await getJob(db, "not-a-uuid", { teamId: null })).toBeNull();
    });

    it("rejects a duplicate job id and an unknown team", async () => {
      const t = await team();
      const input = newJobInput(t.id);
      await insertJob(db, input);
      expect((await rejection(insertJob(db, { ...input }))).code).toBe("ALREADY_EXISTS");
      expect((await rejection(insertJob(db, newJobInput(randomUUID())))).reason).toBe("foreign_key_violation");
    });
  });

  describe("batched submit (group commit)", () => {
    it("inserts many jobs and their creating events in one call, matching single inserts field for field", async () => {
      const t = await team("batch");
      const deadline = new Date("2026-12-01T18:00:00Z");
      const inputs = Array.from({ length: 20 }, (_, i) =>
        newJobInput(t.id, { name: `b-${i}`, budgetUsd: i % 2 ? "12.50" : null, deadline: i % 3 ? deadline : null, project: i % 2 ? "p" : null }),
      );
      const out = await insertJobs(db, inputs);
      expect(out).toHaveLength(20);
      for (const [i, o] of out.entries()) {
        expect(o.ok).toBe(true);
        if (!o.ok) continue;
        expect(o.deduplicated).toBe(false);
        expect(o.job.id).toBe(inputs[i]!.id);
        // The batch path maps rows by hand; it must equal what getJob reads.
        expect(o.job).toEqual(await getJob(db, o.job.id, { teamId: null }));
        expect(await getJobEvents(db, o.job.id)).toEqual([
          expect.objectContaining({ seq: 1, fromStatus: null, toStatus: "pending", reason: "submitted", actor: "test" }),
        ]);
      }
      expect(out[1]!.ok && out[1]!.job.budgetUsd).toBe("12.50");
      expect(out[1]!.ok && out[1]!.job.deadline?.toISOString()).toBe(deadline.toISOString());
    });

    it("deduplicates idempotency keys used before and twice within the same batch", async () => {
      const t = await team("batch-idem");
      const { job: earlier } = await insertJob(db, newJobInput(t.id, { idempotencyKey: "k-old" }));
      const inputs = [
        newJobInput(t.id, { idempotencyKey: "k-old" }),
        newJobInput(t.id, { idempotencyKey: "k-new" }),
        newJobInput(t.id, { idempotencyKey: "k-new" }),
        newJobInput(t.id),
      ];
      const out = await insertJobs(db, inputs);
      expect(out.map((o) => o.ok && o.deduplicated)).toEqual([true, false, true, false]);
      expect(out[0]!.ok && out[0]!.job.id).toBe(earlier.id);
      expect(out[2]!.ok && out[2]!.job.id).toBe(inputs[1]!.id);
      const all = await listJobs(db, { teamId: t.id, limit: 100 });
      expect(all.items).toHaveLength(3);
    });

    it("fails only the bad row of a batch", async () => {
      const t = await team("batch-bad");
      const inputs = [newJobInput(t.id), newJobInput(t.id, { priority: 5000 }), newJobInput(t.id)];
      const out = await insertJobs(db, inputs);
      expect(out.map((o) => o.ok)).toEqual([true, false, true]);
      expect(!out[1]!.ok && out[1]!.error.code).toBe("INVALID_ARGUMENT");
      expect((await listJobs(db, { teamId: t.id, limit: 10 })).items).toHaveLength(2);
    });
  });

  describe("list", () => {
    it("lists newest first, filtered by scope, team name, status and project", async () => {
      const [a, b] = [await team("list-a"), await team("list-b")];
      const pendingA = (await insertJob(db, newJobInput(a.id, { project: "p1" }))).job;
      const cancelledA = await jobIn("cancelled", a.id);
      const scheduledB = await jobIn("scheduled", b.id);

      const ids = async (q: Parameters<typeof listJobs>[1]) => (await listJobs(db, q)).items.map((j) => j.id);
      expect(await ids({ teamId: a.id, limit: 10 })).toEqual([cancelledA.id, pendingA.id]);
      expect(await ids({ teamId: a.id, statuses: ["pending", "scheduled"], limit: 10 })).toEqual([pendingA.id]);
      expect(await ids({ teamId: a.id, project: "p1", limit: 10 })).toEqual([pendingA.id]);
      expect(await ids({ teamId: null, team: b.name, limit: 10 })).toEqual([scheduledB.id]);
      expect(await ids({ teamId: a.id, team: b.name, limit: 10 })).toEqual([]);
      const all = await ids({ teamId: null, limit: 1000 });
      expect(all.indexOf(scheduledB.id)).toBeLessThan(all.indexOf(cancelledA.id));
    });

    it("paginates 250 jobs with no duplicates or skips while new jobs keep arriving", async () => {
      const t = await team("pages");
      const original: string[] = [];
      // 50 jobs in one transaction share created_at: the id must break the tie.
      await db.transaction(async (tx) => {
        for (let i = 0; i < 50; i++) original.push((await insertJob(tx, newJobInput(t.id))).job.id);
      });
      for (let i = 0; i < 200; i++) original.push((await insertJob(db, newJobInput(t.id))).job.id);

      const seen: string[] = [];
      const arrivedLater: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const page = await listJobs(db, { teamId: t.id, limit: 37, cursor });
        seen.push(...page.items.map((j) => j.id));
        cursor = page.nextCursor;
        pages++;
        for (let i = 0; i < 3; i++) arrivedLater.push((await insertJob(db, newJobInput(t.id))).job.id);
      } while (cursor !== null);

      expect(pages).toBe(Math.ceil(250 / 37));
      expect(new Set(seen).size).toBe(seen.length);
      // The first page may include jobs that arrived before it was read; none after.
      const seenOriginal = seen.filter((id) => original.includes(id));
      expect(seenOriginal).toHaveLength(250);
      expect(seen.filter((id) => arrivedLater.includes(id))).toHaveLength(0);

      const everything = await listJobs(db, { teamId: t.id, limit: 1000 });
      const order = everything.items.map((j) => j.id).filter((id) => original.includes(id));
      expect(seen).toEqual(order);
      const sortedDesc = [...everything.items].sort(
        (x, y) => y.createdAt.getTime() - x.createdAt.getTime() || (y.id < x.id ? -1 : y.id > x.id ? 1 : 0),
      );
      expect(everything.items.map((j) => j.createdAt.getTime())).toEqual(sortedDesc.map((j) => j.createdAt.getTime()));
    });

    it("rejects a malformed page token naming page_token, and a bad page size", async () => {
      const bad = [
        "not base64!",
        Buffer.from("hello").toString("base64url"),
        Buffer.from("j1|123|not-a-uuid").toString("base64url"),
        Buffer.from(`j2|123|${randomUUID()}`).toString("base64url"),
        encodePageToken({ createdAtMicros: "12x", id: randomUUID() }),
      ];
      for (const cursor of bad) {
        const err = await rejection(listJobs(db, { teamId: null, limit: 5, cursor }));
        expect(err.code).toBe("INVALID_ARGUMENT");
        expect(err.fields.map((f) => f.field)).toEqual(["page_token"]);
      }
      const err = await rejection(listJobs(db, { teamId: null, limit: 0 }));
      expect(err.fields.map((f) => f.field)).toEqual(["page_size"]);
    });
  });

  describe("transitions", () => {
    it("allows exactly the state machine's transitions, with an event per move", async () => {
      const t = await team("fsm");
      for (const from of JOB_STATUSES) {
        for (const to of JOB_STATUSES) {
          const job = await jobIn(from, t.id);
          const eventsBefore = await getJobEvents(db, job.id);
          if (canTransition(from, to)) {
            const moved = await transitionJob(db, { jobId: job.id, to, reason: `test ${to}`, actor: "fsm", details: { n: 1 } });
            expect(moved).toMatchObject({ status: to, version: job.version + 1, statusReason: `test ${to}` });
            if (to === "scheduled") expect(moved.scheduledAt).not.toBeNull();
            if (from === "provisioning" && to === "running") expect(moved.startedAt).not.toBeNull();
            expect(moved.finishedAt !== null).toBe(isTerminal(to));
            const events = await getJobEvents(db, job.id);
            expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
            expect(events.at(-1)).toMatchObject({ seq: moved.version, fromStatus: from, toStatus: to, actor: "fsm" });
            expect(replayEvents(events.map((e) => ({ from: e.fromStatus, to: e.toStatus })))).toBe(to);
          } else {
            const err = await rejection(transitionJob(db, { jobId: job.id, to, reason: "illegal", actor: "fsm" }));
            expect(err.code).toBe("FAILED_PRECONDITION");
            expect(err.meta).toMatchObject({ from, to });
            expect(await getJob(db, job.id, { teamId: null })).toEqual(job);
            expect(await getJobEvents(db, job.id)).toEqual(eventsBefore);
          }
        }
      }
    });

    it("starts a new attempt on requeued → pending and refuses one past max_attempts", async () => {
      const t = await team();
      const job = await jobIn("requeued", t.id, 2);
      const retried = await transitionJob(db, { jobId: job.id, to: "pending", reason: "retry", actor: "sched" });
      expect(retried.attempt).toBe(2);
      await transitionJob(db, { jobId: job.id, to: "scheduled", reason: "placed", actor: "sched" });
      await transitionJob(db, { jobId: job.id, to: "requeued", reason: "preempted", actor: "agent" });
      const err = await rejection(transitionJob(db, { jobId: job.id, to: "pending", reason: "retry", actor: "sched" }));
      expect(err).toMatchObject({ code: "FAILED_PRECONDITION", reason: "retries_exhausted" });
      const failed = await transitionJob(db, { jobId: job.id, to: "failed", reason: "retries_exhausted", actor: "sched" });
      expect(failed).toMatchObject({ status: "failed", attempt: 2 });
      const events = await getJobEvents(db, job.id);
      expect(events.map((e) => e.attempt)).toEqual([1, 1, 1, 2, 2, 2, 2]);
    });

    it("honours expectedVersion, expectedFrom and the caller's scope", async () => {
      const [a, b] = [await team(), await team()];
      const job = (await insertJob(db, newJobInput(a.id))).job;
      const base = { jobId: job.id, to: "scheduled" as const, reason: "r", actor: "x" };
      expect(await rejection(transitionJob(db, { ...base, expectedVersion: 7 }))).toMatchObject({ code: "ABORTED", reason: "version_conflict" });
      expect(await rejection(transitionJob(db, { ...base, expectedFrom: "running" }))).toMatchObject({
        code: "FAILED_PRECONDITION",
        reason: "unexpected_status",
      });
      expect((await rejection(transitionJob(db, { ...base, scope: { teamId: b.id } }))).code).toBe("NOT_FOUND");
      expect((await rejection(transitionJob(db, { ...base, jobId: randomUUID() }))).code).toBe("NOT_FOUND");
      const moved = await transitionJob(db, { ...base, scope: { teamId: a.id }, expectedVersion: 1, expectedFrom: "pending" });
      expect(moved.version).toBe(2);
    });

    it("cancels idempotently and refuses to cancel a finished job", async () => {
      const [a, b] = [await team(), await team()];
      const job = await jobIn("running", a.id);
      const first = await cancelJob(db, { jobId: job.id, scope: { teamId: a.id }, reason: "user", actor: "alice" });
      expect(first.changed).toBe(true);
      expect(first.job).toMatchObject({ status: "cancelled", statusReason: "user" });
      const second = await cancelJob(db, { jobId: job.id, scope: { teamId: a.id }, reason: "user", actor: "alice" });
      expect(second).toEqual({ job: first.job, changed: false });
      expect((await getJobEvents(db, job.id)).filter((e) => e.toStatus === "cancelled")).toHaveLength(1);

      const done = await jobIn("completed", a.id);
      const err = await rejection(cancelJob(db, { jobId: done.id, scope: { teamId: null }, reason: "user", actor: "admin" }));
      expect(err.code).toBe("FAILED_PRECONDITION");
      expect(err.message).toContain("job is already completed");
      const other = await rejection(cancelJob(db, { jobId: job.id, scope: { teamId: b.id }, reason: "user", actor: "bob" }));
      expect(other.code).toBe("NOT_FOUND");
    });
  });

  describe("integrity enforced by the database", () => {
    it("keeps job_events append-only: UPDATE, DELETE and TRUNCATE raise", async () => {
      const t = await team();
      const { job } = await insertJob(db, newJobInput(t.id));
      for (const stmt of [
        sql`UPDATE job_events SET reason = 'rewritten' WHERE job_id = ${job.id}`,
        sql`DELETE FROM job_events WHERE job_id = ${job.id}`,
        sql`TRUNCATE job_events`,
      ]) {
        const e = await db.execute(stmt).then(
          () => undefined,
          (err: unknown) => err,
        );
        expect(findPgError(e)?.message).toMatch(/job_events is append-only/);
        expect(toDbAppError(e)).toMatchObject({ code: "FAILED_PRECONDITION", reason: "append_only" });
      }
      expect(await getJobEvents(db, job.id)).toHaveLength(1);
    });

    it("keeps allocations immutable", async () => {
      const t = await team();
      const { job } = await insertJob(db, newJobInput(t.id));
      const id = randomUUID();
      await db.insert(allocations).values({
        id,
        jobId: job.id,
        attempt: 1,
        provider: "aws",
        region: "us-east-1",
        instanceType: "p4d.24xlarge",
        instanceCount: 1,
        gpusPerInstance: "8",
        spot: false,
        priceUsdPerHour: "32.773",
        estimatedHours: "2.5",
        estimatedCostUsd: "81.9325",
        prices: [{ instanceType: "p4d.24xlarge", onDemand: "32.773" }],
      });
      const e = await db.execute(sql`UPDATE allocations SET region = 'eu-west-1' WHERE id = ${id}`).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(findPgError(e)?.message).toMatch(/allocations is append-only/);
    });

    it("enforces CHECK constraints (a negative budget is refused by the database)", async () => {
      const t = await team();
      const cases: [Partial<Parameters<typeof newJobInput>[1]>, string][] = [
        [{ budgetUsd: "-5.00" }, "jobs_budget_positive"],
        [{ budgetUsd: "0" }, "jobs_budget_positive"],
        [{ priority: 1001 }, "jobs_priority_range"],
        [{ gpus: 0 }, "jobs_gpus_min"],
        [{ maxAttempts: 0 }, "jobs_attempt_max"],
      ];
      for (const [override, constraint] of cases) {
        const input = newJobInput(t.id, override);
        const err = await rejection(insertJob(db, input));
        expect(err).toMatchObject({ code: "INVALID_ARGUMENT", reason: "constraint_violation" });
        expect(err.meta["constraint"]).toBe(constraint);
        expect(await getJob(db, input.id, { teamId: null })).toBeNull();
        expect(await getJobEvents(db, input.id)).toEqual([]);
      }
      const { job } = await insertJob(db, newJobInput(t.id, { maxAttempts: 1 }));
      const e = await db.execute(sql`UPDATE jobs SET running_cost_usd = -1 WHERE id = ${job.id}`).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(findPgError(e)?.constraint).toBe("jobs_running_cost_nonnegative");
      const bad = await rejection(
        insertArtifact(db, { id: randomUUID(), jobId: job.id, attempt: 1, type: "log", uri: "file:///x", sha256: "XYZ" }),
      );
      expect(bad.meta["constraint"]).toBe("job_artifacts_sha256_hex");
    });
  });

  describe("counts, artifacts, teams and tokens", () => {
    it("counts jobs by status, every status present", async () => {
      const before = await countJobsByStatus(db);
      expect(Object.keys(before).sort()).toEqual([...JOB_STATUSES].sort());
      const t = await team();
      await jobIn("pending", t.id);
      await jobIn("running", t.id);
      await jobIn("running", t.id);
      const after = await countJobsByStatus(db);
      const delta = Object.fromEntries(JOB_STATUSES.map((s) => [s, after[s] - before[s]]));
      expect(delta).toEqual({ ...Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])), pending: 1, running: 2 });
    });

    it("records and lists artifacts, oldest first, optionally by type", async () => {
      const t = await team();
      const job = await jobIn("running", t.id);
      const ckpt = await insertArtifact(db, {
        id: randomUUID(),
        jobId: job.id,
        attempt: 1,
        type: "checkpoint",
        uri: "s3://bucket/ckpt-100",
        step: 100,
        bytes: 5_000_000_000,
        sha256: sha256("ckpt"),
      });
      const log = await insertArtifact(db, { id: randomUUID(), jobId: job.id, attempt: 1, type: "log", uri: "s3://bucket/log" });
      expect(ckpt).toMatchObject({ step: 100, bytes: 5_000_000_000, sha256: sha256("ckpt"), type: "checkpoint" });
      expect(log).toMatchObject({ step: null, bytes: null, sha256: null });
      expect((await listArtifacts(db, job.id)).map((a) => a.id)).toEqual([ckpt.id, log.id]);
      expect(await listArtifacts(db, job.id, "checkpoint")).toEqual([ckpt]);
      expect(await listArtifacts(db, "nope")).toEqual([]);
    });

    it("creates teams once: a duplicate name is ALREADY_EXISTS, ensureTeam is race-safe", async () => {
      const name = `t-${randomUUID().slice(0, 8)}`;
      const results = await Promise.all(Array.from({ length: 6 }, () => ensureTeam(db, { id: randomUUID(), name })));
      expect(new Set(results.map((r) => r.id)).size).toBe(1);
      expect(await getTeamByName(db, name)).toEqual(results[0]);
      expect(await getTeamByName(db, "no-such-team")).toBeNull();
      expect((await rejection(createTeam(db, { id: randomUUID(), name }))).code).toBe("ALREADY_EXISTS");
    });

    it("finds the principal of a token by its hash until the token is revoked", async () => {
      const t = await team();
      const userToken = { id: randomUUID(), teamId: t.id, name: "ci", kind: "user" as const, admin: false, tokenHash: sha256(randomUUID()) };
      const adminToken = { id: randomUUID(), teamId: null, name: "root", kind: "user" as const, admin: true, tokenHash: sha256(randomUUID()) };
      await insertApiToken(db, userToken);
      await insertApiToken(db, adminToken);
      expect(await findPrincipalByTokenHash(db, userToken.tokenHash)).toEqual({
        tokenId: userToken.id,
        teamId: t.id,
        teamName: t.name,
        kind: "user",
        admin: false,
      });
      expect(await findPrincipalByTokenHash(db, adminToken.tokenHash)).toEqual({
        tokenId: adminToken.id,
        teamId: null,
        teamName: null,
        kind: "user",
        admin: true,
      });
      expect(await findPrincipalByTokenHash(db, sha256("unknown"))).toBeNull();
      expect(await revokeToken(db, userToken.id)).toBe(true);
      expect(await revokeToken(db, userToken.id)).toBe(false);
      expect(await findPrincipalByTokenHash(db, userToken.tokenHash)).toBeNull();

      const teamless = { ...userToken, id: randomUUID(), teamId: null, tokenHash: sha256(randomUUID()) };
      expect((await rejection(insertApiToken(db, teamless))).meta["constraint"]).toBe("api_tokens_admin_or_team");
      const plain = { ...userToken, id: randomUUID(), tokenHash: "secret-token-itself" };
      expect((await rejection(insertApiToken(db, plain))).code).toBe("INVALID_ARGUMENT");
    });
  });

  it("re-runs migrations on an existing database without touching its data", async () => {
    const t = await team();
    const { job } = await insertJob(db, newJobInput(t.id));
    await runMigrations(database);
    if (testDb) {
      // Two more processes starting at once against the same database.
      const others = await Promise.all([openDatabase({ url: testDb.url, poolMax: 1 }), openDatabase({ url: testDb.url, poolMax: 1 })]);
      await Promise.all(others.map((o) => o.close()));
    }
    expect(await getJob(db, job.id, { teamId: null })).toEqual(job);
  });
});
