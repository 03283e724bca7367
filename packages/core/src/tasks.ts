/**
 * Tasks: one node's share of a job attempt (a rank group of a gang, or one
 * multi_task unit). The controller stores them; agents report their true
 * state; `judgeAttempt` turns the attempt's task states into the job's next
 * move. Pure: no I/O, no clock.
 */
import { fnv1a32 } from "./hash.js";
import type { ArtifactType, ExecutionMode, Framework, JobStatus } from "./job-status.js";

/**
 * - `assigned`: placed, GPUs held, launch sent or about to be.
 * - `running`: the agent started it.
 * - `succeeded` / `failed`: the process group ended with 0 / non-zero (or a signal, or could not start).
 * - `stopped`: ended by a stop command (cancel, a failing peer, a requeue).
 * - `lost`: its node was lost, or the agent no longer knew it.
 */
export const TASK_STATES = ["assigned", "running", "succeeded", "failed", "stopped", "lost"] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** States that hold GPUs and that an agent should be running. */
export const ACTIVE_TASK_STATES: readonly TaskState[] = ["assigned", "running"];

export function isTaskActive(s: TaskState): boolean {
  return s === "assigned" || s === "running";
}

export function isTaskState(s: string): s is TaskState {
  return (TASK_STATES as readonly string[]).includes(s);
}

/** What `judgeAttempt` needs of one task. */
export interface AttemptTask {
  id: string;
  nodeRank: number;
  /** multi_task unit; -1 for single_cluster. */
  unit: number;
  state: TaskState;
  exitCode: number | null;
  reason: string | null;
  hostname: string;
  endedAt: Date | null;
  /** False when the task's node is known to be gone or cut off (its agent's stream dropped, the node unreachable). Default true. */
  nodeAvailable?: boolean;
}

export interface AttemptView {
  status: JobStatus;
  executionMode: ExecutionMode;
  /** single_cluster: number of nodes of the gang; multi_task: number of units. */
  expected: number;
  /** The tasks of the current attempt (for multi_task, of every unit placed so far). */
  tasks: readonly AttemptTask[];
  /** multi_task: a unit lost this many times fails the job (a lost unit is otherwise placed again). */
  maxAttempts: number;
}

export type AttemptVerdict =
  /** Nothing to do. */
  | { kind: "none" }
  /** provisioning → running. */
  | { kind: "running" }
  | { kind: "completed"; reason: string }
  /** A rank failed: the job fails; every other active task is stopped. */
  | { kind: "failed"; reason: string; task: AttemptTask }
  /** A task was lost: requeue (or fail when attempts are used up); stop the others. */
  | { kind: "lost"; reason: string; task: AttemptTask };

function describe(t: AttemptTask, mode: ExecutionMode): string {
  return mode === "multi_task" ? `unit ${t.unit} on ${t.hostname}` : `node rank ${t.nodeRank} on ${t.hostname}`;
}

function firstEnded(ts: readonly AttemptTask[]): AttemptTask | undefined {
  return [...ts].sort((a, b) => (a.endedAt?.getTime() ?? Infinity) - (b.endedAt?.getTime() ?? Infinity) || a.nodeRank - b.nodeRank)[0];
}

/**
 * The job's next move from its attempt's tasks. Failure wins over loss (a
 * rank that failed on its own is the job's fault, not the node's) — except
 * in a multi-node gang whose other node is lost or cut off: a rank whose
 * peer vanished fails in its collective (connection reset, timeout), and
 * that is the node's fault, so the attempt counts as lost and the job is
 * requeued. Loss wins over progress; `completed` needs every expected rank
 * or unit to have succeeded.
 */
export function judgeAttempt(view: AttemptView): AttemptVerdict {
  const live = view.status === "scheduled" || view.status === "provisioning" || view.status === "running" || view.status === "checkpointing";
  if (!live) return { kind: "none" };
  const failed = firstEnded(view.tasks.filter((t) => t.state === "failed"));
  if (failed && view.executionMode === "single_cluster" && view.expected > 1) {
    const gone = view.tasks.filter((t) => t.id !== failed.id && (t.state === "lost" || t.nodeAvailable === false));
    const culprit = firstEnded(gone.filter((t) => t.state === "lost")) ?? gone[0];
    if (culprit) {
      const how = culprit.state === "lost" ? `was lost${culprit.reason ? ` (${culprit.reason})` : ""}` : "became unreachable";
      return { kind: "lost", task: culprit, reason: `${describe(culprit, view.executionMode)} ${how}; ${describe(failed, view.executionMode)} failed after it` };
    }
  }
  if (failed) {
    const why = failed.reason ? `: ${failed.reason}` : failed.exitCode === null ? "" : ` with exit code ${failed.exitCode}`;
    return { kind: "failed", task: failed, reason: `${describe(failed, view.executionMode)} failed${why}` };
  }
  const lostTasks = view.tasks.filter((t) => t.state === "lost");
  if (view.executionMode === "single_cluster") {
    const lost = firstEnded(lostTasks);
    if (lost) return { kind: "lost", task: lost, reason: `${describe(lost, view.executionMode)} was lost${lost.reason ? `: ${lost.reason}` : ""}` };
  } else {
    // A lost unit is independent of the others: it is simply placed again, up to maxAttempts times.
    const perUnit = new Map<number, AttemptTask[]>();
    for (const t of lostTasks) perUnit.set(t.unit, [...(perUnit.get(t.unit) ?? []), t]);
    for (const [unit, ts] of perUnit) {
      if (ts.length >= view.maxAttempts) {
        const last = ts[ts.length - 1]!;
        return { kind: "failed", task: last, reason: `unit ${unit} was lost ${ts.length} times (max_attempts ${view.maxAttempts}); last on ${last.hostname}` };
      }
    }
  }
  const succeeded = new Set(view.tasks.filter((t) => t.state === "succeeded").map((t) => (view.executionMode === "multi_task" ? t.unit : t.nodeRank)));
  if (succeeded.size >= view.expected) {
    return { kind: "completed", reason: view.executionMode === "multi_task" ? `all ${view.expected} units succeeded` : `all ${view.expected} node(s) exited 0` };
  }
  if (view.status === "provisioning") {
    const started = view.tasks.filter((t) => t.state === "running" || t.state === "succeeded");
    if (view.executionMode === "multi_task" ? started.length > 0 : started.length >= view.expected) return { kind: "running" };
  }
  return { kind: "none" };
}

/** A deterministic rendezvous port per job attempt, so every node of the gang agrees without a round trip. */
export function masterPortFor(jobId: string, attempt: number, base = 29_500, span = 10_000): number {
  return base + (fnv1a32(`${jobId}/${attempt}`) % span);
}

// ---- The agent side of the wire, as domain types (packages/rpc converts). ----

export interface TaskEntrypoint {
  /** Local path or file:// URI; "" when the command is self-contained. */
  uri: string;
  command: string[];
  /** True when `command` is one shell string. */
  commandShell: boolean;
  args: string[];
  env: Record<string, string>;
  workingDir: string;
}

export interface TaskLaunchHost {
  host: string;
  slots: number;
  port: number;
}

/** controller → agent: run this node's share of a job attempt. */
export interface TaskLaunchCommand {
  /** Idempotency key: a replay of the same command is a no-op. */
  commandId: string;
  taskId: string;
  jobId: string;
  jobName: string;
  attempt: number;
  framework: Framework;
  entrypoint: TaskEntrypoint;
  nodeRank: number;
  numNodes: number;
  /** GPU indices (or MIG UUIDs) as CUDA_VISIBLE_DEVICES spells them. */
  gpus: string[];
  masterAddr: string;
  masterPort: number;
  hosts: TaskLaunchHost[];
  /** multi_task unit; -1 otherwise. */
  unit: number;
  /** Processes on this node when no GPU is allocated. */
  cpuProcesses: number;
  /** Where checkpoints go; null: the job has no checkpoint URI. */
  checkpoint: TaskCheckpointPolicy | null;
  /** The checkpoint this attempt starts from; null: fresh. */
  resume: TaskResumeFrom | null;
  /** An object-store dataset the agent fetches (GPUORCH_DATASET_DIR); "" when none. */
  datasetUri: string;
}

export const CHECKPOINT_TRIGGERS = ["signal", "file"] as const;
export type CheckpointTrigger = (typeof CHECKPOINT_TRIGGERS)[number];

export interface TaskCheckpointPolicy {
  /** The spec's checkpoint.uri (base; objects under `<uri>/<job>/attempt-<n>/step-<s>/`). */
  uri: string;
  keep: number;
  intervalSteps: number | null;
  intervalSeconds: number | null;
  /** How the agent asks for a checkpoint now: SIGUSR1 (+ trigger file) or the trigger file only. */
  trigger: CheckpointTrigger;
}

export interface TaskResumeFrom {
  /** The checkpoint manifest's URI. */
  uri: string;
  sha256: string;
  step: number;
  attempt: number;
}

/** controller → agent: take a checkpoint now. */
export interface TaskCheckpointNowCommand {
  commandId: string;
  taskId: string;
  jobId: string;
  attempt: number;
  reason: string;
}

/** agent → controller: an object uploaded and verified. */
export interface AgentArtifactReport {
  /** Stable across resends: the row id. */
  artifactId: string;
  taskId: string;
  jobId: string;
  attempt: number;
  nodeRank: number;
  type: ArtifactType;
  uri: string;
  step: number | null;
  bytes: number;
  sha256: string;
  emergency: boolean;
}

export const INTERRUPTION_STAGES = ["notice", "checkpointed", "checkpoint_failed"] as const;
export type InterruptionStage = (typeof INTERRUPTION_STAGES)[number];

/** agent → controller: the node's interruption notice, and the emergency checkpoint's outcome. */
export interface AgentInterruptionReport {
  provider: string;
  kind: string;
  at: Date | null;
  detail: string;
  stage: InterruptionStage;
  message: string;
  tasks: { taskId: string; jobId: string; attempt: number }[];
}

/** controller → agent: stop a task (SIGTERM, grace, SIGKILL to its group). */
export interface TaskStopCommand {
  commandId: string;
  taskId: string;
  jobId: string;
  attempt: number;
  reason: string;
  graceSeconds: number;
}

export const AGENT_TASK_STATES = ["starting", "running", "exited", "failed_to_start", "lost"] as const;
export type AgentTaskState = (typeof AGENT_TASK_STATES)[number];

/** agent → controller: a task's true state. */
export interface AgentTaskReport {
  taskId: string;
  jobId: string;
  attempt: number;
  nodeRank: number;
  state: AgentTaskState;
  exitCode: number | null;
  signal: string | null;
  /** exited: a stop command ended it. */
  stopped: boolean;
  step: number | null;
  metrics: Record<string, number>;
  /** failed_to_start / lost: why. */
  message: string;
  /** exited: the last lines of output. */
  lastLines: string[];
  changedAt: Date;
}

export interface TaskLogLine {
  rank: number;
  stream: "stdout" | "stderr";
  text: string;
  at: Date;
}

export interface TaskLogChunk {
  taskId: string;
  jobId: string;
  attempt: number;
  nodeRank: number;
  lines: TaskLogLine[];
}

/** What the controller stores for an agent's report: the task's state and reason after it. */
export function taskStateFromReport(r: AgentTaskReport): { state: TaskState; reason: string | null } {
  switch (r.state) {
    case "starting":
      return { state: "assigned", reason: null };
    case "running":
      return { state: "running", reason: null };
    case "failed_to_start":
      return { state: "failed", reason: r.message || "could not start" };
    case "lost":
      return { state: "lost", reason: r.message || "the agent no longer knows this task" };
    case "exited": {
      if (r.stopped) return { state: "stopped", reason: r.message || "stopped" };
      if (r.exitCode === 0) return { state: "succeeded", reason: null };
      const how = r.exitCode !== null ? `exit code ${r.exitCode}` : `signal ${r.signal ?? "?"}`;
      const tail = r.lastLines.length > 0 ? `; last output:\n${r.lastLines.join("\n")}` : "";
      return { state: "failed", reason: `${how}${tail}` };
    }
  }
}
