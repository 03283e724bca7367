export type { OptimizerSpec, OptimizerDataLocality, OptimizerReplicationPolicy, OptimizerDatasetKind } from "./optimizer-spec.js";
export {
  DEFAULT_PERFORMANCE_TABLE,
  DEFAULT_REFERENCE_GPU,
  gpuThroughput,
  hoursOnGpu,
  referenceGpuType,
  type PerformanceTable,
} from "./performance.js";
export { NON_NVIDIA_GPU_TYPES, MIG_CAPABLE_GPU_TYPES, isNvidiaGpuType, requiresNvidia, migProfileMemoryGb } from "./accelerators.js";
export { meteredMicros, toMillionths, ceilDiv } from "./metered.js";
export {
  DEFAULT_COST_MODEL,
  resolveCostModel,
  checkpointIntervalHours,
  spotExpectation,
  spotReliability,
  poissonCdf,
  type CostModel,
  type CostModelOptions,
  type SpotExpectation,
} from "./cost-model.js";
export {
  datasetLocation,
  transferScope,
  selectEgressTiers,
  tieredMicros,
  sourceEgress,
  transferMicros,
  type DataLocation,
  type TransferScope,
  type TierSelection,
  type SourceEgress,
} from "./egress.js";
export {
  DEFAULT_MIGRATION_HYSTERESIS,
  decideMigration,
  type MigrationTarget,
  type MigrationAlternative,
  type MigrationInput,
  type MigrationDecision,
} from "./migration.js";
