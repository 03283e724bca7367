import { AppError } from "@gpuorch/core";
import { type JobClient, type LogLineView, jobLogLineFromProto, jobLogLineToJson } from "@gpuorch/rpc";

export interface LogsOptions {
  jobId: string;
  follow: boolean;
  rank: number | undefined;
  /** 0: every stored line. */
  tail: number;
  /** 0: every attempt. */
  attempt: number;
  json: boolean;
}

export interface LogsFlags {
  follow?: boolean | undefined;
  rank?: string | undefined;
  tail?: string | undefined;
  attempt?: string | undefined;
  json?: boolean | undefined;
}

/** Validates `gpuorch logs` flags before any connection is made; INVALID_ARGUMENT (exit 2) names the flag. */
export function parseLogsOptions(jobId: string | undefined, flags: LogsFlags): LogsOptions {
  if (!jobId) throw AppError.invalid("missing JOB: gpuorch logs JOB [-f] [--rank N] [--tail N] [--attempt N]", [{ field: "JOB", message: "required" }]);
  return {
    jobId,
    follow: flags.follow ?? false,
    rank: flags.rank === undefined ? undefined : nonNegative(flags.rank, "rank"),
    tail: flags.tail === undefined ? 0 : nonNegative(flags.tail, "tail"),
    attempt: flags.attempt === undefined ? 0 : positive(flags.attempt, "attempt"),
    json: flags.json ?? false,
  };
}

function nonNegative(v: string, name: string): number {
  if (!/^\d{1,9}$/.test(v)) throw AppError.invalid(`--${name} must be a non-negative integer, got '${v}'`, [{ field: name, message: "expected an integer ≥ 0" }]);
  return Number(v);
}

function positive(v: string, name: string): number {
  const n = nonNegative(v, name);
  if (n < 1) throw AppError.invalid(`--${name} must be a positive integer, got '${v}'`, [{ field: name, message: "expected an integer ≥ 1" }]);
  return n;
}

/** `[rank N] text`; gpuorch's own lines (markers) as `[gpuorch] …`, stderr lines flagged. */
export function formatLogLine(l: LogLineView): string {
  if (l.stream === "system") return l.text.startsWith("[gpuorch]") ? l.text : `[gpuorch] ${l.text}`;
  return `[rank ${l.rank}]${l.stream === "stderr" ? " (stderr)" : ""} ${l.text}`;
}

/**
 * Prints a job's logs; with `follow`, until the job is terminal. Exit code
 * 0 however the job ended (logs report output, not success); 130 when
 * `signal` (Ctrl-C) stopped a follow.
 */
export async function printLogs(client: Pick<JobClient, "getJobLogs">, opts: LogsOptions, write: (s: string) => void, signal?: AbortSignal): Promise<number> {
  let attempt: number | null = null;
  const req = {
    jobId: opts.jobId,
    tail: opts.tail,
    attempt: opts.attempt,
    follow: opts.follow,
    ...(opts.rank !== undefined ? { rank: opts.rank } : {}),
  };
  for await (const msg of client.getJobLogs(req, signal)) {
    const out: string[] = [];
    for (const p of msg.lines) {
      const l = jobLogLineFromProto(p);
      if (opts.json) {
        out.push(JSON.stringify(jobLogLineToJson(l)));
        continue;
      }
      // A new attempt is a restart of the whole job: make the boundary visible.
      if (attempt !== null && l.attempt !== attempt) out.push(`[gpuorch] --- attempt ${l.attempt} ---`);
      attempt = l.attempt;
      out.push(formatLogLine(l));
    }
    if (out.length > 0) write(out.join("\n") + "\n");
  }
  return signal?.aborted ? 130 : 0;
}
