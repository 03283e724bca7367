import { AppError, type FieldViolation } from "../app-error.js";
import { usd } from "../optimizer/format.js";
import { spotExpectation } from "./cost-model.js";
import { meteredMicros, toMillionths } from "./metered.js";

/*
 * Checkpoint-and-relaunch migration (DESIGN guide): after a preemption or a
 * lost node the job is requeued from its last checkpoint, and before it is
 * rescheduled the controller asks whether to relaunch on the same kind of
 * target or to move. Move only when the saving over the REMAINING work beats
 * the switching cost by a hysteresis margin, so decisions do not flap.
 *
 * Pure: no clock, no randomness, no I/O. Money is bigint micro-dollars; every
 * rate × hours product is metered once (`meteredMicros`, rounded up).
 */

/** Default hysteresis: a move must win by more than 5 % of the stay cost. */
export const DEFAULT_MIGRATION_HYSTERESIS = 0.05;

/** One place the next attempt can run: the current target or an alternative. */
export interface MigrationTarget {
  /** Identifies the target (e.g. "aws/us-east-1/p4d.24xlarge/spot"); unique among current + alternatives. */
  key: string;
  /** Human text for `reason`; defaults to `key`. */
  label?: string;
  provider: string;
  region: string;
  spot: boolean;
  /**
   * What the whole allocation bills per hour (all nodes), micro-dollars: the
   * cost model's `PlanTarget.microsPerHour`. It must NOT already include the
   * expected spot overhead: that is added here from `interruptionRatePerHour`
   * with the cost model's `spotExpectation` (a caller whose rate already folds
   * it in passes `interruptionRatePerHour: 0`).
   */
  hourlyMicros: bigint;
  /**
   * Expected interruptions per hour of the whole allocation (λ × nodes: a gang
   * restarts when any node goes). Only used when `spot` is true; on-demand
   * targets are priced without interruptions, as in the cost model.
   */
  interruptionRatePerHour: number;
  /** False when the target cannot be launched now (no capacity, node gone and no identical one). */
  available: boolean;
  /** Time to start an attempt on this target, hours; defaults to the input's `restartHours`. */
  restartHours?: number;
}

/** An alternative also says what it costs to get the checkpoint (and data) there. */
export interface MigrationAlternative extends MigrationTarget {
  /** Moving the checkpoint (and the data, if not co-located) to this target, micro-dollars; 0 in the same region. */
  egressMicros: bigint;
}

export interface MigrationInput {
  current: MigrationTarget;
  alternatives: readonly MigrationAlternative[];
  /** Remaining work: estimate × (1 − progress), hours on these targets. */
  remainingHours: number;
  /** Provisioning + download + warm-up of a new attempt, hours; paid on whichever target is chosen. */
  restartHours: number;
  /** Work since the last checkpoint that must be redone, hours (same on any target). */
  lostWorkHours: number;
  /**
   * Hours between checkpoints, for the expected work lost to each future spot
   * interruption (`checkpointIntervalHours(spec.checkpoint, model)`). Default
   * null = none known, the cost model's pessimistic reading (half the run).
   */
  checkpointHours?: number | null;
  /** Fraction of the stay cost a move must win by. Default 0.05; resolved to parts per million (rounded up). */
  hysteresis?: number;
}

export interface MigrationDecision {
  action: "stay" | "move";
  /** `current` for stay, the chosen alternative for move. */
  target: MigrationTarget | MigrationAlternative;
  /** Expected cost of finishing on the current target. */
  stayTotalMicros: bigint;
  /** Expected cost of finishing on the best available alternative (egress included); null when none is available. */
  moveTotalMicros: bigint | null;
  /** Running cost saved by the best alternative: stayTotal − (moveTotal − switchCost). 0n when none. */
  savingMicros: bigint;
  /** Egress + restart-time difference of the best alternative (see `decideMigration`). 0n when none. */
  switchCostMicros: bigint;
  /** One sentence with dollar figures. */
  reason: string;
}

/**
 * Stay on the current target or move the requeued job to an alternative.
 *
 * Cost of finishing on a target T (current or alternative):
 *
 *     work(T)     = remainingHours + lostWorkHours
 *     hours(T)    = restartHours(T) + spotExpectation(work(T), λ(T), 1, restartHours(T), checkpointHours).expectedHours
 *     run(T)      = meteredMicros(hourlyMicros(T), hours(T))            (one product, rounded up)
 *     total(T)    = run(T) + egressMicros(T)                            (current: no egress)
 *
 * λ(T) is `interruptionRatePerHour` for spot targets and 0 otherwise; each
 * expected interruption costs another restart plus the work since the last
 * checkpoint (the cost model's formula, reused, not re-derived).
 *
 * Switching cost of moving to alternative A:
 *
 *     switchCost(A) = egressMicros(A) + meteredMicros(hourly(A), restartHours(A)) − meteredMicros(hourly(A), restartHours(current))
 *
 * i.e. the egress plus the EXTRA restart time A needs over restarting the
 * current target, priced at A's rate. Restarting the current target still
 * costs its restart time (inside run(current)); with one shared
 * `restartHours` the difference is 0 and switchCost = egress. It is negative
 * when A restarts faster. The saving is the rest of the difference:
 *
 *     saving(A) = stayTotal − (total(A) − switchCost(A)),  so  saving − switchCost = stayTotal − total(A).
 *
 * Best alternative: the available one with the lowest total, ties by key
 * (code-unit order); input order never matters. Decision:
 *
 * - current available: move iff saving − switchCost > hysteresis × stayTotal,
 *   evaluated exactly as (stayTotal − total(A)) × 10⁶ > ppm × stayTotal with
 *   ppm = hysteresis in parts per million (rounded up). Equality (a tie) stays.
 * - current unavailable: move to the best available alternative regardless.
 * - nothing available to move to: "stay" with `target = current`; when the
 *   current target is unavailable too, the reason starts "no alternative
 *   available; waiting for capacity" — the controller keeps the job queued
 *   rather than failing it (no error is thrown for this case).
 *
 * Throws AppError INVALID_ARGUMENT (reason `invalid_migration_input`) for
 * negative or non-finite hours, rates or hysteresis, negative money, and
 * duplicate keys.
 */
export function decideMigration(input: MigrationInput): MigrationDecision {
  validate(input);
  const { current } = input;
  const ppm = toMillionths(input.hysteresis ?? DEFAULT_MIGRATION_HYSTERESIS);
  const currentRestart = current.restartHours ?? input.restartHours;
  const stayTotal = runMicros(input, current);

  let best: { alt: MigrationAlternative; total: bigint } | null = null;
  for (const alt of input.alternatives) {
    if (!alt.available) continue;
    const total = runMicros(input, alt) + alt.egressMicros;
    if (best === null || total < best.total || (total === best.total && alt.key < best.alt.key)) best = { alt, total };
  }

  const here = `${label(current)} (${usd(stayTotal)} to finish)`;
  if (best === null) {
    return {
      action: "stay",
      target: current,
      stayTotalMicros: stayTotal,
      moveTotalMicros: null,
      savingMicros: 0n,
      switchCostMicros: 0n,
      reason: current.available
        ? `staying on ${here}: no alternative available`
        : `no alternative available; waiting for capacity (current target ${label(current)} is unavailable)`,
    };
  }

  const { alt, total } = best;
  const restartDelta = meteredMicros(alt.hourlyMicros, alt.restartHours ?? input.restartHours) - meteredMicros(alt.hourlyMicros, currentRestart);
  const switchCost = alt.egressMicros + restartDelta;
  const saving = stayTotal - total + switchCost;
  const net = stayTotal - total;
  const there = `${label(alt)} (${usd(total)} to finish, incl. ${usd(alt.egressMicros)} egress)`;
  const figures = `saving ${usd(saving)} against a switching cost of ${usd(switchCost)}`;
  const base = { stayTotalMicros: stayTotal, moveTotalMicros: total, savingMicros: saving, switchCostMicros: switchCost };

  if (!current.available) {
    return { action: "move", target: alt, ...base, reason: `current target ${label(current)} is unavailable; moving to the cheapest available alternative, ${there}` };
  }
  // Threshold in micros for the text only; the decision is the exact integer comparison.
  const pct = `${Number(ppm) / 10_000}%`;
  const threshold = usd((ppm * stayTotal + 999_999n) / 1_000_000n);
  if (net * 1_000_000n > ppm * stayTotal) {
    return { action: "move", target: alt, ...base, reason: `moving from ${here} to ${there}: ${figures}, net ${usd(net)} > ${pct} hysteresis (${threshold})` };
  }
  return {
    action: "stay",
    target: current,
    ...base,
    reason: `staying on ${here}: best alternative ${there}, ${figures}, net ${usd(net)} ≤ ${pct} hysteresis (${threshold})`,
  };
}

function label(t: MigrationTarget): string {
  return t.label ?? t.key;
}

/** run(T): the expected compute cost of restarting and finishing on T (no egress). */
function runMicros(input: MigrationInput, t: MigrationTarget): bigint {
  const restart = t.restartHours ?? input.restartHours;
  const work = input.remainingHours + input.lostWorkHours;
  const rate = t.spot ? t.interruptionRatePerHour : 0;
  const s = spotExpectation(work, rate, 1, restart, input.checkpointHours ?? null);
  return meteredMicros(t.hourlyMicros, restart + s.expectedHours);
}

function validate(input: MigrationInput): void {
  const bad: FieldViolation[] = [];
  const hours = (field: string, v: number | undefined | null, optional = false): void => {
    if ((v === undefined || v === null) && optional) return;
    if (typeof v !== "number" || !Number.isFinite(v) || v < 0) bad.push({ field, message: `must be a finite number ≥ 0, got ${String(v)}` });
  };
  hours("remainingHours", input.remainingHours);
  hours("restartHours", input.restartHours);
  hours("lostWorkHours", input.lostWorkHours);
  hours("checkpointHours", input.checkpointHours, true);
  hours("hysteresis", input.hysteresis, true);
  const keys = new Set<string>();
  const target = (prefix: string, t: MigrationTarget, egress: bigint | null): void => {
    if (keys.has(t.key)) bad.push({ field: `${prefix}.key`, message: `duplicate target key ${JSON.stringify(t.key)}` });
    keys.add(t.key);
    if (t.hourlyMicros < 0n) bad.push({ field: `${prefix}.hourlyMicros`, message: `must be ≥ 0, got ${t.hourlyMicros}` });
    hours(`${prefix}.interruptionRatePerHour`, t.interruptionRatePerHour);
    hours(`${prefix}.restartHours`, t.restartHours, true);
    if (egress !== null && egress < 0n) bad.push({ field: `${prefix}.egressMicros`, message: `must be ≥ 0, got ${egress}` });
  };
  target("current", input.current, null);
  input.alternatives.forEach((a, i) => target(`alternatives[${i}]`, a, a.egressMicros));
  if (bad.length > 0) {
    throw AppError.invalid(`invalid migration input: ${bad.map((b) => `${b.field} ${b.message}`).join("; ")}`, bad, "invalid_migration_input");
  }
}
