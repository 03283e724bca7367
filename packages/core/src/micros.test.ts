import { describe, expect, it } from "vitest";
import { formatUsdMicros, parseUsdMicros } from "./micros.js";

describe("money in micros", () => {
  it("round-trips decimal strings without float error", () => {
    expect(parseUsdMicros("0.1") + parseUsdMicros("0.2")).toBe(parseUsdMicros("0.3"));
    expect(formatUsdMicros(parseUsdMicros("143.2"), 2)).toBe("143.20");
    expect(formatUsdMicros(parseUsdMicros("-1.000001"))).toBe("-1.000001");
  });
  it("rejects non-decimal input", () => {
    expect(() => parseUsdMicros("1e3")).toThrow(RangeError);
  });
});
