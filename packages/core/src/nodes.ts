/**
 * Registered GPU nodes as the controller stores them. Readings the agent
 * could not take (a MIG-enabled GPU has no whole-GPU utilization) are null.
 */

import { NODE_STATES, type NodeState } from "./scheduler/types.js";

export interface NodeLabels {
  provider: string;
  region: string;
  zone: string;
  network: string;
  instanceType: string;
  spot: boolean;
  privateIp: string;
}

export interface MigDeviceSpec {
  gpuInstanceId: number;
  computeInstanceId: number;
  profile: string;
  memoryMib: number;
  uuid: string;
}

/** One GPU's latest readings, as a heartbeat carries them. */
export interface GpuSample {
  index: number;
  utilizationGpuPercent: number | null;
  utilizationMemoryPercent: number | null;
  memoryUsedMib: number | null;
  temperatureC: number | null;
  powerDrawW: number | null;
}

export interface NodeGpu {
  index: number;
  uuid: string;
  name: string;
  memoryTotalMib: number;
  migEnabled: boolean;
  migDevices: MigDeviceSpec[];
  /** The last heartbeat's reading; null before the first one. */
  sample: GpuSample | null;
  updatedAt: Date | null;
  /** The job whose task holds this GPU now; null when free (or not known to the reader). */
  allocatedJobId?: string | null;
}

/** What an agent registers. */
export interface NodeRegistration {
  /** The id the agent persisted from an earlier registration; null on its first. */
  nodeId: string | null;
  hostname: string;
  labels: NodeLabels;
  cpuCores: number;
  memoryMib: number;
  agentVersion: string;
  driverVersion: string;
  cudaVersion: string;
  degradedReason: string | null;
  gpus: Omit<NodeGpu, "sample" | "updatedAt" | "allocatedJobId">[];
}

export interface NodeInfo {
  id: string;
  hostname: string;
  labels: NodeLabels;
  state: NodeState;
  degradedReason: string | null;
  cpuCores: number;
  memoryMib: number;
  agentVersion: string;
  driverVersion: string;
  cudaVersion: string;
  registeredAt: Date;
  lastHeartbeatAt: Date | null;
  gpus: NodeGpu[];
}

export function isNodeState(s: string): s is NodeState {
  return (NODE_STATES as readonly string[]).includes(s);
}
