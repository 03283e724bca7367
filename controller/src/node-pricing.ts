import type { CatalogOffer } from "@gpuorch/core";

/** What one task pays per hour for the GPUs it holds on a node, and why. */
export interface TaskPrice {
  microsPerHour: bigint;
  /** The catalog row or rate the price came from (stored with the allocation). */
  basis: {
    kind: "catalog" | "internal_rate";
    provider: string;
    region: string;
    instanceType: string;
    spot: boolean;
    /** The whole instance's hourly price (catalog) or the per-GPU rate (internal), micro-USD. */
    unitMicrosPerHour: string;
    gpusPerInstance: number;
    priceDate: string | null;
    source: string;
  };
}

export interface PricedNode {
  provider: string;
  region: string;
  zone: string;
  instanceType: string;
  spot: boolean;
  /** GPUs the node has (a catalog miss falls back to the internal rate per GPU). */
  gpuCount: number;
}

/**
 * Prices GPUs on registered nodes. A cloud node whose instance type is in the
 * catalog pays its share of the instance price (held GPUs / the instance's
 * GPUs; a task holding every GPU pays the whole instance, as the cloud bills
 * it), spot or on-demand as the node says. On-prem nodes, and cloud nodes the
 * catalog does not list, pay the internal rate per GPU-hour.
 */
export class NodePricer {
  private readonly index = new Map<string, CatalogOffer>();

  constructor(
    offers: readonly CatalogOffer[],
    private readonly internalMicrosPerGpuHour: bigint,
  ) {
    // A zone row (AWS Local Zones) only prices nodes in that zone; the regional row prices the rest.
    for (const o of offers) {
      const key = `${o.provider}|${o.region}|${o.zone}|${o.instanceType}`;
      if (!this.index.has(key)) this.index.set(key, o);
    }
  }

  offerFor(node: Pick<PricedNode, "provider" | "region" | "zone" | "instanceType">): CatalogOffer | null {
    if (!node.instanceType) return null;
    return (
      (node.zone ? this.index.get(`${node.provider}|${node.region}|${node.zone}|${node.instanceType}`) : undefined) ??
      this.index.get(`${node.provider}|${node.region}||${node.instanceType}`) ??
      null
    );
  }

  price(node: PricedNode, gpus: number): TaskPrice {
    const offer = this.offerFor(node);
    if (offer && offer.gpuCount > 0) {
      const spot = node.spot && offer.spotMicrosPerHour !== null;
      const unit = spot ? (offer.spotMicrosPerHour as bigint) : offer.onDemandMicrosPerHour;
      // Share = gpus / gpuCount, scaled by 1000 to stay in integers, rounded up. A fractional row (0.5 of an
      // L4) shows as one device: holding it is the whole instance, so it divides by one, not by the fraction.
      const per1000 = BigInt(Math.round(Math.max(1, offer.gpuCount) * 1000));
      const share = BigInt(Math.min(gpus, Math.max(1, Math.ceil(offer.gpuCount))) * 1000);
      const micros = (unit * share + per1000 - 1n) / per1000;
      return {
        microsPerHour: micros,
        basis: {
          kind: "catalog",
          provider: offer.provider,
          region: offer.region,
          instanceType: offer.instanceType,
          spot,
          unitMicrosPerHour: unit.toString(),
          gpusPerInstance: offer.gpuCount,
          priceDate: offer.priceDate,
          source: offer.source,
        },
      };
    }
    return {
      microsPerHour: this.internalMicrosPerGpuHour * BigInt(gpus),
      basis: {
        kind: "internal_rate",
        provider: node.provider || "onprem",
        region: node.region,
        instanceType: node.instanceType,
        spot: false,
        unitMicrosPerHour: this.internalMicrosPerGpuHour.toString(),
        gpusPerInstance: node.gpuCount,
        priceDate: null,
        source: node.provider && node.provider !== "onprem" ? "internal rate (instance type not in the catalog)" : "internal rate",
      },
    };
  }
}
