import type { JobEvent } from "@gpuorch/core";
import { and, asc, eq, gt } from "drizzle-orm";
import { dbCall } from "./db-errors.js";
import type { Db } from "./open.js";
import { isUuid } from "./page-token.js";
import { jobEvents } from "./schema.js";

export interface JobEventsQuery {
  /** Only events with seq greater than this (default 0: from the start). */
  afterSeq?: number;
  /** At most this many (default 1000). */
  limit?: number;
}

/** A job's history, oldest first (ascending, gap-free seq). */
export function getJobEvents(db: Db, jobId: string, q: JobEventsQuery = {}): Promise<JobEvent[]> {
  const { afterSeq = 0, limit = 1000 } = q;
  return dbCall(async () => {
    if (!isUuid(jobId)) return [];
    return db
      .select({
        jobId: jobEvents.jobId,
        seq: jobEvents.seq,
        fromStatus: jobEvents.fromStatus,
        toStatus: jobEvents.toStatus,
        attempt: jobEvents.attempt,
        reason: jobEvents.reason,
        actor: jobEvents.actor,
        createdAt: jobEvents.createdAt,
      })
      .from(jobEvents)
      .where(and(eq(jobEvents.jobId, jobId), gt(jobEvents.seq, afterSeq)))
      .orderBy(asc(jobEvents.seq))
      .limit(limit);
  });
}
