import { posix } from "node:path";
import { AppError } from "@gpuorch/core";
import { classifyUri } from "@gpuorch/spec";
import type { ObjectLocation } from "./types.js";

/**
 * Object URIs, parsed with the job spec's own rules (`classifyUri`), so a
 * URI the spec accepts is one the stores can open and vice versa.
 *
 *   file:///abs/path            (or a plain absolute path)
 *   s3://bucket/key
 *   minio://host[:port]/bucket/key
 *   az://account/container/blob
 *   gs://bucket/object
 *
 * Keys are percent-decoded: the spec refuses whitespace and control
 * characters in URIs ("URIs must be percent-encoded"), so `%20` must mean a
 * space and `%25` a percent sign. `objectUri` encodes exactly those
 * characters back, so `parseObjectUri(objectUri(loc))` is `loc`. A plain
 * local path is taken literally (no decoding). The key may be empty
 * (`s3://bucket/`), which names the whole bucket as a prefix.
 */

/** S3, GCS and Azure all cap object names at 1024 bytes (Azure: characters); one limit for all. */
export const MAX_KEY_BYTES = 1024;

export function parseObjectUri(uri: string, field = "uri"): ObjectLocation {
  const bad = (reason: string): AppError => AppError.invalid(`invalid object URI: ${reason}`, [{ field, message: reason }], "invalid_object_uri");
  const kind = classifyUri(uri, false);
  if (!kind.ok) throw bad(kind.message);
  switch (kind.value) {
    case "local":
      if (!uri.startsWith("/")) throw bad(`${clip(uri)} is a relative path; use an absolute path or file:///abs/path`);
      return { scheme: "file", bucket: "", key: posix.normalize(uri) };
    case "git":
      // classifyUri only returns git when asked to allow it.
      throw bad(`${clip(uri)} is a git repository, not an object store URI`);
    case "file":
      return { scheme: "file", bucket: "", key: fileKey(uri, bad) };
    case "s3":
    case "gs": {
      const [bucket, key] = splitFirst(afterScheme(uri));
      return { scheme: kind.value, bucket, key: objectKey(uri, key, bad) };
    }
    case "minio": {
      const [endpoint, rest] = splitFirst(afterScheme(uri));
      const [bucket, key] = splitFirst(rest);
      return { scheme: "minio", bucket, key: objectKey(uri, key, bad), endpoint };
    }
    case "az": {
      const [account, rest] = splitFirst(afterScheme(uri));
      const [container, key] = splitFirst(rest);
      return { scheme: "az", bucket: container, key: objectKey(uri, key, bad), account };
    }
  }
}

/** The URI of a location: the inverse of `parseObjectUri`. */
export function objectUri(loc: ObjectLocation): string {
  const key = encodeKey(loc.key);
  switch (loc.scheme) {
    case "file":
      return `file://${key}`;
    case "s3":
    case "gs":
      return `${loc.scheme}://${loc.bucket}/${key}`;
    case "minio":
      return `minio://${required(loc.endpoint, "endpoint", loc)}/${loc.bucket}/${key}`;
    case "az":
      return `az://${required(loc.account, "account", loc)}/${loc.bucket}/${key}`;
  }
}

/**
 * Joins key segments with single slashes: `joinKey("ckpt/job-1/", "100", "model.pt")`
 * is `ckpt/job-1/100/model.pt`. Empty segments vanish; a trailing slash on
 * the last part is kept (a listing prefix). `.` and `..` segments are refused:
 * a key built from a job's file names must never climb out of its prefix.
 */
export function joinKey(prefix: string, ...parts: string[]): string {
  const segs: string[] = [];
  for (const part of parts) {
    for (const seg of part.split("/")) {
      if (seg === "") continue;
      if (seg === "." || seg === "..") {
        const message = `key segment '${seg}' in ${clip(part)} is not allowed`;
        throw AppError.invalid(message, [{ field: "key", message }], "invalid_object_key");
      }
      segs.push(seg);
    }
  }
  if (segs.length === 0) return prefix;
  const trailing = parts[parts.length - 1]?.endsWith("/") === true ? "/" : "";
  const base = prefix === "" || prefix.endsWith("/") ? prefix : `${prefix}/`;
  return `${base}${segs.join("/")}${trailing}`;
}

function afterScheme(uri: string): string {
  return uri.slice(uri.indexOf("://") + 3);
}

/** `a/b/c` → [`a`, `b/c`]; `a` → [`a`, ``]. */
function splitFirst(s: string): [string, string] {
  const i = s.indexOf("/");
  return i < 0 ? [s, ""] : [s.slice(0, i), s.slice(i + 1)];
}

function fileKey(uri: string, bad: (reason: string) => AppError): string {
  let rest = afterScheme(uri);
  if (rest.startsWith("localhost/")) rest = rest.slice("localhost".length);
  if (!rest.startsWith("/")) {
    const host = rest.split("/", 1)[0] ?? "";
    throw bad(`${clip(uri)} names host '${host.slice(0, 40)}'; file:// URIs need an absolute local path (file:///abs/path)`);
  }
  const path = decode(uri, rest, bad);
  if (path.includes("\0")) throw bad(`${clip(uri)} decodes to a path containing NUL`);
  return posix.normalize(path);
}

function objectKey(uri: string, raw: string, bad: (reason: string) => AppError): string {
  const key = decode(uri, raw, bad);
  if (key.startsWith("/")) throw bad(`${clip(uri)}: the object key must not start with '/' (a doubled slash after the bucket?)`);
  const bytes = Buffer.byteLength(key, "utf8");
  if (bytes > MAX_KEY_BYTES) throw bad(`${clip(uri)}: the object key is ${bytes} bytes long; stores accept at most ${MAX_KEY_BYTES}`);
  return key;
}

function decode(uri: string, s: string, bad: (reason: string) => AppError): string {
  if (!s.includes("%")) return s;
  try {
    return decodeURIComponent(s);
  } catch {
    throw bad(`${clip(uri)} has a malformed percent-escape (write a literal '%' as %25)`);
  }
}

/** Percent-encodes what the spec refuses raw in a URI (whitespace, control characters) and '%' itself. */
function encodeKey(key: string): string {
  return key.replace(/[%\s\p{Cc}]/gu, (c) => encodeURIComponent(c));
}

function required(v: string | undefined, what: string, loc: ObjectLocation): string {
  if (v === undefined || v === "") throw AppError.internal(`a ${loc.scheme}:// location needs its ${what} (bucket '${loc.bucket}', key '${loc.key}')`);
  return v;
}

function clip(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 77)}...` : s);
}
