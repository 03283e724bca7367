import { AppError } from "@gpuorch/core";
import { and, asc, desc, eq, gt, or, type SQL, sql } from "drizzle-orm";
import { dbCall } from "./db-errors.js";
import type { Db } from "./open.js";
import { isUuid } from "./page-token.js";
import { jobLogs } from "./schema.js";

export const LOG_STREAMS = ["stdout", "stderr", "system"] as const;
export type LogStream = (typeof LOG_STREAMS)[number];

/** One line of a job's output, as an agent (or the controller, for `system` lines) produced it. */
export interface NewJobLogLine {
  jobId: string;
  attempt: number;
  /** Global rank when the line carried torchrun's rank tag; otherwise the node rank. */
  rank: number;
  nodeRank: number;
  stream: LogStream;
  text: string;
  at: Date;
}

/** A stored line: `seq` orders a job's lines (increasing, not contiguous: the sequence is shared by all jobs). */
export interface StoredJobLogLine extends NewJobLogLine {
  seq: number;
}

export interface AppendJobLogsOptions {
  /** Lines kept per job (the drop marker not counted); older ones are deleted. */
  maxLinesPerJob: number;
}

export interface AppendJobLogsOutcome {
  /** Lines written. */
  inserted: number;
  /** Job ids that do not exist (or are not UUIDs): their lines were skipped. */
  unknownJobs: string[];
  /** Jobs that went over the bound in this call, with how many of their lines were dropped now. */
  trimmed: { jobId: string; dropped: number; droppedTotal: number }[];
}

export interface JobLogsQuery {
  jobId: string;
  /** Only lines with seq greater than this (default 0). */
  afterSeq?: number;
  /** Only this rank's lines; `system` lines (markers) pass regardless. */
  rank?: number;
  /** Only this attempt's lines. */
  attempt?: number;
  /** Only the last N matching lines (0 or absent: all). */
  tail?: number;
  /** At most this many lines, oldest first (with `tail`: the first of the tail window). */
  limit: number;
}

/** The marker text that replaces a job's dropped lines. */
export function droppedLinesMarker(droppedTotal: number, maxLinesPerJob: number): string {
  return `[gpuorch] ${droppedTotal} older lines dropped (limit ${maxLinesPerJob} per job)`;
}

// A lone UTF-16 surrogate: jsonb (and UTF-8) cannot hold one.
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** What PostgreSQL text can hold: no NUL bytes, no lone surrogates (both become U+FFFD). */
export function storableLogText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u0000/g, "\uFFFD").replace(LONE_SURROGATE, "\uFFFD");
}

const isInt32 = (n: number): boolean => Number.isInteger(n) && n >= -2_147_483_648 && n <= 2_147_483_647;

/**
 * Stores many jobs' lines at once and keeps every job within
 * `maxLinesPerJob`. One transaction, at most three statements whatever the
 * number of lines or jobs:
 *
 * 1. the jobs' `job_log_stats` rows are upserted (counter += new lines) in
 *    job id order, which locks them: appends for one job serialize, so its
 *    line ids commit in increasing order and a follower reading
 *    `seq > last` never skips a line committed late;
 * 2. one INSERT … SELECT of every line, in input order;
 * 3. only for jobs now over the bound: their oldest lines are deleted in one
 *    statement; the newest deleted line is rewritten into the job's single
 *    `system` marker ("N older lines dropped"), which therefore keeps a seq
 *    below every kept line, and the previous marker goes.
 *
 * Lines of unknown jobs are skipped (reported in `unknownJobs`), so one bad
 * id never fails the batch. The counters make the bound cheap: nothing counts
 * a job's rows.
 */
export async function appendJobLogs(db: Db, lines: readonly NewJobLogLine[], opts: AppendJobLogsOptions): Promise<AppendJobLogsOutcome> {
  const max = opts.maxLinesPerJob;
  if (!Number.isSafeInteger(max) || max < 1) {
    throw AppError.invalid(`maxLinesPerJob must be a positive integer, got ${max}`, [{ field: "maxLinesPerJob", message: "expected an integer ≥ 1" }]);
  }
  const perJob = new Map<string, number>();
  const unknown = new Set<string>();
  for (const l of lines) {
    if (!(LOG_STREAMS as readonly string[]).includes(l.stream)) {
      throw AppError.invalid(`log stream must be one of ${LOG_STREAMS.join(", ")}, got '${l.stream}'`, [{ field: "stream", message: "unknown stream" }]);
    }
    if (!isInt32(l.attempt) || !isInt32(l.rank) || !isInt32(l.nodeRank) || Number.isNaN(l.at.getTime())) {
      throw AppError.invalid(`log line of job ${l.jobId} has an invalid attempt, rank, node rank or time`, [{ field: "lines", message: "invalid line" }]);
    }
    if (isUuid(l.jobId)) perJob.set(l.jobId.toLowerCase(), (perJob.get(l.jobId.toLowerCase()) ?? 0) + 1);
    else unknown.add(l.jobId);
  }
  if (perJob.size === 0) return { inserted: 0, unknownJobs: [...unknown], trimmed: [] };

  return dbCall(() =>
    db.transaction(async (tx) => {
      const counts = JSON.stringify([...perJob].map(([jobId, n]) => ({ job_id: jobId, n })));
      const stats = (await tx.execute(sql`
        INSERT INTO job_log_stats AS s (job_id, lines)
        SELECT c.job_id, c.n
        FROM jsonb_to_recordset(${counts}::jsonb) AS c(job_id uuid, n bigint)
        JOIN jobs ON jobs.id = c.job_id
        ORDER BY c.job_id
        ON CONFLICT (job_id) DO UPDATE SET lines = s.lines + excluded.lines
        RETURNING s.job_id, s.lines::text AS lines, s.dropped::text AS dropped, s.marker_seq::text AS marker_seq`)) as unknown as {
        rows: { job_id: string; lines: string; dropped: string; marker_seq: string | null }[];
      };
      const known = new Set(stats.rows.map((r) => r.job_id));
      for (const id of perJob.keys()) if (!known.has(id)) unknown.add(id);

      const payload = JSON.stringify(
        lines.flatMap((l, i) =>
          known.has(l.jobId.toLowerCase())
            ? [{ i, job_id: l.jobId, attempt: l.attempt, rank: l.rank, node_rank: l.nodeRank, stream: l.stream, text: storableLogText(l.text), at: l.at.toISOString() }]
            : [],
        ),
      );
      const inserted = (await tx.execute(sql`
        INSERT INTO job_logs (job_id, attempt, rank, node_rank, stream, text, at)
        SELECT l.job_id, l.attempt, l.rank, l.node_rank, l.stream, l.text, l.at
        FROM jsonb_to_recordset(${payload}::jsonb)
          AS l(i int, job_id uuid, attempt int, rank int, node_rank int, stream text, text text, at timestamptz)
        ORDER BY l.i`)) as unknown as { rowCount?: number | null; affectedRows?: number };

      const over = stats.rows
        .filter((r) => Number(r.lines) > max)
        .map((r) => ({ job_id: r.job_id, excess: Number(r.lines) - max, dropped: Number(r.dropped), marker_seq: r.marker_seq === null ? null : Number(r.marker_seq) }));
      let trimmed: AppendJobLogsOutcome["trimmed"] = [];
      if (over.length > 0) trimmed = await trim(tx, over, max);
      return {
        inserted: Number(inserted.rowCount ?? inserted.affectedRows ?? 0),
        unknownJobs: [...unknown],
        trimmed,
      };
    }),
  );
}

async function trim(
  tx: Db,
  over: { job_id: string; excess: number; dropped: number; marker_seq: number | null }[],
  max: number,
): Promise<AppendJobLogsOutcome["trimmed"]> {
  const res = (await tx.execute(sql`
    WITH over AS (
      SELECT * FROM jsonb_to_recordset(${JSON.stringify(over)}::jsonb) AS o(job_id uuid, excess bigint, dropped bigint, marker_seq bigint)
    ),
    victims AS (
      SELECT v.id, v.job_id, row_number() OVER (PARTITION BY v.job_id ORDER BY v.id DESC) AS newest_first
      FROM over o CROSS JOIN LATERAL (
        SELECT l.id, l.job_id FROM job_logs l
        WHERE l.job_id = o.job_id AND l.id IS DISTINCT FROM o.marker_seq
        ORDER BY l.id
        LIMIT o.excess
      ) v
    ),
    counted AS (
      SELECT job_id, count(*)::bigint AS n FROM victims GROUP BY job_id
    ),
    marker AS (
      UPDATE job_logs SET
        stream = 'system',
        text = '[gpuorch] ' || (o.dropped + c.n)::text || ' older lines dropped (limit ' || ${max}::bigint::text || ' per job)'
      FROM victims v
      JOIN over o ON o.job_id = v.job_id
      JOIN counted c ON c.job_id = v.job_id
      WHERE job_logs.id = v.id AND v.newest_first = 1
      RETURNING job_logs.job_id, job_logs.id
    ),
    gone AS (
      DELETE FROM job_logs
      WHERE id IN (SELECT id FROM victims WHERE newest_first > 1 UNION ALL SELECT marker_seq FROM over WHERE marker_seq IS NOT NULL)
      RETURNING 1
    )
    UPDATE job_log_stats s SET
      lines = s.lines - c.n,
      dropped = s.dropped + c.n,
      marker_seq = m.id
    FROM counted c JOIN marker m ON m.job_id = c.job_id
    WHERE s.job_id = c.job_id
    RETURNING s.job_id, c.n::text AS n, s.dropped::text AS dropped`)) as unknown as { rows: { job_id: string; n: string; dropped: string }[] };
  return res.rows.map((r) => ({ jobId: r.job_id, dropped: Number(r.n), droppedTotal: Number(r.dropped) }));
}

const COLUMNS = {
  seq: jobLogs.id,
  jobId: jobLogs.jobId,
  attempt: jobLogs.attempt,
  rank: jobLogs.rank,
  nodeRank: jobLogs.nodeRank,
  stream: jobLogs.stream,
  text: jobLogs.text,
  at: jobLogs.at,
};

/**
 * A job's stored lines in ascending seq: those after `afterSeq`, of `rank`
 * (plus every `system` line) and `attempt` when given; with `tail`, only the
 * last `tail` of them. At most `limit` lines: page on with `afterSeq` = the
 * last seq returned (and no `tail`).
 */
export function readJobLogs(db: Db, q: JobLogsQuery): Promise<StoredJobLogLine[]> {
  return dbCall(async () => {
    if (!isUuid(q.jobId) || q.limit < 1) return [];
    const conds: SQL[] = [eq(jobLogs.jobId, q.jobId)];
    if (q.afterSeq !== undefined && q.afterSeq > 0) conds.push(gt(jobLogs.id, q.afterSeq));
    if (q.rank !== undefined) conds.push(or(eq(jobLogs.rank, q.rank), eq(jobLogs.stream, "system"))!);
    if (q.attempt !== undefined) conds.push(eq(jobLogs.attempt, q.attempt));
    const where = and(...conds);
    let rows: (Omit<StoredJobLogLine, "stream"> & { stream: string })[];
    if (q.tail !== undefined && q.tail > 0) {
      const window = db.select(COLUMNS).from(jobLogs).where(where).orderBy(desc(jobLogs.id)).limit(q.tail).as("tail_window");
      rows = await db.select().from(window).orderBy(asc(window.seq)).limit(q.limit);
    } else {
      rows = await db.select(COLUMNS).from(jobLogs).where(where).orderBy(asc(jobLogs.id)).limit(q.limit);
    }
    return rows.map((r) => ({ ...r, seq: Number(r.seq), stream: r.stream as LogStream }));
  });
}
