import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { processGroupAlive } from "@gpuorch/runtime";
import { createTestDatabase, waitFor } from "@gpuorch/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, type ControllerProcess, ROOT, assertNoControllersLeft, createTokenCli, runNode, startControllerProcess, tempDir } from "./helpers.js";

/**
 * The whole path with real processes: a controller on PostgreSQL, two agent
 * processes on loopback each simulating a one-GPU node from a real capture
 * (same provider, region and network), jobs submitted with the CLI, real
 * torchrun (Debian python3-torch, CPU, gloo) for the DDP job.
 */

const AGENT_BIN = join(ROOT, "agent/dist/main.js");
const TESTDATA = join(ROOT, "agent/src/gpu/testdata");
const TRAIN_DDP = join(ROOT, "examples/train_ddp.py");
const TORCHRUN = "/usr/bin/torchrun";
const PYTHON = "/usr/bin/python3";
const haveTorchrun = existsSync(TORCHRUN);
if (!haveTorchrun) console.warn(`skipping the real torchrun job tests: ${TORCHRUN} is missing (apt-get install python3-torch)`);

// 1 s heartbeats; unreachable after 2 s of silence, lost after 4 s.
const CONTROLLER_FLAGS = [
  "--heartbeat-interval-seconds", "1",
  "--heartbeat-flush-ms", "100",
  "--node-unreachable-ms", "2000",
  "--node-lost-ms", "4000",
  "--node-health-interval-ms", "200",
  "--scheduler-interval-ms", "200",
  "--task-stop-grace-seconds", "2",
];

interface JobJson {
  id: string;
  status: string;
  status_reason: string | null;
  attempt: number;
  tasks?: { node_rank: number; state: string; exit_code: number | null; hostname: string }[];
}

describe.skipIf(!haveTorchrun)("jobs on real agents: placement, launch, logs, cancel, node loss (postgresql)", () => {
  const work = tempDir("gpuorch-jobs-e2e-");
  let ctl: ControllerProcess;
  let agentToken: string;
  let userToken: string;
  const agents = new Map<string, ChildProcess>();
  const output = new Map<string, string>();

  function startAgent(name: string, xml: string): ChildProcess {
    const child = spawn(
      process.execPath,
      [
        AGENT_BIN, "run",
        "--controller", ctl.address,
        "--token", agentToken,
        "--work-dir", join(work, name),
        "--node-name", name,
        "--provider", "onprem", "--region", "lab", "--network", "net-1", "--private-ip", "127.0.0.1",
        "--simulate-gpus", join(TESTDATA, xml),
        "--heartbeat-seconds", "1",
        "--reconnect-max-ms", "400",
        "--torchrun", TORCHRUN,
        "--python", PYTHON,
        "--stop-grace-ms", "2000",
        "--log-level", "info",
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, GPUORCH_CONFIG: "" }, cwd: ROOT },
    );
    agents.set(name, child);
    output.set(name, "");
    const add = (d: Buffer) => output.set(name, (output.get(name) ?? "") + d.toString());
    child.stdout!.on("data", add);
    child.stderr!.on("data", add);
    return child;
  }

  const env = (): NodeJS.ProcessEnv => ({ GPUORCH_CONTROLLER: ctl.address, GPUORCH_TOKEN: userToken, GPUORCH_CONFIG: join(work, "none.yaml") });

  async function cli(args: string[], expectCode = 0): Promise<string> {
    const res = await runNode(CLI_BIN, args, { env: env(), timeoutMs: 60_000 });
    if (res.code !== expectCode) throw new Error(`gpuorch ${args.join(" ")} exited ${res.code}: ${res.stderr}\n${res.stdout}`);
    return res.stdout;
  }

  async function submit(name: string, yaml: string): Promise<string> {
    const file = join(work, `${name}.yaml`);
    writeFileSync(file, yaml);
    return (JSON.parse(await cli(["submit", file, "--json"])) as { id: string }).id;
  }

  async function getJob(id: string): Promise<JobJson> {
    const out = JSON.parse(await cli(["get", id, "--json"])) as JobJson & { job?: JobJson };
    return out.job ? { ...out.job, ...(out.tasks ? { tasks: out.tasks } : {}) } : out;
  }

  async function waitStatus(id: string, statuses: string[], timeoutMs: number): Promise<JobJson> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const last = await getJob(id);
      if (statuses.includes(last.status)) return last;
      if (Date.now() > deadline) throw new Error(`job ${id} never reached ${statuses.join("|")}: ${JSON.stringify(last)}\n${ctl.logs().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  /** Process groups of the tasks an agent is running (from its task records). */
  function taskGroups(name: string): number[] {
    const dir = join(work, name, "tasks");
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith(".json"))
      .map((f) => (JSON.parse(readFileSync(join(dir, f), "utf8")) as { pgid: number | null }).pgid)
      .filter((p): p is number => p !== null);
  }

  const ddpSpec = (name: string, script: string, args: string[], maxAttempts = 1): string => `version: 1
job:
  name: ${name}
  type: training
  framework: pytorch_ddp
entrypoint:
  uri: ${script}
  args: [${args.map((a) => JSON.stringify(a)).join(", ")}]
resources:
  gpus: 2
  max_gpus_per_node: 1
  requires_multi_node: true
retry:
  max_attempts: ${maxAttempts}
`;

  beforeAll(async () => {
    const { url } = await createTestDatabase();
    ctl = await startControllerProcess({ databaseUrl: url, extraArgs: CONTROLLER_FLAGS });
    agentToken = await createTokenCli({ databaseUrl: url }, ["--team", "ml", "--kind", "agent"]);
    userToken = await createTokenCli({ databaseUrl: url }, ["--team", "ml"]);
    startAgent("node-a", "a10g-1proc-drv515.105.01.xml");
    startAgent("node-b", "a10g-1proc-drv515.105.01.xml");
    await waitFor(
      async () => {
        const nodes = (JSON.parse(await cli(["nodes", "--json"])) as { nodes: { state: string }[] }).nodes;
        return nodes.filter((n) => n.state === "ready").length === 2;
      },
      { timeoutMs: 20_000, intervalMs: 200, message: "two ready nodes" },
    );
  }, 60_000);

  afterEach(async () => {
    // Nothing of one scenario may leak into the next: every task on every node ends.
    await waitFor(async () => ["node-a", "node-b"].every((n) => taskGroups(n).every((g) => !processGroupAlive(g))), {
      timeoutMs: 15_000,
      intervalMs: 200,
      message: "task process groups still alive after the scenario",
    });
  });

  afterAll(async () => {
    for (const a of agents.values()) a.kill("SIGTERM");
    await Promise.all([...agents.values()].map((a) => (a.exitCode === null && a.signalCode === null ? new Promise((r) => a.once("exit", r)) : null)));
    await ctl?.stop();
    assertNoControllersLeft();
    rmSync(work, { recursive: true, force: true });
  }, 60_000);

  it("runs a trivial command job to completed and keeps its output", async () => {
    const id = await submit(
      "hello",
      `version: 1
job: {name: hello, type: eval, framework: command}
entrypoint:
  command: "echo hello from $GPUORCH_JOB_ID; echo GPUORCH_STEP=7"
resources: {gpus: 1}
`,
    );
    const job = await waitStatus(id, ["completed", "failed"], 30_000);
    expect(job.status, job.status_reason ?? "").toBe("completed");
    const events = (JSON.parse(await cli(["events", id, "--json"])) as { events: { to_status: string }[] }).events.map((e) => e.to_status);
    expect(events).toEqual(["pending", "scheduled", "provisioning", "running", "completed"]);
    const lines = (await cli(["logs", id, "--json"])).trim().split("\n").map((l) => JSON.parse(l) as { text: string });
    expect(lines.map((l) => l.text)).toContain(`hello from ${id}`);
  });

  it("runs a 2-node pytorch_ddp job with real torchrun: both ranks rendezvous, report steps, finish; logs per rank", async () => {
    const id = await submit("ddp", ddpSpec("ddp-tiny", TRAIN_DDP, ["--steps", "20"]));
    const job = await waitStatus(id, ["completed", "failed", "cancelled"], 120_000);
    expect(job.status, `${job.status_reason}\n${output.get("node-a")?.slice(-3000)}`).toBe("completed");
    expect(job.tasks?.map((t) => [t.node_rank, t.state, t.exit_code]).sort()).toEqual([
      [0, "succeeded", 0],
      [1, "succeeded", 0],
    ]);
    for (const rank of [0, 1]) {
      const lines = (await cli(["logs", id, "--rank", String(rank), "--json"])).trim().split("\n").map((l) => JSON.parse(l) as { rank: number; text: string });
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.every((l) => l.rank === rank)).toBe(true);
      expect(lines.some((l) => l.text.includes("GPUORCH_STEP=20"))).toBe(true);
    }
  }, 150_000);

  it("cancel mid-run stops every process of the job on both agents", async () => {
    const script = join(work, "sleeper.py");
    // Each rank starts a child of its own and sleeps: the whole group must go.
    writeFileSync(script, "import subprocess, time\nsubprocess.Popen(['sleep', '300'])\nprint('GPUORCH_STEP=1', flush=True)\ntime.sleep(300)\n");
    const id = await submit("sleepy", ddpSpec("sleepy", script, []));
    await waitStatus(id, ["running"], 60_000);
    let groups: number[] = [];
    await waitFor(async () => (groups = [...taskGroups("node-a"), ...taskGroups("node-b")]).length === 2, { timeoutMs: 10_000, message: "both task records" });
    expect(groups.every((g) => processGroupAlive(g))).toBe(true);
    await cli(["cancel", id, "--json"]);
    await waitFor(async () => groups.every((g) => !processGroupAlive(g)), { timeoutMs: 15_000, intervalMs: 100, message: "task groups gone after cancel" });
    const job = await getJob(id);
    expect(job.status).toBe("cancelled");
    await waitFor(async () => ((await getJob(id)).tasks ?? []).every((t) => t.state === "stopped"), { timeoutMs: 10_000, message: "tasks recorded stopped" });
  }, 90_000);

  it("a job asking for more GPUs than any topology offers stays pending with the reason", async () => {
    const id = await submit(
      "huge",
      `version: 1
job: {name: huge, type: training, framework: pytorch_ddp}
entrypoint: {command: [python, train.py]}
resources: {gpus: 64, max_gpus_per_node: 8, requires_multi_node: true}
`,
    );
    const job = await waitStatus(id, ["pending"], 5_000);
    await waitFor(async () => ((await getJob(id)).status_reason ?? "").includes("unschedulable"), { timeoutMs: 10_000, message: "a pending reason" });
    const again = await getJob(id);
    expect(again.status).toBe("pending");
    expect(again.status_reason).toMatch(/unschedulable: .*64/);
    expect(job.attempt).toBe(1);
    await cli(["cancel", id, "--json"]);
  });

  it("kill -9 of one agent mid-run: the node becomes lost, the job leaves running with the reason, the surviving rank is stopped", async () => {
    const script = join(work, "sleeper2.py");
    writeFileSync(script, "import time\nprint('GPUORCH_STEP=1', flush=True)\ntime.sleep(300)\n");
    const id = await submit("doomed", ddpSpec("doomed", script, []));
    await waitStatus(id, ["running"], 60_000);
    let survivors: number[] = [];
    await waitFor(async () => taskGroups("node-a").length === 1 && taskGroups("node-b").length === 1, { timeoutMs: 10_000, message: "both task records" });
    survivors = taskGroups("node-a");
    const orphans = taskGroups("node-b");
    const t0 = Date.now();
    agents.get("node-b")!.kill("SIGKILL");
    const job = await waitStatus(id, ["failed"], 15_000);
    // lost after 4 s of silence, plus the sweep interval and one heartbeat.
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(job.status_reason).toMatch(/node-b.*lost/);
    await waitFor(async () => survivors.every((g) => !processGroupAlive(g)), { timeoutMs: 15_000, message: "surviving rank stopped" });
    // The restarted agent stops what its killed predecessor left running and reports it lost.
    startAgent("node-b", "a10g-1proc-drv515.105.01.xml");
    await waitFor(async () => orphans.every((g) => !processGroupAlive(g)), { timeoutMs: 20_000, message: "orphaned rank stopped by the restarted agent" });
    await waitFor(
      async () => {
        const nodes = (JSON.parse(await cli(["nodes", "--json"])) as { nodes: { hostname: string; state: string }[] }).nodes;
        return nodes.find((n) => n.hostname === "node-b")?.state === "ready";
      },
      { timeoutMs: 20_000, message: "node-b ready again" },
    );
  }, 120_000);
});
