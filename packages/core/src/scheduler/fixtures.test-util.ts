import type { SchedGpu, SchedJob, SchedNode } from "./types.js";

/** Test-only builders with defaults; not exported from the package. */

export interface NodeOpts {
  state?: SchedNode["state"];
  provider?: string;
  region?: string;
  zone?: string | null;
  network?: string;
  instanceType?: string;
  model?: string;
  memoryGb?: number;
  gpus?: number;
  /** GPU index -> job id holding it. */
  busy?: Record<number, string>;
  gpuList?: SchedGpu[];
}

export function node(id: string, o: NodeOpts = {}): SchedNode {
  const count = o.gpus ?? 8;
  const gpus: SchedGpu[] =
    o.gpuList ??
    Array.from({ length: count }, (_, index) => ({
      index,
      uuid: `GPU-${id}-${index}`,
      model: o.model ?? "A100-80GB",
      memoryGb: o.memoryGb ?? 80,
      allocatedTo: o.busy?.[index] ?? null,
    }));
  return {
    id,
    state: o.state ?? "ready",
    provider: o.provider ?? "aws",
    region: o.region ?? "us-east-1",
    zone: o.zone ?? null,
    network: o.network ?? "net-a",
    instanceType: o.instanceType ?? "p4de.24xlarge",
    gpus,
  };
}

/** Mark the first `n` GPUs of a node busy with `jobId`. */
export function busyFirst(n: number, jobId = "running"): Record<number, string> {
  const out: Record<number, string> = {};
  for (let i = 0; i < n; i++) out[i] = jobId;
  return out;
}

export function job(id: string, o: Partial<SchedJob> = {}): SchedJob {
  return {
    id,
    priority: 500,
    deadline: null,
    createdAt: new Date("2026-11-01T00:00:00Z"),
    gpus: 1,
    maxGpusPerNode: null,
    requiresMultiNode: false,
    gpuMemoryGb: null,
    gpuTypes: [],
    executionMode: "single_cluster",
    tasks: 1,
    ...o,
  };
}
