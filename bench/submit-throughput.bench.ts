/**
 * Submissions per second through gRPC SubmitJob (parse + validate + insert +
 * event, durably committed) with C concurrent clients, on PGlite and on
 * PostgreSQL, with p50/p99 latency per call. Goal on the 2-core development
 * machine: ≥ 2,000 submissions/s on PostgreSQL with p99 < 50 ms.
 *
 * Everything is real: the built controller runs as a child process, each
 * client is its own JobClient (own HTTP/2 connection), PostgreSQL keeps its
 * default durability (fsync, synchronous_commit on).
 *
 * Usage: node bench/dist/submit-throughput.bench.js [--jobs N] [--clients C]
 *          [--warmup W] [--backend pglite|postgresql|both]
 * Env:   BENCH_CONTROLLER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"
 *        adds node flags to the controller (profile where the time goes).
 */
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseBenchArgs } from "./options.js";
import { JobClient } from "@gpuorch/rpc";
import { startPostgres } from "@gpuorch/testing";
import { ControllerProcess, type DatabaseTarget, REPO_ROOT, cpuPerJob, createAdminToken, postgresCpuMs } from "./controller-process.js";
import { figure, percentile } from "./latency.js";

type Backend = "pglite" | "postgresql";

interface Options {
  jobs: number;
  clients: number;
  warmup: number;
  backends: Backend[];
}

interface RunResult {
  jobsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

const USAGE = "usage: submit-throughput.bench.js [--jobs N (10000)] [--clients C (16)] [--warmup W (300)] [--backend pglite|postgresql|both]";

/** A realistic spec: the DDP example when the repository has it. */
const FALLBACK_SPEC = `# ResNet-50 on ImageNet with PyTorch DDP: 16 GPUs over 2 nodes, spot allowed.
version: 1
job:
  name: resnet50-ddp
  type: training
  framework: pytorch_ddp
  project: vision
  estimated_hours: 6
entrypoint:
  uri: https://github.com/pytorch/examples.git
  working_dir: imagenet
  command: [python, main.py]
  args: [--arch, resnet50, --epochs, "90", --batch-size, "256", /data/imagenet]
  env:
    NCCL_DEBUG: WARN
    OMP_NUM_THREADS: "8"
resources:
  gpus: 16
  max_gpus_per_node: 8
  requires_multi_node: true
  gpu_type: [A100-80GB, H100]
  gpu_memory: 80GB
  cpu_memory: 512GB
  storage: 500GB
data:
  dataset: s3://ml-datasets/imagenet/
  size_gb: 150
  locality: prefer
  replication_policy: pre-stage
constraints:
  budget: 900
  allow_spot: true
  min_reliability: 0.9
  allowed_providers: [aws, gcp, azure]
  excluded_regions: [ap-south-1]
  priority: 600
checkpoint:
  interval: 30m
  keep: 3
  uri: s3://ml-checkpoints/resnet50-ddp/
retry:
  max_attempts: 3
`;

/** `job.name`: the first indented `name:` line (the spec's first section is `job:`). */
const JOB_NAME_LINE = /^([ \t]+name:[ \t]*)[a-z0-9][-a-z0-9]*/m;

/**
 * The spec text with its own `job.name` per job, so every submission is a
 * distinct document (as from many users), not one text a cache could answer.
 */
interface SpecTemplate {
  source: string;
  render(name: string): string;
}

function loadSpec(): SpecTemplate {
  const path = join(REPO_ROOT, "examples", "ddp-resnet.yaml");
  const [yaml, source] = existsSync(path)
    ? [readFileSync(path, "utf8"), "examples/ddp-resnet.yaml"]
    : [FALLBACK_SPEC, "inline spec (examples/ddp-resnet.yaml is missing)"];
  if (!JOB_NAME_LINE.test(yaml)) throw new Error(`${source}: no 'name:' line to vary per job`);
  return { source, render: (name) => yaml.replace(JOB_NAME_LINE, `$1${name}`) };
}

function parseOptions(argv: string[]): Options {
  const { values, int } = parseBenchArgs(
    argv,
    { jobs: { type: "string" }, clients: { type: "string" }, warmup: { type: "string" }, backend: { type: "string" } },
    USAGE,
  );
  const backend = typeof values.backend === "string" ? values.backend : "both";
  let backends: Backend[];
  if (backend === "both") backends = ["pglite", "postgresql"];
  else if (backend === "pglite" || backend === "postgresql") backends = [backend];
  else throw new Error(`--backend must be pglite, postgresql or both, got '${backend}'\n${USAGE}`);
  return {
    jobs: int("jobs", 10_000, 1),
    clients: int("clients", 16, 1),
    warmup: int("warmup", 300, 0),
    backends,
  };
}

/** Cleanups still owed; run in reverse on success, failure or a signal. */
const cleanups: Array<{ name: string; fn: () => Promise<void> }> = [];

/** Runs (in reverse) the cleanups registered after the first `keep`. */
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

/**
 * Submits `total` jobs from all clients at once: each client takes the next
 * index and awaits its call, so exactly `clients` calls are in flight. The
 * first failure stops every client.
 */
async function drive(
  clients: JobClient[],
  total: number,
  spec: SpecTemplate,
  nameOf: (i: number) => string,
  onDone?: (done: number) => void,
): Promise<{ latenciesMs: Float64Array; wallMs: number; ids: string[] }> {
  const latenciesMs = new Float64Array(total);
  const ids: string[] = new Array<string>(total);
  let next = 0;
  let done = 0;
  // A holder, not a `let`: TypeScript does not see the closures assign it.
  const state: { failure: Error | null } = { failure: null };
  const started = performance.now();
  await Promise.all(
    clients.map(async (client) => {
      while (state.failure === null) {
        const i = next++;
        if (i >= total) return;
        const name = nameOf(i);
        try {
          const specYaml = spec.render(name);
          const t0 = performance.now();
          const res = await client.submitJob({ specYaml, name, idempotencyKey: name });
          latenciesMs[i] = performance.now() - t0;
          if (res.name !== name) throw new Error(`job ${name} came back named '${res.name}'`);
          if (res.deduplicated) throw new Error(`job ${name} came back deduplicated: its idempotency key was reused`);
          if (!res.id) throw new Error(`job ${name}: SubmitJob answered without an id`);
          ids[i] = res.id;
        } catch (err) {
          state.failure ??= err instanceof Error ? err : new Error(String(err));
          return;
        }
        done++;
        onDone?.(done);
      }
    }),
  );
  if (state.failure !== null) throw state.failure;
  return { latenciesMs, wallMs: performance.now() - started, ids };
}

/** C clients, each its own channel; none is left open if one fails to connect. */
async function connectClients(count: number, address: string, token: string): Promise<JobClient[]> {
  const settled = await Promise.allSettled(
    Array.from({ length: count }, () =>
      JobClient.connect({
        address,
        token,
        timeoutMs: 30_000,
        // grpc-js shares one connection among clients by default; 16 CLIs would have 16.
        channelOptions: { "grpc.use_local_subchannel_pool": 1 },
      }),
    ),
  );
  const clients = settled.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    for (const c of clients) c.close();
    throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
  }
  return clients;
}

async function countJobs(client: JobClient): Promise<Set<string>> {
  const seen = new Set<string>();
  let pageToken = "";
  for (let pages = 0; ; pages++) {
    if (pages > 10_000) throw new Error("ListJobs paging did not end");
    const res = await client.listJobs({ statuses: [], team: "", project: "", pageSize: 1000, pageToken });
    for (const j of res.jobs) {
      if (seen.has(j.id)) throw new Error(`ListJobs returned job ${j.id} twice while paging`);
      seen.add(j.id);
    }
    if (!res.nextPageToken) return seen;
    pageToken = res.nextPageToken;
  }
}

async function checkHttp(base: string, token: string): Promise<void> {
  const res = await fetch(`${base}/v1/jobs?limit=1`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`GET /v1/jobs?limit=1 answered ${res.status}: ${body}`);
  const jobs = (JSON.parse(body) as { jobs?: unknown }).jobs;
  if (!Array.isArray(jobs) || jobs.length !== 1) throw new Error(`GET /v1/jobs?limit=1 should list exactly 1 job: ${body.slice(0, 500)}`);
}

async function runBackend(backend: Backend, opts: Options, spec: SpecTemplate): Promise<RunResult> {
  const log = (msg: string): void => void process.stderr.write(`[${backend}] ${msg}\n`);
  const mark = cleanups.length;
  const workDir = await mkdtemp(join(tmpdir(), `gpuorch-bench-${backend}-`));
  cleanups.push({ name: `rm ${workDir}`, fn: () => rm(workDir, { recursive: true, force: true }) });
  try {
    let target: DatabaseTarget;
    let pgDir: string | null = null;
    if (backend === "postgresql") {
      log("starting PostgreSQL (default durability: fsync on, synchronous_commit on)");
      const pg = await startPostgres({ fast: false });
      pgDir = pg.dir;
      cleanups.push({ name: "stop PostgreSQL", fn: () => pg.stop() });
      target = { databaseUrl: await pg.createDatabase("bench_submit") };
    } else {
      target = { dataDir: join(workDir, "data") };
    }

    // PGlite's data dir is locked while the controller runs: mint the token first.
    const token = await createAdminToken(target);
    const controller = await ControllerProcess.start({ target, workDir });
    let stopped = false;
    cleanups.push({
      name: "kill controller",
      fn: async () => {
        if (!stopped) await controller.kill();
      },
    });
    log(`controller pid ${controller.ready.pid} on ${controller.grpcAddress}, HTTP ${controller.httpBase}`);

    const clients = await connectClients(opts.clients, controller.grpcAddress, token);
    cleanups.push({
      name: "close clients",
      fn: async () => {
        for (const c of clients) c.close();
      },
    });

    const runId = Date.now().toString(36);
    if (opts.warmup > 0) {
      log(`warm-up: ${opts.warmup} jobs`);
      await drive(clients, opts.warmup, spec, (i) => `warm-${runId}-${i}`);
    }

    log(`measuring: ${opts.jobs} jobs, ${opts.clients} clients`);
    const measureStart = performance.now();
    const controllerCpu0 = controller.cpuMs();
    const pgCpu0 = pgDir === null ? null : postgresCpuMs(pgDir);
    const benchCpu0 = process.cpuUsage();
    const step = Math.max(1, Math.min(1000, Math.floor(opts.jobs / 10)));
    const run = await drive(
      clients,
      opts.jobs,
      spec,
      (i) => `bench-${runId}-${i}`,
      (done) => {
        if (done % step === 0 || done === opts.jobs) {
          const rate = done / ((performance.now() - measureStart) / 1000);
          log(`${done}/${opts.jobs} jobs, ${rate.toFixed(0)}/s`);
        }
      },
    );

    const controllerCpu1 = controller.cpuMs();
    const pgCpu1 = pgDir === null ? null : postgresCpuMs(pgDir);
    const benchCpu = process.cpuUsage(benchCpu0);

    // Correctness: the HTTP side answers, and exactly the submitted jobs exist.
    await checkHttp(controller.httpBase, token);
    const expected = opts.warmup + opts.jobs;
    const listed = await countJobs(clients[0]!);
    if (listed.size !== expected) throw new Error(`expected ${expected} jobs (warm-up ${opts.warmup} + ${opts.jobs}), ListJobs pages hold ${listed.size}`);
    const missing = run.ids.filter((id) => !listed.has(id));
    if (missing.length > 0) throw new Error(`${missing.length} submitted jobs are missing from ListJobs, e.g. ${missing.slice(0, 3).join(", ")}`);
    log(`verified: ${listed.size} jobs listed, HTTP /v1/jobs answers`);

    for (const c of clients) c.close();
    stopped = true;
    await controller.stop(15_000);

    const sorted = Float64Array.from(run.latenciesMs).sort();
    const result: RunResult = {
      jobsPerSecond: opts.jobs / (run.wallMs / 1000),
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
    };
    log(
      `${(run.wallMs / 1000).toFixed(2)} s wall; latency p90 ${percentile(sorted, 90).toFixed(1)} ms, ` +
        `p99.9 ${percentile(sorted, 99.9).toFixed(1)} ms, max ${(sorted[sorted.length - 1] ?? 0).toFixed(1)} ms`,
    );
    // Where the 2 cores went: a controller near 1,000 ms of CPU per wall second is the bottleneck.
    const delta = (a: number | null, b: number | null): string => cpuPerJob(a, b, opts.jobs, run.wallMs);
    log(
      `CPU: controller ${delta(controllerCpu0, controllerCpu1)}, ` +
        (pgDir === null ? "" : `PostgreSQL ${delta(pgCpu0, pgCpu1)}, `) +
        `benchmark clients ${delta(0, (benchCpu.user + benchCpu.system) / 1000)}`,
    );
    return result;
  } finally {
    await runCleanups(mark);
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const spec = loadSpec();
  process.stderr.write(`submit-throughput: ${opts.jobs} jobs (+${opts.warmup} warm-up), ${opts.clients} clients, spec: ${spec.source}\n`);
  for (const backend of opts.backends) {
    const r = await runBackend(backend, opts, spec);
    console.log(figure(`submit_throughput_${backend}`, r.jobsPerSecond, "jobs/s"));
    console.log(figure(`submit_latency_p50_${backend}`, r.p50Ms, "ms"));
    console.log(figure(`submit_latency_p99_${backend}`, r.p99Ms, "ms"));
  }
}

let signalled = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (signalled) process.exit(130);
    signalled = true;
    process.stderr.write(`submit-throughput: ${sig}, stopping\n`);
    void runCleanups().finally(() => process.exit(130));
  });
}

main().then(
  () => runCleanups(),
  async (err: unknown) => {
    console.error("submit-throughput: FAILED:", err);
    await runCleanups();
    process.exitCode = 1;
  },
);
