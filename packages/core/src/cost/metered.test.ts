import { describe, expect, it } from "vitest";
import { ceilDiv, meteredMicros, toMillionths } from "./metered.js";

describe("metered costs", () => {
  it("turns quantities into millionths, forgiving binary float noise but never rounding a real fraction down", () => {
    expect(toMillionths(0.1)).toBe(100_000n);
    expect(toMillionths(10.51)).toBe(10_510_000n);
    expect(toMillionths(1 / 3)).toBe(333_334n);
    expect(toMillionths(0)).toBe(0n);
    expect(() => toMillionths(-1)).toThrow(RangeError);
    expect(() => toMillionths(Number.NaN)).toThrow(RangeError);
  });

  it("rounds each rate × quantity product up to the micro-dollar once", () => {
    expect(meteredMicros(3_000_000n, 10)).toBe(30_000_000n);
    expect(meteredMicros(1n, 0.5)).toBe(1n);
    expect(meteredMicros(7_160_000n, 20)).toBe(143_200_000n);
    expect(ceilDiv(10n, 3n)).toBe(4n);
    expect(ceilDiv(9n, 3n)).toBe(3n);
  });
});
