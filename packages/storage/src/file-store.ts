import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, type BigIntStats, type Dirent } from "node:fs";
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, posix } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { AppError, isAppError } from "@gpuorch/core";
import type { GetOptions, GetResult, ObjectInfo, ObjectStore, PutResult, TransferOptions } from "./types.js";
import { objectUri } from "./uri.js";
import { checkUploaded, localFileSize, writeVerified } from "./verify.js";

/**
 * The file:// store: keys are absolute paths on this machine (a local disk
 * or a shared file system such as NFS or Lustre).
 *
 * Checksums live in a sidecar file `<path>.gpuorch-sha256` holding JSON
 * `{ v, sha256, bytes, dev, ino, mtimeNs }`, so `head` costs two small reads
 * instead of hashing a 1 GB checkpoint. The sidecar is trusted only while it
 * still describes the file next to it: same device, inode, size and mtime
 * (a rename keeps the inode and mtime; any rewrite changes one of them).
 * A file written by someone else, or rewritten behind our back, therefore
 * reports `sha256: null` rather than a stale checksum. (An in-place rewrite
 * of the same size within one file-system timestamp tick would keep the old
 * checksum; `getFile` hashes what it reads, so it then fails verification
 * instead of passing the bytes on.) We chose this over
 * extended attributes (not kept by every file system, tar or copy tool) and
 * over hashing on `head` (seconds per GB).
 *
 * `putFile` copies into `<path>.gpuorch-tmp-*` while hashing, fsyncs it,
 * writes the sidecar (itself through a temporary file and a rename), then
 * renames the data into place and fsyncs the directory: a reader sees the
 * old object or the new one, never half of one, and the new data is never
 * visible without its sidecar. A crash between the two renames leaves a
 * sidecar that no longer matches the inode at `<path>`, which `head`
 * ignores and the next put replaces.
 *
 * `list` never shows sidecars or temporary files, and does not follow
 * symbolic links to directories (no loops); links to files are listed.
 * `delete` removes the file and its sidecar; directories left empty stay.
 * Keys ending in `.gpuorch-sha256` or containing `.gpuorch-tmp-` are refused.
 */

export const FILE_CHECKSUM_SUFFIX = ".gpuorch-sha256";
const TMP_MARK = ".gpuorch-tmp-";

interface Sidecar {
  v: 1;
  sha256: string;
  bytes: string;
  dev: string;
  ino: string;
  mtimeNs: string;
}

export function createFileStore(): ObjectStore {
  const uriOf = (key: string): string => objectUri({ scheme: "file", bucket: "", key });

  async function head(key: string, opts: { signal?: AbortSignal } = {}): Promise<ObjectInfo | null> {
    checkKey(key);
    opts.signal?.throwIfAborted();
    try {
      return await infoOf(key);
    } catch (e) {
      throw mapFsError(e, "head", uriOf(key));
    }
  }

  async function putFile(key: string, path: string, opts: TransferOptions = {}): Promise<PutResult> {
    checkKey(key);
    const uri = uriOf(key);
    const total = await localFileSize(path);
    const suffix = `${TMP_MARK}${process.pid}-${randomBytes(6).toString("hex")}`;
    const tmp = `${key}${suffix}`;
    const sidecarTmp = `${key}${FILE_CHECKSUM_SUFFIX}${suffix}`;
    try {
      await mkdir(dirname(key), { recursive: true });
      const hash = createHash("sha256");
      let bytes = 0;
      const meter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          bytes += chunk.length;
          hash.update(chunk);
          opts.onProgress?.(bytes, total);
          cb(null, chunk);
        },
      });
      await pipeline(createReadStream(path), meter, createWriteStream(tmp, { mode: 0o644 }), { ...(opts.signal ? { signal: opts.signal } : {}) });
      const sent = { bytes, sha256: hash.digest("hex") };
      await fsync(tmp);
      const st = await stat(tmp, { bigint: true });
      const sidecar: Sidecar = { v: 1, sha256: sent.sha256, bytes: String(st.size), dev: String(st.dev), ino: String(st.ino), mtimeNs: String(st.mtimeNs) };
      await writeFile(sidecarTmp, `${JSON.stringify(sidecar)}\n`, { mode: 0o644 });
      opts.signal?.throwIfAborted();
      await rename(sidecarTmp, `${key}${FILE_CHECKSUM_SUFFIX}`);
      await rename(tmp, key);
      await fsync(dirname(key));
      checkUploaded(uri, await infoOf(key), sent);
      return { uri, ...sent };
    } catch (e) {
      await Promise.all([rm(tmp, { force: true }), rm(sidecarTmp, { force: true })]);
      throw mapFsError(e, "upload to", uri);
    }
  }

  async function getFile(key: string, path: string, opts: GetOptions = {}): Promise<GetResult> {
    const uri = uriOf(key);
    const info = await head(key, opts);
    if (!info) throw notFound(uri);
    const body = createReadStream(key);
    try {
      return await writeVerified(body, path, uri, info, opts);
    } catch (e) {
      throw mapFsError(e, "download of", uri);
    } finally {
      body.destroy();
    }
  }

  async function* list(prefix: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<ObjectInfo> {
    if (!prefix.startsWith("/")) {
      const message = `file:// listing prefixes are absolute paths, got ${JSON.stringify(prefix)}`;
      throw AppError.invalid(message, [{ field: "prefix", message }], "invalid_object_key");
    }
    const start = prefix.endsWith("/") ? prefix.slice(0, -1) || "/" : dirname(prefix);
    try {
      yield* walk(start, prefix, opts.signal);
    } catch (e) {
      throw mapFsError(e, "list", uriOf(prefix));
    }
  }

  async function deleteKeys(keys: readonly string[], opts: { signal?: AbortSignal } = {}): Promise<void> {
    for (const key of new Set(keys)) {
      checkKey(key);
      opts.signal?.throwIfAborted();
      try {
        await rm(key, { force: true });
        await rm(`${key}${FILE_CHECKSUM_SUFFIX}`, { force: true });
      } catch (e) {
        throw mapFsError(e, "delete", uriOf(key));
      }
    }
  }

  return { scheme: "file", uriOf, putFile, getFile, head, list, delete: deleteKeys };
}

/** The object at `path`, or null when there is no regular file there. */
async function infoOf(path: string): Promise<ObjectInfo | null> {
  let st: BigIntStats;
  try {
    st = await stat(path, { bigint: true });
  } catch (e) {
    if (isMissing(e)) return null;
    throw e;
  }
  if (!st.isFile()) return null;
  return { key: path, bytes: Number(st.size), sha256: await sidecarSha(path, st), updatedAt: st.mtime };
}

/** The recorded checksum, only while the sidecar still describes this very file. */
async function sidecarSha(path: string, st: BigIntStats): Promise<string | null> {
  let text: string;
  try {
    text = await readFile(`${path}${FILE_CHECKSUM_SUFFIX}`, "utf8");
  } catch (e) {
    if (isMissing(e)) return null;
    throw e;
  }
  let s: Partial<Sidecar>;
  try {
    s = JSON.parse(text) as Partial<Sidecar>;
  } catch {
    return null; // a torn or foreign sidecar: no checksum rather than a wrong one
  }
  const same = s.v === 1 && s.bytes === String(st.size) && s.dev === String(st.dev) && s.ino === String(st.ino) && s.mtimeNs === String(st.mtimeNs);
  return same && typeof s.sha256 === "string" && /^[0-9a-f]{64}$/.test(s.sha256) ? s.sha256 : null;
}

/**
 * Files under `dir` whose path starts with `prefix`, in key order. Sorting
 * each directory by `name` (files) or `name/` (directories) yields the
 * global order of full paths, since everything under a directory shares the
 * `name/` prefix.
 */
async function* walk(dir: string, prefix: string, signal: AbortSignal | undefined): AsyncGenerator<ObjectInfo> {
  signal?.throwIfAborted();
  let entries: Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (isMissing(e)) return;
    throw e;
  }
  const items: { path: string; dir: boolean; sortKey: string }[] = [];
  for (const ent of entries) {
    if (ent.name.endsWith(FILE_CHECKSUM_SUFFIX) || ent.name.includes(TMP_MARK)) continue;
    const path = dir === "/" ? `/${ent.name}` : `${dir}/${ent.name}`;
    const isDir = ent.isDirectory();
    if (!isDir && !ent.isFile() && !ent.isSymbolicLink()) continue;
    items.push({ path, dir: isDir, sortKey: isDir ? `${path}/` : path });
  }
  items.sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : 0));
  for (const item of items) {
    if (item.dir) {
      if (item.sortKey.startsWith(prefix) || prefix.startsWith(item.sortKey)) yield* walk(item.path, prefix, signal);
    } else if (item.path.startsWith(prefix)) {
      const info = await infoOf(item.path); // follows a link to a file; null for a link to a directory or a dangling one
      if (info) yield info;
    }
  }
}

function checkKey(key: string): void {
  let why: string | null = null;
  if (!key.startsWith("/")) why = "must be an absolute path";
  else if (key.endsWith("/")) why = "names a directory, not a file";
  else if (posix.normalize(key) !== key) why = `is not normalized (expected ${JSON.stringify(posix.normalize(key))})`;
  else if (key.includes("\0")) why = "contains NUL";
  else if (key.endsWith(FILE_CHECKSUM_SUFFIX) || key.includes(TMP_MARK)) why = `uses a name reserved for the store's own files (*${FILE_CHECKSUM_SUFFIX}, *${TMP_MARK}*)`;
  if (why === null) return;
  const message = `file:// key ${JSON.stringify(key.slice(0, 200))} ${why}`;
  throw AppError.invalid(message, [{ field: "key", message }], "invalid_object_key");
}

async function fsync(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | null)?.code;
  return code === "ENOENT" || code === "ENOTDIR";
}

function notFound(uri: string): AppError {
  return new AppError("NOT_FOUND", `${uri} does not exist`, { reason: "object_not_found" });
}

/** File-system failures as AppErrors; aborts (AbortError) and AppErrors pass through unchanged. */
function mapFsError(e: unknown, op: string, uri: string): Error {
  if (isAppError(e) || (e instanceof Error && e.name === "AbortError")) return e;
  const err = e as NodeJS.ErrnoException;
  const what = `${op} ${uri} failed: ${err.message}`;
  switch (err.code ?? "") {
    case "ENOENT":
    case "ENOTDIR":
      return new AppError("NOT_FOUND", what, { reason: "object_not_found", cause: e });
    case "EACCES":
    case "EPERM":
    case "EROFS":
      return new AppError("PERMISSION_DENIED", what, { reason: "storage_access_denied", cause: e });
    case "EISDIR":
    case "ERR_FS_EISDIR":
      return new AppError("INVALID_ARGUMENT", what, { reason: "invalid_object_key", cause: e, fields: [{ field: "key", message: "is a directory" }] });
    case "ENOSPC":
    case "EDQUOT":
      return new AppError("UNAVAILABLE", what, { reason: "storage_full", cause: e });
    default:
      return AppError.internal(what, e);
  }
}
