import { type Clock, type TaskLogChunk, isAppError, isRetryable } from "@gpuorch/core";
import { type AppendJobLogsOutcome, type Database, type NewJobLogLine, appendJobLogs } from "@gpuorch/db";
import type { Logger } from "@gpuorch/runtime";

export interface LogStoreDeps {
  db: Database["db"];
  clock: Clock;
  logger: Logger;
  /** How often buffered lines are written (group commit); default 200 ms. */
  flushIntervalMs?: number;
  /** Lines per statement; a buffer holding this many is written at once, without waiting for the timer. Default 2000. */
  flushLines?: number;
  /**
   * Memory bound of the buffer (approximate bytes: UTF-16 text plus a
   * per-line overhead); default 32 MiB. When the database is down or slower
   * than the agents, the oldest buffered lines are dropped and a marker line
   * says how many.
   */
  maxBufferedBytes?: number;
  /** Longer lines are cut to this many UTF-8 bytes, with a note; default 16 KiB. */
  maxLineBytes?: number;
  /** Lines kept per job in the database (oldest dropped with a marker); default 100 000. */
  maxLinesPerJob?: number;
  /** Retries after a failed flush back off up to this delay; default 5 s. */
  maxRetryDelayMs?: number;
  /** After each successful write: lines written, seconds taken. */
  onFlush?: (lines: number, seconds: number) => void;
  /** Lines given up: `buffer_full` (memory bound), `write_failed` (a batch the database kept refusing). */
  onDropped?: (lines: number, reason: "buffer_full" | "write_failed") => void;
  /** The batched write; default `appendJobLogs` (tests inject failures). */
  write?: typeof appendJobLogs;
}

export type LogStoreState = "idle" | "running" | "stopped";

interface Entry {
  line: NewJobLogLine;
  cost: number;
}

interface DropCount {
  jobId: string;
  attempt: number;
  nodeRank: number;
  rank: number;
  count: number;
  at: Date;
}

const LINE_OVERHEAD = 96;
/** A non-retryable write error drops its batch after this many tries, so one poisoned batch cannot stall every job's logs. */
const MAX_TRIES_NON_RETRYABLE = 3;
const MAX_WARNED_UNKNOWN = 1000;

/**
 * Job output from the agents, written to `job_logs` by group commit: every
 * `append` only buffers; every `flushIntervalMs` (or as soon as `flushLines`
 * are buffered) one `appendJobLogs` call writes up to `flushLines` lines of
 * any number of jobs in one transaction. A failed write keeps its lines at
 * the head of the buffer and is retried with backoff; the buffer is bounded
 * (`maxBufferedBytes`), dropping the oldest lines and recording a
 * `system` marker per job attempt and node. `subscribe` tells followers
 * (`gpuorch logs -f`) when a job's lines are durably written.
 *
 * States: `idle` (constructed) → `running` (start: the flush timer runs) →
 * `stopped` (stop: timer cleared, a last flush written). `append` works in
 * every state; after stop nothing flushes it.
 */
export class LogStore {
  private buf: Entry[] = [];
  private head = 0;
  private bufferedBytes = 0;
  /** Lines dropped from the buffer and not yet reported by a marker, per job/attempt/node. */
  private drops = new Map<string, DropCount>();
  /** Lines buffered or in flight, per job: a follower waits for this to reach 0 before it ends. */
  private readonly pendingPerJob = new Map<string, number>();
  private readonly listeners = new Map<string, Set<() => void>>();
  private readonly warnedUnknown = new Set<string>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inFlight: Promise<boolean> | null = null;
  private failures = 0;
  private currentState: LogStoreState = "idle";
  private readonly flushIntervalMs: number;
  private readonly flushLines: number;
  private readonly maxBufferedBytes: number;
  private readonly maxLineBytes: number;
  private readonly maxLinesPerJob: number;
  private readonly maxRetryDelayMs: number;

  constructor(private readonly deps: LogStoreDeps) {
    this.flushIntervalMs = deps.flushIntervalMs ?? 200;
    this.flushLines = deps.flushLines ?? 2000;
    this.maxBufferedBytes = deps.maxBufferedBytes ?? 32 * 1024 * 1024;
    this.maxLineBytes = deps.maxLineBytes ?? 16 * 1024;
    this.maxLinesPerJob = deps.maxLinesPerJob ?? 100_000;
    this.maxRetryDelayMs = deps.maxRetryDelayMs ?? 5_000;
  }

  get state(): LogStoreState {
    return this.currentState;
  }

  /** Lines buffered and not yet handed to a write. */
  get bufferedLines(): number {
    return this.buf.length - this.head;
  }

  /** True while lines of `jobId` are buffered, in flight, or owed a dropped-lines marker. */
  hasPending(jobId: string): boolean {
    return (this.pendingPerJob.get(jobId) ?? 0) > 0;
  }

  /** Buffers one agent chunk. Never blocks and never throws; invalid chunks are logged and dropped. */
  append(chunk: TaskLogChunk): void {
    if (!chunk.jobId || !Number.isInteger(chunk.attempt) || !Number.isInteger(chunk.nodeRank)) {
      this.deps.logger.warn({ jobId: chunk.jobId, taskId: chunk.taskId, attempt: chunk.attempt }, "log chunk without a valid job, attempt or node rank; dropped");
      return;
    }
    if (chunk.lines.length === 0) return;
    for (const l of chunk.lines) {
      const text = this.capLine(l.text);
      const entry: Entry = {
        line: {
          jobId: chunk.jobId,
          attempt: chunk.attempt,
          rank: Number.isInteger(l.rank) ? l.rank : chunk.nodeRank,
          nodeRank: chunk.nodeRank,
          stream: l.stream === "stderr" ? "stderr" : "stdout",
          text,
          at: l.at instanceof Date && !Number.isNaN(l.at.getTime()) ? l.at : this.deps.clock.now(),
        },
        cost: text.length * 2 + LINE_OVERHEAD,
      };
      this.buf.push(entry);
      this.bufferedBytes += entry.cost;
      this.addPending(chunk.jobId, 1);
    }
    this.enforceBound();
    if (this.currentState === "running" && this.bufferedLines >= this.flushLines && !this.inFlight) this.flushInBackground();
  }

  /** Calls `listener` each time lines of `jobId` were durably written. Returns the unsubscribe function. */
  subscribe(jobId: string, listener: () => void): () => void {
    let set = this.listeners.get(jobId);
    if (!set) {
      set = new Set();
      this.listeners.set(jobId, set);
    }
    set.add(listener);
    return () => {
      const s = this.listeners.get(jobId);
      if (!s) return;
      s.delete(listener);
      if (s.size === 0) this.listeners.delete(jobId);
    };
  }

  get subscriberCount(): number {
    let n = 0;
    for (const s of this.listeners.values()) n += s.size;
    return n;
  }

  start(): void {
    if (this.currentState !== "idle") return;
    this.currentState = "running";
    this.schedule();
  }

  async stop(): Promise<void> {
    if (this.currentState === "stopped") return;
    this.currentState = "stopped";
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.flush();
    if (this.bufferedLines > 0 || this.drops.size > 0) {
      this.deps.logger.error({ lines: this.bufferedLines }, "log lines not stored at shutdown (the database did not take them)");
    }
  }

  /**
   * Writes what is buffered now, batch after batch (waits for a write
   * already in flight first). Stops at the first failed write: its lines
   * stay buffered for the next try. Never rejects.
   */
  async flush(): Promise<void> {
    let rounds = Math.ceil(this.bufferedLines / this.flushLines) + 1;
    while (rounds-- > 0) {
      while (this.inFlight) await this.inFlight;
      if (this.bufferedLines === 0 && this.drops.size === 0) return;
      const p = this.writeBatch().finally(() => {
        this.inFlight = null;
      });
      this.inFlight = p;
      if (!(await p)) return;
    }
  }

  private flushInBackground(): void {
    this.flush().catch((err: unknown) => this.deps.logger.error({ err }, "log flush failed unexpectedly"));
  }

  /** Takes one batch off the head of the buffer and writes it; false when the write failed. */
  private async writeBatch(): Promise<boolean> {
    const drops = this.drops;
    this.drops = new Map();
    const n = Math.min(this.bufferedLines, this.flushLines);
    const batch = this.buf.slice(this.head, this.head + n);
    this.head += n;
    let batchBytes = 0;
    for (const e of batch) batchBytes += e.cost;
    this.bufferedBytes -= batchBytes;
    this.compact();
    // The dropped lines were older than anything still buffered: their markers go first.
    const markers: NewJobLogLine[] = [...drops.values()].map((d) => ({
      jobId: d.jobId,
      attempt: d.attempt,
      rank: d.rank,
      nodeRank: d.nodeRank,
      stream: "system",
      text: `[gpuorch] ${d.count} lines of node rank ${d.nodeRank} dropped: the controller could not store them in time (log buffer full)`,
      at: d.at,
    }));
    const lines = [...markers, ...batch.map((e) => e.line)];
    const t0 = performance.now();
    let out: AppendJobLogsOutcome;
    try {
      out = await (this.deps.write ?? appendJobLogs)(this.deps.db, lines, { maxLinesPerJob: this.maxLinesPerJob });
    } catch (err) {
      this.failures++;
      const code = isAppError(err) ? err.code : "INTERNAL";
      if (!isRetryable(code) && this.failures >= MAX_TRIES_NON_RETRYABLE) {
        // Retrying a write the database rejects for its content would stall every job's logs behind it.
        this.deps.logger.error({ err, lines: lines.length, tries: this.failures }, "log batch rejected repeatedly; dropping it");
        for (const l of lines) this.addPending(l.jobId, -1);
        this.deps.onDropped?.(lines.length, "write_failed");
        this.failures = 0;
        return false;
      }
      this.putBack(batch, batchBytes, drops);
      this.deps.logger.error({ err, lines: lines.length, buffered: this.bufferedLines, failures: this.failures }, "log flush failed; will retry");
      return false;
    }
    this.failures = 0;
    this.deps.onFlush?.(out.inserted, (performance.now() - t0) / 1000);
    const jobs = new Set<string>();
    for (const l of lines) {
      this.addPending(l.jobId, -1);
      jobs.add(l.jobId);
    }
    for (const id of out.unknownJobs) {
      if (this.warnedUnknown.has(id)) continue;
      if (this.warnedUnknown.size >= MAX_WARNED_UNKNOWN) this.warnedUnknown.clear();
      this.warnedUnknown.add(id);
      this.deps.logger.warn({ jobId: id }, "log lines for an unknown job; dropped");
    }
    for (const t of out.trimmed) this.deps.logger.debug({ jobId: t.jobId, dropped: t.dropped, droppedTotal: t.droppedTotal }, "job log over its bound; oldest lines dropped");
    for (const id of jobs) this.notify(id);
    return true;
  }

  /** A failed batch goes back to the head of the buffer, in order, with its markers' counts. */
  private putBack(batch: Entry[], batchBytes: number, drops: Map<string, DropCount>): void {
    this.buf = batch.concat(this.buf.slice(this.head));
    this.head = 0;
    this.bufferedBytes += batchBytes;
    for (const [key, d] of drops) {
      const cur = this.drops.get(key);
      if (cur) {
        // Lines dropped meanwhile already owe a marker: one marker for both.
        cur.count += d.count;
        this.addPending(d.jobId, -1);
      } else {
        this.drops.set(key, d);
      }
    }
    this.enforceBound();
  }

  private enforceBound(): void {
    let dropped = 0;
    while (this.bufferedBytes > this.maxBufferedBytes && this.bufferedLines > 0) {
      const e = this.buf[this.head]!;
      this.head++;
      this.bufferedBytes -= e.cost;
      const l = e.line;
      const key = `${l.jobId}/${l.attempt}/${l.nodeRank}`;
      const d = this.drops.get(key);
      if (d) {
        d.count++;
        d.at = l.at;
        d.rank = l.rank;
        // The line is gone but its marker is still owed: the job stays pending.
        this.addPending(l.jobId, -1);
      } else {
        // This line's pending count now stands for the marker.
        this.drops.set(key, { jobId: l.jobId, attempt: l.attempt, nodeRank: l.nodeRank, rank: l.rank, count: 1, at: l.at });
      }
      dropped++;
    }
    if (dropped > 0) {
      this.compact();
      this.deps.onDropped?.(dropped, "buffer_full");
    }
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.buf.length) {
      this.buf = this.buf.slice(this.head);
      this.head = 0;
    } else if (this.head === this.buf.length) {
      this.buf = [];
      this.head = 0;
    }
  }

  private addPending(jobId: string, delta: number): void {
    const n = (this.pendingPerJob.get(jobId) ?? 0) + delta;
    if (n > 0) this.pendingPerJob.set(jobId, n);
    else this.pendingPerJob.delete(jobId);
  }

  private notify(jobId: string): void {
    const set = this.listeners.get(jobId);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener();
      } catch (err) {
        this.deps.logger.error({ err, jobId }, "log subscriber threw");
      }
    }
  }

  /** Cuts a line to maxLineBytes of UTF-8 (never inside a character), saying how long it was. */
  private capLine(text: string): string {
    // A UTF-16 code unit is at most 3 UTF-8 bytes: short strings need no measuring.
    if (text.length * 3 <= this.maxLineBytes) return text;
    const bytes = Buffer.byteLength(text, "utf8");
    if (bytes <= this.maxLineBytes) return text;
    const note = ` …[gpuorch: line truncated, ${bytes} bytes > ${this.maxLineBytes}]`;
    const keep = Math.max(0, this.maxLineBytes - Buffer.byteLength(note, "utf8"));
    return Buffer.from(text, "utf8").subarray(0, keep).toString("utf8").replace(/\uFFFD+$/, "") + note;
  }

  private schedule(): void {
    if (this.currentState !== "running") return;
    const delay = this.failures === 0 ? this.flushIntervalMs : Math.min(this.flushIntervalMs * 2 ** this.failures, this.maxRetryDelayMs);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush()
        .catch((err: unknown) => this.deps.logger.error({ err }, "log flush failed unexpectedly"))
        .finally(() => this.schedule());
    }, delay);
  }
}
