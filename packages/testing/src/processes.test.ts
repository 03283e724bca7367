import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "./ports.js";
import { assertNoLeftoverProcesses, leftoverProcesses, spawnProcess, stopAllProcesses } from "./processes.js";
import { waitFor } from "./wait-for.js";

afterAll(async () => {
  await stopAllProcesses();
});

describe("spawnProcess", () => {
  it("captures output and reports the exit", async () => {
    const p = spawnProcess("sh", ["-c", 'read line; echo "got $line"; echo oops >&2; exit 3'], { name: "echoer", input: "hello\n" });
    expect(await p.exited).toEqual({ code: 3, signal: null });
    expect(p.output()).toContain("got hello");
    expect(p.output()).toContain("oops");
    assertNoLeftoverProcesses();
  });

  it("tracks a process group until stop() has killed all of it", async () => {
    // The shell's background child is a grandchild: only group kill reaches it.
    const p = spawnProcess("sh", ["-c", "sleep 60 & echo started; wait"], { name: "sleeper" });
    await p.waitForOutput(/started/);
    expect(() => assertNoLeftoverProcesses()).toThrow(/sleeper \(pid \d+\)/);
    const exit = await p.stop({ graceMs: 2_000 });
    expect(exit.signal).toBe("SIGTERM");
    await waitFor(() => leftoverProcesses().length === 0, { timeoutMs: 2_000, message: "the process group to be gone" });
    assertNoLeftoverProcesses();
  });

  it("escalates to SIGKILL when the process ignores SIGTERM", async () => {
    const p = spawnProcess("sh", ["-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"], { name: "stubborn" });
    await p.waitForOutput(/ready/);
    expect((await p.stop({ graceMs: 200 })).signal).toBe("SIGKILL");
    assertNoLeftoverProcesses();
  });

  it("rejects waitForOutput when the process exits first, and reports spawn failures as exits", async () => {
    const p = spawnProcess("sh", ["-c", "echo bye"], { name: "quick" });
    await expect(p.waitForOutput(/never/)).rejects.toThrow(/quick exited/);
    const missing = spawnProcess("/nonexistent/binary", [], { name: "missing" });
    expect(await missing.exited).toEqual({ code: null, signal: null });
    expect(missing.output()).toContain("ENOENT");
    assertNoLeftoverProcesses();
  });
});

describe("freePort and waitFor", () => {
  it("finds a bindable loopback port", async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const { createServer } = await import("node:net");
    const srv = createServer();
    await new Promise<void>((resolve, reject) => srv.once("error", reject).listen(port, "127.0.0.1", resolve));
    await new Promise<void>((resolve) => srv.close(() => resolve()));
  });

  it("returns the first truthy value and times out naming what it waited for", async () => {
    let n = 0;
    expect(await waitFor(() => (++n >= 3 ? n : 0), { intervalMs: 1 })).toBe(3);
    await expect(
      waitFor(
        () => {
          throw new Error("not ready");
        },
        { timeoutMs: 30, intervalMs: 5, message: "the moon" },
      ),
    ).rejects.toThrow(/waiting for the moon: last error: not ready/);
  });
});
