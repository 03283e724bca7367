/**
 * Spot notice to checkpoint safely uploaded: the agent's side of an AWS spot interruption, end to
 * end, for one checkpoint of N bytes (default 1 GiB), to the file store and to s3rver (a real
 * S3-compatible server in a child process on 127.0.0.1). No controller.
 *
 * Per repetition and store:
 * - a scripted AWS IMDS (IMDSv2, `awsImds` of @gpuorch/testing) on loopback, answering 404 on
 *   `spot/instance-action` until the instant the benchmark starts announcing
 *   `{"action":"terminate","time":<now + 2 min>}` (at a random phase of the poll cycle, after
 *   the watcher has polled at least twice);
 * - the built agent's `InterruptionWatcher` (provider aws, `--interval-ms`, default 200 ms; the
 *   daemon's AWS default is 5 s, see the `_aws_default_poll_` lines) whose `onNotice` calls
 *   `TaskCheckpointer.requestNow(reason, 120 s)` as the daemon does (trigger: file); the
 *   checkpointer's periodic scan runs too (1 s, the agent's default);
 * - a simulated training job: this same file run again as a child process
 *   (GPUORCH_SPOT_BENCH_ROLE=job) holding its state, N random bytes, in memory. It checks
 *   `$GPUORCH_CHECKPOINT_TRIGGER` every 50 ms (its "step"); when it appears, it writes
 *   `$GPUORCH_CHECKPOINT_DIR/<step>/model.bin` (the N bytes, 8 MiB writes), fsyncs it, creates
 *   `COMPLETE`, fsyncs it and the directory, then deletes the trigger (README's contract).
 *
 * Figures per store (median over the repetitions; each repetition on stderr), all on one clock
 * (`performance.timeOrigin + performance.now()`, shared by the job process):
 * - `spot_notice_to_uploaded_<store>_<size>_s`: IMDS starts announcing → the checkpointer reports
 *   the artifact with `emergency: true` (every file uploaded and verified by the store, then the
 *   manifest). The four parts below add up to it:
 * - `spot_notice_detect_<store>_<size>_ms`: announce → `onNotice` (the wait for the next poll,
 *   then the GET and its parse);
 * - `spot_notice_trigger_<store>_<size>_ms`: `onNotice` → the job sees the trigger file
 *   (requestNow's scan and write, then up to one 50 ms job step);
 * - `spot_notice_job_checkpoint_<store>_<size>_s`: the job sees the trigger → `COMPLETE` is durable
 *   (write, fsync, marker, directory fsync);
 * - `spot_notice_upload_<store>_<size>_s`: `COMPLETE` → the report (up to 200 ms until
 *   requestNow's scan sees it, then hashing, the transfer, verification and the manifest);
 * - `spot_notice_to_uploaded_<store>_<size>_aws_default_poll_worst_s`: an estimate, the same run
 *   with the daemon's AWS poll interval (5 s) and the notice landing just after a poll: the
 *   measured total with its poll wait replaced by 5 s.
 * "Safely uploaded" means what the store acknowledges: the file store fsyncs its files; s3rver
 * writes them (twice: parts, then the object) without fsync.
 *
 * Everything lives in one temporary directory (same file system). Between repetitions the
 * store's copy, the job's checkpoint and the job process are removed.
 *
 * Usage: node bench/dist/spot-notice.bench.js [--reps R (3)] [--interval-ms MS (200)] [--stores file,s3rver]
 * Size: GPUORCH_BENCH_BYTES (bytes, or with a K/M/G suffix: binary units; default 1G) for a quick smoke run.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomFill, randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, open, rm, stat, statfs, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { type AgentArtifactReport, type TaskCheckpointPolicy } from "@gpuorch/core";
import { CHECKPOINT_MARKER, type CheckpointNowResult, DEFAULT_INTERRUPTION_INTERVAL_MS, InterruptionWatcher, TaskCheckpointer, type TaskCheckpointerDeps, checkpointKeyPrefix } from "@gpuorch/agent";
import { type ObjectStore, createFileStore, createS3Store } from "@gpuorch/storage";
import { AWS_SPOT_P4D, type AwsInstance, S3RVER_CREDENTIALS, type ScriptedImdsServer, awsImds, startS3rver, startScriptedImds } from "@gpuorch/testing";
import { figure } from "./latency.js";
import { parseBenchArgs } from "./options.js";

const USAGE =
  "usage: spot-notice.bench.js [--reps R (3)] [--interval-ms MS (200: IMDS poll interval)] [--stores file,s3rver]\n" +
  "  GPUORCH_BENCH_BYTES=N[K|M|G] sets the checkpoint size (default 1G)";

const ROLE_ENV = "GPUORCH_SPOT_BENCH_ROLE";
const BYTES_ENV = "GPUORCH_BENCH_BYTES";
const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;
const MB = 1e6;
const STEP = 4200;
const JOB_STEP_MS = 50;
const WRITE_CHUNK = 8 * MIB;
const DEADLINE_MS = 120_000;
const AWS_NOTICE_MS = 120_000;
const BUCKET = "ckpts";
const ACTION_PATH = "/latest/meta-data/spot/instance-action";
const STORES = ["file", "s3rver"] as const;
type StoreName = (typeof STORES)[number];

/** The repository root (this file compiles to bench/dist/). */

/** Epoch milliseconds with sub-millisecond resolution, comparable between this process and the job's. */
const nowMs = (): number => performance.timeOrigin + performance.now();

const log = (msg: string): void => void process.stderr.write(`spot-notice: ${msg}\n`);

/** `1073741824`, `64M`, `1G`, `512k`: binary units. */
function parseSize(text: string): number {
  const m = /^(\d+)([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new Error(`${BYTES_ENV} must be a byte count, optionally with a K/M/G suffix; got '${text}'`);
  const unit = { "": 1, k: KIB, m: MIB, g: GIB }[(m[2] ?? "").toLowerCase()] ?? 1;
  const n = Number(m[1]) * unit;
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${BYTES_ENV}: ${text} is not a usable size`);
  return n;
}

/** The size as it appears in figure names: 1gib, 64mib, 1000b. */
function sizeLabel(bytes: number): string {
  if (bytes % GIB === 0) return `${bytes / GIB}gib`;
  if (bytes % MIB === 0) return `${bytes / MIB}mib`;
  if (bytes % KIB === 0) return `${bytes / KIB}kib`;
  return `${bytes}b`;
}

const randomFillAsync = (buf: Buffer, offset: number, size: number): Promise<void> =>
  new Promise((resolve, reject) => randomFill(buf, offset, size, (err) => (err ? reject(err) : resolve())));

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The simulated training job (child process).

/** What the job tells the benchmark, one JSON object per stdout line. */
type JobMessage =
  | { type: "ready"; pid: number; fillMs: number }
  | { type: "checkpoint"; step: number; seenAt: number; triggerMtimeMs: number; writtenAt: number; completeAt: number; bytes: number };

async function runJob(): Promise<void> {
  const root = process.env.GPUORCH_CHECKPOINT_DIR;
  const trigger = process.env.GPUORCH_CHECKPOINT_TRIGGER;
  const bytes = parseSize(process.env[BYTES_ENV] ?? "1G");
  if (!root || !trigger) throw new Error("job: GPUORCH_CHECKPOINT_DIR and GPUORCH_CHECKPOINT_TRIGGER must be set");
  const send = (m: JobMessage): void => void process.stdout.write(`${JSON.stringify(m)}\n`);

  // The model's state, in memory before any notice (a real job has it on the GPU / in host memory).
  const t0 = nowMs();
  const state = Buffer.allocUnsafe(bytes);
  for (let off = 0; off < bytes; off += WRITE_CHUNK) await randomFillAsync(state, off, Math.min(WRITE_CHUNK, bytes - off));
  send({ type: "ready", pid: process.pid, fillMs: nowMs() - t0 });

  let busy = false;
  const checkpoint = async (): Promise<void> => {
    const seenAt = nowMs();
    const triggerMtimeMs = (await stat(trigger).catch(() => null))?.mtimeMs ?? Number.NaN;
    const dir = join(root, String(STEP));
    await mkdir(dir, { recursive: true });
    const fh = await open(join(dir, "model.bin"), "w");
    try {
      let off = 0;
      while (off < bytes) {
        const n = Math.min(WRITE_CHUNK, bytes - off);
        let done = 0;
        while (done < n) done += (await fh.write(state, off + done, n - done)).bytesWritten;
        off += n;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    const writtenAt = nowMs();
    await writeFile(join(dir, CHECKPOINT_MARKER), "");
    await fsyncPath(join(dir, CHECKPOINT_MARKER));
    await fsyncPath(dir);
    const completeAt = nowMs();
    await rm(trigger, { force: true });
    send({ type: "checkpoint", step: STEP, seenAt, triggerMtimeMs, writtenAt, completeAt, bytes });
  };
  // The training loop: one step every 50 ms, the trigger file checked at each step boundary.
  const timer = setInterval(() => {
    if (busy || !existsSync(trigger)) return;
    busy = true;
    checkpoint().then(
      () => (busy = false),
      (err: unknown) => {
        console.error("job: checkpoint failed:", err);
        process.exit(1);
      },
    );
  }, JOB_STEP_MS);
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => {
      clearInterval(timer);
      process.exit(0);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// The benchmark.

interface Options {
  reps: number;
  intervalMs: number;
  stores: StoreName[];
  bytes: number;
}

function parseOptions(argv: string[]): Options {
  const { values, int } = parseBenchArgs(argv, { reps: { type: "string" }, "interval-ms": { type: "string" }, stores: { type: "string" } }, USAGE);
  const storesText = typeof values["stores"] === "string" ? values["stores"] : STORES.join(",");
  const stores = storesText.split(",").map((s) => s.trim());
  for (const s of stores) if (!(STORES as readonly string[]).includes(s)) throw new Error(`--stores: unknown store '${s}' (known: ${STORES.join(", ")})\n${USAGE}`);
  return {
    reps: int("reps", 3, 1),
    intervalMs: int("interval-ms", 200, 10),
    stores: [...new Set(stores)] as StoreName[],
    bytes: parseSize(process.env[BYTES_ENV] ?? "1G"),
  };
}

type Logger = TaskCheckpointerDeps["logger"];

/** The agent's log lines (info and above) on stderr, one line each. */
function stderrLogger(component: string): Logger {
  const line =
    (level: string) =>
    (obj: object | string, msg?: string): void => {
      const text = typeof obj === "string" ? obj : `${msg ?? ""} ${JSON.stringify(obj, (_k, v: unknown) => (v instanceof Error ? v.message : v))}`;
      log(`  [${component} ${level}] ${text}`);
    };
  const logger: Logger = { debug: () => {}, info: line("info"), warn: line("warn"), error: line("error"), child: () => logger };
  return logger;
}

const cleanups: Array<{ name: string; fn: () => Promise<void> }> = [];
let cleaning: Promise<void> | null = null;

/** Runs the cleanups in reverse, once. */
function runCleanups(): Promise<void> {
  cleaning ??= (async () => {
    while (cleanups.length > 0) {
      const c = cleanups.pop()!;
      try {
        await c.fn();
      } catch (err) {
        console.error(`cleanup '${c.name}' failed:`, err);
      }
    }
  })();
  return cleaning;
}

/** Aborted on SIGINT/SIGTERM. */
const abort = new AbortController();

/** Job processes not yet exited: stopped by the cleanups too (a SIGTERM to the benchmark alone). */
const liveJobs = new Set<JobProcess>();

/** One running job process and its messages. */
class JobProcess {
  private readonly waiters: Array<{ type: JobMessage["type"]; resolve: (m: JobMessage) => void; reject: (e: Error) => void }> = [];
  private readonly received: JobMessage[] = [];
  private exited: Error | null = null;

  private constructor(private readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (text) => {
      let m: JobMessage;
      try {
        m = JSON.parse(text) as JobMessage;
      } catch {
        log(`  [job] ${text}`);
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === m.type);
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
      else this.received.push(m);
    });
    child.once("exit", (code, signal) => {
      liveJobs.delete(this);
      this.exited = new Error(`the job process exited (${code ?? signal})`);
      for (const w of this.waiters.splice(0)) w.reject(this.exited);
    });
  }

  static start(env: Record<string, string>): JobProcess {
    const child = spawn(process.execPath, [fileURLToPath(import.meta.url)], {
      env: { ...process.env, ...env, [ROLE_ENV]: "job" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const job = new JobProcess(child);
    liveJobs.add(job);
    return job;
  }

  next<T extends JobMessage["type"]>(type: T): Promise<Extract<JobMessage, { type: T }>> {
    const i = this.received.findIndex((m) => m.type === type);
    if (i >= 0) return Promise.resolve(this.received.splice(i, 1)[0] as Extract<JobMessage, { type: T }>);
    if (this.exited) return Promise.reject(this.exited);
    return new Promise((resolve, reject) => this.waiters.push({ type, resolve: resolve as (m: JobMessage) => void, reject }));
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.child.once("exit", () => resolve()));
    this.child.kill("SIGTERM");
    await Promise.race([gone, sleep(5_000).then(() => void this.child.kill("SIGKILL"))]);
    await gone;
  }
}

interface RepResult {
  totalS: number;
  detectMs: number;
  pollWaitMs: number;
  triggerMs: number;
  jobS: number;
  uploadS: number;
  /** COMPLETE → the first putFile call (the checkpointer's scan finding it). */
  uploadWaitMs: number;
  jobWriteMbps: number;
  /** What the report was first sent as: by requestNow's scan (emergency) or the periodic one. */
  firstReport: "emergency" | "periodic";
}

/** Delegates to `inner`, noting when the first upload call starts. */
function watchedStore(inner: ObjectStore, onFirstPut: () => void): ObjectStore {
  let first = true;
  return {
    scheme: inner.scheme,
    uriOf: (key) => inner.uriOf(key),
    putFile: (key, path, opts) => {
      if (first) {
        first = false;
        onFirstPut();
      }
      return inner.putFile(key, path, opts);
    },
    getFile: (key, path, opts) => inner.getFile(key, path, opts),
    head: (key, opts) => inner.head(key, opts),
    list: (prefix, opts) => inner.list(prefix, opts),
    delete: (keys, opts) => inner.delete(keys, opts),
  };
}

interface Env {
  opts: Options;
  work: string;
  imds: ScriptedImdsServer;
  instance: AwsInstance;
  /** Set by the IMDS script when it first serves a notice; reset per repetition. */
  served: { at: number | null };
}

async function runOnce(env: Env, storeName: StoreName, store: ObjectStore, baseKey: string, rep: number): Promise<RepResult> {
  const { opts } = env;
  const repDir = join(env.work, `${storeName}-rep${rep}`);
  const localDir = join(repDir, "checkpoints");
  const triggerFile = join(repDir, "checkpoint-now");
  await mkdir(localDir, { recursive: true });
  const jobId = randomUUID();
  const attempt = rep;

  const job = JobProcess.start({ GPUORCH_CHECKPOINT_DIR: localDir, GPUORCH_CHECKPOINT_TRIGGER: triggerFile, [BYTES_ENV]: String(opts.bytes) });
  const checkpointers: TaskCheckpointer[] = [];
  let watcher: InterruptionWatcher | null = null;
  try {
    const ready = await job.next("ready");
    log(`  job pid ${ready.pid} ready: ${(opts.bytes / MB).toFixed(1)} MB of random state in memory (${(ready.fillMs / 1000).toFixed(2)} s)`);

    // Instants (nowMs), set by callbacks as they happen.
    const at = { firstPut: null as number | null, report: null as number | null, notice: null as number | null };
    let firstReport: RepResult["firstReport"] | null = null;
    const reports: AgentArtifactReport[] = [];
    let nextTenth = 1;
    const policy: TaskCheckpointPolicy = { uri: store.uriOf(baseKey), keep: 1, intervalSteps: null, intervalSeconds: null, trigger: "file" };
    const checkpointer = new TaskCheckpointer({
      policy,
      jobId,
      attempt,
      taskId: randomUUID(),
      nodeRank: 0,
      localDir,
      triggerFile,
      store: watchedStore(store, () => void (at.firstPut = nowMs())),
      baseKey,
      report: (r) => {
        reports.push(r);
        firstReport ??= r.emergency ? "emergency" : "periodic";
        if (r.emergency && at.report === null) at.report = nowMs();
      },
      logger: stderrLogger("checkpointer"),
      newId: randomUUID,
      onProgress: (_step, done, total) => {
        const tenth = Math.min(10, Math.floor((done / total) * 10));
        if (tenth < nextTenth) return;
        nextTenth = tenth + 1;
        const secs = (nowMs() - (at.firstPut ?? nowMs())) / 1000;
        log(`    upload ${tenth * 10}% (${(done / MB).toFixed(0)} MB, ${(done / MB / Math.max(secs, 1e-9)).toFixed(0)} MB/s so far)`);
      },
    });
    checkpointers.push(checkpointer);
    checkpointer.start(); // the periodic scan the agent runs for every task with a checkpoint.uri (1 s)

    env.instance.instanceAction = undefined;
    env.served.at = null;
    let onRequested: (p: Promise<CheckpointNowResult>) => void = () => {};
    const requested = new Promise<Promise<CheckpointNowResult>>((resolve) => (onRequested = resolve));
    watcher = new InterruptionWatcher({
      provider: "aws",
      endpoint: env.imds.url,
      intervalMs: opts.intervalMs,
      logger: stderrLogger("interruption"),
      signal: abort.signal,
      onNotice: (notice) => {
        at.notice = nowMs();
        // What the daemon's onInterruptionNotice → TaskManager.checkpointAllNow does for this task.
        onRequested(checkpointer.requestNow(`spot interruption notice (${notice.provider} ${notice.kind})`, DEADLINE_MS));
      },
    });
    const actionGets = (): number => env.imds.requests.filter((r) => r.method === "GET" && r.path === ACTION_PATH).length;
    const before = actionGets();
    watcher.start();
    // Steady state: the watcher has polled (token cached) at least twice; then a random phase of its cycle.
    while (actionGets() < before + 2) await sleep(5, undefined, { signal: abort.signal });
    await sleep(Math.random() * opts.intervalMs, undefined, { signal: abort.signal });
    const goes = new Date(Date.now() + AWS_NOTICE_MS).toISOString().replace(/\.\d{3}Z$/, "Z");
    env.instance.instanceAction = JSON.stringify({ action: "terminate", time: goes });
    const announceAt = nowMs();
    log(`  IMDS announces instance-action (terminate at ${goes})`);

    const result = await (await requested);
    const ckpt = await job.next("checkpoint");
    if (!result.ok) throw new Error(`requestNow failed: ${result.message}`);
    const emergency = reports.find((r) => r.emergency);
    if (at.report === null || at.notice === null || !emergency) throw new Error(`requestNow succeeded but no emergency report was sent (${reports.length} reports)`);
    if (result.step !== STEP || emergency.step !== STEP || emergency.bytes !== opts.bytes) {
      throw new Error(`expected step ${STEP} of ${opts.bytes} B, got result step ${result.step}, report ${JSON.stringify(emergency)}`);
    }
    // The store holds the data file at its size (the store verified its checksum on upload).
    const head = await store.head(`${checkpointKeyPrefix(baseKey, jobId, attempt, STEP)}model.bin`);
    if (head?.bytes !== opts.bytes) throw new Error(`the store holds ${head?.bytes ?? "no"} B of model.bin, expected ${opts.bytes} B`);

    const n = at.notice;
    const reportAt = at.report;
    const r: RepResult = {
      totalS: (reportAt - announceAt) / 1000,
      detectMs: n - announceAt,
      pollWaitMs: (env.served.at ?? n) - announceAt,
      triggerMs: ckpt.seenAt - n,
      jobS: (ckpt.completeAt - ckpt.seenAt) / 1000,
      uploadS: (reportAt - ckpt.completeAt) / 1000,
      uploadWaitMs: (at.firstPut ?? reportAt) - ckpt.completeAt,
      jobWriteMbps: opts.bytes / MB / ((ckpt.writtenAt - ckpt.seenAt) / 1000),
      firstReport: firstReport ?? "emergency",
    };
    log(
      `  ${storeName} rep ${rep}: total ${r.totalS.toFixed(2)} s = detect ${r.detectMs.toFixed(0)} ms (poll wait ${r.pollWaitMs.toFixed(0)} ms, GET + parse ${(r.detectMs - r.pollWaitMs).toFixed(0)} ms)` +
        ` + trigger ${r.triggerMs.toFixed(0)} ms (file written ${(ckpt.triggerMtimeMs - n).toFixed(0)} ms after onNotice by its mtime, a coarse clock: ±4 ms)` +
        ` + job checkpoint ${r.jobS.toFixed(2)} s (write + fsync ${((ckpt.writtenAt - ckpt.seenAt) / 1000).toFixed(2)} s, ${r.jobWriteMbps.toFixed(0)} MB/s; marker ${((ckpt.completeAt - ckpt.writtenAt) / 1000).toFixed(3)} s)` +
        ` + upload ${r.uploadS.toFixed(2)} s (${r.uploadWaitMs.toFixed(0)} ms until the scan found COMPLETE, first report by the ${r.firstReport} scan;` +
        ` transfer ${(r.uploadS - r.uploadWaitMs / 1000).toFixed(2)} s, ${(opts.bytes / MB / (r.uploadS - r.uploadWaitMs / 1000)).toFixed(0)} MB/s)`,
    );
    return r;
  } finally {
    await watcher?.stop();
    for (const c of checkpointers) c.stop();
    await job.stop();
    await rm(repDir, { recursive: true, force: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const size = sizeLabel(opts.bytes);
  const work = await mkdtemp(join(tmpdir(), "gpuorch-bench-spot-"));
  cleanups.push({ name: `rm ${work}`, fn: () => rm(work, { recursive: true, force: true }) });
  cleanups.push({ name: "stop the job processes", fn: async () => void (await Promise.all([...liveJobs].map((j) => j.stop()))) });

  // At the peak: the job's checkpoint, plus s3rver's parts and object (or the file store's copy).
  const fs = await statfs(work);
  const free = fs.bavail * fs.bsize;
  const need = 3 * opts.bytes + GIB;
  if (free < need) throw new Error(`${work}: ${(free / GIB).toFixed(1)} GiB free, this run needs about ${(need / GIB).toFixed(1)} GiB (set ${BYTES_ENV} smaller)`);
  log(
    `${(opts.bytes / MB).toFixed(1)} MB checkpoint (${size}), ${opts.reps} repetition(s), stores ${opts.stores.join(", ")}, IMDS poll every ${opts.intervalMs} ms; ` +
      `work dir ${work} (${(free / GIB).toFixed(1)} GiB free); load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`,
  );

  const instance: AwsInstance = { ...AWS_SPOT_P4D };
  const served: Env["served"] = { at: null };
  const script = awsImds(instance);
  const imds = await startScriptedImds((req) => {
    const answer = script(req);
    if (served.at === null && req.path === ACTION_PATH && answer !== "hang" && (answer.status ?? 200) === 200) served.at = nowMs();
    return answer;
  });
  cleanups.push({ name: "stop the scripted IMDS", fn: () => imds.close() });
  const env: Env = { opts, work, imds, instance, served };

  for (const storeName of opts.stores) {
    let store: ObjectStore;
    let baseKey: string;
    let clear: () => Promise<void>;
    if (storeName === "file") {
      const base = join(work, "filestore");
      await mkdir(base);
      store = createFileStore();
      baseKey = base;
      clear = async () => {
        await rm(base, { recursive: true, force: true });
        await mkdir(base);
      };
    } else {
      log("starting s3rver");
      const s3rverDir = join(work, "s3rver");
      const server = await startS3rver({ directory: s3rverDir, buckets: [BUCKET] });
      cleanups.push({ name: "stop s3rver", fn: () => server.stop() });
      const s3 = createS3Store({ bucket: BUCKET, endpoint: server.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS });
      cleanups.push({ name: "close the S3 client", fn: async () => s3.close() });
      log(`s3rver at ${server.endpoint}, data in ${s3rverDir} (store defaults: multipart above 16 MiB)`);
      store = s3;
      baseKey = "";
      clear = async () => {
        const keys: string[] = [];
        for await (const o of s3.list("")) keys.push(o.key);
        await s3.delete(keys);
      };
    }
    const results: RepResult[] = [];
    for (let rep = 1; rep <= opts.reps; rep++) {
      log(`${storeName}: repetition ${rep} of ${opts.reps}`);
      results.push(await runOnce(env, storeName, store, baseKey, rep));
      imds.requests.length = 0; // recorded on every poll: keep the list short
      await clear();
    }
    const med = (f: (r: RepResult) => number): number => median(results.map(f));
    if (results.length > 1) {
      const range = (f: (r: RepResult) => number, unit: string, k = 1, digits = 2): string =>
        `${(Math.min(...results.map(f)) * k).toFixed(digits)}–${(Math.max(...results.map(f)) * k).toFixed(digits)} ${unit}`;
      log(
        `${storeName}: over ${results.length} repetitions (min–max): total ${range((r) => r.totalS, "s")}, detect ${range((r) => r.detectMs, "ms", 1, 0)}, ` +
          `trigger ${range((r) => r.triggerMs, "ms", 1, 0)}, job checkpoint ${range((r) => r.jobS, "s")}, upload ${range((r) => r.uploadS, "s")}`,
      );
    }
    const name = `${storeName}_${size}`;
    console.log(figure(`spot_notice_to_uploaded_${name}_s`, med((r) => r.totalS), "s"));
    console.log(figure(`spot_notice_detect_${name}_ms`, med((r) => r.detectMs), "ms"));
    console.log(figure(`spot_notice_trigger_${name}_ms`, med((r) => r.triggerMs), "ms"));
    console.log(figure(`spot_notice_job_checkpoint_${name}_s`, med((r) => r.jobS), "s"));
    console.log(figure(`spot_notice_upload_${name}_s`, med((r) => r.uploadS), "s"));
    // The daemon polls AWS every 5 s by default: worst case, the notice lands just after a poll.
    const awsPollS = DEFAULT_INTERRUPTION_INTERVAL_MS.aws / 1000;
    console.log(figure(`spot_notice_to_uploaded_${name}_aws_default_poll_worst_s`, med((r) => r.totalS - r.pollWaitMs / 1000 + awsPollS), "s"));
  }
  console.log(figure("spot_notice_poll_interval_s", opts.intervalMs / 1000, "s"));
  console.log(figure("spot_notice_poll_interval_aws_default_s", DEFAULT_INTERRUPTION_INTERVAL_MS.aws / 1000, "s"));
  log(`load average at the end (1/5/15 min): ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
}

if (process.env[ROLE_ENV] === "job") {
  runJob().catch((err: unknown) => {
    console.error("job: FAILED:", err);
    process.exit(1);
  });
} else {
  let signalled = false;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      if (signalled) process.exit(130);
      signalled = true;
      process.stderr.write(`spot-notice: ${sig}, stopping\n`);
      abort.abort();
      void runCleanups().finally(() => process.exit(130));
    });
  }
  main().then(
    () => runCleanups(),
    async (err: unknown) => {
      if (abort.signal.aborted) console.error(`spot-notice: stopped (${(err as Error).message})`);
      else console.error("spot-notice: FAILED:", err);
      await runCleanups();
      process.exitCode = 1;
    },
  );
}
