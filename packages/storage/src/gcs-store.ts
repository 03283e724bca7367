import { createReadStream } from "node:fs";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { type File, type FileMetadata, Storage, type StorageOptions } from "@google-cloud/storage";
import { AppError } from "@gpuorch/core";
import { abortReason } from "@gpuorch/runtime";
import { type GetOptions, type GetResult, type ObjectInfo, type ObjectStore, type PutResult, SHA256_METADATA_KEY, type TransferOptions } from "./types.js";
import { checkUploaded, hashFile, localFileSize, writeVerified } from "./verify.js";

export interface GcsStoreOptions {
  bucket: string;
  /** Default `https://storage.googleapis.com`. A custom endpoint (an emulator, a test server) gets no credentials unless `useAuthWithCustomEndpoint`. */
  apiEndpoint?: string;
  projectId?: string;
  /** A service-account key's fields (`client_email`, `private_key`). Default: Application Default Credentials. */
  credentials?: StorageOptions["credentials"];
  /** Path of a service-account key file. Default: Application Default Credentials. */
  keyFilename?: string;
  /** A google-auth-library client the caller built (workload identity federation, downscoped tokens…). */
  authClient?: StorageOptions["authClient"];
  /**
   * Send credentials to a custom `apiEndpoint` too (default false). The
   * library (8.x) does not forward this to resumable sessions, so on a
   * custom endpoint outside googleapis.com those go unauthenticated:
   * raise `resumableThresholdBytes` there if the endpoint needs auth.
   */
  useAuthWithCustomEndpoint?: boolean;
  /** Files of at least this size use a resumable upload session; smaller ones one multipart request (default 8 MiB). */
  resumableThresholdBytes?: number;
  /** Resumable uploads send chunks of this size, each its own request (a multiple of 256 KiB); default one streaming request. */
  chunkSizeBytes?: number;
  /** Objects per list request (default 1000, the API maximum). */
  pageSize?: number;
  /** Deletes in flight at once (default 8). */
  concurrency?: number;
  /** Retries of a retryable request by the client library (default 3). */
  maxRetries?: number;
}

const DEFAULT_RESUMABLE_THRESHOLD = 8 * 1024 * 1024;
const CHUNK_QUANTUM = 256 * 1024;

/**
 * An ObjectStore over one Google Cloud Storage bucket (gs://bucket/object).
 *
 * Credentials: with none given, the client library's Application Default
 * Credentials chain (GOOGLE_APPLICATION_CREDENTIALS, the gcloud ADC file,
 * the GCE/GKE metadata server). Keys and tokens stay inside the library;
 * errors carry status codes and the service's message only.
 *
 * The SHA-256 is stored as the custom metadata entry `gpuorch-sha256`.
 * The library also checks CRC32C on upload (against what the service
 * computed) and on download (the `x-goog-hash` header).
 */
export function createGcsStore(opts: GcsStoreOptions): ObjectStore {
  const bucketName = opts.bucket;
  const threshold = opts.resumableThresholdBytes ?? DEFAULT_RESUMABLE_THRESHOLD;
  const pageSize = opts.pageSize ?? 1000;
  const concurrency = opts.concurrency ?? 8;
  if (opts.chunkSizeBytes !== undefined && (!Number.isInteger(opts.chunkSizeBytes) || opts.chunkSizeBytes < CHUNK_QUANTUM || opts.chunkSizeBytes % CHUNK_QUANTUM !== 0)) {
    throw AppError.invalid(`chunkSizeBytes must be a positive multiple of 256 KiB, got ${opts.chunkSizeBytes}`, [{ field: "chunkSizeBytes", message: "must be a positive multiple of 262144" }]);
  }
  if (!Number.isInteger(concurrency) || concurrency < 1) throw AppError.invalid(`concurrency must be a positive integer, got ${concurrency}`, [{ field: "concurrency", message: "must be a positive integer" }]);
  const storage = new Storage({
    ...(opts.apiEndpoint !== undefined ? { apiEndpoint: opts.apiEndpoint } : {}),
    ...(opts.projectId !== undefined ? { projectId: opts.projectId } : {}),
    ...(opts.credentials !== undefined ? { credentials: opts.credentials } : {}),
    ...(opts.keyFilename !== undefined ? { keyFilename: opts.keyFilename } : {}),
    ...(opts.authClient !== undefined ? { authClient: opts.authClient } : {}),
    ...(opts.useAuthWithCustomEndpoint !== undefined ? { useAuthWithCustomEndpoint: opts.useAuthWithCustomEndpoint } : {}),
    // The library reads maxRetries 0 as "default": turn retries off instead.
    retryOptions: opts.maxRetries === 0 ? { autoRetry: false } : { maxRetries: opts.maxRetries ?? 3 },
  });
  const bucket = storage.bucket(bucketName);
  const uriOf = (key: string): string => `gs://${bucketName}/${key}`;

  /** head() plus the object's generation. */
  const stat = async (key: string, o: { signal?: AbortSignal } = {}): Promise<(ObjectInfo & { generation?: string }) | null> => {
    try {
      const [meta] = await untilAborted(() => bucket.file(key).getMetadata(), o.signal);
      return objectInfo(meta);
    } catch (e) {
      if (httpStatus(e) === 404 && !isBucketMissing(e)) return null;
      throw gcsError(e, bucketName, uriOf(key), o.signal);
    }
  };

  return {
    scheme: "gs",
    uriOf,

    async putFile(key: string, path: string, o: TransferOptions = {}): Promise<PutResult> {
      const uri = uriOf(key);
      await localFileSize(path);
      const sent = await hashFile(path, o.signal);
      const resumable = sent.bytes >= threshold;
      let done = 0;
      const meter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          done += chunk.length;
          o.onProgress?.(done, sent.bytes);
          cb(null, chunk);
        },
      });
      try {
        const upload = bucket.file(key).createWriteStream({
          resumable,
          validation: "crc32c",
          metadata: { contentType: "application/octet-stream", metadata: { [SHA256_METADATA_KEY]: sent.sha256 } },
          ...(resumable && opts.chunkSizeBytes !== undefined ? { chunkSize: opts.chunkSizeBytes } : {}),
        });
        await pipeline(createReadStream(path), meter, upload, { ...(o.signal ? { signal: o.signal } : {}) });
      } catch (e) {
        throw gcsError(e, bucketName, uri, o.signal);
      }
      checkUploaded(uri, await stat(key, o), sent);
      return { uri, ...sent };
    },

    async getFile(key: string, path: string, o: GetOptions = {}): Promise<GetResult> {
      const uri = uriOf(key);
      const info = await stat(key, o);
      if (!info) throw new AppError("NOT_FOUND", `${uri} not found`, { reason: "object_not_found" });
      // Read the very generation whose size and checksum we just got: a
      // concurrent overwrite then fails the read instead of mixing versions.
      const body = bucket.file(key, info.generation !== undefined ? { generation: info.generation } : {}).createReadStream({ validation: "crc32c" });
      try {
        return await writeVerified(body, path, uri, info, o);
      } catch (e) {
        body.destroy();
        throw gcsError(e, bucketName, uri, o.signal);
      }
    },

    async head(key: string, o: { signal?: AbortSignal } = {}): Promise<ObjectInfo | null> {
      const info = await stat(key, o);
      if (!info) return null;
      const { generation: _generation, ...rest } = info;
      return rest;
    },

    async *list(prefix: string, o: { signal?: AbortSignal } = {}): AsyncIterable<ObjectInfo> {
      let pageToken: string | undefined;
      do {
        let files: File[];
        try {
          const query = { prefix, autoPaginate: false, maxResults: pageSize, ...(pageToken !== undefined ? { pageToken } : {}) };
          const [page, next] = await untilAborted(() => bucket.getFiles(query), o.signal);
          files = page;
          pageToken = (next as { pageToken?: string } | null | undefined)?.pageToken;
        } catch (e) {
          throw gcsError(e, bucketName, uriOf(prefix), o.signal);
        }
        for (const f of files) {
          const { generation: _generation, ...rest } = objectInfo(f.metadata);
          yield rest;
        }
      } while (pageToken);
    },

    async delete(keys: readonly string[], o: { signal?: AbortSignal } = {}): Promise<void> {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < keys.length) {
          const key = keys[next++] as string;
          try {
            // Not the library's ignoreNotFound: it would also hide a missing bucket.
            await untilAborted(() => bucket.file(key).delete(), o.signal);
          } catch (e) {
            if (httpStatus(e) === 404 && !isBucketMissing(e) && !o.signal?.aborted) continue;
            throw gcsError(e, bucketName, uriOf(key), o.signal);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, keys.length) }, worker));
    },
  };
}

function objectInfo(m: FileMetadata): ObjectInfo & { generation?: string } {
  const recorded = m.metadata?.[SHA256_METADATA_KEY];
  return {
    key: m.name ?? "",
    bytes: Number(m.size ?? 0),
    sha256: typeof recorded === "string" ? recorded : null,
    updatedAt: m.updated ? new Date(m.updated) : null,
    ...(m.generation !== undefined ? { generation: String(m.generation) } : {}),
  };
}

/**
 * The library's promise calls take no AbortSignal: on abort, stop waiting
 * (the request finishes or fails in the background, unobserved).
 */
function untilAborted<T>(start: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return start();
  if (signal.aborted) return Promise.reject(abortReason(signal));
  const p = start();
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortReason(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

function httpStatus(e: unknown): number | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code === "number") return code;
  // Errors of the resumable-upload path carry the status on a gaxios response.
  const status = (e as { response?: { status?: unknown } } | null)?.response?.status;
  return typeof status === "number" ? status : undefined;
}

/** GCS answers 404 for a missing bucket and a missing object alike; only the message tells them apart. */
function isBucketMissing(e: unknown): boolean {
  return e instanceof Error && /bucket does not exist/i.test(e.message);
}

const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "ECONNABORTED"]);

/** Maps a client-library failure to an AppError (AbortErrors and AppErrors pass through). */
function gcsError(e: unknown, bucket: string, uri: string, signal: AbortSignal | undefined): Error {
  if (signal?.aborted) return abortReason(signal);
  if (e instanceof AppError) return e;
  if (e instanceof Error && e.name === "AbortError") return e;
  const status = httpStatus(e);
  const message = e instanceof Error ? e.message.split("\n")[0] ?? "" : String(e);
  const code = (e as { code?: unknown } | null)?.code;
  const cause = new Error(`Google Cloud Storage: ${status !== undefined ? `HTTP ${status}: ` : ""}${message}`);
  if (code === "CONTENT_DOWNLOAD_MISMATCH" || code === "FILE_NO_UPLOAD" || code === "FILE_NO_UPLOAD_DELETE") {
    return new AppError("ABORTED", `${uri} failed verification: ${message}`, { reason: "checksum_mismatch", cause });
  }
  if (typeof code === "string" && NETWORK_CODES.has(code)) return new AppError("UNAVAILABLE", `${uri}: Google Cloud Storage unreachable (${code})`, { reason: "storage_unavailable", cause });
  if (status === undefined) {
    const sys = (e as { cause?: { code?: unknown } } | null)?.cause?.code;
    if (typeof sys === "string" && NETWORK_CODES.has(sys)) return new AppError("UNAVAILABLE", `${uri}: Google Cloud Storage unreachable (${sys})`, { reason: "storage_unavailable", cause });
    return AppError.internal(`${uri}: ${message}`, cause);
  }
  if (status === 404 && isBucketMissing(e)) return new AppError("NOT_FOUND", `bucket ${bucket} not found`, { reason: "bucket_not_found", cause });
  if (status === 404) return new AppError("NOT_FOUND", `${uri} not found`, { reason: "object_not_found", cause });
  if (status === 401) return new AppError("UNAUTHENTICATED", `${uri}: Google Cloud Storage refused the credentials: ${message}`, { reason: "storage_unauthenticated", cause });
  if (status === 403) return new AppError("PERMISSION_DENIED", `${uri}: access denied to bucket ${bucket}: ${message}`, { reason: "storage_permission_denied", cause });
  if (status === 412) return new AppError("ABORTED", `${uri}: the object changed during the transfer`, { reason: "object_changed", cause });
  if (status === 408 || status === 429 || status >= 500) return new AppError("UNAVAILABLE", `${uri}: Google Cloud Storage is unavailable (HTTP ${status})`, { reason: "storage_unavailable", cause });
  return AppError.internal(`${uri}: unexpected HTTP ${status}: ${message}`, cause);
}
