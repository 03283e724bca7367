import { randomUUID } from "node:crypto";
import type { NewJobInput } from "@gpuorch/db";

/** A valid job submission for `teamId`; override what the test is about. */
export function newJobInput(teamId: string, overrides: Partial<NewJobInput> = {}): NewJobInput {
  const name = overrides.name ?? `job-${randomUUID().slice(0, 8)}`;
  return {
    id: randomUUID(),
    teamId,
    name,
    project: null,
    type: "training",
    framework: "pytorch_ddp",
    executionMode: "single_cluster",
    priority: 100,
    maxAttempts: 3,
    gpus: 8,
    specYaml: `job:\n  name: ${name}\n  type: training\nresources:\n  gpus: 8\n`,
    spec: { job: { name, type: "training" }, resources: { gpus: 8 } },
    budgetUsd: null,
    deadline: null,
    idempotencyKey: null,
    actor: "test",
    ...overrides,
  };
}
