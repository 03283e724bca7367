import {
  AnonymousCredential,
  type BlobItem,
  BlobServiceClient,
  type StoragePipelineOptions,
  StorageSharedKeyCredential,
  isRestError,
  type newPipeline,
} from "@azure/storage-blob";
import { AppError } from "@gpuorch/core";
import { abortReason } from "@gpuorch/runtime";
import type { GetOptions, GetResult, ObjectInfo, ObjectStore, PutResult, TransferOptions } from "./types.js";
import { checkUploaded, hashFile, localFileSize, writeVerified } from "./verify.js";

/**
 * Azure metadata names must be C# identifiers, so `gpuorch-sha256`
 * (SHA256_METADATA_KEY) cannot be used as is: Azure rejects the '-'. Blobs
 * carry the same hex SHA-256 under this name instead.
 */
export const AZURE_SHA256_METADATA_KEY = "gpuorch_sha256";

/** An Azure AD / Entra ID token credential (the @azure/core-auth TokenCredential shape). */
export type AzureTokenCredential = Extract<NonNullable<Parameters<typeof newPipeline>[0]>, { getToken: unknown }>;

/**
 * How the store authenticates to the storage account.
 * - `connection-string`: a full connection string (it names its own endpoint;
 *   `endpoint` is then ignored, and its AccountName must match `account`).
 * - `shared-key`: the account key (HMAC-signed requests).
 * - `sas`: a shared access signature token appended to every request.
 * - `token`: an Entra ID TokenCredential the caller built (e.g. with
 *   @azure/identity, which this package does not depend on).
 * - `anonymous`: public-read containers only.
 */
export type AzureCredential =
  | { kind: "connection-string"; connectionString: string }
  | { kind: "shared-key"; accountKey: string }
  | { kind: "sas"; sasToken: string }
  | { kind: "token"; credential: AzureTokenCredential }
  | { kind: "anonymous" };

export interface AzureStoreOptions {
  account: string;
  container: string;
  /** The blob service URL; default `https://<account>.blob.core.windows.net` (azurite: `http://127.0.0.1:PORT/devstoreaccount1`). */
  endpoint?: string;
  /** Default: `azureCredentialFromEnv(env)`. */
  credential?: AzureCredential;
  /** Where `azureCredentialFromEnv` looks when no credential is given (default `process.env`, read when the store is created). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Block size for uploads; files larger than this are sent as blocks (default 8 MiB). */
  blockSizeBytes?: number;
  /** Blocks (upload) and deletes in flight at once (default 4). */
  concurrency?: number;
  /** Blobs per list request (default 1000, the service maximum: 5000). */
  pageSize?: number;
  /** Tries per request, the first included, for the SDK's retry policy (default 4). */
  maxTries?: number;
}

const DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024;
/** The largest single-request upload we let the SDK make (the service allows more; blocks retry better). */
const MAX_SINGLE_SHOT = 256 * 1024 * 1024;

/**
 * Credentials from the environment, first match wins:
 * 1. `AZURE_STORAGE_CONNECTION_STRING`
 * 2. `AZURE_STORAGE_KEY` (the account key, paired with the store's account)
 * 3. `AZURE_STORAGE_SAS_TOKEN` (with or without its leading '?')
 * otherwise anonymous access. Managed identity and `az login` need a
 * TokenCredential (`{ kind: "token" }`) built by the caller: resolving them
 * here would pull in @azure/identity. The values are secrets: they are kept
 * in the client only, never put in an error message or a log line.
 */
export function azureCredentialFromEnv(env: Readonly<Record<string, string | undefined>>): AzureCredential {
  const connectionString = env.AZURE_STORAGE_CONNECTION_STRING;
  if (connectionString) return { kind: "connection-string", connectionString };
  const accountKey = env.AZURE_STORAGE_KEY;
  if (accountKey) return { kind: "shared-key", accountKey };
  const sasToken = env.AZURE_STORAGE_SAS_TOKEN;
  if (sasToken) return { kind: "sas", sasToken };
  return { kind: "anonymous" };
}

/** An ObjectStore over one Azure Blob Storage container (az://account/container/blob). */
export function createAzureStore(opts: AzureStoreOptions): ObjectStore {
  const { account, container } = opts;
  const blockSize = opts.blockSizeBytes ?? DEFAULT_BLOCK_SIZE;
  const concurrency = opts.concurrency ?? 4;
  const pageSize = opts.pageSize ?? 1000;
  if (!Number.isInteger(blockSize) || blockSize < 1) throw AppError.invalid(`blockSizeBytes must be a positive integer, got ${blockSize}`, [{ field: "blockSizeBytes", message: "must be a positive integer" }]);
  if (!Number.isInteger(concurrency) || concurrency < 1) throw AppError.invalid(`concurrency must be a positive integer, got ${concurrency}`, [{ field: "concurrency", message: "must be a positive integer" }]);
  const credential = opts.credential ?? azureCredentialFromEnv(opts.env ?? process.env);
  const containerClient = serviceClient(account, opts.endpoint, credential, { retryOptions: { maxTries: opts.maxTries ?? 4 } }).getContainerClient(container);
  const uriOf = (key: string): string => `az://${account}/${container}/${key}`;
  const where = { account, container };

  const head = async (key: string, o: { signal?: AbortSignal } = {}): Promise<ObjectInfo | null> => {
    try {
      const p = await containerClient.getBlobClient(key).getProperties({ ...abortOpt(o.signal) });
      return { key, bytes: p.contentLength ?? 0, sha256: p.metadata?.[AZURE_SHA256_METADATA_KEY] ?? null, updatedAt: p.lastModified ?? null };
    } catch (e) {
      if (isRestError(e) && e.statusCode === 404 && errorCode(e) !== "ContainerNotFound") return null;
      throw azureError(e, where, uriOf(key), o.signal);
    }
  };

  return {
    scheme: "az",
    uriOf,

    async putFile(key: string, path: string, o: TransferOptions = {}): Promise<PutResult> {
      const uri = uriOf(key);
      await localFileSize(path);
      const sent = await hashFile(path, o.signal);
      try {
        await containerClient.getBlockBlobClient(key).uploadFile(path, {
          blockSize,
          maxSingleShotSize: Math.min(blockSize, MAX_SINGLE_SHOT),
          concurrency,
          metadata: { [AZURE_SHA256_METADATA_KEY]: sent.sha256 },
          blobHTTPHeaders: { blobContentType: "application/octet-stream" },
          ...(o.onProgress ? { onProgress: (ev: { loadedBytes: number }) => o.onProgress?.(ev.loadedBytes, sent.bytes) } : {}),
          ...abortOpt(o.signal),
        });
      } catch (e) {
        throw azureError(e, where, uri, o.signal);
      }
      checkUploaded(uri, await head(key, o), sent);
      return { uri, ...sent };
    },

    async getFile(key: string, path: string, o: GetOptions = {}): Promise<GetResult> {
      const uri = uriOf(key);
      let body: NodeJS.ReadableStream | undefined;
      try {
        // One request gives the bytes and the metadata of the same blob
        // version; the SDK's resuming reads are pinned to its ETag.
        const res = await containerClient.getBlobClient(key).download(0, undefined, { ...abortOpt(o.signal), maxRetryRequests: 3 });
        body = res.readableStreamBody;
        if (!body) throw AppError.internal(`${uri}: the download has no body`);
        const info = { bytes: res.contentLength ?? 0, sha256: res.metadata?.[AZURE_SHA256_METADATA_KEY] ?? null };
        return await writeVerified(body as AsyncIterable<Uint8Array>, path, uri, info, o);
      } catch (e) {
        // writeVerified may refuse (maxBytes) before reading: release the connection.
        (body as { destroy?: () => void } | undefined)?.destroy?.();
        throw azureError(e, where, uri, o.signal);
      }
    },

    head,

    async *list(prefix: string, o: { signal?: AbortSignal } = {}): AsyncIterable<ObjectInfo> {
      try {
        const pages = containerClient.listBlobsFlat({ prefix, includeMetadata: true, ...abortOpt(o.signal) }).byPage({ maxPageSize: pageSize });
        for await (const page of pages) {
          for (const item of page.segment.blobItems) yield blobInfo(item);
        }
      } catch (e) {
        throw azureError(e, where, uriOf(prefix), o.signal);
      }
    },

    async delete(keys: readonly string[], o: { signal?: AbortSignal } = {}): Promise<void> {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < keys.length) {
          const key = keys[next++] as string;
          try {
            await containerClient.getBlobClient(key).deleteIfExists({ deleteSnapshots: "include", ...abortOpt(o.signal) });
          } catch (e) {
            throw azureError(e, where, uriOf(key), o.signal);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, keys.length) }, worker));
    },
  };
}

function serviceClient(account: string, endpoint: string | undefined, credential: AzureCredential, pipeline: StoragePipelineOptions): BlobServiceClient {
  const url = (endpoint ?? `https://${account}.blob.core.windows.net`).replace(/\/+$/, "");
  switch (credential.kind) {
    case "connection-string": {
      const named = /(?:^|;)\s*AccountName=([^;]*)/i.exec(credential.connectionString)?.[1]?.trim();
      if (named !== undefined && named !== account) {
        throw AppError.invalid(`the Azure connection string is for storage account ${named}, not ${account}`, [{ field: "credential", message: "account mismatch" }], "azure_account_mismatch");
      }
      try {
        return BlobServiceClient.fromConnectionString(credential.connectionString, pipeline);
      } catch (e) {
        // The SDK's message may quote the string; keep it (and its key) out of ours.
        throw new AppError("INVALID_ARGUMENT", "the Azure storage connection string is malformed", { reason: "azure_bad_connection_string", cause: new Error((e as Error).name) });
      }
    }
    case "shared-key":
      return new BlobServiceClient(url, new StorageSharedKeyCredential(account, credential.accountKey), pipeline);
    case "sas":
      return new BlobServiceClient(`${url}?${credential.sasToken.replace(/^\?/, "")}`, new AnonymousCredential(), pipeline);
    case "token":
      return new BlobServiceClient(url, credential.credential, pipeline);
    case "anonymous":
      return new BlobServiceClient(url, new AnonymousCredential(), pipeline);
  }
}

function blobInfo(item: BlobItem): ObjectInfo {
  return {
    key: item.name,
    bytes: item.properties.contentLength ?? 0,
    sha256: item.metadata?.[AZURE_SHA256_METADATA_KEY] ?? null,
    updatedAt: item.properties.lastModified ?? null,
  };
}

function abortOpt(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal ? { abortSignal: signal } : {};
}

/** The service's error code: from the body, or the x-ms-error-code header (HEAD responses have no body). */
function errorCode(e: { code?: string | undefined; response?: { headers: { get(name: string): string | undefined } } | undefined }): string | undefined {
  return e.response?.headers.get("x-ms-error-code") ?? e.code;
}

const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENOTFOUND", "EAI_AGAIN", "EPIPE", "EHOSTUNREACH", "ENETUNREACH", "REQUEST_SEND_ERROR"]);

/**
 * Maps an SDK failure to an AppError. The cause keeps only the service's
 * code and status, never the request (its URL may carry a SAS token and its
 * headers a signature).
 */
function azureError(e: unknown, where: { account: string; container: string }, uri: string, signal: AbortSignal | undefined): Error {
  if (signal?.aborted) return abortReason(signal);
  if (e instanceof AppError) return e;
  if (e instanceof Error && e.name === "AbortError") return e;
  if (!isRestError(e)) {
    const code = (e as { code?: unknown } | null)?.code;
    if (typeof code === "string" && NETWORK_CODES.has(code)) return new AppError("UNAVAILABLE", `${uri}: Azure Blob Storage unreachable (${code})`, { reason: "storage_unavailable", cause: e });
    return AppError.internal(`${uri}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const status = e.statusCode;
  const code = errorCode(e);
  const cause = new Error(`Azure Blob Storage: ${code ?? "no error code"}${status ? ` (HTTP ${status})` : ""}`);
  const what = `${uri}: ${code ?? `HTTP ${status ?? "error"}`}`;
  if (status === undefined) {
    return new AppError("UNAVAILABLE", `${uri}: Azure Blob Storage unreachable (${e.code ?? "network error"})`, { reason: "storage_unavailable", cause });
  }
  if (status === 404 && code === "ContainerNotFound") {
    return new AppError("NOT_FOUND", `container ${where.container} not found in Azure storage account ${where.account}`, { reason: "container_not_found", cause });
  }
  if (status === 404) return new AppError("NOT_FOUND", `${uri} not found`, { reason: "object_not_found", cause });
  if (status === 401) return new AppError("UNAUTHENTICATED", `${what}: the storage account refused the credentials`, { reason: "storage_unauthenticated", cause });
  if (status === 403) {
    const reason = code === "AuthenticationFailed" ? "storage_authentication_failed" : "storage_permission_denied";
    return new AppError("PERMISSION_DENIED", `${what}: access denied to container ${where.container} of account ${where.account}`, { reason, cause });
  }
  if (status === 412 || code === "ConditionNotMet") return new AppError("ABORTED", `${what}: the blob changed during the transfer`, { reason: "object_changed", cause });
  if (status === 409) return new AppError("FAILED_PRECONDITION", `${what}: conflict`, { reason: "storage_conflict", cause });
  if (status === 408 || status === 429 || status >= 500) return new AppError("UNAVAILABLE", `${what}: the storage service is unavailable`, { reason: "storage_unavailable", cause });
  return AppError.internal(`${what}: unexpected HTTP ${status}`, cause);
}
