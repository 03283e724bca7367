import type { CatalogOffer } from "@gpuorch/core";
import { describe, expect, it } from "vitest";
import { offer as baseOffer } from "./cost-fixtures.test-util.js";
import { NodePricer, type PricedNode } from "./node-pricing.js";

/** A p4d.24xlarge (8× A100 40 GB, EFA) row priced as given. */
const offer = (o: Parameters<typeof baseOffer>[0]): CatalogOffer =>
  baseOffer({ instanceType: "p4d.24xlarge", gpuType: "A100", gpuCount: 8, gpuMemoryGb: 40, vcpus: 96, memoryGb: 1152, interconnect: "efa", priceDate: "2026-03-01", source: "seed:aws.csv", ...o });

const node = (n: Partial<PricedNode> = {}): PricedNode => ({
  provider: "aws",
  region: "us-east-1",
  zone: "",
  instanceType: "p4d.24xlarge",
  spot: false,
  gpuCount: 8,
  ...n,
});

const INTERNAL = 2_500_000n; // $2.50 per GPU-hour

describe("NodePricer", () => {
  const catalog = [
    // $10.000001/h: an eighth is 1_250_000.125 micro-USD, rounded up to 1_250_001.
    offer({ od: "10.000001", spot: "4.000003" }),
    offer({ instanceType: "g5.xlarge", gpuType: "A10G", gpuCount: 1, gpuMemoryGb: 24, od: "1.006", spot: null, interconnect: null }),
    // The same type priced in a Local Zone, differently from its region.
    offer({ instanceType: "g4dn.xlarge", gpuType: "T4", gpuCount: 1, gpuMemoryGb: 16, od: "0.526", interconnect: null }),
    offer({ instanceType: "g4dn.xlarge", gpuType: "T4", gpuCount: 1, gpuMemoryGb: 16, zone: "us-east-1-bos-1", od: "0.631", interconnect: null, priceDate: "2026-02-01" }),
    // Only a zone row: nodes elsewhere in the region are not priced from it.
    offer({ instanceType: "g6.xlarge", gpuType: "L4", gpuCount: 1, gpuMemoryGb: 24, zone: "us-east-1-atl-1", od: "0.9", interconnect: null }),
    // Fractional GPU shapes: the instance shows one device holding part of a GPU.
    offer({ instanceType: "g6f.large", gpuType: "L4", gpuCount: 0.125, gpuMemoryGb: 24, od: "0.2", spot: "0.0808", interconnect: null }),
    offer({ provider: "gcp", region: "us-central1", instanceType: "g2-half", gpuType: "L4", gpuCount: 0.5, gpuMemoryGb: 24, od: "0.353417", interconnect: null, source: "shipped:gcp.csv" }),
  ];
  const pricer = new NodePricer(catalog, INTERNAL);

  it("charges a share of the catalog instance price: held GPUs / instance GPUs, rounded up to the micro", () => {
    expect(pricer.price(node(), 1).microsPerHour).toBe(1_250_001n);
    expect(pricer.price(node(), 3).microsPerHour).toBe(3_750_001n); // 30_000_003 / 8 = 3_750_000.375
    expect(pricer.price(node(), 4).microsPerHour).toBe(5_000_001n); // 40_000_004 / 8 = 5_000_000.5
    // Every GPU (or more than the instance has): the whole instance, as the cloud bills it.
    expect(pricer.price(node(), 8).microsPerHour).toBe(10_000_001n);
    expect(pricer.price(node(), 12).microsPerHour).toBe(10_000_001n);
    expect(pricer.price(node(), 1).basis).toEqual({
      kind: "catalog",
      provider: "aws",
      region: "us-east-1",
      instanceType: "p4d.24xlarge",
      spot: false,
      unitMicrosPerHour: "10000001",
      gpusPerInstance: 8,
      priceDate: "2026-03-01",
      source: "seed:aws.csv",
    });
  });

  it("uses the spot price for a spot node, and the on-demand price when the catalog sells no spot there", () => {
    const spot = pricer.price(node({ spot: true }), 2);
    expect(spot.microsPerHour).toBe(1_000_001n); // 8_000_006 / 8 = 1_000_000.75
    expect(spot.basis).toMatchObject({ kind: "catalog", spot: true, unitMicrosPerHour: "4000003" });
    const noSpot = pricer.price(node({ instanceType: "g5.xlarge", gpuCount: 1, spot: true }), 1);
    expect(noSpot.microsPerHour).toBe(1_006_000n);
    expect(noSpot.basis).toMatchObject({ kind: "catalog", spot: false, unitMicrosPerHour: "1006000", gpusPerInstance: 1 });
  });

  it("prefers the node's zone row over the regional row, and falls back to the regional row in other zones", () => {
    const t4 = (zone: string) => node({ instanceType: "g4dn.xlarge", gpuCount: 1, zone });
    expect(pricer.price(t4("us-east-1-bos-1"), 1)).toMatchObject({ microsPerHour: 631_000n, basis: { priceDate: "2026-02-01" } });
    expect(pricer.offerFor(t4("us-east-1-bos-1"))?.zone).toBe("us-east-1-bos-1");
    expect(pricer.price(t4("us-east-1a"), 1).microsPerHour).toBe(526_000n);
    expect(pricer.price(t4(""), 1).microsPerHour).toBe(526_000n);
    expect(pricer.offerFor(t4(""))?.zone).toBe("");
    // A zone-only row never prices a node outside that zone.
    const l4 = (zone: string) => node({ instanceType: "g6.xlarge", gpuCount: 1, zone });
    expect(pricer.price(l4("us-east-1-atl-1"), 1).microsPerHour).toBe(900_000n);
    expect(pricer.offerFor(l4("us-east-1a"))).toBeNull();
    expect(pricer.price(l4("us-east-1a"), 1)).toMatchObject({ microsPerHour: INTERNAL, basis: { kind: "internal_rate" } });
  });

  it("keeps the first of duplicate rows for one key (the catalog's own order decides)", () => {
    const p = new NodePricer([offer({ od: "8" }), offer({ od: "16" })], INTERNAL);
    expect(p.price(node(), 8).microsPerHour).toBe(8_000_000n);
  });

  it("charges a fractional-GPU instance whole for its one device, never more than the instance costs", () => {
    const g6f = node({ instanceType: "g6f.large", gpuCount: 1 });
    expect(pricer.price(g6f, 1)).toMatchObject({ microsPerHour: 200_000n, basis: { kind: "catalog", gpusPerInstance: 0.125, unitMicrosPerHour: "200000" } });
    expect(pricer.price({ ...g6f, spot: true }, 1)).toMatchObject({ microsPerHour: 80_800n, basis: { spot: true } });
    const half = node({ provider: "gcp", region: "us-central1", instanceType: "g2-half", gpuCount: 1 });
    expect(pricer.price(half, 1)).toMatchObject({ microsPerHour: 353_417n, basis: { gpusPerInstance: 0.5, source: "shipped:gcp.csv" } });
  });

  it("prices on-prem nodes and catalog misses at the internal rate per held GPU", () => {
    const onprem = pricer.price({ provider: "onprem", region: "lab", zone: "", instanceType: "", spot: false, gpuCount: 4 }, 3);
    expect(onprem).toEqual({
      microsPerHour: 7_500_000n,
      basis: {
        kind: "internal_rate",
        provider: "onprem",
        region: "lab",
        instanceType: "",
        spot: false,
        unitMicrosPerHour: "2500000",
        gpusPerInstance: 4,
        priceDate: null,
        source: "internal rate",
      },
    });
    // A cloud node whose instance type the catalog does not list: internal rate, never spot, said so.
    const miss = pricer.price(node({ instanceType: "p9.huge", spot: true, gpuCount: 16 }), 2);
    expect(miss.microsPerHour).toBe(5_000_000n);
    expect(miss.basis).toMatchObject({ kind: "internal_rate", provider: "aws", instanceType: "p9.huge", spot: false, gpusPerInstance: 16, source: "internal rate (instance type not in the catalog)" });
    // Known instance type in another region is a miss too.
    expect(pricer.price(node({ region: "eu-west-1" }), 1).basis.kind).toBe("internal_rate");
    // A node without a provider label is on-prem.
    expect(pricer.price({ provider: "", region: "", zone: "", instanceType: "", spot: false, gpuCount: 1 }, 1).basis).toMatchObject({ provider: "onprem", source: "internal rate" });
    // Nothing in the catalog at all: everything at the internal rate.
    expect(new NodePricer([], 1_000_000n).price(node(), 8).microsPerHour).toBe(8_000_000n);
  });
});
