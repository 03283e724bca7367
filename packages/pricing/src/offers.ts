import type { CatalogOffer, CloudProvider } from "@gpuorch/core";
import { interconnectFor } from "./interconnect.js";
import { type SpotStatsRule, SPOT_STATS_RULES, spotStatsFor } from "./spot-stats.js";

/**
 * Accelerator names the catalog may carry: the spec's GPU_TYPES (pricing may
 * not depend on spec; a test keeps the two lists equal).
 */
export const KNOWN_GPU_TYPES: readonly string[] = [
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
];

/**
 * Default internal rate of one on-prem GPU-hour: USD 1.00 (1,000,000
 * micro-USD). A chargeback figure, not a price list: see the README's
 * "On-prem rate" for how it was reasoned. Sites override it in config.
 */
export const DEFAULT_ONPREM_MICROS_PER_GPU_HOUR = 1_000_000n;

/** An offer before the catalog's own columns (spot stats, interconnect) are filled in. */
export type BareOffer = Omit<CatalogOffer, "spotInterruptionsPerHour" | "spotAvailability" | "interconnect">;

/**
 * Completes an offer with the spot figures of SPOT_STATS_RULES (only when it
 * has a spot price) and the interconnect of INTERCONNECT_TABLE.
 */
export function completeOffer(o: BareOffer, rules: readonly SpotStatsRule[] = SPOT_STATS_RULES): CatalogOffer {
  const spot = o.spotMicrosPerHour === null ? null : spotStatsFor(o.provider, o.gpuType, rules);
  return {
    ...o,
    spotInterruptionsPerHour: spot ? spot.interruptionsPerHour : null,
    spotAvailability: spot ? spot.availability : null,
    interconnect: interconnectFor(o.provider, o.instanceType),
  };
}

/** The key that identifies one offer across sources. */
export function offerKey(o: { provider: CloudProvider; region: string; zone: string; instanceType: string }): string {
  return `${o.provider}/${o.region}/${o.zone}/${o.instanceType}`;
}

/** Today's date (UTC) as YYYY-MM-DD: the price date of a live fetch. */
export function isoDate(d: Date): string {
  return d.toISOString().slice(0, 10);
}
