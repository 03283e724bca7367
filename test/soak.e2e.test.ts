import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { type JobStatus, replayEvents } from "@gpuorch/core";
import { JobClient, artifactFromProto, jobEventFromProto, jobEventToJson, jobFromProto, jobLogLineFromProto } from "@gpuorch/rpc";
import { type S3rverProcess, createTestDatabase, freePort, startS3rver } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type AgentProcess,
  Cluster,
  type ControllerLaunch,
  type EventJson as ClusterEventJson,
  FAST_CONTROLLER_FLAGS,
  HAVE_TORCH,
  type JobJson,
  type LedgerLine,
  PYTHON,
  rankOverlaps,
  readLedger,
  restartController,
  startClusterController,
  trainingFacts,
} from "./cluster.js";
import { ROOT, type ControllerProcess, assertNoControllersLeft, createTokenCli, tempDir } from "./helpers.js";

/**
 * Soak: 20 short checkpointing jobs on 3 agents while a chaos driver kills a
 * random agent every few seconds (and restarts it) and kills the controller
 * twice. At the end every job is completed, exactly once, along a legal path
 * of the state machine, with the same model as an uninterrupted run.
 */

const JOBS = 20;
const STEPS = 30;
const INTERVAL = 5;
const AGENTS = ["soak-a", "soak-b", "soak-c"];
const GPUS = "2x-rtx-a5000-1proc-drv590.44.01-schema-v13.xml";
const SEED = Number(process.env.GPUORCH_SOAK_SEED ?? 20240611);
/** Chaos stops at this point even when jobs are still running; then everything may finish undisturbed. */
const CHAOS_MAX_MS = 70_000;
/** Controller kills, measured from the start of the chaos. */
const CONTROLLER_KILLS_AT_MS = [10_000, 25_000];
/** A restarted controller lives at least this long before the next kill. */
const CONTROLLER_MIN_UP_MS = 8_000;
const SETTLE_MAX_MS = 110_000;
const TRAIN = join(ROOT, "examples/train_ddp.py");
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

type EventJson = ClusterEventJson & { created_at: string };

/** mulberry32: a tiny seeded PRNG, so a run's choices can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function spec(name: string, ledger: string): string {
  return `version: 1
job:
  name: ${name}
  type: training
  framework: pytorch
entrypoint:
  uri: examples/train_ddp.py
  args: [--steps, "${STEPS}", --step-sleep, "0.1", --ledger, "${ledger}"]
resources:
  gpus: 1
checkpoint:
  interval_steps: ${INTERVAL}
  keep: 2
  uri: s3://ckpts/soak/
retry:
  max_attempts: 20
`;
}

/** The final model of an uninterrupted single-process run (world size 1, as every soak job). */
function referenceHash(): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [TRAIN, "--steps", String(STEPS)], { env: { ...process.env, OMP_NUM_THREADS: "1" }, stdio: ["ignore", "pipe", "pipe"] });
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

/** Runs `fn` over `items`, at most `n` at a time. */
async function mapLimit<T, R>(items: readonly T[], n: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!);
      }
    }),
  );
  return out;
}

/**
 * The job API in-process (a CLI process per call costs half a CPU-second,
 * too much on a 2-core box that also runs the cluster). The channel
 * reconnects by itself after a controller restart on the same port.
 */
class Api {
  readonly client: JobClient;
  constructor(address: string, token: string) {
    this.client = new JobClient({ address, token, timeoutMs: 10_000 });
  }

  async submit(yaml: string): Promise<string> {
    return (await this.client.submitJob({ specYaml: yaml })).id;
  }

  async list(): Promise<JobJson[]> {
    const res = await this.client.listJobs({ pageSize: 1000 });
    return res.jobs.map(jobFromProto).map((j) => ({ id: j.id, name: j.name, status: j.status, attempt: j.attempt }));
  }

  async events(id: string): Promise<EventJson[]> {
    const res = await this.client.getJobEvents({ id, afterSeq: "0", limit: 0 });
    return res.events.map(jobEventFromProto).map(jobEventToJson);
  }

  /** The job's live artifacts (checkpoints not pruned, logs). */
  async artifacts(id: string): Promise<{ type: string; uri: string; attempt: number; step: number | null }[]> {
    const res = await this.client.listArtifacts({ jobId: id });
    return res.artifacts.map(artifactFromProto).map((a) => ({ type: a.type, uri: a.uri, attempt: a.attempt, step: a.step }));
  }

  /** Every stored output line of every attempt, as text. */
  async logs(id: string): Promise<string> {
    const out: string[] = [];
    for await (const msg of this.client.getJobLogs({ jobId: id })) {
      for (const l of msg.lines) {
        const line = jobLogLineFromProto(l);
        out.push(`[attempt ${line.attempt} rank ${line.rank}] ${line.text}`);
      }
    }
    return out.join("\n");
  }
}

/** A call that is retried while the controller is down (it is killed on purpose). */
async function retrying<T>(what: string, fn: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > deadline) throw new Error(`${what}: ${(e as Error).message}`, { cause: e });
      await sleep(500);
    }
  }
}

describe.skipIf(!HAVE_TORCH)(`soak: 20 checkpointing jobs, agents and controller killed at random (skipped without torch for ${PYTHON})`, () => {
  const work = tempDir("gpuorch-soak-");
  let s3: S3rverProcess | undefined;
  let cluster: Cluster | undefined;
  let launch: ControllerLaunch;
  let reference: string;
  const deadControllers: ControllerProcess[] = [];
  const deadAgents: AgentProcess[] = [];
  let apiClient: Api | undefined;

  beforeAll(async () => {
    const [ref] = await Promise.all([
      referenceHash(),
      (async () => {
        s3 = await startS3rver({ directory: join(work, "s3"), buckets: ["ckpts"] });
        const databaseUrl = (await createTestDatabase()).url;
        const tokens = {
          agent: await createTokenCli({ databaseUrl }, ["--team", "ml", "--kind", "agent", "--name", "agents"]),
          user: await createTokenCli({ databaseUrl }, ["--team", "ml"]),
        };
        cluster = new Cluster(work, tokens, s3.endpoint);
        launch = { databaseUrl, grpcPort: await freePort(), extraArgs: [...FAST_CONTROLLER_FLAGS, "--node-lost-ms", "8000"] };
        await startClusterController(cluster, launch);
      })(),
    ]);
    reference = ref;
  }, 120_000);

  afterAll(async () => {
    apiClient?.client.close();
    await cluster?.stopAll();
    await cluster?.ctl?.stop("SIGKILL");
    await s3?.stop();
    rmSync(work, { recursive: true, force: true });
    assertNoControllersLeft();
  }, 60_000);

  it("every job completes exactly once, along a legal path, with the uninterrupted run's model", async () => {
    const c = cluster!;
    const started = Date.now();
    const rand = prng(SEED);
    const driverLog: string[] = [];
    let t0 = started;
    const note = (s: string) => driverLog.push(`+${((Date.now() - t0) / 1000).toFixed(1)}s ${s}`);
    const context = () =>
      [
        `seed ${SEED}; chaos driver:`,
        ...driverLog,
        "--- controller (current):",
        c.ctl.logs().slice(-4000),
        ...deadControllers.map((d, i) => `--- controller #${i + 1} (killed):\n${d.logs().slice(-2000)}`),
        ...[...c.agents.values()].map((a) => `--- agent ${a.name}:\n${a.output().slice(-2500)}`),
      ].join("\n");

    const phases: string[] = [];
    let phaseAt = started;
    const phase = (what: string) => {
      phases.push(`${what} ${((Date.now() - phaseAt) / 1000).toFixed(1)}s`);
      phaseAt = Date.now();
    };
    for (const name of AGENTS) c.startAgent({ name, gpus: GPUS });
    await c.until("three nodes ready", async () => {
      const { nodes } = await c.cliJson<{ nodes: { state: string }[] }>(["nodes"]);
      return nodes.filter((n) => n.state === "ready").length === AGENTS.length;
    });

    // Submit the jobs (over gRPC, a few at a time).
    const names = Array.from({ length: JOBS }, (_, i) => `soak-${String(i).padStart(2, "0")}`);
    const ledgerOf = (name: string) => join(work, `ledger-${name}.txt`);
    phase("agents-ready");
    const api = (apiClient = new Api(c.address, c.tokens.user));
    const ids = await mapLimit(names, 4, (name) => api.submit(spec(name, ledgerOf(name))));
    phase("submit");
    const nameOf = new Map(ids.map((id, i) => [id, names[i]!]));

    // Poll every job with one `list` call; errors (the controller is down) mean "unknown".
    let latest = new Map<string, JobJson>();
    const poll = async (): Promise<boolean> => {
      try {
        const jobs = await api.list();
        latest = new Map(jobs.filter((j) => nameOf.has(j.id)).map((j) => [j.id, j]));
      } catch {
        return false;
      }
      return ids.every((id) => TERMINAL.has(latest.get(id)?.status ?? ""));
    };

    // The chaos driver.
    t0 = Date.now();
    let agentKills = 0;
    const kills: AgentKill[] = [];
    let controllerKills = 0;
    const outages: Outage[] = [];
    let stop = false;
    /** Sleeps up to `ms`, less when the chaos stops. */
    const pause = async (ms: number) => {
      const end = Date.now() + ms;
      while (!stop && Date.now() < end) await sleep(Math.min(200, end - Date.now()));
    };
    const agentChaos = async () => {
      while (!stop && Date.now() - t0 < CHAOS_MAX_MS) {
        await pause(3000 + rand() * 2000);
        if (stop) break;
        const live = AGENTS.filter((n) => c.agents.has(n));
        const victim = live[Math.floor(rand() * live.length)]!;
        const downMs = 1000 + rand() * 1000;
        deadAgents.push(c.agents.get(victim)!);
        await c.killAgent(victim);
        kills.push({ agent: victim, at: Date.now() });
        agentKills++;
        note(`kill -9 agent ${victim}; restart in ${Math.round(downMs)} ms`);
        await sleep(downMs); // always restarted, even once the chaos stops
        c.startAgent({ name: victim, gpus: GPUS });
        note(`agent ${victim} restarted`);
      }
    };
    const controllerChaos = async () => {
      let back = 0;
      for (const at of CONTROLLER_KILLS_AT_MS) {
        // Never before the previous controller has served a while.
        await pause(Math.max(t0 + at, back + CONTROLLER_MIN_UP_MS) - Date.now());
        if (stop) break;
        const downMs = Math.round(500 + rand() * 1000);
        note(`kill -9 controller; restart in ${downMs} ms`);
        controllerKills++;
        const from = Date.now();
        deadControllers.push(await restartController(c, launch, downMs));
        back = Date.now();
        outages.push({ from, to: back });
        note("controller restarted");
      }
    };
    const chaos = Promise.allSettled([agentChaos(), controllerChaos()]);
    let allTerminal = false;
    try {
      while (Date.now() - t0 < CHAOS_MAX_MS && !allTerminal) {
        allTerminal = await poll();
        if (!allTerminal) await sleep(1000);
      }
    } finally {
      // Never leave the test with a driver still running (it would start agents after afterAll).
      stop = true;
      note(allTerminal ? "all jobs terminal: chaos stops" : "chaos bound reached: chaos stops");
      await chaos;
    }
    for (const r of await chaos) if (r.status === "rejected") throw new Error(`the chaos driver failed: ${String(r.reason)}\n${context()}`, { cause: r.reason });
    // Let everything finish undisturbed.
    const settleEnd = Date.now() + SETTLE_MAX_MS;
    while (!allTerminal && Date.now() < settleEnd) {
      await sleep(1000);
      allTerminal = await poll();
    }
    note(allTerminal ? "all jobs terminal" : "settle bound reached");
    phase("chaos+settle");
    // Everything the checks need, per job.
    const facts = await mapLimit(ids, 3, async (id) => {
      const job = latest.get(id)!;
      const events = await retrying(`events ${id}`, () => api.events(id));
      const logs = await retrying(`logs ${id}`, () => api.logs(id));
      const artifacts = await retrying(`artifacts ${id}`, () => api.artifacts(id));
      // Which of them are really in the store (anonymous HEAD: s3rver allows it).
      const missing: string[] = [];
      for (const a of artifacts) {
        const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(a.uri);
        const res = m ? await fetch(`${s3!.endpoint}/${m[1]}/${m[2]}`, { method: "HEAD" }) : null;
        if (res?.status !== 200) missing.push(`${a.type} of attempt ${a.attempt}${a.step === null ? "" : ` step ${a.step}`} (${a.uri}): HEAD ${res?.status ?? "not s3"}`);
      }
      // The completing attempt's own log file, as the agent uploaded it at the end (complete, unlike
      // the stored output, which may miss lines sent just before a controller crash).
      const logArtifact = artifacts.find((a) => a.type === "log" && a.attempt === job.attempt);
      const m = logArtifact ? /^s3:\/\/([^/]+)\/(.+)$/.exec(logArtifact.uri) : null;
      const res = m ? await fetch(`${s3!.endpoint}/${m[1]}/${m[2]}`) : null;
      const finalLog = res?.status === 200 ? await res.text() : null;
      return { id, name: nameOf.get(id)!, job, events, logs, finalLog, artifacts, missing, ledger: readLedger(ledgerOf(nameOf.get(id)!)) };
    });

    phase("collect");
    const dump = process.env.GPUORCH_SOAK_DUMP;
    if (dump) {
      // Everything, for a post-mortem: GPUORCH_SOAK_DUMP=/some/dir
      mkdirSync(dump, { recursive: true });
      writeFileSync(join(dump, "driver.txt"), driverLog.join("\n") + "\n");
      [...deadControllers, c.ctl].forEach((d, i) => writeFileSync(join(dump, `controller-${i}.log`), d.logs()));
      [...deadAgents, ...c.agents.values()].forEach((a, i) => writeFileSync(join(dump, `agent-${i}-${a.name}-${a.child.pid}.log`), a.output()));
      for (const f of facts) {
        writeFileSync(join(dump, `${f.name}-${f.id}.json`), JSON.stringify({ job: f.job, events: f.events, artifacts: f.artifacts, missing: f.missing, ledger: f.ledger }, null, 1));
        writeFileSync(join(dump, `${f.name}-${f.id}.log`), f.logs);
      }
    }
    const statusLine = ids.map((id) => `${nameOf.get(id)}=${latest.get(id)?.status ?? "?"}/${latest.get(id)?.attempt ?? "?"}`).join(" ");
    expect(allTerminal, `not every job ended in time: ${statusLine}\n${context()}`).toBe(true);

    const problems: string[] = [];
    /** Findings that are no assertion of this scenario. */
    const notes: string[] = [];
    for (const f of facts) {
      const p = (s: string) => problems.push(`${f.name} (${f.id}): ${s}`);
      if (f.job.status !== "completed") p(`ended ${f.job.status}`);
      checkEvents(f.events, p);
      checkLedger(f.ledger, f.events, { kills, outages }, p);
      for (const m of f.missing) p(`a live artifact is gone from the store: ${m}`);
      const { hashes, resumed } = trainingFacts(f.logs);
      for (const h of hashes) if (h !== reference) p(`model ${h} (stored output) differs from the uninterrupted run's ${reference}`);
      if (f.job.status === "completed") {
        const final = f.finalLog === null ? undefined : trainingFacts(f.finalLog).hashes.at(-1);
        if (f.finalLog === null) p(`no log file of the completing attempt ${f.job.attempt} in the store`);
        else if (final === undefined) p(`no GPUORCH_MODEL_SHA256 in the completing attempt's log file`);
        else if (final !== reference) p(`final model ${final} differs from the uninterrupted run's ${reference}`);
        if (final !== undefined && !hashes.includes(final)) notes.push(`${f.name} (${f.id}): the stored output (gpuorch logs) lacks the final GPUORCH_MODEL_SHA256 line that the attempt's log file has`);
      }
      for (const r of resumed) if (r % INTERVAL !== 0) p(`resumed at step ${r}, not a checkpointed step`);
    }
    const attemptsTotal = facts.reduce((n, f) => n + f.job.attempt, 0);
    const wall = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`soak summary: jobs=${JOBS} completed=${facts.filter((f) => f.job.status === "completed").length} attempts=${attemptsTotal} agent_kills=${agentKills} controller_kills=${controllerKills} wall=${wall}s seed=${SEED} (${phases.join(", ")})`);
    for (const n of notes) console.warn(`soak note: ${n}`);
    expect(problems, `${problems.length} problem(s):\n${problems.join("\n")}\n\n${context()}`).toEqual([]);
    expect(controllerKills).toBe(CONTROLLER_KILLS_AT_MS.length);
  }, 260_000);
});

interface AgentKill {
  agent: string;
  /** Epoch ms, when the kill -9 was done. */
  at: number;
}

/** A controller kill -9 (from) until its successor was ready (to), epoch ms. */
interface Outage {
  from: number;
  to: number;
}

const hms = (ms: number) => new Date(ms).toISOString().slice(11, 23);

/** The event log is a legal path of the state machine that ends in `completed`. */
function checkEvents(events: EventJson[], p: (s: string) => void): void {
  const path = events.map((e) => `${e.to_status}@${e.attempt}`).join(" ");
  try {
    const end = replayEvents(events.map((e) => ({ from: e.from_status as JobStatus | null, to: e.to_status as JobStatus })));
    if (end !== "completed") p(`event log ends in ${end}: ${path}`);
  } catch (e) {
    p(`illegal event log (${(e as Error).message}): ${path}`);
  }
  if (events.at(-1)?.to_status !== "completed") p(`last event is ${events.at(-1)?.to_status ?? "none"}`);
}

/**
 * Exactly once: the job completed once (one `completed` event, for an
 * attempt that ran to the last step). Execution is at-least-once under
 * chaos — an attempt whose agent was killed -9 after its last step but
 * before the controller had its exit is requeued, and its work since the
 * last checkpoint is redone — so another attempt may also reach the last
 * step, but only if it ended `requeued` and a kill of its agent (or a
 * controller outage) explains that. From the ledger: no two processes of the
 * job ever ran at once; every process ran consecutive steps starting right
 * after a checkpointed step (or at 1); an attempt is one process.
 */
function checkLedger(lines: LedgerLine[], events: EventJson[], chaos: { kills: readonly AgentKill[]; outages: readonly Outage[] }, p: (s: string) => void): void {
  const finishers = [...new Set(lines.filter((l) => l.step === STEPS).map((l) => l.attempt))];
  const completions = events.filter((e) => e.to_status === "completed");
  if (completions.length !== 1) p(`${completions.length} completed events`);
  else if (!finishers.includes(completions[0]!.attempt)) {
    // It may have resumed from the checkpoint at the last step (an earlier attempt wrote it, then was killed before exiting): nothing left to run.
    const ran = lines.filter((l) => l.attempt === completions[0]!.attempt).length;
    if (ran > 0 || finishers.length === 0) p(`attempt ${completions[0]!.attempt} completed without running to step ${STEPS}`);
  }
  const completedAttempt = completions[0]?.attempt;
  const unexplained = finishers.filter((a, _i, all) => {
    if (a === completedAttempt) return false;
    // The last finisher handed its final checkpoint to a completing attempt that ran no step.
    if (completedAttempt !== undefined && !all.includes(completedAttempt) && a === Math.max(...all)) return false;
    const end = events.find((e) => e.attempt === a && ["requeued", "completed", "failed", "cancelled"].includes(e.to_status));
    if (end?.to_status !== "requeued") return true;
    const host = /placed on ([^[\s]+)\[/.exec(events.findLast((e) => e.attempt === a && e.to_status === "scheduled")?.reason ?? "")?.[1];
    const lastStepAt = Math.max(...lines.filter((l) => l.attempt === a).map((l) => l.at * 1000));
    const endAt = Date.parse(end.created_at);
    const killed = chaos.kills.some((k) => k.agent === host && k.at >= lastStepAt - 1_000 && k.at <= endAt);
    const outage = chaos.outages.some((o) => o.from <= endAt && endAt - o.to <= 10_000);
    return !killed && !outage;
  });
  if (unexplained.length > 0) {
    // How each of them ended, as the controller saw it, and whether a kill -9 of its agent explains it.
    const ends = finishers.map((a) => {
      const end = events.find((e) => e.attempt === a && ["requeued", "completed", "failed", "cancelled"].includes(e.to_status));
      const host = /placed on ([^[\s]+)\[/.exec(events.findLast((e) => e.attempt === a && e.to_status === "scheduled")?.reason ?? "")?.[1];
      const lastStepAt = Math.max(...lines.filter((l) => l.attempt === a).map((l) => l.at * 1000));
      const endAt = end ? Date.parse(end.created_at) : Infinity;
      const kill = chaos.kills.find((k) => k.agent === host && k.at >= lastStepAt && k.at <= endAt);
      // An end during an outage, or soon after the controller came back.
      const outage = chaos.outages.find((o) => o.from <= endAt && endAt - o.to <= 6_000);
      const why = [
        kill
          ? `its agent ${host} was killed -9 ${kill.at - Math.round(lastStepAt)} ms after its last step (${hms(lastStepAt)}), before the controller had its exit`
          : `its agent ${host} was not killed between its last step (${hms(lastStepAt)}) and this end (${hms(endAt)})`,
        ...(outage ? [`the controller was down ${hms(outage.from)}–${hms(outage.to)}; this end came ${endAt - outage.to} ms after it was back`] : []),
      ]
        .map((w) => `; ${w}`)
        .join("");
      return `attempt ${a} on ${host ?? "?"}: ${end ? `${end.to_status} (${end.reason})` : "no end event"}${why}`;
    });
    p(`${finishers.length} attempts ran to step ${STEPS}, ${unexplained.length} of them not completed and not explained by chaos: ${ends.join("; ")}`);
  }
  for (const o of rankOverlaps(lines)) p(`overlap: ${o}`);
  const byPid = new Map<number, LedgerLine[]>();
  for (const l of lines) byPid.set(l.pid, [...(byPid.get(l.pid) ?? []), l]);
  const pidsOfAttempt = new Map<number, number[]>();
  for (const [pid, ls] of byPid) {
    const steps = ls.map((l) => l.step);
    const first = steps[0]!;
    if ((first - 1) % INTERVAL !== 0) p(`pid ${pid} (attempt ${ls[0]!.attempt}) started at step ${first}: not right after a checkpointed step`);
    if (steps.some((s, i) => s !== first + i)) p(`pid ${pid} (attempt ${ls[0]!.attempt}) ran steps out of order: ${steps.join(",")}`);
    pidsOfAttempt.set(ls[0]!.attempt, [...(pidsOfAttempt.get(ls[0]!.attempt) ?? []), pid]);
  }
  for (const [attempt, pids] of pidsOfAttempt) if (pids.length > 1) p(`attempt ${attempt} ran as ${pids.length} processes (${pids.join(", ")})`);
  const covered = new Set(lines.map((l) => l.step));
  const never = Array.from({ length: STEPS }, (_, i) => i + 1).filter((s) => !covered.has(s));
  if (never.length > 0) p(`steps never ran: ${never.join(",")}`);
}
