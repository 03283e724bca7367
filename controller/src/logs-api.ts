import { AppError, type Job, type Principal, isTerminal, readScope } from "@gpuorch/core";
import { type Database, type StoredJobLogLine, getJob, readJobLogs } from "@gpuorch/db";
import type { Logger } from "@gpuorch/runtime";
import type { JobNotifier } from "./job-notifier.js";
import type { LogStore } from "./log-store.js";

export interface LogsQuery {
  jobId: string;
  /** Only this rank's lines (system lines always pass). */
  rank?: number | undefined;
  /** Only this attempt (absent or 0: every attempt). */
  attempt?: number | undefined;
  /** Only the last N stored lines (0: all); applied before following. */
  tail?: number | undefined;
  /** Only lines with seq > afterSeq (resume). */
  afterSeq?: number | undefined;
  follow?: boolean | undefined;
}

export interface LogsApiDeps {
  db: Database["db"];
  logs: LogStore;
  notifier: JobNotifier;
  logger: Logger;
  /** How often a follower re-reads the job's status when nothing woke it; default 1 s. */
  pollMs?: number;
  /** Lines per database read (and per yielded batch); default 1000. */
  pageLines?: number;
  /**
   * Once the job is terminal and its buffered lines are written, a follower
   * waits this long for lines still on their way from other nodes before it
   * ends; default 500 ms.
   */
  lingerMs?: number;
}

/** Largest page an HTTP caller may ask for. */
export const MAX_LOG_PAGE = 10_000;

/**
 * `gpuorch logs` independent of transport: validation, team scoping (a job
 * of another team is NOT_FOUND, as in GetJob), reading stored lines and
 * following new ones. gRPC GetJobLogs and HTTP GET /v1/jobs/{id}/logs are
 * thin adapters over it.
 */
export class LogsApi {
  private readonly pollMs: number;
  private readonly pageLines: number;
  private readonly lingerMs: number;

  constructor(private readonly deps: LogsApiDeps) {
    this.pollMs = deps.pollMs ?? 1000;
    this.pageLines = deps.pageLines ?? 1000;
    this.lingerMs = deps.lingerMs ?? 500;
  }

  /**
   * The job's stored lines as batches in ascending seq (tail/after_seq
   * applied); with `follow`, then new lines as they are written, ending once
   * the job is terminal, nothing of it is still buffered here, and a short
   * linger passed. Ends early (quietly) when `signal` aborts.
   */
  async *read(principal: Principal, q: LogsQuery, signal: AbortSignal): AsyncGenerator<StoredJobLogLine[]> {
    validate(q);
    const job = await this.job(principal, q.jobId);
    const cursor = { after: q.afterSeq ?? 0, tail: q.tail && q.tail > 0 ? q.tail : undefined };
    if (!q.follow) {
      yield* this.drain(job.id, q, cursor, signal);
      return;
    }
    // Subscribe before the first read, so a write between that read and the first wait still wakes us.
    let dirty = false;
    let wake: (() => void) | null = null;
    const unsubscribe = this.deps.logs.subscribe(job.id, () => {
      dirty = true;
      wake?.();
    });
    const sleep = async (ms: number): Promise<void> => {
      if (dirty || signal.aborted) {
        dirty = false;
        return;
      }
      const stop = new AbortController();
      const woken = new Promise<void>((resolve) => (wake = resolve));
      // The notifier wakes us on status changes made by this process (cancel); the timeout covers the rest.
      await Promise.race([woken, this.deps.notifier.wait(job.id, ms, AbortSignal.any([signal, stop.signal]))]);
      wake = null;
      stop.abort();
      dirty = false;
    };
    try {
      let lingered = false;
      while (!signal.aborted) {
        // Decide "done" before reading: whatever was written before the job ended is then read below.
        const current = await this.job(principal, job.id);
        const done = isTerminal(current.status) && !this.deps.logs.hasPending(job.id);
        yield* this.drain(job.id, q, cursor, signal);
        if (done) {
          if (lingered || this.lingerMs <= 0) return;
          lingered = true;
          await sleep(this.lingerMs);
          continue;
        }
        await sleep(this.pollMs);
      }
    } finally {
      unsubscribe();
    }
  }

  /** One page for HTTP: at most `limit` lines and the `after_seq` to ask for the next page (null: this was the last). */
  async page(principal: Principal, q: Omit<LogsQuery, "follow">, limit: number): Promise<{ lines: StoredJobLogLine[]; nextAfterSeq: number | null }> {
    validate(q);
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LOG_PAGE) {
      throw AppError.invalid(`limit must be between 1 and ${MAX_LOG_PAGE}`, [{ field: "limit", message: `expected 1..${MAX_LOG_PAGE}` }]);
    }
    const job = await this.job(principal, q.jobId);
    const lines = await readJobLogs(this.deps.db, { ...filter(job.id, q), afterSeq: q.afterSeq ?? 0, ...(q.tail ? { tail: q.tail } : {}), limit });
    return { lines, nextAfterSeq: lines.length === limit ? lines[lines.length - 1]!.seq : null };
  }

  private async *drain(jobId: string, q: LogsQuery, cursor: { after: number; tail: number | undefined }, signal: AbortSignal): AsyncGenerator<StoredJobLogLine[]> {
    while (!signal.aborted) {
      const lines = await readJobLogs(this.deps.db, {
        ...filter(jobId, q),
        afterSeq: cursor.after,
        ...(cursor.tail !== undefined ? { tail: cursor.tail } : {}),
        limit: this.pageLines,
      });
      // The tail picks where reading starts; every later page simply continues from there.
      cursor.tail = undefined;
      const last = lines[lines.length - 1];
      if (!last) return;
      cursor.after = last.seq;
      yield lines;
      if (lines.length < this.pageLines) return;
    }
  }

  private async job(principal: Principal, id: string): Promise<Job> {
    const job = await getJob(this.deps.db, id, readScope(principal));
    if (!job) throw AppError.notFound("Job", id);
    return job;
  }
}

function filter(jobId: string, q: Pick<LogsQuery, "rank" | "attempt">): { jobId: string; rank?: number; attempt?: number } {
  return { jobId, ...(q.rank !== undefined ? { rank: q.rank } : {}), ...(q.attempt ? { attempt: q.attempt } : {}) };
}

function validate(q: Omit<LogsQuery, "follow">): void {
  const check = (v: number | undefined, field: string): void => {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
      throw AppError.invalid(`${field} must be a non-negative integer, got ${v}`, [{ field, message: "expected an integer ≥ 0" }]);
    }
  };
  check(q.tail, "tail");
  check(q.rank, "rank");
  check(q.attempt, "attempt");
  check(q.afterSeq, "after_seq");
  if (!q.jobId) throw AppError.invalid("job_id is required", [{ field: "job_id", message: "required" }]);
}
