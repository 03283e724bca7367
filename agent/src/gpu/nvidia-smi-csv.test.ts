import { AppError } from "@gpuorch/core";
import { describe, expect, it } from "vitest";
import { inventoryFromQueryGpu, parseQueryGpuCsv } from "./nvidia-smi-csv.js";
import { readTestdata } from "./testdata-files.js";

// Expected values read by hand from each capture.

describe("parseQueryGpuCsv", () => {
  it("H100 in MIG mode under load (590.48.01, 212 fields): units from the header, [N/A] utilization", () => {
    const csv = parseQueryGpuCsv(readTestdata("h100-80gb-hbm3-mig-drv590.48.01.query-gpu-allfields-load.csv"));
    expect(csv.columns).toHaveLength(212);
    expect(csv.columns.find((c) => c.field === "memory.total")).toEqual({ field: "memory.total", unit: "MiB" });
    expect(csv.columns.find((c) => c.field === "temperature.gpu")).toEqual({ field: "temperature.gpu", unit: null });
    expect(csv.rows).toHaveLength(1);
    const row = csv.rows[0];
    expect(row?.cells.get("utilization.gpu")).toBe("[N/A]");
    expect(row?.cells.get("pcie.link.gen.max")).toBe("5");
    // Placeholders of every kind are null.
    expect(row?.text("addressing_mode")).toBe("None");
    expect(row?.text("display_mode")).toBeNull(); // [Requested functionality has been deprecated]
    expect(row?.number("fan.speed")).toBeNull(); // [N/A]

    const inv = inventoryFromQueryGpu(csv);
    expect(inv).toMatchObject({ driverVersion: "590.48.01", cudaVersion: null, attachedGpus: 1 });
    expect(inv.gpus).toEqual([
      {
        index: 0,
        uuid: "GPU-00000000-0000-0000-0000-000000000000",
        name: "NVIDIA H100 80GB HBM3",
        pciBusId: "00000000:00:09.0",
        memory: { totalMib: 81559, usedMib: 11125, freeMib: 69956 },
        utilization: { gpuPercent: null, memoryPercent: null },
        temperatureC: 53,
        power: { drawW: 433.78, limitW: 700 },
        smClockMhz: 1980,
        ecc: { enabled: true, volatile: { correctable: 0, uncorrectable: 0 }, aggregate: { correctable: 0, uncorrectable: 0 } },
        migMode: { current: true, pending: true },
        migDevices: [],
      },
    ]);
  });

  it("the same H100 without MIG, under load and idle", () => {
    const load = inventoryFromQueryGpu(parseQueryGpuCsv(readTestdata("h100-80gb-hbm3-drv590.48.01.query-gpu-allfields-load.csv")));
    expect(load.gpus[0]).toMatchObject({
      memory: { totalMib: 81559, usedMib: 19818, freeMib: 61263 },
      utilization: { gpuPercent: 100, memoryPercent: 11 },
      temperatureC: 59,
      power: { drawW: 631.95, limitW: 700 },
      smClockMhz: 1980,
      migMode: { current: false, pending: false },
    });
    const idle = inventoryFromQueryGpu(parseQueryGpuCsv(readTestdata("h100-80gb-hbm3-drv590.48.01.query-gpu-allfields-idle.csv")));
    expect(idle.gpus[0]).toMatchObject({
      memory: { totalMib: 81559, usedMib: 0, freeMib: 81081 },
      utilization: { gpuPercent: 0, memoryPercent: 0 },
      temperatureC: 41,
      power: { drawW: 69.85, limitW: 700 },
      smClockMhz: 345,
    });
  });

  it("L40S (595.80, 202 fields): MIG mode [N/A] is null, not false", () => {
    const csv = parseQueryGpuCsv(readTestdata("l40s-drv595.80.query-gpu-allfields-idle.csv"));
    expect(csv.columns).toHaveLength(202);
    const inv = inventoryFromQueryGpu(csv);
    expect(inv.driverVersion).toBe("595.80");
    expect(inv.gpus[0]).toMatchObject({
      name: "NVIDIA L40S",
      pciBusId: "00000000:01:00.0",
      memory: { totalMib: 46068, usedMib: 0, freeMib: 45460 },
      utilization: { gpuPercent: 100, memoryPercent: 9 },
      temperatureC: 63,
      power: { drawW: 144.97, limitW: 350 },
      smClockMhz: 2520,
      migMode: { current: null, pending: null },
    });
  });

  it("a 6-field subset from a 2-GPU host, values with units in the cells", () => {
    const csv = parseQueryGpuCsv(readTestdata("2x-gpu-gtx-1080-host.query-gpu-subset.csv"));
    expect(csv.columns.map((c) => c.unit)).toEqual([null, "MiB", "%", null, "W", "MHz"]);
    const inv = inventoryFromQueryGpu(csv);
    expect(inv.gpus.map((g) => [g.index, g.uuid, g.memory.usedMib, g.utilization.gpuPercent, g.temperatureC, g.power.drawW, g.smClockMhz])).toEqual([
      [0, "GPU-d86c351b-8f94-33ab-3b97-accb421fef6d", 754, 100, 71, 217.24, 1949],
      [1, "GPU-683c6e09-3969-31a5-b7ca-cc88252b7fce", 641, 100, 71, 208.3, 2025],
    ]);
    // Fields that were not queried are unknown, not zero.
    expect(inv.gpus[0]?.memory.totalMib).toBeNull();
    expect(inv.gpus[0]?.name).toBe("unknown");
  });

  it("reads --query-compute-apps output too: on MIG each process carries the parent GPU's UUID", () => {
    const csv = parseQueryGpuCsv(readTestdata("h100-80gb-hbm3-mig-drv590.48.01.query-compute-apps-load.csv"));
    expect(csv.rows.map((r) => [r.number("pid"), r.text("process_name"), r.number("used_gpu_memory"), r.text("gpu_uuid")])).toEqual([
      [21180, "/root/tools/memhog", 2296, "GPU-00000000-0000-0000-0000-000000000000"],
      [21181, "/root/tools/memhog", 1272, "GPU-00000000-0000-0000-0000-000000000000"],
      [21198, "./gpu_burn", 7484, "GPU-00000000-0000-0000-0000-000000000000"],
    ]);
  });

  it("reads `noheader,nounits` output given the queried field list", () => {
    const csv = parseQueryGpuCsv("0, 81559, [N/A]\n", ["index", "memory.total", "utilization.gpu"]);
    expect(csv.rows.map((r) => [r.number("index"), r.number("memory.total"), r.number("utilization.gpu")])).toEqual([[0, 81559, null]]);
  });

  it("rejects a value in a unit other than the header's instead of misreading it", () => {
    const csv = parseQueryGpuCsv("memory.total [MiB]\n80 GiB\n");
    expect(csv.rows[0]?.number("memory.total")).toBeNull();
  });

  it("rejects a row whose cell count does not match the header, and empty output", () => {
    expect(() => parseQueryGpuCsv("name, uuid\nA, B, C\n")).toThrow(AppError);
    expect(() => parseQueryGpuCsv("")).toThrow(/empty/);
  });
});
