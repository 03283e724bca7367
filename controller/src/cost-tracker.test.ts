import { randomUUID } from "node:crypto";
import { type JobSpend, type Database, createTeam, insertJob, insertTasks, listAlerts, openDatabase, upsertNodeRegistration } from "@gpuorch/db";
import { type MemoryLogger, createLogger, createMemoryLogger } from "@gpuorch/runtime";
import { newJobInput, waitFor } from "@gpuorch/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type AlertDispatcher, alertChannelsConfigSchema, createAlertDispatcher } from "./alerts/index.js";
import { createDbAlertStore } from "./cost-service.js";
import { CostTracker, type CostTrackerDeps } from "./cost-tracker.js";

const logger = createLogger({ name: "test", level: "silent" });
const ids = { newId: () => randomUUID() };

function manualClock(start = new Date("2030-01-01T00:00:00.000Z")) {
  let t = start.getTime();
  return { now: () => new Date(t), advance: (ms: number) => void (t += ms) };
}

const PRICE = 1_000_000n; // $1.00 per hour: a cent takes 36 s, so spends truncated to cents are stable across the test's own delays
/** Micro-USD a $1/h task spends in `s` seconds. */
const at = (s: number) => (PRICE * BigInt(s)) / 3600n;
/** Slack for the time between moving a task's start and the refresh reading now(): 10 s at $1/h. */
const SLACK = at(10);

describe("CostTracker (PGlite)", () => {
  let database: Database;
  let db: Database["db"];
  let teamId: string;
  let teamName: string;
  let nodeId: string;
  let nextGpu = 0;
  const clock = manualClock();
  let memLog: MemoryLogger;
  let dispatcher: AlertDispatcher;
  const trackers: CostTracker[] = [];

  async function rows<T>(text: string): Promise<T[]> {
    return ((await db.execute(text)) as unknown as { rows: T[] }).rows;
  }

  /** A running job with a budget, holding one GPU at $1/h since `secondsAgo` (the database's now()). */
  async function runningJob(budgetUsd: string | null, secondsAgo: number): Promise<{ jobId: string; taskId: string }> {
    const jobId = (await insertJob(db, newJobInput(teamId, { gpus: 1, budgetUsd, project: "llm" }))).job.id;
    const taskId = randomUUID();
    await insertTasks(db, [{ id: taskId, jobId, attempt: 1, nodeId, nodeRank: 0, numNodes: 1, unit: -1, gpuIndices: [nextGpu++], masterAddr: "", masterPort: 0, microsPerHour: PRICE }]);
    await db.execute(`UPDATE tasks SET state = 'running', started_at = now() WHERE id = '${taskId}'`);
    await db.execute(`UPDATE jobs SET status = 'running', started_at = now() WHERE id = '${jobId}'`);
    await startedAgo(taskId, secondsAgo);
    return { jobId, taskId };
  }

  /** Moves a task's placement into the past: spend derives from created_at → now(). */
  async function startedAgo(taskId: string, seconds: number): Promise<void> {
    await db.execute(`UPDATE tasks SET created_at = now() - interval '${seconds} seconds' WHERE id = '${taskId}'`);
  }

  /** What the supervisor's failJob does to a job over budget: failed, its tasks ended. */
  async function failJob(jobId: string): Promise<void> {
    await db.execute(`UPDATE tasks SET state = 'stopped', ended_at = now() WHERE job_id = '${jobId}' AND ended_at IS NULL`);
    await db.execute(`UPDATE jobs SET status = 'failed', finished_at = now() WHERE id = '${jobId}'`);
  }

  async function persisted(jobId: string): Promise<{ cost: string; gpuSeconds: number; updated: Date | null }> {
    const [r] = await rows<{ running_cost_usd: string; gpu_seconds: string; cost_updated_at: string | Date | null }>(
      `SELECT running_cost_usd::text, gpu_seconds::text, cost_updated_at FROM jobs WHERE id = '${jobId}'`,
    );
    return { cost: r!.running_cost_usd, gpuSeconds: Number(r!.gpu_seconds), updated: r!.cost_updated_at === null ? null : new Date(r!.cost_updated_at) };
  }

  /** The job's alerts by threshold (alerts raised in one refresh share a timestamp: listAlerts' order among them is by id). */
  const alertsOf = async (jobId: string) =>
    (await listAlerts(db, { limit: 100, jobId })).sort((a, b) => Number(a.details.threshold_pct) - Number(b.details.threshold_pct));

  const stops: { jobId: string; reason: string }[] = [];
  function tracker(over: Partial<CostTrackerDeps> = {}): CostTracker {
    const t = new CostTracker({
      db,
      clock,
      ids,
      logger,
      intervalMs: 60_000,
      thresholdsPct: [50, 80],
      dispatcher,
      stopForBudget: async (jobId, reason) => {
        stops.push({ jobId, reason });
        await failJob(jobId);
      },
      ...over,
    });
    trackers.push(t);
    return t;
  }

  beforeAll(async () => {
    database = await openDatabase({ memory: true });
    db = database.db;
    const team = await createTeam(db, { id: randomUUID(), name: "ml-costs" });
    teamId = team.id;
    teamName = team.name;
    nodeId = (
      await upsertNodeRegistration(
        db,
        {
          nodeId: null,
          hostname: "cost-1",
          labels: { provider: "onprem", region: "lab", zone: "", network: "", instanceType: "", spot: false, privateIp: "" },
          cpuCores: 8,
          memoryMib: 32_768,
          agentVersion: "test",
          driverVersion: "",
          cudaVersion: "",
          degradedReason: null,
          gpus: Array.from({ length: 16 }, (_, index) => ({ index, uuid: `GPU-ct-${index}`, name: "Tesla T4", memoryTotalMib: 15_360, migEnabled: false, migDevices: [] })),
        },
        { newId: randomUUID(), now: clock.now() },
      )
    ).nodeId;
    memLog = createMemoryLogger();
    dispatcher = createAlertDispatcher({
      channels: alertChannelsConfigSchema.parse([{ type: "log" }]),
      store: createDbAlertStore(db),
      logger: memLog,
      now: () => clock.now(),
      ids,
      resumeIntervalMs: 0,
    });
    dispatcher.start();
  });
  afterEach(async () => {
    for (const t of trackers.splice(0)) await t.stop();
    stops.splice(0);
  });
  afterAll(async () => {
    await dispatcher.stop();
    await database.close();
  });

  it("raises one alert per threshold crossed, once, also after a restart; stops the job once at 100 %", async () => {
    const { jobId, taskId } = await runningJob("1", 1836); // $0.51 of $1.00
    const seen: JobSpend[][] = [];
    const t1 = tracker({ onRefreshed: (s) => void seen.push([...s]) });

    const spends = await t1.refresh();
    await dispatcher.drain();
    const mine = spends.find((s) => s.jobId === jobId)!;
    expect(mine).toMatchObject({ name: expect.any(String), teamId, team: teamName, project: "llm", status: "running", budgetMicros: 1_000_000n, estimatedMicros: null, burnMicrosPerHour: PRICE });
    expect(mine.spentMicros).toBeGreaterThanOrEqual(at(1836));
    expect(mine.spentMicros).toBeLessThan(at(1836) + SLACK);
    expect(mine.gpuSeconds).toBeGreaterThanOrEqual(1836);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.find((s) => s.jobId === jobId)?.spentMicros).toBe(mine.spentMicros);
    // Persisted for cheap reads: running_cost_usd is the spend in USD, exactly.
    const p = await persisted(jobId);
    expect(BigInt(p.cost.replace(".", ""))).toBe(mine.spentMicros);
    expect(p.gpuSeconds).toBeCloseTo(mine.gpuSeconds, 2);
    expect(p.updated).not.toBeNull();

    let alerts = await alertsOf(jobId);
    expect(alerts.map((a) => [a.kind, a.severity, a.dedupeKey])).toEqual([["budget_threshold", "warning", `budget:${jobId}:50`]]);
    expect(alerts[0]).toMatchObject({ team: teamName, project: "llm", jobId, createdAt: clock.now().toISOString() });
    expect(alerts[0]!.message).toMatch(/^Job .+ reached 50 % of its \$1\.00 budget \(\$0\.51 spent\)$/);
    expect(alerts[0]!.details).toMatchObject({ threshold_pct: 50, budget_usd: "1.000000", catch_up: false });
    // Delivered to the log channel.
    expect(alerts[0]!.deliveries).toEqual([{ channel: "log", status: "delivered", attempts: 1, lastError: null }]);
    expect(memLog.records.filter((r) => r.msg?.startsWith("alert: ") && r.msg.includes("50 %"))).toHaveLength(1);

    // Same spend again: nothing new.
    await t1.refresh();
    await dispatcher.drain();
    expect(await alertsOf(jobId)).toHaveLength(1);

    // 80 % ($0.81): one more alert.
    clock.advance(60_000);
    await startedAgo(taskId, 2916);
    await t1.refresh();
    await dispatcher.drain();
    alerts = await alertsOf(jobId);
    expect(alerts.map((a) => a.dedupeKey)).toEqual([`budget:${jobId}:50`, `budget:${jobId}:80`]);
    expect(alerts[1]!.message).toMatch(/reached 80 % of its \$1\.00 budget \(\$0\.81 spent\)$/);
    expect(stops).toEqual([]);

    // A restarted controller (a new tracker with an empty memory) alerts neither threshold again.
    const t2 = tracker();
    await t2.refresh();
    await dispatcher.drain();
    expect(await alertsOf(jobId)).toHaveLength(2);
    expect(stops).toEqual([]);

    // 100 % ($1.05): budget_exceeded, and the job is stopped exactly once.
    await startedAgo(taskId, 3780);
    await t2.refresh();
    await dispatcher.drain();
    alerts = await alertsOf(jobId);
    expect(alerts.map((a) => [a.kind, a.severity, a.dedupeKey])).toEqual([
      ["budget_threshold", "warning", `budget:${jobId}:50`],
      ["budget_threshold", "warning", `budget:${jobId}:80`],
      ["budget_exceeded", "critical", `budget:${jobId}:100`],
    ]);
    expect(alerts[2]!.details).toMatchObject({ threshold_pct: 100, action: "checkpoint_and_stop", reason: "budget_exceeded" });
    expect(stops).toEqual([{ jobId, reason: "budget_exceeded: spent $1.05 of budget $1.00" }]);

    // The failed job is still refreshed while it settles, but neither alerted nor stopped again, by either tracker.
    await t2.refresh();
    await t1.refresh();
    await dispatcher.drain();
    expect(await alertsOf(jobId)).toHaveLength(3);
    expect(stops).toHaveLength(1);
    const final = (await t1.refresh()).find((s) => s.jobId === jobId);
    expect(final?.status).toBe("failed");
    expect(final?.burnMicrosPerHour).toBe(0n);
  });

  it("alerts every threshold a jump crosses, each once, and stops once even while refreshes overlap", async () => {
    const { jobId } = await runningJob("1", 3780); // straight past 50, 80 and 100 %
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const calls: string[] = [];
    const t = tracker({
      stopForBudget: async (id, reason) => {
        if (id !== jobId) return;
        calls.push(reason);
        if (calls.length > 1) return; // a second stop would be the bug under test: fail on the count, not a hang
        await gate; // the stop is still in flight...
        await failJob(id);
      },
    });
    const first = t.refresh();
    await waitFor(() => calls.length === 1, { message: "the stop to start" });
    await t.refresh(); // ...while another refresh sees the job over budget
    expect(calls).toHaveLength(1);
    release();
    await first;
    await t.refresh();
    await dispatcher.drain();
    expect(calls).toEqual(["budget_exceeded: spent $1.05 of budget $1.00"]);
    const alerts = await alertsOf(jobId);
    expect(alerts.map((a) => [a.dedupeKey, a.details.catch_up])).toEqual([
      [`budget:${jobId}:50`, false],
      [`budget:${jobId}:80`, false],
      [`budget:${jobId}:100`, false],
    ]);
  });

  it("leaves jobs without a budget alone", async () => {
    const { jobId } = await runningJob(null, 7200);
    const t = tracker();
    const mine = (await t.refresh()).find((s) => s.jobId === jobId);
    expect(mine?.budgetMicros).toBeNull();
    expect(mine?.spentMicros).toBeGreaterThanOrEqual(at(7200));
    await dispatcher.drain();
    expect(await alertsOf(jobId)).toEqual([]);
    expect(stops).toEqual([]);
  });

  it("touch(jobId) makes the running loop persist that job's cost at once, not at the next interval", async () => {
    const t = tracker({ intervalMs: 600_000 });
    t.start();
    // A job that ended long ago is outside the periodic refresh; a touch names it.
    const { jobId, taskId } = await runningJob(null, 1800);
    await db.execute(`UPDATE tasks SET state = 'succeeded', ended_at = created_at + interval '900 seconds' WHERE id = '${taskId}'`);
    await db.execute(`UPDATE jobs SET status = 'completed', finished_at = now() - interval '1 hour' WHERE id = '${jobId}'`);
    await new Promise((r) => setTimeout(r, 200));
    expect((await persisted(jobId)).updated).toBeNull(); // the loop is asleep for 10 minutes
    const started = Date.now();
    t.touch(jobId);
    await waitFor(async () => (await persisted(jobId)).updated !== null, { timeoutMs: 5_000, message: "the touched job's cost" });
    expect(Date.now() - started).toBeLessThan(5_000);
    // Exact: 900 s at $1/h, one GPU.
    expect(await persisted(jobId)).toMatchObject({ cost: "0.250000", gpuSeconds: 900 });
  });

  it("stop() ends the loop promptly and writes a last refresh", async () => {
    const { jobId, taskId } = await runningJob(null, 60);
    const t = tracker({ intervalMs: 600_000 });
    t.start();
    await db.execute(`UPDATE tasks SET state = 'succeeded', created_at = now() - interval '720 seconds', ended_at = now() WHERE id = '${taskId}'`);
    expect((await persisted(jobId)).updated).toBeNull();
    const started = Date.now();
    await t.stop();
    expect(Date.now() - started).toBeLessThan(5_000);
    const p = await persisted(jobId);
    expect(p.updated).not.toBeNull();
    expect(p.cost).toBe("0.200000"); // 720 s × $1/h
    expect(p.gpuSeconds).toBe(720);
    // Stopping twice is harmless.
    await t.stop();
  });
});
