import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { backoffDelay, isAbortError, sleep } from "./backoff.js";

describe("backoffDelay", () => {
  const opts = { baseMs: 100, maxMs: 5_000 } as const;

  it("grows by the factor and caps at maxMs", () => {
    const ceil = (a: number) => backoffDelay(a, { ...opts, jitter: "none" });
    expect([0, 1, 2, 3, 4, 5, 6, 100].map(ceil)).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    expect(backoffDelay(2, { ...opts, factor: 3, jitter: "none" })).toBe(900);
  });

  it("full jitter spans [0, ceiling)", () => {
    expect(backoffDelay(3, { ...opts, jitter: "full" }, () => 0)).toBe(0);
    expect(backoffDelay(3, { ...opts, jitter: "full" }, () => 0.5)).toBe(400);
    expect(backoffDelay(3, { ...opts, jitter: "full" }, () => 0.999999)).toBe(799);
  });

  it("equal jitter spans [ceiling/2, ceiling)", () => {
    expect(backoffDelay(3, { ...opts, jitter: "equal" }, () => 0)).toBe(400);
    expect(backoffDelay(3, { ...opts, jitter: "equal" }, () => 0.5)).toBe(600);
  });

  it("treats negative attempts as the first and survives huge ones", () => {
    expect(backoffDelay(-3, { ...opts, jitter: "none" })).toBe(100);
    expect(backoffDelay(1e9, { ...opts, jitter: "full" }, () => 0.5)).toBe(2500);
  });
});

describe("sleep", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("resolves after the delay", async () => {
    let done = false;
    const p = sleep(1000).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await p;
    expect(done).toBe(true);
  });

  it("rejects with an AbortError when the signal aborts", async () => {
    const ac = new AbortController();
    const p = sleep(10_000, ac.signal);
    ac.abort();
    const err: unknown = await p.catch((e: unknown) => e);
    expect(isAbortError(err)).toBe(true);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("rejects at once when the signal is already aborted, with its reason", async () => {
    const ac = new AbortController();
    const reason = new Error("stop now");
    ac.abort(reason);
    await expect(sleep(10, ac.signal)).rejects.toBe(reason);
  });
});
