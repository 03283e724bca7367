import { closestMatches } from "./did-you-mean.js";

/**
 * Accelerator names of the pricing catalog, in canonical spelling. A spec's
 * `resources.gpu_type` must use one of these (matched ignoring case and the
 * separators `-`, `_`, space) so the optimizer can match catalog rows exactly.
 */
export const GPU_TYPES = [
  "K80",
  "K520",
  "M60",
  "P4",
  "P100",
  "V100",
  "V100-32GB",
  "T4",
  "T4G",
  "A10",
  "A10G",
  "L4",
  "L40S",
  "A100",
  "A100-80GB",
  "H100",
  "H200",
  "B200",
  "B300",
  "RTXPRO6000",
  "V520",
  "MI25",
  "MI300X",
  "Inferentia",
  "Inferentia2",
  "Trainium",
  "QualcommAI100",
] as const;
export type GpuType = (typeof GPU_TYPES)[number];

/**
 * Common spellings that name a catalog model differently. The catalog's
 * plain `A100` is the 40 GB part, `H100` the 80 GB one and `H200` the 141 GB
 * one, so the explicit-memory spellings fold into them.
 */
const ALIASES: ReadonlyMap<string, GpuType> = new Map([
  ["a10040gb", "A100"],
  ["h10080gb", "H100"],
  ["h200141gb", "H200"],
  ["v10016gb", "V100"],
]);

const fold = (s: string): string => s.toLowerCase().replace(/[-_\s]/g, "");
const BY_FOLDED: ReadonlyMap<string, GpuType> = new Map(GPU_TYPES.map((t) => [fold(t), t]));

/** Canonical catalog name for `input`, or null. */
export function canonicalGpuType(input: string): GpuType | null {
  const f = fold(input.slice(0, 64));
  return BY_FOLDED.get(f) ?? ALIASES.get(f) ?? null;
}

/** Up to three catalog names close to an unknown `input`. */
export function suggestGpuTypes(input: string): string[] {
  const f = fold(input);
  const folded = GPU_TYPES.map(fold);
  return closestMatches(f, folded, 3).map((m) => GPU_TYPES[folded.indexOf(m)] ?? m);
}

/**
 * The catalog model of a GPU as nvidia-smi names it ("NVIDIA A100-SXM4-80GB",
 * "Tesla V100-PCIE-32GB", "GRID K520"), using its memory to tell the 40/80 GB
 * A100 and 16/32 GB V100 apart. Models the catalog does not list come back
 * as the product name without its vendor prefix, so a spec can still never
 * match them by accident.
 */
export function catalogGpuModel(productName: string, memoryMib: number): string {
  const bare = productName.replace(/^(NVIDIA|Tesla|GRID|Quadro)\s+/i, "").trim();
  const f = fold(bare);
  const gb = memoryMib / 1024;
  const first = (prefix: string): boolean => f.startsWith(fold(prefix));
  if (first("A100")) return gb > 60 ? "A100-80GB" : "A100";
  if (first("V100")) return gb > 24 ? "V100-32GB" : "V100";
  if (first("H100")) return "H100";
  if (first("H200")) return "H200";
  if (first("B200")) return "B200";
  if (first("L40S")) return "L40S";
  if (first("A10G")) return "A10G";
  if (f === "a10" || f.startsWith("a10pcie")) return "A10";
  for (const m of ["T4", "L4", "K80", "K520", "M60", "P100", "P4"] as const) {
    if (f === fold(m) || new RegExp(`^${fold(m)}(pcie|sxm|\\b)`).test(f)) return m;
  }
  return canonicalGpuType(bare) ?? bare;
}
