import type { CatalogOffer, CloudProvider } from "../catalog.js";
import type { CostModelOptions } from "../cost/cost-model.js";
import type { ExecutionMode } from "../job-status.js";

export type PlanProvider = CloudProvider | "onprem";

/**
 * Capacity limits the catalog does not carry. The defaults are conservative
 * assumptions, not provider limits: real ceilings are the account's GPU quotas
 * (AWS "Running On-Demand P/G instances" vCPU quotas, GCP GPUS_ALL_REGIONS,
 * Azure per-family vCPU quotas), which start low on new accounts. Set them
 * from your quotas.
 */
export interface OptimizerLimits {
  /** requires_multi_node: most nodes of one gang, per provider. Default 16 for each cloud, 1024 on-prem. */
  maxNodesPerCluster?: Partial<Record<PlanProvider, number>>;
  /** multi_task: most on-demand instances of one offer (instance type × region × zone). Default 16. */
  maxInstancesPerOffer?: number;
  /**
   * multi_task: most spot instances of one offer. Default
   * max(1, floor(maxInstancesPerOffer × spotAvailability)): spot pools run dry
   * sooner than on-demand ones.
   */
  maxSpotInstancesPerOffer?: number;
}

export const DEFAULT_MAX_NODES_PER_CLUSTER: Readonly<Record<PlanProvider, number>> = Object.freeze({
  aws: 16,
  gcp: 16,
  azure: 16,
  onprem: 1024,
});
export const DEFAULT_MAX_INSTANCES_PER_OFFER = 16;

export interface OptimizeOptions extends CostModelOptions {
  /** "Now", epoch milliseconds: completion times and the deadline check start here. */
  nowMs: number;
  /** Where the dataset is, when the caller knows more than the URI says (the bucket's region). */
  datasetLocation?: { provider: PlanProvider; region: string } | null;
  limits?: OptimizerLimits;
  /** Most alternatives returned (feasible and infeasible together). Default 20. */
  maxAlternatives?: number;
}

/** One place a plan runs: a group of identical cloud instances, or registered nodes. */
export interface PlanTarget {
  kind: "cloud" | "existing";
  provider: PlanProvider;
  region: string;
  /** "" unless the offer is an AWS Local/Wavelength zone. */
  zone: string;
  /** Cloud instance type; "" for registered nodes. */
  instanceType: string;
  /** Registered nodes used (kind "existing"), sorted; empty for cloud. */
  nodeIds: string[];
  gpuType: string;
  /** Per full GPU, GB. */
  gpuMemoryGb: number;
  /** GPUs of one instance (fractional for partition rows), or GPUs taken on each registered node. */
  gpusPerNode: number;
  /** Instances (cloud) or registered nodes (existing). */
  nodes: number;
  spot: boolean;
  /** Tasks run here: 1 for single_cluster; multi_task splits execution.tasks over targets. */
  units: number;
  /** What this target bills per hour: nodes × instance price, or GPUs × internal rate. */
  microsPerHour: bigint;
  /** Hours the target is held without interruptions (multi_task: waves × unit hours). */
  baseHours: number;
  /** Hours including expected spot interruptions. */
  expectedHours: number;
  expectedInterruptions: number;
  computeMicros: bigint;
  spotOverheadMicros: bigint;
  egressMicros: bigint;
  totalMicros: bigint;
  reliability: number;
  /** The catalog row to provision (kind "cloud"). */
  offer: CatalogOffer | null;
}

export interface PlanCandidate {
  mode: ExecutionMode;
  targets: PlanTarget[];
  /** Any target on spot. */
  spot: boolean;
  /** Sum of the targets' hourly bills. */
  microsPerHour: bigint;
  /** Expected hours until the whole job is done (multi_task: makespan). */
  hours: number;
  computeMicros: bigint;
  /** Data transfer, including pre-stage copies. */
  egressMicros: bigint;
  /** Expected extra compute spent on spot interruptions. */
  spotOverheadMicros: bigint;
  /** compute + spot overhead + egress: the expected cost. */
  totalMicros: bigint;
  expectedInterruptions: number;
  /** single_cluster: of its one target; multi_task: of the weakest target (every unit must finish). */
  reliability: number;
  /** nowMs + hours. */
  completionMs: number;
  /** Lower is better; Infinity when infeasible. See optimizer/README.md. */
  score: number;
  feasible: boolean;
  /** Constraints broken, each with numbers ("over budget $143.20 > $100.00"). */
  violations: string[];
  /** Why this candidate is not the best; null for the best. */
  reason: string | null;
  /** "8×A100-80GB spot, aws us-east-1 p4de.24xlarge×1, 20.0 h, $143.20". */
  summary: string;
}

export const REJECTION_CODES = [
  "provider",
  "region",
  "accelerator",
  "gpu_type",
  "gpu_memory",
  "fraction",
  "mig",
  "gpu_count",
  "max_gpus_per_node",
  "interconnect",
  "node_cap",
  "data_locality",
  "budget",
  "deadline",
  "reliability",
  "capacity",
] as const;
export type RejectionCode = (typeof REJECTION_CODES)[number];

/** How many offers / nodes / candidates a constraint removed, with a readable example. */
export interface Rejection {
  code: RejectionCode;
  count: number;
  message: string;
}

export interface OptimizeResult {
  mode: ExecutionMode;
  best: PlanCandidate | null;
  /** Ranked: feasible by score, then infeasible by cost; each with `reason`. */
  alternatives: PlanCandidate[];
  /** What filtered offers and candidates out, largest first. */
  rejections: Rejection[];
  /** When `best` is null: the binding constraint with numbers (shown to users at submit). */
  binding: string | null;
  /** Assumptions the plan rests on ("estimated_hours not set: assumed 1 h on A100"). */
  notes: string[];
  /** Candidates evaluated (single_cluster) or DP targets (multi_task). */
  evaluated: number;
}
