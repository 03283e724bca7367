import { describe, expect, it } from "vitest";
import { requiresNvidia, migProfileMemoryGb, isNvidiaGpuType } from "./accelerators.js";
import { checkpointIntervalHours, DEFAULT_COST_MODEL, poissonCdf, resolveCostModel, spotExpectation, spotReliability } from "./cost-model.js";
import { DEFAULT_PERFORMANCE_TABLE, gpuThroughput, hoursOnGpu, referenceGpuType } from "./performance.js";

describe("spot expectation", () => {
  it("adds interruptions × (restart overhead + half a checkpoint interval)", () => {
    const e = spotExpectation(20, 0.01, 1, 0.1, 1);
    expect(e.expectedInterruptions).toBeCloseTo(0.2, 12);
    expect(e.lostHoursPerInterruption).toBe(0.5);
    expect(e.expectedHours).toBeCloseTo(20 + 0.2 * 0.6, 12);
  });

  it("without a checkpoint a restart loses half the run on average; a gang is interrupted by any of its nodes", () => {
    const e = spotExpectation(10, 0.01, 4, 0.1, null);
    expect(e.expectedInterruptions).toBeCloseTo(0.4, 12);
    expect(e.expectedHours).toBeCloseTo(10 + 0.4 * 5.1, 12);
    // An interval longer than the run is no checkpoint at all.
    expect(spotExpectation(2, 0.1, 1, 0, 100).lostHoursPerInterruption).toBe(1);
  });

  it("reliability = availability × P(interruptions ≤ max_attempts − 1), Poisson", () => {
    expect(poissonCdf(0, 1)).toBeCloseTo(Math.exp(-1), 14);
    expect(poissonCdf(2, 1)).toBeCloseTo(Math.exp(-1) * 2.5, 14);
    expect(poissonCdf(3, 0)).toBe(1);
    expect(spotReliability(0.9, 1, 3)).toBeCloseTo(0.9 * Math.exp(-1) * 2.5, 14);
  });

  it("reads checkpoint intervals in hours; a step interval uses the configured assumption", () => {
    expect(checkpointIntervalHours({ interval_seconds: 1800 }, DEFAULT_COST_MODEL)).toBe(0.5);
    expect(checkpointIntervalHours({ interval_steps: 500 }, { stepCheckpointHours: 0.25 })).toBe(0.25);
    expect(checkpointIntervalHours({}, DEFAULT_COST_MODEL)).toBeNull();
  });

  it("options override single defaults and keep the rest", () => {
    const m = resolveCostModel({ restartOverheadHours: 0.5 });
    expect(m.restartOverheadHours).toBe(0.5);
    expect(m.onDemandReliability).toBe(DEFAULT_COST_MODEL.onDemandReliability);
  });
});

describe("performance table", () => {
  it("converts hours on the reference GPU by relative throughput; unknown types use the documented default", () => {
    expect(referenceGpuType([])).toBe("A100");
    expect(referenceGpuType(["T4", "A100"])).toBe("T4");
    expect(hoursOnGpu(DEFAULT_PERFORMANCE_TABLE, 10, "A100", "H100")).toBeCloseTo(10 / 2.3, 12);
    expect(hoursOnGpu(DEFAULT_PERFORMANCE_TABLE, 10, "T4", "A100")).toBeCloseTo(1.6, 12);
    expect(gpuThroughput(DEFAULT_PERFORMANCE_TABLE, "NoSuchGpu")).toBe(0.5);
  });

  it("per-job-type measurements override the training table", () => {
    const table = { ...DEFAULT_PERFORMANCE_TABLE, byJobType: { inference: { L4: 0.6 } } };
    expect(gpuThroughput(table, "L4", "inference")).toBe(0.6);
    expect(gpuThroughput(table, "L4", "training")).toBe(0.3);
  });
});

describe("accelerators", () => {
  it("treats every spec framework as CUDA, and `command` too unless it names a non-NVIDIA type", () => {
    expect(requiresNvidia("pytorch_ddp", ["MI300X"])).toBe(true);
    expect(requiresNvidia("command", [])).toBe(true);
    expect(requiresNvidia("command", ["Trainium"])).toBe(false);
    expect(isNvidiaGpuType("QualcommAI100")).toBe(false);
    expect(isNvidiaGpuType("L40S")).toBe(true);
  });

  it("reads a MIG profile's memory", () => {
    expect(migProfileMemoryGb("3g.40gb")).toBe(40);
    expect(migProfileMemoryGb("1g.10gb+me")).toBe(10);
    expect(migProfileMemoryGb("weird")).toBeNull();
  });
});
