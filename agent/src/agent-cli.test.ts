import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createMemoryLogger } from "@gpuorch/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runAgentCli } from "./agent-cli.js";
import type { HostInfo } from "./host-info.js";
import type { NodeInventory } from "./node-inventory.js";
import { testdataPath } from "./gpu/testdata-files.js";

const HOST: HostInfo = {
  hostname: "gpu-node-1",
  cpu: { model: "AMD EPYC 7R13", logicalCores: 48, physicalCores: 24 },
  memoryMib: 196608,
  os: { platform: "linux", distro: "Ubuntu", release: "22.04", kernel: "5.15.0", arch: "x64" },
  disks: [{ mount: "/", filesystem: "/dev/nvme0n1p1", type: "ext4", sizeBytes: 500 * 1024 ** 3, availableBytes: 250 * 1024 ** 3 }],
};

const A100_XML = testdataPath("a100-sxm4-80gb-mig-4x1g.20gb-1of4gpus-drv535.54.03.xml");
const A5000_XML = testdataPath("2x-rtx-a5000-1proc-drv590.44.01-schema-v13.xml");

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "gpuorch-agent-cli-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}) {
  let stdout = "";
  let stderr = "";
  const code = await runAgentCli(argv, {
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
    env,
    collectHost: () => Promise.resolve(HOST),
    logger: createMemoryLogger(),
  });
  return { code, stdout, stderr };
}

describe("gpuorch-agent inventory", () => {
  it("--simulate-gpus --json prints the replayed GPUs, marked simulated, with host facts", async () => {
    const r = await cli(["inventory", "--simulate-gpus", A100_XML, "--json"]);
    expect(r.code).toBe(0);
    const inv = JSON.parse(r.stdout) as NodeInventory;
    expect(inv).toMatchObject({ gpuSource: "simulated", driverVersion: "535.54.03", cudaVersion: "12.2", attachedGpus: 4, degraded: null, host: HOST });
    expect(inv.gpus.map((g) => [g.name, g.memory.totalMib, g.migDevices.length])).toEqual([["NVIDIA A100-SXM4-80GB", 81920, 4]]);
    expect(inv.warnings).toEqual([
      "nvidia-smi reports 4 attached GPUs but describes 1",
      "MIG profiles and UUIDs unknown: the XML does not carry them (give the matching `nvidia-smi -L` output)",
    ]);
  });

  it("prints a table of GPUs and MIG devices, with profiles and UUIDs from --nvidia-smi-list", async () => {
    const listing = join(dir, "a100-L.txt");
    writeFileSync(
      listing,
      "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-513536b6-7d19-9063-b049-1e69664bb298)\n" +
        [0, 1, 2, 3].map((i) => `  MIG 1g.20gb     Device  ${i}: (UUID: MIG-0000000${i}-test-0000-0000-000000000000)\n`).join(""),
    );
    const r = await cli(["inventory", "--nvidia-smi-xml", A100_XML, "--nvidia-smi-list", listing]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines).toContain("CPU       AMD EPYC 7R13, 48 cores (24 physical)");
    expect(lines).toContain("GPUs      1, source file, driver 535.54.03, CUDA 12.2, nvidia-smi reports 4 attached");
    expect(lines).toContain(
      "0    NVIDIA A100-SXM4-80GB  GPU-513536b6-7d19-9063-b049-1e69664bb298  00000000:01:00.0  50/81920              -      27      67.03/500  1275    on",
    );
    expect(lines).toContain("GPU  DEV  GI  CI  PROFILE  MEM MiB  SMs  UUID");
    expect(lines).toContain("0    3    6   0   1g.20gb  19968    14   MIG-00000003-test-0000-0000-000000000000");
  });

  it("prints a two-GPU v13 capture as two rows", async () => {
    const r = await cli(["inventory", "--simulate-gpus", A5000_XML]);
    const rows = r.stdout.split("\n").filter((l) => l.includes("NVIDIA RTX A5000"));
    expect(rows).toEqual([
      "0    NVIDIA RTX A5000  GPU-12345678-aaaa-bbbb-cccc-0123456789ab  00000000:81:00.0  22437/24564           0      13      6.52/230   210     -",
      "1    NVIDIA RTX A5000  GPU-12345678-aaaa-bbbb-cccc-0123456789cd  00000000:C1:00.0  17253/24564           0      15      13.59/230  210     -",
    ]);
  });

  it("runs the nvidia-smi named by --nvidia-smi and shows a degraded node with its reason (exit 0)", async () => {
    const smi = join(dir, "mismatch");
    writeFileSync(smi, "#!/bin/sh\necho 'Failed to initialize NVML: Driver/library version mismatch'\nexit 18\n");
    chmodSync(smi, 0o755);
    const r = await cli(["inventory", "--nvidia-smi", smi, "--json"]);
    expect(r.code).toBe(0);
    const inv = JSON.parse(r.stdout) as NodeInventory;
    expect(inv.degraded?.reason).toBe("driver_library_version_mismatch");
    expect(inv.gpus).toEqual([]);
    const table = await cli(["inventory", "--nvidia-smi", smi]);
    expect(table.stdout).toMatch(/^DEGRADED {2}driver_library_version_mismatch: .*version mismatch/m);
  });

  it("takes the nvidia-smi path from GPUORCH_NVIDIA_SMI_PATH", async () => {
    const r = await cli(["inventory", "--json"], { GPUORCH_NVIDIA_SMI_PATH: join(dir, "not-there") });
    const inv = JSON.parse(r.stdout) as NodeInventory;
    expect(inv).toMatchObject({ gpuSource: "none", gpus: [], degraded: null });
    expect(inv.warnings[0]).toContain("not-there");
  });

  it("fails with exit 1 and a message when the capture file is unreadable or broken", async () => {
    const missing = await cli(["inventory", "--simulate-gpus", join(dir, "missing.xml")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read .*missing\.xml/);
    const broken = join(dir, "broken.xml");
    writeFileSync(broken, "<nvidia_smi_log><gpu>");
    const r = await cli(["inventory", "--nvidia-smi-xml", broken]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("not well-formed XML");
    expect(r.stdout).toBe("");
  });

  it("rejects unknown options, unknown commands and conflicting inputs with exit 2", async () => {
    expect((await cli(["inventory", "--gpus"])).code).toBe(2);
    expect((await cli(["register"])).code).toBe(2);
    expect((await cli([])).code).toBe(2);
    expect((await cli(["inventory", "--simulate-gpus", A100_XML, "--nvidia-smi-xml", A100_XML])).code).toBe(2);
    expect((await cli(["--help"])).code).toBe(0);
  });
});

const BUILT_MAIN = fileURLToPath(new URL("../dist/main.js", import.meta.url));

describe("the gpuorch-agent binary", () => {
  // Needs `tsc -b agent` first (the repository's test command builds before testing).
  it.runIf(existsSync(BUILT_MAIN))("prints JSON and exits 0 as a real process", async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [BUILT_MAIN, "inventory", "--simulate-gpus", A5000_XML, "--json"]);
    const inv = JSON.parse(stdout) as NodeInventory;
    expect(inv.gpus.map((g) => g.uuid)).toEqual(["GPU-12345678-aaaa-bbbb-cccc-0123456789ab", "GPU-12345678-aaaa-bbbb-cccc-0123456789cd"]);
    expect(inv.host.cpu.logicalCores).toBeGreaterThan(0);
  });

  it.runIf(existsSync(BUILT_MAIN))("exits non-zero on an error", async () => {
    const run = promisify(execFile)(process.execPath, [BUILT_MAIN, "inventory", "--simulate-gpus", join(dir, "nope.xml")]);
    await expect(run).rejects.toMatchObject({ code: 1 });
  });
});
