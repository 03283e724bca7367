import type { Framework } from "../job-status.js";

/**
 * Catalog accelerator types that are not NVIDIA GPUs (see
 * /work/shared/data/pricing/README.md, "gpu_type vocabulary"): AMD GPUs and
 * AWS/Qualcomm inference/training chips. CUDA code cannot run on them.
 */
export const NON_NVIDIA_GPU_TYPES: ReadonlySet<string> = new Set([
  "V520",
  "MI25",
  "MI300X",
  "Inferentia",
  "Inferentia2",
  "Trainium",
  "QualcommAI100",
]);

export function isNvidiaGpuType(gpuType: string): boolean {
  return !NON_NVIDIA_GPU_TYPES.has(gpuType);
}

/**
 * Whether a job may only run on NVIDIA GPUs. Every framework in the spec
 * vocabulary is a CUDA stack; `command` is an arbitrary program, so it is
 * treated as CUDA too unless the user explicitly listed a non-NVIDIA type
 * (then they know their program runs there).
 */
export function requiresNvidia(framework: Framework, gpuTypes: readonly string[]): boolean {
  if (framework !== "command") return true;
  return !gpuTypes.some((t) => NON_NVIDIA_GPU_TYPES.has(t));
}

/**
 * Catalog types with MIG (NVIDIA MIG user guide, "Supported GPUs":
 * docs.nvidia.com/datacenter/tesla/mig-user-guide/). The spec validates the
 * profile name per model; here a profile only needs a MIG-capable GPU with at
 * least the profile's memory, since the node may carve the nearest larger
 * slice.
 */
export const MIG_CAPABLE_GPU_TYPES: ReadonlySet<string> = new Set(["A100", "A100-80GB", "H100", "H200", "B200", "RTXPRO6000"]);

/** Memory of a MIG profile in GB (`3g.40gb` → 40), or null when the name has no `<n>gb` part. */
export function migProfileMemoryGb(profile: string): number | null {
  const m = /^\d+g\.(\d+)gb/.exec(profile.trim().toLowerCase());
  return m ? Number(m[1]) : null;
}
