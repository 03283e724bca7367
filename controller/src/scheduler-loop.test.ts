import { randomUUID } from "node:crypto";
import { replayEvents } from "@gpuorch/core";
import {
  type Database,
  applyTaskUpdates,
  findTasks,
  getJob,
  getJobEvents,
  markNodeStates,
  openDatabase,
  setNodeDraining,
  upsertNodeRegistration,
  createTeam,
} from "@gpuorch/db";
import { createLogger } from "@gpuorch/runtime";
import { type TestDatabase, createTestDatabase } from "@gpuorch/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { SchedulerLoop, type SchedulerLoopDeps } from "./scheduler-loop.js";
import { submit } from "./supervisor.test-util.js";

const logger = createLogger({ name: "test", level: "silent" });
const clock = { now: () => new Date() };
const ids = { newId: () => randomUUID() };

interface NodeOpts {
  gpus: number;
  network?: string;
  provider?: string;
  region?: string;
  instanceType?: string;
  now?: Date;
  privateIp?: string;
}

async function registerNode(db: Database["db"], hostname: string, o: NodeOpts): Promise<string> {
  const out = await upsertNodeRegistration(
    db,
    {
      nodeId: null,
      hostname,
      labels: {
        provider: o.provider ?? "aws",
        region: o.region ?? "us-east-1",
        zone: "",
        network: o.network ?? "vpc-a",
        instanceType: o.instanceType ?? "p5.48xlarge",
        spot: false,
        privateIp: o.privateIp ?? "",
      },
      cpuCores: 64,
      memoryMib: 512_000,
      agentVersion: "test",
      driverVersion: "550",
      cudaVersion: "12.4",
      degradedReason: null,
      gpus: Array.from({ length: o.gpus }, (_, i) => ({
        index: i,
        uuid: `GPU-${hostname}-${i}`,
        name: "NVIDIA H100 80GB HBM3",
        memoryTotalMib: 81_559,
        migEnabled: false,
        migDevices: [],
      })),
    },
    { newId: randomUUID(), now: o.now ?? new Date() },
  );
  return out.nodeId;
}

function trainingYaml(name: string, resources: string, extra = ""): string {
  return `version: 1
job:
  name: ${name}
  type: training
  framework: pytorch_ddp
entrypoint:
  command: [python, train.py]
resources:
${resources}
${extra}`;
}

const oneGpu = (name: string, priority?: number) =>
  trainingYaml(name, "  gpus: 1\n", priority === undefined ? "" : `constraints:\n  priority: ${priority}\n`);

describe("SchedulerLoop.pass (PostgreSQL)", () => {
  let testDb: TestDatabase;
  let database: Database;
  let db: Database["db"];
  let teamId: string;
  const extra: Database[] = [];

  beforeEach(async () => {
    testDb = await createTestDatabase();
    database = await openDatabase({ url: testDb.url, poolMax: 8 });
    db = database.db;
    teamId = (await createTeam(db, { id: randomUUID(), name: `sched-${randomUUID().slice(0, 8)}` })).id;
  });

  afterEach(async () => {
    for (const d of extra.splice(0)) await d.close();
    await database.close();
    await testDb.assertNoLeftoverConnections();
  });

  function loop(over: Partial<SchedulerLoopDeps> = {}, on: Database["db"] = db): SchedulerLoop {
    return new SchedulerLoop({ db: on, ids, clock, logger, intervalMs: 60_000, batchLimit: 100, onPlaced: async () => {}, ...over });
  }

  const job = async (id: string) => {
    const j = await getJob(db, id, { teamId: null });
    if (!j) throw new Error(`job ${id} missing`);
    return j;
  };

  async function holds(): Promise<{ node_id: string; gpu_index: number; task_id: string; job_id: string }[]> {
    const r = (await db.execute("SELECT node_id, gpu_index, task_id, job_id FROM task_gpus ORDER BY node_id, gpu_index")) as unknown as {
      rows: { node_id: string; gpu_index: number; task_id: string; job_id: string }[];
    };
    return r.rows;
  }

  it("places a pending 1-GPU job on a free node in one pass: task, GPU hold, scheduled event naming the host", async () => {
    const node = await registerNode(db, "gpu-a", { gpus: 2 });
    const jobId = await submit(db, teamId, oneGpu("one"));
    const placedCb: string[][] = [];
    const s = loop({ onPlaced: async (t) => void placedCb.push(t) });

    const first = await s.pass();
    expect(first.taskIds).toHaveLength(1);
    expect(placedCb).toEqual([first.taskIds]);

    const tasks = await findTasks(db, { jobId });
    expect(tasks).toHaveLength(1);
    const t = tasks[0]!;
    expect(t.id).toBe(first.taskIds[0]);
    expect(t.state).toBe("assigned");
    expect(t.nodeId).toBe(node);
    expect(t.gpuIndices).toHaveLength(1);
    expect(t.attempt).toBe(1);
    expect(t.nodeRank).toBe(0);
    expect(t.numNodes).toBe(1);
    expect(t.unit).toBe(-1);
    expect(await holds()).toEqual([{ node_id: node, gpu_index: t.gpuIndices[0], task_id: t.id, job_id: jobId }]);

    const j = await job(jobId);
    expect(j.status).toBe("scheduled");
    const events = await getJobEvents(db, jobId);
    expect(events.map((e) => [e.fromStatus, e.toStatus])).toEqual([
      [null, "pending"],
      ["pending", "scheduled"],
    ]);
    expect(events[1]!.reason).toContain("gpu-a");
    expect(events[1]!.actor).toBe("controller:scheduler");

    const second = await s.pass();
    expect(second.taskIds).toEqual([]);
    expect(await findTasks(db, { jobId })).toHaveLength(1);
    expect(await holds()).toHaveLength(1);
    expect((await job(jobId)).version).toBe(j.version);
  });

  const gangYaml = (name: string) => trainingYaml(name, "  gpus: 2\n  max_gpus_per_node: 1\n  requires_multi_node: true\n");

  it("places a 2-node gang over two 1-GPU nodes of one network: ranks 0 and 1, one master", async () => {
    const a = await registerNode(db, "gang-a", { gpus: 1, privateIp: "10.0.0.1" });
    const b = await registerNode(db, "gang-b", { gpus: 1, privateIp: "10.0.0.2" });
    const jobId = await submit(db, teamId, gangYaml("gang"));
    const res = await loop().pass();
    expect(res.taskIds).toHaveLength(2);
    const tasks = (await findTasks(db, { jobId })).sort((x, y) => x.nodeRank - y.nodeRank);
    expect(tasks.map((t) => t.nodeRank)).toEqual([0, 1]);
    expect(tasks.map((t) => t.numNodes)).toEqual([2, 2]);
    expect(new Set(tasks.map((t) => t.nodeId))).toEqual(new Set([a, b]));
    expect(tasks[0]!.masterAddr).toBe(tasks[1]!.masterAddr);
    expect(tasks[0]!.masterPort).toBe(tasks[1]!.masterPort);
    // The master is rank 0's node, addressed by its private IP.
    expect(tasks[0]!.masterAddr).toBe(tasks[0]!.nodeId === a ? "10.0.0.1" : "10.0.0.2");
    expect((await job(jobId)).status).toBe("scheduled");
    expect(await holds()).toHaveLength(2);
  });

  it("keeps a gang pending when its nodes are on different networks, and says why", async () => {
    await registerNode(db, "net-a", { gpus: 1, network: "vpc-a" });
    await registerNode(db, "net-b", { gpus: 1, network: "vpc-b" });
    const jobId = await submit(db, teamId, gangYaml("split"));
    const before = await job(jobId);
    const res = await loop().pass();
    expect(res.taskIds).toEqual([]);
    expect(res.pending).toBe(1);
    const j = await job(jobId);
    expect(j.status).toBe("pending");
    expect(j.version).toBe(before.version);
    expect(j.statusReason).toMatch(/^(waiting for GPUs|unschedulable): /);
    expect(j.statusReason).toContain("provider+region+network");
    expect(await findTasks(db, { jobId })).toEqual([]);
  });

  it("leaves an infeasible job pending as unschedulable without an event", async () => {
    await registerNode(db, "small", { gpus: 8 });
    const jobId = await submit(db, teamId, trainingYaml("huge", "  gpus: 64\n  max_gpus_per_node: 8\n  requires_multi_node: true\n"));
    const before = await job(jobId);
    await loop().pass();
    const j = await job(jobId);
    expect(j.status).toBe("pending");
    expect(j.statusReason).toMatch(/^unschedulable: /);
    expect(j.version).toBe(before.version);
    expect(await getJobEvents(db, jobId)).toHaveLength(1);
    expect(await holds()).toEqual([]);
  });

  it("places the higher-priority job first when only one GPU is free", async () => {
    await registerNode(db, "solo", { gpus: 1 });
    const low = await submit(db, teamId, oneGpu("low", 100));
    const high = await submit(db, teamId, oneGpu("high", 900));
    await loop().pass();
    expect((await job(high)).status).toBe("scheduled");
    expect((await job(low)).status).toBe("pending");
    expect((await job(low)).statusReason).toMatch(/^waiting for GPUs: /);
    expect(await findTasks(db, { jobId: low })).toEqual([]);
  });

  it("multi_task: places at most max_parallel distinct units, and more once some end", async () => {
    const node = await registerNode(db, "mt", { gpus: 8 });
    const yaml = `version: 1
job:
  name: shards
  type: inference
  framework: command
entrypoint:
  command: [python, embed.py]
resources:
  gpus: 1
execution:
  tasks: 5
  max_parallel: 2
`;
    const jobId = await submit(db, teamId, yaml);
    const s = loop();
    const first = await s.pass();
    expect(first.taskIds).toHaveLength(2);
    let tasks = await findTasks(db, { jobId });
    expect(tasks).toHaveLength(2);
    expect(new Set(tasks.map((t) => t.unit)).size).toBe(2);
    expect(tasks.every((t) => t.unit >= 0 && t.unit < 5 && t.nodeRank === 0 && t.numNodes === 1)).toBe(true);
    // Units are independent: distinct rendezvous ports.
    expect(tasks[0]!.masterPort).not.toBe(tasks[1]!.masterPort);
    expect((await job(jobId)).status).toBe("scheduled");

    // Full: nothing more while both run.
    expect((await s.pass()).taskIds).toEqual([]);

    // Both units end: two more are placed, distinct from the first two.
    const ended = await applyTaskUpdates(
      db,
      node,
      tasks.map((t) => ({ taskId: t.id, state: "succeeded" as const, exitCode: 0, signal: null, step: null, reason: null })),
    );
    expect(ended).toHaveLength(2);
    const second = await s.pass();
    expect(second.taskIds).toHaveLength(2);
    tasks = await findTasks(db, { jobId });
    expect(tasks).toHaveLength(4);
    expect(new Set(tasks.map((t) => t.unit)).size).toBe(4);
    // No second pending → scheduled event for the later units.
    expect((await getJobEvents(db, jobId)).map((e) => e.toStatus)).toEqual(["pending", "scheduled"]);

    // One ends: exactly the last unit is placed; then nothing is left.
    const running = tasks.filter((t) => t.state === "assigned");
    await applyTaskUpdates(db, node, [{ taskId: running[0]!.id, state: "succeeded", exitCode: 0, signal: null, step: null, reason: null }]);
    expect((await s.pass()).taskIds).toHaveLength(1);
    tasks = await findTasks(db, { jobId });
    expect(tasks.map((t) => t.unit).sort()).toEqual([0, 1, 2, 3, 4]);
    await applyTaskUpdates(
      db,
      node,
      tasks.filter((t) => t.state === "assigned").map((t) => ({ taskId: t.id, state: "succeeded" as const, exitCode: 0, signal: null, step: null, reason: null })),
    );
    expect((await s.pass()).taskIds).toEqual([]);
  });

  it("does not let fully placed multi_task jobs fill the batch and starve pending jobs", async () => {
    await registerNode(db, "batch", { gpus: 3 });
    const yaml = `version: 1
job:
  name: busy
  type: eval
  framework: command
entrypoint:
  command: [python, eval.py]
resources:
  gpus: 1
execution:
  tasks: 2
  max_parallel: 2
constraints:
  priority: 900
`;
    const mt = await submit(db, teamId, yaml);
    const s = loop({ batchLimit: 1 });
    expect((await s.pass()).taskIds).toHaveLength(2);
    expect((await findTasks(db, { jobId: mt })).map((t) => t.unit).sort()).toEqual([0, 1]);
    const low = await submit(db, teamId, oneGpu("low", 100));
    await s.pass();
    expect((await job(low)).status).toBe("scheduled");
  });

  it("gives nothing to a draining or a lost node", async () => {
    const draining = await registerNode(db, "drain", { gpus: 4 });
    await registerNode(db, "gone", { gpus: 4, now: new Date("2020-01-01T00:00:00Z") });
    expect(await setNodeDraining(db, draining, true)).toBe(true);
    const changes = await markNodeStates(db, { unreachableBefore: new Date("2021-01-01T00:00:00Z"), lostBefore: new Date("2021-01-01T00:00:00Z") });
    expect(changes.map((c) => [c.hostname, c.to])).toEqual([["gone", "lost"]]);
    const jobId = await submit(db, teamId, oneGpu("nowhere"));
    const res = await loop().pass();
    expect(res.taskIds).toEqual([]);
    const j = await job(jobId);
    expect(j.status).toBe("pending");
    expect(j.statusReason).toMatch(/^(waiting for GPUs|unschedulable): /);
    expect(await holds()).toEqual([]);

    // A ready node then takes it (the job was placeable all along).
    const ready = await registerNode(db, "fresh", { gpus: 1 });
    await loop().pass();
    expect((await findTasks(db, { jobId })).map((t) => t.nodeId)).toEqual([ready]);
  });

  it("defers passes for new work while the fleet is saturated: capacity wakes and the periodic pass still run", async () => {
    const nodeId = await registerNode(db, "busy-1", { gpus: 1 });
    const first = await submit(db, teamId, oneGpu("first"));
    const passes: number[] = [];
    const l = loop({ intervalMs: 2_000, onPass: (s) => passes.push(s.placed) });
    const passCount = async (n: number, withinMs: number): Promise<void> => {
      const until = Date.now() + withinMs;
      while (passes.length < n && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      expect(passes.length).toBe(n);
    };
    l.start();
    try {
      l.wake("work");
      await passCount(1, 5_000);
      expect((await job(first)).status).toBe("scheduled");
      // The only GPU is taken: new submits alone do not run a pass...
      const second = await submit(db, teamId, oneGpu("second"));
      for (let i = 0; i < 5; i++) l.wake("work");
      await new Promise((r) => setTimeout(r, 300));
      expect(passes.length).toBe(1);
      expect((await job(second)).statusReason).toBeNull();
      // ...the periodic pass does, and gives the new job its reason.
      await passCount(2, 4_000);
      expect((await job(second)).statusReason).toMatch(/^waiting for GPUs/);
      // Capacity freed: the pass runs at once and places the waiting job.
      const [task] = await findTasks(db, { jobId: first, activeOnly: true });
      await applyTaskUpdates(db, nodeId, [{ taskId: task!.id, state: "succeeded", exitCode: 0, signal: null, step: null, reason: null }]);
      l.wake("capacity");
      await passCount(3, 1_500);
      expect(passes[2]).toBe(1);
      expect((await job(second)).status).toBe("scheduled");
    } finally {
      await l.stop();
    }
  });

  it("never places a GPU or a job twice with two schedulers on separate pools racing", async () => {
    const other = await openDatabase({ url: testDb.url, poolMax: 8 });
    extra.push(other);
    for (let i = 0; i < 3; i++) await registerNode(db, `race-${i}`, { gpus: 2 });
    const jobIds: string[] = [];
    for (let i = 0; i < 30; i++) jobIds.push(await submit(db, teamId, oneGpu(`race-job-${i}`, (i * 37) % 1000)));
    // Two 2-node gangs compete too.
    for (let i = 0; i < 2; i++) jobIds.push(await submit(db, teamId, trainingYaml(`race-gang-${i}`, "  gpus: 2\n  max_gpus_per_node: 1\n  requires_multi_node: true\n")));
    const a = loop({}, db);
    const b = loop({}, other.db);
    const created: string[] = [];
    for (let round = 0; round < 20; round++) {
      const [ra, rb] = await Promise.all([a.pass(), b.pass()]);
      created.push(...ra.taskIds, ...rb.taskIds);
      // Free some GPUs between rounds so placement keeps going: end every task placed so far in an odd round.
      if (round % 2 === 1) {
        for (const t of await findTasks(db, { activeOnly: true })) {
          await applyTaskUpdates(db, t.nodeId, [{ taskId: t.id, state: "succeeded", exitCode: 0, signal: null, step: null, reason: null }]);
        }
      }
      // Invariant at every round: a GPU is held by at most one active task, and holds match active tasks.
      const active = await findTasks(db, { activeOnly: true });
      const seen = new Set<string>();
      for (const t of active) {
        for (const g of t.gpuIndices) {
          const key = `${t.nodeId}/${g}`;
          expect(seen.has(key), `GPU ${key} held twice`).toBe(false);
          seen.add(key);
        }
      }
      expect((await holds()).map((h) => `${h.node_id}/${h.gpu_index}`).sort()).toEqual([...seen].sort());
    }
    expect(created.length).toBeGreaterThan(6);
    expect(new Set(created).size).toBe(created.length);

    const all = await findTasks(db, {});
    expect(all.map((t) => t.id).sort()).toEqual([...created].sort());
    let placedJobs = 0;
    for (const jobId of jobIds) {
      const j = await job(jobId);
      const events = await getJobEvents(db, jobId);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      expect(replayEvents(events.map((e) => ({ from: e.fromStatus, to: e.toStatus })))).toBe(j.status);
      const scheduledEvents = events.filter((e) => e.toStatus === "scheduled").length;
      const tasks = all.filter((t) => t.jobId === jobId);
      if (j.status === "scheduled") {
        placedJobs++;
        // Placed exactly once: one scheduled event, one task per gang member, each rank once.
        expect(scheduledEvents).toBe(1);
        expect(tasks.map((t) => t.nodeRank).sort()).toEqual(Array.from({ length: tasks[0]!.numNodes }, (_, i) => i));
      } else {
        expect(j.status).toBe("pending");
        expect(scheduledEvents).toBe(0);
        expect(tasks).toEqual([]);
      }
    }
    expect(placedJobs).toBeGreaterThan(6);
  });
});
