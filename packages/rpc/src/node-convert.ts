import { AppError, type GpuSample, type MigDeviceSpec, type NodeGpu, type NodeInfo, type NodeLabels, type NodeRegistration, type NodeState } from "@gpuorch/core";
import * as pb from "@gpuorch/proto";

// ---- NodeState ----

export function nodeStateToProto(s: NodeState): pb.NodeState {
  switch (s) {
    case "ready":
      return pb.NodeState.NODE_STATE_READY;
    case "unreachable":
      return pb.NodeState.NODE_STATE_UNREACHABLE;
    case "lost":
      return pb.NodeState.NODE_STATE_LOST;
    case "draining":
      return pb.NodeState.NODE_STATE_DRAINING;
    case "preempting":
      return pb.NodeState.NODE_STATE_PREEMPTING;
  }
}

export function nodeStateFromProto(s: pb.NodeState, field = "state"): NodeState {
  switch (s) {
    case pb.NodeState.NODE_STATE_READY:
      return "ready";
    case pb.NodeState.NODE_STATE_UNREACHABLE:
      return "unreachable";
    case pb.NodeState.NODE_STATE_LOST:
      return "lost";
    case pb.NodeState.NODE_STATE_DRAINING:
      return "draining";
    case pb.NodeState.NODE_STATE_PREEMPTING:
      return "preempting";
    case pb.NodeState.NODE_STATE_UNSPECIFIED:
    case pb.NodeState.UNRECOGNIZED:
    default: {
      const what = s === 0 ? "is unspecified" : `has unknown value ${String(s)}`;
      throw AppError.invalid(`${field} ${what}`, [{ field, message: what }]);
    }
  }
}

// ---- labels, GPUs, samples ----

export function nodeLabelsToProto(l: NodeLabels): pb.NodeLabels {
  return { ...l };
}

export function nodeLabelsFromProto(l: pb.NodeLabels | undefined): NodeLabels {
  return {
    provider: l?.provider ?? "",
    region: l?.region ?? "",
    zone: l?.zone ?? "",
    network: l?.network ?? "",
    instanceType: l?.instanceType ?? "",
    spot: l?.spot ?? false,
    privateIp: l?.privateIp ?? "",
  };
}

type GpuSpec = Omit<NodeGpu, "sample" | "updatedAt">;

export function gpuToProto(g: GpuSpec): pb.Gpu {
  return {
    index: g.index,
    uuid: g.uuid,
    name: g.name,
    pciBusId: "",
    memoryTotalMib: String(g.memoryTotalMib),
    migEnabled: g.migEnabled,
    migDevices: g.migDevices.map((m) => ({ ...m, memoryMib: String(m.memoryMib) })),
  };
}

export function gpuFromProto(g: pb.Gpu): GpuSpec {
  return {
    index: g.index,
    uuid: g.uuid,
    name: g.name,
    memoryTotalMib: Number(g.memoryTotalMib),
    migEnabled: g.migEnabled,
    migDevices: g.migDevices.map(
      (m): MigDeviceSpec => ({
        gpuInstanceId: m.gpuInstanceId,
        computeInstanceId: m.computeInstanceId,
        profile: m.profile,
        memoryMib: Number(m.memoryMib),
        uuid: m.uuid,
      }),
    ),
  };
}

const opt = <T>(v: T | null): T | undefined => (v === null ? undefined : v);
const nul = <T>(v: T | undefined): T | null => (v === undefined ? null : v);

export function gpuSampleToProto(s: GpuSample): pb.GpuSample {
  return {
    index: s.index,
    utilizationGpuPercent: opt(s.utilizationGpuPercent),
    utilizationMemoryPercent: opt(s.utilizationMemoryPercent),
    memoryUsedMib: s.memoryUsedMib === null ? undefined : String(Math.round(s.memoryUsedMib)),
    temperatureC: opt(s.temperatureC),
    powerDrawW: opt(s.powerDrawW),
  };
}

export function gpuSampleFromProto(s: pb.GpuSample): GpuSample {
  return {
    index: s.index,
    utilizationGpuPercent: nul(s.utilizationGpuPercent),
    utilizationMemoryPercent: nul(s.utilizationMemoryPercent),
    memoryUsedMib: s.memoryUsedMib === undefined ? null : Number(s.memoryUsedMib),
    temperatureC: nul(s.temperatureC),
    powerDrawW: nul(s.powerDrawW),
  };
}

// ---- registration ----

export function nodeRegistrationToProto(r: NodeRegistration): pb.RegisterRequest {
  return {
    hostname: r.hostname,
    labels: nodeLabelsToProto(r.labels),
    gpus: r.gpus.map(gpuToProto),
    cpuCores: r.cpuCores,
    memoryMib: String(r.memoryMib),
    agentVersion: r.agentVersion,
    driverVersion: r.driverVersion,
    cudaVersion: r.cudaVersion,
    nodeId: r.nodeId ?? "",
    degradedReason: r.degradedReason ?? "",
  };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Validates what an agent sent: INVALID_ARGUMENT naming the field. */
export function nodeRegistrationFromProto(r: pb.RegisterRequest): NodeRegistration {
  const fields: { field: string; message: string }[] = [];
  if (!r.hostname.trim()) fields.push({ field: "hostname", message: "required" });
  if (r.nodeId && !UUID.test(r.nodeId)) fields.push({ field: "node_id", message: "expected a UUID" });
  const indexes = new Set<number>();
  r.gpus.forEach((g, i) => {
    if (indexes.has(g.index)) fields.push({ field: `gpus[${i}].index`, message: `duplicate GPU index ${g.index}` });
    indexes.add(g.index);
  });
  if (fields.length > 0) throw AppError.invalid(`invalid registration: ${fields.map((f) => `${f.field}: ${f.message}`).join("; ")}`, fields);
  return {
    nodeId: r.nodeId || null,
    hostname: r.hostname.trim(),
    labels: nodeLabelsFromProto(r.labels),
    cpuCores: r.cpuCores,
    memoryMib: Number(r.memoryMib),
    agentVersion: r.agentVersion,
    driverVersion: r.driverVersion,
    cudaVersion: r.cudaVersion,
    degradedReason: r.degradedReason || null,
    gpus: r.gpus.map(gpuFromProto),
  };
}

// ---- node ----

export function nodeToProto(n: NodeInfo): pb.Node {
  return {
    id: n.id,
    hostname: n.hostname,
    labels: nodeLabelsToProto(n.labels),
    state: nodeStateToProto(n.state),
    degradedReason: n.degradedReason ?? "",
    cpuCores: n.cpuCores,
    memoryMib: String(n.memoryMib),
    agentVersion: n.agentVersion,
    driverVersion: n.driverVersion,
    cudaVersion: n.cudaVersion,
    registeredAt: n.registeredAt,
    lastHeartbeatAt: n.lastHeartbeatAt ?? undefined,
    gpus: n.gpus.map((g) => ({
      gpu: gpuToProto(g),
      sample: g.sample ? gpuSampleToProto(g.sample) : undefined,
      updatedAt: g.updatedAt ?? undefined,
      allocatedJobId: g.allocatedJobId ?? "",
    })),
  };
}

export function nodeFromProto(p: pb.Node): NodeInfo {
  return {
    id: p.id,
    hostname: p.hostname,
    labels: nodeLabelsFromProto(p.labels),
    state: nodeStateFromProto(p.state),
    degradedReason: p.degradedReason || null,
    cpuCores: p.cpuCores,
    memoryMib: Number(p.memoryMib),
    agentVersion: p.agentVersion,
    driverVersion: p.driverVersion,
    cudaVersion: p.cudaVersion,
    registeredAt: p.registeredAt ?? new Date(0),
    lastHeartbeatAt: p.lastHeartbeatAt ?? null,
    gpus: p.gpus.map((g) => {
      const gpu = g.gpu ? gpuFromProto(g.gpu) : { index: 0, uuid: "", name: "", memoryTotalMib: 0, migEnabled: false, migDevices: [] };
      return { ...gpu, sample: g.sample ? gpuSampleFromProto(g.sample) : null, updatedAt: g.updatedAt ?? null, allocatedJobId: g.allocatedJobId || null };
    }),
  };
}

/** Canonical JSON of a node (snake_case, ISO times, nulls kept), as `gpuorch nodes --json` prints it. */
export function nodeToJson(n: NodeInfo): Record<string, unknown> {
  return {
    id: n.id,
    hostname: n.hostname,
    provider: n.labels.provider,
    region: n.labels.region,
    zone: n.labels.zone,
    network: n.labels.network,
    instance_type: n.labels.instanceType,
    spot: n.labels.spot,
    private_ip: n.labels.privateIp,
    state: n.state,
    degraded_reason: n.degradedReason,
    cpu_cores: n.cpuCores,
    memory_mib: n.memoryMib,
    agent_version: n.agentVersion,
    driver_version: n.driverVersion,
    cuda_version: n.cudaVersion,
    registered_at: n.registeredAt.toISOString(),
    last_heartbeat_at: n.lastHeartbeatAt?.toISOString() ?? null,
    gpus: n.gpus.map((g) => ({
      index: g.index,
      allocated_job_id: g.allocatedJobId ?? null,
      uuid: g.uuid,
      name: g.name,
      memory_total_mib: g.memoryTotalMib,
      mig_enabled: g.migEnabled,
      mig_devices: g.migDevices.map((m) => ({
        gpu_instance_id: m.gpuInstanceId,
        compute_instance_id: m.computeInstanceId,
        profile: m.profile,
        memory_mib: m.memoryMib,
        uuid: m.uuid,
      })),
      utilization_gpu_percent: g.sample?.utilizationGpuPercent ?? null,
      utilization_memory_percent: g.sample?.utilizationMemoryPercent ?? null,
      memory_used_mib: g.sample?.memoryUsedMib ?? null,
      temperature_c: g.sample?.temperatureC ?? null,
      power_draw_w: g.sample?.powerDrawW ?? null,
      updated_at: g.updatedAt?.toISOString() ?? null,
    })),
  };
}
