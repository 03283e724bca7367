import { describe, expect, it } from "vitest";
import { ago, formatTable } from "./table.js";

describe("CLI tables", () => {
  it("aligns columns to the widest cell and trims trailing space", () => {
    expect(formatTable(["ID", "STATUS"], [["a", "pending"], ["bbbb", "running"]])).toBe("ID    STATUS\na     pending\nbbbb  running");
  });
  it("renders relative times", () => {
    const now = new Date("2026-01-01T12:00:00Z");
    expect(ago(new Date("2026-01-01T11:59:30Z"), now)).toBe("30s ago");
    expect(ago(new Date("2026-01-01T09:00:00Z"), now)).toBe("3h ago");
    expect(ago(null, now)).toBe("-");
  });
});
