import { AppError, type FieldViolation } from "./app-error.js";

/**
 * Budget alert thresholds and the stop decision, in integer micro-dollars.
 * Pure: the cost tracker passes what it read (budget, spent before and now,
 * the thresholds it already alerted) and persists what it alerted.
 */

/** Percent of the budget at which an alert goes out, by default. */
export const DEFAULT_BUDGET_THRESHOLDS_PCT: readonly number[] = [50, 80, 100];

/** Thresholds above 100 % warn about runaway overspend (a stop that did not take). */
export const MAX_BUDGET_THRESHOLD_PCT = 1000;

/**
 * Checks a configured threshold list: integers 1..1000. Returns it sorted
 * ascending without duplicates. Throws `INVALID_ARGUMENT` (reason
 * `invalid_budget_thresholds`) naming each bad entry as `<field>[i]`.
 */
export function validateBudgetThresholds(list: readonly unknown[], field = "budget_thresholds_pct"): number[] {
  const violations: FieldViolation[] = [];
  list.forEach((v, i) => {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > MAX_BUDGET_THRESHOLD_PCT) {
      violations.push({ field: `${field}[${i}]`, message: `must be an integer percent from 1 to ${MAX_BUDGET_THRESHOLD_PCT}, got ${JSON.stringify(v)}` });
    }
  });
  if (list.length === 0) violations.push({ field, message: "must list at least one threshold" });
  if (violations.length > 0) {
    throw AppError.invalid(`invalid budget thresholds: ${violations.map((v) => `${v.field} ${v.message}`).join("; ")}`, violations, "invalid_budget_thresholds");
  }
  return [...new Set(list as number[])].sort((a, b) => a - b);
}

export interface BudgetCheckInput {
  budgetMicros: bigint;
  /** Spend the previous check saw (0n for the first). Used to tell a fresh crossing from a catch-up. */
  previousSpentMicros: bigint;
  spentMicros: bigint;
  /** Configured thresholds (validated); default 50/80/100. 100 is always armed: the stop it triggers must be announced. */
  thresholdsPct?: readonly number[];
  /** Thresholds already alerted for this job (persisted by the caller across restarts). */
  alreadyAlertedPct: Iterable<number>;
}

export interface BudgetThresholdCrossing {
  thresholdPct: number;
  /** The spend at which this threshold is reached: ceil(budget × pct / 100). */
  thresholdMicros: bigint;
  /** pct ≥ 100: alert as `budget_exceeded` rather than `budget_threshold`. */
  exceedsBudget: boolean;
  /**
   * The previous check had already passed this threshold without it being
   * alerted (a crash between crossing and persisting, a threshold added to
   * the configuration later): alerted late, still exactly once.
   */
  catchUp: boolean;
}

export type BudgetAction = { action: "none" } | { action: "checkpoint_and_stop"; reason: "budget_exceeded" };

export interface BudgetCheckResult {
  /** Thresholds to alert now, ascending; each appears at most once over a job's life if the caller persists them. */
  newlyCrossed: BudgetThresholdCrossing[];
  /** Spend as a percent of the budget, rounded down (integer). */
  spentPct: number;
  /** Spend in basis points (1/100 %), rounded down: for messages ("80.37 %"). */
  spentBasisPoints: bigint;
  /** `checkpoint_and_stop` on every check while spent ≥ budget (the caller's stop is idempotent). */
  decision: BudgetAction;
}

/** Whether `spent` has reached `pct` % of `budget`: spent × 100 ≥ budget × pct, exact in integers. */
export function reachedPct(spentMicros: bigint, budgetMicros: bigint, pct: number): boolean {
  return spentMicros * 100n >= budgetMicros * BigInt(pct);
}

/**
 * Which budget thresholds this check crosses and whether the job must stop.
 * A threshold is alerted when spend has reached it and it is not in
 * `alreadyAlertedPct`, so a jump over several thresholds alerts each of them
 * once, a restart with the persisted set alerts nothing again, and a spend
 * correction downwards never re-arms one. The stop decision depends only on
 * spent ≥ budget, never on the alerted set.
 */
export function checkBudget(input: BudgetCheckInput): BudgetCheckResult {
  const { budgetMicros, previousSpentMicros, spentMicros } = input;
  if (budgetMicros <= 0n) throw AppError.invalid("budget must be positive", [{ field: "budget", message: `got ${budgetMicros} micro-USD` }], "invalid_budget");
  if (spentMicros < 0n || previousSpentMicros < 0n) throw AppError.invalid("spend must not be negative", [{ field: "spent", message: `got ${spentMicros} micro-USD` }], "invalid_budget");
  const thresholds = validateBudgetThresholds([...(input.thresholdsPct ?? DEFAULT_BUDGET_THRESHOLDS_PCT), 100]);
  const alerted = new Set(input.alreadyAlertedPct);
  const newlyCrossed: BudgetThresholdCrossing[] = [];
  for (const pct of thresholds) {
    if (alerted.has(pct) || !reachedPct(spentMicros, budgetMicros, pct)) continue;
    newlyCrossed.push({
      thresholdPct: pct,
      thresholdMicros: ceilDiv(budgetMicros * BigInt(pct), 100n),
      exceedsBudget: pct >= 100,
      catchUp: reachedPct(previousSpentMicros, budgetMicros, pct),
    });
  }
  const spentBasisPoints = (spentMicros * 10_000n) / budgetMicros;
  return {
    newlyCrossed,
    spentPct: Number(spentBasisPoints / 100n),
    spentBasisPoints,
    decision: spentMicros >= budgetMicros ? { action: "checkpoint_and_stop", reason: "budget_exceeded" } : { action: "none" },
  };
}

export interface ProjectionInput {
  spentMicros: bigint;
  /** Hours the job has run (billed so far). */
  elapsedHours: number;
  /** The plan's estimate of the job's whole duration. */
  estimatedTotalHours: number;
  budgetMicros: bigint;
}

export interface ProjectionResult {
  /** spent × total / elapsed, rounded up; just `spent` when it cannot be projected (nothing elapsed, or past the estimate). */
  projectedMicros: bigint;
  /** Whether the projection is above the budget (budget_projection early warning). */
  willExceed: boolean;
  /** projected − budget when above it, else 0n. */
  overrunMicros: bigint;
  /** Whether a rate was extrapolated (false: elapsed ≤ 0 or the job is already past its estimate). */
  extrapolated: boolean;
}

/** Hours are scaled to integer milli-hours (3.6 s) so the money arithmetic stays in bigint. */
const MILLIHOURS_PER_HOUR = 1000;

/**
 * Linear projection of a job's final cost from its spend rate so far.
 * Money stays integer: hours become integer milli-hours and the ratio is
 * applied in bigint. A job already past its estimate projects to what it
 * has spent (no rate to extrapolate over a remaining time of zero).
 */
export function projectedOverrun(input: ProjectionInput): ProjectionResult {
  const { spentMicros, budgetMicros } = input;
  if (budgetMicros <= 0n) throw AppError.invalid("budget must be positive", [{ field: "budget", message: `got ${budgetMicros} micro-USD` }], "invalid_budget");
  if (spentMicros < 0n) throw AppError.invalid("spend must not be negative", [{ field: "spent", message: `got ${spentMicros} micro-USD` }], "invalid_budget");
  if (!Number.isFinite(input.elapsedHours) || !Number.isFinite(input.estimatedTotalHours) || input.estimatedTotalHours < 0) {
    throw AppError.invalid("hours must be finite and the estimate non-negative", [{ field: "estimated_total_hours", message: `elapsed ${input.elapsedHours}, estimated ${input.estimatedTotalHours}` }], "invalid_projection");
  }
  const elapsed = BigInt(Math.round(input.elapsedHours * MILLIHOURS_PER_HOUR));
  const total = BigInt(Math.round(input.estimatedTotalHours * MILLIHOURS_PER_HOUR));
  const extrapolated = elapsed > 0n && total > elapsed && spentMicros > 0n;
  const projectedMicros = extrapolated ? ceilDiv(spentMicros * total, elapsed) : spentMicros;
  const overrunMicros = projectedMicros > budgetMicros ? projectedMicros - budgetMicros : 0n;
  return { projectedMicros, willExceed: overrunMicros > 0n, overrunMicros, extrapolated };
}

function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b;
}
