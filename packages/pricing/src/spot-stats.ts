import type { CloudProvider } from "@gpuorch/core";

/**
 * Spot interruption and availability figures per offer. The table, its
 * sources and its reasoning are written out in SPOT_STATS.md next to this
 * package's README; keep the two in step.
 *
 * AWS publishes interruption frequency per instance type and region as five
 * monthly buckets (Spot Instance Advisor: "the rate at which Spot has
 * reclaimed capacity during the trailing month", < 5 %, 5-10 %, 10-15 %,
 * 15-20 %, > 20 %). GCP and Azure publish no per-type rates. We use the
 * bucket's midpoint (25 % for the open > 20 % bucket) as the monthly
 * probability p and convert it to a per-hour rate λ = −ln(1 − p) / 730,
 * i.e. the constant hazard that gives probability p of at least one
 * interruption in a 730-hour month.
 */
export const HOURS_PER_MONTH = 730;

export const SPOT_INTERRUPTION_BUCKETS = [
  { index: 0, label: "<5%", monthlyProbability: 0.025 },
  { index: 1, label: "5-10%", monthlyProbability: 0.075 },
  { index: 2, label: "10-15%", monthlyProbability: 0.125 },
  { index: 3, label: "15-20%", monthlyProbability: 0.175 },
  { index: 4, label: ">20%", monthlyProbability: 0.25 },
] as const;
export type SpotInterruptionBucket = 0 | 1 | 2 | 3 | 4;

/** Per-hour interruption rate equivalent to probability `p` of an interruption within a month. */
export function monthlyProbabilityToHourlyRate(p: number): number {
  if (!(p >= 0 && p < 1)) throw new RangeError(`monthly probability must be in [0, 1), got ${p}`);
  return p === 0 ? 0 : -Math.log(1 - p) / HOURS_PER_MONTH;
}

export function bucketHourlyRate(bucket: SpotInterruptionBucket): number {
  return monthlyProbabilityToHourlyRate(SPOT_INTERRUPTION_BUCKETS[bucket].monthlyProbability);
}

export interface SpotStatsRule {
  provider: CloudProvider;
  /** Normalized accelerator names the rule covers; empty = every type (a provider default). */
  gpuTypes: readonly string[];
  bucket: SpotInterruptionBucket;
  /** Probability (0..1) that a spot request for the type is filled. */
  availability: number;
  /** Key into SPOT_STATS.md's source list. */
  basis: string;
}

const FLAGSHIP = ["H100", "H200", "B200", "B300"] as const;

/** First matching rule wins; each provider ends with its default. */
export const SPOT_STATS_RULES: readonly SpotStatsRule[] = [
  { provider: "aws", gpuTypes: FLAGSHIP, bucket: 3, availability: 0.5, basis: "aws-advisor-p5" },
  { provider: "aws", gpuTypes: ["A100", "A100-80GB"], bucket: 1, availability: 0.7, basis: "aws-advisor-p4d" },
  { provider: "aws", gpuTypes: ["L4"], bucket: 1, availability: 0.8, basis: "aws-advisor-l4" },
  { provider: "aws", gpuTypes: [], bucket: 2, availability: 0.8, basis: "aws-default" },
  { provider: "gcp", gpuTypes: FLAGSHIP, bucket: 3, availability: 0.5, basis: "gcp-azure-unpublished" },
  { provider: "gcp", gpuTypes: ["A100", "A100-80GB"], bucket: 2, availability: 0.7, basis: "gcp-azure-unpublished" },
  { provider: "gcp", gpuTypes: [], bucket: 2, availability: 0.8, basis: "gcp-azure-unpublished" },
  { provider: "azure", gpuTypes: [...FLAGSHIP, "MI300X"], bucket: 3, availability: 0.5, basis: "gcp-azure-unpublished" },
  { provider: "azure", gpuTypes: ["A100", "A100-80GB"], bucket: 2, availability: 0.7, basis: "gcp-azure-unpublished" },
  { provider: "azure", gpuTypes: [], bucket: 2, availability: 0.8, basis: "gcp-azure-unpublished" },
];

export interface SpotStats {
  interruptionsPerHour: number;
  availability: number;
  bucket: SpotInterruptionBucket;
  basis: string;
}

export function spotStatsFor(provider: CloudProvider, gpuType: string, rules: readonly SpotStatsRule[] = SPOT_STATS_RULES): SpotStats {
  const rule = rules.find((r) => r.provider === provider && (r.gpuTypes.length === 0 || r.gpuTypes.includes(gpuType)));
  if (!rule) throw new Error(`no spot stats rule for ${provider} ${gpuType} (each provider needs a default rule)`);
  return { interruptionsPerHour: bucketHourlyRate(rule.bucket), availability: rule.availability, bucket: rule.bucket, basis: rule.basis };
}
