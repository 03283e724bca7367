import { EventEmitter } from "node:events";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createMemoryLogger } from "./logger.js";
import { ShutdownManager } from "./shutdown-manager.js";

function setup(timeoutMs?: number) {
  const logger = createMemoryLogger();
  const proc = new EventEmitter();
  const exits: number[] = [];
  let t = 0;
  const mgr = new ShutdownManager({ logger, onDone: (c) => exits.push(c), now: () => t, ...(timeoutMs ? { timeoutMs } : {}) });
  mgr.install(proc);
  return { logger, proc, exits, mgr, advance: (ms: number) => (t += ms) };
}

describe("ShutdownManager", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("stops components in reverse start order on the first signal and exits 0", async () => {
    const { proc, exits, mgr, logger, advance } = setup();
    const order: string[] = [];
    mgr.add("db", async () => void order.push("db"));
    mgr.add("grpc", async () => {
      advance(12);
      order.push("grpc");
    });
    mgr.add("scheduler", async () => void order.push("scheduler"));

    proc.emit("SIGTERM");
    expect(mgr.signal.aborted).toBe(true);
    expect(mgr.state).toBe("stopping");
    await vi.runAllTimersAsync();

    expect(order).toEqual(["scheduler", "grpc", "db"]);
    expect(exits).toEqual([0]);
    expect(mgr.state).toBe("done");
    const stopped = logger.records.filter((r) => r.msg === "component stopped");
    expect(stopped.map((r) => r.fields["component"])).toEqual(["scheduler", "grpc", "db"]);
    expect(stopped[1]?.fields["durationMs"]).toBe(12);
    expect(proc.listenerCount("SIGTERM")).toBe(0);
  });

  it("keeps stopping the rest when one component fails, and exits 1", async () => {
    const { exits, mgr, logger } = setup();
    const order: string[] = [];
    mgr.add("a", async () => void order.push("a"));
    mgr.add("b", () => Promise.reject(new Error("boom")));
    const code = await mgr.shutdown("test");
    expect(code).toBe(1);
    expect(order).toEqual(["a"]);
    expect(exits).toEqual([1]);
    expect(logger.records.some((r) => r.level === "error" && r.fields["component"] === "b")).toBe(true);
  });

  it("a second signal forces exit 1 without waiting for a hung component", async () => {
    const { proc, exits, mgr } = setup();
    mgr.add("hung", () => new Promise<void>(() => {}));
    proc.emit("SIGINT");
    await vi.advanceTimersByTimeAsync(10);
    expect(exits).toEqual([]);
    proc.emit("SIGINT");
    expect(exits).toEqual([1]);
    proc.emit("SIGINT");
    expect(exits).toEqual([1]);
  });

  it("the overall timeout forces exit 1 and names what was pending", async () => {
    const { exits, mgr, logger } = setup(5_000);
    mgr.add("fast", async () => {});
    mgr.add("hung", () => new Promise<void>(() => {}));
    const done = mgr.shutdown("test");
    await vi.advanceTimersByTimeAsync(4_999);
    expect(exits).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(await done).toBe(1);
    expect(exits).toEqual([1]);
    const timeout = logger.records.find((r) => r.msg === "shutdown timed out; forcing exit");
    expect(timeout?.fields["pending"]).toEqual(["hung", "fast"]);
  });

  it("shutdown() is idempotent and calls onDone once", async () => {
    const { exits, mgr } = setup();
    const stop = vi.fn(async () => {});
    mgr.add("x", stop);
    const [a, b] = await Promise.all([mgr.shutdown("one"), mgr.shutdown("two")]);
    expect(a).toBe(0);
    expect(b).toBe(0);
    expect(stop).toHaveBeenCalledTimes(1);
    expect(exits).toEqual([0]);
  });

  it("a component added while stopping is stopped too", async () => {
    const { mgr } = setup();
    const order: string[] = [];
    mgr.add("first", async () => void order.push("first"));
    mgr.add("second", async () => {
      mgr.add("late", async () => void order.push("late"));
      order.push("second");
    });
    await mgr.shutdown("test");
    expect(order).toEqual(["second", "late", "first"]);
  });
});
