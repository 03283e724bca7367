/**
 * Heartbeat ingestion: N simulated agents (8 GPUs each) register and keep one
 * AgentService Connect stream each, sending one heartbeat per node per second
 * (spread evenly over the second) to one controller on PostgreSQL (default
 * durability). Measures heartbeats/s sent, acked and counted by the
 * controller, ack latency, the delay from a heartbeat's send until the node's
 * row in PostgreSQL reflects it ("state current"), controller CPU and RSS,
 * flush duration, PostgreSQL and driver CPU. Goal on the 2-core development
 * machine: 5,000 nodes at 1 Hz with state-current p99 < 1 s.
 *
 * The driver runs in worker threads (bench/heartbeat-driver.ts) so it can use
 * both cores; its CPU is reported because it shares them with the controller.
 *
 * Usage: node bench/dist/heartbeat-ingest.bench.js [--nodes N] [--hz H] [--seconds S]
 *          [--warmup W] [--workers K] [--connections C] [--sample M] [--poll-ms P]
 *          [--flush-ms F] [--gpus G]
 * Env:   BENCH_CONTROLLER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" profiles the controller.
 */
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Worker } from "node:worker_threads";
import pg from "pg";
import { startPostgres } from "@gpuorch/testing";
import { ControllerProcess, REPO_ROOT, createAgentToken } from "./controller-process.js";
import type { DriverConfig } from "./heartbeat-driver.js";
import { figure, percentile } from "./latency.js";
import { parseBenchArgs } from "./options.js";

const USAGE =
  "usage: heartbeat-ingest.bench.js [--nodes N (5000)] [--hz H (1)] [--seconds S (60)] [--warmup W (10)] [--workers K (2)]\n" +
  "         [--connections C (100)] [--sample M (250)] [--poll-ms P (100)] [--flush-ms F (controller default)] [--gpus G (8)]";

interface Options {
  nodes: number;
  hz: number;
  seconds: number;
  warmup: number;
  workers: number;
  connections: number;
  sample: number;
  pollMs: number;
  flushMs: number | null;
  gpus: number;
}

function parseOptions(argv: string[]): Options {
  const names = ["nodes", "hz", "seconds", "warmup", "workers", "connections", "sample", "poll-ms", "flush-ms", "gpus"] as const;
  const { values, int } = parseBenchArgs(argv, Object.fromEntries(names.map((n) => [n, { type: "string" as const }])), USAGE);
  const nodes = int("nodes", 5000, 1);
  const workers = Math.min(int("workers", 2, 1), nodes);
  return {
    nodes,
    hz: int("hz", 1, 1),
    seconds: int("seconds", 60, 1),
    warmup: int("warmup", 10, 0),
    workers,
    // 100 shared connections by default: one per node (as real agents) costs the 2-core machine
    // thousands of HTTP/2 sessions to set up and drive, load that is not heartbeat ingestion.
    connections: Math.max(workers, Math.min(int("connections", 100, 1), nodes)),
    sample: Math.min(int("sample", 250, 1), nodes),
    pollMs: int("poll-ms", 100, 10),
    flushMs: values["flush-ms"] === undefined ? null : int("flush-ms", 0, 10),
    gpus: int("gpus", 8, 1),
  };
}

/** A real GPU model (name, memory) from the agent's nvidia-smi test data. */
function gpuModel(): { name: string; memoryMib: number } {
  const path = join(REPO_ROOT, "agent", "src", "gpu", "testdata", "8x-h100-80gb-hbm3-drv535.161.08.nvidia-smi-q.txt");
  if (existsSync(path)) {
    const text = readFileSync(path, "utf8");
    const name = /Product Name\s*:\s*(.+)/.exec(text)?.[1]?.trim();
    const mem = /FB Memory Usage\s*\n\s*Total\s*:\s*(\d+) MiB/.exec(text)?.[1];
    if (name && mem) return { name, memoryMib: Number(mem) };
  }
  return { name: "NVIDIA H100 80GB HBM3", memoryMib: 81559 };
}

// ---------- /proc readings (Linux) ----------

const CLOCK_TICKS_PER_SECOND = 100;

/** utime + stime of a process in ms, or null when it is gone. */
function procCpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return null;
  }
}

function procPpid(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return null;
  }
}

/** The PostgreSQL postmaster whose command line names `dir`, and its children (backends, WAL writer, …). */
function postgresPids(dir: string): number[] {
  const pids = readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number);
  const master = pids.find((p) => {
    try {
      const cmd = readFileSync(`/proc/${p}/cmdline`, "utf8");
      return cmd.includes(dir) && cmd.split("\0")[0]?.endsWith("postgres") === true;
    } catch {
      return false;
    }
  });
  if (master === undefined) return [];
  return [master, ...pids.filter((p) => procPpid(p) === master)];
}

/** CPU ms per pid; a process that started after `before` counts from 0. */
function cpuDelta(before: Map<number, number>, after: Map<number, number>): number {
  let sum = 0;
  for (const [pid, ms] of after) sum += ms - (before.get(pid) ?? 0);
  return sum;
}

function snapshotCpu(pids: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const p of pids) {
    const ms = procCpuMs(p);
    if (ms !== null) m.set(p, ms);
  }
  return m;
}

// ---------- controller metrics ----------

/** Sum of every sample of `name` (any labels) in a Prometheus text exposition; null when absent. */
function metric(text: string, name: string, labelFilter?: string): number | null {
  let sum: number | null = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    if (labelFilter && !rest.includes(labelFilter)) continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (Number.isFinite(v)) sum = (sum ?? 0) + v;
  }
  return sum;
}

/** Histogram buckets `le → cumulative count` of `name`. */
function buckets(text: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  const re = new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"[^}]*\\} (\\S+)$`, "gm");
  for (const m of text.matchAll(re)) out.set(m[1] === "+Inf" ? Infinity : Number(m[1]), Number(m[2]));
  return out;
}

/** The smallest bucket bound holding `p`% of the observations between two scrapes (an upper bound of the percentile). */
function bucketPercentile(before: Map<number, number>, after: Map<number, number>, p: number): number | null {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (total <= 0) return null;
  for (const le of bounds) if ((after.get(le)! - (before.get(le) ?? 0)) / total >= p / 100) return le;
  return Infinity;
}

async function scrape(base: string): Promise<string> {
  const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) });
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status} (is --metrics-auth on?)`);
  return res.text();
}

// ---------- cleanups ----------

const cleanups: Array<{ name: string; fn: () => Promise<void> }> = [];

async function runCleanups(): Promise<void> {
  while (cleanups.length > 0) {
    const c = cleanups.pop()!;
    try {
      await c.fn();
    } catch (err) {
      console.error(`cleanup '${c.name}' failed:`, err);
    }
  }
}

// ---------- the driver workers ----------

interface DoneMsg {
  type: "done";
  sentMeasured: number;
  ackedMeasured: number;
  unackedMeasured: number;
  streamErrors: number;
  firstError: string | null;
  skipped: number;
  latencies: Float64Array;
}

type WorkerMsg =
  | { type: "registered"; n: number }
  | { type: "connected" }
  | { type: "sampled"; nodes: { g: number; nodeId: string }[] }
  | { type: "sent"; sends: number[] }
  | { type: "progress"; sent: number; acked: number; outstanding: number; open: number; errors: number; skipped: number }
  | DoneMsg
  | { type: "failed"; message: string };

interface Fleet {
  workers: Worker[];
  registered: number;
  connected: number;
  /** Latest per-second progress of each worker. */
  progress: Array<{ sent: number; acked: number; outstanding: number; open: number; errors: number; skipped: number }>;
  sampled: Map<string, number>;
  /** Wall ms of every sampled heartbeat sent inside the window, per global node index. */
  sends: Map<number, number[]>;
  done: DoneMsg[];
  failure: Error | null;
}

function startFleet(opts: Options, address: string, token: string, runId: string, t0: number): Fleet {
  const fleet: Fleet = { workers: [], registered: 0, connected: 0, progress: [], sampled: new Map(), sends: new Map(), done: [], failure: null };
  const gpu = gpuModel();
  const sampleEvery = Math.max(1, Math.floor(opts.nodes / opts.sample));
  for (let w = 0; w < opts.workers; w++) {
    const first = Math.floor((w * opts.nodes) / opts.workers);
    const end = Math.floor(((w + 1) * opts.nodes) / opts.workers);
    const cfg: DriverConfig = {
      address,
      token,
      first,
      count: end - first,
      total: opts.nodes,
      hz: opts.hz,
      connections: Math.max(1, Math.round((opts.connections * (end - first)) / opts.nodes)),
      sampleEvery,
      runId,
      t0,
      gpuName: gpu.name,
      gpuMemoryMib: gpu.memoryMib,
      gpusPerNode: opts.gpus,
    };
    const worker = new Worker(new URL("./heartbeat-driver.js", import.meta.url), { workerData: cfg });
    fleet.progress.push({ sent: 0, acked: 0, outstanding: 0, open: 0, errors: 0, skipped: 0 });
    worker.on("message", (msg: WorkerMsg) => {
      switch (msg.type) {
        case "registered":
          fleet.registered += msg.n;
          break;
        case "connected":
          fleet.connected++;
          break;
        case "sampled":
          for (const n of msg.nodes) fleet.sampled.set(n.nodeId, n.g);
          break;
        case "sent":
          for (let i = 0; i < msg.sends.length; i += 2) {
            const g = msg.sends[i]!;
            const list = fleet.sends.get(g) ?? [];
            list.push(msg.sends[i + 1]!);
            fleet.sends.set(g, list);
          }
          break;
        case "progress":
          fleet.progress[w] = msg;
          break;
        case "done":
          fleet.done.push(msg);
          break;
        case "failed":
          fleet.failure ??= new Error(`driver worker ${w}: ${msg.message}`);
          break;
        default:
          break;
      }
    });
    worker.on("error", (err) => (fleet.failure ??= err));
    fleet.workers.push(worker);
  }
  cleanups.push({ name: "terminate driver workers", fn: async () => void (await Promise.all(fleet.workers.map((w) => w.terminate()))) });
  return fleet;
}

async function waitFleet(fleet: Fleet, controller: ControllerProcess, what: string, cond: () => boolean, timeoutMs: number, progress: () => string): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let lastLog = performance.now();
  while (!cond()) {
    const exit = controller.exitStatus();
    if (exit !== null) throw new Error(`the controller exited (${exit}) during ${what}`);
    if (fleet.failure) throw fleet.failure;
    if (performance.now() > deadline) throw new Error(`${what} not done within ${timeoutMs / 1000} s (${progress()})`);
    if (performance.now() - lastLog > 3_000) {
      lastLog = performance.now();
      log(progress());
    }
    await sleep(50);
  }
}

const log = (msg: string): void => void process.stderr.write(`[heartbeat] ${msg}\n`);

// ---------- the state-current poller ----------

/**
 * Polls `last_heartbeat_at` of the sampled nodes every `pollMs` and records,
 * per node, each new value with the wall time the poll that first saw it
 * returned. Matching sends to observations happens after the run, so the
 * poller never depends on hearing about a send in time.
 */
class StatePoller {
  readonly seen = new Map<string, Array<{ at: number; value: number }>>();
  readonly pollMs: number[] = [];
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly client: pg.Client,
    private readonly ids: string[],
    private readonly intervalMs: number,
  ) {}

  start(): void {
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const t0 = Date.now();
      const res = await this.client.query<{ id: string; ms: number }>(
        // Whole ms, as the controller's clock gave them (it stores Date values).
        "SELECT id::text AS id, floor(extract(epoch FROM last_heartbeat_at) * 1000)::float8 AS ms FROM nodes WHERE id = ANY($1::uuid[])",
        [this.ids],
      );
      const t1 = Date.now();
      this.pollMs.push(t1 - t0);
      for (const r of res.rows) {
        const list = this.seen.get(r.id) ?? [];
        if (list.length === 0 || list[list.length - 1]!.value !== r.ms) list.push({ at: t1, value: r.ms });
        this.seen.set(r.id, list);
      }
      await sleep(Math.max(0, this.intervalMs - (Date.now() - t0)));
    }
  }
}

/**
 * Delay of each sampled send until the poller first saw a last_heartbeat_at ≥
 * its send time. The controller stamps a heartbeat with its receive time,
 * which is ≥ the send time (same machine, same clock), and the node's
 * previous heartbeat was received about a period earlier, so the first value
 * ≥ T is this heartbeat's (or a later one's) write. Sends never seen are counted.
 */
function stateDelays(fleet: Fleet, poller: StatePoller): { delays: Float64Array; unseen: number } {
  const delays: number[] = [];
  let unseen = 0;
  for (const [nodeId, g] of fleet.sampled) {
    const obs = poller.seen.get(nodeId) ?? [];
    let j = 0;
    for (const t of fleet.sends.get(g) ?? []) {
      while (j < obs.length && obs[j]!.value < Math.floor(t)) j++;
      if (j === obs.length) unseen++;
      else delays.push(obs[j]!.at - t);
    }
  }
  return { delays: Float64Array.from(delays).sort(), unseen };
}

// ---------- main ----------

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  log(
    `${opts.nodes} nodes × ${opts.gpus} GPUs at ${opts.hz} Hz, ${opts.warmup} s warm-up + ${opts.seconds} s measured; ` +
      `${opts.workers} driver workers, ${opts.connections} HTTP/2 connections; flush ${opts.flushMs ?? "controller default"} ms`,
  );
  const workDir = await mkdtemp(join(tmpdir(), "gpuorch-bench-heartbeat-"));
  cleanups.push({ name: `rm ${workDir}`, fn: () => rm(workDir, { recursive: true, force: true }) });

  log("starting PostgreSQL (default durability: fsync on, synchronous_commit on)");
  const pgServer = await startPostgres({ fast: false });
  cleanups.push({ name: "stop PostgreSQL", fn: () => pgServer.stop() });
  const databaseUrl = await pgServer.createDatabase("bench_heartbeat");
  const target = { databaseUrl };
  const token = await createAgentToken(target, "bench");

  const controller = await ControllerProcess.start({
    target,
    workDir,
    extraArgs: [
      // The period the controller announces (and judges silence by: unreachable after 3 of them).
      "--heartbeat-interval-seconds",
      String(Math.max(1, Math.round(1 / opts.hz))),
      ...(opts.flushMs === null ? [] : ["--heartbeat-flush-ms", String(opts.flushMs)]),
    ],
  });
  let controllerStopped = false;
  cleanups.push({ name: "kill controller", fn: async () => void (controllerStopped ? undefined : await controller.kill()) });
  log(`controller pid ${controller.ready.pid} on ${controller.grpcAddress}, HTTP ${controller.httpBase}`);

  // Registration and stream set-up: each node connects right after it registers and heartbeats from then on.
  const runId = Date.now().toString(36);
  const setupStart = performance.now();
  const fleet = startFleet(opts, controller.grpcAddress, token, runId, Date.now());
  await waitFleet(fleet, controller, "registration", () => fleet.registered === opts.nodes, 600_000, () => `registered ${fleet.registered}/${opts.nodes}`);
  const regSecs = (performance.now() - setupStart) / 1000;
  log(`registered ${opts.nodes} nodes in ${regSecs.toFixed(1)} s (${(opts.nodes / regSecs).toFixed(0)}/s)`);
  await waitFleet(
    fleet,
    controller,
    "stream set-up",
    () => fleet.connected === opts.workers,
    180_000,
    () => `streams: ${fleet.connected}/${opts.workers} workers fully connected`,
  );
  log(`all ${opts.nodes} streams open and acked ${((performance.now() - setupStart) / 1000 - regSecs).toFixed(1)} s after the last registration`);

  const pgClient = new pg.Client({ connectionString: databaseUrl });
  await pgClient.connect();
  cleanups.push({ name: "close poller connection", fn: () => pgClient.end() });
  const poller = new StatePoller(pgClient, [...fleet.sampled.keys()], opts.pollMs);
  poller.start();
  cleanups.push({ name: "stop poller", fn: () => poller.stop() });

  // The window [measureFrom, measureTo) starts after a warm-up with every node heartbeating.
  const measureFrom = Date.now() + opts.warmup * 1000;
  const measureTo = measureFrom + opts.seconds * 1000;
  for (const w of fleet.workers) w.postMessage({ type: "window", measureFrom, measureTo });

  const pgPids = postgresPids(pgServer.dir);
  if (pgPids.length === 0) log("PostgreSQL processes not found in /proc: no PostgreSQL CPU figure");
  let before: { text: string; ctl: number | null; pg: Map<number, number>; drv: NodeJS.CpuUsage; at: number } | null = null;
  let rssMax = 0;
  let lastProgress = Date.now();
  let lastReceived = metric(await scrape(controller.httpBase), "gpuorch_heartbeats_received_total") ?? 0;
  let lastCtlCpu = controller.cpuMs() ?? 0;
  while (Date.now() < measureTo) {
    const exit = controller.exitStatus();
    if (exit !== null) throw new Error(`the controller exited (${exit}) during the run`);
    if (fleet.failure) throw fleet.failure;
    await sleep(Math.min(1_000, Math.max(0, (before ? measureTo : measureFrom) - Date.now())));
    if (!before && Date.now() >= measureFrom) {
      before = { text: await scrape(controller.httpBase), ctl: controller.cpuMs(), pg: snapshotCpu(postgresPids(pgServer.dir)), drv: process.cpuUsage(), at: Date.now() };
      log("warm-up done, measuring");
    }
    if (before) rssMax = Math.max(rssMax, controller.rssMiB() ?? 0);
    if (Date.now() - lastProgress >= 5_000) {
      const secs = (Date.now() - lastProgress) / 1000;
      lastProgress = Date.now();
      const text = await scrape(controller.httpBase);
      const received = metric(text, "gpuorch_heartbeats_received_total") ?? 0;
      const cpu = controller.cpuMs() ?? 0;
      const p = fleet.progress.reduce((a, b) => ({
        sent: a.sent + b.sent,
        acked: a.acked + b.acked,
        outstanding: a.outstanding + b.outstanding,
        open: a.open + b.open,
        errors: a.errors + b.errors,
        skipped: a.skipped + b.skipped,
      }));
      log(
        `${before ? "measuring" : "warm-up"}: ${p.open} streams open, sent ${p.sent}/s, acked ${p.acked}/s, controller counted ${((received - lastReceived) / secs).toFixed(0)}/s, ` +
          `unacked ${p.outstanding}, stream errors ${p.errors}, beats skipped by a stalled driver ${p.skipped}, controller CPU ${(((cpu - lastCtlCpu) / (secs * 1000)) * 100).toFixed(0)}%, RSS ${(controller.rssMiB() ?? 0).toFixed(0)} MiB`,
      );
      lastReceived = received;
      lastCtlCpu = cpu;
    }
  }
  if (!before) throw new Error("the measured window never started");
  const after = { text: await scrape(controller.httpBase), ctl: controller.cpuMs(), pg: snapshotCpu(postgresPids(pgServer.dir)), drv: process.cpuUsage(before.drv), at: Date.now() };
  const windowS = (after.at - before.at) / 1000;

  // Let the last window heartbeats reach the database and the poller (flush interval + a margin).
  await sleep((opts.flushMs ?? 5_000) + 2_000);
  for (const w of fleet.workers) w.postMessage({ type: "stop" });
  await waitFleet(fleet, controller, "driver shutdown", () => fleet.done.length === opts.workers, 30_000, () => `${fleet.done.length}/${opts.workers} workers done`);
  await poller.stop();

  // Correctness: every node still ready (none flapped to unreachable), no stream failed.
  const states = await pgClient.query<{ state: string; n: number }>("SELECT state::text AS state, count(*)::int AS n FROM nodes GROUP BY state");
  const stateText = states.rows.map((r) => `${r.state}=${r.n}`).join(", ");
  const changes = (metric(after.text, "gpuorch_node_state_changes_total") ?? 0) - (metric(before.text, "gpuorch_node_state_changes_total") ?? 0);

  await Promise.all(fleet.workers.map((w) => w.terminate()));
  controllerStopped = true;
  await controller.stop(30_000);

  // Figures.
  const sum = (f: (d: DoneMsg) => number): number => fleet.done.reduce((s, d) => s + f(d), 0);
  const sent = sum((d) => d.sentMeasured);
  const acked = sum((d) => d.ackedMeasured);
  const unacked = sum((d) => d.unackedMeasured);
  const streamErrors = sum((d) => d.streamErrors);
  const lat = new Float64Array(sum((d) => d.latencies.length));
  let off = 0;
  for (const d of fleet.done) {
    lat.set(d.latencies, off);
    off += d.latencies.length;
  }
  lat.sort();
  const received = (metric(after.text, "gpuorch_heartbeats_received_total") ?? 0) - (metric(before.text, "gpuorch_heartbeats_received_total") ?? 0);
  const flushName = "gpuorch_heartbeat_flush_duration_seconds";
  const flushCount = (metric(after.text, `${flushName}_count`) ?? 0) - (metric(before.text, `${flushName}_count`) ?? 0);
  const flushSum = (metric(after.text, `${flushName}_sum`) ?? 0) - (metric(before.text, `${flushName}_sum`) ?? 0);
  const flushP99 = bucketPercentile(buckets(before.text, flushName), buckets(after.text, flushName), 99);
  const state = stateDelays(fleet, poller);
  const pollSorted = Float64Array.from(poller.pollMs).sort();

  const n = `_${opts.nodes}`;
  console.log(figure(`heartbeat_sent${n}`, sent / opts.seconds, "heartbeats/s"));
  console.log(figure(`heartbeat_acked${n}`, acked / opts.seconds, "heartbeats/s"));
  console.log(figure(`heartbeat_processed${n}`, received / windowS, "heartbeats/s"));
  if (lat.length > 0) {
    console.log(figure(`heartbeat_ack_latency_p50${n}`, percentile(lat, 50), "ms"));
    console.log(figure(`heartbeat_ack_latency_p99${n}`, percentile(lat, 99), "ms"));
  }
  if (state.delays.length > 0) {
    console.log(figure(`heartbeat_state_current_p50${n}`, percentile(state.delays, 50), "ms"));
    console.log(figure(`heartbeat_state_current_p99${n}`, percentile(state.delays, 99), "ms"));
  }
  if (before.ctl !== null && after.ctl !== null) console.log(figure(`heartbeat_controller_cpu${n}`, ((after.ctl - before.ctl) / (windowS * 1000)) * 100, "%"));
  console.log(figure(`heartbeat_controller_rss_max${n}`, rssMax, "MiB"));
  if (flushCount > 0) {
    console.log(figure(`heartbeat_flush_mean${n}`, (flushSum / flushCount) * 1000, "ms"));
    if (flushP99 !== null && Number.isFinite(flushP99)) console.log(figure(`heartbeat_flush_p99_bucket${n}`, flushP99 * 1000, "ms"));
    console.log(figure(`heartbeat_flushes${n}`, flushCount / windowS, "flushes/s"));
  }
  if (pgPids.length > 0) console.log(figure(`heartbeat_postgresql_cpu${n}`, (cpuDelta(before.pg, after.pg) / (windowS * 1000)) * 100, "%"));
  console.log(figure(`heartbeat_driver_cpu${n}`, ((after.drv.user + after.drv.system) / 1000 / (windowS * 1000)) * 100, "%"));

  // Detail and checks on stderr.
  log(
    `window ${windowS.toFixed(1)} s; ack latency p90 ${lat.length ? percentile(lat, 90).toFixed(1) : "-"} ms, p99.9 ${lat.length ? percentile(lat, 99.9).toFixed(1) : "-"} ms, ` +
      `max ${(lat[lat.length - 1] ?? 0).toFixed(1)} ms; unacked at the end ${unacked}`,
  );
  log(
    `state current: ${state.delays.length} sampled heartbeats of ${fleet.sampled.size} nodes, p90 ${state.delays.length ? percentile(state.delays, 90).toFixed(0) : "-"} ms, ` +
      `max ${(state.delays[state.delays.length - 1] ?? 0).toFixed(0)} ms, never seen ${state.unseen}; poll query p50 ${pollSorted.length ? percentile(pollSorted, 50) : "-"} ms, ` +
      `p99 ${pollSorted.length ? percentile(pollSorted, 99) : "-"} ms (every ${opts.pollMs} ms: a delay is over-stated by up to one poll period)`,
  );
  log(`nodes by state after the run: ${stateText}; node state changes during the window: ${changes}`);
  // Anything else running on the machine takes CPU from the controller: say so next to the figures.
  log(`load average at the end (1/5/15 min): ${loadavg().map((l) => l.toFixed(2)).join(" ")} on this machine`);
  const problems: string[] = [];
  const skipped = sum((d) => d.skipped);
  if (skipped > 0) log(`WARNING: the driver fell behind its schedule and skipped ${skipped} beats (CPU starved?): the load was lower than asked`);
  if (streamErrors > 0) problems.push(`${streamErrors} streams failed (first: ${fleet.done.find((d) => d.firstError)?.firstError})`);
  if (changes > 0) problems.push(`${changes} node state changes during the window (nodes judged silent: writes fell behind)`);
  if (state.unseen > 0) problems.push(`${state.unseen} sampled heartbeats never reached the database while polled`);
  if (problems.length > 0) throw new Error(problems.join("; "));
}

let signalled = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (signalled) process.exit(130);
    signalled = true;
    process.stderr.write(`heartbeat-ingest: ${sig}, stopping\n`);
    void runCleanups().finally(() => process.exit(130));
  });
}

main().then(
  () => runCleanups(),
  async (err: unknown) => {
    console.error("heartbeat-ingest: FAILED:", err);
    await runCleanups();
    process.exitCode = 1;
  },
);
