/**
 * The pricing catalog as the optimizer and the cost model see it: plain,
 * already-validated values. `@gpuorch/pricing` builds these from the shipped
 * CSVs, the providers' price APIs or the `gpu_pricing` table; core never
 * reads a file or a clock. Money is integer micro-dollars (see micros.ts).
 */

export const CLOUD_PROVIDERS = ["aws", "gcp", "azure"] as const;
export type CloudProvider = (typeof CLOUD_PROVIDERS)[number];

/** High-tier interconnects that make an instance type fit for multi-node synchronous training. */
export const INTERCONNECTS = ["efa", "gpudirect-tcpx", "gpudirect-tcpxo", "gpudirect-rdma", "infiniband"] as const;
export type Interconnect = (typeof INTERCONNECTS)[number];

/** One instance type in one region (or zone) with its prices. */
export interface CatalogOffer {
  provider: CloudProvider;
  region: string;
  /** "" when the price is per region (the usual case); an AWS Local/Wavelength zone group otherwise. */
  zone: string;
  instanceType: string;
  /** Normalized accelerator name (the spec's GPU_TYPES vocabulary). */
  gpuType: string;
  /** Accelerators per instance; fractional for GPU-partition shapes (0.125 of an L4). */
  gpuCount: number;
  /** Memory of ONE full physical accelerator, GB. */
  gpuMemoryGb: number;
  vcpus: number;
  memoryGb: number;
  /** Whole-instance on-demand price, micro-USD per hour. */
  onDemandMicrosPerHour: bigint;
  /** Whole-instance spot price, micro-USD per hour; null when the provider sells no spot here. */
  spotMicrosPerHour: bigint | null;
  /**
   * Spot interruptions per hour of running (expected rate, e.g. 0.0014 for
   * "< 5 % per month"); null when there is no spot price.
   */
  spotInterruptionsPerHour: number | null;
  /** Probability (0..1) that spot capacity of this type can be obtained here; null without spot. */
  spotAvailability: number | null;
  /** The instance type's high-tier interconnect, or null (then it never serves requires_multi_node). */
  interconnect: Interconnect | null;
  /** Date the prices were observed, YYYY-MM-DD. */
  priceDate: string;
  /** Where the row came from ("shipped:gcp.csv", "aws-price-list", …). */
  source: string;
}

export const EGRESS_SCOPES = ["internet", "inter_region", "inter_zone", "same_region"] as const;
export type EgressScope = (typeof EGRESS_SCOPES)[number];

/** One cumulative monthly tier of data-transfer pricing. */
export interface EgressTier {
  provider: CloudProvider;
  scope: EgressScope;
  /** The source region the tier was published for; "" when it applies to every region of the provider. */
  sourceRegion: string;
  fromGb: number;
  /** null = unbounded. */
  toGb: number | null;
  microsPerGb: bigint;
}

/**
 * Free capacity on a node that is already registered (on-prem, or a cloud VM
 * that runs an agent). Its GPUs cost the configured internal rate.
 */
export interface ExistingNodeCapacity {
  nodeId: string;
  /** "onprem" or the cloud the VM lives in. */
  provider: CloudProvider | "onprem";
  region: string;
  network: string;
  gpuType: string;
  gpuMemoryGb: number;
  /** Whole GPUs free right now. */
  freeGpus: number;
  /** Price of one GPU-hour on this node, micro-USD (the internal rate for on-prem). */
  microsPerGpuHour: bigint;
  /** A cloud VM's from its catalog row (null: none, so no multi-node); on-prem: null = the operator's own fabric, accepted. */
  interconnect: Interconnect | null;
}

/** Everything the optimizer prices a spec against. */
export interface Catalog {
  offers: readonly CatalogOffer[];
  egress: readonly EgressTier[];
}
