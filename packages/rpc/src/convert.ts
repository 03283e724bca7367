import {
  AppError,
  type ArtifactType,
  type ExecutionMode,
  type Framework,
  type Job,
  type JobArtifact,
  type JobEvent,
  type JobStatus,
  type JobTarget,
  type JobType,
  PROVIDERS,
  type Provider,
} from "@gpuorch/core";
import * as pb from "@gpuorch/proto";

/**
 * A job as the wire carries it: the proto names the team, not its id, so a
 * job decoded from the wire has no `teamId`. A core `Job` is also a `WireJob`.
 */
export type WireJob = Omit<Job, "teamId">;

function badEnum(field: string, value: number): AppError {
  const what = value === 0 ? "is unspecified" : `has unknown value ${value}`;
  return AppError.invalid(`${field} ${what}`, [{ field, message: `${what}` }]);
}

// ---- JobStatus ----

export function jobStatusToProto(s: JobStatus): pb.JobStatus {
  switch (s) {
    case "pending":
      return pb.JobStatus.JOB_STATUS_PENDING;
    case "scheduled":
      return pb.JobStatus.JOB_STATUS_SCHEDULED;
    case "provisioning":
      return pb.JobStatus.JOB_STATUS_PROVISIONING;
    case "running":
      return pb.JobStatus.JOB_STATUS_RUNNING;
    case "checkpointing":
      return pb.JobStatus.JOB_STATUS_CHECKPOINTING;
    case "requeued":
      return pb.JobStatus.JOB_STATUS_REQUEUED;
    case "completed":
      return pb.JobStatus.JOB_STATUS_COMPLETED;
    case "failed":
      return pb.JobStatus.JOB_STATUS_FAILED;
    case "cancelled":
      return pb.JobStatus.JOB_STATUS_CANCELLED;
  }
}

/** UNSPECIFIED → null (e.g. a creating event's from_status, an absent filter); unknown values throw. */
export function jobStatusFromProtoOrNull(s: pb.JobStatus, field = "status"): JobStatus | null {
  switch (s) {
    case pb.JobStatus.JOB_STATUS_PENDING:
      return "pending";
    case pb.JobStatus.JOB_STATUS_SCHEDULED:
      return "scheduled";
    case pb.JobStatus.JOB_STATUS_PROVISIONING:
      return "provisioning";
    case pb.JobStatus.JOB_STATUS_RUNNING:
      return "running";
    case pb.JobStatus.JOB_STATUS_CHECKPOINTING:
      return "checkpointing";
    case pb.JobStatus.JOB_STATUS_REQUEUED:
      return "requeued";
    case pb.JobStatus.JOB_STATUS_COMPLETED:
      return "completed";
    case pb.JobStatus.JOB_STATUS_FAILED:
      return "failed";
    case pb.JobStatus.JOB_STATUS_CANCELLED:
      return "cancelled";
    case pb.JobStatus.JOB_STATUS_UNSPECIFIED:
      return null;
    case pb.JobStatus.UNRECOGNIZED:
      throw badEnum(field, s);
  }
  // Numbers outside the generated enum (a newer peer) arrive as plain numbers.
  throw badEnum(field, s);
}

/** Throws INVALID_ARGUMENT (naming `field`) for UNSPECIFIED and unknown values. */
export function jobStatusFromProto(s: pb.JobStatus, field = "status"): JobStatus {
  const v = jobStatusFromProtoOrNull(s, field);
  if (v === null) throw badEnum(field, s);
  return v;
}

// ---- JobType ----

export function jobTypeToProto(t: JobType): pb.JobType {
  switch (t) {
    case "training":
      return pb.JobType.JOB_TYPE_TRAINING;
    case "hpo":
      return pb.JobType.JOB_TYPE_HPO;
    case "inference":
      return pb.JobType.JOB_TYPE_INFERENCE;
    case "eval":
      return pb.JobType.JOB_TYPE_EVAL;
  }
}

export function jobTypeFromProto(t: pb.JobType, field = "type"): JobType {
  switch (t) {
    case pb.JobType.JOB_TYPE_TRAINING:
      return "training";
    case pb.JobType.JOB_TYPE_HPO:
      return "hpo";
    case pb.JobType.JOB_TYPE_INFERENCE:
      return "inference";
    case pb.JobType.JOB_TYPE_EVAL:
      return "eval";
    case pb.JobType.JOB_TYPE_UNSPECIFIED:
    case pb.JobType.UNRECOGNIZED:
      throw badEnum(field, t);
  }
  throw badEnum(field, t);
}

// ---- Framework ----

export function frameworkToProto(f: Framework): pb.Framework {
  switch (f) {
    case "pytorch_ddp":
      return pb.Framework.FRAMEWORK_PYTORCH_DDP;
    case "horovod":
      return pb.Framework.FRAMEWORK_HOROVOD;
    case "horovod_elastic":
      return pb.Framework.FRAMEWORK_HOROVOD_ELASTIC;
    case "tensorflow_multiworker":
      return pb.Framework.FRAMEWORK_TENSORFLOW_MULTIWORKER;
    case "pytorch":
      return pb.Framework.FRAMEWORK_PYTORCH;
    case "command":
      return pb.Framework.FRAMEWORK_COMMAND;
  }
}

export function frameworkFromProto(f: pb.Framework, field = "framework"): Framework {
  switch (f) {
    case pb.Framework.FRAMEWORK_PYTORCH_DDP:
      return "pytorch_ddp";
    case pb.Framework.FRAMEWORK_HOROVOD:
      return "horovod";
    case pb.Framework.FRAMEWORK_HOROVOD_ELASTIC:
      return "horovod_elastic";
    case pb.Framework.FRAMEWORK_TENSORFLOW_MULTIWORKER:
      return "tensorflow_multiworker";
    case pb.Framework.FRAMEWORK_PYTORCH:
      return "pytorch";
    case pb.Framework.FRAMEWORK_COMMAND:
      return "command";
    case pb.Framework.FRAMEWORK_UNSPECIFIED:
    case pb.Framework.UNRECOGNIZED:
      throw badEnum(field, f);
  }
  throw badEnum(field, f);
}

// ---- ExecutionMode ----

export function executionModeToProto(m: ExecutionMode): pb.ExecutionMode {
  switch (m) {
    case "single_cluster":
      return pb.ExecutionMode.EXECUTION_MODE_SINGLE_CLUSTER;
    case "multi_task":
      return pb.ExecutionMode.EXECUTION_MODE_MULTI_TASK;
  }
}

export function executionModeFromProto(m: pb.ExecutionMode, field = "execution_mode"): ExecutionMode {
  switch (m) {
    case pb.ExecutionMode.EXECUTION_MODE_SINGLE_CLUSTER:
      return "single_cluster";
    case pb.ExecutionMode.EXECUTION_MODE_MULTI_TASK:
      return "multi_task";
    case pb.ExecutionMode.EXECUTION_MODE_UNSPECIFIED:
    case pb.ExecutionMode.UNRECOGNIZED:
      throw badEnum(field, m);
  }
  throw badEnum(field, m);
}

// ---- ArtifactType ----

export function artifactTypeToProto(t: ArtifactType): pb.ArtifactType {
  switch (t) {
    case "checkpoint":
      return pb.ArtifactType.ARTIFACT_TYPE_CHECKPOINT;
    case "log":
      return pb.ArtifactType.ARTIFACT_TYPE_LOG;
    case "model":
      return pb.ArtifactType.ARTIFACT_TYPE_MODEL;
    case "metrics":
      return pb.ArtifactType.ARTIFACT_TYPE_METRICS;
  }
}

/** UNSPECIFIED → null (ListArtifacts: every type); unknown values throw. */
export function artifactTypeFromProtoOrNull(t: pb.ArtifactType, field = "type"): ArtifactType | null {
  switch (t) {
    case pb.ArtifactType.ARTIFACT_TYPE_CHECKPOINT:
      return "checkpoint";
    case pb.ArtifactType.ARTIFACT_TYPE_LOG:
      return "log";
    case pb.ArtifactType.ARTIFACT_TYPE_MODEL:
      return "model";
    case pb.ArtifactType.ARTIFACT_TYPE_METRICS:
      return "metrics";
    case pb.ArtifactType.ARTIFACT_TYPE_UNSPECIFIED:
      return null;
    case pb.ArtifactType.UNRECOGNIZED:
      throw badEnum(field, t);
  }
  throw badEnum(field, t);
}

export function artifactTypeFromProto(t: pb.ArtifactType, field = "type"): ArtifactType {
  const v = artifactTypeFromProtoOrNull(t, field);
  if (v === null) throw badEnum(field, t);
  return v;
}

// ---- messages ----

function malformed(field: string): AppError {
  return new AppError("INTERNAL", `malformed message: ${field} is missing`, { reason: "malformed_message" });
}

function requireDate(d: Date | undefined, field: string): Date {
  if (!d) throw malformed(field);
  return d;
}

function orNull(s: string): string | null {
  return s === "" ? null : s;
}

export function targetToProto(t: JobTarget): pb.Target {
  return {
    provider: t.provider,
    region: t.region,
    zone: t.zone ?? "",
    instanceType: t.instanceType,
    instanceCount: t.instanceCount,
    spot: t.spot,
  };
}

export function targetFromProto(t: pb.Target, field = "target"): JobTarget {
  if (!(PROVIDERS as readonly string[]).includes(t.provider)) {
    throw AppError.invalid(`${field}.provider has unknown value ${JSON.stringify(t.provider)}`, [
      { field: `${field}.provider`, message: `unknown provider ${JSON.stringify(t.provider)}` },
    ]);
  }
  return {
    provider: t.provider as Provider,
    region: t.region,
    zone: orNull(t.zone),
    instanceType: t.instanceType,
    instanceCount: t.instanceCount,
    spot: t.spot,
  };
}

/** Nulls become empty strings / unset timestamps; `version` becomes a decimal string. */
export function jobToProto(job: WireJob, opts: { includeSpec?: boolean } = {}): pb.Job {
  return {
    id: job.id,
    name: job.name,
    team: job.teamName,
    project: job.project ?? "",
    type: jobTypeToProto(job.type),
    framework: frameworkToProto(job.framework),
    executionMode: executionModeToProto(job.executionMode),
    status: jobStatusToProto(job.status),
    statusReason: job.statusReason ?? "",
    priority: job.priority,
    attempt: job.attempt,
    maxAttempts: job.maxAttempts,
    gpus: job.gpus,
    specYaml: opts.includeSpec === false ? "" : job.specYaml,
    budgetUsd: job.budgetUsd ?? "",
    estimatedCostUsd: job.estimatedCostUsd ?? "",
    runningCostUsd: job.runningCostUsd,
    target: job.target ? targetToProto(job.target) : undefined,
    deadline: job.deadline ?? undefined,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
    scheduledAt: job.scheduledAt ?? undefined,
    startedAt: job.startedAt ?? undefined,
    finishedAt: job.finishedAt ?? undefined,
    version: String(job.version),
  };
}

export function jobFromProto(p: pb.Job): WireJob {
  return {
    id: p.id,
    teamName: p.team,
    name: p.name,
    project: orNull(p.project),
    type: jobTypeFromProto(p.type, "job.type"),
    framework: frameworkFromProto(p.framework, "job.framework"),
    executionMode: executionModeFromProto(p.executionMode, "job.execution_mode"),
    status: jobStatusFromProto(p.status, "job.status"),
    statusReason: orNull(p.statusReason),
    priority: p.priority,
    attempt: p.attempt,
    maxAttempts: p.maxAttempts,
    version: Number(p.version),
    gpus: p.gpus,
    specYaml: p.specYaml,
    budgetUsd: orNull(p.budgetUsd),
    deadline: p.deadline ?? null,
    estimatedCostUsd: orNull(p.estimatedCostUsd),
    runningCostUsd: p.runningCostUsd === "" ? "0" : p.runningCostUsd,
    target: p.target ? targetFromProto(p.target, "job.target") : null,
    createdAt: requireDate(p.createdAt, "job.created_at"),
    updatedAt: requireDate(p.updatedAt, "job.updated_at"),
    scheduledAt: p.scheduledAt ?? null,
    startedAt: p.startedAt ?? null,
    finishedAt: p.finishedAt ?? null,
  };
}

export function jobEventToProto(e: JobEvent): pb.JobEvent {
  return {
    jobId: e.jobId,
    seq: String(e.seq),
    fromStatus: e.fromStatus ? jobStatusToProto(e.fromStatus) : pb.JobStatus.JOB_STATUS_UNSPECIFIED,
    toStatus: jobStatusToProto(e.toStatus),
    attempt: e.attempt,
    reason: e.reason,
    actor: e.actor,
    createdAt: e.createdAt,
  };
}

export function jobEventFromProto(p: pb.JobEvent): JobEvent {
  return {
    jobId: p.jobId,
    seq: Number(p.seq),
    fromStatus: jobStatusFromProtoOrNull(p.fromStatus, "event.from_status"),
    toStatus: jobStatusFromProto(p.toStatus, "event.to_status"),
    attempt: p.attempt,
    reason: p.reason,
    actor: p.actor,
    createdAt: requireDate(p.createdAt, "event.created_at"),
  };
}

/** `step` and `bytes` are optional in the domain; `has_step`/`has_bytes` carry presence. */
export function artifactToProto(a: JobArtifact): pb.Artifact {
  return {
    id: a.id,
    jobId: a.jobId,
    attempt: a.attempt,
    type: artifactTypeToProto(a.type),
    uri: a.uri,
    step: String(a.step ?? 0),
    hasStep: a.step !== null,
    bytes: String(a.bytes ?? 0),
    hasBytes: a.bytes !== null,
    sha256: a.sha256 ?? "",
    createdAt: a.createdAt,
  };
}

export function artifactFromProto(p: pb.Artifact): JobArtifact {
  return {
    id: p.id,
    jobId: p.jobId,
    attempt: p.attempt,
    type: artifactTypeFromProto(p.type, "artifact.type"),
    uri: p.uri,
    step: p.hasStep ? Number(p.step) : null,
    bytes: p.hasBytes ? Number(p.bytes) : null,
    sha256: orNull(p.sha256),
    createdAt: requireDate(p.createdAt, "artifact.created_at"),
  };
}

// ---- canonical JSON (HTTP admin API and `gpuorch … --json`) ----

export interface TargetJson {
  provider: Provider;
  region: string;
  zone: string | null;
  instance_type: string;
  instance_count: number;
  spot: boolean;
}

export interface JobJson {
  id: string;
  name: string;
  team: string;
  project: string | null;
  type: JobType;
  framework: Framework;
  execution_mode: ExecutionMode;
  status: JobStatus;
  status_reason: string | null;
  priority: number;
  attempt: number;
  max_attempts: number;
  gpus: number;
  budget_usd: string | null;
  estimated_cost_usd: string | null;
  running_cost_usd: string;
  selected_target: TargetJson | null;
  deadline: string | null;
  created_at: string;
  updated_at: string;
  scheduled_at: string | null;
  started_at: string | null;
  finished_at: string | null;
  version: number;
  spec_yaml?: string;
}

export interface JobEventJson {
  job_id: string;
  seq: number;
  from_status: JobStatus | null;
  to_status: JobStatus;
  attempt: number;
  reason: string;
  actor: string;
  created_at: string;
}

export interface ArtifactJson {
  id: string;
  job_id: string;
  attempt: number;
  type: ArtifactType;
  uri: string;
  step: number | null;
  bytes: number | null;
  sha256: string | null;
  created_at: string;
}

function iso(d: Date | null): string | null {
  return d ? d.toISOString() : null;
}

/** Snake_case, ISO-8601 timestamps, nulls kept; `spec_yaml` only with `includeSpec`. */
export function jobToJson(job: WireJob, opts: { includeSpec?: boolean } = {}): JobJson {
  const t = job.target;
  const out: JobJson = {
    id: job.id,
    name: job.name,
    team: job.teamName,
    project: job.project,
    type: job.type,
    framework: job.framework,
    execution_mode: job.executionMode,
    status: job.status,
    status_reason: job.statusReason,
    priority: job.priority,
    attempt: job.attempt,
    max_attempts: job.maxAttempts,
    gpus: job.gpus,
    budget_usd: job.budgetUsd,
    estimated_cost_usd: job.estimatedCostUsd,
    running_cost_usd: job.runningCostUsd,
    selected_target: t
      ? {
          provider: t.provider,
          region: t.region,
          zone: t.zone,
          instance_type: t.instanceType,
          instance_count: t.instanceCount,
          spot: t.spot,
        }
      : null,
    deadline: iso(job.deadline),
    created_at: job.createdAt.toISOString(),
    updated_at: job.updatedAt.toISOString(),
    scheduled_at: iso(job.scheduledAt),
    started_at: iso(job.startedAt),
    finished_at: iso(job.finishedAt),
    version: job.version,
  };
  if (opts.includeSpec) out.spec_yaml = job.specYaml;
  return out;
}

export function jobEventToJson(e: JobEvent): JobEventJson {
  return {
    job_id: e.jobId,
    seq: e.seq,
    from_status: e.fromStatus,
    to_status: e.toStatus,
    attempt: e.attempt,
    reason: e.reason,
    actor: e.actor,
    created_at: e.createdAt.toISOString(),
  };
}

export function artifactToJson(a: JobArtifact): ArtifactJson {
  return {
    id: a.id,
    job_id: a.jobId,
    attempt: a.attempt,
    type: a.type,
    uri: a.uri,
    step: a.step,
    bytes: a.bytes,
    sha256: a.sha256,
    created_at: a.createdAt.toISOString(),
  };
}
