import { randomUUID } from "node:crypto";
import { AppError, type TaskLogChunk } from "@gpuorch/core";
import { type Database, type NewJobLogLine, appendJobLogs, createTeam, insertJob, openDatabase, readJobLogs } from "@gpuorch/db";
import { createLogger } from "@gpuorch/runtime";
import { type TestDatabase, createTestDatabase, newJobInput, waitFor } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LogStore, type LogStoreDeps } from "./log-store.js";

const logger = createLogger({ name: "test", level: "silent" });
const clock = { now: () => new Date("2030-01-01T00:00:00Z") };
const at = new Date("2030-01-01T00:00:01Z");

function chunk(jobId: string, texts: string[], over: Partial<TaskLogChunk> = {}): TaskLogChunk {
  return { taskId: "task-1", jobId, attempt: 1, nodeRank: 0, lines: texts.map((text) => ({ rank: 0, stream: "stdout" as const, text, at })), ...over };
}

describe("LogStore (PostgreSQL)", () => {
  let testDb: TestDatabase;
  let database: Database;
  let teamId: string;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    database = await openDatabase({ url: testDb.url, poolMax: 4 });
    teamId = (await createTeam(database.db, { id: randomUUID(), name: `logstore-${randomUUID().slice(0, 8)}` })).id;
  });

  afterAll(async () => {
    await database.close();
    await testDb.assertNoLeftoverConnections();
  });

  const newJob = async () => (await insertJob(database.db, newJobInput(teamId))).job.id;
  const texts = async (jobId: string) => (await readJobLogs(database.db, { jobId, limit: 100_000 })).map((l) => l.text);
  const store = (over: Partial<LogStoreDeps> = {}) => new LogStore({ db: database.db, clock, logger, flushIntervalMs: 60_000, ...over });

  it("group-commits many chunks of many jobs in ONE write per flush, in arrival order, then notifies subscribers", async () => {
    const [a, b] = [await newJob(), await newJob()];
    const calls: number[] = [];
    const logs = store({ write: async (db, lines, opts) => (calls.push(lines.length), appendJobLogs(db, lines, opts)) });
    const woke: string[] = [];
    const unsubscribe = logs.subscribe(a, () => woke.push("a"));
    for (let i = 0; i < 10; i++) logs.append(chunk(i % 2 ? a : b, [`c${i}-1`, `c${i}-2`]));
    expect(logs.hasPending(a)).toBe(true);
    expect(woke).toEqual([]);
    await logs.flush();
    expect(calls).toEqual([20]);
    expect(woke).toEqual(["a"]);
    expect(logs.hasPending(a)).toBe(false);
    expect(await texts(a)).toEqual(["c1-1", "c1-2", "c3-1", "c3-2", "c5-1", "c5-2", "c7-1", "c7-2", "c9-1", "c9-2"]);
    unsubscribe();
    expect(logs.subscriberCount).toBe(0);
  });

  it("writes at once when flushLines are buffered, without waiting for the timer; stop() writes the rest", async () => {
    const job = await newJob();
    const logs = store({ flushLines: 5 });
    logs.start();
    logs.append(chunk(job, ["1", "2", "3", "4", "5", "6"]));
    await waitFor(async () => (await texts(job)).length >= 5, { timeoutMs: 5_000, intervalMs: 10 });
    logs.append(chunk(job, ["7"]));
    await logs.stop();
    expect(logs.state).toBe("stopped");
    expect(await texts(job)).toEqual(["1", "2", "3", "4", "5", "6", "7"]);
  });

  it("keeps lines of a failed flush at the head of the buffer and retries them in order", async () => {
    const job = await newJob();
    let failing = true;
    const logs = store({
      write: async (db, lines, opts) => {
        if (failing) throw new AppError("UNAVAILABLE", "database down", { reason: "database_unavailable" });
        return appendJobLogs(db, lines, opts);
      },
    });
    logs.append(chunk(job, ["a", "b"]));
    await logs.flush();
    logs.append(chunk(job, ["c"]));
    await logs.flush();
    expect(logs.bufferedLines).toBe(3);
    expect(logs.hasPending(job)).toBe(true);
    failing = false;
    await logs.flush();
    expect(logs.bufferedLines).toBe(0);
    expect(await texts(job)).toEqual(["a", "b", "c"]);
  });

  it("bounds the buffer while the database is down: drops the oldest lines and stores a marker with the count first", async () => {
    const job = await newJob();
    let failing = true;
    const dropped: number[] = [];
    const logs = store({
      // Room for exactly 10 three-character lines (2 bytes per UTF-16 unit + 96 per line).
      maxBufferedBytes: 10 * (3 * 2 + 96),
      onDropped: (n) => dropped.push(n),
      write: async (db, lines, opts) => {
        if (failing) throw new AppError("UNAVAILABLE", "database down", { reason: "database_unavailable" });
        return appendJobLogs(db, lines, opts);
      },
    });
    for (let i = 1; i <= 30; i++) logs.append(chunk(job, [`l${String(i).padStart(2, "0")}`], { nodeRank: 1 }));
    await logs.flush();
    expect(logs.bufferedLines).toBe(10);
    expect(dropped.reduce((x, y) => x + y, 0)).toBe(20);
    failing = false;
    await logs.flush();
    expect(logs.hasPending(job)).toBe(false);
    const got = await readJobLogs(database.db, { jobId: job, limit: 100 });
    expect(got[0]).toMatchObject({ stream: "system", nodeRank: 1, text: expect.stringContaining("20 lines of node rank 1 dropped") });
    expect(got.slice(1).map((l) => l.text)).toEqual(Array.from({ length: 10 }, (_, i) => `l${i + 21}`));
  });

  it("caps long lines at maxLineBytes with a note, never splitting a character", async () => {
    const job = await newJob();
    const logs = store({ maxLineBytes: 1024 });
    logs.append(chunk(job, ["é".repeat(5000), "short"]));
    await logs.flush();
    const [long, short] = await texts(job);
    expect(Buffer.byteLength(long!, "utf8")).toBeLessThanOrEqual(1024);
    expect(long).toMatch(/^é+ …\[gpuorch: line truncated, 10000 bytes > 1024\]$/);
    expect(short).toBe("short");
  });

  it("drops a batch the database keeps rejecting for its content (after 3 tries) so other lines flow again", async () => {
    const job = await newJob();
    let calls = 0;
    const logs = store({
      write: async (db, lines: readonly NewJobLogLine[], opts) => {
        calls++;
        if (lines.some((l) => l.text === "poison")) throw AppError.invalid("rejected");
        return appendJobLogs(db, lines, opts);
      },
    });
    logs.append(chunk(job, ["poison"]));
    await logs.flush();
    await logs.flush();
    expect(logs.bufferedLines).toBe(1);
    await logs.flush();
    expect(logs.bufferedLines).toBe(0);
    expect(logs.hasPending(job)).toBe(false);
    logs.append(chunk(job, ["fine"]));
    await logs.flush();
    expect(calls).toBe(4);
    expect(await texts(job)).toEqual(["fine"]);
  });

  it("skips lines of unknown jobs without blocking the others", async () => {
    const job = await newJob();
    const logs = store();
    logs.append(chunk(randomUUID(), ["ghost"]));
    logs.append(chunk(job, ["real"]));
    await logs.flush();
    expect(logs.bufferedLines).toBe(0);
    expect(await texts(job)).toEqual(["real"]);
  });
});
