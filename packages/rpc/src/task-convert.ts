import {
  AppError,
  type AgentArtifactReport,
  type AgentInterruptionReport,
  type AgentTaskReport,
  CHECKPOINT_TRIGGERS,
  type CheckpointTrigger,
  type InterruptionStage,
  type TaskCheckpointNowCommand,
  type AgentTaskState,
  type TaskLaunchCommand,
  type TaskLogChunk,
  type TaskState,
  type TaskStopCommand,
} from "@gpuorch/core";
import * as pb from "@gpuorch/proto";
import { artifactTypeFromProto, artifactTypeToProto, frameworkFromProto, frameworkToProto } from "./convert.js";

/** The agent-stream messages between proto and the domain types of @gpuorch/core. */

const AGENT_STATE_TO_PROTO: Record<AgentTaskState, pb.TaskState> = {
  starting: pb.TaskState.TASK_STATE_STARTING,
  running: pb.TaskState.TASK_STATE_RUNNING,
  exited: pb.TaskState.TASK_STATE_EXITED,
  failed_to_start: pb.TaskState.TASK_STATE_FAILED_TO_START,
  lost: pb.TaskState.TASK_STATE_LOST,
};

export function agentTaskStateFromProto(s: pb.TaskState, field = "state"): AgentTaskState {
  for (const [k, v] of Object.entries(AGENT_STATE_TO_PROTO)) if (v === s) return k as AgentTaskState;
  throw AppError.invalid(`${field}: unknown task state ${s}`, [{ field, message: `unknown task state ${s}` }]);
}

export function taskReportToProto(r: AgentTaskReport): pb.TaskStatus {
  return {
    taskId: r.taskId,
    jobId: r.jobId,
    attempt: r.attempt,
    nodeRank: r.nodeRank,
    state: AGENT_STATE_TO_PROTO[r.state],
    ...(r.exitCode !== null ? { exitCode: r.exitCode } : {}),
    signal: r.signal ?? "",
    stopped: r.stopped,
    ...(r.step !== null ? { step: String(r.step) } : {}),
    metrics: r.metrics,
    message: r.message,
    lastLines: r.lastLines,
    changedAt: r.changedAt,
  };
}

export function taskReportFromProto(p: pb.TaskStatus, field = "task_status"): AgentTaskReport {
  if (!p.taskId || !p.jobId) throw AppError.invalid(`${field}: task_id and job_id are required`, [{ field: `${field}.task_id`, message: "required" }]);
  if (!(p.attempt >= 1)) throw AppError.invalid(`${field}.attempt must be >= 1`, [{ field: `${field}.attempt`, message: "must be >= 1" }]);
  const step = p.step === undefined ? null : Number(p.step);
  return {
    taskId: p.taskId,
    jobId: p.jobId,
    attempt: p.attempt,
    nodeRank: p.nodeRank,
    state: agentTaskStateFromProto(p.state, `${field}.state`),
    exitCode: p.exitCode ?? null,
    signal: p.signal || null,
    stopped: p.stopped,
    step: step !== null && Number.isFinite(step) ? step : null,
    metrics: { ...p.metrics },
    message: p.message,
    lastLines: [...p.lastLines],
    changedAt: p.changedAt ?? new Date(0),
  };
}

export function launchToProto(c: TaskLaunchCommand): pb.LaunchTask {
  return {
    commandId: c.commandId,
    taskId: c.taskId,
    jobId: c.jobId,
    jobName: c.jobName,
    attempt: c.attempt,
    framework: frameworkToProto(c.framework),
    entrypoint: { ...c.entrypoint },
    nodeRank: c.nodeRank,
    numNodes: c.numNodes,
    gpus: c.gpus,
    masterAddr: c.masterAddr,
    masterPort: c.masterPort,
    hosts: c.hosts.map((h) => ({ ...h })),
    unit: c.unit,
    cpuProcesses: c.cpuProcesses,
    checkpoint: c.checkpoint
      ? {
          uri: c.checkpoint.uri,
          keep: c.checkpoint.keep,
          intervalSteps: String(c.checkpoint.intervalSteps ?? 0),
          intervalSeconds: c.checkpoint.intervalSeconds ?? 0,
          trigger: c.checkpoint.trigger,
        }
      : undefined,
    resume: c.resume ? { uri: c.resume.uri, sha256: c.resume.sha256, step: String(c.resume.step), attempt: c.resume.attempt } : undefined,
    datasetUri: c.datasetUri,
  };
}

export function launchFromProto(p: pb.LaunchTask): TaskLaunchCommand {
  const bad = (f: string, m: string): AppError => AppError.invalid(`launch.${f}: ${m}`, [{ field: `launch.${f}`, message: m }]);
  if (!p.commandId) throw bad("command_id", "required");
  if (!p.taskId) throw bad("task_id", "required");
  if (!p.jobId) throw bad("job_id", "required");
  if (!(p.attempt >= 1)) throw bad("attempt", "must be >= 1");
  if (!(p.numNodes >= 1) || p.nodeRank < 0 || p.nodeRank >= p.numNodes) throw bad("node_rank", `must be in 0..${p.numNodes - 1}`);
  const e = p.entrypoint;
  return {
    commandId: p.commandId,
    taskId: p.taskId,
    jobId: p.jobId,
    jobName: p.jobName,
    attempt: p.attempt,
    framework: frameworkFromProto(p.framework, "launch.framework"),
    entrypoint: {
      uri: e?.uri ?? "",
      command: [...(e?.command ?? [])],
      commandShell: e?.commandShell ?? false,
      args: [...(e?.args ?? [])],
      env: { ...(e?.env ?? {}) },
      workingDir: e?.workingDir ?? "",
    },
    nodeRank: p.nodeRank,
    numNodes: p.numNodes,
    gpus: [...p.gpus],
    masterAddr: p.masterAddr,
    masterPort: p.masterPort,
    hosts: p.hosts.map((h) => ({ host: h.host, slots: h.slots, port: h.port })),
    unit: p.unit,
    cpuProcesses: p.cpuProcesses,
    checkpoint: p.checkpoint ? checkpointPolicyFromProto(p.checkpoint) : null,
    resume: p.resume ? resumeFromProto(p.resume) : null,
    datasetUri: p.datasetUri,
  };
}

function checkpointPolicyFromProto(c: pb.CheckpointPolicy): NonNullable<TaskLaunchCommand["checkpoint"]> {
  const bad = (f: string, m: string): AppError => AppError.invalid(`launch.checkpoint.${f}: ${m}`, [{ field: `launch.checkpoint.${f}`, message: m }]);
  if (!c.uri) throw bad("uri", "required");
  if (!(c.keep >= 1)) throw bad("keep", "must be >= 1");
  const trigger = (c.trigger || "signal") as CheckpointTrigger;
  if (!CHECKPOINT_TRIGGERS.includes(trigger)) throw bad("trigger", `must be one of ${CHECKPOINT_TRIGGERS.join(", ")}`);
  const steps = Number(c.intervalSteps);
  return { uri: c.uri, keep: c.keep, intervalSteps: steps > 0 ? steps : null, intervalSeconds: c.intervalSeconds > 0 ? c.intervalSeconds : null, trigger };
}

function resumeFromProto(r: pb.ResumeFrom): NonNullable<TaskLaunchCommand["resume"]> {
  const step = Number(r.step);
  if (!r.uri || !/^[0-9a-f]{64}$/.test(r.sha256) || !Number.isSafeInteger(step) || step < 0) {
    throw AppError.invalid("launch.resume: uri, a hex sha256 and a step >= 0 are required", [{ field: "launch.resume", message: "incomplete" }]);
  }
  return { uri: r.uri, sha256: r.sha256, step, attempt: r.attempt };
}

export function checkpointNowToProto(c: TaskCheckpointNowCommand): pb.CheckpointNow {
  return { ...c };
}

export function checkpointNowFromProto(p: pb.CheckpointNow): TaskCheckpointNowCommand {
  for (const [f, v] of [["command_id", p.commandId], ["task_id", p.taskId]] as const) {
    if (!v) throw AppError.invalid(`checkpoint_now.${f}: required`, [{ field: `checkpoint_now.${f}`, message: "required" }]);
  }
  return { commandId: p.commandId, taskId: p.taskId, jobId: p.jobId, attempt: p.attempt, reason: p.reason };
}

export function artifactReportToProto(a: AgentArtifactReport): pb.ArtifactReport {
  return {
    artifactId: a.artifactId,
    taskId: a.taskId,
    jobId: a.jobId,
    attempt: a.attempt,
    nodeRank: a.nodeRank,
    type: artifactTypeToProto(a.type),
    uri: a.uri,
    ...(a.step !== null ? { step: String(a.step) } : {}),
    bytes: String(a.bytes),
    sha256: a.sha256,
    emergency: a.emergency,
  };
}

/** Validates an agent's artifact report; errors name the field. */
export function artifactReportFromProto(p: pb.ArtifactReport): AgentArtifactReport {
  const bad = (f: string, m: string): AppError => AppError.invalid(`artifact.${f}: ${m}`, [{ field: `artifact.${f}`, message: m }]);
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(p.artifactId)) throw bad("artifact_id", "must be a UUID");
  if (!p.jobId) throw bad("job_id", "required");
  if (!(p.attempt >= 1)) throw bad("attempt", "must be >= 1");
  if (!p.uri) throw bad("uri", "required");
  if (!/^[0-9a-f]{64}$/.test(p.sha256)) throw bad("sha256", "must be 64 lowercase hex digits");
  const bytes = Number(p.bytes);
  if (!Number.isSafeInteger(bytes) || bytes < 0) throw bad("bytes", "must be >= 0");
  const step = p.step === undefined ? null : Number(p.step);
  if (step !== null && (!Number.isSafeInteger(step) || step < 0)) throw bad("step", "must be >= 0");
  const type = artifactTypeFromProto(p.type, "artifact.type");
  if (type === "checkpoint" && step === null) throw bad("step", "required for a checkpoint");
  return { artifactId: p.artifactId.toLowerCase(), taskId: p.taskId, jobId: p.jobId, attempt: p.attempt, nodeRank: p.nodeRank, type, uri: p.uri, step, bytes, sha256: p.sha256, emergency: p.emergency };
}

const STAGE_TO_PROTO: Record<InterruptionStage, pb.InterruptionStage> = {
  notice: pb.InterruptionStage.INTERRUPTION_STAGE_NOTICE,
  checkpointed: pb.InterruptionStage.INTERRUPTION_STAGE_CHECKPOINTED,
  checkpoint_failed: pb.InterruptionStage.INTERRUPTION_STAGE_CHECKPOINT_FAILED,
};

export function interruptionToProto(r: AgentInterruptionReport): pb.InterruptionReport {
  return {
    provider: r.provider,
    kind: r.kind,
    at: r.at ?? undefined,
    detail: r.detail,
    stage: STAGE_TO_PROTO[r.stage],
    message: r.message,
    tasks: r.tasks.map((t) => ({ ...t })),
  };
}

export function interruptionFromProto(p: pb.InterruptionReport): AgentInterruptionReport {
  const stage = (Object.entries(STAGE_TO_PROTO).find(([, v]) => v === p.stage)?.[0] ?? null) as InterruptionStage | null;
  if (stage === null) throw AppError.invalid(`interruption.stage: unknown stage ${p.stage}`, [{ field: "interruption.stage", message: "unknown" }]);
  return {
    provider: p.provider,
    kind: p.kind,
    at: p.at ?? null,
    detail: p.detail,
    stage,
    message: p.message,
    tasks: p.tasks.map((t) => ({ taskId: t.taskId, jobId: t.jobId, attempt: t.attempt })),
  };
}

export function stopToProto(c: TaskStopCommand): pb.StopTask {
  return { ...c };
}

export function stopFromProto(p: pb.StopTask): TaskStopCommand {
  if (!p.commandId || !p.taskId) throw AppError.invalid("stop: command_id and task_id are required", [{ field: "stop.task_id", message: "required" }]);
  return { commandId: p.commandId, taskId: p.taskId, jobId: p.jobId, attempt: p.attempt, reason: p.reason, graceSeconds: p.graceSeconds };
}

export function logChunkToProto(c: TaskLogChunk): pb.LogChunk {
  return { taskId: c.taskId, jobId: c.jobId, attempt: c.attempt, nodeRank: c.nodeRank, lines: c.lines.map((l) => ({ ...l })) };
}

export function logChunkFromProto(p: pb.LogChunk): TaskLogChunk {
  if (!p.jobId || !(p.attempt >= 1)) throw AppError.invalid("log_chunk: job_id and attempt are required", [{ field: "log_chunk.job_id", message: "required" }]);
  return {
    taskId: p.taskId,
    jobId: p.jobId,
    attempt: p.attempt,
    nodeRank: p.nodeRank,
    lines: p.lines.map((l) => ({ rank: l.rank, stream: l.stream === "stderr" ? "stderr" : "stdout", text: l.text, at: l.at ?? new Date(0) })),
  };
}

const JOB_TASK_STATE_TO_PROTO: Record<TaskState, pb.JobTaskState> = {
  assigned: pb.JobTaskState.JOB_TASK_STATE_ASSIGNED,
  running: pb.JobTaskState.JOB_TASK_STATE_RUNNING,
  succeeded: pb.JobTaskState.JOB_TASK_STATE_SUCCEEDED,
  failed: pb.JobTaskState.JOB_TASK_STATE_FAILED,
  stopped: pb.JobTaskState.JOB_TASK_STATE_STOPPED,
  lost: pb.JobTaskState.JOB_TASK_STATE_LOST,
};

export function jobTaskStateToProto(s: TaskState): pb.JobTaskState {
  return JOB_TASK_STATE_TO_PROTO[s];
}

export function jobTaskStateFromProto(s: pb.JobTaskState): TaskState {
  for (const [k, v] of Object.entries(JOB_TASK_STATE_TO_PROTO)) if (v === s) return k as TaskState;
  throw AppError.invalid(`unknown job task state ${s}`, [{ field: "state", message: `unknown ${s}` }]);
}

/** A task as `GetJob` shows it. */
export interface JobTaskView {
  id: string;
  attempt: number;
  nodeId: string;
  hostname: string;
  nodeRank: number;
  numNodes: number;
  unit: number;
  gpuIndices: number[];
  state: TaskState;
  exitCode: number | null;
  step: number | null;
  reason: string | null;
  startedAt: Date | null;
  endedAt: Date | null;
}

export function jobTaskToProto(t: JobTaskView): pb.JobTask {
  return {
    id: t.id,
    attempt: t.attempt,
    nodeId: t.nodeId,
    hostname: t.hostname,
    nodeRank: t.nodeRank,
    numNodes: t.numNodes,
    unit: t.unit,
    gpuIndices: t.gpuIndices,
    state: jobTaskStateToProto(t.state),
    ...(t.exitCode !== null ? { exitCode: t.exitCode } : {}),
    ...(t.step !== null ? { step: String(t.step) } : {}),
    reason: t.reason ?? "",
    startedAt: t.startedAt ?? undefined,
    endedAt: t.endedAt ?? undefined,
  };
}

export function jobTaskFromProto(p: pb.JobTask): JobTaskView {
  return {
    id: p.id,
    attempt: p.attempt,
    nodeId: p.nodeId,
    hostname: p.hostname,
    nodeRank: p.nodeRank,
    numNodes: p.numNodes,
    unit: p.unit,
    gpuIndices: [...p.gpuIndices],
    state: jobTaskStateFromProto(p.state),
    exitCode: p.exitCode ?? null,
    step: p.step === undefined ? null : Number(p.step),
    reason: p.reason || null,
    startedAt: p.startedAt ?? null,
    endedAt: p.endedAt ?? null,
  };
}

/** Canonical JSON of a task (snake_case, ISO times), as `gpuorch get --json` prints it. */
export function jobTaskToJson(t: JobTaskView): Record<string, unknown> {
  return {
    id: t.id,
    attempt: t.attempt,
    node_id: t.nodeId,
    hostname: t.hostname,
    node_rank: t.nodeRank,
    num_nodes: t.numNodes,
    unit: t.unit,
    gpu_indices: t.gpuIndices,
    state: t.state,
    exit_code: t.exitCode,
    step: t.step,
    reason: t.reason,
    started_at: t.startedAt?.toISOString() ?? null,
    ended_at: t.endedAt?.toISOString() ?? null,
  };
}
