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
export {
  type ArtifactReportRow,
  type ArtifactVerdict,
  type NewArtifact,
  insertArtifact,
  latestCheckpoint,
  latestCheckpointSteps,
  listArtifacts,
  recordArtifactReport,
} from "./artifacts.js";
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
export {
  type NewTask,
  type PlacementNode,
  type SchedulableJob,
  type TaskChange,
  type TaskRecord,
  type TaskUpdate,
  type JobBrief,
  activeTasks,
  getJobBriefs,
  jobsInStatusSince,
  applyTaskUpdates,
  endTasks,
  findTasks,
  insertTasks,
  loadPlacementNodes,
  lockSchedulableJobs,
  markLaunchSent,
  nodeAddresses,
  setNodeDraining,
  setNodePreempting,
  setPendingReasons,
} from "./tasks.js";
export {
  type AppendJobLogsOptions,
  type AppendJobLogsOutcome,
  type JobLogsQuery,
  LOG_STREAMS,
  type LogStream,
  type NewJobLogLine,
  type StoredJobLogLine,
  appendJobLogs,
  droppedLinesMarker,
  readJobLogs,
  storableLogText,
} from "./job-logs.js";
export {
  type PricingOfferFilter,
  type PricingSourceStatus,
  type PricingSourceSummary,
  createPricingStore,
  listPricingStatus,
  loadCatalogOffers,
  recordPricingFailure,
  replacePricingOffers,
  seedCatalogIfEmpty,
  summarizePricingSources,
} from "./pricing.js";
export {
  type CostGroupLine,
  type CostGrouping,
  type JobSpend,
  type NewAllocation,
  costTotalsByTeamProject,
  heldGpuReadings,
  gpuUtilizationSamples,
  type GpuUtilizationSample,
  type HeldGpuReading,
  costsByGroup,
  insertAllocations,
  refreshJobCosts,
  setJobEstimate,
} from "./costs.js";
export {
  type AlertListItem,
  type DeliveryAttemptRow,
  type NewDeliveryRow,
  type PendingDeliveryRow,
  type StoredAlert,
  existingAlertKeys,
  insertAlert,
  listAlerts,
  listPendingDeliveries,
  recordDeliveryAttempt,
} from "./alerts.js";
