/**
 * Input and output of `placeJobs`. These are the scheduler's own small types: core depends on
 * nothing of ours, so the controller maps a normalized JobSpec and the node inventory onto them.
 */

/** `preempting`: the cloud announced the instance's interruption; it takes no new tasks and is expected to go. */
export const NODE_STATES = ["ready", "unreachable", "lost", "draining", "preempting"] as const;
export type NodeState = (typeof NODE_STATES)[number];

export type PlacementExecutionMode = "single_cluster" | "multi_task";

/** One whole GPU on a registered node. `model` is the normalized catalog spelling ("A100-80GB"). */
export interface SchedGpu {
  index: number;
  uuid: string;
  model: string;
  memoryGb: number;
  /** The job holding this GPU now, or null when free. */
  allocatedTo: string | null;
}

export interface SchedNode {
  id: string;
  state: NodeState;
  provider: string;
  region: string;
  zone: string | null;
  /** Network (VPC / fabric) label; a gang only spans nodes with the same label. */
  network: string;
  instanceType: string;
  gpus: readonly SchedGpu[];
}

export interface SchedJob {
  id: string;
  /** 0..1000, higher first. */
  priority: number;
  deadline: Date | null;
  createdAt: Date;
  /**
   * Whole GPUs: for single_cluster the job's total; for multi_task the size of ONE unit.
   * A job asking for a fraction or a MIG slice is mapped to 1 by the caller (whole-GPU placement).
   */
  gpus: number;
  maxGpusPerNode: number | null;
  requiresMultiNode: boolean;
  /** Per-GPU memory floor in GB; null = any. */
  gpuMemoryGb: number | null;
  /** Acceptable GPU models; empty = any. */
  gpuTypes: readonly string[];
  executionMode: PlacementExecutionMode;
  /** multi_task: number of units (trials / shards). Ignored for single_cluster. */
  tasks: number;
  /**
   * multi_task: 0-based unit numbers still waiting for GPUs (others already run).
   * Omitted = every unit 0..tasks-1.
   */
  pendingUnits?: readonly number[];
}

export interface SchedSnapshot {
  jobs: readonly SchedJob[];
  nodes: readonly SchedNode[];
}

export interface PlaceOptions {
  /**
   * How many blocked single_cluster jobs (in queue order) may hold a backfill reservation.
   * Default 1: the head blocked job. 0 turns reservations off (pure greedy backfill).
   */
  maxReservations?: number;
}

export interface NodeGpus {
  nodeId: string;
  gpuIndices: number[];
}

export interface Placement {
  jobId: string;
  /** One entry for a single-node job or unit; N entries (sorted by node id) for a gang. */
  nodes: NodeGpus[];
  /** multi_task only: the unit number placed. */
  unit?: number;
}

export interface PendingJob {
  jobId: string;
  /** Names the binding constraint with numbers. */
  reason: string;
  /** True when no registered node set could ever hold the job, even with every GPU free. */
  neverFits: boolean;
  /** multi_task: units placed by this call and units still waiting. */
  unitsPlaced?: number;
  unitsPending?: number;
  /**
   * Backfill reservation: free GPUs held for this job so later (lower-order) jobs cannot take
   * them; `gpuIndices` may be empty when the target nodes have nothing free yet.
   */
  reservation?: NodeGpus[];
}

export interface PlacementDecision {
  placements: Placement[];
  pending: PendingJob[];
}
