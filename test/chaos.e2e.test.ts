import { spawn } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { replayEvents, type JobStatus } from "@gpuorch/core";
import { type S3rverProcess, createTestDatabase, freePort, startS3rver } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AWS_SPOT_P4D, type ScriptedImdsServer, awsImds, startScriptedImds } from "@gpuorch/testing";
import { Cluster, FAST_CONTROLLER_FLAGS, HAVE_TORCH, PYTHON, TORCHRUN, rankOverlaps, readLedger, trainingFacts } from "./cluster.js";
import { ROOT, assertNoControllersLeft, createTokenCli, startControllerProcess, tempDir } from "./helpers.js";

/**
 * Chaos end to end: real controller (PostgreSQL), real agents, real
 * torchrun (CPU, gloo), checkpoints in a real S3-compatible server. A node
 * dies (kill -9 of its agent) or is preempted (a spot notice from a scripted
 * metadata service) mid-run; the job resumes elsewhere from its latest
 * checkpoint and ends with the same model as an uninterrupted run.
 */

const STEPS = 60;
const INTERVAL = 10;
const TRAIN = join(ROOT, "examples/train_ddp.py");

function spec(name: string, ledger: string, opts: { multiNode: boolean; stepSleep: number }): string {
  return `version: 1
job:
  name: ${name}
  type: training
  framework: pytorch_ddp
entrypoint:
  uri: examples/train_ddp.py
  args: [--steps, "${STEPS}", --step-sleep, "${opts.stepSleep}", --ledger, "${ledger}"]
resources:
  gpus: 2
${opts.multiNode ? "  max_gpus_per_node: 1\n  requires_multi_node: true\n" : ""}checkpoint:
  interval_steps: ${INTERVAL}
  keep: 2
  uri: s3://ckpts/runs/
retry:
  max_attempts: 3
`;
}

/** The final model of an uninterrupted run with the same world size (2 ranks), for comparison. */
async function referenceHash(): Promise<string> {
  const port = await freePort();
  return new Promise((resolve, reject) => {
    const child = spawn(TORCHRUN, ["--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", String(port), "--redirects", "1", "--tee", "1", TRAIN, "--steps", String(STEPS)], {
      env: { ...process.env, OMP_NUM_THREADS: "1" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("close", (code) => {
      const h = trainingFacts(out).hashes[0];
      if (code === 0 && h) resolve(h);
      else reject(new Error(`reference run failed (${code}):\n${out.slice(-3000)}`));
    });
  });
}

function legalPath(events: { from_status: string | null; to_status: string }[]): JobStatus {
  return replayEvents(events.map((e) => ({ from: e.from_status as JobStatus | null, to: e.to_status as JobStatus })));
}

describe.skipIf(!HAVE_TORCH)(`chaos: node loss and spot preemption with real torchrun (skipped without ${TORCHRUN} and ${PYTHON})`, () => {
  const work = tempDir("gpuorch-chaos-");
  let s3: S3rverProcess;
  let cluster: Cluster;
  let imds: ScriptedImdsServer;
  let noticeOn = false;
  let reference: string;

  beforeAll(async () => {
    s3 = await startS3rver({ directory: join(work, "s3"), buckets: ["ckpts"] });
    const db = { databaseUrl: (await createTestDatabase()).url };
    const tokens = {
      agent: await createTokenCli(db, ["--team", "ml", "--kind", "agent", "--name", "agents"]),
      user: await createTokenCli(db, ["--team", "ml"]),
    };
    cluster = new Cluster(work, tokens, s3.endpoint);
    const port = await freePort();
    cluster.ctl = await startControllerProcess({ ...db, extraArgs: ["--grpc-port", String(port), ...FAST_CONTROLLER_FLAGS, "--checkpoint-timeout-ms", "30000"] });
    // An AWS metadata service that announces a spot stop once `noticeOn` is set.
    const aws = awsImds(AWS_SPOT_P4D);
    imds = await startScriptedImds((req) => {
      if (req.path === "/latest/meta-data/spot/instance-action") {
        return noticeOn ? { status: 200, body: JSON.stringify({ action: "terminate", time: new Date(Date.now() + 120_000).toISOString().replace(/\.\d+Z$/, "Z") }) } : { status: 404, body: "" };
      }
      return aws(req);
    });
    reference = await referenceHash();
  }, 180_000);

  afterAll(async () => {
    await cluster?.stopAll();
    await cluster?.ctl?.stop("SIGKILL");
    await imds?.close();
    await s3?.stop();
    rmSync(work, { recursive: true, force: true });
    assertNoControllersLeft();
  });

  it("kill -9 of a node mid-run: a spare node takes over from the latest checkpoint; same final model; lost work ≤ one interval; no rank ever ran twice at once", async () => {
    for (const name of ["node-a", "node-b", "node-c"]) cluster.startAgent({ name, gpus: "a10g-1proc-drv515.105.01.xml" });
    await cluster.until("three nodes ready", async () => {
      const { nodes } = await cluster.cliJson<{ nodes: { state: string }[] }>(["nodes"]);
      return nodes.filter((n) => n.state === "ready").length === 3;
    });
    const ledger = join(work, "ledger-kill.txt");
    const id = await cluster.submit("ddp-kill", spec("ddp-kill", ledger, { multiNode: true, stepSleep: 0.15 }));

    // Wait for the checkpoint at step 20 to be recorded, then kill the node running rank 0 (the rank that writes checkpoints).
    await cluster.until("a recorded checkpoint at step >= 20", async () => (await cluster.artifacts(id)).some((a) => a.type === "checkpoint" && (a.step ?? 0) >= 20), 120_000);
    const { tasks } = await cluster.job(id);
    const victim = tasks.find((t) => t.node_rank === 0 && t.attempt === 1)?.hostname;
    expect(victim).toBeDefined();
    await cluster.killAgent(victim!);

    const done = await cluster.until("the job completes on the surviving nodes", async () => {
      const j = await cluster.job(id);
      if (j.status === "failed" || j.status === "cancelled") throw new Error(`job ended ${j.status}: ${JSON.stringify(await cluster.events(id), null, 1)}`);
      return j.status === "completed" ? j : null;
    }, 180_000);
    expect(done.attempt).toBe(2);

    const events = await cluster.events(id);
    expect(legalPath(events)).toBe("completed");
    expect(events.find((e) => e.to_status === "requeued")?.reason).toMatch(/lost|unreachable/);
    const resumedEvent = events.find((e) => e.to_status === "pending" && e.attempt === 2);
    expect(resumedEvent?.reason).toMatch(/resumes from the checkpoint at step \d+/);

    const facts = trainingFacts(await cluster.logs(id));
    expect(facts.resumed.length).toBe(1);
    const resumeStep = facts.resumed[0]!;
    expect(resumeStep).toBeGreaterThanOrEqual(20);
    expect(facts.hashes.at(-1)).toBe(reference);

    const lines = readLedger(ledger);
    const a1 = lines.filter((l) => l.attempt === 1);
    const a2 = lines.filter((l) => l.attempt === 2);
    // Attempt 2 ran exactly the steps after its checkpoint, each once per rank, up to the end.
    for (const rank of [0, 1]) {
      expect(a2.filter((l) => l.rank === rank).map((l) => l.step)).toEqual(Array.from({ length: STEPS - resumeStep }, (_, i) => resumeStep + 1 + i));
    }
    const lost = Math.max(...a1.map((l) => l.step)) - resumeStep;
    expect(lost).toBeLessThanOrEqual(INTERVAL);
    expect(rankOverlaps(lines)).toEqual([]);
    // Every lost attempt's ranks ended before the next attempt's started.
    expect(Math.max(...a1.map((l) => l.at))).toBeLessThan(Math.min(...a2.map((l) => l.at)));

    const ckpts = (await cluster.artifacts(id)).filter((a) => a.type === "checkpoint");
    expect(ckpts.length).toBeLessThanOrEqual(2); // keep: 2
    expect(ckpts.every((c) => c.attempt <= 2 && /^s3:\/\/ckpts\/runs\/.+\/attempt-\d\/step-\d{12}\/gpuorch-manifest\.json$/.test(c.uri))).toBe(true);
    expect((await cluster.artifacts(id)).some((a) => a.type === "log")).toBe(true);
    await cluster.stopAll();
  }, 400_000);

  it("spot notice: the emergency checkpoint is taken, uploaded and used; lost work ≤ the steps between notice and checkpoint", async () => {
    const spotArgs = ["--interruption", "aws", "--interruption-endpoint", imds.url, "--interruption-interval-ms", "200"];
    cluster.startAgent({ name: "spot-1", gpus: "2x-rtx-a5000-1proc-drv590.44.01-schema-v13.xml", extraArgs: spotArgs });
    await cluster.until("the spot node is ready", async () => {
      const { nodes } = await cluster.cliJson<{ nodes: { hostname: string; state: string }[] }>(["nodes"]);
      return nodes.some((n) => n.hostname === "spot-1" && n.state === "ready");
    });
    const ledger = join(work, "ledger-spot.txt");
    const id = await cluster.submit("ddp-spot", spec("ddp-spot", ledger, { multiNode: false, stepSleep: 0.15 }));
    await cluster.until("the job is past step 14", async () => readLedger(ledger).some((l) => l.step >= 14), 120_000);
    // A spare node joins; then the provider announces the spot node's end.
    cluster.startAgent({ name: "spare-1", gpus: "2x-rtx-a5000-1proc-drv590.44.01-schema-v13.xml" });
    await cluster.until("the spare is ready", async () => {
      const { nodes } = await cluster.cliJson<{ nodes: { hostname: string; state: string }[] }>(["nodes"]);
      return nodes.some((n) => n.hostname === "spare-1" && n.state === "ready");
    });
    const noticeAt = Date.now() / 1000;
    noticeOn = true;

    const done = await cluster.until("the job completes on the spare", async () => {
      const j = await cluster.job(id);
      if (j.status === "failed" || j.status === "cancelled") throw new Error(`job ended ${j.status}: ${JSON.stringify(await cluster.events(id), null, 1)}`);
      return j.status === "completed" ? j : null;
    }, 180_000);
    noticeOn = false;
    expect(done.attempt).toBe(2);

    const events = await cluster.events(id);
    expect(legalPath(events)).toBe("completed");
    const path = events.map((e) => e.to_status);
    expect(path.slice(path.indexOf("running"), path.indexOf("requeued") + 2)).toEqual(["running", "checkpointing", "requeued", "pending"]);
    expect(events.find((e) => e.to_status === "checkpointing")?.reason).toMatch(/spot interruption notice on spot-1 \(aws terminate/);
    const requeue = events.find((e) => e.to_status === "requeued")!;
    const m = /emergency checkpoint at step (\d+) uploaded/.exec(requeue.reason);
    expect(m, requeue.reason).not.toBeNull();
    const emergencyStep = Number(m![1]);
    // The requeue weighed staying against moving (checkpoint and relaunch) and says which and why.
    expect(events.find((e) => e.to_status === "pending" && e.attempt === 2)?.reason).toMatch(/migration: (stay|move) \(/);

    const facts = trainingFacts(await cluster.logs(id));
    expect(facts.resumed).toEqual([emergencyStep]);
    expect(facts.hashes.at(-1)).toBe(reference);

    const lines = readLedger(ledger);
    const a1 = lines.filter((l) => l.attempt === 1);
    // The emergency checkpoint is not on the interval: it was taken at the notice.
    const stepAtNotice = Math.max(...a1.filter((l) => l.at <= noticeAt).map((l) => l.step));
    expect(emergencyStep).toBeGreaterThanOrEqual(stepAtNotice);
    const lost = Math.max(...a1.map((l) => l.step)) - emergencyStep;
    expect(lost).toBeLessThanOrEqual(2);
    expect(rankOverlaps(lines)).toEqual([]);
    const { nodes } = await cluster.cliJson<{ nodes: { hostname: string; state: string }[] }>(["nodes"]);
    expect(nodes.find((n) => n.hostname === "spot-1")?.state).toBe("preempting");
  }, 400_000);
});
