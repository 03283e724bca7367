import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import type { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { AppError, isAppError } from "@gpuorch/core";
import { SHA256_METADATA_KEY, type GetOptions, type GetResult, type ObjectInfo, type ObjectStore, type PutResult, type TransferOptions } from "./types.js";
import { MAX_KEY_BYTES, objectUri, parseObjectUri } from "./uri.js";
import { checkUploaded, hashFile, localFileSize, writeVerified } from "./verify.js";

/**
 * s3:// (AWS) and minio:// (any S3-compatible server, path-style) stores.
 *
 * - Uploads up to `multipartThresholdBytes` are read into memory, hashed and
 *   sent as one PutObject carrying `x-amz-checksum-sha256`, which S3 and MinIO
 *   verify on receipt; a buffer (unlike a stream) can be resent by the SDK's
 *   retries. Larger files are hashed first (the SHA-256 travels as metadata
 *   that must be known when the upload starts), then streamed with
 *   lib-storage's `Upload` in `partSizeBytes` parts, `queueSize` at a time,
 *   each part carrying the SDK's default CRC32. Either way the SHA-256 is
 *   stored as user metadata `x-amz-meta-gpuorch-sha256` and the object is
 *   headed afterwards to check size and checksum.
 * - Downloads stream GetObject into `writeVerified` (temp file, size and
 *   SHA-256 check, `maxBytes`).
 * - `list` pages through ListObjectsV2; S3 listings carry no user metadata,
 *   so listed objects have `sha256: null` (`head` one to get it).
 * - HeadObject has no body, so a 404 cannot tell a missing key from a missing
 *   bucket: the first 404 is followed by one HeadBucket, after which the
 *   bucket is known to exist.
 * - Aborting a multipart upload cancels the parts in flight and sends
 *   AbortMultipartUpload (best effort) so no parts are left billed.
 *   Aborts reject with an error named `AbortError`, as Node's own do.
 * - Credentials: the SDK's default chain (env, shared files, SSO, IMDS...)
 *   unless given; never logged, never put in an error message.
 */

const MIB = 1024 * 1024;
/** S3's smallest part (all but the last), and its cap of 10,000 parts per upload. */
const MIN_PART_BYTES = 5 * MIB;
const MAX_PARTS = 10_000;

export interface S3StoreOptions {
  bucket: string;
  /** An S3-compatible endpoint URL (`http(s)://host[:port]`); AWS's own when absent. */
  endpoint?: string;
  /** Path-style addressing (`endpoint/bucket/key`), which MinIO and s3rver need. */
  forcePathStyle?: boolean;
  /** AWS region; the SDK's chain (AWS_REGION, shared config) when absent; "us-east-1" for a custom endpoint. */
  region?: string;
  /** Static credentials or a provider; the SDK's default chain when absent. */
  credentials?: S3ClientConfig["credentials"];
  /** Files larger than this go multipart. Default 16 MiB. */
  multipartThresholdBytes?: number;
  /** Multipart part size; raised to S3's 5 MiB minimum and to size/10,000. Default 16 MiB. */
  partSizeBytes?: number;
  /** Parts uploaded at once (memory: queueSize × partSize). Default 4. */
  queueSize?: number;
  /** Attempts per request, the SDK's retries included. Default 3. */
  maxAttempts?: number;
  /** ListObjectsV2 page size (1..1000). Default 1000. */
  pageSize?: number;
  /** Keys per DeleteObjects request (1..1000). Default 1000. */
  deleteBatchSize?: number;
}

export interface MinioStoreOptions extends Omit<S3StoreOptions, "bucket" | "endpoint" | "forcePathStyle"> {
  /** Use https when `endpoint` is a bare host[:port] (minio:// URIs do not say). Default false. */
  secure?: boolean;
}

/** An S3 store; `close()` releases the client's pooled connections. */
export interface S3Store extends ObjectStore {
  readonly scheme: "s3" | "minio";
  readonly bucket: string;
  close(): void;
}

export function createS3Store(opts: S3StoreOptions): S3Store {
  parseObjectUri(`s3://${opts.bucket}/`, "bucket"); // the spec's bucket-name rules
  return buildStore(opts, "s3", undefined);
}

/**
 * A minio:// store: the S3 API at `endpoint` (`host[:port]`, or a full
 * `http(s)://host[:port]` URL), path-style, region "us-east-1" unless given.
 */
export function createMinioStore(endpoint: string, bucket: string, opts: MinioStoreOptions = {}): S3Store {
  const m = /^(https?):\/\/([^/?#]+)\/?$/i.exec(endpoint);
  const hostPort = m?.[2] ?? endpoint;
  const url = m ? `${(m[1] ?? "http").toLowerCase()}://${hostPort}` : `${opts.secure === true ? "https" : "http"}://${hostPort}`;
  parseObjectUri(`minio://${hostPort}/${bucket}/`, "endpoint"); // host[:port] and bucket by the spec's rules
  const { secure: _secure, ...rest } = opts;
  return buildStore({ ...rest, bucket, endpoint: url, forcePathStyle: true }, "minio", hostPort);
}

function buildStore(opts: S3StoreOptions, scheme: "s3" | "minio", uriEndpoint: string | undefined): S3Store {
  const { bucket } = opts;
  const threshold = opts.multipartThresholdBytes ?? 16 * MIB;
  const partSize = Math.max(opts.partSizeBytes ?? 16 * MIB, MIN_PART_BYTES);
  const queueSize = Math.max(1, opts.queueSize ?? 4);
  const pageSize = clampInt(opts.pageSize ?? 1000, 1, 1000);
  const deleteBatch = clampInt(opts.deleteBatchSize ?? 1000, 1, 1000);
  const where = opts.endpoint === undefined ? "" : ` at ${opts.endpoint}`;
  const region = opts.region ?? (opts.endpoint === undefined ? undefined : "us-east-1");
  const client = new S3Client({
    ...(region === undefined ? {} : { region }),
    ...(opts.endpoint === undefined ? {} : { endpoint: opts.endpoint }),
    forcePathStyle: opts.forcePathStyle ?? false,
    ...(opts.credentials === undefined ? {} : { credentials: opts.credentials }),
    maxAttempts: opts.maxAttempts ?? 3,
    // AWS answers a request sent to the wrong region with a redirect the SDK can follow.
    followRegionRedirects: opts.endpoint === undefined,
    requestHandler: { connectionTimeout: 10_000 },
  });
  const uriOf = (key: string): string => objectUri({ scheme, bucket, key, ...(uriEndpoint === undefined ? {} : { endpoint: uriEndpoint }) });
  const fail = (e: unknown, op: string, uri: string): Error => mapS3Error(e, { op, uri, bucket, where });
  let bucketSeen = false;

  /** After a 404 with no body: NOT_FOUND naming the bucket if it is the bucket that is missing. */
  async function ensureBucket(signal: AbortSignal | undefined): Promise<void> {
    if (bucketSeen) return;
    try {
      await client.send(new HeadBucketCommand({ Bucket: bucket }), abortable(signal));
      bucketSeen = true;
    } catch (e) {
      const status = httpStatus(e);
      if (status === 404) throw bucketMissing(bucket, where, e);
      if (status === 403) return; // object rights without bucket rights: the object is what is missing
      throw fail(e, "check bucket", uriOf(""));
    }
  }

  async function head(key: string, o: { signal?: AbortSignal } = {}): Promise<ObjectInfo | null> {
    checkKey(key);
    try {
      const r = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }), abortable(o.signal));
      bucketSeen = true;
      return { key, bytes: r.ContentLength ?? 0, sha256: recordedSha(r.Metadata), updatedAt: r.LastModified ?? null };
    } catch (e) {
      if (httpStatus(e) !== 404) throw fail(e, "head", uriOf(key));
    }
    await ensureBucket(o.signal);
    return null;
  }

  async function putFile(key: string, path: string, o: TransferOptions = {}): Promise<PutResult> {
    checkKey(key);
    const uri = uriOf(key);
    const size = await localFileSize(path);
    o.signal?.throwIfAborted();
    let sent: { bytes: number; sha256: string };
    try {
      if (size <= threshold) {
        const data = await readFile(path, o.signal ? { signal: o.signal } : {});
        sent = { bytes: data.length, sha256: createHash("sha256").update(data).digest("hex") };
        o.onProgress?.(0, sent.bytes);
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: data,
            ContentLength: data.length,
            ChecksumSHA256: Buffer.from(sent.sha256, "hex").toString("base64"),
            Metadata: { [SHA256_METADATA_KEY]: sent.sha256 },
          }),
          abortable(o.signal),
        );
        o.onProgress?.(sent.bytes, sent.bytes);
      } else {
        sent = await hashFile(path, o.signal);
        await multipart(key, path, sent, o);
      }
    } catch (e) {
      throw fail(e, "upload to", uri);
    }
    bucketSeen = true;
    checkUploaded(uri, await head(key, o), sent);
    return { uri, ...sent };
  }

  async function multipart(key: string, path: string, sent: { bytes: number; sha256: string }, o: TransferOptions): Promise<void> {
    const controller = new AbortController();
    const body = createReadStream(path);
    const upload = new Upload({
      client: cancellable(client, controller.signal),
      params: { Bucket: bucket, Key: key, Body: body, ContentLength: sent.bytes, Metadata: { [SHA256_METADATA_KEY]: sent.sha256 } },
      partSize: Math.max(partSize, Math.ceil(sent.bytes / MAX_PARTS)),
      queueSize,
      leavePartsOnError: false,
      abortController: controller,
    });
    upload.on("httpUploadProgress", (p) => o.onProgress?.(p.loaded ?? 0, sent.bytes));
    const onAbort = (): void => void upload.abort();
    o.signal?.addEventListener("abort", onAbort, { once: true });
    try {
      o.signal?.throwIfAborted();
      await upload.done();
    } finally {
      o.signal?.removeEventListener("abort", onAbort);
      body.destroy();
    }
  }

  async function getFile(key: string, path: string, o: GetOptions = {}): Promise<GetResult> {
    checkKey(key);
    const uri = uriOf(key);
    let body: Readable;
    let info: Pick<ObjectInfo, "bytes" | "sha256"> | null;
    try {
      const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), abortable(o.signal));
      if (r.Body === undefined) throw AppError.internal(`${uri}: the store sent no body`);
      body = r.Body as Readable;
      const sha256 = recordedSha(r.Metadata);
      info = r.ContentLength === undefined ? null : { bytes: r.ContentLength, sha256 };
      if (info === null && sha256 !== null && o.expectSha256 === undefined) o = { ...o, expectSha256: sha256 };
    } catch (e) {
      throw fail(e, "download of", uri);
    }
    bucketSeen = true;
    try {
      return await writeVerified(body, path, uri, info, o);
    } catch (e) {
      throw fail(e, "download of", uri);
    } finally {
      body.destroy(); // also when writeVerified refused before reading: frees the connection
    }
  }

  async function* list(prefix: string, o: { signal?: AbortSignal } = {}): AsyncGenerator<ObjectInfo> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, MaxKeys: pageSize, ...(prefix === "" ? {} : { Prefix: prefix }), ...(token === undefined ? {} : { ContinuationToken: token }) }),
          abortable(o.signal),
        );
      } catch (e) {
        throw fail(e, "list", uriOf(prefix));
      }
      bucketSeen = true;
      for (const obj of page.Contents ?? []) {
        if (obj.Key === undefined) continue;
        yield { key: obj.Key, bytes: obj.Size ?? 0, sha256: null, updatedAt: obj.LastModified ?? null };
      }
      token = page.IsTruncated === true ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  async function deleteKeys(keys: readonly string[], o: { signal?: AbortSignal } = {}): Promise<void> {
    const unique = [...new Set(keys)];
    unique.forEach(checkKey);
    for (let i = 0; i < unique.length; i += deleteBatch) {
      const batch = unique.slice(i, i + deleteBatch);
      let errors;
      try {
        const r = await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true } }), abortable(o.signal));
        errors = (r.Errors ?? []).filter((e) => e.Code !== "NoSuchKey");
      } catch (e) {
        throw fail(e, "delete from", uriOf(batch[0] ?? ""));
      }
      bucketSeen = true;
      const first = errors[0];
      if (first !== undefined) {
        const err = Object.assign(new Error(first.Message ?? first.Code ?? "unknown error"), { name: first.Code ?? "Unknown" });
        throw fail(err, `delete (${errors.length} of ${batch.length} keys failed) of`, uriOf(first.Key ?? ""));
      }
    }
  }

  return { scheme, bucket, uriOf, putFile, getFile, head, list, delete: deleteKeys, close: () => client.destroy() };
}

/**
 * The client as lib-storage's `Upload` sees it: every request it sends
 * carries `signal`, so aborting cancels the parts in flight instead of
 * letting them finish; AbortMultipartUpload alone is exempt, since it must
 * still go out after the abort.
 */
function cancellable(client: S3Client, signal: AbortSignal): S3Client {
  const send = client.send.bind(client) as (command: unknown, options?: { abortSignal?: AbortSignal }) => Promise<unknown>;
  const scoped = Object.create(client) as S3Client;
  Object.defineProperty(scoped, "send", {
    value: (command: unknown, options?: { abortSignal?: AbortSignal }) =>
      send(command, command instanceof AbortMultipartUploadCommand ? options : { ...options, abortSignal: signal }),
  });
  return scoped;
}

function abortable(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal === undefined ? {} : { abortSignal: signal };
}

function recordedSha(meta: Record<string, string> | undefined): string | null {
  const v = meta?.[SHA256_METADATA_KEY];
  return v === undefined || v === "" ? null : v.toLowerCase();
}

function checkKey(key: string): void {
  let why: string | null = null;
  if (key === "") why = "is empty";
  else if (key.startsWith("/")) why = "starts with '/'";
  else if (Buffer.byteLength(key, "utf8") > MAX_KEY_BYTES) why = `is longer than ${MAX_KEY_BYTES} bytes`;
  if (why === null) return;
  const message = `object key ${JSON.stringify(key.slice(0, 100))} ${why}`;
  throw AppError.invalid(message, [{ field: "key", message }], "invalid_object_key");
}

function clampInt(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, Math.floor(v)));
}

function httpStatus(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
}

function bucketMissing(bucket: string, where: string, cause: unknown): AppError {
  return new AppError("NOT_FOUND", `bucket '${bucket}'${where} does not exist`, { reason: "bucket_not_found", cause });
}

const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ECONNABORTED"]);

/**
 * SDK, network and file errors as AppErrors. Aborts (`AbortError`) and
 * AppErrors (from verification) pass through. Messages name the URI and the
 * S3 error code, never a credential.
 */
export function mapS3Error(e: unknown, ctx: { op: string; uri: string; bucket: string; where: string }): Error {
  if (isAppError(e)) return e;
  if (e instanceof Error && e.name === "AbortError") return e;
  const err = (e ?? {}) as { name?: string; Code?: string; code?: string; message?: string };
  const name = err.Code ?? err.name ?? "Error";
  const status = httpStatus(e);
  const detail = `${name}${status === undefined ? "" : ` (HTTP ${status})`}${err.message && err.message !== name && err.message !== "UnknownError" ? `: ${err.message}` : ""}`;
  const what = `${ctx.op} ${ctx.uri} failed: ${detail}`;
  switch (name) {
    case "NoSuchBucket":
      return bucketMissing(ctx.bucket, ctx.where, e);
    case "NoSuchKey":
    case "NotFound":
      return new AppError("NOT_FOUND", `${ctx.uri} does not exist`, { reason: "object_not_found", cause: e });
    case "AccessDenied":
    case "Forbidden":
    case "AllAccessDisabled":
    case "InvalidAccessKeyId":
    case "SignatureDoesNotMatch":
    case "ExpiredToken":
    case "InvalidToken":
    case "AccountProblem":
      return new AppError("PERMISSION_DENIED", `${what}; check the storage credentials and the bucket policy`, { reason: "storage_access_denied", cause: e });
    case "CredentialsProviderError":
      return new AppError("FAILED_PRECONDITION", `${ctx.op} ${ctx.uri}: no AWS credentials found (environment, shared config, SSO or instance role)`, { reason: "storage_credentials_missing", cause: e });
    case "PermanentRedirect":
    case "AuthorizationHeaderMalformed":
    case "IllegalLocationConstraintException":
      return new AppError("FAILED_PRECONDITION", `${what}; is the region right for bucket '${ctx.bucket}'?`, { reason: "storage_wrong_region", cause: e });
    case "InvalidBucketName":
    case "KeyTooLongError":
    case "EntityTooLarge":
    case "InvalidArgument":
      return new AppError("INVALID_ARGUMENT", what, { reason: "invalid_object_key", cause: e });
    case "SlowDown":
    case "ServiceUnavailable":
    case "InternalError":
    case "RequestTimeout":
    case "TimeoutError":
      return new AppError("UNAVAILABLE", what, { reason: "storage_unavailable", cause: e });
    default:
      break;
  }
  if (err.code !== undefined && (NETWORK_CODES.has(err.code) || err.code.startsWith("UND_ERR_"))) {
    return new AppError("UNAVAILABLE", `${ctx.op} ${ctx.uri} failed: cannot reach the store${ctx.where} (${err.code})`, { reason: "storage_unavailable", cause: e });
  }
  if (/region is missing/i.test(err.message ?? "")) {
    return new AppError("FAILED_PRECONDITION", `${ctx.op} ${ctx.uri}: no AWS region configured (set AWS_REGION or the store's region)`, { reason: "storage_wrong_region", cause: e });
  }
  if (status === 404) return new AppError("NOT_FOUND", `${ctx.uri} does not exist`, { reason: "object_not_found", cause: e });
  if (status === 401 || status === 403) return new AppError("PERMISSION_DENIED", what, { reason: "storage_access_denied", cause: e });
  if (status !== undefined && status >= 500) return new AppError("UNAVAILABLE", what, { reason: "storage_unavailable", cause: e });
  return AppError.internal(what, e);
}
