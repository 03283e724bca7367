import { describe, expect, it } from "vitest";
import { closestMatches, didYouMean, editDistance, joinOr } from "./did-you-mean.js";

describe("editDistance", () => {
  it.each([
    ["", "", 0],
    ["gpus", "gpus", 0],
    ["gpu", "gpus", 1],
    ["gpsu", "gpus", 1], // adjacent transposition counts once
    ["kitten", "sitting", 3],
    ["", "abc", 3],
  ])("%j → %j is %i", (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
    expect(editDistance(b, a)).toBe(d);
  });

  it("clips very long inputs so the cost stays bounded", () => {
    const t0 = performance.now();
    expect(editDistance("a".repeat(1_000_000), "b".repeat(1_000_000))).toBe(64);
    expect(performance.now() - t0).toBeLessThan(200);
  });
});

describe("closestMatches", () => {
  const keys = ["gpus", "max_gpus_per_node", "requires_multi_node", "gpu_memory", "gpu_type", "gpu_fraction"];

  it("suggests the nearest key first", () => {
    expect(closestMatches("gpu", keys)[0]).toBe("gpus");
    expect(closestMatches("gpu_typ", keys)[0]).toBe("gpu_type");
    expect(closestMatches("require_multi_node", keys)).toEqual(["requires_multi_node"]);
  });

  it("ignores case", () => {
    expect(closestMatches("GPUS", keys)[0]).toBe("gpus");
  });

  it("suggests nothing for unrelated words", () => {
    expect(closestMatches("banana", keys)).toEqual([]);
    expect(closestMatches("", keys)).toEqual([]);
  });

  it("admits prefixes of at least three characters", () => {
    expect(closestMatches("max_gpus", keys)).toContain("max_gpus_per_node");
  });
});

describe("didYouMean", () => {
  it("formats one or several suggestions", () => {
    expect(didYouMean("trainig", ["training", "hpo", "inference", "eval"])).toBe("; did you mean 'training'?");
    expect(didYouMean("zzz", ["training"])).toBe("");
    expect(joinOr(["a"])).toBe("'a'");
    expect(joinOr(["a", "b", "c"])).toBe("'a', 'b' or 'c'");
  });
});
