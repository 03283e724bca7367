import type { ExecutionMode, Framework, JobType, Provider } from "../job-status.js";

/**
 * The part of a normalized job spec (`@gpuorch/spec` JobSpec) that the cost
 * model and the optimizer read. core may not import @gpuorch/spec, so this is
 * a structural subset: every key is spelled exactly as in JobSpec (snake_case)
 * and has the same type, so a JobSpec value assigns to it without a cast.
 * Arrays are `readonly` here, which only widens what is accepted.
 *
 * Keep it in step with packages/spec/src/types.ts. The compile-time guard
 * lives where both packages are visible (see optimizer/README.md, "Wiring").
 */
export interface OptimizerSpec {
  job: {
    type: JobType;
    framework: Framework;
    /** Hours of one run (multi_task: of one unit) on the reference GPU; see `referenceGpuType`. */
    estimated_hours?: number;
  };
  resources: {
    /** single_cluster: total GPUs; multi_task: GPUs of one unit. Exactly 1 with gpu_fraction / mig_profile. */
    gpus: number;
    max_gpus_per_node?: number;
    requires_multi_node: boolean;
    /** Per-GPU memory floor, decimal GB. */
    gpu_memory_gb?: number;
    /** Acceptable catalog GPU types; empty = any (NVIDIA unless the framework is `command` naming others). */
    gpu_type: readonly string[];
    gpu_fraction?: number;
    mig_profile?: string;
  };
  data: {
    dataset?: string;
    dataset_kind?: OptimizerDatasetKind;
    size_gb?: number;
    locality: OptimizerDataLocality;
    replication_policy: OptimizerReplicationPolicy;
  };
  constraints: {
    /** Decimal dollars as written ("500", "12.50"). */
    budget_usd?: string;
    /** ISO 8601 instant. */
    deadline?: string;
    allow_spot: boolean;
    min_reliability: number;
    performance_weight: number;
    allowed_providers: readonly Provider[];
    excluded_providers: readonly Provider[];
    allowed_regions: readonly string[];
    excluded_regions: readonly string[];
  };
  execution: {
    mode: ExecutionMode;
    tasks: number;
    max_parallel?: number;
  };
  checkpoint: {
    interval_seconds?: number;
    interval_steps?: number;
  };
  retry: {
    max_attempts: number;
  };
}

/** Same literals as the spec's DATA_LOCALITIES. */
export type OptimizerDataLocality = "prefer" | "required" | "ignore";
/** Same literals as the spec's REPLICATION_POLICIES. */
export type OptimizerReplicationPolicy = "none" | "pre-stage" | "on-demand-cache";
/** Same literals as the spec's `Exclude<UriKind, "git">`. */
export type OptimizerDatasetKind = "local" | "file" | "s3" | "gs" | "az" | "minio";
