import { type BudgetThresholdCrossing, type IdSource, type ProjectionResult, formatUsdMicros } from "@gpuorch/core";
import { type Alert, createAlert } from "./alert.js";

export interface BudgetAlertSubject {
  team: string;
  project?: string;
  jobId: string;
  /** For the message; the id when the job has no name. */
  jobName?: string;
  budgetMicros: bigint;
  spentMicros: bigint;
}

type Deps = { now: () => Date; ids: IdSource };

const usd = (m: bigint): string => `$${formatUsdMicros(m, 2)}`;

/** Basis points as "80.37" (integer arithmetic). */
function pct(bp: bigint): string {
  return `${bp / 100n}.${(bp % 100n).toString().padStart(2, "0")}`;
}

/**
 * The alert for one threshold `checkBudget` reported: `budget_exceeded`
 * (critical) at 100 % and above, `budget_threshold` (warning) below.
 */
export function budgetThresholdAlert(subject: BudgetAlertSubject, crossing: BudgetThresholdCrossing, deps: Deps): Alert {
  const spentBp = (subject.spentMicros * 10_000n) / subject.budgetMicros;
  const who = subject.jobName ?? subject.jobId;
  const message = crossing.exceedsBudget
    ? `Job ${who} spent ${usd(subject.spentMicros)} of its ${usd(subject.budgetMicros)} budget (${pct(spentBp)} %); ${crossing.thresholdPct === 100 ? "checkpointing and stopping it" : `over the ${crossing.thresholdPct} % threshold`}`
    : `Job ${who} reached ${crossing.thresholdPct} % of its ${usd(subject.budgetMicros)} budget (${usd(subject.spentMicros)} spent)`;
  return createAlert(
    {
      kind: crossing.exceedsBudget ? "budget_exceeded" : "budget_threshold",
      team: subject.team,
      ...(subject.project !== undefined ? { project: subject.project } : {}),
      jobId: subject.jobId,
      message,
      dedupeKey: `budget:${subject.jobId}:${crossing.thresholdPct}`,
      details: {
        threshold_pct: crossing.thresholdPct,
        budget_usd: formatUsdMicros(subject.budgetMicros),
        spent_usd: formatUsdMicros(subject.spentMicros),
        spent_pct: pct(spentBp),
        catch_up: crossing.catchUp,
        ...(crossing.exceedsBudget && crossing.thresholdPct === 100 ? { action: "checkpoint_and_stop", reason: "budget_exceeded" } : {}),
      },
    },
    deps,
  );
}

/** The early warning for a `projectedOverrun` that `willExceed`. */
export function budgetProjectionAlert(subject: BudgetAlertSubject, projection: ProjectionResult, deps: Deps): Alert {
  const who = subject.jobName ?? subject.jobId;
  return createAlert(
    {
      kind: "budget_projection",
      team: subject.team,
      ...(subject.project !== undefined ? { project: subject.project } : {}),
      jobId: subject.jobId,
      dedupeKey: `budget_projection:${subject.jobId}`,
      message: `Job ${who} is projected to cost ${usd(projection.projectedMicros)}, ${usd(projection.overrunMicros)} over its ${usd(subject.budgetMicros)} budget`,
      details: {
        budget_usd: formatUsdMicros(subject.budgetMicros),
        spent_usd: formatUsdMicros(subject.spentMicros),
        projected_usd: formatUsdMicros(projection.projectedMicros),
        overrun_usd: formatUsdMicros(projection.overrunMicros),
      },
    },
    deps,
  );
}
