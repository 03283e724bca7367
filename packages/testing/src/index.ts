export { type PostgresServer, type StartPostgresOptions, findPostgresBinDir, quoteIdent, startPostgres } from "./postgres-server.js";
export {
  type ProvidedPostgres,
  TEMPLATE_DATABASE,
  type TestDatabase,
  createTestDatabase,
  testPostgresServerUrl,
} from "./test-database.js";
export { freePort } from "./ports.js";
export { type WaitForOptions, waitFor } from "./wait-for.js";
export {
  type ProcessExit,
  type SpawnProcessOptions,
  type SpawnedProcess,
  assertNoLeftoverProcesses,
  leftoverProcesses,
  spawnProcess,
  stopAllProcesses,
} from "./processes.js";
export { newJobInput } from "./fixtures.js";
export { S3RVER_CREDENTIALS, type S3rverProcess, startS3rver } from "./s3rver.js";
export * from "./scripted-imds-server.js";
