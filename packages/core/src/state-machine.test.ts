import { describe, expect, it } from "vitest";
import { AppError } from "./app-error.js";
import { JOB_STATUSES, isTerminal } from "./job-status.js";
import { assertTransition, canTransition, replayEvents, startsNewAttempt } from "./state-machine.js";

describe("job state machine", () => {
  it("allows the happy path pending → … → completed, with checkpointing in between", () => {
    const path = ["pending", "scheduled", "provisioning", "running", "checkpointing", "running", "completed"] as const;
    for (let i = 1; i < path.length; i++) expect(canTransition(path[i - 1]!, path[i]!)).toBe(true);
  });

  it("never leaves a terminal state", () => {
    for (const from of JOB_STATUSES.filter(isTerminal)) {
      for (const to of JOB_STATUSES) expect(canTransition(from, to)).toBe(false);
    }
  });

  it("lets every non-terminal state be cancelled", () => {
    for (const from of JOB_STATUSES.filter((s) => !isTerminal(s))) expect(canTransition(from, "cancelled")).toBe(true);
  });

  it("rejects an illegal transition with FAILED_PRECONDITION naming from and to", () => {
    let err: unknown;
    try {
      assertTransition("completed", "running");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AppError);
    const ae = err as AppError;
    expect(ae.code).toBe("FAILED_PRECONDITION");
    expect(ae.message).toContain("completed → running");
    expect(ae.meta).toEqual({ from: "completed", to: "running" });
  });

  it("only requeued → pending starts a new attempt", () => {
    expect(startsNewAttempt("requeued", "pending")).toBe(true);
    expect(startsNewAttempt("scheduled", "pending")).toBe(false);
  });

  it("replays a legal event log to its final state and rejects a broken one", () => {
    expect(
      replayEvents([
        { from: null, to: "pending" },
        { from: "pending", to: "scheduled" },
        { from: "scheduled", to: "provisioning" },
        { from: "provisioning", to: "running" },
        { from: "running", to: "requeued" },
        { from: "requeued", to: "pending" },
        { from: "pending", to: "cancelled" },
      ]),
    ).toBe("cancelled");
    expect(() => replayEvents([{ from: null, to: "pending" }, { from: "scheduled", to: "running" }])).toThrow(/starts from scheduled/);
    expect(() => replayEvents([{ from: null, to: "pending" }, { from: "pending", to: "running" }])).toThrow(/pending → running/);
  });
});
