import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { AppError, isAppError } from "@gpuorch/core";
import { type BackoffOptions, backoffDelay, sleep as realSleep } from "@gpuorch/runtime";
import type { ObjectStore } from "@gpuorch/storage";

/**
 * The checkpoint contract (README "Checkpoints"): a job writes each
 * checkpoint under `$GPUORCH_CHECKPOINT_DIR/<step>/` and marks it complete by
 * creating the file `COMPLETE` in that directory last. A directory without
 * the marker is still being written and is never uploaded or used.
 *
 * In the object store a checkpoint is `<base>/<job id>/attempt-<n>/step-<step,
 * 12 digits>/<files…>` plus `gpuorch-manifest.json`, written after every file
 * was uploaded and verified: a checkpoint without its manifest is
 * incomplete (an upload cut off midway) and is never used. The manifest
 * lists each file's size and SHA-256; its own SHA-256 is what the
 * controller records in job_artifacts, and a download checks both. Keys
 * carry the attempt, so an older attempt still running somewhere (a
 * partitioned node) can never overwrite a newer attempt's objects; which
 * checkpoints count, and which retention deletes, is the controller's call.
 */
export const CHECKPOINT_MARKER = "COMPLETE";
export const MANIFEST_NAME = "gpuorch-manifest.json";

export interface LocalCheckpoint {
  step: number;
  dir: string;
  /** Paths relative to `dir` (POSIX separators), the marker excluded, sorted. */
  files: string[];
}

export interface CheckpointManifest {
  version: 1;
  jobId: string;
  attempt: number;
  step: number;
  createdAt: string;
  files: { path: string; bytes: number; sha256: string }[];
}

export interface UploadedCheckpoint {
  step: number;
  /** The manifest's URI: what the artifact row points at. */
  uri: string;
  manifestKey: string;
  /** Sum of the files' sizes. */
  bytes: number;
  /** SHA-256 of the manifest's bytes. */
  sha256: string;
}

const STEP_DIR = /^\d{1,15}$/;

/** Complete checkpoints under `root`, ascending by step (a missing root is none). */
export async function scanCheckpoints(root: string): Promise<LocalCheckpoint[]> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  const out: LocalCheckpoint[] = [];
  for (const name of names) {
    if (!STEP_DIR.test(name)) continue;
    const dir = join(root, name);
    const s = await stat(dir).catch(() => null);
    if (!s?.isDirectory()) continue;
    const marker = await stat(join(dir, CHECKPOINT_MARKER)).catch(() => null);
    if (!marker?.isFile()) continue;
    const files = (await listFiles(dir)).filter((f) => f !== CHECKPOINT_MARKER).sort();
    out.push({ step: Number(name), dir, files });
  }
  return out.sort((a, b) => a.step - b.step);
}

async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push(relative(dir, p).split(sep).join("/"));
    }
  };
  await walk(dir);
  return out;
}

/** `<base>/<job>/attempt-<n>/`: everything one attempt writes (checkpoints, logs). */
export function attemptKeyPrefix(base: string, jobId: string, attempt: number): string {
  const b = base.replace(/\/+$/, "");
  return `${b ? `${b}/` : ""}${jobId}/attempt-${attempt}/`;
}

/** `<base>/<job>/attempt-<n>/step-000000001200/`: zero-padded so listing order is step order. */
export function checkpointKeyPrefix(base: string, jobId: string, attempt: number, step: number): string {
  return `${attemptKeyPrefix(base, jobId, attempt)}step-${String(step).padStart(12, "0")}/`;
}

export interface RetryOptions {
  /** Attempts per file (default 5). */
  attempts?: number;
  backoff?: BackoffOptions;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface CheckpointTransferOptions extends RetryOptions {
  signal?: AbortSignal;
  /** Bytes done over the whole checkpoint. */
  onProgress?: (done: number, total: number) => void;
}

const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 15_000, jitter: "equal" };

/** Retries transient failures (UNAVAILABLE, ABORTED such as a checksum mismatch, network errors); not bad input or permissions. */
async function withRetry<T>(what: string, fn: () => Promise<T>, opts: CheckpointTransferOptions): Promise<T> {
  const attempts = opts.attempts ?? 5;
  const sleep = opts.sleep ?? realSleep;
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      const permanent = isAppError(e) && ["INVALID_ARGUMENT", "PERMISSION_DENIED", "NOT_FOUND", "FAILED_PRECONDITION", "UNAUTHENTICATED"].includes(e.code);
      if (permanent || i + 1 >= attempts) {
        if (isAppError(e)) throw e;
        throw new AppError("UNAVAILABLE", `${what} failed after ${i + 1} attempt(s): ${(e as Error).message}`, { reason: "transfer_failed", cause: e });
      }
      await sleep(backoffDelay(i, opts.backoff ?? DEFAULT_BACKOFF), opts.signal);
    }
  }
}

/**
 * Uploads one complete local checkpoint: every file (verified by the store
 * against its SHA-256), then the manifest. Re-running it after a failure
 * re-sends only what a retry needs; objects are immutable by content.
 */
export async function uploadCheckpoint(
  store: ObjectStore,
  base: string,
  ckpt: LocalCheckpoint,
  meta: { jobId: string; attempt: number; now: Date },
  opts: CheckpointTransferOptions = {},
): Promise<UploadedCheckpoint> {
  const prefix = checkpointKeyPrefix(base, meta.jobId, meta.attempt, ckpt.step);
  const sizes = await Promise.all(ckpt.files.map(async (f) => (await stat(join(ckpt.dir, f))).size));
  const total = sizes.reduce((a, b) => a + b, 0);
  let doneBefore = 0;
  const files: CheckpointManifest["files"] = [];
  for (const [i, f] of ckpt.files.entries()) {
    const put = await withRetry(`upload of ${f}`, () =>
      store.putFile(prefix + f, join(ckpt.dir, f), {
        ...(opts.signal ? { signal: opts.signal } : {}),
        onProgress: (done) => opts.onProgress?.(doneBefore + done, total),
      }),
      opts,
    );
    files.push({ path: f, bytes: put.bytes, sha256: put.sha256 });
    doneBefore += sizes[i] ?? put.bytes;
    opts.onProgress?.(doneBefore, total);
  }
  const manifest: CheckpointManifest = { version: 1, jobId: meta.jobId, attempt: meta.attempt, step: ckpt.step, createdAt: meta.now.toISOString(), files };
  const body = JSON.stringify(manifest, null, 2) + "\n";
  const tmp = join(ckpt.dir, `.${MANIFEST_NAME}.${process.pid}`);
  await writeFile(tmp, body);
  try {
    const key = prefix + MANIFEST_NAME;
    const put = await withRetry("upload of the manifest", () => store.putFile(key, tmp, opts.signal ? { signal: opts.signal } : {}), opts);
    return { step: ckpt.step, uri: put.uri, manifestKey: key, bytes: total, sha256: put.sha256 };
  } finally {
    await rm(tmp, { force: true });
  }
}

/**
 * Downloads the checkpoint whose manifest is `manifestKey` into `destDir`
 * (replaced atomically: written beside it, renamed at the end). The manifest
 * must hash to `manifestSha256` (from the controller's artifact record) and
 * every file to its manifest entry.
 */
export async function downloadCheckpoint(
  store: ObjectStore,
  manifestKey: string,
  manifestSha256: string,
  destDir: string,
  opts: CheckpointTransferOptions = {},
): Promise<{ step: number; dir: string; bytes: number }> {
  const staging = `${destDir}.part-${process.pid}`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const manifestPath = join(staging, MANIFEST_NAME);
    await withRetry("download of the manifest", () => store.getFile(manifestKey, manifestPath, { expectSha256: manifestSha256, ...(opts.signal ? { signal: opts.signal } : {}) }), opts);
    const manifest = parseManifest(await readFile(manifestPath, "utf8"), store.uriOf(manifestKey));
    const prefix = manifestKey.slice(0, manifestKey.length - MANIFEST_NAME.length);
    const total = manifest.files.reduce((a, f) => a + f.bytes, 0);
    let before = 0;
    for (const f of manifest.files) {
      const target = join(staging, ...f.path.split("/"));
      await withRetry(`download of ${f.path}`, () =>
        store.getFile(prefix + f.path, target, {
          expectSha256: f.sha256,
          ...(opts.signal ? { signal: opts.signal } : {}),
          onProgress: (done) => opts.onProgress?.(before + done, total),
        }),
        opts,
      );
      before += f.bytes;
    }
    await rm(manifestPath);
    await writeFile(join(staging, CHECKPOINT_MARKER), "");
    await rm(destDir, { recursive: true, force: true });
    await rename(staging, destDir);
    return { step: manifest.step, dir: destDir, bytes: total };
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
}

function parseManifest(text: string, uri: string): CheckpointManifest {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch {
    throw new AppError("FAILED_PRECONDITION", `${uri} is not a gpuorch checkpoint manifest (not JSON)`, { reason: "bad_manifest" });
  }
  const ok =
    typeof m === "object" &&
    m !== null &&
    (m as CheckpointManifest).version === 1 &&
    Number.isInteger((m as CheckpointManifest).step) &&
    Array.isArray((m as CheckpointManifest).files) &&
    (m as CheckpointManifest).files.every(
      (f) => typeof f.path === "string" && !f.path.split("/").includes("..") && !f.path.startsWith("/") && Number.isInteger(f.bytes) && /^[0-9a-f]{64}$/.test(f.sha256),
    );
  if (!ok) throw new AppError("FAILED_PRECONDITION", `${uri} is not a valid gpuorch checkpoint manifest`, { reason: "bad_manifest" });
  return m as CheckpointManifest;
}

/** SHA-256 of a string, hex (manifests are small). */
export function sha256Text(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

/**
 * Deletes one uploaded checkpoint given its manifest key: the manifest
 * first (so a half-deleted checkpoint never looks complete), then every
 * other object under its step prefix. Absent objects are not an error.
 */
export async function deleteCheckpoint(store: ObjectStore, manifestKey: string, opts: { signal?: AbortSignal } = {}): Promise<number> {
  if (!manifestKey.endsWith(`/${MANIFEST_NAME}`)) {
    throw AppError.invalid(`${store.uriOf(manifestKey)} is not a checkpoint manifest`, [{ field: "uri", message: `must end with /${MANIFEST_NAME}` }]);
  }
  const prefix = manifestKey.slice(0, manifestKey.length - MANIFEST_NAME.length);
  await store.delete([manifestKey], opts);
  const rest: string[] = [];
  for await (const o of store.list(prefix, opts)) rest.push(o.key);
  await store.delete(rest, opts);
  return rest.length + 1;
}
