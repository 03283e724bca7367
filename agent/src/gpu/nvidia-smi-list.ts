import type { ListedGpu, ListedMigDevice } from "./inventory.js";

/**
 * Parser for `nvidia-smi -L`: the only output that names MIG profiles and
 * prints MIG UUIDs (what CUDA_VISIBLE_DEVICES takes). Lines look like
 *   GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-…)
 *     MIG 3g.40gb     Device  0: (UUID: MIG-…)
 * Drivers before R470 printed `MIG-GPU-<gpu uuid>/<gi>/<ci>`; newer profile
 * names carry extra parts (`1c.3g.71gb`, `1g.10gb+me`), so the profile is
 * taken as any run of non-space characters.
 */

const GPU_LINE = /^GPU (\d+): (.+) \(UUID: ([^)\s]+)\)\s*$/;
const MIG_LINE = /^\s+MIG (\S+)\s+Device\s+(\d+): \(UUID: ([^)\s]+)\)\s*$/;
const OLD_MIG_UUID = /^MIG-GPU-[^/]+\/(\d+)\/(\d+)$/;

export interface NvidiaSmiListing {
  gpus: ListedGpu[];
  /** Non-empty lines that matched no known shape, kept so a caller can log them. */
  unrecognized: string[];
}

export function parseNvidiaSmiList(output: string): NvidiaSmiListing {
  const gpus: ListedGpu[] = [];
  const unrecognized: string[] = [];
  for (const line of output.split(/\r?\n/)) {
    if (line.trim() === "") continue;
    const g = GPU_LINE.exec(line);
    if (g) {
      gpus.push({ index: Number(g[1]), name: g[2] ?? "", uuid: g[3] ?? "", migDevices: [] });
      continue;
    }
    const m = MIG_LINE.exec(line);
    const parent = gpus[gpus.length - 1];
    if (m && parent) {
      parent.migDevices.push(migDevice(m[1] ?? "", Number(m[2]), m[3] ?? ""));
      continue;
    }
    unrecognized.push(line);
  }
  return { gpus, unrecognized };
}

function migDevice(profile: string, index: number, uuid: string): ListedMigDevice {
  const old = OLD_MIG_UUID.exec(uuid);
  return {
    index,
    profile,
    uuid,
    gpuInstanceId: old ? Number(old[1]) : null,
    computeInstanceId: old ? Number(old[2]) : null,
  };
}
