import * as core from "@gpuorch/core";
import * as spec from "@gpuorch/spec";
import { describe, expect, it } from "vitest";

// spec and core may not depend on each other, so each holds the domain's
// vocabularies; this guard fails the moment the two copies drift apart.
describe("spec and core share one vocabulary", () => {
  it("has the same job types, frameworks, execution modes and providers", () => {
    expect([...spec.JOB_TYPES]).toEqual([...core.JOB_TYPES]);
    expect([...spec.FRAMEWORKS]).toEqual([...core.FRAMEWORKS]);
    expect([...spec.EXECUTION_MODES]).toEqual([...core.EXECUTION_MODES]);
    expect([...spec.PROVIDERS]).toEqual([...core.PROVIDERS]);
  });
  it("agrees on which frameworks train synchronously", () => {
    expect([...spec.SYNCHRONOUS_FRAMEWORKS].sort()).toEqual([...core.SYNCHRONOUS_FRAMEWORKS].sort());
  });
});
