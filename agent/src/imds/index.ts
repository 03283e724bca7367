export {
  readCloudLabels,
  DEFAULT_IMDS_TIMEOUT_MS,
  type CloudLabels,
  type CloudLabelsResult,
  type ImdsProviderChoice,
  type ReadCloudLabelsOptions,
} from "./cloud-labels.js";
export { CLOUD_PROVIDERS, type CloudProvider } from "./imds-request.js";
export { AWS_DEFAULT_ENDPOINT } from "./aws-imds.js";
export { GCP_DEFAULT_ENDPOINT } from "./gcp-metadata.js";
export { AZURE_DEFAULT_ENDPOINT, AZURE_API_VERSION } from "./azure-imds.js";
export {
  resolveNodeLabels,
  IMDS_MODES,
  type ImdsMode,
  type NodeLabelsConfig,
  type ResolveNodeLabelsDeps,
  type ResolvedNodeLabels,
} from "./node-labels.js";
export {
  checkInterruption,
  InterruptionWatcher,
  DEFAULT_INTERRUPTION_INTERVAL_MS,
  type InterruptionKind,
  type InterruptionNotice,
  type InterruptionCache,
  type InterruptionCheckOptions,
  type InterruptionWatcherOptions,
  type InterruptionWatcherState,
} from "./interruption.js";
