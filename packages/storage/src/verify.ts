import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rename, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { Transform, type Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { AppError } from "@gpuorch/core";
import type { GetOptions, GetResult, ObjectInfo } from "./types.js";

/** Size and hex SHA-256 of a local file, streamed. */
export async function hashFile(path: string, signal?: AbortSignal): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  await pipeline(
    createReadStream(path),
    async function* (source: AsyncIterable<Buffer>) {
      for await (const chunk of source) {
        hash.update(chunk);
        bytes += chunk.length;
      }
      yield* [];
    },
    { ...(signal ? { signal } : {}) },
  );
  return { bytes, sha256: hash.digest("hex") };
}

/** The size of a local file, or an INVALID_ARGUMENT naming it when it is missing or not a file. */
export async function localFileSize(path: string): Promise<number> {
  try {
    const s = await stat(path);
    if (!s.isFile()) throw new Error("not a regular file");
    return s.size;
  } catch (e) {
    throw AppError.invalid(`cannot upload ${path}: ${(e as Error).message}`, [{ field: "path", message: (e as Error).message }]);
  }
}

/**
 * Streams `body` into `path` through a temporary file renamed at the end
 * (a reader never sees half a file), hashing as it goes, enforcing
 * `maxBytes` and checking the result against `expectSha256` (or the store's
 * recorded `info.sha256`) and `info.bytes`. On any failure the temporary
 * file is removed and nothing is left at `path`.
 */
export async function writeVerified(body: Readable | AsyncIterable<Uint8Array>, path: string, uri: string, info: Pick<ObjectInfo, "bytes" | "sha256"> | null, opts: GetOptions = {}): Promise<GetResult> {
  if (opts.maxBytes !== undefined && info && info.bytes > opts.maxBytes) throw tooLarge(uri, info.bytes, opts.maxBytes);
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.part-${process.pid}-${Date.now().toString(36)}`;
  const hash = createHash("sha256");
  let bytes = 0;
  const total = info?.bytes ?? null;
  const meter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      bytes += chunk.length;
      if (opts.maxBytes !== undefined && bytes > opts.maxBytes) return cb(tooLarge(uri, bytes, opts.maxBytes));
      hash.update(chunk);
      opts.onProgress?.(bytes, total);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(body, meter, createWriteStream(tmp, { mode: 0o644 }), { ...(opts.signal ? { signal: opts.signal } : {}) });
    const sha256 = hash.digest("hex");
    if (info && info.bytes !== bytes) throw corrupt(uri, `size ${bytes} B, the store says ${info.bytes} B`);
    const expected = opts.expectSha256 ?? info?.sha256 ?? null;
    if (expected !== null && expected.toLowerCase() !== sha256) throw corrupt(uri, `sha256 ${sha256}, expected ${expected}`);
    await rename(tmp, path);
    return { bytes, sha256 };
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** After an upload: the object the store reports must be the bytes we sent. */
export function checkUploaded(uri: string, info: ObjectInfo | null, sent: { bytes: number; sha256: string }): void {
  if (!info) throw corrupt(uri, "the object is missing right after its upload");
  if (info.bytes !== sent.bytes) throw corrupt(uri, `the store holds ${info.bytes} B, ${sent.bytes} B were sent`);
  if (info.sha256 !== null && info.sha256 !== sent.sha256) throw corrupt(uri, `the store recorded sha256 ${info.sha256}, sent ${sent.sha256}`);
}

function tooLarge(uri: string, bytes: number, max: number): AppError {
  return new AppError("FAILED_PRECONDITION", `${uri} is larger than the limit: ${bytes} B > ${max} B`, { reason: "object_too_large" });
}

function corrupt(uri: string, what: string): AppError {
  return new AppError("ABORTED", `${uri} failed verification: ${what}`, { reason: "checksum_mismatch" });
}
