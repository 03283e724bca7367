import { randomUUID } from "node:crypto";
import type { NodeRegistration } from "@gpuorch/core";
import { type TestDatabase, createTestDatabase } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { countNodesByState, getNode, listNodes, markNodeStates, recordHeartbeats, upsertNodeRegistration, withSingletonLock } from "./nodes.js";
import { type Database, type Db, openDatabase } from "./open.js";
import { setNodeDraining } from "./tasks.js";
import { contractDrivers } from "./contract-drivers.test-util.js";

const drivers = contractDrivers();

function registration(over: Partial<NodeRegistration> = {}): NodeRegistration {
  return {
    nodeId: null,
    hostname: `host-${randomUUID().slice(0, 8)}`,
    labels: { provider: "onprem", region: "lab", zone: "a", network: "net-1", instanceType: "dgx", spot: false, privateIp: "10.0.0.7" },
    cpuCores: 64,
    memoryMib: 515_000,
    agentVersion: "0.1.0",
    driverVersion: "535.54.03",
    cudaVersion: "12.2",
    degradedReason: null,
    gpus: [
      { index: 0, uuid: "GPU-a", name: "NVIDIA A100-SXM4-80GB", memoryTotalMib: 81920, migEnabled: true, migDevices: [{ gpuInstanceId: 1, computeInstanceId: 0, profile: "1g.20gb", memoryMib: 19968, uuid: "MIG-x" }] },
      { index: 1, uuid: "GPU-b", name: "NVIDIA A100-SXM4-80GB", memoryTotalMib: 81920, migEnabled: false, migDevices: [] },
    ],
    ...over,
  };
}

const sample = (index: number, util: number) => ({ index, utilizationGpuPercent: util, utilizationMemoryPercent: 10, memoryUsedMib: 1024, temperatureC: 40, powerDrawW: 100.5 });

describe.each(drivers)("node registry contract on $name", (driver) => {
  let database: Database;
  let testDb: TestDatabase | undefined;
  let db: Db;
  const t0 = new Date("2030-01-01T00:00:00.000Z");
  const at = (s: number) => new Date(t0.getTime() + s * 1000);

  beforeAll(async () => {
    ({ database, testDb } = await driver.open());
    db = database.db;
  });

  afterAll(async () => {
    await database.close();
    await testDb?.assertNoLeftoverConnections();
  });

  it("registers a node with its GPUs and MIG devices, ready, heartbeat time = registration time", async () => {
    const reg = registration();
    const { nodeId, created } = await upsertNodeRegistration(db, reg, { newId: randomUUID(), now: t0 });
    expect(created).toBe(true);
    const node = await getNode(db, nodeId);
    expect(node).toMatchObject({ id: nodeId, hostname: reg.hostname, labels: reg.labels, state: "ready", cpuCores: 64, memoryMib: 515_000, driverVersion: "535.54.03", lastHeartbeatAt: t0 });
    expect(node?.gpus.map((g) => ({ ...g, sample: g.sample, updatedAt: g.updatedAt }))).toEqual(reg.gpus.map((g) => ({ ...g, sample: null, updatedAt: null, allocatedJobId: null })));
  });

  it("is idempotent per persisted id and per hostname+labels, replacing the GPU rows", async () => {
    const reg = registration();
    const first = await upsertNodeRegistration(db, reg, { newId: randomUUID(), now: t0 });
    const byIdentity = await upsertNodeRegistration(db, { ...reg, gpus: reg.gpus.slice(0, 1) }, { newId: randomUUID(), now: at(1) });
    expect(byIdentity).toEqual({ nodeId: first.nodeId, created: false });
    expect((await getNode(db, first.nodeId))?.gpus).toHaveLength(1);
    const byId = await upsertNodeRegistration(db, { ...reg, nodeId: first.nodeId, hostname: "renamed-" + reg.hostname }, { newId: randomUUID(), now: at(2) });
    expect(byId).toEqual({ nodeId: first.nodeId, created: false });
    expect((await getNode(db, first.nodeId))?.hostname).toBe("renamed-" + reg.hostname);
    // An id the database does not know (wiped database) is kept rather than replaced.
    const persisted = randomUUID();
    expect(await upsertNodeRegistration(db, registration({ nodeId: persisted }), { newId: randomUUID(), now: t0 })).toEqual({ nodeId: persisted, created: true });
  });

  it("records many nodes' heartbeats in one call, keeps the latest per node, and ignores unknown nodes", async () => {
    const a = await upsertNodeRegistration(db, registration(), { newId: randomUUID(), now: t0 });
    const b = await upsertNodeRegistration(db, registration(), { newId: randomUUID(), now: t0 });
    const ghost = randomUUID();
    const out = await recordHeartbeats(db, [
      { nodeId: a.nodeId, at: at(5), gpus: [sample(0, 50), sample(1, 60)] },
      { nodeId: a.nodeId, at: at(6), gpus: [sample(0, 55), sample(1, 65)] },
      { nodeId: b.nodeId, at: at(5), gpus: [{ index: 0, utilizationGpuPercent: null, utilizationMemoryPercent: null, memoryUsedMib: null, temperatureC: null, powerDrawW: null }] },
      { nodeId: ghost, at: at(5), gpus: [] },
    ]);
    expect(out.known.sort()).toEqual([a.nodeId, b.nodeId].sort());
    expect(out.revived).toEqual([]);
    const na = await getNode(db, a.nodeId);
    expect(na?.lastHeartbeatAt).toEqual(at(6));
    expect(na?.gpus.map((g) => g.sample)).toEqual([sample(0, 55), sample(1, 65)]);
    expect(na?.gpus[0]?.updatedAt).toEqual(at(6));
    const nb = await getNode(db, b.nodeId);
    expect(nb?.gpus[0]?.sample).toEqual({ index: 0, utilizationGpuPercent: null, utilizationMemoryPercent: null, memoryUsedMib: null, temperatureC: null, powerDrawW: null });
    expect(nb?.gpus[1]?.sample).toBeNull();
    // An older heartbeat never moves last_heartbeat_at backwards.
    await recordHeartbeats(db, [{ nodeId: a.nodeId, at: at(1), gpus: [] }]);
    expect((await getNode(db, a.nodeId))?.lastHeartbeatAt).toEqual(at(6));
  });

  it("moves silent nodes ready → unreachable → lost, and a heartbeat brings them back to ready", async () => {
    const base = at(1000);
    const later = (s: number) => new Date(base.getTime() + s * 1000);
    const n = await upsertNodeRegistration(db, registration(), { newId: randomUUID(), now: base });
    const sweep = (now: Date) => markNodeStates(db, { unreachableBefore: new Date(now.getTime() - 3000), lostBefore: new Date(now.getTime() - 10_000) });
    const mine = async (now: Date) => (await sweep(now)).filter((c) => c.nodeId === n.nodeId);
    expect(await mine(later(2))).toEqual([]);
    expect(await mine(later(4))).toEqual([expect.objectContaining({ from: "ready", to: "unreachable" })]);
    expect(await mine(later(5))).toEqual([]);
    expect(await mine(later(11))).toEqual([expect.objectContaining({ from: "unreachable", to: "lost" })]);
    expect(await mine(later(100))).toEqual([]);
    expect((await getNode(db, n.nodeId))?.state).toBe("lost");
    const back = await recordHeartbeats(db, [{ nodeId: n.nodeId, at: later(101), gpus: [] }]);
    expect(back.revived).toEqual([expect.objectContaining({ nodeId: n.nodeId, from: "lost", to: "ready" })]);
    expect((await getNode(db, n.nodeId))?.state).toBe("ready");
  });

  it("moves a silent draining node to lost after the lost timeout, never to unreachable", async () => {
    const base = at(2000);
    const later = (s: number) => new Date(base.getTime() + s * 1000);
    const n = await upsertNodeRegistration(db, registration(), { newId: randomUUID(), now: base });
    expect(await setNodeDraining(db, n.nodeId, true)).toBe(true);
    const mine = async (now: Date) =>
      (await markNodeStates(db, { unreachableBefore: new Date(now.getTime() - 3000), lostBefore: new Date(now.getTime() - 10_000) })).filter((c) => c.nodeId === n.nodeId);
    expect(await mine(later(5))).toEqual([]);
    expect((await getNode(db, n.nodeId))?.state).toBe("draining");
    expect(await mine(later(11))).toEqual([expect.objectContaining({ from: "draining", to: "lost" })]);
  });

  it("lists nodes filtered by state and counts them by state", async () => {
    const n = await upsertNodeRegistration(db, registration(), { newId: randomUUID(), now: at(-100_000) });
    await markNodeStates(db, { unreachableBefore: at(-50_000), lostBefore: at(-50_000) });
    const lost = await listNodes(db, { states: ["lost"] });
    expect(lost.map((x) => x.id)).toContain(n.nodeId);
    expect((await listNodes(db, { states: ["ready"] })).map((x) => x.id)).not.toContain(n.nodeId);
    const counts = await countNodesByState(db);
    expect(counts.lost).toBeGreaterThanOrEqual(1);
    expect(Object.keys(counts).sort()).toEqual(["draining", "lost", "preempting", "ready", "unreachable"]);
    expect(await getNode(db, "not-a-uuid")).toBeNull();
  });

  it("runs a singleton body under the advisory lock", async () => {
    const r = await withSingletonLock(db, 42n, async () => "ran");
    expect(r).toEqual({ acquired: true, value: "ran" });
  });
});

describe("node registry on postgresql: the singleton lock", () => {
  it("lets exactly one of two sessions in", async () => {
    const testDb = await createTestDatabase();
    const database = await openDatabase({ url: testDb.url, poolMax: 4 });
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let entered!: () => void;
      const inside = new Promise<void>((r) => (entered = r));
      const first = withSingletonLock(database.db, 7n, async () => {
        entered();
        await held;
        return 1;
      });
      await inside;
      expect(await withSingletonLock(database.db, 7n, async () => 2)).toEqual({ acquired: false });
      release();
      expect(await first).toEqual({ acquired: true, value: 1 });
    } finally {
      await database.close();
      await testDb.assertNoLeftoverConnections();
    }
  });
});
