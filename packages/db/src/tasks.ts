import type { ExecutionMode, Framework, JobStatus, NodeState, TaskState } from "@gpuorch/core";
import { sql } from "drizzle-orm";
import { dbCall, sqlRows } from "./db-errors.js";
import type { Db } from "./open.js";

/**
 * Tasks and the GPUs they hold. The scheduler writes them inside its
 * placement transaction; agents' reports move them along; a task that ends
 * gives its GPUs back (its `task_gpus` rows are deleted in the same statement).
 */

const toDate = (v: Date | string | null): Date | null => (v === null ? null : v instanceof Date ? v : new Date(v));
const num = (v: string | number | null): number | null => (v === null ? null : Number(v));


/** A job the scheduler may place now: pending, or a live multi_task job with units still waiting. */
export interface SchedulableJob {
  id: string;
  name: string;
  status: JobStatus;
  priority: number;
  deadline: Date | null;
  createdAt: Date;
  attempt: number;
  maxAttempts: number;
  executionMode: ExecutionMode;
  framework: Framework;
  statusReason: string | null;
  spec: Record<string, unknown>;
}

interface JobRow {
  id: string;
  name: string;
  status: JobStatus;
  priority: number;
  deadline: Date | string | null;
  created_at: Date | string;
  attempt: number;
  max_attempts: number;
  execution_mode: ExecutionMode;
  framework: Framework;
  status_reason: string | null;
  spec: Record<string, unknown> | string;
}

function jobFromRow(r: JobRow): SchedulableJob {
  return {
    id: r.id,
    name: r.name,
    status: r.status,
    priority: r.priority,
    deadline: toDate(r.deadline),
    createdAt: toDate(r.created_at)!,
    attempt: r.attempt,
    maxAttempts: r.max_attempts,
    executionMode: r.execution_mode,
    framework: r.framework,
    statusReason: r.status_reason,
    spec: typeof r.spec === "string" ? (JSON.parse(r.spec) as Record<string, unknown>) : r.spec,
  };
}

/**
 * Locks (FOR UPDATE SKIP LOCKED) up to `limit` jobs in queue order that the
 * scheduler may place: pending ones, and multi_task ones already under way
 * that have a unit left to place and room under max_parallel (a fully
 * placed one must not fill the batch and starve the queue behind it). A job
 * another transaction holds is skipped, never waited for, so two schedulers
 * never place the same job.
 */
export async function lockSchedulableJobs(tx: Db, limit: number): Promise<SchedulableJob[]> {
  const r = await sqlRows<JobRow>(
    tx,
    sql`SELECT id, name, status, priority, deadline, created_at, attempt, max_attempts, execution_mode, framework, status_reason, spec
        FROM jobs
        WHERE status = 'pending'
           OR (execution_mode = 'multi_task' AND status IN ('scheduled', 'provisioning', 'running', 'checkpointing')
               AND (SELECT count(DISTINCT t.unit) FROM tasks t WHERE t.job_id = jobs.id AND t.attempt = jobs.attempt AND t.state <> 'lost')
                   < COALESCE((jobs.spec->'execution'->>'tasks')::int, 1)
               AND (SELECT count(*) FROM tasks t WHERE t.job_id = jobs.id AND t.attempt = jobs.attempt AND t.state IN ('assigned', 'running'))
                   < COALESCE((jobs.spec->'execution'->>'max_parallel')::int, (jobs.spec->'execution'->>'tasks')::int, 1))
        ORDER BY priority DESC, deadline ASC NULLS LAST, created_at ASC
        LIMIT ${limit}
        FOR UPDATE SKIP LOCKED`,
  );
  return r.map(jobFromRow);
}

export interface PlacementNode {
  id: string;
  hostname: string;
  state: NodeState;
  provider: string;
  region: string;
  zone: string;
  network: string;
  instanceType: string;
  spot: boolean;
  privateIp: string;
  gpus: { index: number; uuid: string; name: string; memoryTotalMib: number; heldBy: string | null }[];
}

/** Every node that is not lost, with its GPUs and which job holds each. */
export async function loadPlacementNodes(tx: Db): Promise<PlacementNode[]> {
  const r = await sqlRows<{
    id: string;
    hostname: string;
    state: NodeState;
    provider: string;
    region: string;
    zone: string;
    network: string;
    instance_type: string;
    spot: boolean;
    private_ip: string;
    gpus: { index: number; uuid: string; name: string; memory_total_mib: number; held_by: string | null }[] | string | null;
  }>(
    tx,
    sql`SELECT n.id, n.hostname, n.state, n.provider, n.region, n.zone, n.network, n.instance_type, n.spot, n.private_ip,
          (SELECT COALESCE(jsonb_agg(jsonb_build_object('index', g.index, 'uuid', g.uuid, 'name', g.name,
                    'memory_total_mib', g.memory_total_mib, 'held_by', h.job_id) ORDER BY g.index), '[]'::jsonb)
             FROM node_gpus g LEFT JOIN task_gpus h ON h.node_id = g.node_id AND h.gpu_index = g.index
             WHERE g.node_id = n.id) AS gpus
        FROM nodes n WHERE n.state <> 'lost' ORDER BY n.id`,
  );
  return r.map((n) => {
    const gpus = (typeof n.gpus === "string" ? JSON.parse(n.gpus) : (n.gpus ?? [])) as {
      index: number;
      uuid: string;
      name: string;
      memory_total_mib: number;
      held_by: string | null;
    }[];
    return {
      id: n.id,
      hostname: n.hostname,
      state: n.state,
      provider: n.provider,
      region: n.region,
      zone: n.zone,
      network: n.network,
      instanceType: n.instance_type,
      spot: n.spot,
      privateIp: n.private_ip,
      gpus: gpus.map((g) => ({ index: g.index, uuid: g.uuid, name: g.name, memoryTotalMib: Number(g.memory_total_mib), heldBy: g.held_by })),
    };
  });
}

/** One task as the controller tracks it. */
export interface TaskRecord {
  id: string;
  jobId: string;
  attempt: number;
  nodeId: string;
  hostname: string;
  nodeRank: number;
  numNodes: number;
  unit: number;
  gpuIndices: number[];
  state: TaskState;
  exitCode: number | null;
  signal: string | null;
  step: number | null;
  reason: string | null;
  masterAddr: string;
  masterPort: number;
  createdAt: Date;
  launchSentAt: Date | null;
  startedAt: Date | null;
  endedAt: Date | null;
}

interface TaskRow {
  id: string;
  job_id: string;
  attempt: number;
  node_id: string;
  hostname: string | null;
  node_rank: number;
  num_nodes: number;
  unit: number;
  gpu_indices: number[] | string;
  state: TaskState;
  exit_code: number | null;
  signal: string | null;
  step: string | number | null;
  reason: string | null;
  master_addr: string;
  master_port: number;
  created_at: Date | string;
  launch_sent_at: Date | string | null;
  started_at: Date | string | null;
  ended_at: Date | string | null;
}

function taskFromRow(r: TaskRow): TaskRecord {
  return {
    id: r.id,
    jobId: r.job_id,
    attempt: r.attempt,
    nodeId: r.node_id,
    hostname: r.hostname ?? "",
    nodeRank: r.node_rank,
    numNodes: r.num_nodes,
    unit: r.unit,
    gpuIndices: typeof r.gpu_indices === "string" ? (JSON.parse(r.gpu_indices) as number[]) : r.gpu_indices,
    state: r.state,
    exitCode: r.exit_code,
    signal: r.signal,
    step: num(r.step),
    reason: r.reason,
    masterAddr: r.master_addr,
    masterPort: r.master_port,
    createdAt: toDate(r.created_at)!,
    launchSentAt: toDate(r.launch_sent_at),
    startedAt: toDate(r.started_at),
    endedAt: toDate(r.ended_at),
  };
}

const TASK_COLUMNS = sql`t.id, t.job_id, t.attempt, t.node_id, n.hostname, t.node_rank, t.num_nodes, t.unit, t.gpu_indices, t.state,
  t.exit_code, t.signal, t.step, t.reason, t.master_addr, t.master_port, t.created_at, t.launch_sent_at, t.started_at, t.ended_at`;

export interface NewTask {
  id: string;
  jobId: string;
  attempt: number;
  nodeId: string;
  nodeRank: number;
  numNodes: number;
  unit: number;
  gpuIndices: number[];
  masterAddr: string;
  masterPort: number;
  /** The held GPUs' price per hour (share of the node's price), micro-USD; 0 when unpriced. */
  microsPerHour?: bigint;
}

/**
 * Inserts tasks and their GPU holds in one statement each. A GPU already
 * held (another scheduler won it) violates task_gpus' primary key and the
 * caller's transaction fails whole.
 */
export async function insertTasks(tx: Db, tasks: readonly NewTask[]): Promise<void> {
  if (tasks.length === 0) return;
  const payload = JSON.stringify(
    tasks.map((t) => ({
      id: t.id,
      job_id: t.jobId,
      attempt: t.attempt,
      node_id: t.nodeId,
      node_rank: t.nodeRank,
      num_nodes: t.numNodes,
      unit: t.unit,
      gpu_indices: t.gpuIndices,
      master_addr: t.masterAddr,
      master_port: t.masterPort,
      price: (t.microsPerHour ?? 0n).toString(),
    })),
  );
  await dbCall(() =>
    tx.execute(sql`
      WITH input AS (
        SELECT * FROM jsonb_to_recordset(${payload}::jsonb) AS r(id uuid, job_id uuid, attempt int, node_id uuid, node_rank int,
          num_nodes int, unit int, gpu_indices jsonb, master_addr text, master_port int, price text)
      ), t AS (
        INSERT INTO tasks (id, job_id, attempt, node_id, node_rank, num_nodes, unit, gpu_indices, master_addr, master_port, usd_micros_per_hour)
        SELECT id, job_id, attempt, node_id, node_rank, num_nodes, unit, gpu_indices, master_addr, master_port, price::bigint FROM input
        RETURNING id
      )
      INSERT INTO task_gpus (node_id, gpu_index, task_id, job_id)
      SELECT input.node_id, g.value::int, input.id, input.job_id FROM input CROSS JOIN LATERAL jsonb_array_elements_text(input.gpu_indices) AS g(value)`),
  );
}

/** Records why pending jobs wait (no event: the status did not change). Only rows whose reason changed are written. */
export async function setPendingReasons(tx: Db, reasons: readonly { jobId: string; reason: string }[]): Promise<number> {
  if (reasons.length === 0) return 0;
  const payload = JSON.stringify(reasons.map((r) => ({ id: r.jobId, reason: r.reason })));
  const r = await sqlRows<{ id: string }>(
    tx,
    sql`UPDATE jobs SET status_reason = input.reason, updated_at = now()
        FROM jsonb_to_recordset(${payload}::jsonb) AS input(id uuid, reason text)
        WHERE jobs.id = input.id AND jobs.status = 'pending' AND jobs.status_reason IS DISTINCT FROM input.reason
        RETURNING jobs.id`,
  );
  return r.length;
}

export async function markLaunchSent(db: Db, taskIds: readonly string[]): Promise<void> {
  if (taskIds.length === 0) return;
  await dbCall(() =>
    db.execute(sql`UPDATE tasks SET launch_sent_at = COALESCE(launch_sent_at, now()) WHERE id = ANY(${pgUuidArray(taskIds)}::uuid[])`),
  );
}

function pgUuidArray(ids: readonly string[]): string {
  return `{${ids.join(",")}}`;
}

/** A task's new state as reported by its agent (already mapped by taskStateFromReport). */
export interface TaskUpdate {
  taskId: string;
  state: TaskState;
  exitCode: number | null;
  signal: string | null;
  step: number | null;
  reason: string | null;
}

export interface TaskChange {
  task: TaskRecord;
  from: TaskState;
}

/**
 * Applies agents' reports for tasks of ONE node (a report for a task on
 * another node is ignored: an agent speaks only for itself). Only active
 * tasks move: assigned → running or an end state, running → an end state;
 * an ended task never changes again (a late or replayed report is
 * harmless). The step is updated on active tasks. Ending a task deletes its
 * GPU holds in the same statement. Returns the tasks whose state changed.
 */
export async function applyTaskUpdates(db: Db, nodeId: string, updates: readonly TaskUpdate[]): Promise<TaskChange[]> {
  if (updates.length === 0) return [];
  const payload = JSON.stringify(
    updates.map((u) => ({ id: u.taskId, state: u.state, exit_code: u.exitCode, signal: u.signal, step: u.step, reason: u.reason })),
  );
  const r = await sqlRows<TaskRow & { from_state: TaskState }>(
    db,
    sql`
      WITH input AS (
        SELECT * FROM jsonb_to_recordset(${payload}::jsonb) AS r(id uuid, state task_state, exit_code int, signal text, step bigint, reason text)
      ),
      old AS (
        SELECT t.id, t.state FROM tasks t JOIN input ON input.id = t.id
        WHERE t.node_id = ${nodeId}::uuid AND t.state IN ('assigned', 'running')
          -- Only what changes is written: heartbeats repeat unchanged states every interval.
          AND ((input.state <> 'assigned' AND input.state <> t.state) OR (input.step IS NOT NULL AND input.step IS DISTINCT FROM t.step))
        FOR UPDATE OF t
      ),
      upd AS (
        UPDATE tasks t SET
          state = CASE WHEN input.state = 'assigned' THEN t.state ELSE input.state END,
          exit_code = COALESCE(input.exit_code, t.exit_code),
          signal = COALESCE(input.signal, t.signal),
          step = COALESCE(input.step, t.step),
          reason = COALESCE(input.reason, t.reason),
          started_at = CASE WHEN input.state IN ('running', 'succeeded', 'failed') THEN COALESCE(t.started_at, now()) ELSE t.started_at END,
          ended_at = CASE WHEN input.state IN ('succeeded', 'failed', 'stopped', 'lost') THEN now() ELSE t.ended_at END
        FROM input, old
        WHERE t.id = input.id AND old.id = t.id
        RETURNING t.*, old.state AS from_state
      ),
      freed AS (
        DELETE FROM task_gpus h USING upd WHERE h.task_id = upd.id AND upd.state NOT IN ('assigned', 'running')
      )
      SELECT upd.id, upd.job_id, upd.attempt, upd.node_id, n.hostname, upd.node_rank, upd.num_nodes, upd.unit, upd.gpu_indices, upd.state,
        upd.exit_code, upd.signal, upd.step, upd.reason, upd.master_addr, upd.master_port, upd.created_at, upd.launch_sent_at,
        upd.started_at, upd.ended_at, upd.from_state
      FROM upd JOIN nodes n ON n.id = upd.node_id`,
  );
  return r.filter((x) => x.state !== x.from_state).map((x) => ({ task: taskFromRow(x), from: x.from_state }));
}

/**
 * Ends active tasks with `state` (stopped or lost) and gives their GPUs
 * back. Tasks already ended are left as they are. Returns those it ended.
 */
export async function endTasks(db: Db, taskIds: readonly string[], state: "stopped" | "lost" | "failed", reason: string): Promise<TaskRecord[]> {
  if (taskIds.length === 0) return [];
  const r = await sqlRows<TaskRow>(
    db,
    sql`
      WITH upd AS (
        UPDATE tasks SET state = ${state}::task_state, reason = COALESCE(reason, ${reason}), ended_at = now()
        WHERE id = ANY(${pgUuidArray(taskIds)}::uuid[]) AND state IN ('assigned', 'running')
        RETURNING *
      ),
      freed AS (DELETE FROM task_gpus h USING upd WHERE h.task_id = upd.id)
      SELECT upd.id, upd.job_id, upd.attempt, upd.node_id, n.hostname, upd.node_rank, upd.num_nodes, upd.unit, upd.gpu_indices, upd.state,
        upd.exit_code, upd.signal, upd.step, upd.reason, upd.master_addr, upd.master_port, upd.created_at, upd.launch_sent_at,
        upd.started_at, upd.ended_at
      FROM upd JOIN nodes n ON n.id = upd.node_id`,
  );
  return r.map(taskFromRow);
}

/** Tasks matching a filter, oldest first. */
export async function findTasks(
  db: Db,
  where: { jobId?: string; attempt?: number; nodeId?: string; nodeIds?: readonly string[]; activeOnly?: boolean; ids?: readonly string[] },
): Promise<TaskRecord[]> {
  const conds = [sql`TRUE`];
  if (where.jobId !== undefined) conds.push(sql`t.job_id = ${where.jobId}::uuid`);
  if (where.attempt !== undefined) conds.push(sql`t.attempt = ${where.attempt}`);
  if (where.nodeId !== undefined) conds.push(sql`t.node_id = ${where.nodeId}::uuid`);
  if (where.nodeIds !== undefined) conds.push(sql`t.node_id = ANY(${pgUuidArray(where.nodeIds)}::uuid[])`);
  if (where.ids !== undefined) conds.push(sql`t.id = ANY(${pgUuidArray(where.ids)}::uuid[])`);
  if (where.activeOnly) conds.push(sql`t.state IN ('assigned', 'running')`);
  const r = await sqlRows<TaskRow>(
    db,
    sql`SELECT ${TASK_COLUMNS} FROM tasks t JOIN nodes n ON n.id = t.node_id WHERE ${sql.join(conds, sql` AND `)}
        ORDER BY t.created_at, t.unit, t.node_rank`,
  );
  return r.map(taskFromRow);
}

/** Every active task, for the controller's in-memory index at start. */
export function activeTasks(db: Db): Promise<TaskRecord[]> {
  return findTasks(db, { activeOnly: true });
}

/** The nodes' network addresses (private IP, else hostname) for launch commands. */
export async function nodeAddresses(db: Db, nodeIds: readonly string[]): Promise<Map<string, { host: string; hostname: string }>> {
  if (nodeIds.length === 0) return new Map();
  const r = await sqlRows<{ id: string; hostname: string; private_ip: string }>(
    db,
    sql`SELECT id, hostname, private_ip FROM nodes WHERE id = ANY(${pgUuidArray(nodeIds)}::uuid[])`,
  );
  return new Map(r.map((n) => [n.id, { host: n.private_ip || n.hostname, hostname: n.hostname }]));
}

/** Marks a node draining (or ready again); returns false when it does not exist. Draining nodes take no new tasks. */
export async function setNodeDraining(db: Db, nodeId: string, drain: boolean): Promise<boolean> {
  const r = await sqlRows<{ id: string }>(
    db,
    drain
      ? sql`UPDATE nodes SET state = 'draining' WHERE id = ${nodeId}::uuid RETURNING id`
      : sql`UPDATE nodes SET state = CASE WHEN state IN ('draining', 'preempting') THEN 'ready'::node_state ELSE state END WHERE id = ${nodeId}::uuid RETURNING id`,
  );
  return r.length > 0;
}

/**
 * A ready node whose agent stream just ended becomes unreachable at once
 * (the scheduler places only on ready nodes); its next heartbeat makes it
 * ready again. True when it changed.
 */
export async function markNodeDisconnected(db: Db, nodeId: string): Promise<boolean> {
  const r = await sqlRows<{ id: string }>(db, sql`UPDATE nodes SET state = 'unreachable' WHERE id = ${nodeId}::uuid AND state = 'ready' RETURNING id`);
  return r.length > 0;
}

/** Marks a node preempting (a spot interruption notice): it takes no new tasks and goes lost when silent. False when it does not exist. */
export async function setNodePreempting(db: Db, nodeId: string): Promise<boolean> {
  const r = await sqlRows<{ id: string }>(db, sql`UPDATE nodes SET state = 'preempting' WHERE id = ${nodeId}::uuid AND state <> 'lost' RETURNING id`);
  return r.length > 0;
}

/** What the task supervisor needs of a job. */
export interface JobBrief {
  id: string;
  name: string;
  status: JobStatus;
  attempt: number;
  max_attempts: number;
  execution_mode: ExecutionMode;
  framework: Framework;
  spec: Record<string, unknown> | string;
}

export async function getJobBriefs(db: Db, ids: readonly string[]): Promise<Map<string, JobBrief>> {
  if (ids.length === 0) return new Map();
  const r = await sqlRows<JobBrief>(
    db,
    sql`SELECT id, name, status, attempt, max_attempts, execution_mode, framework, spec FROM jobs WHERE id = ANY(${pgUuidArray(ids)}::uuid[])`,
  );
  return new Map(r.map((j) => [j.id, j]));
}

/** Jobs that have been in `status` since before `before` (e.g. checkpointing past its deadline). */
export async function jobsInStatusSince(db: Db, status: JobStatus, before: Date): Promise<{ id: string; attempt: number; updatedAt: Date }[]> {
  const r = await sqlRows<{ id: string; attempt: number; updated_at: Date | string }>(
    db,
    sql`SELECT id, attempt, updated_at FROM jobs WHERE status = ${status}::job_status AND updated_at < ${before.toISOString()}::timestamptz ORDER BY updated_at LIMIT 500`,
  );
  return r.map((j) => ({ id: j.id, attempt: j.attempt, updatedAt: toDate(j.updated_at) ?? new Date(0) }));
}

/** When the job first ran (null before that). */
export async function jobStartedAt(db: Db, jobId: string): Promise<Date | null> {
  const r = await sqlRows<{ started_at: Date | string | null }>(db, sql`SELECT started_at FROM jobs WHERE id = ${jobId}::uuid`);
  return toDate(r[0]?.started_at ?? null);
}
