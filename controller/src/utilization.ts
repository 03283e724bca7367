import { type CatalogOffer, type Clock, type IdSource, formatUsdMicros } from "@gpuorch/core";
import { type Database, type HeldGpuReading, heldGpuReadings } from "@gpuorch/db";
import type { Recommendation } from "@gpuorch/proto";
import type { Logger } from "@gpuorch/runtime";
import { catalogGpuModel } from "@gpuorch/spec";
import { type AlertDispatcher, createAlert } from "./alerts/index.js";

/** NVIDIA types a CUDA job can move to (the catalog also lists Inferentia, Trainium, AMD…). */
const NON_CUDA = new Set(["V520", "MI25", "MI300X", "Inferentia", "Inferentia2", "Trainium", "QualcommAI100"]);

export interface UtilizationWatchDeps {
  db: Database["db"];
  clock: Clock;
  ids: IdSource;
  logger: Logger;
  /** A GPU under this mean utilization over the window is flagged (default 30). */
  thresholdPercent: number;
  windowMs: number;
  dispatcher: AlertDispatcher | null;
  offers: () => readonly CatalogOffer[];
}

interface Series {
  reading: HeldGpuReading;
  samples: { at: number; util: number; memMib: number | null }[];
}

/**
 * Keeps a window of utilization readings per GPU held by a running job
 * (sampled on the cost tracker's interval from the heartbeat aggregates) and
 * flags GPUs whose mean stays under the threshold for a whole window: one
 * `gpu_underutilized` alert per job and node, and right-sizing advice on
 * demand. The window lives in memory: after a controller restart a GPU needs
 * one full window again before it is flagged.
 */
export class UtilizationWatch {
  private series = new Map<string, Series>();
  /** Job+node pairs already alerted by this process (the database dedupes across restarts). */
  private readonly alerted = new Set<string>();

  constructor(private readonly deps: UtilizationWatchDeps) {}

  async sample(): Promise<void> {
    const now = this.deps.clock.now().getTime();
    const readings = await heldGpuReadings(this.deps.db);
    const next = new Map<string, Series>();
    for (const r of readings) {
      const key = `${r.jobId}|${r.nodeId}|${r.gpuIndex}`;
      const s = this.series.get(key) ?? { reading: r, samples: [] };
      s.reading = r;
      if (r.utilizationPercent !== null && r.readAt !== null && (s.samples.length === 0 || s.samples[s.samples.length - 1]!.at !== r.readAt.getTime())) {
        s.samples.push({ at: r.readAt.getTime(), util: r.utilizationPercent, memMib: r.memoryUsedMib });
      }
      while (s.samples.length > 0 && s.samples[0]!.at < now - this.deps.windowMs * 2) s.samples.shift();
      next.set(key, s);
    }
    this.series = next;
    for (const group of this.flagged()) await this.alert(group);
  }

  /** GPUs under the threshold over a full window, grouped per job and node. */
  flagged(): { reading: HeldGpuReading; gpus: number; mean: number; maxMemMib: number }[] {
    const now = this.deps.clock.now().getTime();
    const groups = new Map<string, { reading: HeldGpuReading; utils: number[]; gpus: number; maxMemMib: number; allLow: boolean }>();
    for (const s of this.series.values()) {
      const inWindow = s.samples.filter((x) => x.at >= now - this.deps.windowMs);
      // Covered: readings span (nearly) the whole window, so a job that just started is not judged.
      const covered = s.samples.length > 0 && s.samples[0]!.at <= now - this.deps.windowMs * 0.9 && inWindow.length > 0;
      const key = `${s.reading.jobId}|${s.reading.nodeId}`;
      const g = groups.get(key) ?? { reading: s.reading, utils: [], gpus: 0, maxMemMib: 0, allLow: true };
      g.gpus++;
      if (!covered) g.allLow = false;
      const mean = inWindow.reduce((a, x) => a + x.util, 0) / Math.max(1, inWindow.length);
      if (mean >= this.deps.thresholdPercent) g.allLow = false;
      g.utils.push(mean);
      for (const x of inWindow) g.maxMemMib = Math.max(g.maxMemMib, x.memMib ?? 0);
      groups.set(key, g);
    }
    return [...groups.values()]
      .filter((g) => g.allLow)
      .map((g) => ({ reading: g.reading, gpus: g.gpus, mean: g.utils.reduce((a, b) => a + b, 0) / g.utils.length, maxMemMib: g.maxMemMib }));
  }

  /** Advice for one team's jobs (`team` null: every team, for admins). */
  recommendations(team: string | null): { thresholdPercent: number; windowSeconds: number; items: Recommendation[] } {
    const offers = this.deps.offers();
    const items = this.flagged().filter((f) => team === null || f.reading.team === team).map((f): Recommendation => {
      const r = f.reading;
      const current = catalogGpuModel(r.gpuName, r.memoryTotalMib);
      // What the job needs per GPU: its spec's gpu_memory, else the most it used plus 20 % headroom.
      const usedGb = (f.maxMemMib * 1024 * 1024 * 1.2) / 1e9;
      const need = Math.max(r.specGpuMemoryGb ?? 0, usedGb);
      const currentPerHour = r.microsPerGpuHour * BigInt(f.gpus);
      let best: { o: CatalogOffer; perHour: bigint } | null = null;
      for (const o of offers) {
        if (NON_CUDA.has(o.gpuType) || o.gpuCount < 1 || o.gpuType === current || o.gpuMemoryGb < need || o.gpuCount < f.gpus) continue;
        const perHour = o.onDemandMicrosPerHour; // the whole instance: it must hold the job's GPUs on one node
        if (perHour >= currentPerHour) continue;
        if (!best || perHour < best.perHour || (perHour === best.perHour && o.instanceType < best.o.instanceType)) best = { o, perHour };
      }
      const base = {
        jobId: r.jobId,
        jobName: r.jobName,
        nodeId: r.nodeId,
        hostname: r.hostname,
        gpus: f.gpus,
        meanUtilizationPercent: f.mean,
        currentGpuType: current,
        currentUsdPerHour: formatUsdMicros(currentPerHour),
        neededGpuMemoryGb: need,
      };
      if (!best) {
        return {
          ...base,
          suggestedGpuType: "",
          suggestedProvider: "",
          suggestedRegion: "",
          suggestedInstanceType: "",
          suggestedUsdPerHour: "",
          savingUsdPerHour: "",
          reason: "no cheaper catalog GPU holds the job's memory",
        };
      }
      return {
        ...base,
        suggestedGpuType: best.o.gpuType,
        suggestedProvider: best.o.provider,
        suggestedRegion: best.o.region,
        suggestedInstanceType: best.o.instanceType,
        suggestedUsdPerHour: formatUsdMicros(best.perHour),
        savingUsdPerHour: formatUsdMicros(currentPerHour - best.perHour),
        reason: `mean ${f.mean.toFixed(0)} % < ${this.deps.thresholdPercent} % over ${Math.round(this.deps.windowMs / 60_000)} min`,
      };
    });
    return { thresholdPercent: this.deps.thresholdPercent, windowSeconds: Math.round(this.deps.windowMs / 1000), items };
  }

  private async alert(f: { reading: HeldGpuReading; gpus: number; mean: number }): Promise<void> {
    const r = f.reading;
    const key = `${r.jobId}:${r.nodeId}`;
    if (this.alerted.has(key)) return;
    this.alerted.add(key);
    const alert = createAlert(
      {
        kind: "gpu_underutilized",
        team: r.team,
        ...(r.project ? { project: r.project } : {}),
        jobId: r.jobId,
        nodeId: r.nodeId,
        message: `Job ${r.jobName} uses its ${f.gpus} GPU(s) on ${r.hostname} at ${f.mean.toFixed(0)} % on average (< ${this.deps.thresholdPercent} % over ${Math.round(this.deps.windowMs / 60_000)} min); see gpuorch recommendations`,
        details: { mean_utilization_percent: Math.round(f.mean * 10) / 10, gpus: f.gpus, hostname: r.hostname },
        dedupeKey: `gpu_underutilized:${r.jobId}:${r.nodeId}`,
      },
      { now: () => this.deps.clock.now(), ids: this.deps.ids },
    );
    if (this.deps.dispatcher) await this.deps.dispatcher.dispatch(alert).catch((err: unknown) => this.deps.logger.error({ err }, "recording an alert failed"));
  }
}
