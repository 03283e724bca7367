import { describe, expect, it } from "vitest";
import { completeOffer } from "./offers.js";
import { HOURS_PER_MONTH, SPOT_INTERRUPTION_BUCKETS, SPOT_STATS_RULES, bucketHourlyRate, monthlyProbabilityToHourlyRate, spotStatsFor } from "./spot-stats.js";
import { CLOUD_PROVIDERS } from "@gpuorch/core";

describe("spot interruption rates", () => {
  it("turn a monthly probability into the constant hourly hazard with that probability over 730 hours", () => {
    for (const b of SPOT_INTERRUPTION_BUCKETS) {
      const rate = bucketHourlyRate(b.index);
      expect(1 - Math.exp(-rate * HOURS_PER_MONTH)).toBeCloseTo(b.monthlyProbability, 12);
    }
    expect(bucketHourlyRate(0)).toBeCloseTo(0.0000347, 7); // < 5 %: about one interruption per 28,800 h
    expect(monthlyProbabilityToHourlyRate(0)).toBe(0);
    expect(() => monthlyProbabilityToHourlyRate(1)).toThrow(RangeError);
  });

  it("use the bucket midpoints, 25 % for the open-ended > 20 %", () => {
    expect(SPOT_INTERRUPTION_BUCKETS.map((b) => b.monthlyProbability)).toEqual([0.025, 0.075, 0.125, 0.175, 0.25]);
  });

  it("pick per-class AWS figures from the Spot Advisor and documented defaults elsewhere", () => {
    expect(spotStatsFor("aws", "H100")).toMatchObject({ bucket: 3, availability: 0.5, basis: "aws-advisor-p5" });
    expect(spotStatsFor("aws", "A100")).toMatchObject({ bucket: 1, availability: 0.7 });
    expect(spotStatsFor("aws", "L4")).toMatchObject({ bucket: 1, basis: "aws-advisor-l4" });
    expect(spotStatsFor("aws", "T4")).toMatchObject({ bucket: 2, basis: "aws-default" });
    expect(spotStatsFor("gcp", "H100")).toMatchObject({ bucket: 3, basis: "gcp-azure-unpublished" });
    expect(spotStatsFor("azure", "MI300X")).toMatchObject({ bucket: 3 });
    expect(spotStatsFor("azure", "T4")).toMatchObject({ bucket: 2, availability: 0.8 });
  });

  it("have a default rule for every provider and only sensible values", () => {
    for (const p of CLOUD_PROVIDERS) expect(SPOT_STATS_RULES.some((r) => r.provider === p && r.gpuTypes.length === 0)).toBe(true);
    for (const r of SPOT_STATS_RULES) expect(r.availability > 0 && r.availability <= 1).toBe(true);
  });

  it("are set only on offers that have a spot price", () => {
    const base = { provider: "aws" as const, region: "us-east-1", zone: "", instanceType: "p5.48xlarge", gpuType: "H100", gpuCount: 8, gpuMemoryGb: 80, vcpus: 192, memoryGb: 2048, onDemandMicrosPerHour: 55_040_000n, priceDate: "2030-01-01", source: "t" };
    expect(completeOffer({ ...base, spotMicrosPerHour: null })).toMatchObject({ spotInterruptionsPerHour: null, spotAvailability: null, interconnect: "efa" });
    expect(completeOffer({ ...base, spotMicrosPerHour: 1n }).spotInterruptionsPerHour).toBeCloseTo(-Math.log(0.825) / 730, 12);
  });
});
