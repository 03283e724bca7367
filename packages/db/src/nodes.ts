import {
  type GpuSample,
  type MigDeviceSpec,
  type NodeGpu,
  type NodeInfo,
  type NodeRegistration,
  type NodeState,
  NODE_STATES,
} from "@gpuorch/core";
import { sql } from "drizzle-orm";
import { dbCall } from "./db-errors.js";
import type { Db } from "./open.js";

export interface RegisterNodeOutcome {
  nodeId: string;
  /** false when an existing row (same persisted id, or same hostname + provider/region/zone) was updated. */
  created: boolean;
}

/**
 * Registers a node idempotently, in one transaction: the row named by
 * `reg.nodeId` if it exists, else the row with the same identity (hostname,
 * provider, region, zone), else a new row (with `reg.nodeId` when the agent
 * sent one, so a persisted id survives a wiped database, else `newId`). The
 * node becomes ready with a fresh heartbeat time and its GPU rows are
 * replaced by the registered ones.
 */
export async function upsertNodeRegistration(db: Db, reg: NodeRegistration, opts: { newId: string; now: Date }): Promise<RegisterNodeOutcome> {
  const l = reg.labels;
  const now = opts.now.toISOString();
  const labels = JSON.stringify({
    provider: l.provider,
    region: l.region,
    zone: l.zone,
    network: l.network,
    instance_type: l.instanceType,
    spot: String(l.spot),
    private_ip: l.privateIp,
  });
  return dbCall(() =>
    db.transaction(async (tx) => {
      let outcome: RegisterNodeOutcome | null = null;
      if (reg.nodeId) {
        const res = (await tx.execute(sql`
          UPDATE nodes SET hostname = ${reg.hostname}, provider = ${l.provider}, region = ${l.region}, zone = ${l.zone},
            network = ${l.network}, instance_type = ${l.instanceType}, spot = ${l.spot}, private_ip = ${l.privateIp},
            state = 'ready', degraded_reason = ${reg.degradedReason}, cpu_cores = ${reg.cpuCores}, memory_mib = ${reg.memoryMib},
            agent_version = ${reg.agentVersion}, driver_version = ${reg.driverVersion}, cuda_version = ${reg.cudaVersion},
            labels = ${labels}::jsonb, registered_at = ${now}::timestamptz, last_heartbeat_at = ${now}::timestamptz
          WHERE id = ${reg.nodeId}::uuid
          RETURNING id`)) as unknown as { rows: { id: string }[] };
        const row = res.rows[0];
        if (row) outcome = { nodeId: row.id, created: false };
      }
      if (!outcome) {
        const res = (await tx.execute(sql`
          INSERT INTO nodes (id, hostname, provider, region, zone, network, instance_type, spot, private_ip, state,
            degraded_reason, cpu_cores, memory_mib, agent_version, driver_version, cuda_version, labels, registered_at, last_heartbeat_at)
          VALUES (${reg.nodeId || opts.newId}::uuid, ${reg.hostname}, ${l.provider}, ${l.region}, ${l.zone}, ${l.network},
            ${l.instanceType}, ${l.spot}, ${l.privateIp}, 'ready', ${reg.degradedReason}, ${reg.cpuCores}, ${reg.memoryMib},
            ${reg.agentVersion}, ${reg.driverVersion}, ${reg.cudaVersion}, ${labels}::jsonb, ${now}::timestamptz, ${now}::timestamptz)
          ON CONFLICT (hostname, provider, region, zone) DO UPDATE SET
            network = excluded.network, instance_type = excluded.instance_type, spot = excluded.spot,
            private_ip = excluded.private_ip, state = 'ready', degraded_reason = excluded.degraded_reason,
            cpu_cores = excluded.cpu_cores, memory_mib = excluded.memory_mib, agent_version = excluded.agent_version,
            driver_version = excluded.driver_version, cuda_version = excluded.cuda_version, labels = excluded.labels,
            registered_at = excluded.registered_at, last_heartbeat_at = excluded.last_heartbeat_at
          RETURNING id, (xmax = 0) AS created`)) as unknown as { rows: { id: string; created: boolean }[] };
        const row = res.rows[0]!;
        outcome = { nodeId: row.id, created: row.created };
      }
      await tx.execute(sql`DELETE FROM node_gpus WHERE node_id = ${outcome.nodeId}::uuid`);
      if (reg.gpus.length > 0) {
        const gpus = JSON.stringify(
          reg.gpus.map((g) => ({
            index: g.index,
            uuid: g.uuid,
            name: g.name,
            memory_total_mib: g.memoryTotalMib,
            mig_enabled: g.migEnabled,
            mig_devices: g.migDevices,
          })),
        );
        await tx.execute(sql`
          INSERT INTO node_gpus (node_id, index, uuid, name, memory_total_mib, mig_enabled, mig_devices)
          SELECT ${outcome.nodeId}::uuid, index, uuid, name, memory_total_mib, mig_enabled, mig_devices
          FROM jsonb_to_recordset(${gpus}::jsonb) AS r(index int, uuid text, name text, memory_total_mib bigint,
            mig_enabled boolean, mig_devices jsonb)`);
      }
      return outcome;
    }),
  );
}

/** One node's latest heartbeat, as the controller buffered it. */
export interface HeartbeatRecord {
  nodeId: string;
  /** When the controller received it. */
  at: Date;
  gpus: GpuSample[];
}

export interface NodeStateChange {
  nodeId: string;
  hostname: string;
  from: NodeState;
  to: NodeState;
}

export interface RecordHeartbeatsOutcome {
  /** Nodes that exist (others were deleted or never registered). */
  known: string[];
  /** Nodes a heartbeat brought back to ready from unreachable or lost. */
  revived: NodeStateChange[];
}

/**
 * Writes many nodes' heartbeats in ONE statement: each node's
 * last_heartbeat_at (never moved backwards), its GPUs' readings, and
 * unreachable/lost → ready. A draining node stays draining. When a node
 * appears twice, its latest record wins.
 */
export async function recordHeartbeats(db: Db, records: readonly HeartbeatRecord[]): Promise<RecordHeartbeatsOutcome> {
  if (records.length === 0) return { known: [], revived: [] };
  const latest = new Map<string, HeartbeatRecord>();
  for (const r of records) {
    const prev = latest.get(r.nodeId);
    if (!prev || prev.at <= r.at) latest.set(r.nodeId, r);
  }
  const payload = JSON.stringify(
    [...latest.values()].map((r) => ({
      node_id: r.nodeId,
      at: r.at.toISOString(),
      gpus: r.gpus.map((g) => ({
        index: g.index,
        ugp: g.utilizationGpuPercent,
        ump: g.utilizationMemoryPercent,
        mem: g.memoryUsedMib,
        temp: g.temperatureC,
        pow: g.powerDrawW,
      })),
    })),
  );
  const res = (await dbCall(() =>
    db.execute(sql`
      WITH input AS (
        SELECT * FROM jsonb_to_recordset(${payload}::jsonb) AS r(node_id uuid, at timestamptz, gpus jsonb)
      ),
      n AS (
        UPDATE nodes SET
          last_heartbeat_at = GREATEST(nodes.last_heartbeat_at, input.at),
          state = CASE WHEN nodes.state IN ('unreachable', 'lost') THEN 'ready'::node_state ELSE nodes.state END
        FROM input, nodes AS old
        WHERE nodes.id = input.node_id AND old.id = nodes.id
        RETURNING nodes.id, nodes.hostname, old.state AS "from", nodes.state AS "to"
      ),
      g AS (
        UPDATE node_gpus SET
          utilization_gpu_percent = s.ugp, utilization_memory_percent = s.ump, memory_used_mib = s.mem,
          temperature_c = s.temp, power_draw_w = s.pow, updated_at = input.at
        FROM input CROSS JOIN LATERAL jsonb_to_recordset(input.gpus) AS s(index int, ugp real, ump real, mem bigint, temp real, pow real)
        WHERE node_gpus.node_id = input.node_id AND node_gpus.index = s.index
      )
      SELECT id, hostname, "from", "to" FROM n`),
  )) as unknown as { rows: { id: string; hostname: string; from: NodeState; to: NodeState }[] };
  return {
    known: res.rows.map((r) => r.id),
    revived: res.rows.filter((r) => r.from !== r.to).map((r) => ({ nodeId: r.id, hostname: r.hostname, from: r.from, to: r.to })),
  };
}

/**
 * The health sweep, one statement: ready nodes silent since before
 * `unreachableBefore` become unreachable, and ready or unreachable nodes
 * silent since before `lostBefore` become lost. A draining node goes straight
 * to lost after `lostBefore` (its tasks are lost like any other node's; the
 * drain is not remembered once it comes back). Returns what changed.
 */
export async function markNodeStates(db: Db, opts: { unreachableBefore: Date; lostBefore: Date }): Promise<NodeStateChange[]> {
  const unreachable = opts.unreachableBefore.toISOString();
  const lost = opts.lostBefore.toISOString();
  const res = (await dbCall(() =>
    db.execute(sql`
      UPDATE nodes SET state = CASE
          WHEN COALESCE(nodes.last_heartbeat_at, nodes.registered_at) < ${lost}::timestamptz THEN 'lost'::node_state
          ELSE 'unreachable'::node_state END
      FROM nodes AS old
      WHERE old.id = nodes.id
        AND (
          (nodes.state IN ('ready', 'unreachable')
            AND COALESCE(nodes.last_heartbeat_at, nodes.registered_at) < ${unreachable}::timestamptz
            AND (nodes.state = 'ready' OR COALESCE(nodes.last_heartbeat_at, nodes.registered_at) < ${lost}::timestamptz))
          -- A draining node still runs its tasks; if it goes silent for the lost timeout, they are lost too.
          OR (nodes.state IN ('draining', 'preempting') AND COALESCE(nodes.last_heartbeat_at, nodes.registered_at) < ${lost}::timestamptz))
      RETURNING nodes.id, nodes.hostname, old.state AS "from", nodes.state AS "to"`),
  )) as unknown as { rows: { id: string; hostname: string; from: NodeState; to: NodeState }[] };
  return res.rows.map((r) => ({ nodeId: r.id, hostname: r.hostname, from: r.from, to: r.to }));
}

interface NodeRow {
  id: string;
  hostname: string;
  provider: string;
  region: string;
  zone: string;
  network: string;
  instance_type: string;
  spot: boolean;
  private_ip: string;
  state: NodeState;
  degraded_reason: string | null;
  cpu_cores: number;
  memory_mib: string | number;
  agent_version: string;
  driver_version: string;
  cuda_version: string;
  registered_at: Date | string;
  last_heartbeat_at: Date | string | null;
}

interface GpuRow {
  node_id: string;
  index: number;
  uuid: string;
  name: string;
  memory_total_mib: string | number;
  mig_enabled: boolean;
  mig_devices: MigDeviceSpec[] | string;
  utilization_gpu_percent: number | null;
  utilization_memory_percent: number | null;
  memory_used_mib: string | number | null;
  temperature_c: number | null;
  power_draw_w: number | null;
  updated_at: Date | string | null;
  allocated_job_id?: string | null;
}

/** Nodes by hostname with their GPUs by index; `states` filters (empty: all). */
export async function listNodes(db: Db, opts: { states?: readonly NodeState[]; ids?: readonly string[] } = {}): Promise<NodeInfo[]> {
  const states = JSON.stringify(opts.states && opts.states.length > 0 ? opts.states : NODE_STATES);
  const idFilter = opts.ids ? sql`AND id IN (SELECT value::uuid FROM jsonb_array_elements_text(${JSON.stringify(opts.ids)}::jsonb))` : sql``;
  const nodeRes = (await dbCall(() =>
    db.execute(sql`
      SELECT id, hostname, provider, region, zone, network, instance_type, spot, private_ip, state, degraded_reason,
        cpu_cores, memory_mib, agent_version, driver_version, cuda_version, registered_at, last_heartbeat_at
      FROM nodes
      WHERE state::text IN (SELECT jsonb_array_elements_text(${states}::jsonb)) ${idFilter}
      ORDER BY hostname, id`),
  )) as unknown as { rows: NodeRow[] };
  if (nodeRes.rows.length === 0) return [];
  const ids = JSON.stringify(nodeRes.rows.map((r) => r.id));
  const gpuRes = (await dbCall(() =>
    db.execute(sql`
      SELECT g.node_id, g.index, g.uuid, g.name, g.memory_total_mib, g.mig_enabled, g.mig_devices, g.utilization_gpu_percent,
        g.utilization_memory_percent, g.memory_used_mib, g.temperature_c, g.power_draw_w, g.updated_at, h.job_id AS allocated_job_id
      FROM node_gpus g LEFT JOIN task_gpus h ON h.node_id = g.node_id AND h.gpu_index = g.index
      WHERE g.node_id IN (SELECT value::uuid FROM jsonb_array_elements_text(${ids}::jsonb))
      ORDER BY g.node_id, g.index`),
  )) as unknown as { rows: GpuRow[] };
  const gpusByNode = new Map<string, NodeGpu[]>();
  for (const g of gpuRes.rows) {
    const list = gpusByNode.get(g.node_id) ?? [];
    list.push(toNodeGpu(g));
    gpusByNode.set(g.node_id, list);
  }
  return nodeRes.rows.map((r) => ({
    id: r.id,
    hostname: r.hostname,
    labels: {
      provider: r.provider,
      region: r.region,
      zone: r.zone,
      network: r.network,
      instanceType: r.instance_type,
      spot: r.spot,
      privateIp: r.private_ip,
    },
    state: r.state,
    degradedReason: r.degraded_reason,
    cpuCores: r.cpu_cores,
    memoryMib: Number(r.memory_mib),
    agentVersion: r.agent_version,
    driverVersion: r.driver_version,
    cudaVersion: r.cuda_version,
    registeredAt: toDate(r.registered_at),
    lastHeartbeatAt: r.last_heartbeat_at === null ? null : toDate(r.last_heartbeat_at),
    gpus: gpusByNode.get(r.id) ?? [],
  }));
}

/** One node, or null when no node has that id. */
export async function getNode(db: Db, id: string): Promise<NodeInfo | null> {
  if (!UUID.test(id)) return null;
  return (await listNodes(db, { ids: [id] }))[0] ?? null;
}

/** How many nodes are in each state (every state present, 0 when none). */
export async function countNodesByState(db: Db): Promise<Record<NodeState, number>> {
  const res = (await dbCall(() => db.execute(sql`SELECT state, count(*)::int AS n FROM nodes GROUP BY state`))) as unknown as {
    rows: { state: NodeState; n: number }[];
  };
  const out = Object.fromEntries(NODE_STATES.map((s) => [s, 0])) as Record<NodeState, number>;
  for (const r of res.rows) out[r.state] = Number(r.n);
  return out;
}

/**
 * Runs `fn` in a transaction holding the transaction-level advisory lock
 * `key`, or returns `{ acquired: false }` at once when another session holds
 * it: singleton loops (node health, scheduler) run on one controller replica
 * at a time. On PGlite (one process) the lock is always free.
 */
export async function withSingletonLock<T>(db: Db, key: bigint, fn: (tx: Db) => Promise<T>): Promise<{ acquired: true; value: T } | { acquired: false }> {
  return dbCall(() =>
    db.transaction(async (tx) => {
      const res = (await tx.execute(sql`SELECT pg_try_advisory_xact_lock(${key.toString()}::bigint) AS locked`)) as unknown as {
        rows: { locked: boolean }[];
      };
      if (res.rows[0]?.locked !== true) return { acquired: false as const };
      return { acquired: true as const, value: await fn(tx as unknown as Db) };
    }),
  );
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function toDate(v: Date | string): Date {
  return v instanceof Date ? v : new Date(v);
}

const num = (v: string | number | null): number | null => (v === null ? null : Number(v));

function toNodeGpu(g: GpuRow): NodeGpu {
  const hasSample = g.updated_at !== null;
  return {
    index: g.index,
    uuid: g.uuid,
    name: g.name,
    memoryTotalMib: Number(g.memory_total_mib),
    migEnabled: g.mig_enabled,
    migDevices: typeof g.mig_devices === "string" ? (JSON.parse(g.mig_devices) as MigDeviceSpec[]) : g.mig_devices,
    sample: hasSample
      ? {
          index: g.index,
          utilizationGpuPercent: num(g.utilization_gpu_percent),
          utilizationMemoryPercent: num(g.utilization_memory_percent),
          memoryUsedMib: num(g.memory_used_mib),
          temperatureC: num(g.temperature_c),
          powerDrawW: num(g.power_draw_w),
        }
      : null,
    updatedAt: g.updated_at === null ? null : toDate(g.updated_at),
    allocatedJobId: g.allocated_job_id ?? null,
  };
}
