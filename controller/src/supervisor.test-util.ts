import { randomUUID } from "node:crypto";
import type { AgentTaskReport } from "@gpuorch/core";
import { type Database, type TaskRecord, insertJob, upsertNodeRegistration } from "@gpuorch/db";
import type { ConnectResponse } from "@gpuorch/proto";
import { parseJobSpec } from "@gpuorch/spec";
import type { AgentSession } from "./agent-sessions.js";
import { jobInputFromSpec } from "./jobs-api.js";

/** Test support for the task supervisor's suites: a hand-moved clock, recording agent streams, nodes, jobs, reports. */

/** A clock the test moves by hand (starts at the real time: the database stamps rows with its now()). */
export class FakeClock {
  private t = Date.now();
  now(): Date {
    return new Date(this.t);
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Stands in for a node's Connect stream: records what the controller sends. */
export class RecordingSession implements AgentSession {
  readonly sent: ConnectResponse[] = [];
  constructor(readonly nodeId: string) {}
  send(msg: ConnectResponse): Promise<void> {
    this.sent.push(msg);
    return Promise.resolve();
  }
  launches() {
    return this.sent.flatMap((m) => (m.launch ? [m.launch] : []));
  }
  stops() {
    return this.sent.flatMap((m) => (m.stop ? [m.stop] : []));
  }
  forgets() {
    return this.sent.flatMap((m) => (m.forget ? m.forget.taskIds : []));
  }
  checkpointNows() {
    return this.sent.flatMap((m) => (m.checkpointNow ? [m.checkpointNow] : []));
  }
}

/** Registers a one-H100 node (aws us-east-1, network vpc-a); returns its id. */
export async function registerNode(
  db: Database["db"],
  hostname: string,
  privateIp: string,
  opts: { nodeId?: string | null; spot?: boolean } = {},
): Promise<string> {
  const out = await upsertNodeRegistration(
    db,
    {
      nodeId: opts.nodeId ?? null,
      hostname,
      labels: { provider: "aws", region: "us-east-1", zone: "", network: "vpc-a", instanceType: "p5.48xlarge", spot: opts.spot ?? false, privateIp },
      cpuCores: 64,
      memoryMib: 512_000,
      agentVersion: "test",
      driverVersion: "550",
      cudaVersion: "12.4",
      degradedReason: null,
      gpus: [{ index: 0, uuid: `GPU-${hostname}-0`, name: "NVIDIA H100 80GB HBM3", memoryTotalMib: 81_559, migEnabled: false, migDevices: [] }],
    },
    { newId: randomUUID(), now: new Date() },
  );
  return out.nodeId;
}

/** Inserts a job from YAML as SubmitJob would (parsed, normalized, verbatim); returns its id. */
export async function submit(db: Database["db"], teamId: string, yaml: string): Promise<string> {
  const parsed = parseJobSpec(yaml);
  if (!parsed.ok) throw new Error(`bad spec: ${JSON.stringify(parsed.issues)}`);
  return (await insertJob(db, jobInputFromSpec(parsed.spec, yaml, { id: randomUUID(), teamId, actor: "test" }))).job.id;
}

/** What the agent of `t` reports about it. */
export function report(t: TaskRecord, state: AgentTaskReport["state"], over: Partial<AgentTaskReport> = {}): AgentTaskReport {
  return {
    taskId: t.id,
    jobId: t.jobId,
    attempt: t.attempt,
    nodeRank: t.nodeRank,
    state,
    exitCode: null,
    signal: null,
    stopped: false,
    step: null,
    metrics: {},
    message: "",
    lastLines: [],
    changedAt: new Date(),
    ...over,
  };
}

export const exited = (t: TaskRecord, exitCode: number, over: Partial<AgentTaskReport> = {}): AgentTaskReport => report(t, "exited", { exitCode, ...over });
