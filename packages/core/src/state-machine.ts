import { AppError } from "./app-error.js";
import { type JobStatus, isTerminal } from "./job-status.js";

/**
 * The job lifecycle.
 *
 *   pending → scheduled → provisioning → running ⇄ checkpointing → completed
 *   any non-terminal → failed | cancelled
 *   scheduled | provisioning | running | checkpointing → requeued   (node lost, preempted)
 *   requeued → pending (next attempt, attempt + 1)
 *   scheduled → pending (placement revoked before launch, same attempt)
 *
 * `requeued` is a short-lived state so the event log records why an attempt
 * ended separately from the decision to start the next one.
 */
const TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  pending: ["scheduled", "failed", "cancelled"],
  scheduled: ["provisioning", "pending", "requeued", "failed", "cancelled"],
  provisioning: ["running", "requeued", "failed", "cancelled"],
  running: ["checkpointing", "completed", "requeued", "failed", "cancelled"],
  checkpointing: ["running", "completed", "requeued", "failed", "cancelled"],
  requeued: ["pending", "failed", "cancelled"],
  completed: [],
  failed: [],
  cancelled: [],
};

export function allowedTransitions(from: JobStatus): readonly JobStatus[] {
  return TRANSITIONS[from];
}

export function canTransition(from: JobStatus, to: JobStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Throws FAILED_PRECONDITION naming both states when `from → to` is illegal. */
export function assertTransition(from: JobStatus, to: JobStatus): void {
  if (canTransition(from, to)) return;
  const why = isTerminal(from) ? `job is already ${from}` : `allowed from ${from}: ${TRANSITIONS[from].join(", ")}`;
  throw AppError.precondition(`illegal job transition ${from} → ${to} (${why})`, "illegal_transition", { from, to });
}

/** True when moving to `to` starts a new attempt (attempt counter + 1). */
export function startsNewAttempt(from: JobStatus, to: JobStatus): boolean {
  return from === "requeued" && to === "pending";
}

/**
 * Checks that a sequence of (from, to) events, oldest first, is a legal path
 * from `pending` — used by tests and by consistency checks of the event log.
 * Returns the final status, or throws naming the first bad event.
 */
export function replayEvents(events: readonly { from: JobStatus | null; to: JobStatus }[]): JobStatus {
  let current: JobStatus | null = null;
  events.forEach((e, i) => {
    if (i === 0) {
      if (e.from !== null || e.to !== "pending") {
        throw AppError.precondition(`event 0 must create the job in pending, got ${e.from ?? "∅"} → ${e.to}`, "bad_event_log");
      }
    } else {
      if (e.from === null || e.from !== current) {
        throw AppError.precondition(`event ${i} starts from ${e.from ?? "∅"} but job was ${current ?? "∅"}`, "bad_event_log");
      }
      assertTransition(e.from, e.to);
    }
    current = e.to;
  });
  if (current === null) throw AppError.precondition("empty event log", "bad_event_log");
  return current;
}
