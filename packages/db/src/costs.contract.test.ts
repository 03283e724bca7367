import { randomUUID } from "node:crypto";
import type { JobStatus, NodeRegistration } from "@gpuorch/core";
import { type TestDatabase, newJobInput } from "@gpuorch/testing";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type JobSpend,
  type NewAllocation,
  costTotalsByTeamProject,
  costsByGroup,
  gpuUtilizationSamples,
  heldGpuReadings,
  insertAllocations,
  refreshJobCosts,
  setJobEstimate,
} from "./costs.js";
import { type NewJobInput, insertJob, transitionJob } from "./jobs.js";
import { markNodeStates, recordHeartbeats, upsertNodeRegistration } from "./nodes.js";
import type { Database, Db } from "./open.js";
import { applyTaskUpdates, endTasks, insertTasks, setNodeDraining } from "./tasks.js";
import { createTeam } from "./teams.js";
import { contractDrivers } from "./contract-drivers.test-util.js";

const drivers = contractDrivers();

/** Shortest legal path from pending to each state used here. */
const PATH_TO: Partial<Record<JobStatus, JobStatus[]>> = {
  pending: [],
  running: ["scheduled", "provisioning", "running"],
  completed: ["scheduled", "provisioning", "running", "completed"],
};

/**
 * The contract's cost of one span, computed independently of SQL: price ×
 * duration / 1 h, rounded once to the micro-dollar, half away from zero.
 */
function costOf(microsPerHour: bigint, durationMicros: bigint): bigint {
  const num = microsPerHour * durationMicros;
  const den = 3_600_000_000n;
  return (2n * num + den) / (2n * den);
}

/** A decimal seconds string ("1000.512345") as integer microseconds. */
function secondsTextToMicros(s: string): bigint {
  const [whole = "0", frac = ""] = s.split(".");
  return BigInt(whole) * 1_000_000n + BigInt((frac + "000000").slice(0, 6));
}

/** Integer micro-units as a fixed-point decimal with `scale` digits (micro-dollars → "3.524695"). */
function fixed(micros: bigint, scale: number): string {
  const unit = 10n ** BigInt(6 - scale);
  const rounded = (micros + unit / 2n) / unit; // positive values only
  const base = 10n ** BigInt(scale);
  return `${rounded / base}.${(rounded % base).toString().padStart(scale, "0")}`;
}

const base = Date.parse("2024-03-01T00:00:00.000Z");
/** base + s seconds (ms precision) as an ISO timestamp. */
const atS = (s: number) => new Date(base + Math.round(s * 1000)).toISOString();
const micros = (s: number) => BigInt(Math.round(s * 1_000_000));

describe.each(drivers)("costs contract on $name", (driver) => {
  let database: Database;
  let testDb: TestDatabase | undefined;
  let db: Db;

  beforeAll(async () => {
    ({ database, testDb } = await driver.open());
    db = database.db;
  });

  afterAll(async () => {
    await database.close();
    await testDb?.assertNoLeftoverConnections();
  });

  async function query<T>(q: ReturnType<typeof sql>): Promise<T[]> {
    return ((await db.execute(q)) as unknown as { rows: T[] }).rows;
  }

  async function team(prefix = "team") {
    return createTeam(db, { id: randomUUID(), name: `${prefix}-${randomUUID().slice(0, 8)}` });
  }

  async function job(teamId: string, over: Partial<NewJobInput> = {}, status: JobStatus = "pending") {
    const { job: created } = await insertJob(db, newJobInput(teamId, over));
    for (const to of PATH_TO[status] ?? []) await transitionJob(db, { jobId: created.id, to, reason: `to ${to}`, actor: "test" });
    return created;
  }

  function registration(gpus: number, over: Partial<NodeRegistration> = {}): NodeRegistration {
    return {
      nodeId: null,
      hostname: `cost-host-${randomUUID().slice(0, 8)}`,
      labels: { provider: "onprem", region: "lab", zone: "a", network: "net-1", instanceType: "dgx", spot: false, privateIp: "10.0.0.9" },
      cpuCores: 64,
      memoryMib: 515_000,
      agentVersion: "0.1.0",
      driverVersion: "535.54.03",
      cudaVersion: "12.2",
      degradedReason: null,
      gpus: Array.from({ length: gpus }, (_, index) => ({ index, uuid: `GPU-${index}`, name: "NVIDIA A100-SXM4-80GB", memoryTotalMib: 81920, migEnabled: false, migDevices: [] })),
      ...over,
    };
  }

  async function node(gpus = 8, now = new Date()) {
    const reg = registration(gpus);
    const { nodeId } = await upsertNodeRegistration(db, reg, { newId: randomUUID(), now });
    return { nodeId, hostname: reg.hostname };
  }

  /** A task holding `gpus` on `nodeId` at `price`; left assigned (holding its GPUs). */
  async function task(jobId: string, nodeId: string, gpuIndices: number[], microsPerHour: bigint, opts: { attempt?: number; unit?: number } = {}) {
    const id = randomUUID();
    await insertTasks(db, [
      { id, jobId, attempt: opts.attempt ?? 1, nodeId, nodeRank: 0, numNodes: 1, unit: opts.unit ?? -1, gpuIndices, masterAddr: "10.0.0.9", masterPort: 29500, microsPerHour },
    ]);
    return id;
  }

  /** Ends a task (giving its GPUs back) and pins its held span to [start, end] seconds after `base`. */
  async function heldFor(taskId: string, startS: number, endS: number) {
    expect(await endTasks(db, [taskId], "stopped", "test")).toHaveLength(1);
    await db.execute(sql`UPDATE tasks SET created_at = ${atS(startS)}::timestamptz, ended_at = ${atS(endS)}::timestamptz WHERE id = ${taskId}::uuid`);
  }

  async function persisted(jobId: string) {
    const [r] = await query<{ cost: string; gpu_seconds: string; cost_updated_at: Date | string | null }>(
      sql`SELECT running_cost_usd::text AS cost, gpu_seconds::text AS gpu_seconds, cost_updated_at FROM jobs WHERE id = ${jobId}::uuid`,
    );
    return r!;
  }

  const mine = (spends: JobSpend[], jobId: string) => spends.find((s) => s.jobId === jobId);

  describe("refreshJobCosts", () => {
    it("persists the sum of each task's span cost rounded once to the micro-dollar, with GPU-seconds, budget and status", async () => {
      const t = await team();
      const n = await node(8);
      const j = await job(t.id, { project: "llm", budgetUsd: "12.34", estimatedCostUsd: "1.234567" }, "running");
      // Two attempts: prices and spans chosen so that both products have non-trivial fractions.
      const a = await task(j.id, n.nodeId, [0, 1], 2_345_679n, { attempt: 1 });
      await heldFor(a, 10, 10 + 5000.123);
      await db.execute(sql`UPDATE jobs SET attempt = 2 WHERE id = ${j.id}::uuid`);
      const b = await task(j.id, n.nodeId, [2], 777_777n, { attempt: 2 });
      await heldFor(b, 6000, 6000 + 1234.567);

      const spent = costOf(2_345_679n, micros(5000.123)) + costOf(777_777n, micros(1234.567));
      expect(spent).toBe(3_257_968n + 266_727n); // independent check of the helper: 3257967.645… and 266726.80…

      const first = mine(await refreshJobCosts(db), j.id);
      expect(first).toEqual({
        jobId: j.id,
        name: j.name,
        teamId: t.id,
        team: t.name,
        project: "llm",
        status: "running",
        spentMicros: 3_524_695n,
        gpuSeconds: 11234.813, // 2 × 5000.123 + 1 × 1234.567
        budgetMicros: 12_340_000n,
        estimatedMicros: 1_234_567n,
        firstPlacedAt: new Date(atS(10)),
        burnMicrosPerHour: 0n,
      });
      const p1 = await persisted(j.id);
      expect(p1.cost).toBe("3.524695");
      expect(p1.gpu_seconds).toBe("11234.813");
      expect(p1.cost_updated_at).not.toBeNull();

      // Idempotent: nothing changed, so nothing moves.
      const second = mine(await refreshJobCosts(db), j.id);
      expect(second).toEqual(first);
      const p2 = await persisted(j.id);
      expect({ cost: p2.cost, gpu_seconds: p2.gpu_seconds }).toEqual({ cost: "3.524695", gpu_seconds: "11234.813" });
    });

    it("rounds each task separately: two half-micro-dollar spans cost 2 µ$, not round(1.0) = 1", async () => {
      const t = await team();
      const n = await node(2);
      const j = await job(t.id);
      const a = await task(j.id, n.nodeId, [0], 1n, { unit: 0 });
      const b = await task(j.id, n.nodeId, [1], 1n, { unit: 1 });
      await heldFor(a, 0, 1800);
      await heldFor(b, 0, 1800);
      expect(mine(await refreshJobCosts(db), j.id)).toMatchObject({ spentMicros: 2n, gpuSeconds: 3600, burnMicrosPerHour: 0n });
      expect(await persisted(j.id)).toMatchObject({ cost: "0.000002", gpu_seconds: "3600.000" });
    });

    it("charges a task that still holds its GPUs up to the refresh's now, and reports the burn rate of what is held", async () => {
      const t = await team();
      const n = await node(8);
      const j = await job(t.id, {}, "running");
      const done = await task(j.id, n.nodeId, [0], 1_111_111n, { unit: 0 });
      await heldFor(done, 0, 3333.333);
      const live = await task(j.id, n.nodeId, [1, 2, 3, 4], 3_600_001n, { unit: 1 });
      await db.execute(sql`UPDATE tasks SET created_at = now() - interval '1000.5 seconds' WHERE id = ${live}::uuid`);

      const spend = mine(await refreshJobCosts(db), j.id);
      // The refresh stamps cost_updated_at with the same now() it charged up to.
      const [e] = await query<{ s: string }>(
        sql`SELECT extract(epoch FROM j.cost_updated_at - t.created_at)::text AS s FROM jobs j JOIN tasks t ON t.job_id = j.id WHERE t.id = ${live}::uuid`,
      );
      const liveMicros = secondsTextToMicros(e!.s);
      expect(liveMicros).toBeGreaterThanOrEqual(1_000_500_000n);
      const expected = costOf(1_111_111n, micros(3333.333)) + costOf(3_600_001n, liveMicros);
      expect(spend).toMatchObject({ spentMicros: expected, burnMicrosPerHour: 3_600_001n, firstPlacedAt: new Date(atS(0)) });
      const gpuMicros = micros(3333.333) + 4n * liveMicros;
      expect(spend?.gpuSeconds).toBeCloseTo(Number(gpuMicros) / 1e6, 5);
      expect(await persisted(j.id)).toMatchObject({ cost: fixed(expected, 6), gpu_seconds: fixed(gpuMicros, 3) });
    });

    it("refreshes live jobs, jobs that ended within settleSeconds and the named jobIds, and leaves older finished jobs alone", async () => {
      const t = await team();
      const n = await node(4);
      const old = await job(t.id, {}, "completed");
      const recent = await job(t.id, {}, "completed");
      const idle = await job(t.id, { budgetUsd: "5.00" });
      const oldTask = await task(old.id, n.nodeId, [0], 3_000_000n);
      await heldFor(oldTask, 0, 600); // 0.5 $
      const recentTask = await task(recent.id, n.nodeId, [1], 7_000_000n);
      await heldFor(recentTask, 0, 60); // 116666.67 µ$
      await db.execute(sql`UPDATE jobs SET finished_at = now() - interval '1 hour' WHERE id = ${old.id}::uuid`);
      await db.execute(sql`UPDATE jobs SET finished_at = now() - interval '10 seconds' WHERE id = ${recent.id}::uuid`);

      const plain = await refreshJobCosts(db);
      expect(mine(plain, old.id)).toBeUndefined();
      expect((await persisted(old.id)).cost).toBe("0.000000");
      expect(mine(plain, recent.id)).toMatchObject({ status: "completed", spentMicros: 116_667n, gpuSeconds: 60 });
      expect((await persisted(recent.id)).cost).toBe("0.116667");
      // A live job with no task yet is a target too: it spends nothing and holds nothing.
      expect(mine(plain, idle.id)).toEqual({
        jobId: idle.id,
        name: idle.name,
        teamId: t.id,
        team: t.name,
        project: null,
        status: "pending",
        spentMicros: 0n,
        gpuSeconds: 0,
        budgetMicros: 5_000_000n,
        estimatedMicros: null,
        firstPlacedAt: null,
        burnMicrosPerHour: 0n,
      });

      // Named: refreshed however long ago it finished (an unknown id is harmless).
      const named = await refreshJobCosts(db, { jobIds: [old.id, randomUUID()] });
      expect(mine(named, old.id)).toMatchObject({ status: "completed", spentMicros: 500_000n, gpuSeconds: 600 });
      expect(await persisted(old.id)).toMatchObject({ cost: "0.500000", gpu_seconds: "600.000" });

      // A wider settle window reaches it without naming it; a narrower one drops the recent one too.
      await db.execute(sql`UPDATE jobs SET running_cost_usd = 0, gpu_seconds = 0 WHERE id IN (${old.id}::uuid, ${recent.id}::uuid)`);
      const narrow = await refreshJobCosts(db, { settleSeconds: 5 });
      expect(mine(narrow, old.id)).toBeUndefined();
      expect(mine(narrow, recent.id)).toBeUndefined();
      expect(mine(narrow, idle.id)).toBeDefined();
      expect((await persisted(recent.id)).cost).toBe("0.000000");
      const wide = await refreshJobCosts(db, { settleSeconds: 7200 });
      expect(mine(wide, old.id)).toMatchObject({ spentMicros: 500_000n });
      expect(mine(wide, recent.id)).toMatchObject({ spentMicros: 116_667n });
      expect((await persisted(old.id)).cost).toBe("0.500000");
      expect((await persisted(recent.id)).cost).toBe("0.116667");
    });
  });

  describe("costsByGroup and costTotalsByTeamProject", () => {
    interface Span {
      gpus: number;
      price: bigint;
      start: number;
      end: number;
    }
    const since = new Date(atS(1000));
    /** The cost and GPU-seconds of spans clipped to [from, ∞). */
    const sum = (spans: Span[], from = -Infinity) => {
      let cost = 0n;
      let gpuSeconds = 0;
      for (const s of spans) {
        if (s.end <= from) continue;
        const start = Math.max(s.start, from);
        cost += costOf(s.price, micros(s.end) - micros(start));
        gpuSeconds += s.gpus * (s.end - start);
      }
      return { cost, gpuSeconds };
    };

    async function world() {
      const a = await team("alpha");
      const b = await team("beta");
      const n = await node(16);
      const a1 = await job(a.id, { project: "llm", budgetUsd: "50.00", estimatedCostUsd: "3.500000" });
      const a2 = await job(a.id, { project: "llm" }, "running");
      const a3 = await job(a.id, { project: null });
      await setJobEstimate(db, a3.id, "0.123456");
      const b1 = await job(b.id, { project: "llm", estimatedCostUsd: "9.999999" });
      const spans: Record<string, Span[]> = {
        [a1.id]: [
          { gpus: 2, price: 1_234_567n, start: 0, end: 3600.5 }, // starts before `since`: counted from it
          { gpus: 1, price: 987_654n, start: 500, end: 2000.25 },
        ],
        [a2.id]: [{ gpus: 4, price: 10_000_003n, start: 1500, end: 1500 + 777.777 }],
        [a3.id]: [{ gpus: 1, price: 555_555n, start: 100, end: 900 }], // over before `since`
        [b1.id]: [{ gpus: 8, price: 40_000_000n, start: 0, end: 7200 }],
      };
      let next = 0;
      for (const [jobId, list] of Object.entries(spans)) {
        for (const s of list) {
          const gpuIdx = Array.from({ length: s.gpus }, () => next++);
          const id = await task(jobId, n.nodeId, gpuIdx, s.price);
          await heldFor(id, s.start, s.end);
        }
      }
      return { a, b, a1, a2, a3, b1, spans };
    }

    it("groups by team: totals, job counts and estimates per team; teamId scopes to one team", async () => {
      const w = await world();
      const aAll = sum([...w.spans[w.a1.id]!, ...w.spans[w.a2.id]!, ...w.spans[w.a3.id]!]);
      const bAll = sum(w.spans[w.b1.id]!);
      const lines = (await costsByGroup(db, { by: "team" })).filter((l) => l.team === w.a.name || l.team === w.b.name);
      // Biggest spender first.
      expect(lines.map((l) => l.team)).toEqual([w.b.name, w.a.name]);
      const [bl, al] = lines;
      expect(al).toEqual({
        key: w.a.name,
        team: w.a.name,
        project: null,
        jobId: null,
        jobName: null,
        status: null,
        costMicros: aAll.cost,
        estimatedMicros: 3_500_000n + 123_456n,
        budgetMicros: null,
        gpuSeconds: expect.closeTo(aAll.gpuSeconds, 6),
        jobs: 3,
      });
      expect(bl).toMatchObject({ key: w.b.name, costMicros: 80_000_000n, estimatedMicros: 9_999_999n, jobs: 1 });
      expect(bl?.costMicros).toBe(bAll.cost);
      expect(bl?.gpuSeconds).toBeCloseTo(8 * 7200, 6);

      const scoped = await costsByGroup(db, { by: "team", teamId: w.a.id });
      expect(scoped).toEqual([al]);
      expect(await costsByGroup(db, { by: "team", teamId: randomUUID() })).toEqual([]);
    });

    it("groups by team and project (no project is its own line, keyed team/-)", async () => {
      const w = await world();
      const llm = sum([...w.spans[w.a1.id]!, ...w.spans[w.a2.id]!]);
      const none = sum(w.spans[w.a3.id]!);
      const lines = await costsByGroup(db, { by: "project", teamId: w.a.id });
      expect(lines).toEqual([
        {
          key: `${w.a.name}/llm`,
          team: w.a.name,
          project: "llm",
          jobId: null,
          jobName: null,
          status: null,
          costMicros: llm.cost,
          estimatedMicros: 3_500_000n,
          budgetMicros: null,
          gpuSeconds: expect.closeTo(llm.gpuSeconds, 6),
          jobs: 2,
        },
        {
          key: `${w.a.name}/-`,
          team: w.a.name,
          project: null,
          jobId: null,
          jobName: null,
          status: null,
          costMicros: none.cost,
          estimatedMicros: 123_456n,
          budgetMicros: null,
          gpuSeconds: expect.closeTo(none.gpuSeconds, 6),
          jobs: 1,
        },
      ]);
      // Same project name in another team is another line.
      const all = (await costsByGroup(db, { by: "project" })).filter((l) => l.team === w.b.name);
      expect(all).toMatchObject([{ key: `${w.b.name}/llm`, project: "llm", costMicros: sum(w.spans[w.b1.id]!).cost, jobs: 1 }]);
    });

    it("groups by job with name, status, budget and estimate, biggest first", async () => {
      const w = await world();
      const lines = await costsByGroup(db, { by: "job", teamId: w.a.id });
      const line = (j: { id: string; name: string }, status: JobStatus, budgetMicros: bigint | null, estimatedMicros: bigint) => {
        const s = sum(w.spans[j.id]!);
        return {
          key: j.id,
          team: w.a.name,
          project: j === w.a3 ? null : "llm",
          jobId: j.id,
          jobName: j.name,
          status,
          costMicros: s.cost,
          estimatedMicros,
          budgetMicros,
          gpuSeconds: expect.closeTo(s.gpuSeconds, 6),
          jobs: 1,
        };
      };
      const expected = [line(w.a1, "pending", 50_000_000n, 3_500_000n), line(w.a2, "running", null, 0n), line(w.a3, "pending", null, 123_456n)];
      expected.sort((x, y) => (x.costMicros === y.costMicros ? 0 : x.costMicros > y.costMicros ? -1 : 1));
      expect(lines).toEqual(expected);
    });

    it("with since, counts only money spent since then: earlier spans are clipped, spans over before it are left out", async () => {
      const w = await world();
      const from = 1000;
      const a1 = sum(w.spans[w.a1.id]!, from);
      const a2 = sum(w.spans[w.a2.id]!, from);
      // Clipping, checked by hand once: 1234567 µ$/h × 2600.5 s and 987654 µ$/h × 1000.25 s.
      expect(a1.cost).toBe(costOf(1_234_567n, 2_600_500_000n) + costOf(987_654n, 1_000_250_000n));
      expect(a1.cost).toBe(891_803n + 274_417n);

      const byJob = await costsByGroup(db, { by: "job", since, teamId: w.a.id });
      expect(byJob.map((l) => [l.jobId, l.costMicros, l.gpuSeconds])).toEqual(
        [
          [w.a1.id, a1.cost, expect.closeTo(2 * 2600.5 + 1000.25, 6)],
          [w.a2.id, a2.cost, expect.closeTo(4 * 777.777, 6)],
        ].sort((x, y) => ((x[1] as bigint) > (y[1] as bigint) ? -1 : 1)),
      );
      const byTeam = await costsByGroup(db, { by: "team", since, teamId: w.a.id });
      expect(byTeam).toEqual([
        expect.objectContaining({ team: w.a.name, costMicros: a1.cost + a2.cost, jobs: 2, estimatedMicros: 3_500_000n, gpuSeconds: expect.closeTo(2 * 2600.5 + 1000.25 + 4 * 777.777, 6) }),
      ]);
      // A `since` after everything: nothing spent.
      expect(await costsByGroup(db, { by: "team", since: new Date(atS(100_000)), teamId: w.a.id })).toEqual([]);
      const b = await costsByGroup(db, { by: "project", since, teamId: w.b.id });
      expect(b).toMatchObject([{ key: `${w.b.name}/llm`, costMicros: sum(w.spans[w.b1.id]!, from).cost, jobs: 1 }]);
      expect(b[0]?.costMicros).toBe(68_888_889n); // 40 $/h × 6200 s = 68888888.9 µ$
    });

    it("costTotalsByTeamProject sums the persisted running cost and GPU-seconds per team and project", async () => {
      const w = await world();
      await refreshJobCosts(db);
      const totals = (await costTotalsByTeamProject(db)).filter((r) => r.team === w.a.name || r.team === w.b.name);
      const llm = sum([...w.spans[w.a1.id]!, ...w.spans[w.a2.id]!]);
      const byKey = new Map(totals.map((r) => [`${r.team}|${r.project}`, r]));
      expect(totals).toHaveLength(3);
      expect(byKey.get(`${w.a.name}|llm`)).toEqual({ team: w.a.name, project: "llm", costMicros: llm.cost, gpuSeconds: expect.closeTo(llm.gpuSeconds, 6) });
      expect(byKey.get(`${w.a.name}|`)).toEqual({ team: w.a.name, project: "", costMicros: sum(w.spans[w.a3.id]!).cost, gpuSeconds: 800 });
      expect(byKey.get(`${w.b.name}|llm`)).toEqual({ team: w.b.name, project: "llm", costMicros: 80_000_000n, gpuSeconds: 57_600 });
      // Totals read what was persisted: a job not refreshed since contributes its old value.
      await db.execute(sql`UPDATE jobs SET running_cost_usd = 1.000001, gpu_seconds = 0.5 WHERE id = ${w.a3.id}::uuid`);
      const after = (await costTotalsByTeamProject(db)).find((r) => r.team === w.a.name && r.project === "");
      expect(after).toEqual({ team: w.a.name, project: "", costMicros: 1_000_001n, gpuSeconds: 0.5 });
    });
  });

  describe("allocations and GPU readings", () => {
    it("insertAllocations stores each decision with exact prices and its catalog rows", async () => {
      const t = await team();
      const j = await job(t.id);
      const prices = [{ provider: "gcp", instanceType: "a3-highgpu-8g", onDemandMicrosPerHour: "88490000", note: "ünïcode \"quoted\"" }];
      const allocs: NewAllocation[] = [
        {
          id: randomUUID(),
          jobId: j.id,
          attempt: 1,
          provider: "gcp",
          region: "us-central1",
          zone: "us-central1-a",
          instanceType: "a3-highgpu-8g",
          instanceCount: 2,
          gpusPerInstance: 8,
          spot: true,
          microsPerHour: 123_456_789_012n,
          estimatedHours: 12.75,
          estimatedMicros: 1_574_074_059_903n,
          prices,
        },
        {
          id: randomUUID(),
          jobId: j.id,
          attempt: 2,
          provider: "aws",
          region: "us-east-1",
          zone: null,
          instanceType: "g6f.xlarge",
          instanceCount: 1,
          gpusPerInstance: 0.125,
          spot: false,
          microsPerHour: 1n,
          estimatedHours: 0.5,
          estimatedMicros: 0n,
          prices: [],
        },
      ];
      await insertAllocations(db, allocs);
      await insertAllocations(db, []);
      const stored = await query<Record<string, unknown>>(
        sql`SELECT id, job_id, attempt, provider::text AS provider, region, zone, instance_type, instance_count, gpus_per_instance::text AS gpi, spot,
              price_usd_per_hour::text AS price, estimated_hours::text AS hours, estimated_cost_usd::text AS cost, prices
            FROM allocations WHERE job_id = ${j.id}::uuid ORDER BY attempt`,
      );
      expect(stored).toEqual([
        {
          id: allocs[0]!.id,
          job_id: j.id,
          attempt: 1,
          provider: "gcp",
          region: "us-central1",
          zone: "us-central1-a",
          instance_type: "a3-highgpu-8g",
          instance_count: 2,
          gpi: "8",
          spot: true,
          price: "123456.789012",
          hours: "12.75",
          cost: "1574074.059903",
          prices,
        },
        {
          id: allocs[1]!.id,
          job_id: j.id,
          attempt: 2,
          provider: "aws",
          region: "us-east-1",
          zone: null,
          instance_type: "g6f.xlarge",
          instance_count: 1,
          gpi: "0.125",
          spot: false,
          price: "0.000001",
          hours: "0.5",
          cost: "0.000000",
          prices: [],
        },
      ]);
    });

    it("heldGpuReadings returns the latest reading of each GPU a running task holds, priced per GPU", async () => {
      const t = await team();
      const n = await node(4);
      const readAt = new Date(Date.now() - 5000);
      await recordHeartbeats(db, [
        {
          nodeId: n.nodeId,
          at: readAt,
          gpus: [0, 1, 2, 3].map((index) => ({ index, utilizationGpuPercent: [12.5, 50, 0.75, 99][index]!, utilizationMemoryPercent: 10, memoryUsedMib: 1000 + index, temperatureC: 40, powerDrawW: 100 })),
        },
      ]);
      const j = await job(t.id, { project: "vision", spec: { job: { name: "x", type: "training" }, resources: { gpus: 3, gpu_memory_gb: 40 } } }, "running");
      const other = await job(t.id, {}, "running");
      const held = await task(j.id, n.nodeId, [0, 2, 1], 10_000_000n);
      const waiting = await task(other.id, n.nodeId, [3], 5_000_000n); // assigned, not running: not counted
      await applyTaskUpdates(db, n.nodeId, [{ taskId: held, state: "running", exitCode: null, signal: null, step: null, reason: null }]);

      const readings = (await heldGpuReadings(db)).filter((r) => r.nodeId === n.nodeId);
      const one = (gpuIndex: number, util: number) => ({
        jobId: j.id,
        jobName: j.name,
        team: t.name,
        project: "vision",
        nodeId: n.nodeId,
        hostname: n.hostname,
        gpuIndex,
        gpuName: "NVIDIA A100-SXM4-80GB",
        memoryTotalMib: 81920,
        memoryUsedMib: 1000 + gpuIndex,
        utilizationPercent: util,
        readAt,
        microsPerGpuHour: 3_333_333n, // 10 $/h over 3 GPUs, whole micro-dollars
        specGpuMemoryGb: 40,
      });
      expect(readings).toEqual([one(0, 12.5), one(1, 50), one(2, 0.75)]);

      // Ended: no longer held. The other job, once running, shows with no spec memory and its whole price on one GPU.
      await endTasks(db, [held], "stopped", "test");
      await applyTaskUpdates(db, n.nodeId, [{ taskId: waiting, state: "running", exitCode: null, signal: null, step: null, reason: null }]);
      const after = (await heldGpuReadings(db)).filter((r) => r.nodeId === n.nodeId);
      expect(after).toEqual([
        expect.objectContaining({ jobId: other.id, project: null, gpuIndex: 3, utilizationPercent: 99, microsPerGpuHour: 5_000_000n, specGpuMemoryGb: null }),
      ]);
    });

    it("gpuUtilizationSamples lists read GPUs of nodes that are not lost, with the holder's team and project ('' when idle)", async () => {
      const t = await team();
      const n = await node(4);
      const draining = await node(1);
      const gone = await node(2, new Date("2000-01-01T00:00:00.000Z"));
      const sample = (index: number, util: number | null, mem: number | null) => ({ index, utilizationGpuPercent: util, utilizationMemoryPercent: null, memoryUsedMib: mem, temperatureC: null, powerDrawW: null });
      await recordHeartbeats(db, [
        { nodeId: n.nodeId, at: new Date(), gpus: [sample(0, 87.5, 4096), sample(1, 3.25, null), sample(2, 0, 0), sample(3, null, 512)] },
        { nodeId: draining.nodeId, at: new Date(), gpus: [sample(0, 42, 1)] },
        { nodeId: gone.nodeId, at: new Date("2000-01-01T00:00:05.000Z"), gpus: [sample(0, 10, 1), sample(1, 20, 2)] },
      ]);
      // Only `gone` is silent since 2000; everything else in this database heartbeated recently.
      const changes = await markNodeStates(db, { unreachableBefore: new Date("2001-01-01T00:00:00.000Z"), lostBefore: new Date("2001-01-01T00:00:00.000Z") });
      expect(changes).toEqual([{ nodeId: gone.nodeId, hostname: gone.hostname, from: "ready", to: "lost" }]);
      expect(await setNodeDraining(db, draining.nodeId, true)).toBe(true);

      const withProject = await job(t.id, { project: "vision" });
      const noProject = await job(t.id);
      await task(withProject.id, n.nodeId, [0], 1_000_000n);
      await task(noProject.id, n.nodeId, [1], 1_000_000n);
      await task(noProject.id, gone.nodeId, [0], 1_000_000n, { unit: 0 });

      const hosts = new Set([n.hostname, draining.hostname, gone.hostname]);
      const samples = (await gpuUtilizationSamples(db)).filter((s) => hosts.has(s.hostname));
      const gpuName = "NVIDIA A100-SXM4-80GB";
      const nLines = [
        { hostname: n.hostname, gpuIndex: 0, gpuName, utilizationPercent: 87.5, memoryUsedMib: 4096, team: t.name, project: "vision" },
        { hostname: n.hostname, gpuIndex: 1, gpuName, utilizationPercent: 3.25, memoryUsedMib: null, team: t.name, project: "" },
        { hostname: n.hostname, gpuIndex: 2, gpuName, utilizationPercent: 0, memoryUsedMib: 0, team: "", project: "" },
      ];
      const dLines = [{ hostname: draining.hostname, gpuIndex: 0, gpuName, utilizationPercent: 42, memoryUsedMib: 1, team: "", project: "" }];
      expect(samples).toEqual(n.hostname < draining.hostname ? [...nLines, ...dLines] : [...dLines, ...nLines]);
    });
  });
});
