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
