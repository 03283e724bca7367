import { DEFAULT_PERFORMANCE_TABLE, type PerformanceTable } from "./performance.js";

/**
 * Knobs of the cost model. Every default below is a documented assumption,
 * not a measurement; the controller may override any of them from config.
 */
export interface CostModelOptions {
  performance?: PerformanceTable;
  /** Used when the spec has no `job.estimated_hours` (the plan is flagged). SkyPilot's optimizer also assumes 1 h. */
  defaultEstimatedHours?: number;
  /**
   * Hours lost to each spot interruption besides the lost work: noticing the
   * interruption, getting a replacement node, starting the container and
   * restoring the checkpoint. 0.1 h = 6 min, a conservative reading of
   * SkyPilot's managed-job recovery (15 s polling + minutes of provisioning).
   */
  restartOverheadHours?: number;
  /**
   * Assumed hours between checkpoints when the spec checkpoints every N steps:
   * steps cannot be turned into time without a step rate (the plan is flagged).
   */
  stepCheckpointHours?: number;
  /**
   * Interruptions per node-hour for a spot offer whose catalog row has none:
   * 0.01 (one per 100 h) is deliberately pessimistic next to AWS Spot
   * Advisor's "<5 % … >20 % interrupted per month" buckets, because GPU spot
   * pools are the tightest.
   */
  defaultSpotInterruptionsPerHour?: number;
  /** Probability of obtaining spot capacity when the row has none. */
  defaultSpotAvailability?: number;
  /** Probability that an on-demand plan runs to the end (capacity + hardware); a placeholder, not a provider SLA. */
  onDemandReliability?: number;
  /** Same for capacity on registered nodes. */
  existingNodeReliability?: number;
  /** Internet egress rate when the catalog has no tier for the source provider (0.12 $/GB, GCP Premium's common first tier). */
  fallbackInternetMicrosPerGb?: bigint;
  /** Inter-region rate when the catalog has none (0.02 $/GB, the common AWS/GCP intra-continent rate). */
  fallbackInterRegionMicrosPerGb?: bigint;
}

export type CostModel = Required<CostModelOptions>;

export const DEFAULT_COST_MODEL: CostModel = Object.freeze({
  performance: DEFAULT_PERFORMANCE_TABLE,
  defaultEstimatedHours: 1,
  restartOverheadHours: 0.1,
  stepCheckpointHours: 0.5,
  defaultSpotInterruptionsPerHour: 0.01,
  defaultSpotAvailability: 0.9,
  onDemandReliability: 0.999,
  existingNodeReliability: 0.999,
  fallbackInternetMicrosPerGb: 120_000n,
  fallbackInterRegionMicrosPerGb: 20_000n,
});

export function resolveCostModel(options: CostModelOptions = {}): CostModel {
  const m: CostModel = { ...DEFAULT_COST_MODEL };
  for (const k of Object.keys(DEFAULT_COST_MODEL) as (keyof CostModel)[]) {
    const v = options[k];
    if (v !== undefined) (m as Record<keyof CostModel, unknown>)[k] = v;
  }
  return m;
}

/**
 * Hours between checkpoints from the spec: `interval_seconds` / 3600; a
 * step interval uses the assumed `stepCheckpointHours`; none = null (a restart
 * loses everything since the start).
 */
export function checkpointIntervalHours(
  checkpoint: { interval_seconds?: number; interval_steps?: number },
  model: Pick<CostModel, "stepCheckpointHours">,
): number | null {
  if (checkpoint.interval_seconds !== undefined && checkpoint.interval_seconds > 0) return checkpoint.interval_seconds / 3600;
  if (checkpoint.interval_steps !== undefined) return model.stepCheckpointHours;
  return null;
}

export interface SpotExpectation {
  /** Expected interruptions over the run: λ × nodes × base hours. */
  expectedInterruptions: number;
  /** Work redone after each interruption, hours. */
  lostHoursPerInterruption: number;
  /** Base hours + interruptions × (restart overhead + lost work). */
  expectedHours: number;
}

/**
 * Expected run time on spot. Interruptions arrive at `interruptionsPerHour`
 * per node; a synchronous gang restarts when ANY node goes, hence × nodes.
 * Each costs the restart overhead plus the work since the last checkpoint,
 * on average half an interval (interruptions are uniform in time); with no
 * checkpoint, or an interval longer than the run, half the run. Interruptions
 * during the extra hours themselves are ignored (second-order for λ·H ≪ 1).
 */
export function spotExpectation(
  baseHours: number,
  interruptionsPerHour: number,
  nodes: number,
  restartOverheadHours: number,
  checkpointHours: number | null,
): SpotExpectation {
  const expectedInterruptions = interruptionsPerHour * nodes * baseHours;
  const lost = (checkpointHours === null ? baseHours : Math.min(checkpointHours, baseHours)) / 2;
  return {
    expectedInterruptions,
    lostHoursPerInterruption: lost,
    expectedHours: baseHours + expectedInterruptions * (restartOverheadHours + lost),
  };
}

/** P(X ≤ k) for X ~ Poisson(mu). */
export function poissonCdf(k: number, mu: number): number {
  if (k < 0) return 0;
  if (mu <= 0) return 1;
  let term = Math.exp(-mu);
  let sum = term;
  for (let i = 1; i <= k; i++) {
    term *= mu / i;
    sum += term;
  }
  return Math.min(1, sum);
}

/**
 * Reliability of a spot placement: capacity is obtained (availability) AND the
 * interruptions fit in the retry budget. A preempted job is requeued as a new
 * attempt (state machine: running → requeued → pending), so with
 * `max_attempts` attempts it survives at most max_attempts − 1 interruptions;
 * interruptions are Poisson with the expected count above.
 */
export function spotReliability(availability: number, expectedInterruptions: number, maxAttempts: number): number {
  return availability * poissonCdf(Math.max(0, Math.floor(maxAttempts) - 1), expectedInterruptions);
}
