import type { JobSpec } from "@gpuorch/spec";

/**
 * The spec as the optimizer sees it: everything but the fields it never
 * reads. Leaving a field in only costs a cache miss; taking out one the
 * optimizer reads would reuse a wrong plan, so this names what to drop.
 */
export function admissionKey(spec: JobSpec): string {
  const { entrypoint: _entrypoint, job, ...rest } = spec;
  const { name: _name, project: _project, ...jobRest } = job;
  return JSON.stringify({ ...rest, job: jobRest });
}
