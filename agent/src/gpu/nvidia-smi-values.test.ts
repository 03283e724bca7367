import { describe, expect, it } from "vitest";
import { enabledValue, integerValue, numberValue, textValue } from "./nvidia-smi-values.js";

describe("nvidia-smi value cells", () => {
  it("turns every placeholder nvidia-smi prints into null", () => {
    for (const t of ["N/A", "[N/A]", "[Not Supported]", "Not Supported", "[Requested functionality has been deprecated]", "Requested functionality has been deprecated", "[Unknown Error]", "", "  "]) {
      expect(textValue(t)).toBeNull();
      expect(numberValue(t)).toBeNull();
    }
    expect(textValue(undefined)).toBeNull();
  });

  it("reads numbers with and without units, checking the unit when asked", () => {
    expect(numberValue("67.03 W", "W")).toBe(67.03);
    expect(numberValue("81920 MiB", "MiB")).toBe(81920);
    expect(numberValue("81920", "MiB")).toBe(81920);
    expect(numberValue("27 C", "C")).toBe(27);
    expect(numberValue("91 %", "%")).toBe(91);
    expect(numberValue("80 GiB", "MiB")).toBeNull();
    expect(numberValue("0x0000")).toBeNull();
    expect(integerValue("3")).toBe(3);
    expect(integerValue("3.5")).toBeNull();
  });

  it("reads Enabled/Disabled, leaving N/A unknown", () => {
    expect(enabledValue("Enabled")).toBe(true);
    expect(enabledValue("Disabled")).toBe(false);
    expect(enabledValue("N/A")).toBeNull();
    expect(enabledValue("[N/A]")).toBeNull();
  });
});
