import {
  AppError,
  type AgentArtifactReport,
  type AgentInterruptionReport,
  type AgentTaskReport,
  type Clock,
  type Framework,
  type IdSource,
  type JobStatus,
  type TaskCheckpointPolicy,
  type TaskLaunchCommand,
  type TaskResumeFrom,
  isTerminal,
  judgeAttempt,
  taskStateFromReport,
} from "@gpuorch/core";
import {
  type Database,
  type JobBrief,
  getJobBriefs,
  type TaskRecord,
  type TaskUpdate,
  type ArtifactVerdict,
  applyTaskUpdates,
  endTasks,
  findTasks,
  jobsInStatusSince,
  latestCheckpoint,
  recordArtifactReport,
  setNodePreempting,
  markLaunchSent,
  nodeAddresses,
  transitionJob,
} from "@gpuorch/db";
import { checkpointNowToProto, launchToProto, stopToProto } from "@gpuorch/rpc";
import type { Logger } from "@gpuorch/runtime";
import type { AgentSessions } from "./agent-sessions.js";
import type { PlacedLaunch } from "./scheduler-loop.js";

export interface TaskSupervisorDeps {
  db: Database["db"];
  ids: IdSource;
  clock: Clock;
  logger: Logger;
  sessions: AgentSessions;
  /** Grace a stop command gives before SIGKILL. */
  stopGraceSeconds: number;
  /** A task the agent has not reported this long after its launch was sent is launched again (idempotent), or, once running, lost. */
  launchTimeoutMs: number;
  /** A job changed (wakes WatchJob streams). */
  onJobChanged?: (jobId: string) => void;
  /** GPUs were freed or a job went back to pending (wakes the scheduler). */
  onCapacityFreed?: () => void;
  /** How long a job may wait in checkpointing for its emergency checkpoint before it is requeued without one. Default 120 s. */
  checkpointTimeoutMs?: number;
  /** Stay-or-move advice for the next attempt (checkpoint and relaunch), recorded in the requeue event. */
  adviseMigration?: (job: JobBrief) => Promise<{ summary: string; details: Record<string, unknown> } | null>;
}

/** What the agent is told about its artifact report. */
export interface ArtifactAnswer {
  accepted: boolean;
  reason: string;
  /** Checkpoint manifest URIs retention gave up: the agent deletes them. */
  prune: string[];
}


const ACTOR = "controller:tasks";

/**
 * Drives tasks from placement to their end and the job along with them:
 * sends launches, turns agents' reports into task states (`applyTaskUpdates`),
 * judges each touched attempt (`judgeAttempt`) and applies the verdict —
 * provisioning → running → completed, failed (peers stopped), or lost
 * (requeued for the next attempt, or failed when attempts are used up).
 *
 * Level-triggered: every heartbeat carries the agent's full task list, and
 * `reconcileNode` compares it with the database — a task the agent does not
 * know is launched again (or declared lost once it had run), a task the
 * controller no longer wants is stopped, and ended tasks are forgotten by the
 * agent once recorded. Commands are idempotent on the agent (command id,
 * attempt fencing), so re-sending is always safe.
 *
 * Decisions about one job are serialized in-process (`perJob`); across
 * replicas the job's version makes a stale transition fail harmlessly.
 */
export class TaskSupervisor {
  private readonly perJob = new Map<string, Promise<void>>();
  /** Nodes with active tasks: a heartbeat from any other node with no tasks costs no query. */
  private readonly busyNodes = new Set<string>();

  constructor(private readonly deps: TaskSupervisorDeps) {}

  /**
   * At start: which nodes have active tasks, and a judgement of every live
   * job — a controller killed between recording a task's end and moving its
   * job (completed, failed, requeued) left the job behind, and nothing else
   * would look at it again.
   */
  async load(): Promise<void> {
    for (const t of await findTasks(this.deps.db, { activeOnly: true })) this.busyNodes.add(t.nodeId);
    const later = new Date(this.deps.clock.now().getTime() + 86_400_000);
    for (const status of ["scheduled", "provisioning", "running", "checkpointing"] as const) {
      for (const j of await jobsInStatusSince(this.deps.db, status, later)) void this.judge(j.id);
    }
  }

  /** Sends the launch commands of freshly placed tasks and moves their jobs to provisioning. */
  async launch(taskIds: readonly string[], prepared?: readonly PlacedLaunch[]): Promise<void> {
    if (taskIds.length === 0) return;
    if (prepared && prepared.length === taskIds.length) {
      await this.sendPrepared(prepared);
      return;
    }
    const tasks = await findTasks(this.deps.db, { ids: taskIds, activeOnly: true });
    await this.sendLaunches(tasks);
  }

  /** Launches the scheduler built from its own snapshot: no read-back before the send. */
  private async sendPrepared(launches: readonly PlacedLaunch[]): Promise<void> {
    const sent: string[] = [];
    const jobs = new Set<string>();
    await this.attachResume(launches.map((l) => l.command));
    for (const l of launches) {
      this.busyNodes.add(l.nodeId);
      if (this.deps.sessions.send(l.nodeId, { launch: launchToProto(l.command) })) sent.push(l.command.taskId);
      jobs.add(l.command.jobId);
    }
    await markLaunchSent(this.deps.db, sent);
    await Promise.all([...jobs].map((jobId) => this.judge(jobId)));
  }

  private async sendLaunches(tasks: readonly TaskRecord[]): Promise<void> {
    if (tasks.length === 0) return;
    for (const t of tasks) this.busyNodes.add(t.nodeId);
    const byJob = groupBy(tasks, (t) => t.jobId);
    const jobs = await this.loadJobs([...byJob.keys()]);
    const sent: string[] = [];
    for (const [jobId, jobTasks] of byJob) {
      const job = jobs.get(jobId);
      if (!job || isTerminal(job.status)) continue;
      const gang = await findTasks(this.deps.db, { jobId, attempt: jobTasks[0]!.attempt });
      const addrs = await nodeAddresses(
        this.deps.db,
        gang.map((t) => t.nodeId),
      );
      const cmds = jobTasks.map((t) => ({ t, cmd: buildLaunchCommand(job, t, gang, addrs) }));
      await this.attachResume(cmds.map((c) => c.cmd));
      for (const { t, cmd } of cmds) {
        if (this.deps.sessions.send(t.nodeId, { launch: launchToProto(cmd) })) sent.push(t.id);
      }
    }
    await markLaunchSent(this.deps.db, sent);
    // scheduled → provisioning happens in the job's judgement, serialized with the agents' reports.
    await Promise.all([...byJob.keys()].map((jobId) => this.judge(jobId)));
  }

  /**
   * Every attempt of a job with a checkpoint URI starts from the job's newest
   * live checkpoint (any earlier attempt, or this one when it is relaunched):
   * the controller's record, which only ever holds checkpoints of the attempt
   * that was current when they were reported (fencing).
   */
  private async attachResume(cmds: readonly TaskLaunchCommand[]): Promise<void> {
    const latest = new Map<string, TaskResumeFrom | null>();
    for (const cmd of cmds) {
      if (!cmd.checkpoint) continue;
      if (!latest.has(cmd.jobId)) {
        const a = await latestCheckpoint(this.deps.db, cmd.jobId);
        latest.set(cmd.jobId, a && a.step !== null && a.sha256 !== null && a.attempt <= cmd.attempt ? { uri: a.uri, sha256: a.sha256, step: a.step, attempt: a.attempt } : null);
      }
      cmd.resume = latest.get(cmd.jobId) ?? null;
    }
  }

  /**
   * An agent's artifact report: recorded when its attempt is the job's
   * current one (else refused; see recordArtifactReport). An emergency
   * checkpoint of a job waiting in checkpointing ends the wait: the job is
   * requeued and its next attempt resumes from it.
   */
  async onArtifact(nodeId: string, report: AgentArtifactReport): Promise<ArtifactAnswer> {
    const verdict: ArtifactVerdict = await recordArtifactReport(this.deps.db, nodeId, {
      artifactId: report.artifactId,
      taskId: report.taskId,
      jobId: report.jobId,
      attempt: report.attempt,
      type: report.type,
      uri: report.uri,
      step: report.step,
      bytes: report.bytes,
      sha256: report.sha256,
      emergency: report.emergency,
    });
    const log = { jobId: report.jobId, attempt: report.attempt, nodeId, type: report.type, step: report.step, uri: report.uri };
    if (!verdict.accepted) {
      this.deps.logger.warn({ ...log, reason: verdict.reason }, `artifact refused: ${verdict.message}`);
      return { accepted: false, reason: verdict.message, prune: [] };
    }
    if (!verdict.duplicate) {
      this.deps.logger.info({ ...log, bytes: report.bytes, emergency: report.emergency, pruned: verdict.prune.length }, "artifact recorded");
      this.deps.onJobChanged?.(report.jobId);
    }
    if (report.type === "checkpoint" && report.emergency) {
      await this.serial(report.jobId, async () => {
        const job = (await this.loadJobs([report.jobId])).get(report.jobId);
        if (job?.status === "checkpointing" && job.attempt === report.attempt) {
          await this.requeue(job, "checkpointing", `emergency checkpoint at step ${report.step} uploaded`, { step: report.step, uri: report.uri });
        }
      });
    }
    return { accepted: true, reason: verdict.duplicate ? "already recorded" : "", prune: verdict.prune };
  }

  /**
   * A node's spot interruption notice (and later what became of its
   * emergency checkpoint). At the notice the node turns preempting (no new
   * tasks) and each job running there goes running → checkpointing, with a
   * checkpoint-now to its rank-0 task (the rank that writes checkpoints,
   * wherever it runs); a job without a checkpoint URI is requeued at once.
   * The job is requeued when the emergency checkpoint is reported, when
   * the agent says it failed, or after `checkpointTimeoutMs`; if the node
   * dies first, node loss requeues it from the last checkpoint.
   */
  async onInterruption(nodeId: string, r: AgentInterruptionReport): Promise<void> {
    const what = `${r.provider} ${r.kind}${r.at ? ` at ${r.at.toISOString()}` : ""}`;
    if (r.stage === "checkpointed") {
      this.deps.logger.info({ nodeId, notice: what }, "emergency checkpoints uploaded");
      return;
    }
    if (r.stage === "checkpoint_failed") {
      for (const jobId of new Set(r.tasks.map((t) => t.jobId))) {
        await this.serial(jobId, async () => {
          const job = (await this.loadJobs([jobId])).get(jobId);
          const attempt = r.tasks.find((t) => t.jobId === jobId)?.attempt;
          if (job?.status === "checkpointing" && job.attempt === attempt) {
            await this.requeue(job, "checkpointing", `emergency checkpoint failed (${r.message}); resuming from the last uploaded checkpoint`);
          }
        });
      }
      return;
    }
    await setNodePreempting(this.deps.db, nodeId);
    this.deps.logger.warn({ nodeId, notice: what, detail: r.detail }, "node preempting");
    const onNode = await findTasks(this.deps.db, { nodeId, activeOnly: true });
    for (const jobId of new Set(onNode.map((t) => t.jobId))) {
      await this.serial(jobId, async () => {
        const job = (await this.loadJobs([jobId])).get(jobId);
        if (!job || isTerminal(job.status) || job.status === "requeued" || job.status === "pending") return;
        // Independent units: those on this node are lost with it and placed again one by one; the rest run on.
        if (job.execution_mode === "multi_task") return;
        if (!onNode.some((t) => t.jobId === jobId && t.attempt === job.attempt)) return;
        const host = onNode.find((t) => t.jobId === jobId)?.hostname ?? nodeId;
        const policy = checkpointPolicyOf(job.spec);
        if (!policy || (job.status !== "running" && job.status !== "checkpointing")) {
          const why = policy ? `it was still ${job.status}` : "the job has no checkpoint.uri";
          await this.requeue(job, job.status, `spot interruption notice on ${host} (${what}); ${why}, so it restarts from ${policy ? "its last checkpoint" : "the beginning"}`);
          return;
        }
        if (job.status === "running" && !(await this.transition(jobId, "running", "checkpointing", `spot interruption notice on ${host} (${what}): emergency checkpoint requested`, { nodeId, provider: r.provider, kind: r.kind }))) return;
        const gang = await findTasks(this.deps.db, { jobId, attempt: job.attempt, activeOnly: true });
        for (const t of gang.filter((g) => g.nodeRank === 0 || g.unit >= 0)) {
          this.deps.sessions.send(t.nodeId, {
            checkpointNow: checkpointNowToProto({ commandId: `ckpt:${t.id}:${what}`, taskId: t.id, jobId, attempt: t.attempt, reason: `spot interruption notice on ${host}` }),
          });
        }
      });
    }
    this.deps.onCapacityFreed?.();
  }

  /**
   * Jobs stuck in checkpointing past the timeout (their emergency checkpoint
   * never came): requeued from the last checkpoint. Jobs left in `requeued`
   * by a controller that died between the two transitions: on to pending.
   */
  async sweepCheckpointing(): Promise<number> {
    const timeout = this.deps.checkpointTimeoutMs ?? 120_000;
    const stale = await jobsInStatusSince(this.deps.db, "checkpointing", new Date(this.deps.clock.now().getTime() - timeout));
    for (const s of stale) {
      await this.serial(s.id, async () => {
        const job = (await this.loadJobs([s.id])).get(s.id);
        if (job?.status === "checkpointing" && job.attempt === s.attempt) {
          await this.requeue(job, "checkpointing", `no emergency checkpoint within ${Math.round(timeout / 1000)} s; resuming from the last uploaded checkpoint`);
        }
      });
    }
    // `requeued` is left at once for pending (same decision); a job still there was left by a controller that died in between.
    const stranded = await jobsInStatusSince(this.deps.db, "requeued", new Date(this.deps.clock.now().getTime() - 5_000));
    for (const s of stranded) {
      await this.serial(s.id, async () => {
        const job = (await this.loadJobs([s.id])).get(s.id);
        if (job?.status !== "requeued" || job.attempt !== s.attempt) return;
        if (job.attempt >= job.max_attempts) {
          await this.transition(job.id, "requeued", "failed", `no attempts left (max_attempts ${job.max_attempts})`);
          return;
        }
        const ckpt = await latestCheckpoint(this.deps.db, job.id);
        const resume = ckpt?.step != null ? `; resumes from the checkpoint at step ${ckpt.step} (attempt ${ckpt.attempt})` : "";
        await this.transition(job.id, "requeued", "pending", `attempt ${job.attempt + 1} of ${job.max_attempts} (requeue finished after a controller restart)${resume}`);
        this.deps.onCapacityFreed?.();
      });
    }
    return stale.length + stranded.length;
  }

  /**
   * Ends the job's current attempt and queues the next: every active task of
   * the attempt is stopped, the job goes `from` → requeued → pending with
   * attempt + 1 (or fails when its attempts are used up). The next attempt
   * resumes from the newest recorded checkpoint (attachResume).
   */
  private async requeue(job: JobBrief, from: JobStatus, reason: string, details: Record<string, unknown> = {}): Promise<void> {
    const tasks = await findTasks(this.deps.db, { jobId: job.id, attempt: job.attempt, activeOnly: true });
    for (const t of tasks) this.sendStop(t, reason);
    if (job.attempt >= job.max_attempts) {
      await this.transition(job.id, from, "failed", `${reason}; no attempts left (max_attempts ${job.max_attempts})`, details);
      return;
    }
    const advice = await this.deps.adviseMigration?.(job).catch((err: unknown) => {
      this.deps.logger.warn({ err, jobId: job.id }, "migration advice failed");
      return null;
    });
    if (!(await this.transition(job.id, from, "requeued", reason, { ...details, ...(advice ? { migration: advice.details } : {}) }))) return;
    const ckpt = await latestCheckpoint(this.deps.db, job.id);
    const resume = `${ckpt?.step != null ? `; resumes from the checkpoint at step ${ckpt.step} (attempt ${ckpt.attempt})` : ""}${advice ? `; ${advice.summary}` : ""}`;
    // Tasks of the old attempt that still run are stopped (above, and by reconcile: their attempt is stale) and free their GPUs then.
    await this.transition(job.id, "requeued", "pending", `attempt ${job.attempt + 1} of ${job.max_attempts} after: ${reason}${resume}`);
    this.deps.onCapacityFreed?.();
  }

  /** Stops every active task of a job (cancel). The tasks end when their agents confirm. */
  async stopJob(jobId: string, reason: string): Promise<void> {
    const tasks = await findTasks(this.deps.db, { jobId, activeOnly: true });
    for (const t of tasks) this.sendStop(t, reason);
  }

  /**
   * Fails a job from outside its tasks' verdicts (its budget is spent) and
   * stops every rank. False when the job was already terminal or moved first.
   */
  async failJob(jobId: string, reason: string, details: Record<string, unknown>): Promise<boolean> {
    const job = (await this.loadJobs([jobId])).get(jobId);
    if (!job || isTerminal(job.status)) return false;
    const done = await this.transition(jobId, job.status, "failed", reason, details);
    if (done) await this.stopJob(jobId, reason);
    return done;
  }

  private sendStop(t: TaskRecord, reason: string): void {
    this.deps.sessions.send(t.nodeId, {
      stop: stopToProto({
        commandId: `stop:${t.id}`,
        taskId: t.id,
        jobId: t.jobId,
        attempt: t.attempt,
        reason,
        graceSeconds: this.deps.stopGraceSeconds,
      }),
    });
  }

  /** Whether a heartbeat with `reports` tasks from this node needs any work (most heartbeats of idle nodes do not). */
  needsReports(nodeId: string, reports: number): boolean {
    return reports > 0 || this.busyNodes.has(nodeId);
  }

  /**
   * One node's reports. `full` (a heartbeat) means the list is every task the
   * agent knows, so absence means something; a single task_status message
   * says nothing about the others.
   */
  async onReports(nodeId: string, reports: readonly AgentTaskReport[], full: boolean, opts: { awaitJudgements?: boolean } = {}): Promise<void> {
    if (reports.length === 0 && !this.busyNodes.has(nodeId)) return;
    const updates: TaskUpdate[] = reports.map((r) => {
      const s = taskStateFromReport(r);
      return { taskId: r.taskId, state: s.state, exitCode: r.exitCode, signal: r.signal, step: r.step, reason: s.reason };
    });
    const changes = await applyTaskUpdates(this.deps.db, nodeId, updates);
    for (const c of changes) {
      this.deps.logger.info({ taskId: c.task.id, jobId: c.task.jobId, nodeId, from: c.from, to: c.task.state }, "task state");
    }
    const touched = new Set(changes.map((c) => c.task.jobId));
    if (changes.some((c) => c.task.state !== "assigned" && c.task.state !== "running")) this.deps.onCapacityFreed?.();
    if (full) await this.reconcileNode(nodeId, reports, touched);
    // Judgements are serialized per job; the caller need not wait for them to take the node's next report.
    const judged = Promise.all([...touched].map((jobId) => this.judge(jobId)));
    if (opts.awaitJudgements ?? true) await judged;
  }

  private async reconcileNode(nodeId: string, reports: readonly AgentTaskReport[], touched: Set<string>): Promise<void> {
    const active = await findTasks(this.deps.db, { nodeId, activeOnly: true });
    if (active.length === 0) this.busyNodes.delete(nodeId);
    const reported = new Map(reports.map((r) => [r.taskId, r]));
    const now = this.deps.clock.now().getTime();
    const relaunch: TaskRecord[] = [];
    const lost: TaskRecord[] = [];
    const unwanted: TaskRecord[] = [];
    const activeIds = new Set(active.map((t) => t.id));
    const jobs = await this.loadJobs([...new Set(active.map((t) => t.jobId))]);
    /** The job is over, or has moved on to another attempt: the controller no longer wants this task to run. */
    const notWanted = (t: TaskRecord): boolean => {
      const job = jobs.get(t.jobId);
      return !job || isTerminal(job.status) || job.attempt !== t.attempt || job.status === "requeued";
    };
    for (const t of active) {
      if (reported.has(t.id)) continue;
      const since = t.launchSentAt?.getTime();
      if (since !== undefined && now - since < this.deps.launchTimeoutMs) continue;
      if (t.state === "running") lost.push(t);
      // Never launched here and no longer wanted: nothing runs, so no stop will ever be confirmed; end it and free its GPUs.
      else if (notWanted(t)) unwanted.push(t);
      else relaunch.push(t);
    }
    if (lost.length > 0) {
      const ended = await endTasks(this.deps.db, lost.map((t) => t.id), "lost", "the agent no longer knows this task (did it restart?)");
      for (const t of ended) touched.add(t.jobId);
      this.deps.onCapacityFreed?.();
    }
    if (unwanted.length > 0) {
      const ended = await endTasks(this.deps.db, unwanted.map((t) => t.id), "stopped", "never started, and its job no longer wants it");
      for (const t of ended) {
        touched.add(t.jobId);
        activeIds.delete(t.id);
      }
      this.deps.onCapacityFreed?.();
    }
    await this.sendLaunches(relaunch);
    // What the agent runs that the controller does not want: stop it. What has ended and is recorded: forget it.
    const forget: string[] = [];
    for (const r of reports) {
      const live = r.state === "starting" || r.state === "running";
      if (live && !activeIds.has(r.taskId)) {
        this.deps.sessions.send(nodeId, {
          stop: stopToProto({
            commandId: `stop:${r.taskId}`,
            taskId: r.taskId,
            jobId: r.jobId,
            attempt: r.attempt,
            reason: "the controller does not expect this task to run",
            graceSeconds: this.deps.stopGraceSeconds,
          }),
        });
      } else if (!live && !activeIds.has(r.taskId)) {
        forget.push(r.taskId);
        // Its end is recorded; make sure its job was moved along too (level-triggered, idempotent).
        touched.add(r.jobId);
      }
    }
    if (forget.length > 0) this.deps.sessions.send(nodeId, { forget: { taskIds: forget } });
    // A job already over whose task still runs here (cancel, failed peer): keep stopping it.
    for (const t of active) {
      const job = jobs.get(t.jobId);
      if (job && activeIds.has(t.id) && notWanted(t)) this.sendStop(t, `job is ${job.status}`);
    }
  }

  /** A node was declared lost: its active tasks are lost, and their jobs judged. */
  async onNodesLost(nodeIds: readonly string[]): Promise<void> {
    if (nodeIds.length === 0) return;
    const tasks = await findTasks(this.deps.db, { nodeIds, activeOnly: true });
    if (tasks.length === 0) return;
    const ended = await endTasks(
      this.deps.db,
      tasks.map((t) => t.id),
      "lost",
      "its node stopped sending heartbeats (lost)",
    );
    for (const n of nodeIds) this.busyNodes.delete(n);
    this.deps.onCapacityFreed?.();
    await Promise.all([...new Set(ended.map((t) => t.jobId))].map((jobId) => this.judge(jobId)));
  }

  /** Re-judges a job (e.g. after cancel, so tasks of a cancelled job are stopped). */
  judge(jobId: string): Promise<void> {
    return this.serial(jobId, () => this.judgeNow(jobId));
  }

  /** Decisions about one job run one at a time, in order. */
  private serial(jobId: string, fn: () => Promise<void>): Promise<void> {
    const prev = this.perJob.get(jobId) ?? Promise.resolve();
    const next = prev
      .then(fn)
      .catch((err: unknown) => {
        this.deps.logger.error({ err, jobId }, "deciding about the job failed");
      })
      .finally(() => {
        if (this.perJob.get(jobId) === next) this.perJob.delete(jobId);
      });
    this.perJob.set(jobId, next);
    return next;
  }

  private async judgeNow(jobId: string): Promise<void> {
    const job = (await this.loadJobs([jobId])).get(jobId);
    if (!job) return;
    const tasks = await findTasks(this.deps.db, { jobId, attempt: job.attempt });
    if (isTerminal(job.status)) {
      for (const t of tasks) if (t.state === "assigned" || t.state === "running") this.sendStop(t, `job is ${job.status}`);
      return;
    }
    let status = job.status;
    if (status === "scheduled" && tasks.some((t) => t.launchSentAt !== null || t.state !== "assigned")) {
      if (!(await this.transition(jobId, "scheduled", "provisioning", `launch sent to ${describeNodes(tasks)}`))) return;
      status = "provisioning";
    }
    const spec = parseSpec(job.spec);
    const expected = job.execution_mode === "multi_task" ? specTasks(spec) : (tasks[0]?.numNodes ?? 1);
    const verdict = judgeAttempt({
      status,
      executionMode: job.execution_mode,
      expected,
      maxAttempts: job.max_attempts,
      tasks: tasks.map((t) => ({
        id: t.id,
        nodeRank: t.nodeRank,
        unit: t.unit,
        state: t.state,
        exitCode: t.exitCode,
        reason: t.reason,
        hostname: t.hostname,
        endedAt: t.endedAt,
        // A node whose agent stream is gone: its rank's peers fail as collateral damage, not on their own.
        nodeAvailable: this.deps.sessions.has(t.nodeId),
      })),
    });
    switch (verdict.kind) {
      case "none":
        return;
      case "running":
        await this.transition(jobId, "provisioning", "running", "all ranks started");
        return;
      case "completed":
        if (status === "scheduled") return; // not launched yet by this replica's record; the launch path judges again
        if (status === "provisioning" && !(await this.transition(jobId, "provisioning", "running", "all ranks started"))) return;
        await this.transition(jobId, null, "completed", verdict.reason);
        return;
      case "failed": {
        for (const t of tasks) if (t.state === "assigned" || t.state === "running") this.sendStop(t, `a peer failed: ${verdict.reason.split("\n")[0]}`);
        await this.transition(jobId, null, "failed", verdict.reason, { taskId: verdict.task.id, exitCode: verdict.task.exitCode });
        return;
      }
      case "lost":
        await this.requeue({ ...job, status }, status, verdict.reason, { taskId: verdict.task.id });
        return;
    }
  }

  /** True when applied; false when someone else moved the job first. */
  private async transition(jobId: string, from: JobStatus | null, to: JobStatus, reason: string, details?: Record<string, unknown>): Promise<boolean> {
    try {
      await transitionJob(this.deps.db, {
        jobId,
        to,
        reason,
        actor: ACTOR,
        ...(from !== null ? { expectedFrom: from } : {}),
        ...(details ? { details } : {}),
      });
      this.deps.logger.info({ jobId, to, reason: reason.split("\n")[0] }, `job ${to}`);
      this.deps.onJobChanged?.(jobId);
      return true;
    } catch (e) {
      // Someone else moved the job first (cancel, another replica): the next judgement sees the new state.
      if (e instanceof AppError && (e.reason === "version_conflict" || e.reason === "unexpected_status" || e.reason === "illegal_transition")) {
        this.deps.logger.debug({ jobId, to, why: e.message }, "transition skipped");
        return false;
      }
      throw e;
    }
  }

  private loadJobs(ids: readonly string[]): Promise<Map<string, JobBrief>> {
    return getJobBriefs(this.deps.db, ids);
  }
}

function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const it of items) out.set(key(it), [...(out.get(key(it)) ?? []), it]);
  return out;
}

function describeNodes(tasks: readonly TaskRecord[]): string {
  return tasks.map((t) => `${t.hostname}${t.unit >= 0 ? ` (unit ${t.unit})` : ` (rank ${t.nodeRank})`}`).join(", ");
}

type SpecJson = {
  entrypoint?: Record<string, unknown>;
  execution?: { tasks?: number };
  checkpoint?: { uri?: string; keep?: number; interval_steps?: number; interval_seconds?: number; trigger?: string };
  data?: { dataset?: string; dataset_kind?: string; fetch?: boolean };
};

/** The job's checkpoint policy from its stored spec; null without a checkpoint.uri. */
export function checkpointPolicyOf(spec: Record<string, unknown> | string): TaskCheckpointPolicy | null {
  const c = parseSpec(spec).checkpoint;
  if (!c?.uri) return null;
  return {
    uri: c.uri,
    keep: c.keep ?? 3,
    intervalSteps: c.interval_steps ?? null,
    intervalSeconds: c.interval_seconds ?? null,
    trigger: c.trigger === "file" ? "file" : "signal",
  };
}

function parseSpec(spec: Record<string, unknown> | string): SpecJson {
  return (typeof spec === "string" ? JSON.parse(spec) : spec) as SpecJson;
}

function specTasks(spec: SpecJson): number {
  return spec.execution?.tasks ?? 1;
}

/** The launch command for one task, from the job's stored (normalized) spec and its gang. */
export function buildLaunchCommand(
  job: { id: string; name: string; framework: Framework; spec: Record<string, unknown> | string },
  task: TaskRecord,
  gang: readonly TaskRecord[],
  addrs: ReadonlyMap<string, { host: string; hostname: string }>,
): TaskLaunchCommand {
  const e = (parseSpec(job.spec).entrypoint ?? {}) as {
    uri?: string;
    command?: string[];
    command_shell?: boolean;
    args?: string[];
    env?: Record<string, string>;
    working_dir?: string;
  };
  const peers = task.unit >= 0 ? [task] : [...gang].filter((t) => t.unit < 0 && t.attempt === task.attempt).sort((a, b) => a.nodeRank - b.nodeRank);
  return {
    commandId: `launch:${task.id}`,
    taskId: task.id,
    jobId: job.id,
    jobName: job.name,
    attempt: task.attempt,
    framework: job.framework,
    entrypoint: {
      uri: e.uri ?? "",
      command: e.command ?? [],
      commandShell: e.command_shell ?? false,
      args: e.args ?? [],
      env: e.env ?? {},
      workingDir: e.working_dir ?? "",
    },
    nodeRank: task.unit >= 0 ? 0 : task.nodeRank,
    numNodes: task.unit >= 0 ? 1 : task.numNodes,
    gpus: task.gpuIndices.map(String),
    masterAddr: task.masterAddr,
    masterPort: task.masterPort,
    hosts: peers.map((t) => ({ host: addrs.get(t.nodeId)?.host ?? t.hostname, slots: Math.max(1, t.gpuIndices.length), port: t.masterPort })),
    unit: task.unit,
    cpuProcesses: 0,
    // Checkpoints are per gang: multi_task units (independent trials/shards) would share one key space, so they rerun from scratch.
    checkpoint: task.unit >= 0 ? null : checkpointPolicyOf(job.spec),
    resume: null,
    datasetUri: datasetToFetch(parseSpec(job.spec)),
  };
}

/** The dataset URI when the spec asks the agent to fetch it (data.fetch) from an object store. */
function datasetToFetch(spec: SpecJson): string {
  const d = spec.data;
  return d?.fetch && d.dataset && /^(s3|gs|az|minio|file):\/\//i.test(d.dataset) ? d.dataset : "";
}
