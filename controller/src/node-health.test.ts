import { randomUUID } from "node:crypto";
import type { NodeRegistration } from "@gpuorch/core";
import { type Database, type HeartbeatRecord, getNode, openDatabase, recordHeartbeats, upsertNodeRegistration } from "@gpuorch/db";
import { createLogger } from "@gpuorch/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HeartbeatIngest } from "./heartbeat-ingest.js";
import { NodeHealthLoop } from "./node-health.js";

const logger = createLogger({ name: "test", level: "silent" });

function fakeClock(start = new Date("2030-01-01T00:00:00Z")) {
  let t = start.getTime();
  return { now: () => new Date(t), advance: (ms: number) => void (t += ms) };
}

const registration = (hostname: string): NodeRegistration => ({
  nodeId: null,
  hostname,
  labels: { provider: "onprem", region: "lab", zone: "", network: "", instanceType: "", spot: false, privateIp: "" },
  cpuCores: 4,
  memoryMib: 1024,
  agentVersion: "0.1.0",
  driverVersion: "",
  cudaVersion: "",
  degradedReason: null,
  gpus: [{ index: 0, uuid: "GPU-0", name: "Tesla T4", memoryTotalMib: 15360, migEnabled: false, migDevices: [] }],
});

const sample = (util: number) => [{ index: 0, utilizationGpuPercent: util, utilizationMemoryPercent: 0, memoryUsedMib: 0, temperatureC: 30, powerDrawW: 20 }];

describe("heartbeat ingest and node health (PGlite)", () => {
  let database: Database;
  beforeAll(async () => {
    database = await openDatabase({ memory: true });
  });
  afterAll(async () => {
    await database.close();
  });

  it("buffers the latest heartbeat per node and writes all of them in ONE batched call per flush", async () => {
    const clock = fakeClock();
    const batches: HeartbeatRecord[][] = [];
    const ingest = new HeartbeatIngest({
      db: database.db,
      clock,
      logger,
      flushIntervalMs: 5_000,
      write: async (db, records) => {
        batches.push([...records]);
        return recordHeartbeats(db, records);
      },
    });
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await upsertNodeRegistration(database.db, registration(`batch-${i}`), { newId: randomUUID(), now: clock.now() })).nodeId);
    for (let round = 1; round <= 5; round++) for (const id of ids) ingest.record(id, sample(round * 10));
    expect(ingest.pendingCount).toBe(20);
    await ingest.flush();
    expect(batches).toHaveLength(1);
    expect(batches[0]).toHaveLength(20);
    expect((await getNode(database.db, ids[3]!))?.gpus[0]?.sample?.utilizationGpuPercent).toBe(50);
    await ingest.flush();
    expect(batches).toHaveLength(1); // nothing new, nothing written
    await ingest.stop();
  });

  it("keeps a failed batch for the next flush, newer heartbeats winning", async () => {
    const clock = fakeClock();
    let fail = true;
    const written: HeartbeatRecord[][] = [];
    const ingest = new HeartbeatIngest({
      db: database.db,
      clock,
      logger,
      flushIntervalMs: 5_000,
      write: async (_db, records) => {
        if (fail) throw new Error("database down");
        written.push([...records]);
        return { known: records.map((r) => r.nodeId), revived: [] };
      },
    });
    ingest.record("n1", sample(1));
    ingest.record("n2", sample(2));
    await ingest.flush();
    ingest.record("n2", sample(3));
    fail = false;
    await ingest.flush();
    expect(written).toHaveLength(1);
    const byNode = new Map(written[0]!.map((r) => [r.nodeId, r.gpus[0]?.utilizationGpuPercent]));
    expect(byNode).toEqual(new Map([["n1", 1], ["n2", 3]]));
    await ingest.stop();
  });

  it("writes liveness on every flush but each node's GPU readings at most once per sample interval, and all of them at stop", async () => {
    const clock = fakeClock();
    const batches: HeartbeatRecord[][] = [];
    const ingest = new HeartbeatIngest({
      db: database.db,
      clock,
      logger,
      flushIntervalMs: 500,
      sampleIntervalMs: 5_000,
      write: async (_db, records) => {
        batches.push([...records]);
        return { known: records.map((r) => r.nodeId), revived: [] };
      },
    });
    const ids = Array.from({ length: 50 }, (_, i) => `node-${i}`);
    const withReadings = (b: HeartbeatRecord[]) => b.filter((r) => r.gpus.length > 0).length;
    for (const id of ids) ingest.record(id, sample(1));
    await ingest.flush();
    expect(withReadings(batches[0]!)).toBe(50); // first sight: readings at once
    // Ten flushes 500 ms apart span one sample interval: every node is in every batch, and each
    // node's readings go out exactly once, spread over the flushes rather than all in one.
    for (let f = 0; f < 10; f++) {
      clock.advance(500);
      for (const id of ids) ingest.record(id, sample(2 + f));
      await ingest.flush();
    }
    const interval = batches.slice(1);
    expect(interval.every((b) => b.length === 50)).toBe(true);
    expect(interval.reduce((s, b) => s + withReadings(b), 0)).toBe(50);
    expect(Math.max(...interval.map(withReadings))).toBeLessThan(25);
    clock.advance(100);
    for (const id of ids) ingest.record(id, sample(99));
    await ingest.stop();
    expect(withReadings(batches.at(-1)!)).toBe(50); // the last readings are never dropped
  });

  it("sweeps ready → unreachable → lost by the configured timeouts, and a heartbeat makes the node ready again", async () => {
    const clock = fakeClock(new Date("2031-01-01T00:00:00Z"));
    const ingest = new HeartbeatIngest({ db: database.db, clock, logger, flushIntervalMs: 5_000 });
    const loop = new NodeHealthLoop({ db: database.db, clock, logger, intervalMs: 1_000, unreachableAfterMs: 15_000, lostAfterMs: 60_000, beforeSweep: () => ingest.flush() });
    const { nodeId } = await upsertNodeRegistration(database.db, registration("sweep-me"), { newId: randomUUID(), now: clock.now() });
    const mine = async () => (await loop.sweep()).filter((c) => c.nodeId === nodeId).map((c) => `${c.from}->${c.to}`);
    clock.advance(14_000);
    expect(await mine()).toEqual([]);
    clock.advance(2_000);
    expect(await mine()).toEqual(["ready->unreachable"]);
    clock.advance(30_000);
    expect(await mine()).toEqual([]);
    clock.advance(15_000);
    expect(await mine()).toEqual(["unreachable->lost"]);
    ingest.record(nodeId, sample(7));
    expect(await mine()).toEqual([]); // the sweep flushed the heartbeat first
    expect((await getNode(database.db, nodeId))?.state).toBe("ready");
    await ingest.stop();
    await loop.stop();
  });

  it("after a controller (re)start, counts silence from the start: nodes get the full periods to reconnect", async () => {
    const clock = fakeClock(new Date("2032-01-01T00:00:00Z"));
    const { nodeId } = await upsertNodeRegistration(database.db, registration("across-restart"), { newId: randomUUID(), now: clock.now() });
    clock.advance(120_000); // the controller was down for two minutes; the node's last heartbeat is that old
    const loop = new NodeHealthLoop({ db: database.db, clock, logger, intervalMs: 1_000, unreachableAfterMs: 15_000, lostAfterMs: 60_000 });
    const mine = async () => (await loop.sweep()).filter((c) => c.nodeId === nodeId).map((c) => `${c.from}->${c.to}`);
    expect(await mine()).toEqual([]);
    clock.advance(14_000);
    expect(await mine()).toEqual([]);
    clock.advance(2_000);
    expect(await mine()).toEqual(["ready->unreachable"]);
    clock.advance(45_000);
    expect(await mine()).toEqual(["unreachable->lost"]);
    await loop.stop();
  });
});
