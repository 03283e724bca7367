import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import type { Stats } from "node:fs";
import { chmod, lstat, mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { isAbsolute, join, posix } from "node:path";
import { AppError, isAppError, isRetryable } from "@gpuorch/core";
import { type BackoffOptions, type Logger, abortReason, backoffDelay, createNullLogger, sleep as realSleep } from "@gpuorch/runtime";
import { type ObjectInfo, type ObjectLocation, type ObjectStore, type OpenStoreOptions, openObjectStore } from "@gpuorch/storage";

/**
 * Fetching a job's code (entrypoint) and data from an object store into a
 * node-local cache before the job is launched.
 *
 * URIs: `file:///abs/path`, `s3://bucket/key`, `minio://host:port/bucket/key`,
 * `az://account/container/blob`, `gs://bucket/object` (opened with
 * `openObjectStore` from @gpuorch/storage, credentials from each provider's
 * standard chain). A URI ending in `/` names a prefix: every object under it,
 * fetched into a directory that mirrors the keys below the prefix. Anything
 * else names one object. Plain local paths (no scheme) are refused with
 * INVALID_ARGUMENT: resolving those is the caller's business, not a fetch.
 *
 * file:// is fetched like every other store: the object (or directory) is
 * copied into the cache and verified, never handed back in place. The job
 * then runs on an immutable, verified snapshot even when the source sits on
 * a shared file system that keeps changing, and the cache and size rules are
 * the same for every scheme. A file:// URI naming a directory is taken as a
 * prefix with or without the trailing `/` (on a file system the two cannot
 * be confused, unlike in a bucket).
 *
 * Cache: `<cacheDir>/fetch/<sha256(uri)>-<sha256(purpose, layout, content fingerprint)>/`
 * (each hash cut to 32 hex digits). The fingerprint is, for one object, its
 * recorded SHA-256 when the store has one, else its size and modification
 * time (from `head`); for a prefix, every key with its size and SHA-256 (or
 * modification time when the listing carries no checksum, as S3's does
 * not). A fetch therefore always asks the store what is there (one head or
 * listing), and downloads only when that differs from what is cached:
 * unchanged content comes back with `cached: true`, changed content lands in
 * a new entry. An entry is built in `<cacheDir>/fetch/.staging/…`, fsynced,
 * and renamed into place in one step, so a crash midway never leaves an
 * entry that looks complete; staging directories of dead processes are
 * removed on the next fetch. Concurrent fetches of the same content in one
 * process share one download (each caller still checks its own size
 * limit); separate processes may both download, and the first rename wins.
 * Entries are never evicted here (nor replaced while a job may use them).
 * The returned path is inside the cache: treat it as read-only.
 *
 * Integrity (the checksum check where the store gives one): every object is
 * downloaded with `store.getFile`, passing `expectSha256` when the head or
 * listing reported a recorded SHA-256, and the store itself verifies the
 * size, and the recorded checksum when it has one, before the file appears.
 * Objects without a recorded checksum are still size-checked.
 *
 * Size: the total from the head/listing must not exceed `maxBytes`, checked
 * before anything is downloaded (RESOURCE_EXHAUSTED, reason
 * `fetch_too_large`); each download is also capped via `getFile`'s
 * `maxBytes` at what is left of the budget, in case an object grows after it
 * was listed.
 *
 * Archives (fetchEntrypoint only; one object named *.tar.gz, *.tgz, *.tar or
 * *.zip): downloaded (counted against `maxBytes`), listed with the system
 * `tar -tv` / `unzip -Z`, refused when an entry is absolute, climbs with
 * `..`, is a device/fifo, or is a link that could point outside the tree
 * (see `checkArchiveEntry`); refused when the listed sizes add up to more
 * than `EXTRACT_FACTOR` × `maxBytes` (checked from the listing, so a zip or
 * tar bomb is refused before a byte is written; the extracted tree is
 * counted again afterwards as a backstop); then extracted with
 * `tar -x[z]f … -C <dir> --no-same-owner --no-same-permissions` or
 * `unzip -q -n … -d <dir>` (FAILED_PRECONDITION `fetch_unzip_missing` when
 * unzip is not installed). The archive file is not kept.
 *
 * Retries: head, list and each download are retried on transient failures
 * (UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED such as a checksum mismatch from
 * a torn transfer, raw network errors) with exponential backoff, 3 attempts
 * by default; permanent failures (not found, access denied, bad input,
 * too large) fail at once.
 *
 * Errors are AppErrors naming `field` (in the message and in `fields`) and
 * the URI; missing objects are NOT_FOUND with reason `fetch_not_found`.
 * URIs in errors and logs have any `user:password@` part removed; store
 * credentials never appear (the stores never put them in messages, and the
 * tar/unzip children get only PATH and LC_ALL in their environment).
 */

/** The cache root's subdirectory this module owns. */
export const FETCH_CACHE_SUBDIR = "fetch";
/** An archive may extract to at most this many times `maxBytes`. */
export const EXTRACT_FACTOR = 4;

export interface FetchRetryOptions {
  /** Attempts per store call (head, list, each download), the first included. Default 3. */
  attempts?: number;
  /** Default: 500 ms doubling to 10 s, equal jitter. */
  backoff?: BackoffOptions;
  /** Injected in tests. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface FetchOptions {
  /** Node-local cache root, e.g. `<agent work dir>/cache` (absolute); entries go under `<cacheDir>/fetch/`. */
  cacheDir: string;
  /** Refuse a fetch whose total size exceeds this (checked from listing/head before downloading, and enforced per object via getFile maxBytes). */
  maxBytes: number;
  /** Store endpoints for tests and on-prem gateways (`s3Endpoint`, `azureEndpoint`, `gcsEndpoint`, …). */
  store?: OpenStoreOptions;
  signal?: AbortSignal;
  /** Bytes downloaded so far over the whole fetch, and the total. Not called on a cache hit. */
  onProgress?: (done: number, total: number) => void;
  logger?: Logger;
  /** The spec field named in errors, e.g. "entrypoint.uri" or "data.dataset". Default "uri". */
  field?: string;
  retry?: FetchRetryOptions;
  /** Objects of a prefix downloaded at once. Default 4. */
  concurrency?: number;
  /**
   * Opens the store a URI lives in; default `openObjectStore` (whose stores
   * are closed after each fetch). A caller's own opener may share clients or
   * wrap the store; stores it returns are not closed here.
   */
  openStore?: (uri: string, opts: OpenStoreOptions, field: string) => { store: ObjectStore; location: ObjectLocation };
}

export interface Fetched {
  /**
   * Local path: the file for a single object (an entrypoint script is made
   * executable), the directory for a prefix or an extracted archive.
   */
  path: string;
  /** Bytes of the content at `path` (an extracted archive: the extracted files, not the archive). */
  bytes: number;
  /** Regular files (and symbolic links) at `path`. */
  files: number;
  /** SHA-256 of the single object downloaded (for an archive: of the archive); null for a prefix. */
  sha256: string | null;
  /** True when the cache already held this content and nothing was downloaded. */
  cached: boolean;
}

/**
 * Fetches a job's code: a single object (a script, or an archive
 * `.tar.gz`/`.tgz`/`.tar`/`.zip`, which is extracted into a directory and
 * that directory returned) or a prefix ending in "/" (every object under it,
 * directory returned). See the module comment for caching, integrity (the
 * checksum check where the store gives one), size limits and errors.
 */
export function fetchEntrypoint(uri: string, opts: FetchOptions): Promise<Fetched> {
  return fetchUri(uri, "entrypoint", opts);
}

/** Fetches a job's data: a single object (file returned) or a prefix ending in "/" (directory returned); archives are not extracted. */
export function fetchDataset(uri: string, opts: FetchOptions): Promise<Fetched> {
  return fetchUri(uri, "dataset", opts);
}

type Purpose = "entrypoint" | "dataset";
type ArchiveKind = "tgz" | "tar" | "zip";

/** What a fetch will download, decided from one head or one listing. */
interface Plan {
  layout: "file" | "archive" | "tree";
  archive: ArchiveKind | null;
  /** The objects, each with its path relative to the content directory. */
  objects: { info: ObjectInfo; rel: string }[];
  /** Directory markers (`dir/` keys of size 0) under a prefix: created empty. */
  dirs: string[];
  total: number;
  fingerprint: string;
}

/** What an entry's `meta.json` records. */
interface EntryMeta {
  v: 1;
  uri: string;
  purpose: Purpose;
  layout: Plan["layout"];
  /** The returned path, relative to the entry directory. */
  rel: string;
  bytes: number;
  files: number;
  sha256: string | null;
  fetchedAt: string;
}

const META = "meta.json";
const CONTENT = "content";
const STAGING = ".staging";
const MIB = 1024 * 1024;
const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 10_000, jitter: "equal" };
const NETWORK_CODES = new Set(["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "ENETUNREACH", "EHOSTUNREACH", "ECONNABORTED"]);

async function fetchUri(uri: string, purpose: Purpose, opts: FetchOptions): Promise<Fetched> {
  const field = opts.field ?? "uri";
  const shown = redactUri(uri);
  checkOptions(opts); // the caller's mistake, not the spec's: not attributed to `field`
  try {
    if (!/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(uri)) {
      throw invalid(field, `${clip(shown)} is not an object-store URI (file:///abs/path, s3://, minio://, az://, gs://); plain local paths are not fetched`, "fetch_not_a_uri");
    }
    const log = (opts.logger ?? createNullLogger()).child({ component: "fetch", field, uri: shown });
    const { store, location } = openStoreFor(uri, opts, field);
    let plan: Plan;
    try {
      plan = await planFetch(store, location, purpose, shown, field, opts, log);
    } finally {
      if (!opts.openStore) closeStore(store);
    }
    if (plan.total > opts.maxBytes) {
      throw tooLarge(field, `${shown} is ${plan.total} B (${plan.objects.length} object(s)), over the limit of ${opts.maxBytes} B`, { bytes: plan.total, limit: opts.maxBytes });
    }
    const root = join(opts.cacheDir, FETCH_CACHE_SUBDIR);
    const name = entryName(uri, purpose, plan);
    const entry = join(root, name);
    const hit = await readEntry(entry);
    if (hit !== null && hit !== "broken") {
      log.info({ bytes: hit.bytes, files: hit.files, cached: true, path: hit.path }, "fetch: cache hit");
      return { ...hit, cached: true };
    }
    const started = Date.now();
    const got = await shareFlight(
      entry,
      (signal, progress) => populate({ uri, shown, purpose, field, plan, root, name, entry, opts, log, signal, progress }),
      opts.signal,
      opts.onProgress,
    );
    log.info({ bytes: got.bytes, files: got.files, cached: false, path: got.path, ms: Date.now() - started }, "fetch: downloaded");
    return { ...got, cached: false };
  } catch (e) {
    throw withField(e, field, shown, uri);
  }
}

function checkOptions(opts: FetchOptions): void {
  if (typeof opts.cacheDir !== "string" || !isAbsolute(opts.cacheDir)) {
    throw AppError.invalid(`fetch: cacheDir must be an absolute path, got ${clip(String(opts.cacheDir))}`, [{ field: "cacheDir", message: "must be an absolute path" }]);
  }
  if (typeof opts.maxBytes !== "number" || !Number.isFinite(opts.maxBytes) || opts.maxBytes < 0) {
    throw AppError.invalid(`fetch: maxBytes must be a non-negative number, got ${String(opts.maxBytes)}`, [{ field: "maxBytes", message: "must be a non-negative number" }]);
  }
}

// ---------------------------------------------------------------------------
// Planning: what is there, how big, what it is called in the cache.

async function planFetch(store: ObjectStore, loc: ObjectLocation, purpose: Purpose, shown: string, field: string, opts: FetchOptions, log: Logger): Promise<Plan> {
  const call = <T>(what: string, fn: () => Promise<T>): Promise<T> => withRetry(what, fn, opts, log);
  const signalOpt = opts.signal ? { signal: opts.signal } : {};
  let prefix: string | null = loc.key === "" || loc.key.endsWith("/") ? loc.key : null;
  if (prefix === null) {
    const info = await call(`head of ${shown}`, () => store.head(loc.key, signalOpt));
    if (info !== null) return planObject(info, loc.key, purpose, shown, field);
    if (loc.scheme === "file" && (await isDirectory(loc.key))) prefix = `${loc.key}/`;
    else throw notFound(field, `${shown} does not exist`);
  }
  const listed = await call(`listing of ${shown}`, async () => {
    const out: ObjectInfo[] = [];
    for await (const o of store.list(prefix, signalOpt)) out.push(o);
    return out;
  });
  return planTree(listed, prefix, shown, field);
}

function planObject(info: ObjectInfo, key: string, purpose: Purpose, shown: string, field: string): Plan {
  const base = posix.basename(key);
  if (base === "" || base === "." || base === ".." || base.includes("\0")) {
    throw invalid(field, `${shown}: the object name ${clip(base)} cannot be a local file name`, "fetch_unsafe_key");
  }
  const archive = purpose === "entrypoint" ? archiveKind(base) : null;
  const version = info.sha256 !== null ? `sha256:${info.sha256}` : `mtime:${info.updatedAt?.toISOString() ?? "?"}`;
  return {
    layout: archive === null ? "file" : "archive",
    archive,
    objects: [{ info, rel: base }],
    dirs: [],
    total: info.bytes,
    fingerprint: JSON.stringify([[base, info.bytes, version]]),
  };
}

function planTree(listed: ObjectInfo[], prefix: string, shown: string, field: string): Plan {
  const objects: Plan["objects"] = [];
  const dirs: string[] = [];
  for (const info of listed) {
    const rel = info.key.startsWith(prefix) ? info.key.slice(prefix.length) : null;
    const unsafe = (why: string): AppError => invalid(field, `${shown}: object key ${clip(info.key)} ${why}; refusing to fetch the prefix`, "fetch_unsafe_key");
    if (rel === null) throw unsafe("is not under the prefix");
    if (rel === "") continue;
    if (rel.endsWith("/")) {
      // A "folder" placeholder, as S3 consoles create: nothing to download.
      if (info.bytes !== 0) throw unsafe("ends with '/' but is not empty");
      const d = rel.slice(0, -1);
      if (d !== "") {
        checkRel(d, unsafe);
        dirs.push(d);
      }
      continue;
    }
    checkRel(rel, unsafe);
    objects.push({ info, rel });
  }
  if (objects.length === 0) throw notFound(field, `${shown} holds no objects`);
  // A key that is both a file and a directory ("a" and "a/b") cannot be laid out on disk.
  const files = new Set(objects.map((o) => o.rel));
  for (const rel of [...files, ...dirs]) {
    const segs = rel.split("/");
    for (let i = 1; i < segs.length; i++) {
      const parent = segs.slice(0, i).join("/");
      if (files.has(parent)) throw invalid(field, `${shown}: ${clip(prefix + parent)} is both an object and a prefix of ${clip(prefix + rel)}`, "fetch_unsafe_key");
    }
  }
  for (const d of dirs) if (files.has(d)) throw invalid(field, `${shown}: ${clip(prefix + d)} is both an object and a folder marker`, "fetch_unsafe_key");
  const total = objects.reduce((a, o) => a + o.info.bytes, 0);
  const fingerprint = JSON.stringify(objects.map((o) => [o.rel, o.info.bytes, o.info.sha256 ?? `mtime:${o.info.updatedAt?.toISOString() ?? "?"}`]).concat(dirs.map((d) => [`${d}/`])));
  return { layout: "tree", archive: null, objects, dirs, total, fingerprint };
}

/** A key below a prefix must stay below it: relative, no empty, `.` or `..` segments, no NUL. */
function checkRel(rel: string, unsafe: (why: string) => AppError): void {
  if (rel.startsWith("/")) throw unsafe("would be an absolute path");
  if (rel.includes("\0")) throw unsafe("contains NUL");
  for (const seg of rel.split("/")) {
    if (seg === "..") throw unsafe("climbs out of the prefix with '..'");
    if (seg === "" || seg === ".") throw unsafe("has an empty or '.' path segment");
  }
}

function archiveKind(name: string): ArchiveKind | null {
  const n = name.toLowerCase();
  if (n.endsWith(".tar.gz") || n.endsWith(".tgz")) return "tgz";
  if (n.endsWith(".tar")) return "tar";
  if (n.endsWith(".zip")) return "zip";
  return null;
}

function entryName(uri: string, purpose: Purpose, plan: Plan): string {
  const content = JSON.stringify([purpose, plan.layout, plan.archive, plan.fingerprint]);
  return `${sha256Hex(uri).slice(0, 32)}-${sha256Hex(content).slice(0, 32)}`;
}

// ---------------------------------------------------------------------------
// The cache entry: read, build, publish.

type Result = Omit<Fetched, "cached">;

/** A complete entry's result; null when absent; "broken" when the directory exists without a valid record. */
async function readEntry(entry: string): Promise<Result | null | "broken"> {
  let text: string;
  try {
    text = await readFile(join(entry, META), "utf8");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return (await exists(entry)) ? "broken" : null;
    throw e;
  }
  try {
    const m = JSON.parse(text) as Partial<EntryMeta>;
    if (m.v !== 1 || typeof m.rel !== "string" || typeof m.bytes !== "number" || typeof m.files !== "number") return "broken";
    const path = join(entry, m.rel);
    if (!(await exists(path))) return "broken";
    return { path, bytes: m.bytes, files: m.files, sha256: typeof m.sha256 === "string" ? m.sha256 : null };
  } catch {
    return "broken";
  }
}

interface PopulateArgs {
  uri: string;
  shown: string;
  purpose: Purpose;
  field: string;
  plan: Plan;
  root: string;
  name: string;
  entry: string;
  opts: FetchOptions;
  log: Logger;
  signal: AbortSignal;
  progress: (done: number, total: number) => void;
}

/** Downloads into a staging directory and renames it into place as the entry. */
async function populate(a: PopulateArgs): Promise<Result> {
  const { plan, entry, opts } = a;
  const stagingRoot = join(a.root, STAGING);
  await mkdir(stagingRoot, { recursive: true });
  await cleanStaleStaging(stagingRoot, a.log);
  const existing = await readEntry(entry);
  if (existing === "broken") {
    a.log.warn({ entry }, "fetch: removing an incomplete cache entry");
    await rm(entry, { recursive: true, force: true });
  } else if (existing !== null) {
    return existing; // another process finished it meanwhile
  }
  const staging = join(stagingRoot, `${a.name}.${process.pid}.${randomBytes(4).toString("hex")}`);
  const content = join(staging, CONTENT);
  await mkdir(content, { recursive: true });
  try {
    const { store } = openStoreFor(a.uri, opts, a.field);
    let result: Result & { rel: string };
    try {
      result = await download(a, store, staging, content);
    } finally {
      if (!opts.openStore) closeStore(store);
    }
    const meta: EntryMeta = {
      v: 1,
      uri: a.shown,
      purpose: a.purpose,
      layout: plan.layout,
      rel: result.rel,
      bytes: result.bytes,
      files: result.files,
      sha256: result.sha256,
      fetchedAt: new Date().toISOString(),
    };
    await writeFile(join(staging, META), `${JSON.stringify(meta, null, 2)}\n`);
    await fsyncTree(staging);
    a.signal.throwIfAborted();
    try {
      await rename(staging, entry);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== "EEXIST" && code !== "ENOTEMPTY") throw e;
      // Another process published the same content first: use theirs.
      await rm(staging, { recursive: true, force: true });
      const theirs = await readEntry(entry);
      if (theirs !== null && theirs !== "broken") return theirs;
      throw e;
    }
    await fsyncPath(a.root);
    return { path: join(entry, result.rel), bytes: result.bytes, files: result.files, sha256: result.sha256 };
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    throw e;
  }
}

async function download(a: PopulateArgs, store: ObjectStore, staging: string, content: string): Promise<Result & { rel: string }> {
  const { plan, opts, signal } = a;
  const call = <T>(what: string, fn: () => Promise<T>): Promise<T> => withRetry(what, fn, { ...opts, signal }, a.log);
  const done = new Map<number, number>();
  const report = (i: number, n: number): void => {
    done.set(i, n);
    let sum = 0;
    for (const v of done.values()) sum += v;
    a.progress(sum, plan.total);
  };
  /** One object, verified by the store; its budget is what the limit leaves after every other object as listed. */
  const getOne = (i: number, target: string, s: AbortSignal): Promise<{ bytes: number; sha256: string }> => {
    const o = plan.objects[i];
    if (o === undefined) throw AppError.internal(`fetch: no object ${i}`);
    const budget = opts.maxBytes - (plan.total - o.info.bytes);
    const uri = store.uriOf(o.info.key);
    return call(`download of ${redactUri(uri)}`, () =>
      store.getFile(o.info.key, target, {
        maxBytes: Math.max(0, budget),
        ...(o.info.sha256 !== null ? { expectSha256: o.info.sha256 } : {}),
        signal: s,
        onProgress: (n) => report(i, n),
      }),
    ).catch((e: unknown) => {
      // The store's "larger than maxBytes" (the object grew after it was listed) is the fetch's limit.
      if (isAppError(e) && e.reason === "object_too_large") {
        throw tooLarge(a.field, `${a.shown}: ${redactUri(uri)} grew past the limit of ${opts.maxBytes} B while being fetched`, { limit: opts.maxBytes });
      }
      throw e;
    });
  };

  switch (plan.layout) {
    case "file": {
      const rel = plan.objects[0]?.rel ?? "";
      const target = join(content, rel);
      const got = await getOne(0, target, signal);
      if (a.purpose === "entrypoint") await chmod(target, 0o755);
      report(0, got.bytes);
      return { rel: `${CONTENT}/${rel}`, path: target, bytes: got.bytes, files: 1, sha256: got.sha256 };
    }
    case "archive": {
      const kind = plan.archive ?? "tar";
      const archive = join(staging, `archive.${kind}`);
      const got = await getOne(0, archive, signal);
      report(0, got.bytes);
      await extractArchive(archive, kind, content, { maxExtracted: EXTRACT_FACTOR * opts.maxBytes, field: a.field, shown: a.shown, signal });
      await rm(archive, { force: true });
      const counted = await countTree(content);
      if (counted.bytes > EXTRACT_FACTOR * opts.maxBytes) {
        throw tooLarge(a.field, `${a.shown} extracted to ${counted.bytes} B, over ${EXTRACT_FACTOR}× the limit (${EXTRACT_FACTOR * opts.maxBytes} B)`, {
          bytes: counted.bytes,
          limit: EXTRACT_FACTOR * opts.maxBytes,
        });
      }
      return { rel: CONTENT, path: content, bytes: counted.bytes, files: counted.files, sha256: got.sha256 };
    }
    case "tree": {
      for (const d of plan.dirs) await mkdir(join(content, ...d.split("/")), { recursive: true });
      let bytes = 0;
      await pool(plan.objects.length, Math.max(1, Math.floor(opts.concurrency ?? 4)), signal, async (i, s) => {
        const o = plan.objects[i];
        if (o === undefined) return;
        const got = await getOne(i, join(content, ...o.rel.split("/")), s);
        report(i, got.bytes);
        bytes += got.bytes;
      });
      return { rel: CONTENT, path: content, bytes, files: plan.objects.length, sha256: null };
    }
  }
}

/** Runs `fn(0..n-1)`, `width` at a time; the first failure cancels the rest and is what rejects. */
async function pool(n: number, width: number, signal: AbortSignal, fn: (i: number, signal: AbortSignal) => Promise<void>): Promise<void> {
  const inner = new AbortController();
  const onAbort = (): void => inner.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  const failure: { error: unknown; failed: boolean } = { error: undefined, failed: false };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (!failure.failed) {
      const i = next++;
      if (i >= n) return;
      try {
        await fn(i, inner.signal);
      } catch (e) {
        if (!failure.failed) {
          failure.failed = true;
          failure.error = e;
          inner.abort(e);
        }
        return;
      }
    }
  };
  try {
    signal.throwIfAborted();
    await Promise.all(Array.from({ length: Math.min(width, n) }, worker));
  } finally {
    signal.removeEventListener("abort", onAbort);
  }
  if (failure.failed) throw failure.error;
}

// ---------------------------------------------------------------------------
// Archives.

interface ArchiveEntry {
  type: string;
  name: string;
  size: number;
  /** Symbolic or hard link targets; each split of an ambiguous listing line is checked. */
  targets: { name: string; target: string }[];
}

async function extractArchive(archive: string, kind: ArchiveKind, dest: string, c: { maxExtracted: number; field: string; shown: string; signal: AbortSignal }): Promise<void> {
  const entries = kind === "zip" ? await listZip(archive, c) : await listTar(archive, kind === "tgz", c);
  let total = 0;
  for (const e of entries) {
    checkArchiveEntry(e, kind, c.field, c.shown);
    total += e.size;
  }
  if (total > c.maxExtracted) {
    throw tooLarge(c.field, `${c.shown} would extract to ${total} B, over ${EXTRACT_FACTOR}× the limit (${c.maxExtracted} B)`, { bytes: total, limit: c.maxExtracted });
  }
  if (kind === "zip") await tool("unzip", ["-q", "-n", archive, "-d", dest], c);
  else await tool("tar", ["-x", ...(kind === "tgz" ? ["-z"] : []), "-f", archive, "-C", dest, "--no-same-owner", "--no-same-permissions"], c);
}

/**
 * An entry may be extracted when its name is relative without `..`, it is a
 * regular file, directory, hard link to such a name, or symbolic link whose
 * target is relative without `..` (such a link, and any chain of them, can
 * only point further down the tree). Zip symbolic links are refused: the
 * listing does not show their targets.
 */
function checkArchiveEntry(e: ArchiveEntry, kind: ArchiveKind, field: string, shown: string): void {
  const bad = (why: string): AppError => invalid(field, `${shown}: archive entry ${clip(e.name)} ${why}; refusing to extract`, "fetch_unsafe_archive");
  const pathProblem = (p: string): string | null => {
    if (p.startsWith("/")) return "is an absolute path";
    if (/^[A-Za-z]:[\\/]/.test(p) || p.startsWith("\\")) return "is an absolute (Windows) path";
    if (p.split(/[\\/]/).includes("..")) return "climbs out with '..'";
    return null;
  };
  const own = pathProblem(e.name);
  if (own !== null) throw bad(own);
  switch (e.type) {
    case "-":
    case "d":
      return;
    case "l":
      if (kind === "zip") throw bad("is a symbolic link (not accepted in zip archives)");
      for (const t of e.targets) {
        const p = pathProblem(t.name) ?? pathProblem(t.target);
        if (p !== null) throw bad(`is a symbolic link whose target ${clip(t.target)} ${p}`);
      }
      return;
    case "h":
      for (const t of e.targets) {
        const p = pathProblem(t.name) ?? pathProblem(t.target);
        if (p !== null) throw bad(`is a hard link whose target ${clip(t.target)} ${p}`);
      }
      return;
    default:
      throw bad(`has type '${e.type}' (only files, directories and links are accepted)`);
  }
}

/** `tar -tv` lines (GNU tar, LC_ALL=C, --numeric-owner): `mode uid/gid size date time name[ -> target| link to target]`. */
async function listTar(archive: string, gz: boolean, c: { field: string; shown: string; signal: AbortSignal }): Promise<ArchiveEntry[]> {
  const { stdout } = await tool("tar", ["-t", "-v", ...(gz ? ["-z"] : []), "-f", archive, "--numeric-owner"], c);
  const out: ArchiveEntry[] = [];
  for (const line of stdout.split("\n")) {
    if (line === "") continue;
    const m = /^(\S)\S*\s+\S+\s+(\d+)\s+\d{4}-\d{2}-\d{2}\s+\d{2}:\d{2}(?::\d{2})?\s(.*)$/.exec(line);
    if (!m) {
      const type = line[0] ?? "?";
      if (!"-dlh".includes(type)) {
        out.push({ type, name: line.slice(0, 200), size: 0, targets: [] });
        continue;
      }
      throw invalid(c.field, `${c.shown}: cannot read the archive listing line ${clip(line)}`, "fetch_bad_archive");
    }
    const type = m[1] ?? "?";
    const rest = m[3] ?? "";
    const sep = type === "l" ? " -> " : type === "h" ? " link to " : null;
    const targets = sep === null ? [] : splits(rest, sep);
    out.push({ type, name: targets[0]?.name ?? rest, size: Number(m[2]), targets });
  }
  return out;
}

/** Every way `s` splits into name + sep + target (a name may itself contain `sep`). */
function splits(s: string, sep: string): { name: string; target: string }[] {
  const out: { name: string; target: string }[] = [];
  for (let i = s.indexOf(sep); i >= 0; i = s.indexOf(sep, i + 1)) out.push({ name: s.slice(0, i), target: s.slice(i + sep.length) });
  return out.length > 0 ? out : [{ name: s, target: "" }];
}

/** `unzip -Z` lines: `mode version os size tx method date time name`. */
async function listZip(archive: string, c: { field: string; shown: string; signal: AbortSignal }): Promise<ArchiveEntry[]> {
  const { stdout } = await tool("unzip", ["-Z", archive], c);
  const out: ArchiveEntry[] = [];
  for (const line of stdout.split("\n")) {
    if (line === "" || /^(Archive:|Zip file size:|Zip file comment|\d+ files?, )/.test(line)) continue;
    const m = /^(\S+)\s+\S+\s+\S+\s+(\d+)\s+\S+\s+\S+\s+\d{2}-\w{3}-\d{2}\s+\d{2}:\d{2}\s(.*)$/.exec(line);
    if (!m) throw invalid(c.field, `${c.shown}: cannot read the zip listing line ${clip(line)}`, "fetch_bad_archive");
    const mode = m[1] ?? "?";
    out.push({ type: mode.startsWith("l") ? "l" : mode.startsWith("d") || (m[3] ?? "").endsWith("/") ? "d" : "-", name: m[3] ?? "", size: Number(m[2]), targets: [] });
  }
  return out;
}

/** Runs tar/unzip with a minimal environment (no store credentials), stdin closed (no prompts). */
function tool(cmd: "tar" | "unzip", args: string[], c: { field: string; shown: string; signal: AbortSignal }): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      cmd,
      args,
      { encoding: "utf8", maxBuffer: 64 * MIB, env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LC_ALL: "C" }, signal: c.signal, windowsHide: true },
      (err, stdout, stderr) => {
        if (err === null) return resolve({ stdout, stderr });
        if (err.name === "AbortError" || c.signal.aborted) return reject(abortReason(c.signal));
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT") {
          return reject(
            cmd === "unzip"
              ? new AppError("FAILED_PRECONDITION", `${c.field}: ${c.shown} is a zip archive but 'unzip' is not installed on this node; install unzip or use .tar.gz`, {
                  reason: "fetch_unzip_missing",
                  fields: [{ field: c.field, message: "unzip is not installed" }],
                })
              : new AppError("FAILED_PRECONDITION", `${c.field}: ${c.shown} is an archive but 'tar' is not installed on this node`, { reason: "fetch_tar_missing", fields: [{ field: c.field, message: "tar is not installed" }] }),
          );
        }
        if (code === "ERR_CHILD_PROCESS_STDIO_MAXBUFFER") return reject(invalid(c.field, `${c.shown}: the archive lists too many entries`, "fetch_bad_archive"));
        const detail = String(stderr).trim().split("\n").slice(-3).join("; ").slice(0, 400) || err.message;
        reject(invalid(c.field, `${c.shown} is not a readable archive (${cmd}: ${detail})`, "fetch_bad_archive"));
      },
    );
    child.stdin?.end();
  });
}

// ---------------------------------------------------------------------------
// Sharing one download between concurrent callers.

interface Flight {
  promise: Promise<Result>;
  controller: AbortController;
  listeners: Set<(done: number, total: number) => void>;
  waiters: number;
  settled: boolean;
}

const flights = new Map<string, Flight>();

/**
 * Joins the download for `key`, starting it when none is running. A caller
 * whose signal aborts stops waiting at once; the download itself is aborted
 * only when every caller waiting on it has gone.
 */
async function shareFlight(
  key: string,
  start: (signal: AbortSignal, progress: (done: number, total: number) => void) => Promise<Result>,
  signal: AbortSignal | undefined,
  onProgress: ((done: number, total: number) => void) | undefined,
): Promise<Result> {
  signal?.throwIfAborted();
  let f = flights.get(key);
  if (f === undefined) {
    const controller = new AbortController();
    const listeners = new Set<(done: number, total: number) => void>();
    const flight: Flight = { promise: Promise.resolve() as unknown as Promise<Result>, controller, listeners, waiters: 0, settled: false };
    flight.promise = start(controller.signal, (done, total) => {
      for (const l of listeners) l(done, total);
    }).finally(() => {
      flight.settled = true;
      if (flights.get(key) === flight) flights.delete(key);
    });
    flight.promise.catch(() => {}); // every waiter gets the rejection; none left must not make it unhandled
    flights.set(key, flight);
    f = flight;
  }
  const flight = f;
  flight.waiters++;
  if (onProgress) flight.listeners.add(onProgress);
  try {
    return await untilAborted(flight.promise, signal);
  } finally {
    flight.waiters--;
    if (onProgress) flight.listeners.delete(onProgress);
    if (flight.waiters === 0 && !flight.settled) {
      if (flights.get(key) === flight) flights.delete(key);
      flight.controller.abort(signal?.reason);
    }
  }
}

function untilAborted<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

// ---------------------------------------------------------------------------
// Retries and errors.

async function withRetry<T>(what: string, fn: () => Promise<T>, opts: Pick<FetchOptions, "retry" | "signal">, log: Logger): Promise<T> {
  const attempts = Math.max(1, Math.floor(opts.retry?.attempts ?? 3));
  const sleep = opts.retry?.sleep ?? realSleep;
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (opts.signal?.aborted || !isTransient(e) || i + 1 >= attempts) throw e;
      const delay = backoffDelay(i, opts.retry?.backoff ?? DEFAULT_BACKOFF);
      log.warn({ attempt: i + 1, attempts, delayMs: delay, err: scrub((e as Error).message) }, `fetch: ${what} failed, retrying`);
      await sleep(delay, opts.signal);
    }
  }
}

function isTransient(e: unknown): boolean {
  if (isAppError(e)) return isRetryable(e.code);
  if (e instanceof Error && e.name === "AbortError") return false;
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return typeof code === "string" && (NETWORK_CODES.has(code) || code.startsWith("UND_ERR_"));
}

/** Every AppError leaving the API names the field (message and `fields`); missing is `fetch_not_found`. */
function withField(e: unknown, field: string, shown: string, raw: string): unknown {
  if (!isAppError(e)) return e;
  let message = scrub(e.message.split(raw).join(shown));
  if (message.startsWith(`${field}: `)) message = message.slice(field.length + 2);
  if (!message.includes(shown)) message = `${shown}: ${message}`;
  const named = `${field}: ${message}`;
  const notFoundNow = e.code === "NOT_FOUND" && e.reason !== "fetch_not_found";
  if (e.fields.some((f) => f.field === field) && !notFoundNow && named === e.message) return e;
  return new AppError(e.code, named, {
    reason: e.code === "NOT_FOUND" ? "fetch_not_found" : e.reason,
    fields: e.fields.some((f) => f.field === field) ? e.fields : [{ field, message }, ...e.fields],
    cause: e,
    meta: { ...e.meta, uri: shown, ...(notFoundNow ? { storeReason: e.reason } : {}) },
  });
}

function invalid(field: string, message: string, reason: string): AppError {
  return new AppError("INVALID_ARGUMENT", `${field}: ${message}`, { reason, fields: [{ field, message }] });
}

function notFound(field: string, message: string): AppError {
  return new AppError("NOT_FOUND", `${field}: ${message}`, { reason: "fetch_not_found", fields: [{ field, message }] });
}

function tooLarge(field: string, message: string, meta: Record<string, unknown>): AppError {
  return new AppError("RESOURCE_EXHAUSTED", `${field}: ${message}`, { reason: "fetch_too_large", fields: [{ field, message }], meta });
}

/** The URI without any `user:password@` in its authority. */
export function redactUri(uri: string): string {
  return uri.replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/@]*@/, "$1");
}

/** Removes `user:password@` from any URI inside a message. */
function scrub(message: string): string {
  return message.replace(/\b([A-Za-z][A-Za-z0-9+.-]*:\/\/)[^/@\s"']*@/g, "$1");
}

function clip(s: string): string {
  return JSON.stringify(s.length > 120 ? `${s.slice(0, 117)}...` : s);
}

// ---------------------------------------------------------------------------
// File-system helpers.

function sha256Hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

function openStoreFor(uri: string, opts: FetchOptions, field: string): { store: ObjectStore; location: ObjectLocation } {
  return (opts.openStore ?? openObjectStore)(uri, opts.store ?? {}, field);
}

function closeStore(store: ObjectStore): void {
  const close = (store as ObjectStore & { close?: () => void }).close;
  if (typeof close === "function") close.call(store);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** Regular files and symbolic links under `dir`, and the regular files' bytes. */
async function countTree(dir: string): Promise<{ files: number; bytes: number }> {
  let files = 0;
  let bytes = 0;
  await walkTree(dir, (_p, st) => {
    if (st.isFile()) {
      files++;
      bytes += st.size;
    } else if (st.isSymbolicLink()) files++;
  });
  return { files, bytes };
}

async function walkTree(dir: string, visit: (path: string, st: Stats) => void | Promise<void>): Promise<void> {
  for (const name of await readdir(dir)) {
    const p = join(dir, name);
    const st = await lstat(p);
    if (st.isDirectory()) await walkTree(p, visit);
    await visit(p, st);
  }
}

/** Flushes every file and directory of a staging tree, so the renamed entry survives a power loss complete. */
async function fsyncTree(dir: string): Promise<void> {
  await walkTree(dir, async (p, st) => {
    if (st.isFile() || st.isDirectory()) await fsyncPath(p);
  });
  await fsyncPath(dir);
}

async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const cleanedStaging = new Set<string>();

/** Once per process and cache: removes staging directories left by processes that are gone. */
async function cleanStaleStaging(stagingRoot: string, log: Logger): Promise<void> {
  if (cleanedStaging.has(stagingRoot)) return;
  cleanedStaging.add(stagingRoot);
  let names: string[];
  try {
    names = await readdir(stagingRoot);
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(/\.(\d+)\.[0-9a-f]+$/.exec(name)?.[1] ?? NaN);
    if (!Number.isInteger(pid) || pid === process.pid || isAlive(pid)) continue;
    log.info({ staging: name }, "fetch: removing a staging directory left by a dead process");
    await rm(join(stagingRoot, name), { recursive: true, force: true }).catch(() => {});
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
