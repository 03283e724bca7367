import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { type IncomingMessage, type Server, createServer } from "node:http";
import { join } from "node:path";
import { createTestDatabase } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI_BIN, type ControllerProcess, ROOT, assertNoControllersLeft, createTokenCli, runNode, startControllerProcess, tempDir } from "./helpers.js";

/**
 * Pricing, plans, admission, running cost, budgets and alerts with real
 * processes: a controller on PostgreSQL with the shipped catalog, one agent
 * simulating a one-GPU on-prem node, the CLI over gRPC, HTTP, a webhook
 * receiver on loopback for the alerts, and promtool on /metrics.
 *
 * The on-prem rate is $36,000 per GPU-hour (= $10 per second), so a $20
 * budget runs out in about two seconds of real time.
 */

const AGENT_BIN = join(ROOT, "agent/dist/main.js");
const TESTDATA = join(ROOT, "agent/src/gpu/testdata");
const SECRET = "e2e-webhook-secret";
const havePromtool = (() => {
  try {
    execFileSync("promtool", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

interface Received {
  body: string;
  signature: string | undefined;
  json: { kind: string; job_id: string | null; message: string; details: Record<string, unknown>; team: string; project: string | null };
}

const TOO_BIG = `version: 1
job: {name: resnet-too-cheap, type: training, framework: pytorch_ddp, estimated_hours: 20}
entrypoint: {command: "python train.py"}
resources: {gpus: 8, gpu_type: [A100]}
constraints: {budget: 100, allow_spot: true}
`;

const SPENDY = `version: 1
job: {name: spendy, type: training, framework: command, project: vision, estimated_hours: 0.00005}
entrypoint:
  command: "echo GPUORCH_STEP=1; sleep 120"
resources: {gpus: 1}
constraints: {budget: 20, allowed_providers: [onprem]}
`;

describe("costs end to end: pricing, plan, admission, budget stop, alerts, metrics (postgresql)", () => {
  const work = tempDir("gpuorch-costs-e2e-");
  let dbUrl: string;
  let ctl: ControllerProcess;
  let agent: ChildProcess;
  let userToken: string;
  let agentToken: string;
  let receiver: Server;
  const received: Received[] = [];
  let configFile: string;

  const env = (): NodeJS.ProcessEnv => ({ GPUORCH_CONTROLLER: ctl.address, GPUORCH_TOKEN: userToken, GPUORCH_CONFIG: join(work, "none.yaml") });
  async function cli(args: string[], expectCode = 0): Promise<{ stdout: string; stderr: string }> {
    const res = await runNode(CLI_BIN, args, { env: env(), timeoutMs: 60_000 });
    if (res.code !== expectCode) throw new Error(`gpuorch ${args.join(" ")} exited ${res.code} (expected ${expectCode}): ${res.stderr}\n${res.stdout}`);
    return res;
  }
  const file = (name: string, yaml: string): string => {
    const p = join(work, `${name}.yaml`);
    writeFileSync(p, yaml);
    return p;
  };
  const http = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${ctl.baseUrl}${path}`, { ...init, headers: { authorization: `Bearer ${userToken}`, ...(init.headers as Record<string, string> | undefined) } });

  async function startController(): Promise<ControllerProcess> {
    return startControllerProcess({
      databaseUrl: dbUrl,
      extraArgs: [
        "--config", configFile,
        "--heartbeat-interval-seconds", "1",
        "--heartbeat-flush-ms", "100",
        "--scheduler-interval-ms", "200",
        "--task-stop-grace-seconds", "1",
        "--cost-interval-ms", "200",
        "--onprem-usd-per-gpu-hour", "36000",
      ],
    });
  }

  beforeAll(async () => {
    receiver = createServer((req: IncomingMessage, res) => {
      let body = "";
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => {
        const sig = req.headers["x-gpuorch-signature"];
        received.push({ body, signature: typeof sig === "string" ? sig : undefined, json: JSON.parse(body) as Received["json"] });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const port = (receiver.address() as { port: number }).port;
    configFile = join(work, "controller.yaml");
    writeFileSync(
      configFile,
      `alert_channels:\n  - {type: log}\n  - {type: webhook, name: e2e, url: "http://127.0.0.1:${port}/hook", secret: ${SECRET}, timeout_ms: 2000}\n`,
    );
    dbUrl = (await createTestDatabase()).url;
    ctl = await startController();
    agentToken = await createTokenCli({ databaseUrl: dbUrl }, ["--team", "ml", "--kind", "agent"]);
    userToken = await createTokenCli({ databaseUrl: dbUrl }, ["--team", "ml"]);
    agent = spawn(
      process.execPath,
      [
        AGENT_BIN, "run",
        "--controller", ctl.address,
        "--token", agentToken,
        "--work-dir", join(work, "agent"),
        "--node-name", "lab-1",
        "--provider", "onprem", "--region", "lab", "--network", "net-1", "--private-ip", "127.0.0.1",
        "--simulate-gpus", join(TESTDATA, "a10g-1proc-drv515.105.01.xml"),
        "--heartbeat-seconds", "1",
        "--reconnect-max-ms", "400",
        "--stop-grace-ms", "1000",
      ],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, GPUORCH_CONFIG: "" }, cwd: ROOT },
    );
    agent.stdout!.resume();
    agent.stderr!.resume();
    const deadline = Date.now() + 30_000;
    for (;;) {
      const nodes = JSON.parse((await cli(["nodes", "--json"])).stdout) as { nodes: { state: string }[] };
      if (nodes.nodes.some((n) => n.state === "ready")) break;
      if (Date.now() > deadline) throw new Error(`agent never became ready\n${ctl.logs().slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  afterAll(async () => {
    agent?.kill("SIGKILL");
    await ctl?.stop();
    await new Promise<void>((r) => receiver.close(() => r()));
    assertNoControllersLeft();
    rmSync(work, { recursive: true, force: true });
  });

  it("lists the shipped catalog sorted by $/GPU-hour, says which providers have no prices, and rejects an unknown GPU", async () => {
    const { stdout } = await cli(["pricing", "--gpu", "A100", "--json"]);
    const res = JSON.parse(stdout) as {
      rows: { provider: string; gpu_type: string; on_demand_usd_per_gpu_hour: string; price_date: string; source: string }[];
      sources: { provider: string; state: string; row_count: number }[];
    };
    expect(res.rows.length).toBeGreaterThanOrEqual(5);
    for (const r of res.rows) {
      expect(r).toMatchObject({ provider: "gcp", gpu_type: "A100", source: "shipped:gcp.csv" });
      expect(r.price_date).toMatch(/^\d{4}-\d{2}-\d{2}$/);
    }
    const prices = res.rows.map((r) => Number(r.on_demand_usd_per_gpu_hour));
    expect(prices).toEqual([...prices].sort((a, b) => a - b));
    expect(res.sources.map((s) => [s.provider, s.state])).toEqual([
      ["aws", "empty"],
      ["gcp", "shipped"],
      ["azure", "empty"],
    ]);
    const bad = await cli(["pricing", "--gpu", "Z9000"], 2);
    expect(bad.stderr).toMatch(/gpu_types: 'Z9000' is not a catalog GPU type/);

    const viaHttp = await http("/v1/pricing?gpu=H100&spot=true&limit=3");
    expect(viaHttp.status).toBe(200);
    const body = (await viaHttp.json()) as { rows: { gpu_type: string; spot_usd_per_gpu_hour: string }[]; total_rows: number };
    expect(body.rows).toHaveLength(3);
    expect(body.rows.every((r) => r.gpu_type === "H100" && r.spot_usd_per_gpu_hour !== "")).toBe(true);
  });

  it("plans without submitting, and rejects an infeasible spec at submit naming the binding constraint (CLI, gRPC and HTTP)", async () => {
    const spec = file("too-big", TOO_BIG);
    const plan = await cli(["plan", spec, "--json"], 1);
    const p = JSON.parse(plan.stdout) as { feasible: boolean; infeasible_reason: string; options: { feasible: boolean; total_usd: string }[] };
    expect(p.feasible).toBe(false);
    expect(p.infeasible_reason).toMatch(/cheapest .*\$\d+\.\d\d > budget \$100\.00/);
    expect(p.options.length).toBeGreaterThan(0);
    expect(p.options.every((o) => !o.feasible && Number(o.total_usd) > 100)).toBe(true);

    const sub = await cli(["submit", spec, "--json"], 1);
    const err = JSON.parse(sub.stdout || sub.stderr) as { error: { code: string; grpc_code: string; message: string } };
    expect(err.error).toMatchObject({ code: "infeasible_job", grpc_code: "RESOURCE_EXHAUSTED" });
    expect(err.error.message).toMatch(/\$\d+\.\d\d > budget \$100\.00 \(8×A100/);

    const res = await http("/v1/jobs", { method: "POST", body: TOO_BIG, headers: { "content-type": "application/yaml" } });
    expect(res.status).toBe(422);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe("infeasible_job");
    expect(body.error.message).toBe(err.error.message);

    // Nothing was stored.
    const list = JSON.parse((await cli(["list", "--json"])).stdout) as { jobs: { name: string }[] };
    expect(list.jobs.map((j) => j.name)).not.toContain("resnet-too-cheap");

    // The same spec with a budget that fits is admitted, with the plan's estimate stored.
    const fits = file("fits", TOO_BIG.replace("budget: 100", "budget: 100000").replace("resnet-too-cheap", "resnet-fits"));
    const planned = JSON.parse((await cli(["plan", fits, "--json"])).stdout) as { options: { total_usd: string }[] };
    const id = (JSON.parse((await cli(["submit", fits, "--json"])).stdout) as { id: string }).id;
    const job = JSON.parse((await cli(["get", id, "--json"])).stdout) as { estimated_cost_usd: string };
    expect(job.estimated_cost_usd).toBe(planned.options[0]!.total_usd);
    await cli(["cancel", id]);
  });

  it("charges a running job by the second, alerts at 50/80/100 % of its budget over a signed webhook, and stops it with budget_exceeded", async () => {
    const id = (JSON.parse((await cli(["submit", file("spendy", SPENDY), "--json"])).stdout) as { id: string }).id;
    const deadline = Date.now() + 60_000;
    let job: { status: string; status_reason: string | null; running_cost_usd: string; budget_usd: string };
    for (;;) {
      job = JSON.parse((await cli(["get", id, "--json"])).stdout) as typeof job;
      if (job.status === "failed" || job.status === "completed" || job.status === "cancelled") break;
      if (Date.now() > deadline) throw new Error(`job never stopped: ${JSON.stringify(job)}\n${ctl.logs().slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(job.status).toBe("failed");
    expect(job.status_reason).toMatch(/^budget_exceeded: spent \$\d+\.\d\d of budget \$20\.00/);
    expect(Number(job.running_cost_usd)).toBeGreaterThanOrEqual(20);
    // The node bills until its task has stopped (stop grace): wait for the cost to settle.
    for (let stable = 0; stable < 3; ) {
      await new Promise((r) => setTimeout(r, 400));
      const next = JSON.parse((await cli(["get", id, "--json"])).stdout) as typeof job;
      stable = next.running_cost_usd === job.running_cost_usd ? stable + 1 : 0;
      job = next;
      if (Date.now() > deadline) throw new Error(`cost never settled: ${JSON.stringify(job)}`);
    }

    // Alerts: delivered to the receiver, each threshold once, signed over the exact body.
    const until = Date.now() + 20_000;
    while (received.filter((r) => r.json.job_id === id).length < 3 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
    // Deliveries run concurrently: order by threshold.
    const mine = received.filter((r) => r.json.job_id === id).sort((a, b) => Number(a.json.details.threshold_pct) - Number(b.json.details.threshold_pct));
    expect(mine.map((r) => [r.json.kind, r.json.details.threshold_pct])).toEqual([
      ["budget_threshold", 50],
      ["budget_threshold", 80],
      ["budget_exceeded", 100],
    ]);
    for (const r of mine) {
      expect(r.signature).toBe(`sha256=${createHmac("sha256", SECRET).update(r.body).digest("hex")}`);
      expect(r.json).toMatchObject({ team: "ml", project: "vision" });
    }

    // Costs by job, project and team agree with the job's persisted running cost.
    const byJob = JSON.parse((await cli(["costs", "--by", "job", "--json"])).stdout) as { lines: { job_id: string; cost_usd: string; budget_usd: string }[] };
    const line = byJob.lines.find((l) => l.job_id === id);
    expect(line).toMatchObject({ cost_usd: job.running_cost_usd, budget_usd: "20.000000" });
    const byTeam = (await (await http("/v1/costs?by=team&since=1h")).json()) as { lines: { key: string; cost_usd: string }[]; total_usd: string };
    expect(byTeam.lines.map((l) => l.key)).toEqual(["ml"]);
    expect(Number(byTeam.total_usd)).toBeGreaterThanOrEqual(Number(job.running_cost_usd));
    const human = await cli(["get", id]);
    expect(human.stdout).toMatch(/Cost: +running \$\d+\.\d\d, estimated \$\d+\.\d\d, budget \$20\.00/);

    // A controller crash loses nothing: the same cost after kill -9 and a restart.
    await ctl.stop("SIGKILL");
    ctl = await startController();
    const again = JSON.parse((await cli(["get", id, "--json"])).stdout) as typeof job;
    expect(again.running_cost_usd).toBe(job.running_cost_usd);
    expect(again.status).toBe("failed");
  });

  it.skipIf(!havePromtool)("exports cost, GPU-hours, utilization and catalog age with team/project labels; promtool accepts them", async () => {
    const deadline = Date.now() + 20_000;
    let text: string;
    for (;;) {
      text = await (await http("/metrics")).text();
      if (/gpuorch_gpu_utilization_percent\{/.test(text) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(text).toMatch(/gpuorch_job_cost_usd\{team="ml",project="vision"\} (2\d|[3-9]\d|\d{3,})(\.\d+)?/);
    expect(text).toMatch(/gpuorch_job_gpu_seconds\{team="ml",project="vision"\} \d/);
    expect(text).toMatch(/gpuorch_gpu_utilization_percent\{node="lab-1",gpu="0",model="[^"]+",team="",project=""\} \d/);
    expect(text).toMatch(/gpuorch_pricing_catalog_age_seconds\{provider="gcp"\} \d/);
    expect(text).toMatch(/gpuorch_pricing_catalog_rows\{provider="gcp"\} 384/);
    expect(text).toMatch(/gpuorch_nodes\{state="ready"\} 1/);
    const out = execFileSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(out).not.toMatch(/error/i);
  });
});
