import { AppError } from "@gpuorch/core";
import { XMLParser, XMLValidator } from "fast-xml-parser";
import type { EccCounts, GpuInfo, GpuInventory, MigDeviceInfo } from "./inventory.js";
import { enabledValue, integerValue, numberValue, textValue } from "./nvidia-smi-values.js";

/**
 * Parser for `nvidia-smi -q -x`, the agent's contract with the driver. It
 * reads every schema generation we have real output of: DTD v7 (driver 352,
 * `power_readings`, single/double-bit ECC), the same with the DTD inlined by
 * `--dtd`, output with no DOCTYPE at all (driver 418), v10–v12 (MIG,
 * `gpu_power_readings`, SRAM/DRAM ECC) and v13 (`instant_power_draw`, split
 * SRAM parity/SECDED counters). Elements are looked up by name and every one
 * may be missing, so a trimmed or future schema degrades to nulls, not errors.
 */

type XmlNode = Record<string, unknown>;

// Only these repeat; everything else is read as a single element. Declaring
// them keeps "one GPU" and "several GPUs" the same shape.
const REPEATED = new Set(["nvidia_smi_log.gpu", "nvidia_smi_log.gpu.mig_devices.mig_device"]);

function createParser(): XMLParser {
  return new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: "@_",
    // Versions ("12.2", "535.54.03"), UUIDs and bus ids must stay text.
    parseTagValue: false,
    parseAttributeValue: false,
    trimValues: true,
    // nvidia-smi emits no entities of its own; an inline DTD (`--dtd`) only declares elements.
    processEntities: false,
    isArray: (_name, jpath) => REPEATED.has(String(jpath)),
  });
}

function isNode(v: unknown): v is XmlNode {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function child(node: unknown, ...path: string[]): unknown {
  let cur: unknown = node;
  for (const key of path) {
    if (!isNode(cur)) return undefined;
    cur = cur[key];
  }
  return cur;
}

function text(node: unknown, ...path: string[]): string | undefined {
  const v = child(node, ...path);
  if (typeof v === "string") return v;
  // An element with attributes and text (`<gpu id="…">` never has text, but be lenient).
  if (isNode(v) && typeof v["#text"] === "string") return v["#text"];
  return undefined;
}

/** Parses `nvidia-smi -q -x` output. Throws AppError INVALID_ARGUMENT (reason `nvidia_smi_xml_invalid`). */
export function parseNvidiaSmiXml(xml: string): GpuInventory {
  if (xml.trim() === "") throw invalid("nvidia-smi -q -x printed nothing");
  const check = XMLValidator.validate(xml);
  if (check !== true) {
    throw invalid(`nvidia-smi -q -x output is not well-formed XML (line ${check.err.line}): ${check.err.msg}`);
  }
  const doc: unknown = createParser().parse(xml);
  const log = child(doc, "nvidia_smi_log");
  if (!isNode(log)) {
    // An empty root (`<nvidia_smi_log/>`) parses as "": a log with nothing in it, not a broken one.
    if (log === "") return { driverVersion: null, cudaVersion: null, attachedGpus: null, gpus: [] };
    throw invalid("nvidia-smi -q -x output has no <nvidia_smi_log> root element");
  }
  const gpuNodes = Array.isArray(log.gpu) ? (log.gpu as unknown[]) : [];
  return {
    driverVersion: textValue(text(log, "driver_version")),
    cudaVersion: textValue(text(log, "cuda_version")),
    attachedGpus: integerValue(text(log, "attached_gpus")),
    // The XML carries no GPU index; nvidia-smi lists GPUs in index order, so the
    // position is the index unless a capture was trimmed (`withListing` then fixes it from `-L`).
    gpus: gpuNodes.map((g, i) => parseGpu(g, i)),
  };
}

function invalid(message: string): AppError {
  return new AppError("INVALID_ARGUMENT", message, { reason: "nvidia_smi_xml_invalid" });
}

function parseGpu(g: unknown, position: number): GpuInfo {
  const power = isNode(child(g, "gpu_power_readings")) ? child(g, "gpu_power_readings") : child(g, "power_readings");
  return {
    index: position,
    uuid: textValue(text(g, "uuid")),
    name: textValue(text(g, "product_name")) ?? "unknown",
    pciBusId: textValue(text(g, "pci", "pci_bus_id")) ?? textValue(text(g, "@_id")),
    memory: {
      totalMib: numberValue(text(g, "fb_memory_usage", "total"), "MiB"),
      usedMib: numberValue(text(g, "fb_memory_usage", "used"), "MiB"),
      freeMib: numberValue(text(g, "fb_memory_usage", "free"), "MiB"),
    },
    utilization: {
      gpuPercent: numberValue(text(g, "utilization", "gpu_util"), "%"),
      memoryPercent: numberValue(text(g, "utilization", "memory_util"), "%"),
    },
    temperatureC: numberValue(text(g, "temperature", "gpu_temp"), "C"),
    power: {
      // v13 dropped `power_draw` for `instant_power_draw` and `average_power_draw`.
      drawW:
        numberValue(text(power, "power_draw"), "W") ??
        numberValue(text(power, "instant_power_draw"), "W") ??
        numberValue(text(power, "average_power_draw"), "W"),
      // Before v12 the limit in force is `enforced_power_limit`; from v12 on, `current_power_limit`.
      limitW:
        numberValue(text(power, "enforced_power_limit"), "W") ??
        numberValue(text(power, "current_power_limit"), "W") ??
        numberValue(text(power, "power_limit"), "W"),
    },
    smClockMhz: numberValue(text(g, "clocks", "sm_clock"), "MHz"),
    ecc: {
      enabled: enabledValue(text(g, "ecc_mode", "current_ecc")),
      volatile: eccCounts(child(g, "ecc_errors", "volatile")),
      aggregate: eccCounts(child(g, "ecc_errors", "aggregate")),
    },
    migMode: {
      current: enabledValue(text(g, "mig_mode", "current_mig")),
      pending: enabledValue(text(g, "mig_mode", "pending_mig")),
    },
    migDevices: migDevices(child(g, "mig_devices", "mig_device")),
  };
}

/**
 * Up to v11 the counters are `single_bit`/`double_bit` groups with a `total`
 * each; from v12 they are flat `sram_*`/`dram_*` counters (v13 splits SRAM
 * uncorrectable into parity and SECDED). Both are reduced to correctable and
 * uncorrectable sums; null where no counter has a value.
 */
function eccCounts(node: unknown): EccCounts | null {
  if (!isNode(node)) return null;
  let correctable: number | null;
  let uncorrectable: number | null;
  if (isNode(node.single_bit) || isNode(node.double_bit)) {
    correctable = numberValue(text(node, "single_bit", "total"));
    uncorrectable = numberValue(text(node, "double_bit", "total"));
  } else {
    correctable = sumOf(node, (k) => k.endsWith("_correctable"));
    uncorrectable = sumOf(node, (k) => k.includes("_uncorrectable"));
  }
  if (correctable === null && uncorrectable === null) return null;
  return { correctable, uncorrectable };
}

function sumOf(node: XmlNode, pick: (key: string) => boolean): number | null {
  let sum: number | null = null;
  for (const [key, value] of Object.entries(node)) {
    if (!pick(key) || typeof value !== "string") continue;
    const n = numberValue(value);
    if (n !== null) sum = (sum ?? 0) + n;
  }
  return sum;
}

function migDevices(nodes: unknown): MigDeviceInfo[] {
  // A GPU without MIG prints `<mig_devices>None</mig_devices>` (no <mig_device> children).
  if (!Array.isArray(nodes)) return [];
  return nodes.map((m: unknown, i): MigDeviceInfo => ({
    index: integerValue(text(m, "index")) ?? i,
    gpuInstanceId: integerValue(text(m, "gpu_instance_id")),
    computeInstanceId: integerValue(text(m, "compute_instance_id")),
    profile: null,
    memoryTotalMib: numberValue(text(m, "fb_memory_usage", "total"), "MiB"),
    memoryUsedMib: numberValue(text(m, "fb_memory_usage", "used"), "MiB"),
    multiprocessorCount: integerValue(text(m, "device_attributes", "shared", "multiprocessor_count")),
    uuid: null,
  }));
}
