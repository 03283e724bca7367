import { describe, expect, it } from "vitest";
import { createBatcher } from "./batcher.js";

/** A flush whose calls the test completes by hand, recording each batch. */
function manualFlush() {
  const calls: { items: number[]; done: (r?: unknown) => void }[] = [];
  const flush = (items: number[]) =>
    new Promise<string[]>((resolve, reject) => {
      calls.push({ items, done: (err?: unknown) => (err ? reject(err) : resolve(items.map((i) => `r${i}`))) });
    });
  return { calls, flush };
}

describe("group-commit batcher", () => {
  it("sends items of one turn together and gives each caller its own result", async () => {
    const { calls, flush } = manualFlush();
    let run: () => void = () => {};
    const b = createBatcher(flush, { maxBatch: 10, maxInFlight: 1, defer: (fn) => (run = fn) });
    const ps = [1, 2, 3].map((i) => b.submit(i));
    run();
    expect(calls.map((c) => c.items)).toEqual([[1, 2, 3]]);
    calls[0]!.done();
    expect(await Promise.all(ps)).toEqual(["r1", "r2", "r3"]);
  });

  it("queues arrivals during a flush into the next batch, up to maxBatch", async () => {
    const { calls, flush } = manualFlush();
    const b = createBatcher(flush, { maxBatch: 2, maxInFlight: 1, defer: (fn) => fn() });
    const first = b.submit(1);
    const later = [2, 3, 4].map((i) => b.submit(i));
    expect(calls.map((c) => c.items)).toEqual([[1]]);
    expect(b.queued).toBe(3);
    calls[0]!.done();
    await first;
    expect(calls.map((c) => c.items)).toEqual([[1], [2, 3]]);
    calls[1]!.done();
    await Promise.all(later.slice(0, 2));
    expect(calls.map((c) => c.items)).toEqual([[1], [2, 3], [4]]);
    calls[2]!.done();
    expect(await Promise.all(later)).toEqual(["r2", "r3", "r4"]);
    await b.drain();
  });

  it("runs up to maxInFlight flushes at once", () => {
    const { calls, flush } = manualFlush();
    const b = createBatcher(flush, { maxBatch: 1, maxInFlight: 2, defer: (fn) => fn() });
    for (const i of [1, 2, 3]) void b.submit(i).catch(() => {});
    expect(calls).toHaveLength(2);
  });

  it("rejects every item of a failed batch with its error, and keeps serving", async () => {
    const { calls, flush } = manualFlush();
    let run: () => void = () => {};
    const b = createBatcher(flush, { maxBatch: 10, maxInFlight: 1, defer: (fn) => (run = fn) });
    const ps = [1, 2].map((i) => b.submit(i));
    run();
    calls[0]!.done(new Error("db down"));
    for (const p of ps) await expect(p).rejects.toThrow("db down");
    const next = b.submit(3);
    run();
    calls[1]!.done();
    expect(await next).toBe("r3");
  });

  it("rejects when flush returns the wrong number of results", async () => {
    const b = createBatcher(async () => ["only-one"], { maxBatch: 10, maxInFlight: 1 });
    const ps = [b.submit(1), b.submit(2)];
    for (const p of ps) await expect(p).rejects.toThrow(/1 results for 2 items/);
  });
});
