import { createAzureStore } from "./azure-store.js";
import { createFileStore } from "./file-store.js";
import { createGcsStore } from "./gcs-store.js";
import { createMinioStore, createS3Store } from "./s3-store.js";
import type { ObjectLocation, ObjectStore } from "./types.js";
import { parseObjectUri } from "./uri.js";

/** Per-scheme overrides; everything else comes from each provider's standard credential chain. */
export interface OpenStoreOptions {
  /** s3:// only: an S3-compatible endpoint instead of AWS (tests, on-prem gateways). */
  s3Endpoint?: string;
  /** minio:// only: https instead of http for a bare host:port. */
  minioSecure?: boolean;
  /** az:// only: the blob endpoint (Azurite: http://127.0.0.1:10000/devstoreaccount1). */
  azureEndpoint?: string;
  /** gs:// only: the JSON API endpoint. */
  gcsEndpoint?: string;
  /** Environment the credential chains read (default process.env). */
  env?: Readonly<Record<string, string | undefined>>;
}

/**
 * The store an object URI lives in, and its key there: file:///abs/path,
 * s3://bucket/key, minio://host:port/bucket/key, az://account/container/blob,
 * gs://bucket/object. Bad URIs are INVALID_ARGUMENT naming `field`.
 */
export function openObjectStore(uri: string, opts: OpenStoreOptions = {}, field = "uri"): { store: ObjectStore; location: ObjectLocation } {
  const location = parseObjectUri(uri, field);
  return { store: storeFor(location, opts), location };
}

export function storeFor(loc: ObjectLocation, opts: OpenStoreOptions = {}): ObjectStore {
  switch (loc.scheme) {
    case "file":
      return createFileStore();
    case "s3":
      return createS3Store({ bucket: loc.bucket, ...(opts.s3Endpoint ? { endpoint: opts.s3Endpoint, forcePathStyle: true } : {}) });
    case "minio":
      return createMinioStore(loc.endpoint ?? "", loc.bucket, opts.minioSecure ? { secure: true } : {});
    case "az":
      return createAzureStore({
        account: loc.account ?? "",
        container: loc.bucket,
        ...(opts.azureEndpoint ? { endpoint: opts.azureEndpoint } : {}),
        ...(opts.env ? { env: opts.env } : {}),
      });
    case "gs":
      return createGcsStore({ bucket: loc.bucket, ...(opts.gcsEndpoint ? { apiEndpoint: opts.gcsEndpoint } : {}) });
  }
}
