import { randomUUID } from "node:crypto";
import { type TestDatabase, newJobInput } from "@gpuorch/testing";
import { eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type NewJobLogLine, appendJobLogs, droppedLinesMarker, readJobLogs, storableLogText } from "./job-logs.js";
import { insertJob } from "./jobs.js";
import type { Database, Db } from "./open.js";
import { jobLogStats, jobLogs } from "./schema.js";
import { createTeam } from "./teams.js";
import { contractDrivers } from "./contract-drivers.test-util.js";

const drivers = contractDrivers();

const t0 = new Date("2030-01-01T00:00:00.000Z");

function line(jobId: string, text: string, over: Partial<NewJobLogLine> = {}): NewJobLogLine {
  return { jobId, attempt: 1, rank: 0, nodeRank: 0, stream: "stdout", text, at: t0, ...over };
}

const lines = (jobId: string, from: number, to: number, over: Partial<NewJobLogLine> = {}): NewJobLogLine[] =>
  Array.from({ length: to - from + 1 }, (_, i) => line(jobId, `line ${from + i}`, over));

describe.each(drivers)("job logs contract on $name", (driver) => {
  let database: Database;
  let testDb: TestDatabase | undefined;
  let db: Db;
  let teamId: string;

  beforeAll(async () => {
    ({ database, testDb } = await driver.open());
    db = database.db;
    teamId = (await createTeam(db, { id: randomUUID(), name: `logs-${randomUUID().slice(0, 8)}` })).id;
  });

  afterAll(async () => {
    await database.close();
    await testDb?.assertNoLeftoverConnections();
  });

  const newJob = async () => (await insertJob(db, newJobInput(teamId))).job.id;
  const all = (jobId: string) => readJobLogs(db, { jobId, limit: 100_000 });
  const texts = async (jobId: string) => (await all(jobId)).map((l) => l.text);

  it("stores lines in input order with increasing seq, across batches, and reads them back exactly", async () => {
    const job = await newJob();
    const at = new Date("2030-01-01T00:00:01.234Z");
    const out = await appendJobLogs(db, [line(job, "a", { at, rank: 3, nodeRank: 1, attempt: 2, stream: "stderr" }), line(job, "b")], { maxLinesPerJob: 100 });
    expect(out).toEqual({ inserted: 2, unknownJobs: [], trimmed: [] });
    await appendJobLogs(db, lines(job, 1, 3), { maxLinesPerJob: 100 });
    const got = await all(job);
    expect(got.map((l) => l.text)).toEqual(["a", "b", "line 1", "line 2", "line 3"]);
    expect(got[0]).toEqual({ seq: expect.any(Number), jobId: job, attempt: 2, rank: 3, nodeRank: 1, stream: "stderr", text: "a", at });
    const seqs = got.map((l) => l.seq);
    expect([...seqs].sort((x, y) => x - y)).toEqual(seqs);
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it("writes many jobs' lines in one call, each job's in order", async () => {
    const jobs = await Promise.all(Array.from({ length: 5 }, () => newJob()));
    const batch: NewJobLogLine[] = [];
    for (let i = 0; i < 40; i++) batch.push(line(jobs[i % 5]!, `l${i}`));
    const out = await appendJobLogs(db, batch, { maxLinesPerJob: 1000 });
    expect(out.inserted).toBe(40);
    for (let j = 0; j < 5; j++) {
      expect(await texts(jobs[j]!)).toEqual(Array.from({ length: 8 }, (_, k) => `l${j + 5 * k}`));
    }
  });

  it("skips lines of unknown or malformed job ids without failing the others", async () => {
    const job = await newJob();
    const ghost = randomUUID();
    const out = await appendJobLogs(db, [line(ghost, "x"), line(job, "kept"), line("not-a-uuid", "y")], { maxLinesPerJob: 10 });
    expect(out.inserted).toBe(1);
    expect(out.unknownJobs.sort()).toEqual([ghost, "not-a-uuid"].sort());
    expect(await texts(job)).toEqual(["kept"]);
  });

  it("keeps text PostgreSQL cannot hold (NUL, lone surrogates) as U+FFFD instead of failing the batch", async () => {
    const job = await newJob();
    await appendJobLogs(db, [line(job, "a\u0000b"), line(job, "c\uD800d"), line(job, "emoji 🚀 ünï")], { maxLinesPerJob: 10 });
    expect(await texts(job)).toEqual(["a\uFFFDb", "c\uFFFDd", "emoji 🚀 ünï"]);
    expect(storableLogText("ok")).toBe("ok");
  });

  it("bounds a job: drops its oldest lines and keeps ONE system marker with the running total, first in seq order", async () => {
    const job = await newJob();
    const other = await newJob();
    const max = 10;
    await appendJobLogs(db, [...lines(job, 1, 8), ...lines(other, 1, 3)], { maxLinesPerJob: max });
    // 8 + 5 = 13 → 3 dropped.
    let out = await appendJobLogs(db, lines(job, 9, 13), { maxLinesPerJob: max });
    expect(out.trimmed).toEqual([{ jobId: job, dropped: 3, droppedTotal: 3 }]);
    let got = await all(job);
    expect(got.map((l) => l.text)).toEqual([droppedLinesMarker(3, max), ...Array.from({ length: 10 }, (_, i) => `line ${i + 4}`)]);
    expect(got[0]!.stream).toBe("system");
    const firstMarkerSeq = got[0]!.seq;

    // A batch larger than the bound by itself: the marker is refreshed, not duplicated.
    out = await appendJobLogs(db, lines(job, 14, 40), { maxLinesPerJob: max });
    expect(out.trimmed).toEqual([{ jobId: job, dropped: 27, droppedTotal: 30 }]);
    got = await all(job);
    expect(got.filter((l) => l.stream === "system").map((l) => l.text)).toEqual(["[gpuorch] 30 older lines dropped (limit 10 per job)"]);
    expect(got.map((l) => l.text).slice(1)).toEqual(Array.from({ length: 10 }, (_, i) => `line ${i + 31}`));
    expect(got[0]!.seq).toBeGreaterThan(firstMarkerSeq);
    expect(got.map((l) => l.seq)).toEqual([...got.map((l) => l.seq)].sort((a, b) => a - b));

    // The counter matches the rows (no drift), and the other job was left alone.
    const [stats] = await db.select().from(jobLogStats).where(eq(jobLogStats.jobId, job));
    expect(stats).toMatchObject({ lines: 10, dropped: 30, markerSeq: got[0]!.seq });
    const [{ n }] = (await db.select({ n: sql<number>`count(*)::int` }).from(jobLogs).where(eq(jobLogs.jobId, job))) as [{ n: number }];
    expect(n).toBe(11);
    expect(await texts(other)).toEqual(["line 1", "line 2", "line 3"]);
  });

  it("bounds several jobs over the limit in the same call", async () => {
    const [a, b, c] = [await newJob(), await newJob(), await newJob()];
    const out = await appendJobLogs(db, [...lines(a, 1, 7), ...lines(b, 1, 4), ...lines(c, 1, 9)], { maxLinesPerJob: 5 });
    expect(out.trimmed.sort((x, y) => x.dropped - y.dropped)).toEqual([
      { jobId: a, dropped: 2, droppedTotal: 2 },
      { jobId: c, dropped: 4, droppedTotal: 4 },
    ]);
    expect(await texts(a)).toEqual([droppedLinesMarker(2, 5), "line 3", "line 4", "line 5", "line 6", "line 7"]);
    expect(await texts(b)).toEqual(["line 1", "line 2", "line 3", "line 4"]);
    expect(await texts(c)).toEqual([droppedLinesMarker(4, 5), "line 5", "line 6", "line 7", "line 8", "line 9"]);
  });

  it("tail returns the last N matching lines oldest first; limit pages within the tail window", async () => {
    const job = await newJob();
    await appendJobLogs(db, lines(job, 1, 20), { maxLinesPerJob: 100 });
    expect((await readJobLogs(db, { jobId: job, tail: 3, limit: 100 })).map((l) => l.text)).toEqual(["line 18", "line 19", "line 20"]);
    const firstPage = await readJobLogs(db, { jobId: job, tail: 5, limit: 2 });
    expect(firstPage.map((l) => l.text)).toEqual(["line 16", "line 17"]);
    const rest = await readJobLogs(db, { jobId: job, afterSeq: firstPage[1]!.seq, limit: 100 });
    expect(rest.map((l) => l.text)).toEqual(["line 18", "line 19", "line 20"]);
    expect(await readJobLogs(db, { jobId: job, tail: 50, limit: 100 })).toHaveLength(20);
  });

  it("filters by rank (system lines always pass), attempt and afterSeq", async () => {
    const job = await newJob();
    await appendJobLogs(
      db,
      [
        line(job, "r0 a1", { rank: 0 }),
        line(job, "r1 a1", { rank: 1 }),
        line(job, "sys a1", { rank: 0, stream: "system" }),
        line(job, "r1 a2", { rank: 1, attempt: 2 }),
        line(job, "r0 a2", { rank: 0, attempt: 2 }),
      ],
      { maxLinesPerJob: 100 },
    );
    const q = async (over: Partial<Parameters<typeof readJobLogs>[1]>) => (await readJobLogs(db, { jobId: job, limit: 100, ...over })).map((l) => l.text);
    expect(await q({ rank: 1 })).toEqual(["r1 a1", "sys a1", "r1 a2"]);
    expect(await q({ attempt: 2 })).toEqual(["r1 a2", "r0 a2"]);
    expect(await q({ rank: 0, attempt: 1 })).toEqual(["r0 a1", "sys a1"]);
    expect(await q({ rank: 1, tail: 1 })).toEqual(["r1 a2"]);
    const [first] = await readJobLogs(db, { jobId: job, limit: 1 });
    expect(await q({ afterSeq: first!.seq, rank: 0 })).toEqual(["sys a1", "r0 a2"]);
    expect(await readJobLogs(db, { jobId: "nope", limit: 10 })).toEqual([]);
  });

  it("concurrent appends to one job keep the bound and a single marker", async () => {
    const job = await newJob();
    await Promise.all(Array.from({ length: 8 }, (_, k) => appendJobLogs(db, lines(job, k * 10 + 1, k * 10 + 10), { maxLinesPerJob: 25 })));
    const got = await all(job);
    expect(got.filter((l) => l.stream === "system").map((l) => l.text)).toEqual([droppedLinesMarker(55, 25)]);
    expect(got).toHaveLength(26);
    expect(got[0]!.stream).toBe("system");
  });
});
