import { AppError } from "../app-error.js";
import type { CatalogOffer, Catalog, ExistingNodeCapacity } from "../catalog.js";
import { MIG_CAPABLE_GPU_TYPES, isNvidiaGpuType, migProfileMemoryGb, requiresNvidia } from "../cost/accelerators.js";
import { checkpointIntervalHours, resolveCostModel, type CostModel } from "../cost/cost-model.js";
import { datasetLocation, sourceEgress, transferMicros, type DataLocation, type SourceEgress } from "../cost/egress.js";
import type { OptimizerSpec } from "../cost/optimizer-spec.js";
import { hoursOnGpu, referenceGpuType } from "../cost/performance.js";
import type { ExecutionMode, JobType, Provider } from "../job-status.js";
import { parseUsdMicros } from "../micros.js";
import {
  DEFAULT_MAX_INSTANCES_PER_OFFER,
  DEFAULT_MAX_NODES_PER_CLUSTER,
  type OptimizeOptions,
  type PlanProvider,
  type RejectionCode,
} from "./types.js";

/**
 * The spec, options and catalog boiled down once per `optimize` call into the
 * plain numbers and sets the hot loops test; every assumption taken here is
 * written to `notes` so the plan shows it.
 */
export interface Requirement {
  mode: ExecutionMode;
  /** single_cluster with requires_multi_node (ignored for multi_task, as in the scheduler). */
  multiNode: boolean;
  /** single_cluster: all GPUs; multi_task: GPUs of one unit. */
  gpus: number;
  /** GPUs one unit occupies on a registered node: 1 for a fraction or MIG slice (placed whole). */
  nodeGpusPerUnit: number;
  maxPerNode: number;
  memGb: number;
  types: ReadonlySet<string> | null;
  nvidiaOnly: boolean;
  fraction: number | null;
  mig: boolean;
  migMemGb: number;
  allowedProviders: ReadonlySet<string> | null;
  excludedProviders: ReadonlySet<string>;
  allowedRegions: ReadonlySet<string> | null;
  excludedRegions: ReadonlySet<string>;
  jobType: JobType;
  refGpu: string;
  refHours: number;
  checkpointHours: number | null;
  allowSpot: boolean;
  budgetMicros: bigint | null;
  deadlineMs: number | null;
  /** Hours from now to the deadline (Infinity without one): a plan meets it when its hours ≤ this. */
  availHours: number;
  minReliability: number;
  weight: number;
  maxAttempts: number;
  tasks: number;
  /** multi_task: units running at once, min(tasks, max_parallel). */
  parallel: number;
  /** multi_task: ceil(tasks / parallel), the waves each slot runs back to back. */
  waves: number;
  data: DataPlan;
  model: CostModel;
  nowMs: number;
  nodeCap: Readonly<Record<PlanProvider, number>>;
  maxInstancesPerOffer: number;
  maxSpotInstancesPerOffer: number | null;
  maxAlternatives: number;
  notes: string[];
  hoursByGpu: Map<string, number>;
}

/** How the dataset is charged: see optimizer/README.md "Data transfer". */
export interface DataPlan {
  loc: DataLocation | null;
  src: SourceEgress | null;
  sizeGb: number;
  /** Transfer cost counted at all (locality ≠ ignore, a known location and a size). */
  priced: boolean;
  /** locality required with replication none: nodes must sit where the data is. */
  pinned: boolean;
  policy: OptimizerSpec["data"]["replication_policy"];
}

export function buildRequirement(spec: OptimizerSpec, catalog: Catalog, options: OptimizeOptions): Requirement {
  const notes: string[] = [];
  const model = resolveCostModel(options);
  const res = spec.resources;
  const c = spec.constraints;
  const mode = spec.execution.mode;

  let refHours = spec.job.estimated_hours ?? model.defaultEstimatedHours;
  const refGpu = referenceGpuType(res.gpu_type);
  if (spec.job.estimated_hours === undefined) {
    notes.push(`job.estimated_hours not set: assumed ${refHours} h${mode === "multi_task" ? " per task" : ""} on ${refGpu}`);
  }
  if (!(refHours >= 0) || !Number.isFinite(refHours)) refHours = model.defaultEstimatedHours;

  const checkpointHours = checkpointIntervalHours(spec.checkpoint, model);
  if (spec.checkpoint.interval_seconds === undefined && spec.checkpoint.interval_steps !== undefined) {
    notes.push(`checkpoint.interval_steps cannot be timed: spot restarts assume a checkpoint every ${model.stepCheckpointHours} h`);
  }

  let budgetMicros: bigint | null = null;
  if (c.budget_usd !== undefined) {
    try {
      budgetMicros = parseUsdMicros(c.budget_usd);
    } catch (e) {
      throw new AppError("INVALID_ARGUMENT", `constraints.budget_usd: ${(e as Error).message}`, {
        reason: "invalid_argument",
        fields: [{ field: "constraints.budget_usd", message: "not a decimal dollar amount" }],
        cause: e,
      });
    }
  }
  let deadlineMs: number | null = null;
  if (c.deadline !== undefined) {
    deadlineMs = Date.parse(c.deadline);
    if (Number.isNaN(deadlineMs)) {
      throw AppError.invalid(`constraints.deadline: not an ISO 8601 instant: ${JSON.stringify(c.deadline)}`, [
        { field: "constraints.deadline", message: "not an ISO 8601 instant" },
      ]);
    }
  }

  const data = buildDataPlan(spec, catalog, options, model, notes);
  const tasks = Math.max(1, Math.floor(spec.execution.tasks));
  const parallel = Math.max(1, Math.min(tasks, Math.floor(spec.execution.max_parallel ?? tasks)));
  const fraction = res.gpu_fraction ?? null;
  const mig = res.mig_profile !== undefined;
  const limits = options.limits ?? {};

  return {
    mode,
    multiNode: mode === "single_cluster" && res.requires_multi_node,
    gpus: fraction !== null || mig ? 1 : res.gpus,
    nodeGpusPerUnit: fraction !== null || mig ? 1 : res.gpus,
    maxPerNode: res.max_gpus_per_node ?? Number.POSITIVE_INFINITY,
    memGb: res.gpu_memory_gb ?? 0,
    types: res.gpu_type.length > 0 ? new Set(res.gpu_type) : null,
    nvidiaOnly: requiresNvidia(spec.job.framework, res.gpu_type),
    fraction,
    mig,
    migMemGb: mig ? (migProfileMemoryGb(res.mig_profile ?? "") ?? 0) : 0,
    allowedProviders: c.allowed_providers.length > 0 ? new Set<string>(c.allowed_providers) : null,
    excludedProviders: new Set<string>(c.excluded_providers),
    allowedRegions: c.allowed_regions.length > 0 ? new Set(c.allowed_regions) : null,
    excludedRegions: new Set(c.excluded_regions),
    jobType: spec.job.type,
    refGpu,
    refHours,
    checkpointHours,
    allowSpot: c.allow_spot,
    budgetMicros,
    deadlineMs,
    availHours: deadlineMs === null ? Number.POSITIVE_INFINITY : (deadlineMs - options.nowMs) / 3_600_000,
    minReliability: c.min_reliability,
    weight: Math.min(1, Math.max(0, c.performance_weight)),
    maxAttempts: Math.max(1, Math.floor(spec.retry.max_attempts)),
    tasks,
    parallel,
    waves: Math.ceil(tasks / parallel),
    data,
    model,
    nowMs: options.nowMs,
    nodeCap: { ...DEFAULT_MAX_NODES_PER_CLUSTER, ...definedOnly(limits.maxNodesPerCluster ?? {}) },
    maxInstancesPerOffer: limits.maxInstancesPerOffer ?? DEFAULT_MAX_INSTANCES_PER_OFFER,
    maxSpotInstancesPerOffer: limits.maxSpotInstancesPerOffer ?? null,
    maxAlternatives: options.maxAlternatives ?? 20,
    notes,
    hoursByGpu: new Map(),
  };
}

function definedOnly<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

function buildDataPlan(spec: OptimizerSpec, catalog: Catalog, options: OptimizeOptions, model: CostModel, notes: string[]): DataPlan {
  const d = spec.data;
  const policy = d.replication_policy;
  const none: DataPlan = { loc: null, src: null, sizeGb: 0, priced: false, pinned: false, policy };
  if (d.locality === "ignore" || (d.dataset === undefined && !options.datasetLocation)) return none;
  const loc = datasetLocation(d, options.datasetLocation);
  if (loc === null) {
    notes.push(`dataset ${d.dataset ?? ""} has no cloud location (${d.dataset_kind ?? "unknown"}): no transfer cost or locality applied`);
    return none;
  }
  const where = loc.region === null ? loc.provider : `${loc.provider} ${loc.region}`;
  if (loc.region === null) notes.push(`dataset region unknown (only ${loc.provider} from the URI): same-${loc.provider} placements are treated as same-region`);
  const pinned = d.locality === "required" && policy === "none";
  const sizeGb = d.size_gb ?? 0;
  if (d.size_gb === undefined) notes.push(`data.size_gb not set: transfer from ${where} not priced`);
  const src = sourceEgress(catalog.egress, loc);
  if (sizeGb > 0 && loc.provider !== "onprem") {
    if (src.internet.match === "other_region") notes.push(`no ${loc.provider} internet egress tiers for ${loc.region ?? "the dataset region"}: used ${src.internet.borrowedFrom}'s`);
    if (src.internet.match === "none") notes.push(`no ${loc.provider} internet egress tiers in the catalog: assumed ${usdPerGb(model.fallbackInternetMicrosPerGb)}/GB`);
    if (src.interRegion.match === "none") notes.push(`no ${loc.provider} inter-region rate in the catalog: assumed ${usdPerGb(model.fallbackInterRegionMicrosPerGb)}/GB`);
  }
  if (loc.provider === "onprem" && sizeGb > 0) notes.push("transfers out of on-prem are not priced");
  return { loc, src, sizeGb, priced: sizeGb > 0, pinned, policy };
}

function usdPerGb(micros: bigint): string {
  return `$${Number(micros) / 1e6}`;
}

/** Expected hours on `gpuType` (no interruptions), cached per call. */
export function baseHoursOn(req: Requirement, gpuType: string): number {
  let h = req.hoursByGpu.get(gpuType);
  if (h === undefined) {
    h = hoursOnGpu(req.model.performance, req.refHours, req.refGpu, gpuType, req.jobType);
    req.hoursByGpu.set(gpuType, h);
  }
  return h;
}

/** One transfer of `gb` to (provider, region); 0 when not priced. */
export function transferTo(req: Requirement, provider: PlanProvider, region: string, gb: number): bigint {
  const d = req.data;
  if (!d.priced || d.src === null || gb <= 0) return 0n;
  return transferMicros(d.src, provider, region, gb, {
    internet: req.model.fallbackInternetMicrosPerGb,
    interRegion: req.model.fallbackInterRegionMicrosPerGb,
  });
}

function atDataLocation(loc: DataLocation, provider: PlanProvider, region: string): boolean {
  return loc.provider === provider && (loc.region === null || loc.region === region);
}

function placeRejection(req: Requirement, provider: Provider | PlanProvider, region: string): RejectionCode | null {
  if (req.allowedProviders !== null && !req.allowedProviders.has(provider)) return "provider";
  if (req.excludedProviders.has(provider)) return "provider";
  if (req.allowedRegions !== null && !req.allowedRegions.has(region)) return "region";
  if (req.excludedRegions.has(region)) return "region";
  return null;
}

function dataRejection(req: Requirement, provider: PlanProvider, region: string): RejectionCode | null {
  const loc = req.data.loc;
  return req.data.pinned && loc !== null && !atDataLocation(loc, provider, region) ? "data_locality" : null;
}

function acceleratorRejection(req: Requirement, gpuType: string, memPerGpu: number, usableMem: number): RejectionCode | null {
  if (req.nvidiaOnly && !isNvidiaGpuType(gpuType)) return "accelerator";
  if (req.types !== null && !req.types.has(gpuType)) return "gpu_type";
  if (usableMem < req.memGb) return "gpu_memory";
  if (req.mig && (!MIG_CAPABLE_GPU_TYPES.has(gpuType) || memPerGpu < req.migMemGb)) return "mig";
  return null;
}

/**
 * multi_task units one instance holds: a fraction or MIG unit takes a
 * partition row whole or one whole GPU each (no time-slicing of cloud GPUs is
 * assumed); a whole-GPU unit takes `gpus` GPUs.
 */
export function unitsPerInstance(req: Requirement, gpuCount: number): number {
  if (req.fraction !== null || req.mig) return gpuCount < 1 ? 1 : Math.floor(gpuCount);
  return Math.floor(gpuCount / req.gpus);
}

/** Why `offer` cannot serve the spec in any count or pricing, or null. Checks run cheapest first. */
export function offerRejection(req: Requirement, o: CatalogOffer): RejectionCode | null {
  const place = placeRejection(req, o.provider, o.region);
  if (place !== null) return place;
  const partition = o.gpuCount < 1;
  const acc = acceleratorRejection(req, o.gpuType, o.gpuMemoryGb, partition ? o.gpuCount * o.gpuMemoryGb : o.gpuMemoryGb);
  if (acc !== null) return acc;
  if (req.fraction !== null ? o.gpuCount < req.fraction : partition) return "fraction";
  if (req.mig && partition) return "mig";
  if (o.gpuCount > req.maxPerNode) return "max_gpus_per_node";
  if (req.mode === "multi_task") {
    if (unitsPerInstance(req, o.gpuCount) < 1) return "gpu_count";
  } else if (req.multiNode) {
    if (o.interconnect === null) return "interconnect";
    if (partition || o.gpuCount < 1) return "gpu_count";
    if (Math.ceil(req.gpus / Math.floor(o.gpuCount)) > req.nodeCap[o.provider]) return "node_cap";
  } else if (!partition && o.gpuCount < req.gpus) return "gpu_count";
  return dataRejection(req, o.provider, o.region);
}

/** Why registered node `n` cannot take part, or null (a gang still needs enough such nodes). */
export function nodeRejection(req: Requirement, n: ExistingNodeCapacity): RejectionCode | null {
  const place = placeRejection(req, n.provider, n.region);
  if (place !== null) return place;
  const acc = acceleratorRejection(req, n.gpuType, n.gpuMemoryGb, n.gpuMemoryGb);
  if (acc !== null) return acc;
  if (req.mode === "multi_task") {
    if (req.nodeGpusPerUnit > req.maxPerNode) return "max_gpus_per_node";
    if (Math.floor(n.freeGpus / req.nodeGpusPerUnit) < 1) return "gpu_count";
  } else if (req.multiNode) {
    // An on-prem cluster's fabric is the operator's choice (the agent cannot tell); a cloud VM's comes from its catalog row.
    if (n.interconnect === null && n.provider !== "onprem") return "interconnect";
    if (n.freeGpus < 1) return "gpu_count";
  } else {
    if (req.gpus > req.maxPerNode) return "max_gpus_per_node";
    if (n.freeGpus < req.gpus) return "gpu_count";
  }
  return dataRejection(req, n.provider, n.region);
}

/** Spot interruption rate and availability of an offer, with the model's defaults for missing values. */
export function spotParams(req: Requirement, o: CatalogOffer): { rate: number; availability: number } {
  return {
    rate: o.spotInterruptionsPerHour ?? req.model.defaultSpotInterruptionsPerHour,
    availability: o.spotAvailability ?? req.model.defaultSpotAvailability,
  };
}

/** Counts what each filter removed, by code (first failing check per offer or node). */
export class RejectionTally {
  readonly counts = new Map<RejectionCode, number>();
  add(code: RejectionCode, n = 1): void {
    this.counts.set(code, (this.counts.get(code) ?? 0) + n);
  }
}
