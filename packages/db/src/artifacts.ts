import { AppError, type ArtifactType, type JobArtifact } from "@gpuorch/core";
import { and, asc, eq, getTableColumns } from "drizzle-orm";
import { dbCall } from "./db-errors.js";
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

/** A job's artifacts, oldest first, optionally of one type. */
export function listArtifacts(db: Db, jobId: string, type?: ArtifactType): Promise<JobArtifact[]> {
  return dbCall(async () => {
    if (!isUuid(jobId)) return [];
    const where = type === undefined ? eq(jobArtifacts.jobId, jobId) : and(eq(jobArtifacts.jobId, jobId), eq(jobArtifacts.type, type));
    return db.select(artifactColumns).from(jobArtifacts).where(where).orderBy(asc(jobArtifacts.createdAt), asc(jobArtifacts.id));
  });
}
