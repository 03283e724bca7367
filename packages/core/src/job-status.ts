/** Every state a job can be in. Terminal states never change again. */
export const JOB_STATUSES = [
  "pending",
  "scheduled",
  "provisioning",
  "running",
  "checkpointing",
  "requeued",
  "completed",
  "failed",
  "cancelled",
] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TERMINAL_STATUSES: ReadonlySet<JobStatus> = new Set(["completed", "failed", "cancelled"]);

export function isTerminal(s: JobStatus): boolean {
  return TERMINAL_STATUSES.has(s);
}

export function isJobStatus(s: string): s is JobStatus {
  return (JOB_STATUSES as readonly string[]).includes(s);
}

export const JOB_TYPES = ["training", "hpo", "inference", "eval"] as const;
export type JobType = (typeof JOB_TYPES)[number];

export const FRAMEWORKS = [
  "pytorch_ddp",
  "horovod",
  "horovod_elastic",
  "tensorflow_multiworker",
  "pytorch",
  "command",
] as const;
export type Framework = (typeof FRAMEWORKS)[number];

/** Frameworks whose ranks train synchronously and so must share one cluster. */
export const SYNCHRONOUS_FRAMEWORKS: ReadonlySet<Framework> = new Set([
  "pytorch_ddp",
  "horovod",
  "horovod_elastic",
  "tensorflow_multiworker",
]);

export const EXECUTION_MODES = ["single_cluster", "multi_task"] as const;
export type ExecutionMode = (typeof EXECUTION_MODES)[number];

export const PROVIDERS = ["aws", "gcp", "azure", "onprem"] as const;
export type Provider = (typeof PROVIDERS)[number];

export const ARTIFACT_TYPES = ["checkpoint", "log", "model", "metrics"] as const;
export type ArtifactType = (typeof ARTIFACT_TYPES)[number];
