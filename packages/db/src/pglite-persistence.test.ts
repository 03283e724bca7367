import { randomUUID } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newJobInput } from "@gpuorch/testing";
import { afterAll, describe, expect, it } from "vitest";
import { getJobEvents } from "./job-events.js";
import { getJob, insertJob, transitionJob } from "./jobs.js";
import { openDatabase } from "./open.js";
import { createTeam } from "./teams.js";

describe("PGlite in a data directory", () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it("keeps jobs and events across close and reopen (creating the directory if missing)", async () => {
    const root = await mkdtemp(join(tmpdir(), "gpuorch-pglite-"));
    dirs.push(root);
    const dataDir = join(root, "nested", "data");

    const first = await openDatabase({ dataDir });
    const team = await createTeam(first.db, { id: randomUUID(), name: "persist" });
    const { job } = await insertJob(first.db, newJobInput(team.id, { budgetUsd: "10.00" }));
    const scheduled = await transitionJob(first.db, { jobId: job.id, to: "scheduled", reason: "placed", actor: "test" });
    await first.close();

    const second = await openDatabase({ dataDir });
    try {
      expect(await getJob(second.db, job.id, { teamId: team.id })).toEqual(scheduled);
      expect((await getJobEvents(second.db, job.id)).map((e) => e.toStatus)).toEqual(["pending", "scheduled"]);
    } finally {
      await second.close();
    }
  });
});
