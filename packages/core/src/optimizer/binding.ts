import { AppError } from "../app-error.js";
import { hoursText, probabilityPair, usd, usdExact } from "./format.js";
import type { OptimizeResult, PlanCandidate, RejectionCode } from "./types.js";

/**
 * What the optimizer learned about an infeasible job, for one message. Each
 * `relax*` is the best plan on that constraint among the plans that meet all
 * the OTHER set constraints (null when none does or the constraint is not
 * set); `any*` are the same over every plan, used when no single constraint
 * can be blamed.
 */
export interface BindingFacts {
  /** "8×A100-80GB on one node"; used when no plan exists at all. */
  requirement: string;
  budgetMicros: bigint | null;
  deadlineMs: number | null;
  minReliability: number;
  /** Cheapest plan meeting deadline and reliability. */
  relaxBudget: PlanCandidate | null;
  /** Fastest plan within budget meeting reliability. */
  relaxDeadline: PlanCandidate | null;
  /** Most reliable plan within budget and deadline. */
  relaxReliability: PlanCandidate | null;
  anyCheapest: PlanCandidate | null;
  anyFastest: PlanCandidate | null;
  anyMostReliable: PlanCandidate | null;
  /** Shape filters, largest first: used when no plan exists at all. */
  shape: readonly { code: RejectionCode; count: number; text: string }[];
  offers: number;
  nodes: number;
  /** multi_task: set when the matching capacity cannot hold the units running at once. */
  capacity: string | null;
}

function others(f: BindingFacts, skip: "budget" | "deadline" | "reliability"): string {
  const set: string[] = [];
  if (skip !== "budget" && f.budgetMicros !== null) set.push("within budget");
  if (skip !== "deadline" && f.deadlineMs !== null) set.push("meeting the deadline");
  if (skip !== "reliability" && f.minReliability > 0) set.push(`meeting min_reliability ${f.minReliability}`);
  return set.length === 0 ? "" : ` ${set.join(" and ")}`;
}

function budgetPhrase(f: BindingFacts, p: PlanCandidate, qualified: boolean): string {
  return `cheapest plan${qualified ? others(f, "budget") : ""} costs ${usd(p.totalMicros, "ceil")} > budget ${usdExact(f.budgetMicros ?? 0n)} (${p.summary})`;
}

function deadlinePhrase(f: BindingFacts, p: PlanCandidate, qualified: boolean): string {
  const late = (p.completionMs - (f.deadlineMs ?? 0)) / 3_600_000;
  return `fastest plan${qualified ? others(f, "deadline") : ""} misses the deadline ${new Date(f.deadlineMs ?? 0).toISOString()} by ${hoursText(late)} (${p.summary})`;
}

function reliabilityPhrase(f: BindingFacts, p: PlanCandidate, qualified: boolean): string {
  const [a, b] = probabilityPair(p.reliability, f.minReliability);
  return `most reliable plan${qualified ? others(f, "reliability") : ""} has reliability ${a} < min_reliability ${b} (${p.summary})`;
}

/**
 * The message a user sees when a job cannot be placed (gRPC
 * RESOURCE_EXHAUSTED at submit): the constraint that binds, with numbers.
 * - no plan of the right shape: which filters removed the offers and nodes;
 * - one constraint binds (relaxing it alone gives a plan): that one, with the
 *   best plan on it among those meeting the rest, e.g. "cheapest plan meeting
 *   the deadline costs $143.20 > budget $100.00 (8×A100-80GB spot, aws
 *   us-east-1 p4de.24xlarge, 20.0 h, $143.20)";
 * - several can each be blamed: all of them ("no plan meets budget and
 *   deadline together: …; …");
 * - none alone suffices: "every plan breaks the budget and the deadline: …",
 *   each with its best plan over all plans.
 */
export function bindingConstraintMessage(f: BindingFacts): string {
  if (f.capacity !== null) return f.capacity;
  if (f.anyCheapest === null) {
    const parts = f.shape.filter((s) => s.count > 0).map((s) => `${s.count} ${s.text}`);
    const pool = `${f.offers} offer${f.offers === 1 ? "" : "s"}${f.nodes > 0 ? ` and ${f.nodes} registered node${f.nodes === 1 ? "" : "s"}` : ""}`;
    return `no offer or registered node can run ${f.requirement}: of ${pool}, ${parts.length > 0 ? parts.join(", ") : "none match"}`;
  }
  const single: string[] = [];
  const names: string[] = [];
  if (f.budgetMicros !== null && f.relaxBudget !== null) {
    single.push(budgetPhrase(f, f.relaxBudget, true));
    names.push("budget");
  }
  if (f.deadlineMs !== null && f.relaxDeadline !== null) {
    single.push(deadlinePhrase(f, f.relaxDeadline, true));
    names.push("deadline");
  }
  if (f.minReliability > 0 && f.relaxReliability !== null) {
    single.push(reliabilityPhrase(f, f.relaxReliability, true));
    names.push("min_reliability");
  }
  if (single.length === 1) return single[0] as string;
  if (single.length > 1) return `no plan meets ${names.join(" and ")} together: ${single.join("; ")}`;
  const all: string[] = [];
  const set: string[] = [];
  if (f.budgetMicros !== null && f.anyCheapest !== null && f.anyCheapest.totalMicros > f.budgetMicros) {
    all.push(budgetPhrase(f, f.anyCheapest, false));
    set.push("budget");
  }
  if (f.deadlineMs !== null && f.anyFastest !== null && f.anyFastest.completionMs > f.deadlineMs) {
    all.push(deadlinePhrase(f, f.anyFastest, false));
    set.push("deadline");
  }
  if (f.minReliability > 0 && f.anyMostReliable !== null && f.anyMostReliable.reliability < f.minReliability) {
    all.push(reliabilityPhrase(f, f.anyMostReliable, false));
    set.push("min_reliability");
  }
  if (all.length === 0) return "no plan meets budget, deadline and min_reliability together";
  const named = set.map((n) => (n === "min_reliability" ? n : `the ${n}`));
  const list = named.length === 1 ? named[0] : `${named.slice(0, -1).join(", ")} and ${named[named.length - 1]}`;
  return `every plan breaks ${list}: ${all.join("; ")}`;
}

/**
 * The best plan, or an AppError for the caller to return at submit:
 * RESOURCE_EXHAUSTED, reason `infeasible_job`, the binding message, and the
 * numbers in `meta`.
 */
export function requireFeasiblePlan(result: OptimizeResult): PlanCandidate {
  if (result.best !== null) return result.best;
  throw new AppError("RESOURCE_EXHAUSTED", result.binding ?? "no feasible plan", {
    reason: "infeasible_job",
    meta: { rejections: result.rejections, notes: result.notes },
  });
}
