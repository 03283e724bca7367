import { AppError, type ArtifactType, type JobArtifact } from "@gpuorch/core";
import { and, asc, eq, getTableColumns, isNull, sql } from "drizzle-orm";
import { dbCall, sqlRows } from "./db-errors.js";
import type { Db } from "./open.js";
import { isUuid } from "./page-token.js";
import { jobArtifacts } from "./schema.js";

export interface NewArtifact {
  id: string;
  jobId: string;
  attempt: number;
  type: ArtifactType;
  uri: string;
  step?: number | null;
  bytes?: number | null;
  sha256?: string | null;
}

const artifactColumns = getTableColumns(jobArtifacts);

/** Records an artifact an agent uploaded (checkpoint, log, model, metrics). */
export function insertArtifact(db: Db, a: NewArtifact): Promise<JobArtifact> {
  return dbCall(async () => {
    const [row] = await db
      .insert(jobArtifacts)
      .values({
        id: a.id,
        jobId: a.jobId,
        attempt: a.attempt,
        type: a.type,
        uri: a.uri,
        step: a.step ?? null,
        bytes: a.bytes ?? null,
        sha256: a.sha256 ?? null,
      })
      .returning(artifactColumns);
    if (!row) throw AppError.internal("insert into job_artifacts returned no row");
    return row;
  });
}

/** A job's artifacts that still exist (retention not yet given them up), oldest first, optionally of one type. */
export function listArtifacts(db: Db, jobId: string, type?: ArtifactType): Promise<JobArtifact[]> {
  return dbCall(async () => {
    if (!isUuid(jobId)) return [];
    const live = and(eq(jobArtifacts.jobId, jobId), isNull(jobArtifacts.deletedAt));
    const where = type === undefined ? live : and(live, eq(jobArtifacts.type, type));
    return db.select(artifactColumns).from(jobArtifacts).where(where).orderBy(asc(jobArtifacts.createdAt), asc(jobArtifacts.id));
  });
}

/** An agent's report of an uploaded object, as the controller records it. */
export interface ArtifactReportRow {
  artifactId: string;
  taskId: string;
  jobId: string;
  attempt: number;
  type: ArtifactType;
  uri: string;
  step: number | null;
  bytes: number;
  sha256: string;
  emergency: boolean;
}

export type ArtifactVerdict =
  | { accepted: true; duplicate: boolean; artifact: JobArtifact; /** Checkpoint manifest URIs retention gave up (deleted_at set): the agent deletes the objects. */ prune: string[] }
  | { accepted: false; reason: string; message: string };

interface ArtifactRow {
  id: string;
  job_id: string;
  attempt: number;
  type: ArtifactType;
  uri: string;
  step: string | number | null;
  bytes: string | number | null;
  sha256: string | null;
  created_at: Date | string;
}

function toArtifact(r: ArtifactRow): JobArtifact {
  return {
    id: r.id,
    jobId: r.job_id,
    attempt: r.attempt,
    type: r.type,
    uri: r.uri,
    step: r.step === null ? null : Number(r.step),
    bytes: r.bytes === null ? null : Number(r.bytes),
    sha256: r.sha256,
    createdAt: r.created_at instanceof Date ? r.created_at : new Date(r.created_at),
  };
}


/**
 * Records an agent's artifact report, fenced by attempt: the job's row is
 * locked (FOR SHARE, so a concurrent transition waits or is waited for), and
 * the report is refused unless its attempt is the job's current attempt and
 * its task is that attempt's task on the reporting node. An older attempt —
 * an agent that was partitioned and came back — can therefore never add a
 * checkpoint the next attempt would resume from. Idempotent on the agent's
 * artifact id (a resend is `duplicate`).
 *
 * Retention runs in the same transaction: of the job's live checkpoints
 * (all attempts), the newest `checkpoint.keep` by step stay; the rest get
 * `deleted_at` and their URIs are returned for the agent to delete.
 */
export function recordArtifactReport(db: Db, nodeId: string, r: ArtifactReportRow): Promise<ArtifactVerdict> {
  return dbCall(() =>
    db.transaction(async (tx) => {
      if (!isUuid(r.jobId)) return { accepted: false, reason: "job_unknown", message: `job ${r.jobId} does not exist` };
      const [job] = await sqlRows<{ attempt: number; status: string; keep: number | null }>(
        tx,
        sql`SELECT attempt, status, (spec->'checkpoint'->>'keep')::int AS keep FROM jobs WHERE id = ${r.jobId}::uuid FOR SHARE`,
      );
      if (!job) return { accepted: false, reason: "job_unknown", message: `job ${r.jobId} does not exist` };
      // A resend of a report already recorded (its ack was lost) is a duplicate, whatever the job did since:
      // refusing it would make the agent delete a checkpoint the next attempt resumes from.
      const [known] = await sqlRows<ArtifactRow>(tx, sql`SELECT id, job_id, attempt, type, uri, step, bytes, sha256, created_at FROM job_artifacts WHERE id = ${r.artifactId}::uuid`);
      if (known) {
        if (known.job_id !== r.jobId) return { accepted: false, reason: "artifact_id_taken", message: `artifact id ${r.artifactId} belongs to another job` };
        return { accepted: true, duplicate: true, artifact: toArtifact(known), prune: [] };
      }
      if (r.attempt !== job.attempt) {
        return { accepted: false, reason: "stale_attempt", message: `attempt ${r.attempt} of job ${r.jobId} is over; the job is at attempt ${job.attempt}` };
      }
      if (!isUuid(r.taskId)) return { accepted: false, reason: "task_unknown", message: `task ${r.taskId} is not a task of this attempt on this node` };
      const [task] = await sqlRows<{ id: string }>(
        tx,
        sql`SELECT id FROM tasks WHERE id = ${r.taskId}::uuid AND job_id = ${r.jobId}::uuid AND attempt = ${r.attempt} AND node_id = ${nodeId}::uuid`,
      );
      if (!task) return { accepted: false, reason: "task_unknown", message: `task ${r.taskId} is not attempt ${r.attempt}'s task on this node` };
      const inserted = await sqlRows<ArtifactRow>(
        tx,
        sql`INSERT INTO job_artifacts (id, job_id, attempt, type, uri, step, bytes, sha256, task_id, emergency)
            VALUES (${r.artifactId}::uuid, ${r.jobId}::uuid, ${r.attempt}, ${r.type}, ${r.uri}, ${r.step}, ${r.bytes}, ${r.sha256}, ${r.taskId}::uuid, ${r.emergency})
            ON CONFLICT (id) DO NOTHING
            RETURNING id, job_id, attempt, type, uri, step, bytes, sha256, created_at`,
      );
      let row = inserted[0];
      const duplicate = row === undefined;
      if (!row) {
        [row] = await sqlRows<ArtifactRow>(tx, sql`SELECT id, job_id, attempt, type, uri, step, bytes, sha256, created_at FROM job_artifacts WHERE id = ${r.artifactId}::uuid`);
        if (!row || row.job_id !== r.jobId) return { accepted: false, reason: "artifact_id_taken", message: `artifact id ${r.artifactId} belongs to another job` };
      }
      let prune: string[] = [];
      if (r.type === "checkpoint" && !duplicate) {
        const keep = Math.max(1, job.keep ?? 3);
        const doomed = await sqlRows<{ uri: string }>(
          tx,
          sql`UPDATE job_artifacts SET deleted_at = now()
              WHERE id IN (
                SELECT id FROM job_artifacts
                WHERE job_id = ${r.jobId}::uuid AND type = 'checkpoint' AND deleted_at IS NULL
                ORDER BY step DESC, attempt DESC, created_at DESC, id DESC
                OFFSET ${keep})
              RETURNING uri`,
        );
        prune = doomed.map((d) => d.uri);
      }
      return { accepted: true, duplicate, artifact: toArtifact(row), prune };
    }),
  );
}

/** The checkpoint a new attempt resumes from: the job's live checkpoint with the highest step (newest attempt on ties), or null. */
export function latestCheckpoint(db: Db, jobId: string): Promise<JobArtifact | null> {
  return dbCall(async () => {
    if (!isUuid(jobId)) return null;
    const [row] = await sqlRows<ArtifactRow>(
      db,
      sql`SELECT id, job_id, attempt, type, uri, step, bytes, sha256, created_at FROM job_artifacts
          WHERE job_id = ${jobId}::uuid AND type = 'checkpoint' AND deleted_at IS NULL AND sha256 IS NOT NULL
          ORDER BY step DESC, attempt DESC, created_at DESC, id DESC LIMIT 1`,
    );
    return row ? toArtifact(row) : null;
  });
}

/** The newest checkpoint step per job among `jobIds` (live ones), for progress and lost-work figures. */
export function latestCheckpointSteps(db: Db, jobIds: readonly string[]): Promise<Map<string, number>> {
  return dbCall(async () => {
    const ids = jobIds.filter(isUuid);
    if (ids.length === 0) return new Map();
    const r = await sqlRows<{ job_id: string; step: string | number }>(
      db,
      sql`SELECT job_id, max(step) AS step FROM job_artifacts
          WHERE job_id = ANY(${`{${ids.join(",")}}`}::uuid[]) AND type = 'checkpoint' AND deleted_at IS NULL GROUP BY job_id`,
    );
    return new Map(r.map((x) => [x.job_id, Number(x.step)]));
  });
}
