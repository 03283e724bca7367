import {
  type Clock,
  type IdSource,
  type SchedJob,
  type SchedNode,
  type TaskLaunchCommand,
  masterPortFor,
  placeJobs,
} from "@gpuorch/core";
import {
  type Database,
  type NewTask,
  type PlacementNode,
  type SchedulableJob,
  type TaskRecord,
  findTasks,
  insertAllocations,
  type NewAllocation,
  insertTasks,
  loadPlacementNodes,
  lockSchedulableJobs,
  setPendingReasons,
  transitionJob,
  withSingletonLock,
} from "@gpuorch/db";
import { type Logger, sleep } from "@gpuorch/runtime";
import { catalogGpuModel } from "@gpuorch/spec";
import { buildLaunchCommand } from "./task-supervisor.js";
import type { TaskPrice } from "./node-pricing.js";

/** A launch command for a task the pass just created, and where it goes. */
export interface PlacedLaunch {
  nodeId: string;
  command: TaskLaunchCommand;
}

/** Advisory-lock key of the scheduler pass: one replica places at a time. */
export const SCHEDULER_LOCK_KEY = 725_312_804_202n;

export interface SchedulerLoopDeps {
  db: Database["db"];
  ids: IdSource;
  clock: Clock;
  logger: Logger;
  /** A pass runs at least this often even when nothing woke it (another replica's submits, nodes coming back). */
  intervalMs: number;
  /** Jobs considered per pass, in queue order. */
  batchLimit: number;
  /**
   * Called after each committed pass with the tasks it created and their
   * launch commands, built from what the pass already holds (the supervisor
   * sends them without reading anything back).
   */
  onPlaced: (taskIds: string[], launches: PlacedLaunch[]) => Promise<void>;
  onJobChanged?: (jobId: string) => void;
  onPass?: (stats: { placed: number; pending: number; seconds: number }) => void;
  /** Prices the GPUs a task holds on a node (the running cost and the allocation record); absent = unpriced. */
  priceTask?: (node: PlacementNode, gpus: number) => TaskPrice;
}

type SpecJson = {
  resources?: { gpus?: number; max_gpus_per_node?: number; requires_multi_node?: boolean; gpu_memory_gb?: number; gpu_type?: string[] };
  execution?: { tasks?: number; max_parallel?: number };
};

/** Decimal GB of a card with `mib` MiB: the spec's `gpu_memory` is in decimal GB. */
const mibToGb = (mib: number): number => (mib * 1_048_576) / 1e9;

export function toSchedNode(n: PlacementNode): SchedNode {
  return {
    id: n.id,
    state: n.state,
    provider: n.provider,
    region: n.region,
    zone: n.zone === "" ? null : n.zone,
    network: n.network,
    instanceType: n.instanceType,
    gpus: n.gpus.map((g) => ({
      index: g.index,
      uuid: g.uuid,
      model: catalogGpuModel(g.name, g.memoryTotalMib),
      memoryGb: mibToGb(g.memoryTotalMib),
      allocatedTo: g.heldBy,
    })),
  };
}

/** The scheduler's view of a job; `takenUnits`: multi_task units running or done in this attempt. */
export function toSchedJob(j: SchedulableJob, takenUnits: ReadonlySet<number>, activeUnits: number): SchedJob | null {
  const spec = j.spec as SpecJson;
  const r = spec.resources ?? {};
  const tasks = spec.execution?.tasks ?? 1;
  const base: SchedJob = {
    id: j.id,
    priority: j.priority,
    deadline: j.deadline,
    createdAt: j.createdAt,
    gpus: Math.max(1, r.gpus ?? 1),
    maxGpusPerNode: r.max_gpus_per_node ?? null,
    requiresMultiNode: r.requires_multi_node ?? false,
    gpuMemoryGb: r.gpu_memory_gb ?? null,
    gpuTypes: r.gpu_type ?? [],
    executionMode: j.executionMode,
    tasks,
  };
  if (j.executionMode !== "multi_task") return j.status === "pending" ? base : null;
  const room = (spec.execution?.max_parallel ?? tasks) - activeUnits;
  const pendingUnits: number[] = [];
  for (let u = 0; u < tasks && pendingUnits.length < room; u++) if (!takenUnits.has(u)) pendingUnits.push(u);
  if (pendingUnits.length === 0) return null;
  return { ...base, pendingUnits };
}

/**
 * The scheduler loop: a pass locks the queue head (SKIP LOCKED), snapshots
 * the nodes and their GPU holds, runs the pure `placeJobs`, and in the SAME
 * transaction inserts the tasks with their GPU holds (task_gpus' primary key
 * refuses a double placement), moves placed jobs pending → scheduled with
 * their event, and records why the others wait. After the commit the
 * supervisor sends the launches. The whole pass runs under an advisory lock,
 * so replicas take turns instead of fighting over rows.
 *
 * Passes run on `wake()` (a submit, a task ending, a node joining) and
 * every `intervalMs`; wakes during a pass coalesce into one more pass.
 *
 * Like the Kubernetes scheduler's unschedulable queue, new work alone does
 * not trigger a pass while the fleet is saturated: when the last pass left
 * no GPU free on any ready node, nothing a submit adds can be placed until
 * capacity changes (a `wake("capacity")`: a task ends, a node joins) or the
 * periodic pass comes round, which also gives the new jobs their pending
 * reason. Without this, a submit storm against a busy fleet re-read and
 * re-locked the queue head once per submit.
 *
 * States: idle → running (start) → stopped (stop waits for the pass in flight).
 */
export class SchedulerLoop {
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  /** New work arrived (a submit) since the last pass began. */
  private workWoken = false;
  /** Capacity may have grown (a task ended, a node joined) since the last pass began. */
  private capacityWoken = false;
  /** The last pass left no GPU free on a ready node (false when it could not tell: no jobs, another replica's turn, an error). */
  private saturated = false;
  private wakeUp: (() => void) | null = null;

  constructor(private readonly deps: SchedulerLoopDeps) {}

  get state(): "idle" | "running" | "stopped" {
    return this.abort.signal.aborted ? "stopped" : this.loop ? "running" : "idle";
  }

  start(): void {
    if (this.loop || this.abort.signal.aborted) return;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.abort.abort(new DOMException("scheduler stopped", "AbortError"));
    this.wakeUp?.();
    await this.loop;
  }

  /**
   * Asks for a pass. `"work"`: new jobs to place (a submit); it waits for
   * the periodic pass while the fleet is saturated. `"capacity"` (the
   * default, so a caller that is unsure is never ignored): GPUs may have
   * been freed or added; it always runs a pass.
   */
  wake(cause: "work" | "capacity" = "capacity"): void {
    if (cause === "work") this.workWoken = true;
    else this.capacityWoken = true;
    if (this.shouldRunNow()) this.wakeUp?.();
  }

  private shouldRunNow(): boolean {
    return this.capacityWoken || (this.workWoken && !this.saturated);
  }

  private async run(): Promise<void> {
    const { signal } = this.abort;
    let periodicAt = performance.now() + this.deps.intervalMs;
    while (!signal.aborted) {
      while (!this.shouldRunNow() && performance.now() < periodicAt && !signal.aborted) {
        // One controller per wait, aborted by a wake or by stop, so no timer or abort listener outlives its wait.
        const wait = new AbortController();
        const onStop = (): void => wait.abort();
        signal.addEventListener("abort", onStop, { once: true });
        this.wakeUp = () => wait.abort();
        await sleep(Math.max(1, periodicAt - performance.now()), wait.signal).catch(() => {});
        signal.removeEventListener("abort", onStop);
        this.wakeUp = null;
      }
      if (signal.aborted) return;
      // Wakes from here on ask for the next pass: this one may already have read past them.
      this.workWoken = false;
      this.capacityWoken = false;
      periodicAt = performance.now() + this.deps.intervalMs;
      try {
        const res = await this.pass();
        this.saturated = res.freeGpus === 0;
      } catch (err) {
        this.saturated = false;
        this.deps.logger.error({ err }, "scheduler pass failed");
        try {
          await sleep(Math.min(this.deps.intervalMs, 1000), signal);
        } catch {
          return;
        }
      }
    }
  }

  /**
   * One pass; returns the tasks it created (empty when another replica holds
   * the lock) and how many GPUs of ready nodes it left free (null when it
   * did not look: no jobs, or another replica's turn).
   */
  async pass(): Promise<{ taskIds: string[]; pending: number; freeGpus: number | null }> {
    const t0 = performance.now();
    const res = await withSingletonLock(this.deps.db, SCHEDULER_LOCK_KEY, (tx) => this.placeIn(tx));
    if (!res.acquired) return { taskIds: [], pending: 0, freeGpus: null };
    const { taskIds, pending, changedJobs, launches, freeGpus } = res.value;
    for (const id of changedJobs) this.deps.onJobChanged?.(id);
    this.deps.onPass?.({ placed: taskIds.length, pending, seconds: (performance.now() - t0) / 1000 });
    if (taskIds.length > 0) await this.deps.onPlaced(taskIds, launches);
    return { taskIds, pending, freeGpus };
  }

  private async placeIn(
    tx: Database["db"],
  ): Promise<{ taskIds: string[]; pending: number; changedJobs: string[]; launches: PlacedLaunch[]; freeGpus: number | null }> {
    const jobs = await lockSchedulableJobs(tx, this.deps.batchLimit);
    if (jobs.length === 0) return { taskIds: [], pending: 0, changedJobs: [], launches: [], freeGpus: null };
    const nodes = await loadPlacementNodes(tx);
    const freeBefore = nodes.reduce((n, node) => n + (node.state === "ready" ? node.gpus.filter((g) => g.heldBy === null).length : 0), 0);
    const byId = new Map(jobs.map((j) => [j.id, j]));
    const schedJobs: SchedJob[] = [];
    for (const j of jobs) {
      let taken = new Set<number>();
      let active = 0;
      if (j.executionMode === "multi_task" && j.status !== "pending") {
        const ts = await findTasks(tx, { jobId: j.id, attempt: j.attempt });
        taken = new Set(ts.filter((t) => t.state !== "lost").map((t) => t.unit));
        active = ts.filter((t) => t.state === "assigned" || t.state === "running").length;
      }
      const sj = toSchedJob(j, taken, active);
      if (sj) schedJobs.push(sj);
    }
    if (schedJobs.length === 0) return { taskIds: [], pending: 0, changedJobs: [], launches: [], freeGpus: null };
    const decision = placeJobs({ jobs: schedJobs, nodes: nodes.map(toSchedNode) });
    const nodeById = new Map(nodes.map((n) => [n.id, n]));
    const newTasks: NewTask[] = [];
    const changedJobs: string[] = [];
    const priced: PricedPlacement[] = [];
    const perJob = new Map<string, typeof decision.placements>();
    for (const p of decision.placements) perJob.set(p.jobId, [...(perJob.get(p.jobId) ?? []), p]);
    for (const [jobId, placements] of perJob) {
      const job = byId.get(jobId)!;
      const port = masterPortFor(job.id, job.attempt);
      const hosts: string[] = [];
      for (const p of placements) {
        const numNodes = p.unit === undefined ? p.nodes.length : 1;
        const master = nodeById.get(p.nodes[0]!.nodeId);
        p.nodes.forEach((ng, rank) => {
          const node = nodeById.get(ng.nodeId);
          hosts.push(`${node?.hostname ?? ng.nodeId}[${ng.gpuIndices.join(",")}]`);
          const price = node ? this.deps.priceTask?.(node, ng.gpuIndices.length) : undefined;
          if (price) priced.push({ jobId, attempt: job.attempt, node: node!, gpus: ng.gpuIndices.length, price, unit: p.unit });
          newTasks.push({
            ...(price ? { microsPerHour: price.microsPerHour } : {}),
            id: this.deps.ids.newId(),
            jobId,
            attempt: job.attempt,
            nodeId: ng.nodeId,
            nodeRank: p.unit === undefined ? rank : 0,
            numNodes,
            unit: p.unit ?? -1,
            gpuIndices: ng.gpuIndices,
            masterAddr: master ? master.privateIp || master.hostname : "",
            masterPort: p.unit === undefined ? port : masterPortFor(job.id, job.attempt * 100_000 + p.unit),
          });
        });
      }
      if (job.status === "pending") {
        await transitionJob(tx, {
          jobId,
          to: "scheduled",
          reason: `placed on ${hosts.join(", ")}`,
          actor: "controller:scheduler",
          expectedFrom: "pending",
          details: { nodes: placements.flatMap((p) => p.nodes.map((n) => ({ nodeId: n.nodeId, gpus: n.gpuIndices, unit: p.unit ?? null }))) },
        });
        changedJobs.push(jobId);
      }
    }
    await insertTasks(tx, newTasks);
    await insertAllocations(tx, allocationsFor(priced, byId, () => this.deps.ids.newId()));
    const launches = launchesFor(newTasks, byId, nodeById, this.deps.clock.now());
    const reasons = decision.pending.filter((p) => byId.get(p.jobId)?.status === "pending" && !perJob.has(p.jobId));
    await setPendingReasons(
      tx,
      reasons.map((p) => ({ jobId: p.jobId, reason: p.neverFits ? `unschedulable: ${p.reason}` : `waiting for GPUs: ${p.reason}` })),
    );
    const placedGpus = newTasks.reduce((n, t) => n + t.gpuIndices.length, 0);
    return { taskIds: newTasks.map((t) => t.id), pending: reasons.length, changedJobs, launches, freeGpus: freeBefore - placedGpus };
  }
}

interface PricedPlacement {
  jobId: string;
  attempt: number;
  node: PlacementNode;
  gpus: number;
  price: TaskPrice;
  unit: number | undefined;
}

/**
 * One allocation row per job (gang) or multi_task unit placed in this pass,
 * grouped by node instance type: what it runs on and the prices it pays.
 */
function allocationsFor(priced: readonly PricedPlacement[], jobs: ReadonlyMap<string, SchedulableJob>, newId: () => string): NewAllocation[] {
  const groups = new Map<string, PricedPlacement[]>();
  for (const p of priced) {
    const key = `${p.jobId}|${p.unit ?? "gang"}|${p.node.provider}|${p.node.region}|${p.node.instanceType}|${p.price.basis.spot}`;
    groups.set(key, [...(groups.get(key) ?? []), p]);
  }
  const out: NewAllocation[] = [];
  for (const ps of groups.values()) {
    const first = ps[0]!;
    const spec = jobs.get(first.jobId)?.spec as { job?: { estimated_hours?: number } } | undefined;
    const hours = spec?.job?.estimated_hours ?? 0;
    const perHour = ps.reduce((s, p) => s + p.price.microsPerHour, 0n);
    const provider = first.node.provider === "aws" || first.node.provider === "gcp" || first.node.provider === "azure" ? first.node.provider : "onprem";
    out.push({
      id: newId(),
      jobId: first.jobId,
      attempt: first.attempt,
      provider,
      region: first.node.region || "-",
      zone: first.node.zone || null,
      instanceType: first.node.instanceType || first.node.hostname,
      instanceCount: ps.length,
      gpusPerInstance: first.gpus,
      spot: first.price.basis.spot,
      microsPerHour: perHour,
      estimatedHours: hours,
      // Ceil to the micro: hours are a float from the spec.
      estimatedMicros: BigInt(Math.ceil(Number(perHour) * hours)),
      prices: ps.map((p) => ({ node_id: p.node.id, hostname: p.node.hostname, gpus: p.gpus, usd_micros_per_hour: p.price.microsPerHour.toString(), ...p.price.basis })),
    });
  }
  return out;
}

/** The launch commands of freshly placed tasks, from the pass's own snapshot. */
function launchesFor(
  tasks: readonly NewTask[],
  jobs: ReadonlyMap<string, SchedulableJob>,
  nodes: ReadonlyMap<string, PlacementNode>,
  now: Date,
): PlacedLaunch[] {
  const records: TaskRecord[] = tasks.map((t) => ({
    ...t,
    hostname: nodes.get(t.nodeId)?.hostname ?? "",
    state: "assigned",
    exitCode: null,
    signal: null,
    step: null,
    reason: null,
    createdAt: now,
    launchSentAt: null,
    startedAt: null,
    endedAt: null,
  }));
  const addrs = new Map([...nodes.values()].map((n) => [n.id, { host: n.privateIp || n.hostname, hostname: n.hostname }]));
  const byJob = new Map<string, TaskRecord[]>();
  for (const r of records) byJob.set(r.jobId, [...(byJob.get(r.jobId) ?? []), r]);
  return records.flatMap((r) => {
    const job = jobs.get(r.jobId);
    return job ? [{ nodeId: r.nodeId, command: buildLaunchCommand(job, r, byJob.get(r.jobId) ?? [r], addrs) }] : [];
  });
}
