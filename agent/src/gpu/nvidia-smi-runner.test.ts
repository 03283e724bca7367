import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppError } from "@gpuorch/core";
import { createMemoryLogger } from "@gpuorch/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { discoverGpus } from "./discovery.js";
import { runNvidiaSmi } from "./nvidia-smi-runner.js";
import { testdataPath } from "./testdata-files.js";

// Real child processes: each "nvidia-smi" is a small shell script in a temp
// dir that behaves like one failure mode of the real binary.

let dir: string;

function script(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

async function failure(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error("expected a rejection");
}

/**
 * Whether `pid` is gone, allowing the kernel up to a second to finish an exit
 * it has begun: a dying process closes its pipes (which is what the runner
 * waits for) a moment before it stops counting as running.
 */
async function gone(pid: number): Promise<boolean> {
  for (let i = 0; i < 50 && alive(pid); i++) await new Promise((r) => setTimeout(r, 20));
  return !alive(pid);
}

/** Whether `pid` still runs; an exited child that nobody has reaped yet (a zombie) does not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // Orphans are reaped by PID 1, which in a container may never do it.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}

const A100_XML = testdataPath("a100-sxm4-80gb-mig-4x1g.20gb-1of4gpus-drv535.54.03.xml");
const T4_XML = testdataPath("tesla-t4-linux-2procs-drv515.105.01.xml");

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "gpuorch-nvidia-smi-"));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("runNvidiaSmi", () => {
  it("returns stdout of a successful run and passes the arguments", async () => {
    const smi = script("echo-args", 'echo "args: $*"');
    await expect(runNvidiaSmi(["-q", "-x"], { path: smi })).resolves.toBe("args: -q -x\n");
  });

  it("reports a missing binary as NOT_FOUND nvidia_smi_not_found", async () => {
    const err = await failure(runNvidiaSmi(["-q", "-x"], { path: join(dir, "no-such-nvidia-smi") }));
    expect([err.code, err.reason]).toEqual(["NOT_FOUND", "nvidia_smi_not_found"]);
  });

  it("kills a hanging nvidia-smi and everything it started at the timeout", async () => {
    const smi = script("hang", `sleep 1000 &\necho $! > "${dir}/hang.child"\necho $$ > "${dir}/hang.pid"\nwait`);
    const err = await failure(runNvidiaSmi(["-q", "-x"], { path: smi, timeoutMs: 1000 }));
    expect([err.code, err.reason]).toEqual(["DEADLINE_EXCEEDED", "nvidia_smi_timeout"]);
    expect(err.message).toContain("1000 ms");
    const pids = [readFileSync(join(dir, "hang.pid"), "utf8"), readFileSync(join(dir, "hang.child"), "utf8")].map(Number);
    expect(await Promise.all(pids.map(gone))).toEqual([true, true]);
  });

  it("escalates to SIGKILL when the process ignores SIGTERM", async () => {
    const smi = script("stubborn", `trap '' TERM\necho $$ > "${dir}/stubborn.pid"\nwhile :; do sleep 1; done`);
    const err = await failure(runNvidiaSmi(["-q", "-x"], { path: smi, timeoutMs: 1000, killGraceMs: 200 }));
    expect(err.reason).toBe("nvidia_smi_timeout");
    expect(await gone(Number(readFileSync(join(dir, "stubborn.pid"), "utf8")))).toBe(true);
  });

  it("kills a run whose output exceeds the bound", async () => {
    const smi = script("flood", "yes");
    const err = await failure(runNvidiaSmi(["-q", "-x"], { path: smi, maxOutputBytes: 100_000 }));
    expect(err.reason).toBe("nvidia_smi_output_too_large");
  });

  it("recognises the driver/library version mismatch by its exit code 18", async () => {
    const smi = script("mismatch", "echo 'Failed to initialize NVML: Driver/library version mismatch'\necho 'NVML library version: 535.161'\nexit 18");
    const err = await failure(runNvidiaSmi(["-q", "-x"], { path: smi }));
    expect(err.reason).toBe("driver_library_version_mismatch");
    expect(err.meta).toMatchObject({ exitCode: 18 });
  });

  it("recognises `No devices were found` whatever the exit status", async () => {
    for (const code of [6, 0]) {
      const smi = script(`no-devices-${code}`, `echo 'No devices were found'\nexit ${code}`);
      const err = await failure(runNvidiaSmi(["-q", "-x"], { path: smi }));
      expect(err.reason).toBe("no_devices_found");
    }
  });

  it("reports any other non-zero exit with its status and first output line", async () => {
    const smi = script("fails", "echo 'Unable to determine the device handle for GPU 0000:01:00.0' >&2\nexit 15");
    const err = await failure(runNvidiaSmi(["-q", "-x"], { path: smi }));
    expect(err.reason).toBe("nvidia_smi_failed");
    expect(err.message).toContain("exit code 15");
    expect(err.message).toContain("Unable to determine the device handle");
  });

  it("reports a binary that cannot be executed", async () => {
    const path = join(dir, "not-executable");
    writeFileSync(path, "#!/bin/sh\nexit 0\n");
    chmodSync(path, 0o644);
    const err = await failure(runNvidiaSmi(["-q", "-x"], { path }));
    expect(err.reason).toBe("nvidia_smi_failed");
  });

  it("stops a run when the signal aborts", async () => {
    const smi = script("hang-abort", "exec sleep 1000");
    const ac = new AbortController();
    const run = runNvidiaSmi(["-q", "-x"], { path: smi, signal: ac.signal });
    ac.abort();
    const err = await failure(run);
    expect([err.code, err.reason]).toEqual(["ABORTED", "aborted"]);
  });
});

describe("discoverGpus against real processes", () => {
  it("parses -q -x and completes MIG devices from -L", async () => {
    const listing = join(dir, "a100-L.txt");
    writeFileSync(
      listing,
      "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-513536b6-7d19-9063-b049-1e69664bb298)\n" +
        [0, 1, 2, 3].map((i) => `  MIG 1g.20gb     Device  ${i}: (UUID: MIG-0000000${i}-test-0000-0000-000000000000)\n`).join(""),
    );
    const smi = script("a100", `case "$1" in\n  -q) cat "${A100_XML}" ;;\n  -L) cat "${listing}" ;;\n  *) exit 2 ;;\nesac`);
    const logger = createMemoryLogger();
    const d = await discoverGpus({ path: smi, logger });
    expect(d.source).toBe("nvidia-smi");
    expect(d.degraded).toBeNull();
    expect(d.warnings).toEqual(["nvidia-smi reports 4 attached GPUs but describes 1"]);
    expect(d.inventory.gpus[0]?.migDevices.map((m) => [m.gpuInstanceId, m.profile, m.uuid])).toEqual([
      [3, "1g.20gb", "MIG-00000000-test-0000-0000-000000000000"],
      [4, "1g.20gb", "MIG-00000001-test-0000-0000-000000000000"],
      [5, "1g.20gb", "MIG-00000002-test-0000-0000-000000000000"],
      [6, "1g.20gb", "MIG-00000003-test-0000-0000-000000000000"],
    ]);
  });

  it("warns about -L lines it cannot read instead of dropping them silently", async () => {
    const listing = join(dir, "a100-odd-L.txt");
    writeFileSync(
      listing,
      "GPU 0: NVIDIA A100-SXM4-80GB (UUID: GPU-513536b6-7d19-9063-b049-1e69664bb298)\n  MIG ??? something new\n",
    );
    const smi = script("a100-odd", `case "$1" in\n  -q) cat "${A100_XML}" ;;\n  -L) cat "${listing}" ;;\nesac`);
    const d = await discoverGpus({ path: smi, logger: createMemoryLogger() });
    expect(d.warnings[1]).toBe('nvidia-smi -L: 1 line(s) not understood, first: "  MIG ??? something new"');
  });

  it("keeps the XML's MIG devices, with a warning, when -L fails", async () => {
    const smi = script("a100-no-L", `case "$1" in\n  -q) cat "${A100_XML}" ;;\n  *) echo 'Failed to run -L' >&2; exit 3 ;;\nesac`);
    const d = await discoverGpus({ path: smi, logger: createMemoryLogger() });
    expect(d.degraded).toBeNull();
    expect(d.inventory.gpus[0]?.migDevices).toHaveLength(4);
    expect(d.inventory.gpus[0]?.migDevices[0]?.uuid).toBeNull();
    expect(d.warnings[1]).toMatch(/^MIG UUIDs unknown: .*exit code 3/);
  });

  it("does not run -L for a GPU without MIG", async () => {
    const smi = script("t4", `case "$1" in\n  -q) cat "${T4_XML}" ;;\n  *) echo "-L must not run" > "${dir}/t4-L-ran"; exit 1 ;;\nesac`);
    const d = await discoverGpus({ path: smi, logger: createMemoryLogger() });
    expect(d.inventory.gpus.map((g) => g.name)).toEqual(["Tesla T4"]);
    expect(d.warnings).toEqual([]);
    expect(() => readFileSync(join(dir, "t4-L-ran"))).toThrow();
  });

  it("reports zero GPUs, not degraded, when there is no nvidia-smi", async () => {
    const logger = createMemoryLogger();
    const d = await discoverGpus({ path: join(dir, "absent"), logger });
    expect(d).toMatchObject({ source: "none", degraded: null, inventory: { gpus: [] } });
  });

  const degradedCases: [string, string, string][] = [
    ["hangs", "exec sleep 1000", "nvidia_smi_timeout"],
    ["exits 18", "echo 'Failed to initialize NVML: Driver/library version mismatch'\nexit 18", "driver_library_version_mismatch"],
    ["finds no devices", "echo 'No devices were found'\nexit 6", "no_devices_found"],
    ["prints garbage", "echo 'garbage <<< not xml'", "nvidia_smi_output_invalid"],
    ["prints nothing", "exit 0", "nvidia_smi_output_invalid"],
    ["prints truncated XML", `head -c 4000 "${T4_XML}"`, "nvidia_smi_output_invalid"],
    ["exits non-zero", "echo 'Unknown Error' >&2\nexit 255", "nvidia_smi_failed"],
  ];
  for (const [what, body, reason] of degradedCases) {
    it(`marks the node degraded (${reason}) when nvidia-smi ${what}`, async () => {
      const logger = createMemoryLogger();
      // Generous for the runs that finish (a loaded CI machine), short for the one that hangs.
      const timeoutMs = reason === "nvidia_smi_timeout" ? 300 : 5_000;
      const d = await discoverGpus({ path: script(`degraded-${reason}`, body), timeoutMs, logger });
      expect(d.degraded?.reason).toBe(reason);
      expect(d.degraded?.message.length).toBeGreaterThan(10);
      expect(d.inventory.gpus).toEqual([]);
      expect(logger.records.some((r) => r.level === "warn" && r.fields.reason === reason)).toBe(true);
    });
  }
});
