export { parseJobSpec, SPEC_MAX_BYTES } from "./parse.js";
export { formatSpecIssues } from "./issues.js";
export { MIG_PROFILES } from "./mig-profiles.js";
export { catalogGpuModel, canonicalGpuType } from "./gpu-types.js";
/** The URI rules specs are checked with; @gpuorch/storage parses object URIs with the same rules. */
export { classifyUri, MAX_URI_LENGTH } from "./uri.js";
export type { MigGpuModel } from "./mig-profiles.js";
export type {
  DataLocality,
  ExecutionMode,
  Framework,
  HpoParameter,
  JobSpec,
  JobType,
  ObjectiveDirection,
  ParseResult,
  Provider,
  ReplicationPolicy,
  SpecIssue,
  UriKind,
} from "./types.js";
/** The vocabularies, mirrored from @gpuorch/core on purpose (spec depends on nothing of ours); test/vocabulary.test.ts keeps the two equal. */
export { EXECUTION_MODES, FRAMEWORKS, JOB_TYPES, PROVIDERS, SYNCHRONOUS_FRAMEWORKS } from "./types.js";
