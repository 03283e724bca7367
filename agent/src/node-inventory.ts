import type { Logger } from "@gpuorch/runtime";
import { discoverGpus, discoverGpusFromFiles, type Degraded, type GpuSource } from "./gpu/discovery.js";
import type { GpuInfo } from "./gpu/inventory.js";
import type { HostInfo } from "./host-info.js";
import { formatTable } from "./text-table.js";

/** Everything the agent would register for this node. */
export interface NodeInventory {
  host: HostInfo;
  gpuSource: GpuSource;
  driverVersion: string | null;
  cudaVersion: string | null;
  /** nvidia-smi's `attached_gpus`; may differ from `gpus.length` (see GpuInventory). */
  attachedGpus: number | null;
  gpus: GpuInfo[];
  degraded: Degraded | null;
  warnings: string[];
}

export interface GpuInput {
  /** nvidia-smi to run; default `nvidia-smi` on PATH. */
  nvidiaSmiPath?: string;
  nvidiaSmiTimeoutMs?: number;
  /** Read a saved `nvidia-smi -q -x` instead of running nvidia-smi. */
  nvidiaSmiXml?: string;
  /** A saved `nvidia-smi -L` matching the XML file (MIG profiles and UUIDs). */
  nvidiaSmiList?: string;
  /** Like `nvidiaSmiXml`, but the inventory is marked `simulated` (demos, tests). */
  simulateGpus?: string;
}

export interface CollectNodeInventoryDeps {
  logger: Logger;
  collectHost: () => Promise<HostInfo>;
  signal?: AbortSignal;
}

export async function collectNodeInventory(input: GpuInput, deps: CollectNodeInventoryDeps): Promise<NodeInventory> {
  const replay = input.simulateGpus ?? input.nvidiaSmiXml;
  const [discovery, host] = await Promise.all([
    replay !== undefined
      ? discoverGpusFromFiles({
          xmlFile: replay,
          source: input.simulateGpus !== undefined ? "simulated" : "file",
          ...(input.nvidiaSmiList !== undefined ? { listFile: input.nvidiaSmiList } : {}),
        })
      : discoverGpus({
          logger: deps.logger,
          ...(input.nvidiaSmiPath !== undefined ? { path: input.nvidiaSmiPath } : {}),
          ...(input.nvidiaSmiTimeoutMs !== undefined ? { timeoutMs: input.nvidiaSmiTimeoutMs } : {}),
          ...(deps.signal ? { signal: deps.signal } : {}),
        }),
    deps.collectHost(),
  ]);
  return {
    host,
    gpuSource: discovery.source,
    driverVersion: discovery.inventory.driverVersion,
    cudaVersion: discovery.inventory.cudaVersion,
    attachedGpus: discovery.inventory.attachedGpus,
    gpus: discovery.inventory.gpus,
    degraded: discovery.degraded,
    warnings: discovery.warnings,
  };
}

const dash = (v: string | number | null | undefined): string => (v === null || v === undefined ? "-" : String(v));
const GIB = 1024 ** 3;

/** The human view of `gpuorch-agent inventory`. */
export function formatNodeInventory(inv: NodeInventory): string {
  const h = inv.host;
  const out: string[] = [];
  const facts: [string, string][] = [
    ["Host", `${h.hostname} (${h.os.distro} ${h.os.release}, ${h.os.platform} ${h.os.kernel}, ${h.os.arch})`],
    ["CPU", `${h.cpu.model}, ${h.cpu.logicalCores} cores (${h.cpu.physicalCores} physical)`],
    ["Memory", `${h.memoryMib} MiB`],
    ...h.disks.map((d): [string, string] => [
      "Disk",
      `${d.mount} ${(d.sizeBytes / GIB).toFixed(1)} GiB, ${(d.availableBytes / GIB).toFixed(1)} GiB free (${d.type} ${d.filesystem})`,
    ]),
    ["GPUs", gpuSummary(inv)],
    ...(inv.degraded ? [["DEGRADED", `${inv.degraded.reason}: ${inv.degraded.message}`] as [string, string]] : []),
    ...inv.warnings.map((w): [string, string] => ["Warning", w]),
  ];
  // A fixed label width, so the block lines up the same whether or not a DEGRADED line is present.
  out.push(...facts.map(([label, value]) => `${label.padEnd(10)}${value}`));
  if (inv.gpus.length > 0) {
    out.push(
      "",
      formatTable(
        ["IDX", "NAME", "UUID", "BUS", "MEM MiB (used/total)", "UTIL%", "TEMP C", "POWER W", "SM MHz", "MIG"],
        inv.gpus.map((g) => [
          String(g.index),
          g.name,
          dash(g.uuid),
          dash(g.pciBusId),
          `${dash(g.memory.usedMib)}/${dash(g.memory.totalMib)}`,
          dash(g.utilization.gpuPercent),
          dash(g.temperatureC),
          `${dash(g.power.drawW)}/${dash(g.power.limitW)}`,
          dash(g.smClockMhz),
          migLabel(g),
        ]),
      ),
    );
  }
  const mig = inv.gpus.flatMap((g) => g.migDevices.map((m) => ({ g, m })));
  if (mig.length > 0) {
    out.push(
      "",
      formatTable(
        ["GPU", "DEV", "GI", "CI", "PROFILE", "MEM MiB", "SMs", "UUID"],
        mig.map(({ g, m }) => [
          String(g.index),
          String(m.index),
          dash(m.gpuInstanceId),
          dash(m.computeInstanceId),
          dash(m.profile),
          dash(m.memoryTotalMib),
          dash(m.multiprocessorCount),
          dash(m.uuid),
        ]),
      ),
    );
  }
  return out.join("\n") + "\n";
}

function gpuSummary(inv: NodeInventory): string {
  const parts = [`${inv.gpus.length}`, `source ${inv.gpuSource}`];
  if (inv.driverVersion !== null) parts.push(`driver ${inv.driverVersion}`);
  if (inv.cudaVersion !== null) parts.push(`CUDA ${inv.cudaVersion}`);
  if (inv.attachedGpus !== null && inv.attachedGpus !== inv.gpus.length) parts.push(`nvidia-smi reports ${inv.attachedGpus} attached`);
  return parts.join(", ");
}

function migLabel(g: GpuInfo): string {
  const { current, pending } = g.migMode;
  if (current === null) return "-";
  const now = current ? "on" : "off";
  return pending !== null && pending !== current ? `${now} (pending ${pending ? "on" : "off"})` : now;
}
