import type { CloudProvider, EgressScope, EgressTier } from "../catalog.js";
import { ceilDiv, toMillionths } from "./metered.js";
import type { OptimizerDatasetKind } from "./optimizer-spec.js";

/** Where a dataset lives. `region: null` = the provider is known (from the URI) but not the region. */
export interface DataLocation {
  provider: CloudProvider | "onprem";
  region: string | null;
}

/**
 * The dataset's location: the caller's explicit `{provider, region}` (the
 * controller may know the bucket's region) wins; otherwise the URI scheme
 * names the provider (s3 → aws, gs → gcp, az → azure) and the region stays
 * unknown. `local`, `file` and `minio` datasets have no cloud location: null.
 */
export function datasetLocation(
  data: { dataset?: string; dataset_kind?: OptimizerDatasetKind },
  explicit?: { provider: CloudProvider | "onprem"; region: string } | null,
): DataLocation | null {
  if (explicit) return { provider: explicit.provider, region: explicit.region };
  if (data.dataset === undefined) return null;
  switch (data.dataset_kind) {
    case "s3":
      return { provider: "aws", region: null };
    case "gs":
      return { provider: "gcp", region: null };
    case "az":
      return { provider: "azure", region: null };
    case "local":
    case "file":
    case "minio":
    case undefined:
      return null;
  }
}

/** How a copy from the dataset to a node's location is billed. */
export type TransferScope = "same_region" | "inter_region" | "internet" | "unpriced";

/**
 * Scope of a transfer from `from` to (`provider`, `region`). A source region
 * that is unknown counts as the same region inside its own provider (the
 * optimistic reading, flagged by the optimizer). Traffic leaving on-prem is
 * not priced by any catalog: "unpriced" (0).
 */
export function transferScope(from: DataLocation, provider: CloudProvider | "onprem", region: string): TransferScope {
  if (from.provider === "onprem") return provider === "onprem" && (from.region === null || from.region === region) ? "same_region" : "unpriced";
  if (from.provider !== provider) return "internet";
  if (from.region === null || from.region === region) return "same_region";
  return "inter_region";
}

export interface TierSelection {
  tiers: readonly EgressTier[];
  /** How the tiers were found: published for this region, for every region ("" / "*"), borrowed from another region of the provider, or absent. */
  match: "region" | "wildcard" | "other_region" | "none";
  /** The region whose tiers were borrowed (match "other_region"). */
  borrowedFrom: string | null;
}

const isWildcard = (r: string): boolean => r === "" || r === "*";

/**
 * Tiers of `provider`/`scope` for traffic leaving `sourceRegion`: that
 * region's own tiers; else the provider-wide ones (sourceRegion "" or "*");
 * else, as a documented fallback, the tiers of the alphabetically first region
 * the catalog lists for the provider (the shipped data has AWS and Azure
 * internet tiers only for us-east-2 / eastus). Sorted by `fromGb`.
 */
export function selectEgressTiers(
  egress: readonly EgressTier[],
  provider: CloudProvider,
  scope: EgressScope,
  sourceRegion: string | null,
): TierSelection {
  const own: EgressTier[] = [];
  const wild: EgressTier[] = [];
  const byRegion = new Map<string, EgressTier[]>();
  for (const t of egress) {
    if (t.provider !== provider || t.scope !== scope) continue;
    if (isWildcard(t.sourceRegion)) wild.push(t);
    else {
      if (sourceRegion !== null && t.sourceRegion === sourceRegion) own.push(t);
      const l = byRegion.get(t.sourceRegion);
      if (l) l.push(t);
      else byRegion.set(t.sourceRegion, [t]);
    }
  }
  const sorted = (ts: EgressTier[]): EgressTier[] => ts.sort((a, b) => a.fromGb - b.fromGb);
  if (own.length > 0) return { tiers: sorted(own), match: "region", borrowedFrom: null };
  if (wild.length > 0) return { tiers: sorted(wild), match: "wildcard", borrowedFrom: null };
  const first = [...byRegion.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))[0];
  if (first !== undefined) return { tiers: sorted(byRegion.get(first) ?? []), match: "other_region", borrowedFrom: first };
  return { tiers: [], match: "none", borrowedFrom: null };
}

/**
 * Cost of moving `gb` through cumulative tiers that start at 0 GB: each tier
 * bills the part of the volume inside [fromGb, toGb). We do not know the
 * month's other traffic, so every transfer starts at the first (dearest) tier,
 * an upper bound. Gaps or a volume past the last bounded tier fall back to the
 * last tier's rate. One rounding: Σ rate × millionths, ceil to the micro.
 * `fallbackMicrosPerGb` prices the volume when there are no tiers.
 */
export function tieredMicros(tiers: readonly EgressTier[], gb: number, fallbackMicrosPerGb: bigint): bigint {
  if (!(gb > 0)) return 0n;
  if (tiers.length === 0) return ceilDiv(fallbackMicrosPerGb * toMillionths(gb), 1_000_000n);
  let sum = 0n;
  let covered = 0;
  for (const t of tiers) {
    const lo = Math.max(t.fromGb, covered);
    const hi = t.toGb === null ? gb : Math.min(t.toGb, gb);
    if (hi > lo) {
      // A gap before this tier (lo > covered) is billed at this tier's rate.
      sum += t.microsPerGb * toMillionths(hi - covered);
      covered = hi;
    }
    if (covered >= gb) break;
  }
  if (covered < gb) {
    const last = tiers[tiers.length - 1];
    sum += (last ? last.microsPerGb : fallbackMicrosPerGb) * toMillionths(gb - covered);
  }
  return ceilDiv(sum, 1_000_000n);
}

/** The two tier lists a dataset's source can need, chosen once per optimization. */
export interface SourceEgress {
  from: DataLocation;
  internet: TierSelection;
  interRegion: TierSelection;
}

export function sourceEgress(egress: readonly EgressTier[], from: DataLocation): SourceEgress {
  if (from.provider === "onprem") {
    const none: TierSelection = { tiers: [], match: "none", borrowedFrom: null };
    return { from, internet: none, interRegion: none };
  }
  return {
    from,
    internet: selectEgressTiers(egress, from.provider, "internet", from.region),
    interRegion: selectEgressTiers(egress, from.provider, "inter_region", from.region),
  };
}

/** Cost of one transfer of `gb` from the source to (`provider`, `region`). */
export function transferMicros(
  src: SourceEgress,
  provider: CloudProvider | "onprem",
  region: string,
  gb: number,
  fallback: { internet: bigint; interRegion: bigint },
): bigint {
  switch (transferScope(src.from, provider, region)) {
    case "same_region":
    case "unpriced":
      return 0n;
    case "inter_region":
      return tieredMicros(src.interRegion.tiers, gb, fallback.interRegion);
    case "internet":
      return tieredMicros(src.internet.tiers, gb, fallback.internet);
  }
}
