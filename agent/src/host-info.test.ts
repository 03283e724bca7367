import { cpus, totalmem } from "node:os";
import { describe, expect, it } from "vitest";
import { collectHostInfo } from "./host-info.js";

describe("collectHostInfo", () => {
  it("reads this machine's CPU, memory, OS and disks", async () => {
    const host = await collectHostInfo();
    // Cross-checked against Node's own view of the same machine.
    expect(host.cpu.logicalCores).toBe(cpus().length);
    expect(host.memoryMib).toBe(Math.floor(totalmem() / (1024 * 1024)));
    expect(host.os.platform).toBe(process.platform);
    expect(host.cpu.model).not.toBe("");
    expect(host.disks.some((d) => d.sizeBytes > 0)).toBe(true);
  });
});
