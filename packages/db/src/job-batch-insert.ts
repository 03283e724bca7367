import { AppError, type Job, type JobTarget } from "@gpuorch/core";
import { sql } from "drizzle-orm";
import { dbCall, toDbAppError } from "./db-errors.js";
import { type NewJobInput, insertJob } from "./jobs.js";
import type { Db } from "./open.js";

/** One submission's outcome in a batch: its own job, or its own error. */
export type InsertJobOutcome = { ok: true; job: Job; deduplicated: boolean } | { ok: false; error: AppError };

/** The most rows one statement takes; larger batches are split. */
export const MAX_INSERT_BATCH = 256;

const JOB_RETURNING = `
  j.id, j.team_id AS "teamId", t.name AS "teamName", j.name, j.project, j.type, j.framework,
  j.execution_mode AS "executionMode", j.status, j.status_reason AS "statusReason", j.priority,
  j.attempt, j.max_attempts AS "maxAttempts", j.version, j.gpus, j.spec_yaml AS "specYaml",
  j.budget_usd::text AS "budgetUsd", j.deadline, j.estimated_cost_usd::text AS "estimatedCostUsd",
  j.running_cost_usd::text AS "runningCostUsd", j.target, j.created_at AS "createdAt",
  j.updated_at AS "updatedAt", j.scheduled_at AS "scheduledAt", j.started_at AS "startedAt",
  j.finished_at AS "finishedAt"`;

/**
 * Many submissions, their creating events and the idempotency check in ONE
 * statement (one round trip, one commit): the rows travel as a single JSON
 * parameter expanded by jsonb_to_recordset, so the statement text never
 * changes and both drivers accept it. The controller batches concurrent
 * submits through this (group commit); under load that divides the per-job
 * database and driver cost by the batch size.
 *
 * Atomic per batch. If the statement fails (say one row breaks a CHECK), each
 * row is retried on its own so only the bad one fails. A row whose
 * idempotency key its team already used (earlier, or earlier in the same
 * batch) returns the existing job, deduplicated.
 */
export async function insertJobs(db: Db, inputs: readonly NewJobInput[]): Promise<InsertJobOutcome[]> {
  const out: InsertJobOutcome[] = [];
  for (let i = 0; i < inputs.length; i += MAX_INSERT_BATCH) {
    out.push(...(await insertChunk(db, inputs.slice(i, i + MAX_INSERT_BATCH))));
  }
  return out;
}

async function insertChunk(db: Db, inputs: readonly NewJobInput[]): Promise<InsertJobOutcome[]> {
  if (inputs.length === 0) return [];
  if (inputs.length === 1) return [await insertOne(db, inputs[0]!)];
  let rows: Job[];
  try {
    rows = await dbCall(() => runBatch(db, inputs));
  } catch {
    // One bad row must not fail its neighbours: fall back to one statement each.
    return Promise.all(inputs.map((input) => insertOne(db, input)));
  }
  const byId = new Map(rows.map((r) => [r.id, r]));
  const missing = inputs.filter((i) => !byId.has(i.id));
  let existing = new Map<string, Job>();
  let lookupError: AppError | null = null;
  if (missing.length > 0) {
    try {
      existing = await dbCall(() => findByIdempotencyKeys(db, missing));
    } catch (e) {
      lookupError = toDbAppError(e);
    }
  }
  return inputs.map((input): InsertJobOutcome => {
    const row = byId.get(input.id);
    if (row) return { ok: true, job: row, deduplicated: false };
    if (lookupError) return { ok: false, error: lookupError };
    const found = input.idempotencyKey === null ? undefined : existing.get(`${input.teamId}\u0000${input.idempotencyKey}`);
    if (!found) return { ok: false, error: AppError.internal(`insert of job ${input.id} returned no row`) };
    return { ok: true, job: found, deduplicated: true };
  });
}

async function runBatch(db: Db, inputs: readonly NewJobInput[]): Promise<Job[]> {
  const payload = JSON.stringify(
    inputs.map((i, ord) => ({
      ord,
      id: i.id,
      team_id: i.teamId,
      name: i.name,
      project: i.project,
      type: i.type,
      framework: i.framework,
      execution_mode: i.executionMode,
      priority: i.priority,
      max_attempts: i.maxAttempts,
      gpus: i.gpus,
      spec_yaml: i.specYaml,
      spec: i.spec,
      budget_usd: i.budgetUsd,
      deadline: i.deadline?.toISOString() ?? null,
      idempotency_key: i.idempotencyKey,
      actor: i.actor,
    })),
  );
  const res = (await db.execute(sql`
    WITH input AS (
      SELECT * FROM jsonb_to_recordset(${payload}::jsonb) AS r(
        ord int, id uuid, team_id uuid, name text, project text, type job_type, framework framework,
        execution_mode execution_mode, priority int, max_attempts int, gpus int, spec_yaml text, spec jsonb,
        budget_usd numeric, deadline timestamptz, idempotency_key text, actor text)
    ),
    j AS (
      INSERT INTO jobs (id, team_id, name, project, type, framework, execution_mode, priority, max_attempts,
                        gpus, spec_yaml, spec, budget_usd, deadline, idempotency_key)
      SELECT id, team_id, name, project, type, framework, execution_mode, priority, max_attempts,
             gpus, spec_yaml, spec, budget_usd, deadline, idempotency_key
      FROM input ORDER BY ord
      ON CONFLICT (team_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
      RETURNING *
    ),
    e AS (
      INSERT INTO job_events (job_id, seq, from_status, to_status, attempt, reason, actor)
      SELECT j.id, 1, NULL, 'pending', j.attempt, 'submitted', input.actor FROM j JOIN input ON input.id = j.id
    )
    SELECT ${sql.raw(JOB_RETURNING)} FROM j JOIN teams t ON t.id = j.team_id`)) as unknown as { rows: RawJobRow[] };
  return res.rows.map(toJob);
}

async function findByIdempotencyKeys(db: Db, inputs: readonly NewJobInput[]): Promise<Map<string, Job>> {
  const keys = JSON.stringify(inputs.filter((i) => i.idempotencyKey !== null).map((i) => ({ team_id: i.teamId, key: i.idempotencyKey })));
  const res = (await db.execute(sql`
    SELECT ${sql.raw(JOB_RETURNING)}, j.idempotency_key AS "idempotencyKey"
    FROM jobs j JOIN teams t ON t.id = j.team_id
    JOIN jsonb_to_recordset(${keys}::jsonb) AS k(team_id uuid, key text)
      ON j.team_id = k.team_id AND j.idempotency_key = k.key`)) as unknown as { rows: (RawJobRow & { idempotencyKey: string })[] };
  return new Map(res.rows.map((r) => [`${r.teamId}\u0000${r.idempotencyKey}`, toJob(r)]));
}

type RawJobRow = Omit<Job, "deadline" | "createdAt" | "updatedAt" | "scheduledAt" | "startedAt" | "finishedAt" | "target"> & {
  deadline: Date | string | null;
  createdAt: Date | string;
  updatedAt: Date | string;
  scheduledAt: Date | string | null;
  startedAt: Date | string | null;
  finishedAt: Date | string | null;
  target: JobTarget | string | null;
};

// Raw rows: timestamps arrive as Date from both drivers today, but accept the
// text form too rather than trust a driver setting; jsonb likewise.
function toJob(r: RawJobRow): Job {
  const date = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));
  const opt = (v: Date | string | null): Date | null => (v === null ? null : date(v));
  const { idempotencyKey: _k, ...row } = r as RawJobRow & { idempotencyKey?: string };
  return {
    ...row,
    deadline: opt(r.deadline),
    createdAt: date(r.createdAt),
    updatedAt: date(r.updatedAt),
    scheduledAt: opt(r.scheduledAt),
    startedAt: opt(r.startedAt),
    finishedAt: opt(r.finishedAt),
    target: typeof r.target === "string" ? (JSON.parse(r.target) as JobTarget) : r.target,
  };
}

async function insertOne(db: Db, input: NewJobInput): Promise<InsertJobOutcome> {
  try {
    return { ok: true, ...(await insertJob(db, input)) };
  } catch (e) {
    return { ok: false, error: toDbAppError(e) };
  }
}
