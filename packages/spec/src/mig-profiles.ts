import type { GpuType } from "./gpu-types.js";

/**
 * MIG GPU-instance profiles per GPU model, as `nvidia-smi mig -lgip` names
 * them (`<compute slices>g.<memory>gb`, `+me` = with media engines).
 *
 * Source: NVIDIA Multi-Instance GPU User Guide, "Supported MIG Profiles"
 *   https://docs.nvidia.com/datacenter/tesla/mig-user-guide/supported-mig-profiles.html
 * (A30 and A100 tables; "for A100-SXM4-80GB the profile names change …
 * 1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb"), and
 * "Supported GPUs" on the same guide for which models have MIG at all.
 * Names of the Hopper/Blackwell parts cross-checked against NVIDIA's
 * mig-parted `deployments/systemd/config-default.yaml` (the profiles NVIDIA's
 * MIG manager configures on those device IDs).
 *
 * Drivers 535/545 named the A100-80GB 3g profile `3g.39gb`
 * (NVIDIA/mig-parted#31); the agent reports what the driver says, this table
 * only validates what users may ask for. B300 is absent until NVIDIA's guide
 * lists its profiles; add rows here, with their source, when it does.
 */
export const MIG_PROFILES = Object.freeze({
  /** A30 24GB: 4 compute slices. */
  A30: Object.freeze(["1g.6gb", "1g.6gb+me", "2g.12gb", "2g.12gb+me", "4g.24gb"]),
  /** A100 40GB (SXM4/PCIe). */
  "A100-40GB": Object.freeze(["1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"]),
  /** A100 80GB (SXM4/PCIe). */
  "A100-80GB": Object.freeze(["1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]),
  /** H100 80GB (SXM5/PCIe): same names as A100-80GB. */
  H100: Object.freeze(["1g.10gb", "1g.10gb+me", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"]),
  /** H100 NVL 94GB. */
  "H100-NVL": Object.freeze(["1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"]),
  /** H200 141GB (SXM5 and NVL). */
  H200: Object.freeze(["1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"]),
  /** B200 180GB. */
  B200: Object.freeze(["1g.23gb", "1g.23gb+me", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"]),
  /** H100 on GH200, 96GB HBM3. */
  GH200: Object.freeze(["1g.12gb", "1g.12gb+me", "1g.24gb", "2g.24gb", "3g.48gb", "4g.48gb", "7g.96gb"]),
  /** GH200 144GB HBM3e. */
  "GH200-144GB": Object.freeze(["1g.18gb", "1g.18gb+me", "1g.36gb", "2g.36gb", "3g.72gb", "4g.72gb", "7g.144gb"]),
  /** RTX PRO 6000 Blackwell Server Edition 96GB: 4 compute slices; `+gfx` keeps graphics, `-me` drops media. */
  RTXPRO6000: Object.freeze([
    "1g.24gb",
    "1g.24gb+gfx",
    "1g.24gb-me",
    "1g.24gb+me.all",
    "2g.48gb",
    "2g.48gb+gfx",
    "2g.48gb-me",
    "2g.48gb+me.all",
    "4g.96gb",
    "4g.96gb+gfx",
  ]),
}) satisfies Readonly<Record<string, readonly string[]>>;

export type MigGpuModel = keyof typeof MIG_PROFILES;

/**
 * Which MIG table rows a catalog `gpu_type` may physically be. The catalog's
 * `H100` covers both the 80GB SXM/PCIe part and the 94GB H100 NVL (Azure's
 * NC H100 v5). Catalog types not listed have no MIG.
 */
export const MIG_MODELS_BY_GPU_TYPE: Readonly<Partial<Record<GpuType, readonly MigGpuModel[]>>> = Object.freeze({
  A100: ["A100-40GB"],
  "A100-80GB": ["A100-80GB"],
  H100: ["H100", "H100-NVL"],
  H200: ["H200"],
  B200: ["B200"],
  RTXPRO6000: ["RTXPRO6000"],
});

const MODELS = Object.keys(MIG_PROFILES) as MigGpuModel[];

/** Every profile name any MIG-capable model offers, sorted. */
export const ALL_MIG_PROFILES: readonly string[] = [...new Set(MODELS.flatMap((m) => [...MIG_PROFILES[m]]))].sort();

/** `MIG 1g.10gb`, `mig-1g.10gb`, `1G.10GB` → `1g.10gb`. */
export function normalizeMigProfile(input: string): string {
  return input
    .trim()
    .toLowerCase()
    .replace(/^(nvidia\.com\/)?mig[-\s]/, "");
}

/** The MIG models that offer `profile`. */
export function modelsWithProfile(profile: string): MigGpuModel[] {
  return MODELS.filter((m) => (MIG_PROFILES[m] as readonly string[]).includes(profile));
}
