import { type CatalogOffer, parseUsdMicros } from "@gpuorch/core";

/**
 * A catalog row for controller tests: an AWS g4dn.xlarge (1× T4) at the
 * given on-demand price (decimal USD); `spot` adds a spot price with a
 * 0.002/h interruption rate and 0.9 availability. Everything else overridable.
 */
export function offer(o: Partial<CatalogOffer> & { od: string; spot?: string | null }): CatalogOffer {
  const { od, spot, ...rest } = o;
  const spotMicros = spot === undefined || spot === null ? null : parseUsdMicros(spot);
  return {
    provider: "aws",
    region: "us-east-1",
    zone: "",
    instanceType: "g4dn.xlarge",
    gpuType: "T4",
    gpuCount: 1,
    gpuMemoryGb: 16,
    vcpus: 4,
    memoryGb: 16,
    onDemandMicrosPerHour: parseUsdMicros(od),
    spotMicrosPerHour: spotMicros,
    spotInterruptionsPerHour: spotMicros === null ? null : 0.002,
    spotAvailability: spotMicros === null ? null : 0.9,
    interconnect: null,
    priceDate: "2026-01-10",
    source: "seed:test.csv",
    ...rest,
  };
}
