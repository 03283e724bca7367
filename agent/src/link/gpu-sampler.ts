import type { GpuSample } from "@gpuorch/core";
import { type Logger, sleep } from "@gpuorch/runtime";

/**
 * Keeps the latest GPU readings: re-reads them once per heartbeat interval (`intervalMs()`, which follows the link's) (nvidia-smi,
 * or the replayed capture) so a heartbeat never waits for nvidia-smi.
 * States: `idle` → `running` (start) → `stopped` (stop waits for a read in progress).
 */
export class GpuSampler {
  private latest: GpuSample[];
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;

  constructor(
    private readonly deps: { read: (signal: AbortSignal) => Promise<GpuSample[]>; intervalMs: () => number; logger: Logger; initial: GpuSample[] },
  ) {
    this.latest = deps.initial;
  }

  samples(): GpuSample[] {
    return this.latest;
  }

  start(): void {
    if (this.loop || this.abort.signal.aborted) return;
    this.loop = this.run(this.abort.signal);
  }

  async stop(): Promise<void> {
    this.abort.abort(new DOMException("sampler stopped", "AbortError"));
    await this.loop;
  }

  private async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await sleep(this.deps.intervalMs(), signal);
        this.latest = await this.deps.read(signal);
      } catch (err) {
        if (signal.aborted) return;
        // Keep the previous readings: a stale sample beats none.
        this.deps.logger.warn({ err }, "GPU sampling failed");
      }
    }
  }
}
