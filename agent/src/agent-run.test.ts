import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runAgentCli } from "./agent-cli.js";
import { registrationFromInventory, samplesFromGpus } from "./link/registration.js";
import { createFileNodeIdStore } from "./link/node-id-store.js";
import { collectNodeInventory } from "./node-inventory.js";
import { createMemoryLogger } from "@gpuorch/runtime";
import { testdataPath } from "./gpu/testdata-files.js";

const dir = mkdtempSync(join(tmpdir(), "gpuorch-agent-run-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(argv: string[], env: NodeJS.ProcessEnv = {}) {
  let stderr = "";
  const code = await runAgentCli(["run", ...argv], { stdout: () => {}, stderr: (t) => (stderr += t), env });
  return { code, stderr };
}

describe("gpuorch-agent run", () => {
  it("refuses to start without a controller address and token (exit 2, says which)", async () => {
    const r = await run([]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--controller and --token are required");
    expect((await run(["--bogus"])).code).toBe(2);
    expect((await run(["--controller", "x:1", "--token", "t", "--heartbeat-seconds", "0"])).stderr).toContain("--heartbeat-seconds");
  });

  it("persists the node id in the work dir and ignores a malformed file", () => {
    const store = createFileNodeIdStore(join(dir, "work"));
    expect(store.load()).toBeNull();
    store.save("0190a3b2-0000-7000-8000-000000000001");
    expect(createFileNodeIdStore(join(dir, "work")).load()).toBe("0190a3b2-0000-7000-8000-000000000001");
    createFileNodeIdStore(join(dir, "work")).save("garbage");
    expect(store.load()).toBeNull();
  });

  it("registers the captured A100's MIG devices and sends null for readings MIG hides", async () => {
    const inv = await collectNodeInventory(
      { simulateGpus: testdataPath("a100-sxm4-80gb-mig-4x1g.20gb-1of4gpus-drv535.54.03.xml") },
      {
        logger: createMemoryLogger(),
        collectHost: async () => ({ hostname: "h", cpu: { model: "x", logicalCores: 8, physicalCores: 4 }, memoryMib: 1024, os: { platform: "linux", distro: "", release: "", kernel: "", arch: "x64" }, disks: [] }),
      },
    );
    const labels = { provider: "onprem", region: "lab", zone: "", network: "", instanceType: "", spot: false, privateIp: "" };
    const reg = registrationFromInventory(inv, { labels, hostname: "lab-1" });
    expect(reg).toMatchObject({ hostname: "lab-1", cpuCores: 8, driverVersion: "535.54.03", degradedReason: null });
    expect(reg.gpus).toHaveLength(1);
    expect(reg.gpus[0]).toMatchObject({ name: "NVIDIA A100-SXM4-80GB", memoryTotalMib: 81920, migEnabled: true });
    expect(reg.gpus[0]?.migDevices).toHaveLength(4);
    expect(samplesFromGpus(inv.gpus)[0]?.utilizationGpuPercent).toBeNull();
  });
});
