import { describe, expect, it } from "vitest";
import { catalogGpuModel } from "./gpu-types.js";

describe("catalogGpuModel", () => {
  it.each([
    ["NVIDIA A100-SXM4-80GB", 81920, "A100-80GB"],
    ["NVIDIA A100-SXM4-40GB", 40960, "A100"],
    ["Tesla V100-PCIE-32GB", 32768, "V100-32GB"],
    ["Tesla V100-SXM2-16GB", 16384, "V100"],
    ["NVIDIA H100 80GB HBM3", 81559, "H100"],
    ["NVIDIA A10G", 23028, "A10G"],
    ["NVIDIA A10", 23028, "A10"],
    ["Tesla T4", 15360, "T4"],
    ["NVIDIA L4", 23034, "L4"],
    ["NVIDIA L40S", 46068, "L40S"],
    ["GRID K520", 4095, "K520"],
    ["Tesla P4", 7611, "P4"],
    ["Tesla P100-PCIE-16GB", 16280, "P100"],
    ["NVIDIA RTX A5000", 24564, "RTX A5000"],
    ["NVIDIA GeForce GT 1030", 2001, "GeForce GT 1030"],
  ])("%s (%d MiB) is %s", (name, mib, model) => {
    expect(catalogGpuModel(name, mib)).toBe(model);
  });
});
