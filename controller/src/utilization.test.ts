import { randomUUID } from "node:crypto";
import { type CatalogOffer, parseUsdMicros } from "@gpuorch/core";
import { type Database, createTeam, insertJob, insertTasks, listAlerts, openDatabase, recordHeartbeats, upsertNodeRegistration } from "@gpuorch/db";
import { createLogger } from "@gpuorch/runtime";
import { newJobInput } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AlertDispatcher, alertChannelsConfigSchema, createAlertDispatcher } from "./alerts/index.js";
import { createDbAlertStore } from "./cost-service.js";
import { UtilizationWatch } from "./utilization.js";
import { offer } from "./cost-fixtures.test-util.js";

const logger = createLogger({ name: "test", level: "silent" });
const ids = { newId: () => randomUUID() };
const MIN = 60_000;

function manualClock(start = new Date("2030-01-01T00:00:00.000Z")) {
  let t = start.getTime();
  return { now: () => new Date(t), set: (ms: number) => void (t = start.getTime() + ms) };
}


const CATALOG: CatalogOffer[] = [
  offer({ od: "0.526" }),
  offer({ instanceType: "g5.xlarge", gpuType: "A10G", gpuMemoryGb: 24, od: "1.006" }),
  offer({ instanceType: "g5.12xlarge", gpuType: "A10G", gpuCount: 4, gpuMemoryGb: 24, od: "5.672" }),
  offer({ provider: "gcp", region: "us-central1", instanceType: "g2-standard-4", gpuType: "L4", gpuMemoryGb: 24, od: "0.70683" }),
  offer({ provider: "gcp", region: "us-central1", instanceType: "g2-standard-24", gpuType: "L4", gpuCount: 2, gpuMemoryGb: 24, od: "2" }),
  offer({ provider: "gcp", region: "us-central1", instanceType: "a2-highgpu-2g", gpuType: "A100", gpuCount: 2, gpuMemoryGb: 40, od: "7.346" }),
  offer({ instanceType: "p5.48xlarge", gpuType: "H100", gpuCount: 8, gpuMemoryGb: 80, od: "98.32" }),
  // Cheaper, but not for a CUDA job (Inferentia) or not a whole GPU (an eighth of an L4).
  offer({ instanceType: "inf2.xlarge", gpuType: "Inferentia2", gpuMemoryGb: 32, od: "0.1" }),
  offer({ instanceType: "g6f.large", gpuType: "L4", gpuCount: 0.125, gpuMemoryGb: 24, od: "0.2" }),
];

/** Utilization per GPU at each heartbeat (minutes into the test), and memory used. */
type Reading = { util: number; mem: number };

describe("UtilizationWatch (PGlite)", () => {
  let database: Database;
  let db: Database["db"];
  let dispatcher: AlertDispatcher;
  const clock = manualClock();
  let h100: string;
  let t4: string;
  let teamId: string;
  const job: Record<"A" | "B" | "C" | "D" | "E", string> = { A: "", B: "", C: "", D: "", E: "" };

  async function node(hostname: string, gpus: number, name: string, memoryTotalMib: number): Promise<string> {
    return (
      await upsertNodeRegistration(
        db,
        {
          nodeId: null,
          hostname,
          labels: { provider: "onprem", region: "lab", zone: "", network: "", instanceType: "", spot: false, privateIp: "" },
          cpuCores: 32,
          memoryMib: 262_144,
          agentVersion: "test",
          driverVersion: "550",
          cudaVersion: "12.4",
          degradedReason: null,
          gpus: Array.from({ length: gpus }, (_, index) => ({ index, uuid: `GPU-${hostname}-${index}`, name, memoryTotalMib, migEnabled: false, migDevices: [] })),
        },
        { newId: randomUUID(), now: clock.now() },
      )
    ).nodeId;
  }

  async function running(name: string, nodeId: string, gpuIndices: number[], usdPerHour: string, resources: Record<string, unknown> = {}): Promise<string> {
    const spec = { job: { name, type: "training" }, resources: { gpus: gpuIndices.length, ...resources } };
    const jobId = (await insertJob(db, newJobInput(teamId, { name, project: "vision", gpus: gpuIndices.length, spec }))).job.id;
    const taskId = randomUUID();
    await insertTasks(db, [{ id: taskId, jobId, attempt: 1, nodeId, nodeRank: 0, numNodes: 1, unit: -1, gpuIndices, masterAddr: "", masterPort: 0, microsPerHour: parseUsdMicros(usdPerHour) }]);
    await db.execute(`UPDATE tasks SET state = 'running' WHERE id = '${taskId}'`);
    return jobId;
  }

  /** One heartbeat round at `minute`, written as the heartbeat ingest writes them (updated_at = received at). */
  async function heartbeat(minute: number, h100Gpus: Reading[], t4Gpus: Reading[]): Promise<void> {
    clock.set(minute * MIN);
    const gpus = (rs: Reading[]) => rs.map((r, index) => ({ index, utilizationGpuPercent: r.util, utilizationMemoryPercent: 0, memoryUsedMib: r.mem, temperatureC: 40, powerDrawW: 100 }));
    await recordHeartbeats(db, [
      { nodeId: h100, at: clock.now(), gpus: gpus(h100Gpus) },
      { nodeId: t4, at: clock.now(), gpus: gpus(t4Gpus) },
    ]);
  }

  // Per heartbeat: A = H100 gpu 0 (low), B = H100 gpu 1 (mean above 30 though some readings are low),
  // D = H100 gpus 2-3 (both low), C = T4 gpu 0 (low), E = T4 gpus 1-2 (one low, one busy).
  const round = (a: number, aMem: number, b: number) => ({
    h100: [
      { util: a, mem: aMem },
      { util: b, mem: 30_000 },
      { util: 20, mem: 4_000 },
      { util: 25, mem: 4_000 },
    ],
    t4: [
      { util: 5, mem: 2_000 },
      { util: 5, mem: 1_000 },
      { util: 90, mem: 1_000 },
    ],
  });
  const ROUNDS: [number, ReturnType<typeof round>][] = [
    [0, round(10, 8_000, 10)],
    [4, round(12, 10_000, 20)],
    [8, round(14, 9_000, 70)],
    [9, round(16, 9_000, 40)],
    [12, round(18, 9_000, 40)],
  ];

  const watch = () =>
    new UtilizationWatch({ db, clock, ids, logger, thresholdPercent: 30, windowMs: 10 * MIN, dispatcher, offers: () => CATALOG });
  const underutilized = async () => (await listAlerts(db, { limit: 100 })).filter((a) => a.kind === "gpu_underutilized");
  const flaggedJobs = (w: UtilizationWatch) =>
    w
      .flagged()
      .map((f) => Object.entries(job).find(([, id]) => id === f.reading.jobId)?.[0])
      .sort();

  beforeAll(async () => {
    database = await openDatabase({ memory: true });
    db = database.db;
    teamId = (await createTeam(db, { id: randomUUID(), name: "vision-team" })).id;
    h100 = await node("h100-a", 4, "NVIDIA H100 80GB HBM3", 81_559);
    t4 = await node("t4-a", 3, "Tesla T4", 15_360);
    job.A = await running("job-a", h100, [0], "12");
    job.B = await running("job-b", h100, [1], "12");
    job.D = await running("job-d", h100, [2, 3], "24", { gpu_memory_gb: 20 });
    job.C = await running("job-c", t4, [0], "0.3");
    job.E = await running("job-e", t4, [1, 2], "0.6");
    dispatcher = createAlertDispatcher({ channels: alertChannelsConfigSchema.parse([{ type: "log" }]), store: createDbAlertStore(db), logger, now: () => clock.now(), ids, resumeIntervalMs: 0 });
    dispatcher.start();
  });
  afterAll(async () => {
    await dispatcher.stop();
    await database.close();
  });

  it("flags GPUs whose mean stays under the threshold for a whole window, once per job and node, and advises cheaper GPUs", async () => {
    const w = watch();
    // 0, 4 and 8 minutes: the readings do not yet cover 90 % of the 10-minute window.
    for (const [minute, r] of ROUNDS.slice(0, 3)) {
      await heartbeat(minute, r.h100, r.t4);
      await w.sample();
      expect(w.flagged(), `minute ${minute}`).toEqual([]);
    }
    await dispatcher.drain();
    expect(await underutilized()).toEqual([]);
    expect(w.recommendations(null)).toEqual({ thresholdPercent: 30, windowSeconds: 600, items: [] });

    // 9 minutes: covered. A, C and D are low on every GPU; B's mean is 35 %; E has one busy GPU.
    const [m9, r9] = ROUNDS[3]!;
    await heartbeat(m9, r9.h100, r9.t4);
    await w.sample();
    expect(flaggedJobs(w)).toEqual(["A", "C", "D"]);
    const a = w.flagged().find((f) => f.reading.jobId === job.A)!;
    expect(a).toMatchObject({ gpus: 1, mean: 13, maxMemMib: 10_000, reading: { nodeId: h100, hostname: "h100-a", gpuName: "NVIDIA H100 80GB HBM3", microsPerGpuHour: 12_000_000n } });
    expect(w.flagged().find((f) => f.reading.jobId === job.D)).toMatchObject({ gpus: 2, mean: 22.5 });
    await dispatcher.drain();
    let alerts = await underutilized();
    expect(alerts.map((x) => x.dedupeKey).sort()).toEqual([`gpu_underutilized:${job.A}:${h100}`, `gpu_underutilized:${job.C}:${t4}`, `gpu_underutilized:${job.D}:${h100}`].sort());
    const alertA = alerts.find((x) => x.jobId === job.A)!;
    expect(alertA).toMatchObject({ severity: "info", team: "vision-team", project: "vision", nodeId: h100, createdAt: new Date(9 * MIN + Date.parse("2030-01-01T00:00:00.000Z")).toISOString() });
    expect(alertA.message).toBe("Job job-a uses its 1 GPU(s) on h100-a at 13 % on average (< 30 % over 10 min); see gpuorch recommendations");
    expect(alertA.details).toEqual({ mean_utilization_percent: 13, gpus: 1, hostname: "h100-a" });
    expect(alertA.deliveries).toEqual([{ channel: "log", status: "delivered", attempts: 1, lastError: null }]);

    // 12 minutes: still flagged, not alerted again.
    const [m12, r12] = ROUNDS[4]!;
    await heartbeat(m12, r12.h100, r12.t4);
    await w.sample();
    await w.sample(); // the same readings again add nothing
    expect(flaggedJobs(w)).toEqual(["A", "C", "D"]);
    await dispatcher.drain();
    alerts = await underutilized();
    expect(alerts).toHaveLength(3);

    const rec = w.recommendations(null);
    // Scoped to a team: the same advice for the owning team, none for another.
    expect(w.recommendations("vision-team")).toEqual(rec);
    expect(w.recommendations("other-team").items).toEqual([]);
    expect(rec.thresholdPercent).toBe(30);
    expect(rec.windowSeconds).toBe(600);
    const byJob = new Map(rec.items.map((i) => [i.jobId, i]));
    expect(byJob.size).toBe(3);
    // A: no gpu_memory in its spec: it needs what it used at most (10 000 MiB) + 20 % = 12.58 GB; a T4 holds it.
    const recA = byJob.get(job.A)!;
    expect(recA.neededGpuMemoryGb).toBeCloseTo(12.582912, 6);
    expect(recA).toMatchObject({
      jobName: "job-a",
      nodeId: h100,
      hostname: "h100-a",
      gpus: 1,
      meanUtilizationPercent: 15, // 12, 14, 16, 18 within the last 10 minutes
      currentGpuType: "H100",
      currentUsdPerHour: "12.000000",
      suggestedGpuType: "T4",
      suggestedProvider: "aws",
      suggestedRegion: "us-east-1",
      suggestedInstanceType: "g4dn.xlarge",
      suggestedUsdPerHour: "0.526000",
      savingUsdPerHour: "11.474000",
      reason: "mean 15 % < 30 % over 10 min",
    });
    // D: its spec asks for 20 GB per GPU (more than it used): a T4 is too small; two GPUs on one instance.
    expect(byJob.get(job.D)).toMatchObject({
      gpus: 2,
      meanUtilizationPercent: 22.5,
      neededGpuMemoryGb: 20,
      currentGpuType: "H100",
      currentUsdPerHour: "24.000000",
      suggestedGpuType: "L4",
      suggestedProvider: "gcp",
      suggestedInstanceType: "g2-standard-24",
      suggestedUsdPerHour: "2.000000",
      savingUsdPerHour: "22.000000",
    });
    // C: already on the cheapest CUDA GPU (the Inferentia and the L4 slice do not count): says so.
    expect(byJob.get(job.C)).toMatchObject({
      gpus: 1,
      currentGpuType: "T4",
      currentUsdPerHour: "0.300000",
      suggestedGpuType: "",
      suggestedProvider: "",
      suggestedRegion: "",
      suggestedInstanceType: "",
      suggestedUsdPerHour: "",
      savingUsdPerHour: "",
      reason: "no cheaper catalog GPU holds the job's memory",
    });

    // A restarted controller keeps no window: nothing is flagged until a new window is covered,
    // and the stored dedupe key keeps the alert from going out twice afterwards.
    const after = watch();
    await after.sample();
    expect(after.flagged()).toEqual([]);
    for (const minute of [13, 18, 22]) {
      const r = round(10, 9_000, 50);
      await heartbeat(minute, r.h100, r.t4);
      await after.sample();
    }
    expect(flaggedJobs(after)).toEqual(["A", "C", "D"]);
    await dispatcher.drain();
    expect(await underutilized()).toHaveLength(3);
  });

  it("forgets GPUs whose task stopped running", async () => {
    const w = watch();
    for (const minute of [30, 36, 40]) {
      const r = round(10, 9_000, 50);
      await heartbeat(minute, r.h100, r.t4);
      await w.sample();
    }
    expect(flaggedJobs(w)).toEqual(["A", "C", "D"]);
    await db.execute(`UPDATE tasks SET state = 'succeeded', ended_at = now() WHERE job_id = '${job.A}'`);
    await w.sample();
    expect(flaggedJobs(w)).toEqual(["C", "D"]);
    expect(w.recommendations(null).items.map((i) => i.jobId)).not.toContain(job.A);
  });
});
