/**
 * The normalized job spec: what `parseJobSpec` returns when a YAML spec is
 * valid. Keys are snake_case exactly as users write them in YAML; defaults are
 * applied and derived fields (sizes in GB, execution mode, task count, URI
 * kinds) are filled in. Optional settings the user left out are absent
 * (`undefined`), never guessed.
 *
 * The vocabularies below mirror `@gpuorch/core` (job-status.ts) on purpose:
 * spec depends on nothing of ours, and the literal unions are structurally
 * identical, so a `JobSpec` field assigns to the core type without casts.
 */

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

export const DATA_LOCALITIES = ["prefer", "required", "ignore"] as const;
export type DataLocality = (typeof DATA_LOCALITIES)[number];
/** How the agent asks a job for a checkpoint now: SIGUSR1 to its processes (plus the trigger file), or the trigger file only. */
export const CHECKPOINT_TRIGGER_KINDS = ["signal", "file"] as const;
export type CheckpointTriggerKind = (typeof CHECKPOINT_TRIGGER_KINDS)[number];

export const REPLICATION_POLICIES = ["none", "pre-stage", "on-demand-cache"] as const;
export type ReplicationPolicy = (typeof REPLICATION_POLICIES)[number];

export const HPO_PARAMETER_TYPES = ["uniform", "loguniform", "int", "choice"] as const;
export type HpoParameterType = (typeof HPO_PARAMETER_TYPES)[number];

export const OBJECTIVE_DIRECTIONS = ["minimize", "maximize"] as const;
export type ObjectiveDirection = (typeof OBJECTIVE_DIRECTIONS)[number];

/**
 * Where a URI points. `local` is a path on the submitting machine (the CLI
 * uploads it); the others name a storage backend or a git remote.
 */
export const URI_KINDS = ["local", "file", "s3", "gs", "az", "minio", "git"] as const;
export type UriKind = (typeof URI_KINDS)[number];

/** One validation problem, located in the YAML source. */
export interface SpecIssue {
  /** Dotted YAML path (`resources.gpus`, `entrypoint.args[2]`); `""` for the whole document. */
  path: string;
  /** 1-based line, or null when the problem has no single place (e.g. the input is too large). */
  line: number | null;
  /** 1-based column (UTF-16 code units, as editors count), or null. */
  column: number | null;
  message: string;
}

export type ParseResult = { ok: true; spec: JobSpec } | { ok: false; issues: SpecIssue[] };

export type HpoParameter =
  | { type: "uniform"; min: number; max: number }
  | { type: "loguniform"; min: number; max: number }
  | { type: "int"; min: number; max: number }
  | { type: "choice"; values: Array<string | number | boolean> };

export type JobSpec = {
  /** Spec format version; only 1 exists. */
  version: 1;
  job: {
    /** DNS label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters. */
    name: string;
    type: JobType;
    framework: Framework;
    /** The controller takes the team from the caller's token; this may only confirm it. */
    team?: string;
    project?: string;
    estimated_hours?: number;
  };
  entrypoint: {
    uri?: string;
    /** Derived from `uri`. */
    uri_kind?: UriKind;
    /**
     * The program to run. A YAML list is kept as the argv; a YAML string is
     * kept as a one-element list with `command_shell: true` (run it with
     * `sh -c`). Absent only when `uri` is itself a script (.py / .sh).
     */
    command?: string[];
    /** Derived: true when `command` was written as one string. */
    command_shell: boolean;
    args: string[];
    env: Record<string, string>;
    working_dir?: string;
  };
  resources: {
    /** Whole GPUs; exactly 1 when `gpu_fraction` or `mig_profile` is set. */
    gpus: number;
    max_gpus_per_node?: number;
    requires_multi_node: boolean;
    /** Per-GPU memory in decimal gigabytes (1 GB = 10^9 bytes), from `gpu_memory`. */
    gpu_memory_gb?: number;
    /** Node memory in decimal gigabytes, from `cpu_memory`. */
    cpu_memory_gb?: number;
    /** Local disk in decimal gigabytes, from `storage`. */
    storage_gb?: number;
    /** Acceptable GPU models in canonical catalog spelling; empty = any. */
    gpu_type: string[];
    gpu_fraction?: number;
    /** Canonical lower-case MIG GPU-instance profile, e.g. `1g.10gb`. */
    mig_profile?: string;
  };
  data: {
    dataset?: string;
    /** Derived from `dataset`. */
    dataset_kind?: Exclude<UriKind, "git">;
    size_gb?: number;
    locality: DataLocality;
    replication_policy: ReplicationPolicy;
    /** The agent downloads the dataset into its node cache before launch (GPUORCH_DATASET_DIR). */
    fetch: boolean;
  };
  constraints: {
    /** Decimal string, at most 6 fraction digits, exactly as written (e.g. "500", "12.50"). */
    budget_usd?: string;
    /** ISO 8601 instant normalized to UTC, e.g. "2026-12-01T18:00:00.000Z". */
    deadline?: string;
    allow_spot: boolean;
    min_reliability: number;
    performance_weight: number;
    /** Empty = every provider. */
    allowed_providers: Provider[];
    excluded_providers: Provider[];
    /** Empty = every region. */
    allowed_regions: string[];
    excluded_regions: string[];
    /** 0..1000, higher runs first. */
    priority: number;
  };
  execution: {
    mode: ExecutionMode;
    /** Derived: true when `mode` was not written and was derived from framework and type. */
    mode_derived: boolean;
    /** Independent units: hpo.trials for hpo, `tasks` (default 1) otherwise. */
    tasks: number;
    max_parallel?: number;
  };
  /** Present exactly when `job.type` is `hpo`. */
  hpo?: {
    trials: number;
    parameters: Record<string, HpoParameter>;
    objective: { metric: string; direction: ObjectiveDirection };
  };
  checkpoint: {
    interval_seconds?: number;
    interval_steps?: number;
    keep: number;
    trigger: CheckpointTriggerKind;
    uri?: string;
    /** Derived from `uri`. */
    uri_kind?: Exclude<UriKind, "git">;
  };
  retry: {
    max_attempts: number;
  };
};
