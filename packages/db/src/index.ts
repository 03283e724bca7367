export * as schema from "./schema.js";
export { type Database, type Db, MIGRATIONS_FOLDER, type OpenDatabaseOptions, openDatabase, pingDatabase, runMigrations } from "./open.js";
export { findPgError, toDbAppError } from "./db-errors.js";
export { type Team, createTeam, ensureTeam, getTeamByName } from "./teams.js";
export { type NewApiToken, findPrincipalByTokenHash, insertApiToken, revokeToken } from "./tokens.js";
export {
  type CancelInput,
  type JobScope,
  type ListJobsQuery,
  MAX_PAGE_SIZE,
  type NewJobInput,
  type TransitionInput,
  cancelJob,
  countJobsByStatus,
  getJob,
  insertJob,
  listJobs,
  transitionJob,
} from "./jobs.js";
export { type JobEventsQuery, getJobEvents } from "./job-events.js";
export { type NewArtifact, insertArtifact, listArtifacts } from "./artifacts.js";
export { type InsertJobOutcome, MAX_INSERT_BATCH, insertJobs } from "./job-batch-insert.js";
export {
  type HeartbeatRecord,
  type NodeStateChange,
  type RecordHeartbeatsOutcome,
  type RegisterNodeOutcome,
  countNodesByState,
  getNode,
  listNodes,
  markNodeStates,
  recordHeartbeats,
  upsertNodeRegistration,
  withSingletonLock,
} from "./nodes.js";
