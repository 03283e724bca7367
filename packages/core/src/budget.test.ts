import { describe, expect, it } from "vitest";
import { isAppError } from "./app-error.js";
import { checkBudget, projectedOverrun, reachedPct, validateBudgetThresholds } from "./budget.js";
import { parseUsdMicros } from "./micros.js";

const usd = parseUsdMicros;
const budget = usd("100");

function crossed(previous: string, spent: string, alerted: number[] = [], thresholdsPct?: number[]) {
  return checkBudget({ budgetMicros: budget, previousSpentMicros: usd(previous), spentMicros: usd(spent), alreadyAlertedPct: alerted, ...(thresholdsPct ? { thresholdsPct } : {}) });
}

describe("budget thresholds", () => {
  it("alerts nothing below the first threshold and does not stop", () => {
    const r = crossed("0", "49.999999");
    expect(r.newlyCrossed).toEqual([]);
    expect(r.decision).toEqual({ action: "none" });
    expect(r.spentPct).toBe(49);
  });

  it("alerts a threshold at exactly its percentage (integer comparison, no float rounding)", () => {
    const r = crossed("49", "50");
    expect(r.newlyCrossed).toEqual([{ thresholdPct: 50, thresholdMicros: usd("50"), exceedsBudget: false, catchUp: false }]);
    // 1/3 of a budget of 3 micro-dollars is exactly 1 micro: 33 % reached, 34 % not.
    expect(reachedPct(1n, 3n, 33)).toBe(true);
    expect(reachedPct(1n, 3n, 34)).toBe(false);
  });

  it("alerts every threshold jumped over at once, ascending, and the stop with them", () => {
    const r = crossed("10", "130");
    expect(r.newlyCrossed.map((c) => c.thresholdPct)).toEqual([50, 80, 100]);
    expect(r.newlyCrossed.map((c) => c.exceedsBudget)).toEqual([false, false, true]);
    expect(r.decision).toEqual({ action: "checkpoint_and_stop", reason: "budget_exceeded" });
    expect(r.spentPct).toBe(130);
  });

  it("never alerts a threshold twice when the caller persists the alerted set (restart with unknown previous spend)", () => {
    expect(crossed("50", "60", [50]).newlyCrossed).toEqual([]);
    // After a restart the caller may pass previous = current: still nothing new.
    expect(crossed("85", "85", [50, 80]).newlyCrossed).toEqual([]);
  });

  it("alerts a threshold missed before a crash late, once, marked as a catch-up", () => {
    const r = crossed("85", "86", [50]);
    expect(r.newlyCrossed).toEqual([{ thresholdPct: 80, thresholdMicros: usd("80"), exceedsBudget: false, catchUp: true }]);
  });

  it("does not re-arm a threshold when spend is corrected downwards", () => {
    expect(crossed("85", "40", [50, 80]).newlyCrossed).toEqual([]);
    expect(crossed("40", "81", [50, 80]).newlyCrossed).toEqual([]);
  });

  it("decides the stop on every check at or over 100 %, whatever was alerted", () => {
    const r = crossed("120", "121", [50, 80, 100]);
    expect(r.newlyCrossed).toEqual([]);
    expect(r.decision).toEqual({ action: "checkpoint_and_stop", reason: "budget_exceeded" });
    expect(crossed("99", "100", [50, 80]).decision.action).toBe("checkpoint_and_stop");
    expect(crossed("99", "99.999999", [50, 80]).decision.action).toBe("none");
  });

  it("always arms 100 % even when the configured list leaves it out, and honours thresholds above it", () => {
    expect(crossed("0", "100", [], [25]).newlyCrossed.map((c) => c.thresholdPct)).toEqual([25, 100]);
    const over = crossed("100", "150", [25, 100], [25, 150]);
    expect(over.newlyCrossed).toEqual([{ thresholdPct: 150, thresholdMicros: usd("150"), exceedsBudget: true, catchUp: false }]);
  });

  it("rounds a threshold's amount up to the micro-dollar it is reached at", () => {
    const r = checkBudget({ budgetMicros: 3n, previousSpentMicros: 0n, spentMicros: 2n, alreadyAlertedPct: [], thresholdsPct: [50] });
    // 50 % of 3 micros is 1.5: reached at 2.
    expect(r.newlyCrossed[0]).toMatchObject({ thresholdPct: 50, thresholdMicros: 2n });
    expect(r.spentBasisPoints).toBe(6666n);
  });

  it("rejects a non-positive budget and negative spend", () => {
    expect(() => checkBudget({ budgetMicros: 0n, previousSpentMicros: 0n, spentMicros: 1n, alreadyAlertedPct: [] })).toThrow(/budget must be positive/);
    expect(() => crossed("0", "-1")).toThrow(/spend must not be negative/);
  });
});

describe("validateBudgetThresholds", () => {
  it("returns the list sorted and without duplicates", () => {
    expect(validateBudgetThresholds([100, 50, 80, 50])).toEqual([50, 80, 100]);
    expect(validateBudgetThresholds([1, 1000])).toEqual([1, 1000]);
  });

  it("names every entry that is not an integer from 1 to 1000", () => {
    let err: unknown;
    try {
      validateBudgetThresholds([0, 50, 12.5, 1001, "80"], "alerts.thresholds");
    } catch (e) {
      err = e;
    }
    expect(isAppError(err)).toBe(true);
    if (!isAppError(err)) return;
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.reason).toBe("invalid_budget_thresholds");
    expect(err.fields.map((f) => f.field)).toEqual(["alerts.thresholds[0]", "alerts.thresholds[2]", "alerts.thresholds[3]", "alerts.thresholds[4]"]);
  });

  it("rejects an empty list", () => {
    expect(() => validateBudgetThresholds([])).toThrow(/at least one threshold/);
  });
});

describe("projectedOverrun", () => {
  it("extrapolates the spend rate linearly over the estimated duration, in integer micros", () => {
    // $30 after 3 h of an estimated 12 h: $120 projected against $100.
    const r = projectedOverrun({ spentMicros: usd("30"), elapsedHours: 3, estimatedTotalHours: 12, budgetMicros: budget });
    expect(r).toEqual({ projectedMicros: usd("120"), willExceed: true, overrunMicros: usd("20"), extrapolated: true });
  });

  it("does not warn when the projection stays within the budget (exactly at it included)", () => {
    const r = projectedOverrun({ spentMicros: usd("25"), elapsedHours: 1.5, estimatedTotalHours: 6, budgetMicros: budget });
    expect(r).toMatchObject({ projectedMicros: usd("100"), willExceed: false, overrunMicros: 0n });
  });

  it("rounds the projection up, never down", () => {
    const r = projectedOverrun({ spentMicros: 1n, elapsedHours: 3, estimatedTotalHours: 10, budgetMicros: 10n });
    expect(r.projectedMicros).toBe(4n);
  });

  it("projects the spend itself when nothing has elapsed or the job ran past its estimate", () => {
    expect(projectedOverrun({ spentMicros: usd("5"), elapsedHours: 0, estimatedTotalHours: 10, budgetMicros: budget })).toMatchObject({ projectedMicros: usd("5"), extrapolated: false });
    expect(projectedOverrun({ spentMicros: usd("110"), elapsedHours: 12, estimatedTotalHours: 10, budgetMicros: budget })).toMatchObject({
      projectedMicros: usd("110"),
      willExceed: true,
      extrapolated: false,
    });
  });

  it("rejects non-finite hours and a non-positive budget", () => {
    expect(() => projectedOverrun({ spentMicros: 1n, elapsedHours: Number.NaN, estimatedTotalHours: 1, budgetMicros: budget })).toThrow(/finite/);
    expect(() => projectedOverrun({ spentMicros: 1n, elapsedHours: 1, estimatedTotalHours: 2, budgetMicros: 0n })).toThrow(/positive/);
  });
});
