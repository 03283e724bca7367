/**
 * One interface over the object stores gpuorch reads entrypoints and
 * datasets from and writes checkpoints and logs to: file://, s3://,
 * minio://endpoint/bucket/key (S3 API, path-style), az://account/container/blob,
 * gs://bucket/object. Every backend stores the SHA-256 of what it wrote as
 * object metadata (`gpuorch-sha256`) and verifies size and checksum after an
 * upload and after a download, so a checkpoint is never trusted unverified.
 * Credentials come from each provider's standard chain and are never logged.
 */

export const STORE_SCHEMES = ["file", "s3", "minio", "az", "gs"] as const;
export type StoreScheme = (typeof STORE_SCHEMES)[number];

/** Where an object lives, parsed from its URI. */
export interface ObjectLocation {
  scheme: StoreScheme;
  /** S3/MinIO/GCS bucket, Azure container; "" for file://. */
  bucket: string;
  /** Object key (file://: the absolute path). No leading slash for buckets. */
  key: string;
  /** minio:// only: host[:port]. */
  endpoint?: string;
  /** az:// only: the storage account. */
  account?: string;
}

export interface ObjectInfo {
  /** Key within the store's bucket (file://: absolute path). */
  key: string;
  bytes: number;
  /** Hex SHA-256 as recorded at upload (metadata), or null when the store has none for it. */
  sha256: string | null;
  updatedAt: Date | null;
}

/** Called as bytes move; `total` is null when unknown. */
export type ProgressFn = (done: number, total: number | null) => void;

export interface TransferOptions {
  signal?: AbortSignal;
  onProgress?: ProgressFn;
}

export interface PutResult {
  /** The object's full URI (scheme://bucket/key). */
  uri: string;
  bytes: number;
  sha256: string;
}

export interface GetOptions extends TransferOptions {
  /** Refuse objects larger than this (checked before and while downloading). */
  maxBytes?: number;
  /** When given, the download must hash to it (else the store's recorded sha256 is used when present). */
  expectSha256?: string;
}

export interface GetResult {
  bytes: number;
  sha256: string;
}

/**
 * A store bound to one bucket/container (or, for file://, the file system).
 * Keys are object keys inside it. Writes are atomic for readers: an object
 * is either absent or complete (S3/GCS/Azure commit on completion; file://
 * writes a temporary file and renames it).
 */
export interface ObjectStore {
  readonly scheme: StoreScheme;
  /** The URI of a key in this store. */
  uriOf(key: string): string;
  /** Uploads a local file (multipart/blocks for large ones), then verifies size and checksum by reading the object's metadata back. */
  putFile(key: string, path: string, opts?: TransferOptions): Promise<PutResult>;
  /** Downloads to `path` (via a temporary file renamed at the end), verifying size and checksum. */
  getFile(key: string, path: string, opts?: GetOptions): Promise<GetResult>;
  /** The object's size and recorded checksum, or null when absent. */
  head(key: string, opts?: { signal?: AbortSignal }): Promise<ObjectInfo | null>;
  /** Every object whose key starts with `prefix`, in key order. */
  list(prefix: string, opts?: { signal?: AbortSignal }): AsyncIterable<ObjectInfo>;
  /** Deletes the keys; absent keys are not an error. */
  delete(keys: readonly string[], opts?: { signal?: AbortSignal }): Promise<void>;
}

/** The metadata key every backend records the SHA-256 under. */
export const SHA256_METADATA_KEY = "gpuorch-sha256";
