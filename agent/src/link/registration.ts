import type { GpuSample, NodeLabels, NodeRegistration } from "@gpuorch/core";
import type { GpuInfo } from "../gpu/inventory.js";
import type { NodeInventory } from "../node-inventory.js";

export const AGENT_VERSION = "0.1.0";

/** What the agent registers: the discovered inventory plus its configured labels. */
export function registrationFromInventory(inv: NodeInventory, opts: { labels: NodeLabels; hostname?: string | undefined }): NodeRegistration {
  return {
    nodeId: null,
    hostname: opts.hostname ?? inv.host.hostname,
    labels: opts.labels,
    cpuCores: inv.host.cpu.logicalCores,
    memoryMib: inv.host.memoryMib,
    agentVersion: AGENT_VERSION,
    driverVersion: inv.driverVersion ?? "",
    cudaVersion: inv.cudaVersion ?? "",
    degradedReason: inv.degraded ? `${inv.degraded.reason}: ${inv.degraded.message}` : null,
    gpus: inv.gpus.map((g) => ({
      index: g.index,
      uuid: g.uuid ?? "",
      name: g.name,
      memoryTotalMib: g.memory.totalMib ?? 0,
      migEnabled: g.migMode.current === true,
      migDevices: g.migDevices.map((m) => ({
        gpuInstanceId: m.gpuInstanceId ?? -1,
        computeInstanceId: m.computeInstanceId ?? -1,
        profile: m.profile ?? "",
        memoryMib: m.memoryTotalMib ?? 0,
        uuid: m.uuid ?? "",
      })),
    })),
  };
}

/** The per-GPU readings a heartbeat carries. */
export function samplesFromGpus(gpus: readonly GpuInfo[]): GpuSample[] {
  return gpus.map((g) => ({
    index: g.index,
    utilizationGpuPercent: g.utilization.gpuPercent,
    utilizationMemoryPercent: g.utilization.memoryPercent,
    memoryUsedMib: g.memory.usedMib,
    temperatureC: g.temperatureC,
    powerDrawW: g.power.drawW,
  }));
}
