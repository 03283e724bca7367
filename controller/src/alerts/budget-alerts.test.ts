import { checkBudget, parseUsdMicros, projectedOverrun } from "@gpuorch/core";
import { describe, expect, it } from "vitest";
import { budgetProjectionAlert, budgetThresholdAlert } from "./budget-alerts.js";

const deps = { now: () => new Date("2030-01-01T00:00:00Z"), ids: { newId: () => "alert-1" } };
const subject = { team: "ml", project: "llm", jobId: "job-1", jobName: "train-7b", budgetMicros: parseUsdMicros("100") };

describe("budget alerts", () => {
  it("turns each crossed threshold into one alert: budget_threshold below 100 %, budget_exceeded (critical, with the stop) at 100 %", () => {
    const spentMicros = parseUsdMicros("100.5");
    const check = checkBudget({ budgetMicros: subject.budgetMicros, previousSpentMicros: parseUsdMicros("79"), spentMicros, alreadyAlertedPct: [50] });
    const alerts = check.newlyCrossed.map((c) => budgetThresholdAlert({ ...subject, spentMicros }, c, deps));
    expect(alerts.map((a) => [a.kind, a.severity, a.message])).toEqual([
      ["budget_threshold", "warning", "Job train-7b reached 80 % of its $100.00 budget ($100.50 spent)"],
      ["budget_exceeded", "critical", "Job train-7b spent $100.50 of its $100.00 budget (100.50 %); checkpointing and stopping it"],
    ]);
    expect(alerts[1]!.details).toEqual({
      threshold_pct: 100,
      budget_usd: "100.000000",
      spent_usd: "100.500000",
      spent_pct: "100.50",
      catch_up: false,
      action: "checkpoint_and_stop",
      reason: "budget_exceeded",
    });
    expect(alerts[0]).toMatchObject({ team: "ml", project: "llm", jobId: "job-1", createdAt: "2030-01-01T00:00:00.000Z", dedupeKey: "budget:job-1:80" });
    expect(alerts[1]!.dedupeKey).toBe("budget:job-1:100");
  });

  it("renders the projection early warning with decimal-string money", () => {
    const spentMicros = parseUsdMicros("30");
    const p = projectedOverrun({ spentMicros, elapsedHours: 3, estimatedTotalHours: 12, budgetMicros: subject.budgetMicros });
    const a = budgetProjectionAlert({ ...subject, spentMicros }, p, deps);
    expect(a).toMatchObject({ kind: "budget_projection", severity: "warning", dedupeKey: "budget_projection:job-1", message: "Job train-7b is projected to cost $120.00, $20.00 over its $100.00 budget" });
    expect(a.details).toEqual({ budget_usd: "100.000000", spent_usd: "30.000000", projected_usd: "120.000000", overrun_usd: "20.000000" });
  });
});
