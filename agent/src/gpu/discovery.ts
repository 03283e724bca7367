import { readFile } from "node:fs/promises";
import { AppError, toAppError } from "@gpuorch/core";
import type { Logger } from "@gpuorch/runtime";
import { type GpuInventory, withListing } from "./inventory.js";
import { type NvidiaSmiListing, parseNvidiaSmiList } from "./nvidia-smi-list.js";
import { runNvidiaSmi, type RunNvidiaSmiOptions } from "./nvidia-smi-runner.js";
import { parseNvidiaSmiXml } from "./nvidia-smi-xml.js";

/**
 * GPU discovery never throws for a node-side problem: a node whose driver is
 * broken is still a node (its CPUs can run work, and the controller must see
 * why its GPUs are missing), so failures become `degraded` with a stable
 * reason. Only bad input from the operator (an unreadable capture file) throws.
 */

/** Where the inventory came from; `simulated` must never be mistaken for real hardware. */
export type GpuSource = "nvidia-smi" | "file" | "simulated" | "none";

export interface Degraded {
  /** Stable snake_case reason, e.g. `nvidia_smi_timeout`, `driver_library_version_mismatch`. */
  reason: string;
  message: string;
}

export interface GpuDiscovery {
  source: GpuSource;
  inventory: GpuInventory;
  degraded: Degraded | null;
  /** Things worth a log line that do not make the node degraded. */
  warnings: string[];
}

export interface DiscoverGpusOptions extends RunNvidiaSmiOptions {
  logger: Logger;
}

const EMPTY: GpuInventory = { driverVersion: null, cudaVersion: null, attachedGpus: null, gpus: [] };

/** Runs `nvidia-smi -q -x` (and `nvidia-smi -L` for MIG names and UUIDs) and reports what it found. */
export async function discoverGpus(opts: DiscoverGpusOptions): Promise<GpuDiscovery> {
  const { logger, ...run } = opts;
  const log = logger.child({ component: "gpu-discovery", nvidiaSmi: run.path ?? "nvidia-smi" });
  let xml: string;
  try {
    xml = await runNvidiaSmi(["-q", "-x"], run);
  } catch (e) {
    const err = toAppError(e);
    if (err.reason === "nvidia_smi_not_found") {
      log.info({ reason: err.reason }, "nvidia-smi not found: reporting no NVIDIA GPUs");
      return { source: "none", inventory: EMPTY, degraded: null, warnings: [err.message] };
    }
    return degraded(log, "nvidia-smi", { reason: err.reason, message: err.message });
  }

  let inventory: GpuInventory;
  try {
    inventory = parseNvidiaSmiXml(xml);
  } catch (e) {
    const err = toAppError(e);
    return degraded(log, "nvidia-smi", { reason: "nvidia_smi_output_invalid", message: err.message });
  }

  const warnings = countWarnings(inventory);
  if (usesMig(inventory)) {
    // Only `-L` names MIG profiles and prints MIG UUIDs. Without them MIG devices
    // are still listed (from the XML), just not addressable by UUID: a warning, not degraded.
    try {
      const listing = parseNvidiaSmiList(await runNvidiaSmi(["-L"], run));
      inventory = withListing(inventory, listing.gpus);
      warnings.push(...unrecognizedWarning(listing));
    } catch (e) {
      warnings.push(`MIG UUIDs unknown: ${toAppError(e).message}`);
    }
  }
  for (const w of warnings) log.warn({ warning: w }, "gpu discovery warning");
  return { source: "nvidia-smi", inventory, degraded: null, warnings };
}

export interface GpusFromFilesOptions {
  /** A saved `nvidia-smi -q -x` output. */
  xmlFile: string;
  /** Optionally a saved `nvidia-smi -L` of the same host, for MIG profiles and UUIDs. */
  listFile?: string;
  source: "file" | "simulated";
}

/**
 * Replays saved nvidia-smi output, for demos, tests and inspecting a capture
 * from another machine. Throws AppError INVALID_ARGUMENT when a file cannot
 * be read or parsed: that is the operator's input, not the node's state.
 */
export async function discoverGpusFromFiles(opts: GpusFromFilesOptions): Promise<GpuDiscovery> {
  let inventory = parseNvidiaSmiXml(await readInput(opts.xmlFile));
  const warnings = countWarnings(inventory);
  if (opts.listFile !== undefined) {
    const listing = parseNvidiaSmiList(await readInput(opts.listFile));
    inventory = withListing(inventory, listing.gpus);
    warnings.push(...unrecognizedWarning(listing));
  } else if (usesMig(inventory)) {
    warnings.push("MIG profiles and UUIDs unknown: the XML does not carry them (give the matching `nvidia-smi -L` output)");
  }
  return { source: opts.source, inventory, degraded: null, warnings };
}

async function readInput(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    throw new AppError("INVALID_ARGUMENT", `cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`, {
      reason: "input_unreadable",
      cause: e,
    });
  }
}

// A line of `-L` we cannot read may be a MIG device we would then not report:
// say so rather than drop it silently.
function unrecognizedWarning(listing: NvidiaSmiListing): string[] {
  const first = listing.unrecognized[0];
  if (first === undefined) return [];
  return [`nvidia-smi -L: ${listing.unrecognized.length} line(s) not understood, first: ${JSON.stringify(first)}`];
}

function usesMig(inv: GpuInventory): boolean {
  return inv.gpus.some((g) => g.migMode.current === true || g.migDevices.length > 0);
}

function countWarnings(inv: GpuInventory): string[] {
  if (inv.attachedGpus !== null && inv.attachedGpus !== inv.gpus.length) {
    return [`nvidia-smi reports ${inv.attachedGpus} attached GPUs but describes ${inv.gpus.length}`];
  }
  return [];
}

function degraded(log: Logger, source: GpuSource, d: Degraded): GpuDiscovery {
  log.warn({ reason: d.reason, err: d.message }, "GPU discovery failed: node degraded");
  return { source, inventory: EMPTY, degraded: d, warnings: [] };
}

