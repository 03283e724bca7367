import si from "systeminformation";

/** What the node offers besides GPUs: registered with the controller, shown by `gpuorch-agent inventory`. */
export interface HostInfo {
  hostname: string;
  cpu: { model: string; logicalCores: number; physicalCores: number };
  memoryMib: number;
  os: { platform: string; distro: string; release: string; kernel: string; arch: string };
  disks: DiskInfo[];
}

export interface DiskInfo {
  mount: string;
  filesystem: string;
  type: string;
  sizeBytes: number;
  availableBytes: number;
}

const MIB = 1024 * 1024;

/**
 * Reads the host through systeminformation (it already knows the per-OS
 * sources: /proc, sysctl, WMI). The four reads are independent; a failure of
 * one fails the whole read, since registering a node with made-up CPU or
 * memory numbers would mislead placement.
 */
export async function collectHostInfo(): Promise<HostInfo> {
  const [cpu, mem, os, fs] = await Promise.all([si.cpu(), si.mem(), si.osInfo(), si.fsSize()]);
  return {
    hostname: os.hostname,
    cpu: {
      model: [cpu.manufacturer, cpu.brand].filter((s) => s !== "").join(" ") || "unknown",
      logicalCores: cpu.cores,
      physicalCores: cpu.physicalCores,
    },
    memoryMib: Math.floor(mem.total / MIB),
    os: { platform: os.platform, distro: os.distro, release: os.release, kernel: os.kernel, arch: os.arch },
    disks: fs.map((d) => ({ mount: d.mount, filesystem: d.fs, type: d.type, sizeBytes: d.size, availableBytes: d.available })),
  };
}
