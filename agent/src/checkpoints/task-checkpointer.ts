import { existsSync } from "node:fs";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { type AgentArtifactReport, type TaskCheckpointPolicy, toAppError } from "@gpuorch/core";
import { type Logger, sleep } from "@gpuorch/runtime";
import type { ObjectStore } from "@gpuorch/storage";
import { type CheckpointTransferOptions, type LocalCheckpoint, scanCheckpoints, uploadCheckpoint } from "./checkpoints.js";

/**
 * One task's checkpoints, from the job's directory to the object store.
 *
 * The job writes `$GPUORCH_CHECKPOINT_DIR/<step>/…` and creates `COMPLETE`
 * last (checkpoints.ts). Every `pollMs` the checkpointer looks for the
 * newest complete step it has not uploaded, uploads it (files, verified,
 * then the manifest), and reports it as an artifact; older complete steps
 * that were never uploaded are skipped — only the newest matters for a
 * resume. Local copies beyond `keep` are deleted once a newer one is safely
 * in the store. Uploads run one at a time.
 *
 * `requestNow` is the emergency path (spot notice, checkpoint-now command):
 * it writes the trigger file (`$GPUORCH_CHECKPOINT_TRIGGER`), sends SIGUSR1
 * to the job's processes unless the spec chose `trigger: file`, waits until
 * the job has written a newer checkpoint (or consumed the trigger file),
 * uploads it and reports it with `emergency: true`.
 */

export interface TaskCheckpointerDeps {
  policy: TaskCheckpointPolicy;
  jobId: string;
  attempt: number;
  taskId: string;
  nodeRank: number;
  /** `$GPUORCH_CHECKPOINT_DIR` of this task. */
  localDir: string;
  /** `$GPUORCH_CHECKPOINT_TRIGGER` of this task. */
  triggerFile: string;
  store: ObjectStore;
  /** The key prefix `policy.uri` names inside `store`. */
  baseKey: string;
  /** A verified upload, to be reported to the controller (the outbox resends until acked). */
  report: (a: AgentArtifactReport) => void;
  logger: Logger;
  newId: () => string;
  now?: () => Date;
  pollMs?: number;
  transfer?: Omit<CheckpointTransferOptions, "signal" | "onProgress">;
  /** Upload progress (bytes), for logs and benchmarks. */
  onProgress?: (step: number, done: number, total: number) => void;
}

export type CheckpointNowResult = { ok: true; step: number; uploaded: AgentArtifactReport } | { ok: false; message: string };

const DEFAULT_POLL_MS = 1_000;

export class TaskCheckpointer {
  private readonly abort = new AbortController();
  private readonly uploaded = new Map<number, AgentArtifactReport>();
  private chain: Promise<unknown> = Promise.resolve();
  private timer: ReturnType<typeof setInterval> | null = null;
  private failures = 0;
  private signalJob: (() => number) | null = null;

  constructor(private readonly deps: TaskCheckpointerDeps) {}

  /** How to send SIGUSR1 to the job's processes (known once they run); returns how many were signalled. */
  setSignalJob(fn: () => number): void {
    this.signalJob = fn;
  }

  /** The newest step uploaded and reported, or null. */
  get lastUploadedStep(): number | null {
    return this.uploaded.size === 0 ? null : Math.max(...this.uploaded.keys());
  }

  start(): void {
    if (this.timer || this.abort.signal.aborted) return;
    this.timer = setInterval(() => void this.tick().catch(() => {}), this.deps.pollMs ?? DEFAULT_POLL_MS);
  }

  /** One pass, serialized with every other: uploads the newest complete checkpoint if it is new. */
  tick(emergency = false): Promise<AgentArtifactReport | null> {
    const next = this.chain.then(() => this.pass(emergency));
    this.chain = next.catch(() => {});
    return next;
  }

  private async pass(emergency: boolean): Promise<AgentArtifactReport | null> {
    if (this.abort.signal.aborted) return null;
    const all = await scanCheckpoints(this.deps.localDir);
    const newest = all.at(-1);
    if (!newest) return null;
    const last = this.lastUploadedStep;
    if (last !== null && newest.step <= last) return this.uploaded.get(last) ?? null;
    try {
      const report = await this.upload(newest, emergency);
      this.failures = 0;
      await this.cleanLocal(all, newest.step);
      return report;
    } catch (err) {
      this.failures += 1;
      const e = toAppError(err);
      const log = { step: newest.step, jobId: this.deps.jobId, reason: e.reason, failures: this.failures };
      if (this.failures === 1) this.deps.logger.warn({ ...log, err: e.message }, "checkpoint upload failed; retrying at the next poll");
      else this.deps.logger.debug({ ...log, err: e.message }, "checkpoint upload failed again");
      throw e;
    }
  }

  private async upload(ckpt: LocalCheckpoint, emergency: boolean): Promise<AgentArtifactReport> {
    const { deps } = this;
    const started = Date.now();
    const up = await uploadCheckpoint(
      deps.store,
      deps.baseKey,
      ckpt,
      { jobId: deps.jobId, attempt: deps.attempt, now: deps.now?.() ?? new Date() },
      { ...deps.transfer, signal: this.abort.signal, onProgress: (done, total) => deps.onProgress?.(ckpt.step, done, total) },
    );
    const report: AgentArtifactReport = {
      artifactId: deps.newId(),
      taskId: deps.taskId,
      jobId: deps.jobId,
      attempt: deps.attempt,
      nodeRank: deps.nodeRank,
      type: "checkpoint",
      uri: up.uri,
      step: up.step,
      bytes: up.bytes,
      sha256: up.sha256,
      emergency,
    };
    this.uploaded.set(up.step, report);
    deps.logger.info({ jobId: deps.jobId, step: up.step, bytes: up.bytes, ms: Date.now() - started, uri: up.uri, emergency }, "checkpoint uploaded");
    deps.report(report);
    return report;
  }

  /** Keeps the newest `keep` complete local checkpoints once `uploadedStep` is safe in the store; incomplete older dirs (abandoned writes) go too. */
  private async cleanLocal(complete: readonly LocalCheckpoint[], uploadedStep: number): Promise<void> {
    const keep = Math.max(1, this.deps.policy.keep);
    const doomed = complete.filter((c) => c.step < uploadedStep).slice(0, Math.max(0, complete.length - keep));
    for (const c of doomed) await rm(c.dir, { recursive: true, force: true });
    const completeSteps = new Set(complete.map((c) => c.step));
    for (const name of await readdir(this.deps.localDir).catch(() => [] as string[])) {
      if (/^\d{1,15}$/.test(name) && Number(name) < uploadedStep && !completeSteps.has(Number(name))) {
        await rm(join(this.deps.localDir, name), { recursive: true, force: true });
      }
    }
  }

  /**
   * Asks the job for a checkpoint now and uploads it. Resolves when the
   * newest checkpoint written after the request (or, if the job consumed
   * the trigger without writing a newer one, the newest it has) is in the
   * store and reported with `emergency: true`; `{ok: false}` after
   * `deadlineMs` or when there is no checkpoint at all.
   */
  async requestNow(reason: string, deadlineMs: number): Promise<CheckpointNowResult> {
    const { deps } = this;
    const until = Date.now() + deadlineMs;
    const before = (await scanCheckpoints(deps.localDir)).at(-1)?.step ?? -1;
    await mkdir(dirname(deps.triggerFile), { recursive: true });
    await writeFile(deps.triggerFile, `${reason}\n`);
    const signalled = deps.policy.trigger === "signal" ? (this.signalJob?.() ?? 0) : 0;
    deps.logger.warn({ jobId: deps.jobId, reason, signalled, trigger: deps.policy.trigger, before }, "checkpoint requested now");
    while (Date.now() < until && !this.abort.signal.aborted) {
      const newest = (await scanCheckpoints(deps.localDir)).at(-1)?.step ?? -1;
      const consumed = !existsSync(deps.triggerFile);
      if (newest > before || (consumed && newest >= 0)) {
        try {
          const up = await this.tick(true);
          if (up) {
            // Answered by the signal alone: the trigger must not fire again later.
            await rm(deps.triggerFile, { force: true });
            return { ok: true, step: up.step ?? newest, uploaded: this.asEmergency(up) };
          }
        } catch {
          // retried below until the deadline
        }
      } else if (consumed && newest < 0) {
        return { ok: false, message: "the job consumed the trigger but has written no checkpoint" };
      }
      await sleep(Math.min(200, Math.max(1, until - Date.now())), this.abort.signal).catch(() => {});
    }
    await rm(deps.triggerFile, { force: true });
    return { ok: false, message: `no checkpoint within ${Math.round(deadlineMs / 1000)} s of the request (does the job handle ${deps.policy.trigger === "signal" ? "SIGUSR1 or " : ""}$GPUORCH_CHECKPOINT_TRIGGER?)` };
  }

  /** The report of an upload that answers an emergency request: resent flagged, under the same artifact id. */
  private asEmergency(up: AgentArtifactReport): AgentArtifactReport {
    if (up.emergency) return up;
    const flagged = { ...up, emergency: true };
    this.uploaded.set(up.step ?? -1, flagged);
    this.deps.report(flagged);
    return flagged;
  }

  /** The task ended: uploads its newest checkpoint if it is new (bounded by `timeoutMs`), then stops. */
  async finish(timeoutMs: number): Promise<void> {
    this.stopTimer();
    const last = this.tick().catch((err: unknown) => {
      this.deps.logger.warn({ jobId: this.deps.jobId, err: toAppError(err).message }, "the final checkpoint upload failed");
    });
    const timer = new AbortController();
    const timedOut = await Promise.race([
      last.then(() => false),
      sleep(timeoutMs, timer.signal).then(
        () => true,
        () => false,
      ),
    ]);
    timer.abort();
    if (timedOut) this.deps.logger.warn({ jobId: this.deps.jobId, timeoutMs }, "the final checkpoint upload took too long; abandoned");
    this.abort.abort(new DOMException("checkpointer finished", "AbortError"));
  }

  /** Stops at once (uploads in flight are aborted). */
  stop(): void {
    this.stopTimer();
    this.abort.abort(new DOMException("checkpointer stopped", "AbortError"));
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

/** `<attemptDir>/checkpoints` and `<attemptDir>/checkpoint-now`: where a task's checkpoints and trigger live. */
export function checkpointPaths(attemptDir: string): { localDir: string; triggerFile: string } {
  return { localDir: join(attemptDir, "checkpoints"), triggerFile: join(attemptDir, "checkpoint-now") };
}
