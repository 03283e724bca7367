/**
 * Checkpoint upload and download throughput (issue 5), through the real agent code
 * (`scanCheckpoints`, `uploadCheckpoint`, `downloadCheckpoint` of the built `@gpuorch/agent`),
 * to the file store (`createFileStore`) and to an S3 API (`createS3Store` against s3rver in a
 * child process on 127.0.0.1, multipart above 16 MiB), against a plain copy of the same files on
 * this machine as the ceiling. No controller.
 *
 * One checkpoint `<tmp>/ckpt/<step>/` of N MiB (default 1,024: 1 GiB) of random bytes in two
 * files, `model.pt` (a third) and `optimizer.pt` (two thirds: Adam keeps two moments per
 * parameter), plus the `COMPLETE` marker, written and fsync'd before anything is timed. Every
 * store lives in the same temporary directory (same file system). The source files stay warm in
 * the page cache: every stage reads them from memory (no cold-disk reads; caches are not dropped).
 *
 * Stages, one after another, each timed on its own (MB/s = 1e6 bytes/s over the data files):
 * - hash: `hashFile` (SHA-256) of each file, what every upload and download also pays;
 * - copy ceiling: `fs.copyFile` of each file, then fsync of each file and of the directory;
 *   `cp --reflink=never -r` of the directory (also fsync'd) is shown on stderr for comparison;
 * - file store upload: copy + SHA-256 in one pass, fsync, sidecar, rename, directory fsync, a
 *   head against the sidecar (no second read), then the manifest;
 * - file store download: manifest (verified), then each file streamed and hashed into a
 *   temporary file, checked against the manifest, renamed; no fsync (as the agent does it);
 * - s3rver upload: per file a full SHA-256 pass first (it travels as metadata), then
 *   lib-storage multipart (16 MiB parts, 4 in flight, unless given) over HTTP on loopback, a
 *   HeadObject check; then the manifest. s3rver writes each part (MD5), then copies the
 *   parts into the object on completion: it writes the data twice;
 * - s3rver download: GetObject streamed into the same verified write as the file store's.
 * Dirty pages a stage leaves behind (downloads, s3rver's files) are fsync'd after its timing,
 * so the next stage does not pay for them; that writeback time is shown on stderr.
 *
 * Usage: node bench/dist/checkpoint-transfer.bench.js [--mb N] [--part-mb P] [--queue Q]
 */
import { execFile } from "node:child_process";
import { randomFill } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, open, readdir, rm, stat, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { promisify } from "node:util";
import { CHECKPOINT_MARKER, type LocalCheckpoint, downloadCheckpoint, scanCheckpoints, uploadCheckpoint } from "@gpuorch/agent";
import { type ObjectStore, createFileStore, createS3Store, hashFile } from "@gpuorch/storage";
import { S3RVER_CREDENTIALS, startS3rver } from "@gpuorch/testing";
import { figure } from "./latency.js";
import { parseBenchArgs } from "./options.js";

const USAGE =
  "usage: checkpoint-transfer.bench.js [--mb N (1024: checkpoint size in MiB)] [--part-mb P (S3 store default 16)] [--queue Q (S3 store default 4)]";

const MIB = 1024 * 1024;
/** Figures are in MB/s, MB = 1e6 bytes. */
const MB = 1e6;
const STEP = 1200;
const JOB_ID = "0197a0c0-0000-7000-8000-0000000be715";
const BUCKET = "ckpts";
const CLOCK_TICKS_PER_SECOND = 100;

interface Options {
  mb: number;
  partMb: number | null;
  queue: number | null;
}

function parseOptions(argv: string[]): Options {
  const { values, int } = parseBenchArgs(argv, { mb: { type: "string" }, "part-mb": { type: "string" }, queue: { type: "string" } }, USAGE);
  return {
    mb: int("mb", 1024, 1),
    partMb: values["part-mb"] === undefined ? null : int("part-mb", 16, 5),
    queue: values["queue"] === undefined ? null : int("queue", 4, 1),
  };
}

const log = (msg: string): void => void process.stderr.write(`checkpoint-transfer: ${msg}\n`);

const cleanups: Array<{ name: string; fn: () => Promise<void> }> = [];

let cleaning: Promise<void> | null = null;

/**
 * Runs the cleanups in reverse, once: a signal arriving while a failure is being cleaned up
 * waits for the same run, so the process never exits halfway through removing the work dir.
 */
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

/** Aborted on SIGINT/SIGTERM: the transfer in flight stops before the cleanups remove its files. */
const abort = new AbortController();

/** A progress callback that logs each time another tenth of `total` bytes is done. */
function progress(label: string, total: number, t0: number): (done: number) => void {
  let next = 1;
  return (done) => {
    const tenth = Math.min(10, Math.floor((done / total) * 10));
    if (tenth < next) return;
    next = tenth + 1;
    const secs = (performance.now() - t0) / 1000;
    log(`  ${label}: ${tenth * 10}% (${(done / MB).toFixed(0)} of ${(total / MB).toFixed(0)} MB, ${(done / MB / Math.max(secs, 1e-9)).toFixed(0)} MB/s so far)`);
  };
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** fsyncs every file and directory under `dir`: flushes what a stage left dirty, outside its timing. */
async function fsyncTree(dir: string): Promise<void> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await fsyncTree(p);
    else if (e.isFile()) await fsyncPath(p);
  }
  await fsyncPath(dir);
}

const randomFillAsync = (buf: Buffer, offset: number, size: number): Promise<void> =>
  new Promise((resolve, reject) => randomFill(buf, offset, size, (err) => (err ? reject(err) : resolve())));

/** `bytes` random bytes into `path`, fsync'd. */
async function writeRandomFile(path: string, bytes: number, onProgress: (n: number) => void): Promise<void> {
  const fh = await open(path, "w");
  try {
    const buf = Buffer.allocUnsafe(Math.min(bytes, 8 * MIB));
    let done = 0;
    while (done < bytes) {
      const n = Math.min(buf.length, bytes - done);
      await randomFillAsync(buf, 0, n);
      let off = 0;
      while (off < n) off += (await fh.write(buf, off, n - off)).bytesWritten;
      done += n;
      onProgress(n);
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** CPU seconds (user + system) of process `pid` from /proc (Linux), or null. */
function procCpuSeconds(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = s.slice(s.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / CLOCK_TICKS_PER_SECOND : null;
  } catch {
    return null;
  }
}

/** This process's child pids (Linux /proc/self/task/<tid>/children), or [] where unavailable. */
function childPids(): number[] {
  try {
    const out = new Set<number>();
    for (const tid of readdirSync("/proc/self/task")) {
      for (const p of readFileSync(`/proc/self/task/${tid}/children`, "utf8").split(/\s+/)) if (p) out.add(Number(p));
    }
    return [...out];
  } catch {
    return [];
  }
}

interface Stage {
  seconds: number;
  mbps: number;
}

/** Times `fn` moving `bytes`, logs wall and CPU time (this process, and `otherCpu` when given). */
async function timed<T>(
  label: string,
  bytes: number,
  fn: (onProgress: (done: number) => void) => Promise<T>,
  otherCpu?: { name: string; seconds: () => number | null },
): Promise<Stage & { value: T }> {
  log(`${label}: ${(bytes / MB).toFixed(1)} MB`);
  const cpu0 = process.cpuUsage();
  const other0 = otherCpu?.seconds() ?? null;
  const t0 = performance.now();
  const value = await fn(progress(label, bytes, t0));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const other1 = otherCpu?.seconds() ?? null;
  const share = (s: number): string => `${s.toFixed(2)} s (${((s / seconds) * 100).toFixed(0)}% of a core)`;
  const otherText = otherCpu && other0 !== null && other1 !== null ? `, ${otherCpu.name} ${share(other1 - other0)}` : "";
  const mbps = bytes / MB / seconds;
  log(`${label}: ${seconds.toFixed(2)} s, ${mbps.toFixed(1)} MB/s; CPU: this process ${share(cpuS)}${otherText}`);
  return { seconds, mbps, value };
}

/** Untimed: flushes what a stage left dirty (so the next stage does not pay for it) and says how long that took. */
async function flush(label: string, dir: string): Promise<void> {
  const t0 = performance.now();
  await fsyncTree(dir);
  log(`  ${label}: fsync of what it left dirty, after its timing (not counted): ${((performance.now() - t0) / 1000).toFixed(2)} s`);
}

/** Downloads must give back the checkpoint: `scanCheckpoints` finds it complete, with the same files and sizes. */
async function checkRestored(root: string, src: LocalCheckpoint, sizes: Map<string, number>): Promise<void> {
  const found = await scanCheckpoints(root);
  const got = found[0];
  if (found.length !== 1 || got === undefined || got.step !== src.step || got.files.join("\n") !== src.files.join("\n")) {
    throw new Error(`restored ${root}: expected step ${src.step} with ${src.files.join(", ")}, scanCheckpoints found ${JSON.stringify(found)}`);
  }
  for (const f of got.files) {
    const size = (await stat(join(got.dir, f))).size;
    if (size !== sizes.get(f)) throw new Error(`restored ${join(got.dir, f)} holds ${size} B, the source ${sizes.get(f)} B`);
  }
}

async function uploadDownload(
  name: string,
  store: ObjectStore,
  base: string,
  /** Where the store keeps its bytes on this machine: fsync'd between the upload and the download. */
  storeDir: string,
  ckpt: LocalCheckpoint,
  sizes: Map<string, number>,
  restoreRoot: string,
  total: number,
  otherCpu?: { name: string; seconds: () => number | null },
): Promise<{ up: Stage; down: Stage }> {
  const up = await timed(
    `upload to the ${name} store`,
    total,
    async (onProgress) => {
      const r = await uploadCheckpoint(store, base, ckpt, { jobId: JOB_ID, attempt: 1, now: new Date() }, { signal: abort.signal, attempts: 1, onProgress });
      if (r.bytes !== total) throw new Error(`uploadCheckpoint reported ${r.bytes} B, the checkpoint holds ${total} B`);
      return r;
    },
    otherCpu,
  );
  const m = { key: up.value.manifestKey, sha256: up.value.sha256 };
  log(`  manifest ${up.value.uri} (sha256 ${m.sha256.slice(0, 12)}…)`);
  await flush(`upload to the ${name} store`, storeDir);
  const down = await timed(`download from the ${name} store`, total, async (onProgress) => {
    const r = await downloadCheckpoint(store, m.key, m.sha256, join(restoreRoot, String(ckpt.step)), { signal: abort.signal, attempts: 1, onProgress });
    if (r.bytes !== total) throw new Error(`downloadCheckpoint reported ${r.bytes} B, the checkpoint holds ${total} B`);
  }, otherCpu);
  await flush(`download from the ${name} store`, restoreRoot);
  await checkRestored(restoreRoot, ckpt, sizes);
  await rm(restoreRoot, { recursive: true, force: true });
  return { up, down };
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  const total = opts.mb * MIB;
  const work = await mkdtemp(join(tmpdir(), "gpuorch-bench-ckpt-"));
  cleanups.push({ name: `rm ${work}`, fn: () => rm(work, { recursive: true, force: true }) });
  log(`${opts.mb} MiB checkpoint (${(total / MB).toFixed(1)} MB) in ${work}; load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);

  // The checkpoint as a job leaves it: data files first, the marker last.
  const root = join(work, "ckpt");
  const dir = join(root, String(STEP));
  await mkdir(dir, { recursive: true });
  const model = Math.floor(total / 3);
  const layout: Array<[string, number]> = [
    ["model.pt", model],
    ["optimizer.pt", total - model],
  ];
  {
    let done = 0;
    const t0 = performance.now();
    const onProgress = progress("writing random data", total, t0);
    for (const [f, bytes] of layout) await writeRandomFile(join(dir, f), bytes, (n) => onProgress((done += n)));
    await writeFile(join(dir, CHECKPOINT_MARKER), "");
    await fsyncPath(dir);
    log(`checkpoint written and fsync'd in ${((performance.now() - t0) / 1000).toFixed(2)} s: ${layout.map(([f, b]) => `${f} ${(b / MB).toFixed(1)} MB`).join(", ")} + ${CHECKPOINT_MARKER}`);
  }
  const [ckpt, ...more] = await scanCheckpoints(root);
  if (ckpt === undefined || more.length > 0 || ckpt.files.length !== layout.length) throw new Error(`scanCheckpoints(${root}) should find one checkpoint of ${layout.length} files, found ${JSON.stringify([ckpt, ...more])}`);
  const sizes = new Map(layout);
  const paths = ckpt.files.map((f) => join(ckpt.dir, f));

  // 1. SHA-256 alone: the floor under every upload and download (each hashes the data once; s3 uploads twice).
  const hash = await timed("sha256 (hashFile)", total, async (onProgress) => {
    let done = 0;
    for (const p of paths) onProgress((done += (await hashFile(p, abort.signal)).bytes));
  });
  console.log(figure("checkpoint_hash_mbps", hash.mbps, "MB/s"));

  // 2. The ceiling: the kernel's own copy (copy_file_range), fsync'd like the file store's upload.
  const copyDir = join(work, "copy");
  await mkdir(copyDir);
  let copyOnly = 0;
  const copy = await timed("copy ceiling (fs.copyFile + fsync)", total, async (onProgress) => {
    const t0 = performance.now();
    let before = 0;
    for (const f of ckpt.files) {
      const dest = join(copyDir, f);
      // copyFile reports nothing while it runs: watch the destination grow.
      const watch = setInterval(() => void stat(dest).then((s) => onProgress(before + s.size), () => undefined), 100);
      try {
        await copyFile(join(ckpt.dir, f), dest);
      } finally {
        clearInterval(watch);
      }
      before += sizes.get(f) ?? 0;
      onProgress(before);
    }
    copyOnly = (performance.now() - t0) / 1000;
    for (const f of ckpt.files) await fsyncPath(join(copyDir, f));
    await fsyncPath(copyDir);
  });
  log(`  of which copy ${copyOnly.toFixed(2)} s (${(total / MB / copyOnly).toFixed(1)} MB/s without fsync: compare with the downloads, which do not fsync), fsync ${(copy.seconds - copyOnly).toFixed(2)} s`);
  console.log(figure("checkpoint_copy_ceiling_mbps", copy.mbps, "MB/s"));
  await rm(copyDir, { recursive: true, force: true });

  // For comparison only (stderr): coreutils cp, a real copy (no reflink), fsync'd the same way.
  const cpDir = join(work, "cp");
  try {
    const t0 = performance.now();
    await promisify(execFile)("cp", ["--reflink=never", "-r", ckpt.dir, cpDir], { signal: abort.signal });
    const cpOnly = (performance.now() - t0) / 1000;
    await fsyncTree(cpDir);
    const secs = (performance.now() - t0) / 1000;
    log(`cp --reflink=never -r: ${secs.toFixed(2)} s, ${(total / MB / secs).toFixed(1)} MB/s with fsync (${(total / MB / cpOnly).toFixed(1)} MB/s without)`);
  } catch (err) {
    if (abort.signal.aborted) throw err;
    log(`cp comparison skipped: ${(err as Error).message}`);
  }
  await rm(cpDir, { recursive: true, force: true });

  // 3. The file store, in the same file system.
  const fileBase = join(work, "filestore");
  await mkdir(fileBase);
  const file = await uploadDownload("file", createFileStore(), fileBase, fileBase, ckpt, sizes, join(work, "restore-file"), total);
  console.log(figure("checkpoint_upload_file_mbps", file.up.mbps, "MB/s"));
  console.log(figure("checkpoint_download_file_mbps", file.down.mbps, "MB/s"));
  await rm(fileBase, { recursive: true, force: true });

  // 4. The S3 store against s3rver (a child process) on loopback.
  const s3rverDir = join(work, "s3rver");
  const before = new Set(childPids());
  log("starting s3rver");
  const server = await startS3rver({ directory: s3rverDir, buckets: [BUCKET] });
  cleanups.push({ name: "stop s3rver", fn: () => server.stop() });
  const s3rverPid = childPids().find((p) => !before.has(p));
  const store = createS3Store({
    bucket: BUCKET,
    endpoint: server.endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    ...(opts.partMb === null ? {} : { partSizeBytes: opts.partMb * MIB }),
    ...(opts.queue === null ? {} : { queueSize: opts.queue }),
  });
  cleanups.push({ name: "close the S3 client", fn: async () => store.close() });
  log(`s3rver at ${server.endpoint} (pid ${s3rverPid ?? "unknown"}), data in ${s3rverDir}; parts ${opts.partMb ?? 16} MiB, ${opts.queue ?? 4} in flight`);
  // The store's threshold (16 MiB): smaller files go as one PutObject read into memory.
  log(`  ${layout.map(([f, b]) => `${f}: ${b > 16 * MIB ? "multipart" : "one PutObject"}`).join(", ")}`);
  const s3Cpu = s3rverPid === undefined ? undefined : { name: "s3rver", seconds: () => procCpuSeconds(s3rverPid) };
  const s3 = await uploadDownload("s3rver", store, "", s3rverDir, ckpt, sizes, join(work, "restore-s3rver"), total, s3Cpu);
  console.log(figure("checkpoint_upload_s3rver_mbps", s3.up.mbps, "MB/s"));
  console.log(figure("checkpoint_download_s3rver_mbps", s3.down.mbps, "MB/s"));

  log(`total seconds: hash ${hash.seconds.toFixed(2)}, copy ${copy.seconds.toFixed(2)}, file up ${file.up.seconds.toFixed(2)} / down ${file.down.seconds.toFixed(2)}, s3rver up ${s3.up.seconds.toFixed(2)} / down ${s3.down.seconds.toFixed(2)}`);
  log(`load average at the end (1/5/15 min): ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
}

let signalled = false;
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    if (signalled) process.exit(130);
    signalled = true;
    process.stderr.write(`checkpoint-transfer: ${sig}, stopping\n`);
    abort.abort();
    void runCleanups().finally(() => process.exit(130));
  });
}

main().then(
  () => runCleanups(),
  async (err: unknown) => {
    if (abort.signal.aborted) console.error(`checkpoint-transfer: stopped (${(err as Error).message})`);
    else console.error("checkpoint-transfer: FAILED:", err);
    await runCleanups();
    process.exitCode = 1;
  },
);
