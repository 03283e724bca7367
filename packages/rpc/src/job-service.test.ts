import { once } from "node:events";
import { createServer } from "node:net";
import { AppError, type Principal } from "@gpuorch/core";
import { credentials, type Server } from "@grpc/grpc-js";
import * as pb from "@gpuorch/proto";
import { abortReason, createMemoryLogger, sleep } from "@gpuorch/runtime";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { bearerMetadata, type Authenticate } from "./auth.js";
import { createJobClient, JobClient } from "./client.js";
import { jobFromProto, jobToProto } from "./convert.js";
import { INTERNAL_ERROR_MESSAGE } from "./errors.js";
import { bidiStreamHandler, type CallContext, type HandlerOptions, serverStreamHandler, unaryHandler } from "./handlers.js";
import { createGrpcServer, listen, stopServer } from "./server.js";

const USER: Principal = { tokenId: "tok-1", teamId: "team-1", teamName: "vision", kind: "user", admin: false };
const AGENT: Principal = { tokenId: "tok-2", teamId: null, teamName: null, kind: "agent", admin: false };
const authenticate: Authenticate = async (token) => (token === "good" ? USER : token === "agent" ? AGENT : null);

const job = {
  id: "0190c3a2-0000-7000-8000-000000000001",
  teamId: "team-1",
  teamName: "vision",
  name: "resnet",
  project: null,
  type: "training" as const,
  framework: "pytorch_ddp" as const,
  executionMode: "single_cluster" as const,
  status: "running" as const,
  statusReason: null,
  priority: 5,
  attempt: 1,
  maxAttempts: 3,
  version: 2,
  gpus: 8,
  specYaml: "name: resnet\n",
  budgetUsd: "10.00",
  deadline: null,
  estimatedCostUsd: null,
  runningCostUsd: "1.5",
  target: null,
  createdAt: new Date("2025-01-02T03:04:05.678Z"),
  updatedAt: new Date("2025-01-02T03:04:06.000Z"),
  scheduledAt: null,
  startedAt: new Date("2025-01-02T03:05:00.000Z"),
  finishedAt: null,
};

function deferred<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const logger = createMemoryLogger();
const calls: { method: string; code: string; seconds: number }[] = [];
let server: Server;
let address: string;
let client: JobClient;
/** Set by the "forever" watch and the slow GetJob: what the handler saw when it ended. */
let handlerEnded = deferred<{ aborted: boolean; sent: number; error: unknown }>();

function opts(method: string): HandlerOptions {
  return { authenticate, logger, method, onCall: (m, code, seconds) => calls.push({ method: m, code, seconds }), kinds: ["user"] };
}

async function untilAborted(ctx: CallContext): Promise<void> {
  if (ctx.signal.aborted) return;
  await once(ctx.signal, "abort");
}

const impl: pb.JobServiceServer = {
  planJob: unaryHandler(opts("JobService/PlanJob"), async () => ({ feasible: false, infeasibleReason: "no offers", options: [], offersConsidered: 0, oldestPriceDate: "", notes: [] })),
  submitJob: unaryHandler(opts("JobService/SubmitJob"), async (req: pb.SubmitJobRequest) => {
    if (req.specYaml === "") {
      throw AppError.invalid(
        "job spec is invalid",
        [
          { field: "resources.gpus", message: "must be at least 1", line: 3, column: 9 },
          { field: "name", message: "required" },
        ],
        "invalid_spec",
      );
    }
    return { id: job.id, status: pb.JobStatus.JOB_STATUS_PENDING, createdAt: job.createdAt, deduplicated: false, name: "resnet" };
  }),
  getJob: unaryHandler(opts("JobService/GetJob"), async (req: pb.GetJobRequest, ctx) => {
    switch (req.id) {
      case "boom":
        throw new Error("connection to postgres://admin:hunter2@db failed");
      case "missing":
        throw AppError.notFound("Job", req.id);
      case "slow": {
        await untilAborted(ctx);
        handlerEnded.resolve({ aborted: ctx.signal.aborted, sent: 0, error: null });
        throw new AppError("ABORTED", "gave up");
      }
      case "late-signal": {
        // Does not look at ctx.signal until well after the client's deadline passed.
        await sleep(300);
        handlerEnded.resolve({ aborted: ctx.signal.aborted, sent: 0, error: ctx.signal.reason });
        throw new AppError("ABORTED", "gave up");
      }
      default:
        return { job: jobToProto({ ...job, id: req.id }), tasks: [] };
    }
  }),
  listJobs: unaryHandler(opts("JobService/ListJobs"), async () => ({ jobs: [jobToProto(job)], nextPageToken: "" })),
  cancelJob: unaryHandler(opts("JobService/CancelJob"), async () => ({ job: jobToProto(job), changed: true })),
  getJobEvents: unaryHandler(opts("JobService/GetJobEvents"), async () => ({ events: [] })),
  listArtifacts: unaryHandler(opts("JobService/ListArtifacts"), async () => ({ artifacts: [] })),
  getJobLogs: serverStreamHandler(opts("JobService/GetJobLogs"), async (_req: pb.GetJobLogsRequest, _ctx, send) => {
    await send({ lines: [] });
  }),
  watchJob: serverStreamHandler(opts("JobService/WatchJob"), async (req: pb.WatchJobRequest, ctx, send) => {
    const [mode, arg] = req.id.split(":");
    const n = Number(arg ?? "0");
    if (mode === "count" || mode === "fail-after") {
      // Big messages, so the transport fills up and send() must wait for 'drain'.
      const big = jobToProto({ ...job, specYaml: "x".repeat(n > 100 ? 16 * 1024 : 10) });
      for (let i = 0; i < n; i++) await send({ job: { ...big, version: String(i) }, event: undefined });
      if (mode === "fail-after") throw AppError.precondition("job vanished", "job_gone");
      return;
    }
    if (mode === "forever") {
      let sent = 0;
      try {
        for (;;) {
          await send({ job: jobToProto({ ...job, version: sent }), event: undefined });
          sent++;
          await sleep(1);
        }
      } catch (error) {
        handlerEnded.resolve({ aborted: ctx.signal.aborted, sent, error });
        throw error;
      }
    }
    throw AppError.invalid(`unknown watch mode ${req.id}`);
  }),
};

const agentImpl: pb.AgentServiceServer = {
  register: unaryHandler({ authenticate, logger, method: "AgentService/Register", kinds: ["agent"] }, async () => ({
    nodeId: "node-1",
    heartbeatIntervalSeconds: 5,
  })),
  connect: bidiStreamHandler(
    { authenticate, logger, method: "AgentService/Connect", kinds: ["agent"] },
    async (requests: AsyncIterable<pb.ConnectRequest>, _ctx, send: (r: pb.ConnectResponse) => Promise<void>) => {
      for await (const req of requests) {
        if (req.heartbeat) await send({ heartbeatAck: { seq: req.heartbeat.seq } });
      }
    },
  ),
};

beforeAll(async () => {
  server = createGrpcServer();
  server.addService(pb.JobServiceService, impl);
  server.addService(pb.AgentServiceService, agentImpl);
  const port = await listen(server, "127.0.0.1", 0);
  address = `127.0.0.1:${port}`;
  client = await JobClient.connect({ address, token: "good", timeoutMs: 5_000 });
});

afterAll(async () => {
  client?.close();
  if (server) await stopServer(server, 1_000);
});

async function rejection(p: Promise<unknown>): Promise<AppError> {
  const e: unknown = await p.then(
    () => {
      throw new Error("expected the call to fail");
    },
    (err: unknown) => err,
  );
  if (!(e instanceof AppError)) throw new Error(`expected an AppError, got ${String(e)}`);
  return e;
}

describe("JobService over real gRPC", () => {
  it("answers an authenticated call and the job converts back", async () => {
    const res = await client.getJob({ id: "j-42" });
    expect(res.job).toBeDefined();
    const back = jobFromProto(res.job!);
    expect(back.id).toBe("j-42");
    expect(back.teamName).toBe("vision");
    expect(back.startedAt).toEqual(job.startedAt);
    expect(calls).toContainEqual(expect.objectContaining({ method: "JobService/GetJob", code: "OK" }));
  });

  it("rejects a missing or invalid token with UNAUTHENTICATED", async () => {
    const raw = new pb.JobServiceClient(address, credentials.createInsecure());
    try {
      const noToken = await new Promise<unknown>((resolve) => raw.getJob({ id: "x" }, (err) => resolve(err)));
      expect(noToken).toMatchObject({ code: 16 });
    } finally {
      raw.close();
    }
    const bad = createJobClient({ address, token: "wrong" });
    try {
      const e = await rejection(bad.getJob({ id: "x" }));
      expect(e.code).toBe("UNAUTHENTICATED");
      expect(e.reason).toBe("unauthenticated");
    } finally {
      bad.close();
    }
  });

  it("rejects a token of the wrong kind with PERMISSION_DENIED", async () => {
    const agentClient = createJobClient({ address, token: "agent" });
    try {
      const e = await rejection(agentClient.listJobs({}));
      expect(e.code).toBe("PERMISSION_DENIED");
    } finally {
      agentClient.close();
    }
  });

  it("round-trips an INVALID_ARGUMENT AppError with reason and fields", async () => {
    const e = await rejection(client.submitJob({ specYaml: "" }));
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.reason).toBe("invalid_spec");
    expect(e.message).toBe("job spec is invalid");
    expect(e.fields).toEqual([
      { field: "resources.gpus", message: "must be at least 1", line: 3, column: 9 },
      { field: "name", message: "required" },
    ]);
    const nf = await rejection(client.getJob({ id: "missing" }));
    expect(nf.code).toBe("NOT_FOUND");
    expect(nf.reason).toBe("job_not_found");
  });

  it("does not leak an internal error's message, and logs it with context", async () => {
    const e = await rejection(client.getJob({ id: "boom" }));
    expect(e.code).toBe("INTERNAL");
    expect(e.message).toBe(INTERNAL_ERROR_MESSAGE);
    expect(JSON.stringify(e.meta) + e.message).not.toContain("hunter2");
    const line = logger.records.find((r) => r.level === "error" && r.msg === "unexpected error in handler");
    expect(line?.fields).toMatchObject({ method: "JobService/GetJob", team: "vision", tokenId: "tok-1" });
    expect((line?.fields["err"] as Error).message).toContain("hunter2");
  });

  it("aborts ctx.signal when the client's deadline passes", async () => {
    handlerEnded = deferred();
    const e = await rejection(client.getJob({ id: "slow" }, { timeoutMs: 100 }));
    expect(e.code).toBe("DEADLINE_EXCEEDED");
    expect((await handlerEnded.promise).aborted).toBe(true);
  });

  it("gives a handler that first asks for ctx.signal after the deadline an aborted signal", async () => {
    handlerEnded = deferred();
    const e = await rejection(client.getJob({ id: "late-signal" }, { timeoutMs: 100 }));
    expect(e.code).toBe("DEADLINE_EXCEEDED");
    const ended = await handlerEnded.promise;
    expect(ended.aborted).toBe(true);
    expect((ended.error as Error).name).toBe("AbortError");
  });

  it("cancels a unary call when the caller's signal aborts", async () => {
    handlerEnded = deferred();
    const ac = new AbortController();
    const p = client.getJob({ id: "slow" }, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error("user gave up")), 50);
    await expect(p).rejects.toThrow("user gave up");
    expect((await handlerEnded.promise).aborted).toBe(true);
  });

  it("streams N messages in order, waiting on backpressure", async () => {
    const n = 300; // 300 × 16 KiB: well past the stream buffers
    const versions: string[] = [];
    for await (const msg of client.watchJob({ id: `count:${n}` })) versions.push(msg.job!.version);
    expect(versions).toEqual(Array.from({ length: n }, (_, i) => String(i)));
  });

  it("delivers messages sent before a stream error, then the error as an AppError", async () => {
    const got: string[] = [];
    const e = await rejection(
      (async () => {
        for await (const msg of client.watchJob({ id: "fail-after:3" })) got.push(msg.job!.version);
      })(),
    );
    expect(got).toEqual(["0", "1", "2"]);
    expect(e.code).toBe("FAILED_PRECONDITION");
    expect(e.reason).toBe("job_gone");
  });

  it("honours client cancellation: the handler's signal aborts and send rejects", async () => {
    handlerEnded = deferred();
    const ac = new AbortController();
    let received = 0;
    for await (const _msg of client.watchJob({ id: "forever" }, ac.signal)) {
      if (++received === 5) ac.abort();
    }
    expect(received).toBe(5);
    const ended = await handlerEnded.promise;
    expect(ended.aborted).toBe(true);
    expect((ended.error as Error).name).toBe("AbortError");
    await vi.waitFor(() =>
      expect(calls).toContainEqual(expect.objectContaining({ method: "JobService/WatchJob", code: "CANCELLED" })),
    );
  });

  it("cancels the call when the consumer stops iterating", async () => {
    handlerEnded = deferred();
    let received = 0;
    for await (const _msg of client.watchJob({ id: "forever" })) {
      if (++received === 3) break;
    }
    expect((await handlerEnded.promise).aborted).toBe(true);
  });

  it("runs a bidirectional stream with the same auth", async () => {
    const raw = new pb.AgentServiceClient(address, credentials.createInsecure());
    try {
      const stream = raw.connect(bearerMetadata("agent"));
      const acks: string[] = [];
      stream.on("data", (r: pb.ConnectResponse) => acks.push(r.heartbeatAck?.seq ?? "?"));
      for (const seq of ["1", "2", "3"]) stream.write({ nodeId: "node-1", heartbeat: { sentAt: new Date(), seq, gpus: [], tasks: [], draining: false } });
      stream.end();
      await once(stream, "status");
      expect(acks).toEqual(["1", "2", "3"]);

      const denied = raw.connect(bearerMetadata("good"));
      const err = await new Promise<unknown>((resolve) => denied.on("error", resolve));
      expect(err).toMatchObject({ code: 7 }); // PERMISSION_DENIED: a user token on the agent API
    } finally {
      raw.close();
    }
  });
});

describe("an unreachable controller", () => {
  it("fails fast with UNAVAILABLE 'cannot reach the controller at …'", async () => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1");
    await once(probe, "listening");
    const port = (probe.address() as { port: number }).port;
    await new Promise((r) => probe.close(r));
    const dead = `127.0.0.1:${port}`;

    const c = createJobClient({ address: dead, token: "good", timeoutMs: 5_000 });
    const started = Date.now();
    try {
      const e = await rejection(c.getJob({ id: "x" }));
      expect(e.code).toBe("UNAVAILABLE");
      expect(e.message).toMatch(new RegExp(`^cannot reach the controller at ${dead}: `));
      expect(Date.now() - started).toBeLessThan(3_000);
    } finally {
      c.close();
    }
    const e2 = await rejection(JobClient.connect({ address: dead, token: "good", timeoutMs: 300 }));
    expect(e2.code).toBe("UNAVAILABLE");
    expect(e2.message).toContain(`cannot reach the controller at ${dead}`);
  });
});

describe("server shutdown", () => {
  it("ends open streams with UNAVAILABLE when the server's lifetime signal aborts", async () => {
    const lifetime = new AbortController();
    const s = createGrpcServer();
    s.addService(pb.JobServiceService, {
      ...impl,
      watchJob: serverStreamHandler(
        { ...opts("JobService/WatchJob"), signal: lifetime.signal },
        async (_req: pb.WatchJobRequest, ctx, send: (r: pb.WatchJobResponse) => Promise<void>) => {
          await send({ job: jobToProto(job), event: undefined });
          await untilAborted(ctx);
          throw abortReason(ctx.signal);
        },
      ),
    });
    const port = await listen(s, "127.0.0.1", 0);
    const c = createJobClient({ address: `127.0.0.1:${port}`, token: "good" });
    try {
      const it = c.watchJob({ id: "x" })[Symbol.asyncIterator]();
      expect((await it.next()).done).toBe(false);
      lifetime.abort();
      const e = await rejection(it.next());
      expect(e.code).toBe("UNAVAILABLE");
      expect(e.reason).toBe("shutting_down");
    } finally {
      c.close();
      await stopServer(s, 100);
    }
  });

  it("stopServer cancels calls still running after the grace period", async () => {
    const s = createGrpcServer();
    s.addService(pb.JobServiceService, impl);
    const port = await listen(s, "127.0.0.1", 0);
    const c = createJobClient({ address: `127.0.0.1:${port}`, token: "good" });
    try {
      handlerEnded = deferred();
      const it = c.watchJob({ id: "forever" })[Symbol.asyncIterator]();
      expect((await it.next()).done).toBe(false);
      const started = Date.now();
      await stopServer(s, 200);
      expect(Date.now() - started).toBeGreaterThanOrEqual(150);
      expect((await handlerEnded.promise).aborted).toBe(true);
      await expect(
        (async () => {
          for (let r = await it.next(); !r.done; r = await it.next());
        })(),
      ).rejects.toBeInstanceOf(AppError);
    } finally {
      c.close();
    }
  });
});
