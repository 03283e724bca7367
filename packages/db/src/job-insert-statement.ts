import type { Job, JobTarget } from "@gpuorch/core";
import { sql } from "drizzle-orm";
import type { NewJobInput } from "./jobs.js";
import type { Db } from "./open.js";
import { preparedRows } from "./prepared.js";

/*
 * The one submit statement, used for a single job (insertJob) and for a batch
 * (insertJobs): jobs, their creating events and the idempotency check in ONE
 * statement. Rows travel as a single jsonb parameter expanded by
 * jsonb_to_recordset, so the text never changes and both drivers accept it.
 */

const JOB_RETURNING = `
  j.id, j.team_id AS "teamId", t.name AS "teamName", j.name, j.project, j.type, j.framework,
  j.execution_mode AS "executionMode", j.status, j.status_reason AS "statusReason", j.priority,
  j.attempt, j.max_attempts AS "maxAttempts", j.version, j.gpus, j.spec_yaml AS "specYaml",
  j.budget_usd::text AS "budgetUsd", j.deadline, j.estimated_cost_usd::text AS "estimatedCostUsd",
  j.running_cost_usd::text AS "runningCostUsd", j.target, j.created_at AS "createdAt",
  j.updated_at AS "updatedAt", j.scheduled_at AS "scheduledAt", j.started_at AS "startedAt",
  j.finished_at AS "finishedAt"`;

/*
 * What an insert sends back: only what the database decided (defaults,
 * clock, normalized numerics, the team's name). The rest of the Job is the
 * input as stored; not echoing spec_yaml back halves the bytes of a submit.
 */
const INSERTED_RETURNING = `
  j.id, t.name AS "teamName", j.status, j.status_reason AS "statusReason", j.attempt, j.version,
  j.budget_usd::text AS "budgetUsd", j.estimated_cost_usd::text AS "estimatedCostUsd",
  j.running_cost_usd::text AS "runningCostUsd", j.target, j.created_at AS "createdAt",
  j.updated_at AS "updatedAt", j.scheduled_at AS "scheduledAt", j.started_at AS "startedAt",
  j.finished_at AS "finishedAt"`;

type InsertedRow = Pick<RawJobRow, "id" | "teamName" | "status" | "statusReason" | "attempt" | "version" | "budgetUsd" | "estimatedCostUsd" | "runningCostUsd" | "target" | "createdAt" | "updatedAt" | "scheduledAt" | "startedAt" | "finishedAt">;

export async function insertJobRows(db: Db, inputs: readonly NewJobInput[]): Promise<Job[]> {
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
      estimated_cost_usd: i.estimatedCostUsd ?? null,
      deadline: i.deadline?.toISOString() ?? null,
      idempotency_key: i.idempotencyKey,
      actor: i.actor,
    })),
  );
  const rows = await preparedRows<InsertedRow>(db, "gpuorch_insert_jobs", sql`
    WITH input AS (
      SELECT * FROM jsonb_to_recordset(${payload}::jsonb) AS r(
        ord int, id uuid, team_id uuid, name text, project text, type job_type, framework framework,
        execution_mode execution_mode, priority int, max_attempts int, gpus int, spec_yaml text, spec jsonb,
        budget_usd numeric, estimated_cost_usd numeric, deadline timestamptz, idempotency_key text, actor text)
    ),
    j AS (
      INSERT INTO jobs (id, team_id, name, project, type, framework, execution_mode, priority, max_attempts,
                        gpus, spec_yaml, spec, budget_usd, estimated_cost_usd, deadline, idempotency_key)
      SELECT id, team_id, name, project, type, framework, execution_mode, priority, max_attempts,
             gpus, spec_yaml, spec, budget_usd, estimated_cost_usd, deadline, idempotency_key
      FROM input ORDER BY ord
      ON CONFLICT (team_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
      RETURNING *
    ),
    e AS (
      INSERT INTO job_events (job_id, seq, from_status, to_status, attempt, reason, actor)
      SELECT j.id, 1, NULL, 'pending', j.attempt, 'submitted', input.actor FROM j JOIN input ON input.id = j.id
    )
    SELECT ${sql.raw(INSERTED_RETURNING)} FROM j JOIN teams t ON t.id = j.team_id`);
  const byId = new Map(inputs.map((i) => [i.id, i]));
  return rows.map((r) => toJob(r, byId.get(r.id)!));
}

export async function findByIdempotencyKeys(db: Db, inputs: readonly NewJobInput[]): Promise<Map<string, Job>> {
  const keys = JSON.stringify(inputs.filter((i) => i.idempotencyKey !== null).map((i) => ({ team_id: i.teamId, key: i.idempotencyKey })));
  const res = (await db.execute(sql`
    SELECT ${sql.raw(JOB_RETURNING)}, j.idempotency_key AS "idempotencyKey"
    FROM jobs j JOIN teams t ON t.id = j.team_id
    JOIN jsonb_to_recordset(${keys}::jsonb) AS k(team_id uuid, key text)
      ON j.team_id = k.team_id AND j.idempotency_key = k.key`)) as unknown as { rows: (RawJobRow & { idempotencyKey: string })[] };
  return new Map(res.rows.map((r) => [`${r.teamId}\u0000${r.idempotencyKey}`, toJob(r, r)]));
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
// `given` holds what the caller already knows (the insert's input; the row
// itself for a read). Built field by field: spreading the row into a new
// object and copying it again cost ~18 us per job, more than the rest of the
// mapping together (the submit path pays it once per job).
function toJob(r: Omit<RawJobRow, keyof JobGiven>, given: JobGiven): Job {
  return {
    id: r.id,
    teamId: given.teamId,
    teamName: r.teamName,
    name: given.name,
    project: given.project,
    type: given.type,
    framework: given.framework,
    executionMode: given.executionMode,
    status: r.status,
    statusReason: r.statusReason,
    priority: given.priority,
    attempt: r.attempt,
    maxAttempts: given.maxAttempts,
    version: r.version,
    gpus: given.gpus,
    specYaml: given.specYaml,
    budgetUsd: r.budgetUsd,
    deadline: optDate(given.deadline),
    estimatedCostUsd: r.estimatedCostUsd,
    runningCostUsd: r.runningCostUsd,
    target: typeof r.target === "string" ? (JSON.parse(r.target) as JobTarget) : r.target,
    createdAt: toDate(r.createdAt),
    updatedAt: toDate(r.updatedAt),
    scheduledAt: optDate(r.scheduledAt),
    startedAt: optDate(r.startedAt),
    finishedAt: optDate(r.finishedAt),
  };
}

/** The job columns a submit knows before the database answers. */
type JobGiven = Pick<RawJobRow, "teamId" | "name" | "project" | "type" | "framework" | "executionMode" | "priority" | "maxAttempts" | "gpus" | "specYaml" | "deadline">;

const toDate = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));
const optDate = (v: Date | string | null): Date | null => (v === null ? null : toDate(v));
