import { AppError } from "@gpuorch/core";
import { describe, expect, it } from "vitest";
import type { GpuInfo } from "./inventory.js";
import { parseNvidiaSmiXml } from "./nvidia-smi-xml.js";
import { readTestdata } from "./testdata-files.js";

// Every expected value below was read by hand from the capture named in the test.

function only(gpus: GpuInfo[]): GpuInfo {
  expect(gpus).toHaveLength(1);
  return gpus[0] as GpuInfo;
}

describe("parseNvidiaSmiXml: one test per real capture", () => {
  it("A100 SXM4 80GB in MIG mode (v12, 535.54.03): 4 × 1g.20gb devices, N/A utilization, 4 attached but 1 described", () => {
    const inv = parseNvidiaSmiXml(readTestdata("a100-sxm4-80gb-mig-4x1g.20gb-1of4gpus-drv535.54.03.xml"));
    expect(inv.driverVersion).toBe("535.54.03");
    expect(inv.cudaVersion).toBe("12.2");
    expect(inv.attachedGpus).toBe(4);
    const g = only(inv.gpus);
    expect(g).toMatchObject({
      index: 0,
      uuid: "GPU-513536b6-7d19-9063-b049-1e69664bb298",
      name: "NVIDIA A100-SXM4-80GB",
      pciBusId: "00000000:01:00.0",
      memory: { totalMib: 81920, usedMib: 50, freeMib: 80999 },
      utilization: { gpuPercent: null, memoryPercent: null },
      temperatureC: 27,
      power: { drawW: 67.03, limitW: 500 },
      smClockMhz: 1275,
      ecc: { enabled: true, volatile: { correctable: 0, uncorrectable: 0 }, aggregate: { correctable: 0, uncorrectable: 0 } },
      migMode: { current: true, pending: true },
    });
    expect(g.migDevices).toEqual(
      [3, 4, 5, 6].map((gi, i) => ({
        index: i,
        gpuInstanceId: gi,
        computeInstanceId: 0,
        // The XML names neither the profile nor the MIG UUID; `nvidia-smi -L` does (see nvidia-smi-list.test.ts).
        profile: null,
        memoryTotalMib: 19968,
        memoryUsedMib: 12,
        multiprocessorCount: 14,
        uuid: null,
      })),
    );
  });

  it("Tesla V100-PCIE-32GB (v11, 460.39): busy GPU, single/double-bit ECC totals", () => {
    const inv = parseNvidiaSmiXml(readTestdata("tesla-v100-pcie-32gb-4procs-drv460.39.xml"));
    expect(inv).toMatchObject({ driverVersion: "460.39", cudaVersion: "11.2", attachedGpus: 1 });
    expect(only(inv.gpus)).toEqual({
      index: 0,
      uuid: "GPU-e77ce5d8-8b63-c936-3c1b-839d45bcd0f2",
      name: "Tesla V100-PCIE-32GB",
      pciBusId: "00000000:21:01.0",
      memory: { totalMib: 32510, usedMib: 12311, freeMib: 20199 },
      utilization: { gpuPercent: 91, memoryPercent: 47 },
      temperatureC: 66,
      power: { drawW: 170.16, limitW: 250 },
      smClockMhz: 1380,
      ecc: { enabled: true, volatile: { correctable: 0, uncorrectable: 0 }, aggregate: { correctable: 0, uncorrectable: 0 } },
      migMode: { current: null, pending: null },
      migDevices: [],
    });
  });

  it("Tesla T4 (v11, 515.105.01)", () => {
    const inv = parseNvidiaSmiXml(readTestdata("tesla-t4-linux-2procs-drv515.105.01.xml"));
    expect(inv).toMatchObject({ driverVersion: "515.105.01", cudaVersion: "11.7", attachedGpus: 1 });
    expect(only(inv.gpus)).toMatchObject({
      uuid: "GPU-d37e67a5-91dd-3774-a5cb-99096249601a",
      name: "Tesla T4",
      pciBusId: "00000000:00:1E.0",
      memory: { totalMib: 15360, usedMib: 1032, freeMib: 13939 },
      utilization: { gpuPercent: 0, memoryPercent: 0 },
      temperatureC: 40,
      power: { drawW: 26.78, limitW: 70 },
      smClockMhz: 585,
      ecc: { enabled: true, volatile: { correctable: 0, uncorrectable: 0 } },
      migMode: { current: null, pending: null },
      migDevices: [],
    });
  });

  it("NVIDIA A10G on AWS g5 (v11, 515.105.01)", () => {
    const inv = parseNvidiaSmiXml(readTestdata("a10g-1proc-drv515.105.01.xml"));
    expect(inv).toMatchObject({ driverVersion: "515.105.01", cudaVersion: "11.7", attachedGpus: 1 });
    expect(only(inv.gpus)).toMatchObject({
      uuid: "GPU-9a9a6c50-2a47-2f51-a902-b82c3b127e94",
      name: "NVIDIA A10G",
      memory: { totalMib: 23028, usedMib: 22, freeMib: 22569 },
      temperatureC: 17,
      power: { drawW: 25.58, limitW: 300 },
      smClockMhz: 210,
    });
  });

  it("GRID K520 (DTD v7, driver 352.99): no CUDA version, no MIG elements, power_readings", () => {
    const inv = parseNvidiaSmiXml(readTestdata("grid-k520-drv352.99-dtd-v7.xml"));
    expect(inv).toEqual({
      driverVersion: "352.99",
      cudaVersion: null,
      attachedGpus: 1,
      gpus: [
        {
          index: 0,
          uuid: "GPU-cc96d6f4-7f66-e1fc-8179-a45dbd47664c",
          name: "GRID K520",
          pciBusId: "0000:00:03.0",
          memory: { totalMib: 4095, usedMib: 11, freeMib: 4084 },
          utilization: { gpuPercent: 0, memoryPercent: 0 },
          temperatureC: 31,
          power: { drawW: 17.97, limitW: 125 },
          smClockMhz: 324,
          ecc: { enabled: null, volatile: null, aggregate: null },
          migMode: { current: null, pending: null },
          migDevices: [],
        },
      ],
    });
  });

  it("GRID K520 with the whole DTD inlined (`nvidia-smi -q -x --dtd`)", () => {
    const inv = parseNvidiaSmiXml(readTestdata("grid-k520-drv352.99-inline-dtd.xml"));
    expect(inv).toMatchObject({ driverVersion: "352.99", cudaVersion: null, attachedGpus: 1 });
    // A second sample of the same GPU: 30 C and 17.95 W instead of 31 C and 17.97 W.
    expect(only(inv.gpus)).toMatchObject({
      uuid: "GPU-cc96d6f4-7f66-e1fc-8179-a45dbd47664c",
      name: "GRID K520",
      memory: { totalMib: 4095 },
      temperatureC: 30,
      power: { drawW: 17.95, limitW: 125 },
    });
  });

  it("2 × RTX A5000 (v13, 590.44.01): instant_power_draw, all-N/A ECC counters", () => {
    const inv = parseNvidiaSmiXml(readTestdata("2x-rtx-a5000-1proc-drv590.44.01-schema-v13.xml"));
    expect(inv).toMatchObject({ driverVersion: "590.44.01", cudaVersion: "13.1", attachedGpus: 2 });
    expect(inv.gpus.map((g) => [g.index, g.uuid, g.pciBusId, g.memory.usedMib, g.temperatureC, g.power.drawW])).toEqual([
      [0, "GPU-12345678-aaaa-bbbb-cccc-0123456789ab", "00000000:81:00.0", 22437, 13, 6.52],
      [1, "GPU-12345678-aaaa-bbbb-cccc-0123456789cd", "00000000:C1:00.0", 17253, 15, 13.59],
    ]);
    for (const g of inv.gpus) {
      expect(g).toMatchObject({
        name: "NVIDIA RTX A5000",
        memory: { totalMib: 24564 },
        power: { limitW: 230 },
        ecc: { enabled: false, volatile: null, aggregate: null },
        migMode: { current: null, pending: null },
        migDevices: [],
      });
    }
  });

  it("RTX 4000 SFF Ada (v13, 595.84)", () => {
    const inv = parseNvidiaSmiXml(readTestdata("rtx-4000-sff-ada-4procs-drv595.84-schema-v13.xml"));
    expect(inv).toMatchObject({ driverVersion: "595.84", cudaVersion: "13.2", attachedGpus: 1 });
    expect(only(inv.gpus)).toMatchObject({
      uuid: "GPU-37037c3f-65c8-ec4d-24a9-420204ad8026",
      name: "NVIDIA RTX 4000 SFF Ada Generation",
      pciBusId: "00000000:06:00.0",
      memory: { totalMib: 20475, usedMib: 3534, freeMib: 16482 },
      utilization: { gpuPercent: 0, memoryPercent: 37 },
      temperatureC: 38,
      power: { drawW: 8.44, limitW: 70 },
      ecc: { enabled: false, volatile: null, aggregate: null },
    });
  });

  it("2 × GeForce GTX 1080 (v11, 460.27.04): per-card memory totals differ", () => {
    const inv = parseNvidiaSmiXml(readTestdata("2x-gtx-1080-4procs-drv460.27.04.xml"));
    expect(inv).toMatchObject({ driverVersion: "460.27.04", cudaVersion: "11.2", attachedGpus: 2 });
    expect(inv.gpus.map((g) => [g.index, g.uuid, g.memory.totalMib, g.memory.usedMib, g.power.drawW, g.smClockMhz, g.temperatureC])).toEqual([
      [0, "GPU-683c6e09-3969-31a5-b7ca-cc88252b7fce", 8116, 2900, 211.86, 1784, 67],
      [1, "GPU-90e3dab0-b59d-8bf6-d909-d4fab8d2f29b", 8119, 2893, 211.06, 1657, 70],
    ]);
    expect(inv.gpus.every((g) => g.name === "GeForce GTX 1080" && g.utilization.gpuPercent === 100)).toBe(true);
  });

  it("GeForce GT 1030 (v11, 470.74): power draw N/A but a limit", () => {
    const inv = parseNvidiaSmiXml(readTestdata("gt-1030-10procs-drv470.74.xml"));
    expect(inv).toMatchObject({ driverVersion: "470.74", cudaVersion: "11.4", attachedGpus: 1 });
    expect(only(inv.gpus)).toMatchObject({
      uuid: "GPU-857c6374-f681-cf3a-f99f-9063a87b8ac0",
      name: "NVIDIA GeForce GT 1030",
      memory: { totalMib: 1998, usedMib: 875, freeMib: 1123 },
      utilization: { gpuPercent: 0, memoryPercent: 3 },
      power: { drawW: null, limitW: 30 },
      smClockMhz: 1265,
    });
  });

  it("Quadro P400 (418.43): no DOCTYPE at all, no MIG elements", () => {
    const inv = parseNvidiaSmiXml(readTestdata("quadro-p400-drv418.43.xml"));
    expect(inv).toMatchObject({ driverVersion: "418.43", cudaVersion: "10.1", attachedGpus: 1 });
    expect(only(inv.gpus)).toMatchObject({
      uuid: "GPU-8f750be4-dfbc-23b9-b33f-da729a536494",
      name: "Quadro P400",
      pciBusId: "00000000:43:00.0",
      memory: { totalMib: 1998, usedMib: 0, freeMib: 1998 },
      temperatureC: 33,
      power: { drawW: null, limitW: null },
      smClockMhz: 139,
      ecc: { enabled: null, volatile: null, aggregate: null },
      migMode: { current: null, pending: null },
    });
  });

  it("GTX 1070 Ti snippet trimmed upstream: missing driver, attached count and PCI block become null", () => {
    const inv = parseNvidiaSmiXml(readTestdata("gtx-1070-ti-partial-snippet-no-driver-version.xml"));
    expect(inv).toMatchObject({ driverVersion: null, cudaVersion: null, attachedGpus: null });
    expect(only(inv.gpus)).toMatchObject({
      uuid: "GPU-f9ba66fc-a7f5-94c5-da19-019ef2f9c665",
      name: "GeForce GTX 1070 Ti",
      // No <pci> block: the bus id comes from the <gpu id="…"> attribute.
      pciBusId: "00000000:01:00.0",
      memory: { totalMib: 4096, usedMib: 42, freeMib: 4054 },
      temperatureC: 39,
      power: { drawW: null, limitW: null },
      smClockMhz: 135,
    });
  });
});

describe("parseNvidiaSmiXml: broken input is an AppError, never a half inventory", () => {
  const whole = readTestdata("tesla-t4-linux-2procs-drv515.105.01.xml");

  function reasonOf(text: string): string {
    try {
      parseNvidiaSmiXml(text);
    } catch (e) {
      expect(e).toBeInstanceOf(AppError);
      return (e as AppError).reason;
    }
    throw new Error("expected parseNvidiaSmiXml to throw");
  }

  it("rejects output cut off in the middle of an element", () => {
    expect(reasonOf(whole.slice(0, whole.length / 2))).toBe("nvidia_smi_xml_invalid");
  });

  it("rejects output cut off just before the closing root tag", () => {
    const cut = whole.slice(0, whole.lastIndexOf("</nvidia_smi_log>"));
    expect(cut).toContain("</gpu>");
    expect(reasonOf(cut)).toBe("nvidia_smi_xml_invalid");
  });

  it("rejects empty and whitespace-only output", () => {
    expect(reasonOf("")).toBe("nvidia_smi_xml_invalid");
    expect(reasonOf("\n  \n")).toBe("nvidia_smi_xml_invalid");
  });

  it("rejects plain `nvidia-smi -q` text (a real 8 × H100 capture) handed over as XML", () => {
    expect(reasonOf(readTestdata("8x-h100-80gb-hbm3-drv535.161.08.nvidia-smi-q.txt"))).toBe("nvidia_smi_xml_invalid");
  });

  it("rejects well-formed XML with another root element", () => {
    expect(reasonOf("<?xml version=\"1.0\" ?>\n<something_else><gpu/></something_else>\n")).toBe("nvidia_smi_xml_invalid");
  });
});
