import type { JobType } from "../job-status.js";

/**
 * Relative training throughput per accelerator, A100 40 GB = 1.0, used to turn
 * `job.estimated_hours` (measured on a reference GPU) into expected hours on
 * the GPU a plan would use.
 *
 * These are APPROXIMATIONS, rounded to one or two significant digits. They
 * blend what the public sources below say about mixed-precision (BF16/FP16)
 * training of CNNs and transformers; real jobs vary by 2× either way with
 * model size, batch size, precision (FP8 on Hopper/Blackwell) and memory
 * pressure. Replace them with measured numbers (`PerformanceTable.byJobType`
 * or a whole table in the options) when you have them.
 *
 * Sources:
 * - NVIDIA data sheets, dense FP16/BF16 tensor TFLOPS and memory bandwidth:
 *   V100 SXM2 125 TF / 0.9 TB/s; T4 65 TF / 0.32 TB/s; A10 125 TF / 0.6 TB/s;
 *   L4 121 TF / 0.3 TB/s; L40S 362 TF / 0.86 TB/s; A100 40GB 312 TF /
 *   1.56 TB/s, 80GB 312 TF / 2.0 TB/s; H100 SXM 989 TF / 3.35 TB/s; H200 989 TF /
 *   4.8 TB/s (nvidia.com/en-us/data-center/{v100,tesla-t4,products/a10-gpu,l4,
 *   l40s,a100,h100,h200}/). Peak TFLOPS overstate the gap for memory-bound
 *   work, so the table sits between the compute and bandwidth ratios.
 * - Lambda, "NVIDIA A100 GPU Benchmarks for Deep Learning" and the Lambda GPU
 *   benchmark pages (lambdalabs.com/gpu-benchmarks): A100 ≈ 2.2× V100 for
 *   mixed-precision training; H100 SXM ≈ 2–2.5× A100.
 * - Tim Dettmers, "Which GPU(s) to Get for Deep Learning" (timdettmers.com,
 *   2023 update), relative 16-bit training performance chart: T4, A10, L4,
 *   L40S, V100, A100 and H100 ordering and rough ratios.
 * - MLPerf Training v3.0/v3.1 (mlcommons.org, 2023) per-GPU H100 vs A100
 *   results (≈2.5–3× on BERT / GPT-3 with FP8), and NVIDIA's MLPerf Training
 *   v4.1 blog (Nov 2024): B200 ≈ 2× H100 per GPU on GPT-3 175B / Llama 2 70B
 *   LoRA; H200 ≈ 1.1–1.2× H100 from its extra memory bandwidth.
 * - B300, RTX PRO 6000 Blackwell, MI300X and the non-GPU accelerators are
 *   scaled from their vendors' published dense BF16 figures with a discount
 *   for immature software stacks; treat them as the roughest entries.
 */
export interface PerformanceTable {
  /** Throughput relative to A100 40 GB (= 1.0), per catalog gpu_type. */
  byGpu: Readonly<Record<string, number>>;
  /** Overrides per job type (e.g. measured inference numbers); looked up first. */
  byJobType?: Readonly<Partial<Record<JobType, Readonly<Record<string, number>>>>>;
  /** Used for a type listed nowhere: a deliberately middling guess so unknown hardware is neither favoured nor ruled out. */
  defaultThroughput: number;
}

export const DEFAULT_PERFORMANCE_TABLE: PerformanceTable = Object.freeze({
  byGpu: Object.freeze({
    K80: 0.07,
    K520: 0.03,
    M60: 0.08,
    P4: 0.07,
    P100: 0.2,
    V100: 0.45,
    "V100-32GB": 0.47,
    T4: 0.16,
    T4G: 0.16,
    A10: 0.45,
    A10G: 0.4,
    L4: 0.3,
    L40S: 0.9,
    A100: 1.0,
    "A100-80GB": 1.1,
    H100: 2.3,
    H200: 2.7,
    B200: 5.0,
    B300: 6.0,
    RTXPRO6000: 1.4,
    V520: 0.12,
    MI25: 0.12,
    MI300X: 2.3,
    Inferentia: 0.1,
    Inferentia2: 0.4,
    Trainium: 1.0,
    QualcommAI100: 0.3,
  }),
  defaultThroughput: 0.5,
});

/** The reference GPU when a spec names none: A100 40 GB, the table's unit. */
export const DEFAULT_REFERENCE_GPU = "A100";

/** Throughput of `gpuType` for `jobType`: per-job-type override, then the table, then its default. */
export function gpuThroughput(table: PerformanceTable, gpuType: string, jobType?: JobType): number {
  const own = jobType === undefined ? undefined : table.byJobType?.[jobType]?.[gpuType];
  if (own !== undefined && own > 0) return own;
  const v = table.byGpu[gpuType];
  return v !== undefined && v > 0 ? v : table.defaultThroughput;
}

/**
 * The GPU `estimated_hours` refers to: the first type the spec lists (the one
 * the user most likely timed it on), else A100 40 GB.
 */
export function referenceGpuType(gpuTypes: readonly string[]): string {
  return gpuTypes[0] ?? DEFAULT_REFERENCE_GPU;
}

/**
 * Expected run hours on `gpuType` = estimated hours on the reference × ref
 * throughput / type throughput. The world size is fixed by the spec, so a plan
 * that rents extra GPUs (a bigger instance) does not run faster; a fractional
 * share larger than asked is not assumed to speed the job up either.
 */
export function hoursOnGpu(
  table: PerformanceTable,
  referenceHours: number,
  referenceGpu: string,
  gpuType: string,
  jobType?: JobType,
): number {
  return (referenceHours * gpuThroughput(table, referenceGpu, jobType)) / gpuThroughput(table, gpuType, jobType);
}
