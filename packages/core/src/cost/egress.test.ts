import { describe, expect, it } from "vitest";
import type { EgressTier } from "../catalog.js";
import { datasetLocation, selectEgressTiers, sourceEgress, tieredMicros, transferMicros, transferScope } from "./egress.js";

const t = (provider: EgressTier["provider"], scope: EgressTier["scope"], sourceRegion: string, fromGb: number, toGb: number | null, microsPerGb: bigint): EgressTier => ({
  provider,
  scope,
  sourceRegion,
  fromGb,
  toGb,
  microsPerGb,
});

// AWS internet tiers from us-east-2 as in the shipped egress.csv (0.09 / 0.085 / 0.07 / 0.05).
const AWS = [
  t("aws", "internet", "us-east-2", 10240, 51200, 85_000n),
  t("aws", "internet", "us-east-2", 0, 10240, 90_000n),
  t("aws", "internet", "us-east-2", 51200, 153600, 70_000n),
  t("aws", "internet", "us-east-2", 153600, null, 50_000n),
  t("aws", "inter_region", "*", 0, null, 10_000n),
];
const FALLBACK = { internet: 120_000n, interRegion: 20_000n };

describe("egress", () => {
  it("bills cumulative tiers from 0 GB: 20 TB = 10 TB at $0.09 + 10 TB at $0.085", () => {
    const sel = selectEgressTiers(AWS, "aws", "internet", "us-east-2");
    expect(sel.match).toBe("region");
    expect(tieredMicros(sel.tiers, 20480, 0n)).toBe(10240n * 90_000n + 10240n * 85_000n);
    expect(tieredMicros(sel.tiers, 200_000, 0n)).toBe(10240n * 90_000n + 40960n * 85_000n + 102400n * 70_000n + 46400n * 50_000n);
    expect(tieredMicros(sel.tiers, 0, 0n)).toBe(0n);
  });

  it("falls back from the region to provider-wide tiers ('' or '*'), then to another listed region, then to a default rate", () => {
    expect(selectEgressTiers(AWS, "aws", "inter_region", "eu-west-1").match).toBe("wildcard");
    const borrowed = selectEgressTiers(AWS, "aws", "internet", "eu-west-1");
    expect(borrowed).toMatchObject({ match: "other_region", borrowedFrom: "us-east-2" });
    const none = selectEgressTiers(AWS, "gcp", "internet", "us-central1");
    expect(none.match).toBe("none");
    expect(tieredMicros(none.tiers, 10, 120_000n)).toBe(1_200_000n);
  });

  it("a gap between tiers or a volume past the last bounded tier is billed at the next or last rate", () => {
    const gappy = [t("gcp", "internet", "", 0, 10, 100n), t("gcp", "internet", "", 20, 30, 10n)];
    expect(tieredMicros(gappy, 40, 0n)).toBe(10n * 100n + 20n * 10n + 10n * 10n);
  });

  it("classifies transfers: same region free, same provider inter-region, other provider internet, on-prem unpriced", () => {
    const from = { provider: "aws" as const, region: "us-east-1" };
    expect(transferScope(from, "aws", "us-east-1")).toBe("same_region");
    expect(transferScope(from, "aws", "us-west-2")).toBe("inter_region");
    expect(transferScope(from, "gcp", "us-central1")).toBe("internet");
    expect(transferScope(from, "onprem", "dc1")).toBe("internet");
    expect(transferScope({ provider: "aws", region: null }, "aws", "anywhere")).toBe("same_region");
    expect(transferScope({ provider: "onprem", region: "dc1" }, "aws", "us-east-1")).toBe("unpriced");
    const src = sourceEgress(AWS, from);
    expect(transferMicros(src, "aws", "us-west-2", 100, FALLBACK)).toBe(1_000_000n);
    expect(transferMicros(src, "gcp", "us-central1", 100, FALLBACK)).toBe(9_000_000n);
    expect(transferMicros(src, "aws", "us-east-1", 100, FALLBACK)).toBe(0n);
  });

  it("locates a dataset from an explicit location, else from its URI scheme (provider only)", () => {
    expect(datasetLocation({ dataset: "s3://b/k", dataset_kind: "s3" })).toEqual({ provider: "aws", region: null });
    expect(datasetLocation({ dataset: "gs://b/k", dataset_kind: "gs" })).toEqual({ provider: "gcp", region: null });
    expect(datasetLocation({ dataset: "az://b/k", dataset_kind: "az" })).toEqual({ provider: "azure", region: null });
    expect(datasetLocation({ dataset: "file:///data", dataset_kind: "file" })).toBeNull();
    expect(datasetLocation({}, { provider: "gcp", region: "europe-west4" })).toEqual({ provider: "gcp", region: "europe-west4" });
  });
});
