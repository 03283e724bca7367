export * from "./types.js";
export { checkUploaded, hashFile, localFileSize, writeVerified } from "./verify.js";
export { joinKey, MAX_KEY_BYTES, objectUri, parseObjectUri } from "./uri.js";
export { createFileStore, FILE_CHECKSUM_SUFFIX } from "./file-store.js";
export { createMinioStore, createS3Store, mapS3Error, type MinioStoreOptions, type S3Store, type S3StoreOptions } from "./s3-store.js";
export {
  AZURE_SHA256_METADATA_KEY,
  azureCredentialFromEnv,
  createAzureStore,
  type AzureCredential,
  type AzureStoreOptions,
  type AzureTokenCredential,
} from "./azure-store.js";
export { createGcsStore, type GcsStoreOptions } from "./gcs-store.js";
export { type OpenStoreOptions, openObjectStore, storeFor } from "./open-store.js";
