import {
  AppError,
  type ExecutionMode,
  type Framework,
  type Job,
  type JobStatus,
  type JobType,
  JOB_STATUSES,
  type Page,
  assertTransition,
  isJobStatus,
  isTerminal,
  startsNewAttempt,
} from "@gpuorch/core";
import { type SQL, and, count, desc, eq, getTableColumns, inArray, sql } from "drizzle-orm";
import { dbCall } from "./db-errors.js";
import { findByIdempotencyKeys, insertJobRows } from "./job-insert-statement.js";
import type { Db } from "./open.js";
import { decodePageToken, encodePageToken, isUuid } from "./page-token.js";
import { jobEvents, jobs, teams } from "./schema.js";

export interface NewJobInput {
  id: string;
  teamId: string;
  name: string;
  project: string | null;
  type: JobType;
  framework: Framework;
  executionMode: ExecutionMode;
  priority: number;
  maxAttempts: number;
  gpus: number;
  /** The spec exactly as submitted. */
  specYaml: string;
  /** The normalized spec (defaults applied). */
  spec: Record<string, unknown>;
  budgetUsd: string | null;
  /** The optimizer's estimate at admission (decimal USD), when it made one. */
  estimatedCostUsd?: string | null;
  deadline: Date | null;
  idempotencyKey: string | null;
  /** Who submitted: recorded on the creating event. */
  actor: string;
}

/** Which jobs a caller may see: one team's, or every team's (teamId null = admin). */
export interface JobScope {
  teamId: string | null;
}

// The columns a Job is made of (the normalized spec and the idempotency key stay in the database).
// Cost bookkeeping columns (gpu_seconds, cost_updated_at) are read by the cost queries, not part of the Job model.
const { spec: _spec, idempotencyKey: _idempotencyKey, gpuSeconds: _gpuSeconds, costUpdatedAt: _costUpdatedAt, ...jobColumns } = getTableColumns(jobs);
const jobSelection = { ...jobColumns, teamName: teams.name };

/**
 * Inserts a job and its creating event (seq 1, ∅ → pending, "submitted") in
 * one statement — the same statement insertJobs uses for a batch. With an
 * idempotency key the team already used, nothing is inserted and the
 * existing job comes back, deduplicated.
 */
export function insertJob(db: Db, input: NewJobInput): Promise<{ job: Job; deduplicated: boolean }> {
  return dbCall(async () => {
    const [row] = await insertJobRows(db, [input]);
    if (row) return { job: row, deduplicated: false };
    if (input.idempotencyKey === null) throw AppError.internal(`insert of job ${input.id} returned no row`);
    const existing = (await findByIdempotencyKeys(db, [input])).get(`${input.teamId}\u0000${input.idempotencyKey}`);
    if (!existing) throw AppError.internal(`job with idempotency key ${input.idempotencyKey} vanished`);
    return { job: existing, deduplicated: true };
  });
}

/**
 * One job, or null when it does not exist or belongs to a team outside the
 * scope — callers answer NOT_FOUND either way, so existence never leaks.
 */
export function getJob(db: Db, id: string, scope: JobScope): Promise<Job | null> {
  return dbCall(async () => {
    if (!isUuid(id)) return null;
    const where = scope.teamId === null ? eq(jobs.id, id) : and(eq(jobs.id, id), eq(jobs.teamId, scope.teamId));
    const [row] = await db.select(jobSelection).from(jobs).innerJoin(teams, eq(teams.id, jobs.teamId)).where(where);
    return row ?? null;
  });
}

export interface ListJobsQuery {
  /** Scope: only this team's jobs, or null (admin) for every team's. */
  teamId: string | null;
  /** Filter by team name (admins narrowing the list). */
  team?: string;
  statuses?: JobStatus[];
  project?: string;
  /** Page size, 1..1000. */
  limit: number;
  /** `nextCursor` of the previous page. */
  cursor?: string | null;
}

export const MAX_PAGE_SIZE = 1000;

/**
 * Jobs newest first, keyset-paginated on (created_at desc, id desc). A page
 * never repeats or skips a row older than its cursor, however many jobs are
 * inserted meanwhile (they sort before the cursor or after it, never between).
 */
export function listJobs(db: Db, q: ListJobsQuery): Promise<Page<Job>> {
  return dbCall(async () => {
    if (!Number.isInteger(q.limit) || q.limit < 1 || q.limit > MAX_PAGE_SIZE) {
      throw AppError.invalid(`page size must be an integer between 1 and ${MAX_PAGE_SIZE}`, [
        { field: "page_size", message: `expected 1..${MAX_PAGE_SIZE}, got ${q.limit}` },
      ]);
    }
    const conds: SQL[] = [];
    if (q.teamId !== null) conds.push(eq(jobs.teamId, q.teamId));
    if (q.team !== undefined) conds.push(eq(teams.name, q.team));
    if (q.statuses !== undefined && q.statuses.length > 0) {
      const bad = q.statuses.filter((s) => !isJobStatus(s));
      if (bad.length > 0) {
        throw AppError.invalid(`unknown job status ${bad.join(", ")}`, [{ field: "status", message: `expected one of ${JOB_STATUSES.join(", ")}` }]);
      }
      conds.push(inArray(jobs.status, q.statuses));
    }
    if (q.project !== undefined) conds.push(eq(jobs.project, q.project));
    if (q.cursor) {
      const pos = decodePageToken(q.cursor);
      conds.push(
        sql`(${jobs.createdAt}, ${jobs.id}) < (timestamptz 'epoch' + ${pos.createdAtMicros}::bigint * interval '1 microsecond', ${pos.id}::uuid)`,
      );
    }
    const rows = await db
      .select({ ...jobSelection, createdAtMicros: sql<string>`(extract(epoch from ${jobs.createdAt}) * 1000000)::bigint::text` })
      .from(jobs)
      .innerJoin(teams, eq(teams.id, jobs.teamId))
      .where(and(...conds))
      .orderBy(desc(jobs.createdAt), desc(jobs.id))
      .limit(q.limit + 1);
    const more = rows.length > q.limit;
    const page = more ? rows.slice(0, q.limit) : rows;
    const last = page[page.length - 1];
    const items: Job[] = page.map(({ createdAtMicros: _micros, ...job }) => job);
    return { items, nextCursor: more && last ? encodePageToken({ createdAtMicros: last.createdAtMicros, id: last.id }) : null };
  });
}

export interface TransitionInput {
  jobId: string;
  to: JobStatus;
  reason: string;
  actor: string;
  scope?: JobScope;
  /** Refuse (ABORTED version_conflict) unless the job is still at this version. */
  expectedVersion?: number;
  /** Refuse (FAILED_PRECONDITION unexpected_status) unless the job is in this state. */
  expectedFrom?: JobStatus;
  /** Stored on the event (e.g. the node lost, the exit code). */
  details?: Record<string, unknown>;
}

function versionConflict(jobId: string): AppError {
  return new AppError("ABORTED", `job ${jobId} changed concurrently; re-read and retry`, { reason: "version_conflict", meta: { jobId } });
}

/**
 * Moves a job along the state machine and records the event, in one
 * transaction, with optimistic concurrency: the UPDATE only applies if the
 * version read is still current, so of two racing transitions exactly one
 * wins and the other gets ABORTED version_conflict (or FAILED_PRECONDITION if
 * it reads after the winner committed). The event's seq is the new version:
 * version 1 is the creating event and only transitions bump it.
 *
 * Timestamps: scheduled_at is set on every move to scheduled, started_at when
 * an attempt starts running (provisioning → running), finished_at on a
 * terminal state. requeued → pending starts the next attempt.
 */
export function transitionJob(db: Db, input: TransitionInput): Promise<Job> {
  return dbCall(() =>
    db.transaction(async (tx) => {
      const { jobId, to } = input;
      if (!isUuid(jobId)) throw AppError.notFound("Job", jobId);
      const [cur] = await tx
        .select({
          status: jobs.status,
          version: jobs.version,
          teamId: jobs.teamId,
          teamName: teams.name,
          attempt: jobs.attempt,
          maxAttempts: jobs.maxAttempts,
        })
        .from(jobs)
        .innerJoin(teams, eq(teams.id, jobs.teamId))
        .where(eq(jobs.id, jobId));
      const scopeTeam = input.scope?.teamId ?? null;
      if (!cur || (scopeTeam !== null && cur.teamId !== scopeTeam)) throw AppError.notFound("Job", jobId);
      if (input.expectedVersion !== undefined && cur.version !== input.expectedVersion) throw versionConflict(jobId);
      const from = cur.status;
      if (input.expectedFrom !== undefined && from !== input.expectedFrom) {
        throw AppError.precondition(`job ${jobId} is ${from}, expected ${input.expectedFrom}`, "unexpected_status", {
          from,
          expected: input.expectedFrom,
          to,
        });
      }
      assertTransition(from, to);
      const attempt = startsNewAttempt(from, to) ? cur.attempt + 1 : cur.attempt;
      if (attempt > cur.maxAttempts) {
        throw AppError.precondition(`job ${jobId} has used all ${cur.maxAttempts} attempts`, "retries_exhausted", {
          attempt: cur.attempt,
          maxAttempts: cur.maxAttempts,
        });
      }
      const now = sql`now()`;
      const [updated] = await tx
        .update(jobs)
        .set({
          status: to,
          statusReason: input.reason,
          version: sql`${jobs.version} + 1`,
          attempt,
          updatedAt: now,
          ...(to === "scheduled" ? { scheduledAt: now } : {}),
          ...(from === "provisioning" && to === "running" ? { startedAt: now } : {}),
          ...(isTerminal(to) ? { finishedAt: now } : {}),
        })
        .where(and(eq(jobs.id, jobId), eq(jobs.version, cur.version)))
        .returning(jobColumns);
      if (!updated) throw versionConflict(jobId);
      await tx.insert(jobEvents).values({
        jobId,
        seq: updated.version,
        fromStatus: from,
        toStatus: to,
        attempt,
        reason: input.reason,
        actor: input.actor,
        details: input.details ?? null,
      });
      return { ...updated, teamName: cur.teamName };
    }),
  );
}

export interface CancelInput {
  jobId: string;
  scope: JobScope;
  reason: string;
  actor: string;
}

const CANCEL_TRIES = 8;

/**
 * Cancels a job. Idempotent: an already cancelled job comes back with
 * changed=false and no new event. A completed or failed job cannot be
 * cancelled (FAILED_PRECONDITION). Races with progress (version conflicts)
 * are retried, since a cancel must eventually win over non-terminal moves.
 */
export async function cancelJob(db: Db, input: CancelInput): Promise<{ job: Job; changed: boolean }> {
  let lastConflict: AppError | undefined;
  for (let i = 0; i < CANCEL_TRIES; i++) {
    const job = await getJob(db, input.jobId, input.scope);
    if (!job) throw AppError.notFound("Job", input.jobId);
    if (job.status === "cancelled") return { job, changed: false };
    if (isTerminal(job.status)) {
      throw AppError.precondition(`job is already ${job.status}`, "illegal_transition", { from: job.status, to: "cancelled" });
    }
    try {
      const cancelled = await transitionJob(db, {
        jobId: input.jobId,
        to: "cancelled",
        reason: input.reason,
        actor: input.actor,
        scope: input.scope,
        expectedVersion: job.version,
      });
      return { job: cancelled, changed: true };
    } catch (e) {
      if (e instanceof AppError && e.code === "ABORTED" && e.reason === "version_conflict") {
        lastConflict = e;
        continue;
      }
      throw e;
    }
  }
  throw lastConflict ?? versionConflict(input.jobId);
}

/** How many jobs are in each state; every state is present, zeros included. */
export function countJobsByStatus(db: Db): Promise<Record<JobStatus, number>> {
  return dbCall(async () => {
    const rows = await db.select({ status: jobs.status, n: count() }).from(jobs).groupBy(jobs.status);
    const out = Object.fromEntries(JOB_STATUSES.map((s) => [s, 0])) as Record<JobStatus, number>;
    for (const r of rows) out[r.status] = r.n;
    return out;
  });
}
