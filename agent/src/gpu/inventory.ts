/**
 * The GPU inventory the agent discovers and, later, registers with the
 * controller (proto `Gpu`/`MigDevice` in proto/gpuorch/v1/agent.proto). Every
 * reading that nvidia-smi can answer with "N/A" is nullable: a MIG-enabled
 * GPU has no whole-GPU utilization, old drivers have no CUDA version, a
 * trimmed capture has no driver version.
 */

export interface EccCounts {
  correctable: number | null;
  uncorrectable: number | null;
}

export interface MigDeviceInfo {
  /** The MIG device index nvidia-smi shows (`Device N` in `nvidia-smi -L`). */
  index: number;
  gpuInstanceId: number | null;
  computeInstanceId: number | null;
  /** Profile such as `1g.10gb` or `1c.3g.71gb`; only `nvidia-smi -L` names it, the XML does not. */
  profile: string | null;
  memoryTotalMib: number | null;
  memoryUsedMib: number | null;
  multiprocessorCount: number | null;
  /** `MIG-…` UUID usable in CUDA_VISIBLE_DEVICES; only `nvidia-smi -L` prints it. */
  uuid: string | null;
}

export interface GpuInfo {
  /** nvidia-smi's index (the `N` of `GPU N`), which CUDA_VISIBLE_DEVICES also accepts. */
  index: number;
  uuid: string | null;
  name: string;
  pciBusId: string | null;
  memory: { totalMib: number | null; usedMib: number | null; freeMib: number | null };
  utilization: { gpuPercent: number | null; memoryPercent: number | null };
  temperatureC: number | null;
  power: { drawW: number | null; limitW: number | null };
  smClockMhz: number | null;
  ecc: { enabled: boolean | null; volatile: EccCounts | null; aggregate: EccCounts | null };
  /** null: the GPU or driver has no MIG (pre-Ampere, consumer cards, drivers before 450). */
  migMode: { current: boolean | null; pending: boolean | null };
  migDevices: MigDeviceInfo[];
}

export interface GpuInventory {
  driverVersion: string | null;
  cudaVersion: string | null;
  /**
   * What nvidia-smi says is attached. It can differ from `gpus.length`: a
   * capture may have been trimmed, and a GPU that fails to answer is counted
   * here yet has no entry. Both are kept so the difference stays visible.
   */
  attachedGpus: number | null;
  gpus: GpuInfo[];
}

/** One GPU line of `nvidia-smi -L`, with its MIG lines. */
export interface ListedGpu {
  index: number;
  name: string;
  uuid: string;
  migDevices: ListedMigDevice[];
}

export interface ListedMigDevice {
  index: number;
  profile: string;
  uuid: string;
  /** Only drivers before R470 put GI/CI into the UUID (`MIG-GPU-<uuid>/<gi>/<ci>`). */
  gpuInstanceId: number | null;
  computeInstanceId: number | null;
}

/**
 * Completes an XML inventory with what only `nvidia-smi -L` prints: the MIG
 * profile names and MIG UUIDs, and the GPU index. GPUs are matched by UUID
 * (the XML has no index, and a trimmed capture would shift positions), MIG
 * devices by their device index.
 */
export function withListing(inventory: GpuInventory, listing: readonly ListedGpu[]): GpuInventory {
  const byUuid = new Map(listing.map((g) => [g.uuid, g]));
  const gpus = inventory.gpus.map((gpu): GpuInfo => {
    const listed = gpu.uuid === null ? undefined : byUuid.get(gpu.uuid);
    if (!listed) return gpu;
    const listedMig = new Map(listed.migDevices.map((m) => [m.index, m]));
    const migDevices = gpu.migDevices.map((m): MigDeviceInfo => {
      const l = listedMig.get(m.index);
      if (!l) return m;
      return {
        ...m,
        profile: m.profile ?? l.profile,
        uuid: m.uuid ?? l.uuid,
        gpuInstanceId: m.gpuInstanceId ?? l.gpuInstanceId,
        computeInstanceId: m.computeInstanceId ?? l.computeInstanceId,
      };
    });
    // MIG devices the listing knows but the XML does not (the XML printed
    // "None" or omitted them) are still schedulable units; keep them.
    const known = new Set(gpu.migDevices.map((m) => m.index));
    for (const l of listed.migDevices) {
      if (known.has(l.index)) continue;
      migDevices.push({
        index: l.index,
        gpuInstanceId: l.gpuInstanceId,
        computeInstanceId: l.computeInstanceId,
        profile: l.profile,
        memoryTotalMib: null,
        memoryUsedMib: null,
        multiprocessorCount: null,
        uuid: l.uuid,
      });
    }
    return { ...gpu, index: listed.index, migDevices };
  });
  return { ...inventory, gpus };
}
