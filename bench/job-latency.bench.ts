/**
 * Submit-to-running latency of a trivial `command` job (`true`) on idle
 * agents: from the start of the client's SubmitJob call to the moment the
 * client receives the job's `running` event on WatchJob, and on to
 * `completed`. Goal: p50 < 100 ms.
 *
 * Everything is real: the built controller and `gpuorch-agent run` (with
 * simulated GPUs) run as child processes, jobs go through gRPC SubmitJob and
 * WatchJob, the agent spawns the job's process. With --concurrency 1 (the
 * default) each job is submitted once the previous one is completed, so every
 * job finds an idle GPU; with C > 1, C jobs are in flight at once (each from
 * its own client), and --agents × --gpus should be ≥ C so none queues.
 *
 * Usage: node bench/dist/job-latency.bench.js [--jobs N (200)] [--warmup W (10)]
 *          [--concurrency C (1)] [--agents A (1)] [--gpus G (8)] [--pglite | --backend pglite|postgresql|both]
 *          [--scheduler-interval-ms MS] [--log-level LEVEL (warn)] [--job-timeout-ms MS (60000)]
 */
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { JobClient, NodeClient } from "@gpuorch/rpc";
import { JobStatus, NodeState } from "@gpuorch/proto";
import { startPostgres } from "@gpuorch/testing";
import { AgentProcess, writeSimulatedCapture } from "./agent-process.js";
import { ControllerProcess, type DatabaseTarget, createAdminToken, createAgentToken } from "./controller-process.js";
import { figure, percentile } from "./latency.js";
import { parseBenchArgs } from "./options.js";

type Backend = "pglite" | "postgresql";

interface Options {
  jobs: number;
  warmup: number;
  concurrency: number;
  agents: number;
  gpus: number;
  backends: Backend[];
  schedulerIntervalMs: number | null;
  logLevel: string;
  jobTimeoutMs: number;
}

const USAGE =
  "usage: job-latency.bench.js [--jobs N (200)] [--warmup W (10)] [--concurrency C (1)] [--agents A (1)] [--gpus G per agent (8)]\n" +
  "         [--pglite | --backend pglite|postgresql|both (postgresql)] [--scheduler-interval-ms MS (controller default)]\n" +
  "         [--log-level LEVEL (warn; controller and agents)] [--job-timeout-ms MS (60000)]";

/** The trivial job: one GPU, `true`, nothing to fetch. */
function specFor(name: string): string {
  return ["version: 1", `job: {name: ${name}, type: eval, framework: command}`, 'entrypoint: {command: "true"}', "resources: {gpus: 1}", ""].join("\n");
}

function parseOptions(argv: string[]): Options {
  const str = { type: "string" } as const;
  const { values, int } = parseBenchArgs(
    argv,
    {
      jobs: str,
      warmup: str,
      concurrency: str,
      agents: str,
      gpus: str,
      backend: str,
      pglite: { type: "boolean" },
      "scheduler-interval-ms": str,
      "log-level": str,
      "job-timeout-ms": str,
      // `bench submit …` hands every submit* benchmark the same flags; submit-throughput's --clients means nothing here.
      clients: str,
    },
    USAGE,
  );
  let backends: Backend[];
  const backend = typeof values.backend === "string" ? values.backend : values.pglite ? "pglite" : "postgresql";
  if (values.pglite && values.backend !== undefined && values.backend !== "pglite") throw new Error(`--pglite contradicts --backend ${String(values.backend)}\n${USAGE}`);
  if (backend === "both") backends = ["postgresql", "pglite"];
  else if (backend === "pglite" || backend === "postgresql") backends = [backend];
  else throw new Error(`--backend must be pglite, postgresql or both, got '${backend}'\n${USAGE}`);
  const logLevel = typeof values["log-level"] === "string" ? values["log-level"] : "warn";
  return {
    jobs: int("jobs", 200, 1),
    warmup: int("warmup", 10, 0),
    concurrency: int("concurrency", 1, 1),
    agents: int("agents", 1, 1),
    gpus: int("gpus", 8, 1),
    backends,
    schedulerIntervalMs: values["scheduler-interval-ms"] === undefined ? null : int("scheduler-interval-ms", 1000, 10),
    logLevel,
    jobTimeoutMs: int("job-timeout-ms", 60_000, 1000),
  };
}

/** Cleanups still owed; run in reverse on success, failure or a signal. */
const cleanups: Array<{ name: string; fn: () => Promise<void> }> = [];

async function runCleanups(keep = 0): Promise<void> {
  while (cleanups.length > keep) {
    const c = cleanups.pop()!;
    try {
      await c.fn();
    } catch (err) {
      console.error(`cleanup '${c.name}' failed:`, err);
    }
  }
}

/** Wall-clock ms since the epoch with sub-ms precision, comparable with the controller's timestamps (same machine). */
const wallNow = (): number => performance.timeOrigin + performance.now();

/** One job's timings, ms after the start of its SubmitJob call. */
interface JobTiming {
  /** SubmitJob answered. */
  submitMs: number;
  /** The client received the `running` / `completed` event on WatchJob. */
  runningMs: number;
  completedMs: number;
  /** The controller's event timestamps (`created_at`: the start of the transaction that wrote the event). */
  server: Partial<Record<Stage, number>>;
}

type Stage = "pending" | "scheduled" | "provisioning" | "running" | "completed";
const STATUS_NAME: Partial<Record<JobStatus, Stage>> = {
  [JobStatus.JOB_STATUS_PENDING]: "pending",
  [JobStatus.JOB_STATUS_SCHEDULED]: "scheduled",
  [JobStatus.JOB_STATUS_PROVISIONING]: "provisioning",
  [JobStatus.JOB_STATUS_RUNNING]: "running",
  [JobStatus.JOB_STATUS_COMPLETED]: "completed",
};

/** Submits one job and follows it on WatchJob until it is completed; any other end fails. */
async function runJob(client: JobClient, name: string, timeoutMs: number): Promise<JobTiming> {
  const t0 = performance.now();
  const w0 = wallNow();
  const res = await client.submitJob({ specYaml: specFor(name), name, idempotencyKey: name });
  const submitMs = performance.now() - t0;
  if (!res.id || res.deduplicated) throw new Error(`job ${name}: SubmitJob answered ${JSON.stringify({ id: res.id, deduplicated: res.deduplicated })}`);
  const timing: JobTiming = { submitMs, runningMs: NaN, completedMs: NaN, server: {} };
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new Error(`job ${name} (${res.id}) not completed within ${timeoutMs} ms`)), timeoutMs);
  let last = "pending";
  try {
    for await (const msg of client.watchJob({ id: res.id }, abort.signal)) {
      const ev = msg.event;
      if (!ev) continue; // the snapshot
      const at = performance.now() - t0;
      const stage = STATUS_NAME[ev.toStatus];
      if (ev.createdAt && stage) timing.server[stage] = ev.createdAt.getTime() - w0;
      last = stage ?? `status ${ev.toStatus}`;
      if (ev.toStatus === JobStatus.JOB_STATUS_RUNNING) timing.runningMs = at;
      else if (ev.toStatus === JobStatus.JOB_STATUS_COMPLETED) {
        timing.completedMs = at;
        break;
      } else if (stage === undefined) {
        throw new Error(`job ${name} (${res.id}) went to ${JobStatus[ev.toStatus]}: ${ev.reason || msg.job?.statusReason || "no reason"}`);
      }
    }
  } catch (err) {
    if (abort.signal.aborted) throw new Error(`${(abort.signal.reason as Error).message}; last status ${last}`, { cause: err });
    throw err;
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  if (Number.isNaN(timing.completedMs)) throw new Error(`job ${name} (${res.id}): WatchJob ended before completed (last status ${last})`);
  if (Number.isNaN(timing.runningMs)) throw new Error(`job ${name} (${res.id}) completed without a running event`);
  return timing;
}

/** `total` jobs, `clients.length` in flight at once (each client runs its jobs one after another). */
async function drive(
  clients: JobClient[],
  total: number,
  nameOf: (i: number) => string,
  timeoutMs: number,
  onDone?: (done: number) => void,
): Promise<{ timings: JobTiming[]; wallMs: number }> {
  const timings: JobTiming[] = new Array<JobTiming>(total);
  let next = 0;
  let done = 0;
  const state: { failure: Error | null } = { failure: null };
  const started = performance.now();
  await Promise.all(
    clients.map(async (client) => {
      while (state.failure === null) {
        const i = next++;
        if (i >= total) return;
        try {
          timings[i] = await runJob(client, nameOf(i), timeoutMs);
        } catch (err) {
          state.failure ??= err instanceof Error ? err : new Error(String(err));
          return;
        }
        onDone?.(++done);
      }
    }),
  );
  if (state.failure !== null) throw state.failure;
  return { timings, wallMs: performance.now() - started };
}

/** Waits until `count` nodes are ready with all their GPUs and have sent a heartbeat (their Connect stream is up). */
async function waitForNodes(address: string, token: string, names: string[], gpus: number, timeoutMs: number): Promise<void> {
  const nodes = new NodeClient({ address, token });
  const deadline = performance.now() + timeoutMs;
  let seen = "";
  try {
    for (;;) {
      const res = await nodes.listNodes({}, { timeoutMs: 5_000 }).catch((err: unknown) => {
        seen = String(err);
        return null;
      });
      if (res) {
        const ok = res.nodes.filter(
          (n) => names.includes(n.hostname) && n.state === NodeState.NODE_STATE_READY && n.gpus.length === gpus && n.lastHeartbeatAt !== undefined,
        );
        seen = res.nodes.map((n) => `${n.hostname} ${NodeState[n.state]} ${n.gpus.length} GPUs${n.lastHeartbeatAt ? "" : " no heartbeat yet"}`).join("; ");
        if (ok.length === names.length) return;
      }
      if (performance.now() > deadline) throw new Error(`agents not ready within ${timeoutMs} ms; nodes: ${seen || "none"}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    nodes.close();
  }
}

async function connectClients(count: number, address: string, token: string): Promise<JobClient[]> {
  const settled = await Promise.allSettled(
    Array.from({ length: count }, () => JobClient.connect({ address, token, timeoutMs: 30_000, channelOptions: { "grpc.use_local_subchannel_pool": 1 } })),
  );
  const clients = settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    for (const c of clients) c.close();
    throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
  }
  return clients;
}

interface Summary {
  running: Float64Array;
  completed: Float64Array;
  jobsPerSecond: number;
}

const median = (xs: number[]): number => percentile(Float64Array.from(xs).sort(), 50);
const fmt = (ms: number): string => `${ms.toFixed(1)} ms`;

/** Where a job's time went, medians over all jobs, from the controller's event timestamps (stderr). */
function logBreakdown(log: (msg: string) => void, timings: JobTiming[]): void {
  const diff = (from: (t: JobTiming) => number | undefined, to: (t: JobTiming) => number | undefined): string => {
    const xs = timings.map((t) => (to(t) ?? NaN) - (from(t) ?? NaN)).filter((x) => Number.isFinite(x));
    if (xs.length === 0) return "n/a";
    const sorted = Float64Array.from(xs).sort();
    return `p50 ${fmt(percentile(sorted, 50))}, p99 ${fmt(percentile(sorted, 99))}`;
  };
  const s = (k: Stage) => (t: JobTiming) => t.server[k];
  log("breakdown (event created_at = start of the transaction that wrote it; same machine clock):");
  log(`  submit call start   → pending event      ${diff(() => 0, s("pending"))}`);
  log(`  SubmitJob answered                       ${diff(() => 0, (t) => t.submitMs)}`);
  log(`  pending             → scheduled          ${diff(s("pending"), s("scheduled"))}   (scheduler wake + pass start)`);
  log(`  scheduled           → provisioning       ${diff(s("scheduled"), s("provisioning"))}   (pass, commit, launch sent)`);
  log(`  provisioning        → running            ${diff(s("provisioning"), s("running"))}   (agent starts the process, reports; controller judges)`);
  log(`  running event       → client receives it ${diff(s("running"), (t) => t.runningMs)}   (commit, notify, WatchJob query, delivery)`);
  log(`  running             → completed          ${diff(s("running"), s("completed"))}`);
  log(`  completed event     → client receives it ${diff(s("completed"), (t) => t.completedMs)}`);
  log(`  submit → running event (server clock) median ${fmt(median(timings.map((t) => t.server.running ?? NaN).filter(Number.isFinite)))}`);
}

async function runBackend(backend: Backend, opts: Options): Promise<Summary> {
  const log = (msg: string): void => void process.stderr.write(`[${backend}] ${msg}\n`);
  const mark = cleanups.length;
  const workDir = await mkdtemp(join(tmpdir(), `gpuorch-bench-s2r-${backend}-`));
  cleanups.push({ name: `rm ${workDir}`, fn: () => rm(workDir, { recursive: true, force: true }) });
  try {
    let target: DatabaseTarget;
    if (backend === "postgresql") {
      log("starting PostgreSQL (default durability: fsync on, synchronous_commit on)");
      const pg = await startPostgres({ fast: false });
      cleanups.push({ name: "stop PostgreSQL", fn: () => pg.stop() });
      target = { databaseUrl: await pg.createDatabase("bench_s2r") };
    } else {
      target = { dataDir: join(workDir, "data") };
    }
    // PGlite's data dir is locked while the controller runs: mint the tokens first.
    const adminToken = await createAdminToken(target);
    const agentToken = await createAgentToken(target, "bench");

    const controller = await ControllerProcess.start({
      target,
      workDir,
      extraArgs: [
        "--log-level",
        opts.logLevel,
        ...(opts.schedulerIntervalMs !== null ? ["--scheduler-interval-ms", String(opts.schedulerIntervalMs)] : []),
      ],
    });
    let stopped = false;
    cleanups.push({
      name: "kill controller",
      fn: async () => {
        if (!stopped) await controller.kill();
      },
    });
    log(`controller pid ${controller.ready.pid} on ${controller.grpcAddress}`);

    const capture = join(workDir, `sim-${opts.gpus}gpu.xml`);
    await writeSimulatedCapture(capture, opts.gpus);
    const agents: AgentProcess[] = [];
    const names: string[] = [];
    for (let a = 0; a < opts.agents; a++) {
      const nodeName = `bench-node-${a}`;
      const dir = join(workDir, `agent-${a}`);
      await mkdir(dir, { recursive: true });
      const agent = AgentProcess.start({
        controller: controller.grpcAddress,
        token: agentToken,
        workDir: dir,
        nodeName,
        captureFile: capture,
        heartbeatSeconds: 1,
        logLevel: opts.logLevel,
      });
      agents.push(agent);
      names.push(nodeName);
      cleanups.push({ name: `stop agent ${nodeName}`, fn: () => agent.stop() });
    }
    await waitForNodes(controller.grpcAddress, adminToken, names, opts.gpus, 60_000);
    log(`${opts.agents} agent(s) ready, ${opts.gpus} simulated GPUs each`);
    if (opts.concurrency > opts.agents * opts.gpus) log(`note: --concurrency ${opts.concurrency} > ${opts.agents * opts.gpus} GPUs: jobs will queue`);

    const clients = await connectClients(opts.concurrency, controller.grpcAddress, adminToken);
    cleanups.push({
      name: "close clients",
      fn: async () => {
        for (const c of clients) c.close();
      },
    });
    const runId = Date.now().toString(36);
    if (opts.warmup > 0) {
      log(`warm-up: ${opts.warmup} jobs`);
      await drive(clients, opts.warmup, (i) => `warm-${runId}-${i}`, opts.jobTimeoutMs);
    }

    log(`measuring: ${opts.jobs} jobs, ${opts.concurrency} in flight`);
    const cpu0 = { controller: controller.cpuMs(), agents: agents.map((a) => a.cpuMs()), bench: process.cpuUsage() };
    const step = Math.max(1, Math.floor(opts.jobs / 5));
    const measureStart = performance.now();
    const run = await drive(
      clients,
      opts.jobs,
      (i) => `s2r-${runId}-${i}`,
      opts.jobTimeoutMs,
      (done) => {
        if (done % step === 0) log(`${done}/${opts.jobs} jobs, ${(done / ((performance.now() - measureStart) / 1000)).toFixed(1)}/s`);
      },
    );
    const controllerCpu = controller.cpuMs();
    const agentCpu = agents.map((a, i) => {
      const now = a.cpuMs();
      const before = cpu0.agents[i];
      return now !== null && before !== null && before !== undefined ? now - before : null;
    });
    const benchCpu = process.cpuUsage(cpu0.bench);

    const running = Float64Array.from(run.timings.map((t) => t.runningMs)).sort();
    const completed = Float64Array.from(run.timings.map((t) => t.completedMs)).sort();
    const submit = Float64Array.from(run.timings.map((t) => t.submitMs)).sort();
    log(
      `${(run.wallMs / 1000).toFixed(2)} s wall; submit→running p90 ${fmt(percentile(running, 90))}, min ${fmt(running[0] ?? NaN)}; ` +
        `submit→completed p90 ${fmt(percentile(completed, 90))}; SubmitJob call p50 ${fmt(percentile(submit, 50))}, p99 ${fmt(percentile(submit, 99))}`,
    );
    logBreakdown(log, run.timings);
    const perJob = (ms: number | null): string => (ms === null ? "n/a" : `${(ms / opts.jobs).toFixed(2)} ms/job`);
    const agentSum = agentCpu.every((x) => x !== null) ? agentCpu.reduce<number>((s, x) => s + (x ?? 0), 0) : null;
    log(
      `CPU: controller ${perJob(controllerCpu !== null && cpu0.controller !== null ? controllerCpu - cpu0.controller : null)}, ` +
        `agents ${perJob(agentSum)}, benchmark client ${perJob((benchCpu.user + benchCpu.system) / 1000)}`,
    );
    for (const a of agents) if (a.exited) throw new Error(`agent pid ${a.pid} exited during the run`);

    for (const c of clients) c.close();
    for (const a of agents) await a.stop();
    stopped = true;
    await controller.stop(15_000);
    return { running, completed, jobsPerSecond: opts.jobs / (run.wallMs / 1000) };
  } finally {
    await runCleanups(mark);
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  process.stderr.write(
    `job-latency: ${opts.jobs} jobs (+${opts.warmup} warm-up), concurrency ${opts.concurrency}, ${opts.agents} agent(s) × ${opts.gpus} GPUs, ` +
      `latency = client wall clock from SubmitJob call start to receipt of the WatchJob event\n`,
  );
  for (const backend of opts.backends) {
    const r = await runBackend(backend, opts);
    const suffix = `${backend}${opts.concurrency > 1 ? `_c${opts.concurrency}` : ""}`;
    console.log(figure(`submit_to_running_p50_${suffix}`, percentile(r.running, 50), "ms"));
    console.log(figure(`submit_to_running_p99_${suffix}`, percentile(r.running, 99), "ms"));
    console.log(figure(`submit_to_running_max_${suffix}`, r.running[r.running.length - 1] ?? NaN, "ms"));
    console.log(figure(`submit_to_completed_p50_${suffix}`, percentile(r.completed, 50), "ms"));
    console.log(figure(`submit_to_completed_p99_${suffix}`, percentile(r.completed, 99), "ms"));
    console.log(figure(`submit_to_completed_max_${suffix}`, r.completed[r.completed.length - 1] ?? NaN, "ms"));
    console.log(figure(`submit_to_completed_throughput_${suffix}`, r.jobsPerSecond, "jobs/s"));
  }
}

let signalled = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (signalled) process.exit(130);
    signalled = true;
    process.stderr.write(`job-latency: ${sig}, stopping\n`);
    void runCleanups().finally(() => process.exit(130));
  });
}

main().then(
  () => runCleanups(),
  async (err: unknown) => {
    console.error("submit-to-running: FAILED:", err);
    await runCleanups();
    process.exitCode = 1;
  },
);
