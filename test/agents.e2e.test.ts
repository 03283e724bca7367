import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { AppError } from "@gpuorch/core";
import { AgentClient } from "@gpuorch/rpc";
import { createTestDatabase, freePort, waitFor } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, type ControllerProcess, ROOT, assertNoControllersLeft, createTokenCli, runNode, startControllerProcess, tempDir } from "./helpers.js";

const AGENT_BIN = join(ROOT, "agent/dist/main.js");
const TESTDATA = join(ROOT, "agent/src/gpu/testdata");

interface NodeJson {
  id: string;
  hostname: string;
  provider: string;
  region: string;
  network: string;
  state: string;
  last_heartbeat_at: string | null;
  gpus: { index: number; name: string; memory_total_mib: number; mig_enabled: boolean; mig_devices: { profile: string }[]; utilization_gpu_percent: number | null; updated_at: string | null }[];
}

// Short timeouts so the scenario runs in seconds: 1 s heartbeats, unreachable after 2 s of silence, lost after 4 s.
const CONTROLLER_FLAGS = ["--heartbeat-interval-seconds", "1", "--heartbeat-flush-ms", "100", "--node-unreachable-ms", "2000", "--node-lost-ms", "4000", "--node-health-interval-ms", "200"];

interface Backend {
  name: string;
  db: (work: string) => Promise<{ dataDir?: string; databaseUrl?: string }>;
}

const backends: Backend[] = [
  { name: "pglite", db: async (work) => ({ dataDir: join(work, "data") }) },
  { name: "postgresql", db: async () => ({ databaseUrl: (await createTestDatabase()).url }) },
];

describe.each(backends)("controller + two real agents: registration, heartbeats, node health ($name)", (backend) => {
  const work = tempDir("gpuorch-agents-e2e-");
  let db: { dataDir?: string; databaseUrl?: string };
  let ctl: ControllerProcess;
  let port: number;
  let agentToken: string;
  let userToken: string;
  const agents = new Set<ChildProcess>();
  const output = new Map<string, string>();

  function startAgent(name: string, xml: string): ChildProcess {
    const child = spawn(
      process.execPath,
      [
        AGENT_BIN, "run",
        "--controller", `127.0.0.1:${port}`,
        "--token", agentToken,
        "--work-dir", join(work, name),
        "--node-name", name,
        "--provider", "onprem", "--region", "lab", "--network", "net-1",
        "--simulate-gpus", join(TESTDATA, xml),
        "--heartbeat-seconds", "1",
        "--reconnect-max-ms", "400",
        "--log-level", "info",
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, GPUORCH_CONFIG: "" } },
    );
    agents.add(child);
    output.set(name, "");
    const add = (d: Buffer) => output.set(name, (output.get(name) ?? "") + d.toString());
    child.stdout!.on("data", add);
    child.stderr!.on("data", add);
    child.on("exit", () => agents.delete(child));
    return child;
  }

  async function nodes(extra: string[] = []): Promise<NodeJson[]> {
    const res = await runNode(CLI_BIN, ["nodes", "--json", ...extra], {
      env: { GPUORCH_CONTROLLER: `127.0.0.1:${port}`, GPUORCH_TOKEN: userToken, GPUORCH_CONFIG: join(work, "none.yaml") },
    });
    if (res.code !== 0) throw new Error(`gpuorch nodes failed (${res.code}): ${res.stderr}`);
    return (JSON.parse(res.stdout) as { nodes: NodeJson[] }).nodes;
  }

  const node = async (name: string) => (await nodes()).find((n) => n.hostname === name);
  /** Polls (bounded) until `fn` returns something; on timeout the error carries the latest process logs. */
  async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 15_000): Promise<T> {
    try {
      return (await waitFor(fn, { timeoutMs, intervalMs: 100, message: what })) as T;
    } catch (e) {
      const agentLogs = [...output].map(([n, o]) => `--- ${n}:\n${o.slice(-2000)}`).join("\n");
      throw new Error(`${(e as Error).message}\n--- controller:\n${ctl.logs().slice(-3000)}\n${agentLogs}`, { cause: e });
    }
  }

  const exited = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once("exit", () => resolve())));

  beforeAll(async () => {
    db = await backend.db(work);
    agentToken = await createTokenCli(db, ["--team", "ops", "--kind", "agent", "--name", "agents"]);
    userToken = await createTokenCli(db, ["--team", "ops"]);
    port = await freePort();
    ctl = await startControllerProcess({ ...db, extraArgs: ["--grpc-port", String(port), ...CONTROLLER_FLAGS] });
  });

  afterAll(async () => {
    for (const a of agents) a.kill("SIGKILL");
    await Promise.all([...agents].map(exited));
    await ctl?.stop("SIGKILL");
    rmSync(work, { recursive: true, force: true });
    assertNoControllersLeft();
  });

  it("registers both agents with their real captured GPUs; they stay ready with fresh samples", async () => {
    startAgent("node-a", "2x-rtx-a5000-1proc-drv590.44.01-schema-v13.xml");
    startAgent("node-b", "a100-sxm4-80gb-mig-4x1g.20gb-1of4gpus-drv535.54.03.xml");
    const both = await until("both nodes ready with GPU samples", async () => {
      const list = await nodes();
      const ready = list.filter((n) => n.state === "ready" && n.gpus.every((g) => g.updated_at !== null));
      return ready.length === 2 ? list : null;
    });
    const a = both.find((n) => n.hostname === "node-a")!;
    const b = both.find((n) => n.hostname === "node-b")!;
    expect(a).toMatchObject({ provider: "onprem", region: "lab", network: "net-1" });
    expect(a.gpus.map((g) => [g.index, g.name, g.memory_total_mib])).toEqual([
      [0, "NVIDIA RTX A5000", 24564],
      [1, "NVIDIA RTX A5000", 24564],
    ]);
    expect(a.gpus[0]?.utilization_gpu_percent).toBe(0);
    expect(b.gpus).toHaveLength(1);
    expect(b.gpus[0]).toMatchObject({ name: "NVIDIA A100-SXM4-80GB", memory_total_mib: 81920, mig_enabled: true });
    expect(b.gpus[0]?.mig_devices).toHaveLength(4);
    // Each agent persisted the id it was given.
    expect(readFileSync(join(work, "node-a", "node-id"), "utf8").trim()).toBe(a.id);

    const table = await runNode(CLI_BIN, ["nodes"], { env: { GPUORCH_CONTROLLER: `127.0.0.1:${port}`, GPUORCH_TOKEN: userToken, GPUORCH_CONFIG: join(work, "none.yaml") } });
    expect(table.stdout).toMatch(/node-a .*onprem\/lab .*NVIDIA RTX A5000 × 2 .*ready/);

    const metrics = await (await fetch(`${ctl.baseUrl}/metrics`)).text();
    expect(metrics).toMatch(/gpuorch_nodes\{state="ready"\} 2/);
    expect(metrics).toMatch(/gpuorch_heartbeats_received_total [1-9]/);
  });

  it("kill -9 of an agent: its node becomes unreachable, then lost; a restart brings it back ready with the same id", async () => {
    const before = (await node("node-a"))!;
    const victim = [...agents].find((c) => c.spawnargs.includes("node-a"))!;
    victim.kill("SIGKILL");
    await exited(victim);
    await until("node-a unreachable", async () => (await node("node-a"))?.state === "unreachable");
    await until("node-a lost", async () => (await node("node-a"))?.state === "lost");
    expect((await node("node-b"))?.state).toBe("ready");
    expect((await nodes(["--state", "lost"])).map((n) => n.hostname)).toEqual(["node-a"]);

    startAgent("node-a", "2x-rtx-a5000-1proc-drv590.44.01-schema-v13.xml");
    const back = await until("node-a ready again", async () => {
      const n = await node("node-a");
      return n?.state === "ready" ? n : null;
    });
    expect(back.id).toBe(before.id);
    expect((await nodes()).filter((n) => n.hostname === "node-a")).toHaveLength(1);
  });

  it("agents keep retrying while the controller is down and reconnect when it returns", async () => {
    expect(await ctl.stop("SIGTERM")).toBe(0);
    const downAt = Date.now();
    // The agents notice and keep retrying (with backoff) against the closed port; they keep running.
    const downs = (name: string) => (output.get(name) ?? "").split("controller link down").length - 1;
    const [a0, b0] = [downs("node-a"), downs("node-b")];
    await until("both agents retried several times", async () => downs("node-a") >= a0 + 3 && downs("node-b") >= b0 + 3);
    expect([...agents].every((c) => c.exitCode === null)).toBe(true);

    ctl = await startControllerProcess({ ...db, extraArgs: ["--grpc-port", String(port), ...CONTROLLER_FLAGS] });
    const fresh = await until("both nodes heartbeating to the new controller", async () => {
      const list = await nodes();
      const ok = list.filter((n) => n.state === "ready" && n.last_heartbeat_at !== null && Date.parse(n.last_heartbeat_at) > downAt);
      return ok.length === 2 ? list : null;
    });
    expect(fresh.map((n) => n.hostname).sort()).toEqual(["node-a", "node-b"]);
  });

  it("refuses AgentService to a user token (PERMISSION_DENIED) and to a bad token (UNAUTHENTICATED)", async () => {
    const call = async (token: string): Promise<AppError> => {
      const client = new AgentClient({ address: `127.0.0.1:${port}`, token, timeoutMs: 5_000 });
      try {
        await client.register({ hostname: "intruder", labels: undefined, gpus: [], cpuCores: 1, memoryMib: "1", agentVersion: "x", driverVersion: "", cudaVersion: "", nodeId: "", degradedReason: "" });
        throw new Error("register succeeded");
      } catch (e) {
        expect(e).toBeInstanceOf(AppError);
        return e as AppError;
      } finally {
        client.close();
      }
    };
    expect((await call(userToken)).code).toBe("PERMISSION_DENIED");
    expect((await call("gpo_a_not-a-real-token")).code).toBe("UNAUTHENTICATED");
    expect((await nodes()).map((n) => n.hostname)).not.toContain("intruder");
  });

  it("agents stop cleanly on SIGTERM (exit 0), ending their stream", async () => {
    const running = [...agents];
    expect(running).toHaveLength(2);
    const codes = running.map((c) => new Promise<number | null>((resolve) => c.once("exit", (code) => resolve(code))));
    for (const c of running) c.kill("SIGTERM");
    expect(await Promise.all(codes)).toEqual([0, 0]);
  });
});
