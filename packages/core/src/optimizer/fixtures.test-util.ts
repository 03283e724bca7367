import type { CatalogOffer, EgressTier, ExistingNodeCapacity } from "../catalog.js";
import type { OptimizerSpec } from "../cost/optimizer-spec.js";
import { parseUsdMicros } from "../micros.js";

/** Builders for readable optimizer tests: dollars as strings, everything else defaulted. */

export const NOW = Date.UTC(2026, 5, 1, 12);

export function offer(o: Partial<Omit<CatalogOffer, "onDemandMicrosPerHour" | "spotMicrosPerHour">> & { od: string; spot?: string | null }): CatalogOffer {
  const { od, spot, ...rest } = o;
  const spotMicros = spot === undefined || spot === null ? null : parseUsdMicros(spot);
  return {
    provider: "aws",
    region: "us-east-1",
    zone: "",
    instanceType: "x",
    gpuType: "A100",
    gpuCount: 1,
    gpuMemoryGb: 40,
    vcpus: 8,
    memoryGb: 64,
    onDemandMicrosPerHour: parseUsdMicros(od),
    spotMicrosPerHour: spotMicros,
    spotInterruptionsPerHour: spotMicros === null ? null : 0.001,
    spotAvailability: spotMicros === null ? null : 0.95,
    interconnect: null,
    priceDate: "2026-01-01",
    source: "test",
    ...rest,
  };
}

export function node(n: Partial<ExistingNodeCapacity> & { nodeId: string; rate: string }): ExistingNodeCapacity {
  const { rate, ...rest } = n;
  return {
    provider: "onprem",
    region: "dc1",
    network: "fabric-a",
    gpuType: "A100",
    gpuMemoryGb: 40,
    freeGpus: 8,
    microsPerGpuHour: parseUsdMicros(rate),
    interconnect: null,
    ...rest,
  };
}

export function tier(provider: EgressTier["provider"], scope: EgressTier["scope"], usdPerGb: string, sourceRegion = "", fromGb = 0, toGb: number | null = null): EgressTier {
  return { provider, scope, sourceRegion, fromGb, toGb, microsPerGb: parseUsdMicros(usdPerGb) };
}

type DeepPartial<T> = { [K in keyof T]?: T[K] extends readonly unknown[] ? T[K] : T[K] extends object ? DeepPartial<T[K]> : T[K] };

/** A valid single_cluster training spec (1 GPU, 10 h on A100), with sections overridden shallowly. */
export function spec(over: DeepPartial<OptimizerSpec> = {}): OptimizerSpec {
  return {
    job: { type: "training", framework: "pytorch_ddp", estimated_hours: 10, ...over.job },
    resources: { gpus: 1, requires_multi_node: false, gpu_type: [], ...over.resources },
    data: { locality: "prefer", replication_policy: "none", ...over.data },
    constraints: {
      allow_spot: false,
      min_reliability: 0,
      performance_weight: 0,
      allowed_providers: [],
      excluded_providers: [],
      allowed_regions: [],
      excluded_regions: [],
      ...over.constraints,
    },
    execution: { mode: "single_cluster", tasks: 1, ...over.execution },
    checkpoint: { ...over.checkpoint },
    retry: { max_attempts: 3, ...over.retry },
  };
}
