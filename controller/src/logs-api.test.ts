import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { AppError, type Principal, type TaskLogChunk } from "@gpuorch/core";
import { type Database, createTeam, insertJob, openDatabase, transitionJob } from "@gpuorch/db";
import { JobServiceService } from "@gpuorch/proto";
import { type Authenticate, JobClient, createGrpcServer, jobLogLineFromProto, listen, stopServer } from "@gpuorch/rpc";
import { createLogger } from "@gpuorch/runtime";
import { type TestDatabase, createTestDatabase, newJobInput, waitFor } from "@gpuorch/testing";
import type { Server, UntypedServiceImplementation } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createJobServiceImpl } from "./grpc-service.js";
import { createHttpAdmin } from "./http-admin.js";
import { JobNotifier } from "./job-notifier.js";
import type { JobsApi } from "./jobs-api.js";
import { LogStore } from "./log-store.js";
import { LogsApi } from "./logs-api.js";
import { createControllerMetrics } from "./metrics.js";

const logger = createLogger({ name: "test", level: "silent" });
const at = new Date("2030-01-01T00:00:01Z");

function chunk(jobId: string, texts: string[], over: Partial<TaskLogChunk> & { rank?: number } = {}): TaskLogChunk {
  const { rank = 0, ...rest } = over;
  return { taskId: "t", jobId, attempt: 1, nodeRank: 0, lines: texts.map((text) => ({ rank, stream: "stdout" as const, text, at })), ...rest };
}

describe("GetJobLogs over real gRPC and GET /v1/jobs/{id}/logs (PostgreSQL)", () => {
  let testDb: TestDatabase;
  let database: Database;
  let server: Server;
  let http: ReturnType<typeof createHttpAdmin>;
  let baseUrl: string;
  let logs: LogStore;
  const notifier = new JobNotifier();
  const principals = new Map<string, Principal>();
  const clients: JobClient[] = [];
  let address: string;
  let alphaTeam: string;

  const client = (token: string) => {
    const c = new JobClient({ address, token, timeoutMs: 5_000 });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    testDb = await createTestDatabase();
    database = await openDatabase({ url: testDb.url, poolMax: 6 });
    const alpha = await createTeam(database.db, { id: randomUUID(), name: `alpha-${randomUUID().slice(0, 6)}` });
    const beta = await createTeam(database.db, { id: randomUUID(), name: `beta-${randomUUID().slice(0, 6)}` });
    alphaTeam = alpha.id;
    principals.set("alpha", { tokenId: "tok-alpha", teamId: alpha.id, teamName: alpha.name, kind: "user", admin: false });
    principals.set("beta", { tokenId: "tok-beta", teamId: beta.id, teamName: beta.name, kind: "user", admin: false });
    const authenticate: Authenticate = async (token) => principals.get(token) ?? null;
    logs = new LogStore({ db: database.db, clock: { now: () => new Date() }, logger, flushIntervalMs: 20 });
    logs.start();
    const logsApi = new LogsApi({ db: database.db, logs, notifier, logger, pollMs: 50, pageLines: 7, lingerMs: 50 });
    server = createGrpcServer();
    // Only GetJobLogs is exercised: the job API itself is not needed.
    server.addService(JobServiceService, createJobServiceImpl({ api: {} as JobsApi, logsApi, plan: () => Promise.reject(new Error("not used")), authenticate, logger }) as unknown as UntypedServiceImplementation);
    address = `127.0.0.1:${await listen(server, "127.0.0.1", 0)}`;
    http = createHttpAdmin({
      api: {} as JobsApi,
      logsApi,
      authenticate,
      logger,
      metrics: createControllerMetrics(async () => ({}) as never),
      metricsAuth: false,
      ready: async () => true,
    });
    await new Promise<void>((resolve) => http.server.listen(0, "127.0.0.1", resolve));
    baseUrl = `http://127.0.0.1:${(http.server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await stopServer(server, 1_000);
    await new Promise<void>((resolve) => http.server.close(() => resolve()));
    await logs.stop();
    await database.close();
    await testDb.assertNoLeftoverConnections();
  });

  const newJob = async () => (await insertJob(database.db, newJobInput(alphaTeam))).job.id;
  const to = async (jobId: string, ...path: ("scheduled" | "provisioning" | "running" | "completed" | "failed")[]) => {
    for (const s of path) await transitionJob(database.db, { jobId, to: s, reason: s, actor: "test" });
    notifier.notify(jobId);
  };
  const collect = async (token: string, req: Parameters<JobClient["getJobLogs"]>[0], signal?: AbortSignal) => {
    const out: ReturnType<typeof jobLogLineFromProto>[] = [];
    for await (const msg of client(token).getJobLogs(req, signal)) out.push(...msg.lines.map(jobLogLineFromProto));
    return out;
  };
  const rejection = async (p: Promise<unknown>): Promise<AppError> => {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(AppError);
      return e as AppError;
    }
    throw new Error("expected a rejection");
  };

  it("streams every stored line in order across pages, with tail and rank filters", async () => {
    const job = await newJob();
    logs.append(chunk(job, Array.from({ length: 20 }, (_, i) => `line ${i + 1}`)));
    logs.append(chunk(job, ["from rank 3"], { rank: 3 }));
    await logs.flush();
    const all = await collect("alpha", { jobId: job });
    expect(all.map((l) => l.text)).toEqual([...Array.from({ length: 20 }, (_, i) => `line ${i + 1}`), "from rank 3"]);
    expect(all[0]).toMatchObject({ attempt: 1, rank: 0, nodeRank: 0, stream: "stdout", at });
    // tail 10 spans two pages of 7.
    expect((await collect("alpha", { jobId: job, tail: 10 })).map((l) => l.text)).toEqual([...Array.from({ length: 9 }, (_, i) => `line ${i + 12}`), "from rank 3"]);
    expect((await collect("alpha", { jobId: job, rank: 3 })).map((l) => l.text)).toEqual(["from rank 3"]);
    const after = all[17]!.seq;
    expect((await collect("alpha", { jobId: job, afterSeq: String(after) })).map((l) => l.text)).toEqual(["line 19", "line 20", "from rank 3"]);
  });

  it("answers another team's job as NOT_FOUND and names the bad field", async () => {
    const job = await newJob();
    expect((await rejection(collect("beta", { jobId: job }))).code).toBe("NOT_FOUND");
    expect((await rejection(collect("alpha", { jobId: randomUUID() }))).code).toBe("NOT_FOUND");
    const tail = await rejection(collect("alpha", { jobId: job, tail: -1 }));
    expect(tail.code).toBe("INVALID_ARGUMENT");
    expect(tail.fields[0]?.field).toBe("tail");
    const rank = await rejection(collect("alpha", { jobId: job, rank: -2 }));
    expect(rank.fields[0]?.field).toBe("rank");
  });

  it("follows: sends stored lines, then new ones as they are written, and ends once the job is terminal", async () => {
    const job = await newJob();
    await to(job, "scheduled", "provisioning", "running");
    logs.append(chunk(job, ["before"]));
    await logs.flush();
    const seen: string[] = [];
    let ended = false;
    const following = (async () => {
      for await (const msg of client("alpha").getJobLogs({ jobId: job, follow: true })) seen.push(...msg.lines.map((l) => l.text));
      ended = true;
    })();
    await waitFor(async () => seen.length === 1, { timeoutMs: 5_000, intervalMs: 10 });
    logs.append(chunk(job, ["live 1", "live 2"]));
    await waitFor(async () => seen.length === 3, { timeoutMs: 5_000, intervalMs: 10 });
    expect(ended).toBe(false);
    // The last lines arrive just before the job ends: the stream still carries them.
    logs.append(chunk(job, ["last"]));
    await to(job, "completed");
    await following;
    expect(seen).toEqual(["before", "live 1", "live 2", "last"]);
  });

  it("follow of a job already terminal returns what is stored and ends", async () => {
    const job = await newJob();
    logs.append(chunk(job, ["only"]));
    await logs.flush();
    await to(job, "failed");
    expect((await collect("alpha", { jobId: job, follow: true })).map((l) => l.text)).toEqual(["only"]);
  });

  it("a client that cancels a follow releases its subscription on the server", async () => {
    const job = await newJob();
    await to(job, "scheduled");
    const before = logs.subscriberCount;
    const ac = new AbortController();
    const following = collect("alpha", { jobId: job, follow: true }, ac.signal);
    await waitFor(async () => logs.subscriberCount === before + 1, { timeoutMs: 5_000, intervalMs: 10 });
    ac.abort();
    expect(await following).toEqual([]);
    await waitFor(async () => logs.subscriberCount === before, { timeoutMs: 5_000, intervalMs: 10 });
  });

  it("HTTP returns one page of lines as JSON with the after_seq of the next page, and 404 for another team", async () => {
    const job = await newJob();
    logs.append(chunk(job, ["a", "b", "c"]));
    await logs.flush();
    const get = (path: string, token = "alpha") => fetch(`${baseUrl}${path}`, { headers: { authorization: `Bearer ${token}` } });
    const res = await get(`/v1/jobs/${job}/logs?limit=2`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { lines: { seq: number; text: string; node_rank: number; stream: string; at: string }[]; next_after_seq: number | null };
    expect(body.lines.map((l) => l.text)).toEqual(["a", "b"]);
    expect(body.lines[0]).toMatchObject({ node_rank: 0, stream: "stdout", at: at.toISOString() });
    expect(body.next_after_seq).toBe(body.lines[1]!.seq);
    const next = (await (await get(`/v1/jobs/${job}/logs?after_seq=${body.next_after_seq}`)).json()) as typeof body;
    expect(next).toMatchObject({ lines: [{ text: "c" }], next_after_seq: null });
    expect(((await (await get(`/v1/jobs/${job}/logs?tail=1`)).json()) as typeof body).lines.map((l) => l.text)).toEqual(["c"]);
    expect((await get(`/v1/jobs/${job}/logs`, "beta")).status).toBe(404);
    const bad = await get(`/v1/jobs/${job}/logs?rank=-1`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { details: { field: string } } }).error.details.field).toBe("rank");
  });
});
