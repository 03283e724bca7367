import { AppError, type Job } from "@gpuorch/core";
import { dbCall, toDbAppError } from "./db-errors.js";
import { type NewJobInput, insertJob } from "./jobs.js";
import { findByIdempotencyKeys, insertJobRows } from "./job-insert-statement.js";
import type { Db } from "./open.js";

/** One submission's outcome in a batch: its own job, or its own error. */
export type InsertJobOutcome = { ok: true; job: Job; deduplicated: boolean } | { ok: false; error: AppError };

/** The most rows one statement takes; larger batches are split. */
export const MAX_INSERT_BATCH = 256;

/**
 * Many submissions in ONE statement (one round trip, one commit; see
 * job-insert-statement.ts). The controller batches concurrent submits through
 * this (group commit); under load that divides the per-job database and
 * driver cost by the batch size.
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
    rows = await dbCall(() => insertJobRows(db, inputs));
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

async function insertOne(db: Db, input: NewJobInput): Promise<InsertJobOutcome> {
  try {
    return { ok: true, ...(await insertJob(db, input)) };
  } catch (e) {
    return { ok: false, error: toDbAppError(e) };
  }
}
