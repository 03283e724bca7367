import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { S3RVER_CREDENTIALS, waitFor } from "@gpuorch/testing";
import { CLI_BIN, type ControllerProcess, ROOT, runNode } from "./helpers.js";

/**
 * A small cluster of real processes for the chaos scenarios: one controller
 * (restartable), agents started and killed at will, the CLI, and the
 * objects they share (an s3rver bucket for checkpoints, a ledger file the
 * training ranks append to).
 */

export const AGENT_BIN = join(ROOT, "agent/dist/main.js");
export const TESTDATA = join(ROOT, "agent/src/gpu/testdata");
export const TORCHRUN = "/usr/bin/torchrun";
export const PYTHON = "/usr/bin/python3";
export const HAVE_TORCH = existsSync(TORCHRUN) && existsSync(PYTHON);

/** Fast failure detection: 1 s heartbeats, unreachable after 2 s, lost after 4 s. */
export const FAST_CONTROLLER_FLAGS = [
  "--heartbeat-interval-seconds", "1",
  "--heartbeat-flush-ms", "100",
  "--node-unreachable-ms", "2000",
  "--node-lost-ms", "4000",
  "--node-health-interval-ms", "200",
  "--scheduler-interval-ms", "200",
  "--task-stop-grace-seconds", "2",
];

export interface AgentOptions {
  name: string;
  /** A captured `nvidia-smi -q -x` in agent/src/gpu/testdata (its GPUs are simulated; ranks train on the CPU). */
  gpus: string;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
}

export interface AgentProcess {
  name: string;
  child: ChildProcess;
  output(): string;
  exited: Promise<void>;
}

export class Cluster {
  readonly agents = new Map<string, AgentProcess>();
  ctl!: ControllerProcess;

  constructor(
    readonly work: string,
    readonly tokens: { agent: string; user: string },
    readonly s3Endpoint: string,
  ) {}

  get address(): string {
    return this.ctl.address;
  }

  startAgent(o: AgentOptions): AgentProcess {
    const child = spawn(
      process.execPath,
      [
        AGENT_BIN, "run",
        "--controller", this.address,
        "--token", this.tokens.agent,
        "--work-dir", join(this.work, "agents", o.name),
        "--node-name", o.name,
        "--provider", "onprem", "--region", "lab", "--network", "net-1", "--private-ip", "127.0.0.1",
        "--simulate-gpus", join(TESTDATA, o.gpus),
        "--heartbeat-seconds", "1",
        "--reconnect-max-ms", "400",
        "--torchrun", TORCHRUN,
        "--python", PYTHON,
        "--code-dir", ROOT,
        "--stop-grace-ms", "2000",
        "--checkpoint-poll-ms", "100",
        "--s3-endpoint", this.s3Endpoint,
        "--log-level", "info",
        ...(o.extraArgs ?? []),
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          ...process.env,
          GPUORCH_CONFIG: "",
          AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
          AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
          AWS_REGION: "us-east-1",
          OMP_NUM_THREADS: "1",
          ...o.env,
        },
      },
    );
    let out = "";
    const add = (d: Buffer) => {
      out += d.toString();
      if (out.length > 400_000) out = out.slice(-200_000);
    };
    child.stdout!.on("data", add);
    child.stderr!.on("data", add);
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    const a: AgentProcess = { name: o.name, child, output: () => out, exited };
    this.agents.set(o.name, a);
    return a;
  }

  /** kill -9 of the agent process only: its task processes lose their pipes (and die at their next write), as on a crashed node. */
  async killAgent(name: string): Promise<void> {
    const a = this.agents.get(name);
    if (!a) return;
    a.child.kill("SIGKILL");
    await a.exited;
    this.agents.delete(name);
  }

  async stopAll(): Promise<void> {
    for (const name of [...this.agents.keys()]) await this.killAgent(name);
  }

  async cli(args: string[], timeoutMs = 30_000): Promise<string> {
    const res = await runNode(CLI_BIN, args, {
      env: { GPUORCH_CONTROLLER: this.address, GPUORCH_TOKEN: this.tokens.user, GPUORCH_CONFIG: join(this.work, "none.yaml") },
      timeoutMs,
    });
    if (res.code !== 0) throw new Error(`gpuorch ${args.join(" ")} failed (${res.code}): ${res.stderr}`);
    return res.stdout;
  }

  async cliJson<T>(args: string[]): Promise<T> {
    return JSON.parse(await this.cli([...args, "--json"])) as T;
  }

  async submit(name: string, yaml: string): Promise<string> {
    const file = join(this.work, `${name}.yaml`);
    writeFileSync(file, yaml);
    return (await this.cliJson<{ id: string }>(["submit", file])).id;
  }

  /** `gpuorch get --json`: the job and the tasks of its current attempt. */
  job(id: string): Promise<JobJson & { tasks: TaskJson[] }> {
    return this.cliJson<JobJson & { tasks: TaskJson[] }>(["get", id]);
  }

  events(id: string): Promise<EventJson[]> {
    return this.cliJson<{ events: EventJson[] }>(["events", id]).then((r) => r.events);
  }

  artifacts(id: string): Promise<ArtifactJson[]> {
    return this.cliJson<{ artifacts: ArtifactJson[] }>(["artifacts", id]).then((r) => r.artifacts);
  }

  /** The job's stored output (every attempt). */
  logs(id: string): Promise<string> {
    return this.cli(["logs", id]);
  }

  /** Polls (bounded) until `fn` returns something; on timeout the error carries the latest process output. */
  async until<T>(what: string, fn: () => Promise<T | undefined | null | false>, timeoutMs = 60_000): Promise<T> {
    try {
      return (await waitFor(fn, { timeoutMs, intervalMs: 200, message: what })) as T;
    } catch (e) {
      const agentLogs = [...this.agents.values()].map((a) => `--- agent ${a.name}:\n${a.output().slice(-3000)}`).join("\n");
      throw new Error(`${(e as Error).message}\n--- controller:\n${this.ctl.logs().slice(-5000)}\n${agentLogs}`, { cause: e });
    }
  }
}

export interface JobJson {
  id: string;
  name: string;
  status: string;
  attempt: number;
}

export interface TaskJson {
  id: string;
  attempt: number;
  hostname: string;
  node_rank: number;
  unit: number;
  state: string;
}

export interface EventJson {
  seq: number;
  from_status: string | null;
  to_status: string;
  attempt: number;
  reason: string;
}

export interface ArtifactJson {
  id: string;
  attempt: number;
  type: string;
  uri: string;
  step: number | null;
  bytes: number | null;
  sha256: string | null;
}

/** One line a training rank appended: `<rank> <step> <attempt> <pid> <time>`. */
export interface LedgerLine {
  rank: number;
  step: number;
  attempt: number;
  pid: number;
  at: number;
}

export function readLedger(path: string): LedgerLine[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      const [rank, step, attempt, pid, at] = l.trim().split(/\s+/).map(Number);
      return { rank: rank!, step: step!, attempt: attempt!, pid: pid!, at: at! };
    });
}

/**
 * No two copies of a rank ran at the same time: for every rank, the spans
 * (first..last ledger time) of its different processes never overlap.
 * Returns a description of each overlap (empty when none).
 */
export function rankOverlaps(lines: readonly LedgerLine[]): string[] {
  const spans = new Map<string, { rank: number; pid: number; attempt: number; from: number; to: number }>();
  for (const l of lines) {
    const key = `${l.rank}|${l.pid}`;
    const s = spans.get(key);
    if (!s) spans.set(key, { rank: l.rank, pid: l.pid, attempt: l.attempt, from: l.at, to: l.at });
    else {
      s.from = Math.min(s.from, l.at);
      s.to = Math.max(s.to, l.at);
    }
  }
  const out: string[] = [];
  const all = [...spans.values()];
  for (const a of all) {
    for (const b of all) {
      if (a === b || a.rank !== b.rank || a.pid > b.pid) continue;
      if (a.from <= b.to && b.from <= a.to) out.push(`rank ${a.rank}: pid ${a.pid} (attempt ${a.attempt}) and pid ${b.pid} (attempt ${b.attempt}) overlap`);
    }
  }
  return out;
}

/** The final model hash and the resume step printed by examples/train_ddp.py. */
export function trainingFacts(logs: string): { hashes: string[]; resumed: number[] } {
  const hashes = [...logs.matchAll(/GPUORCH_MODEL_SHA256=([0-9a-f]{64})/g)].map((m) => m[1]!);
  const resumed = [...logs.matchAll(/GPUORCH_RESUMED step=(\d+)/g)].map((m) => Number(m[1]));
  return { hashes, resumed };
}

// ---------------------------------------------------------------------------
// A restartable controller on a fixed gRPC port (the soak scenario): agents
// reconnect to the same address, and the CLI keeps using `cluster.address`.

import { startControllerProcess } from "./helpers.js";

export interface ControllerLaunch {
  databaseUrl: string;
  /** Fixed, so that agents find the controller again after a restart. */
  grpcPort: number;
  extraArgs?: string[];
}

/** Starts the cluster's controller (`cluster.ctl`) on `launch.grpcPort` and its database; retries briefly while the port is still held. */
export async function startClusterController(cluster: Cluster, launch: ControllerLaunch): Promise<ControllerProcess> {
  for (let i = 0; ; i++) {
    try {
      cluster.ctl = await startControllerProcess({
        databaseUrl: launch.databaseUrl,
        extraArgs: ["--grpc-port", String(launch.grpcPort), ...(launch.extraArgs ?? [])],
      });
      return cluster.ctl;
    } catch (e) {
      if (i >= 4) throw e;
      await new Promise((r) => setTimeout(r, 300));
    }
  }
}

/**
 * kill -9 of the controller, then (after `downMs`) a new one on the same port
 * and database. Returns the killed process (its `logs()` stay readable).
 */
export async function restartController(cluster: Cluster, launch: ControllerLaunch, downMs = 0): Promise<ControllerProcess> {
  const old = cluster.ctl;
  await old.stop("SIGKILL");
  if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
  await startClusterController(cluster, launch);
  return old;
}
