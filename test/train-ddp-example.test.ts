import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// examples/train_ddp.py under the real torchrun: gpuorch's checkpoint
// contract (step dirs with COMPLETE last, interval/final/signal/trigger
// checkpoints), exact resume, and the per-step ledger. No gpuorch code runs
// here: the script is the other side of the contract the agent implements.

// Debian's python3-torch puts torch into the system interpreter only.
const TORCHRUN = "/usr/bin/torchrun";
const TRAIN_DDP = fileURLToPath(new URL("../examples/train_ddp.py", import.meta.url));
const haveTorchrun = existsSync(TORCHRUN);
if (!haveTorchrun) console.warn(`skipping the train_ddp.py checkpoint tests: ${TORCHRUN} is missing (apt-get install python3-torch)`);

const STEPS = 30;
const EVERY = 10;
// The trigger and SIGUSR1 runs sleep 0.1 s a step and ask for a checkpoint
// once step 5 is printed (torchrun's tee polls the logs every 0.1 s). A
// request served at an interval step would be a no-op, so those runs take a
// longer interval, leaving steps 6–19 (~1.4 s) for it to land in; step 30 is
// then a "final" checkpoint.
const EMERGENCY_EVERY = 20;
const STEP_SLEEP = "0.1";
const RUN_TIMEOUT_MS = 50_000;

interface Line {
  /** Local rank from torchrun's `[defaultN]:` prefix; undefined for untagged lines (stderr, torchrun itself). */
  rank?: number;
  text: string;
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  lines: Line[];
  /** Everything, for assertion messages. */
  output: string;
}

interface RunOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Called for each output line as it arrives, with the torchrun child. */
  onLine?: (line: Line, child: ChildProcess) => void;
}

// Ports handed out by this file: two runs at once never get the same one.
const usedPorts = new Set<number>();

async function freePort(): Promise<number> {
  for (;;) {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    if (address === null || typeof address === "string") throw new Error("no port");
    if (usedPorts.has(address.port)) continue;
    usedPorts.add(address.port);
    return address.port;
  }
}

let work = "";
let runCount = 0;
const live = new Set<ChildProcess>();

// At most two torchruns at once: a run spends much of its time on one core
// (torchrun importing torch before it starts the workers, polling them after
// they exit, or sleeping between steps), so two overlap well on 2 cores,
// while more would only queue for the CPUs.
const MAX_PARALLEL_RUNS = 2;
let running = 0;
const waiting: (() => void)[] = [];
async function withRunSlot<T>(fn: () => Promise<T>): Promise<T> {
  while (running >= MAX_PARALLEL_RUNS) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** Kills a torchrun's whole process group (it was spawned detached: torchrun + its workers). */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/** One single-node, 2-process torchrun of train_ddp.py over gloo. */
function torchrun(opts: RunOptions = {}): Promise<RunResult> {
  return withRunSlot(() => runOnce(opts));
}

async function runOnce(opts: RunOptions): Promise<RunResult> {
  const logDir = join(work, `torchrun-logs-${++runCount}`);
  // The job sees none of the caller's GPUORCH_* variables, only the ones a case sets.
  const env: Record<string, string> = { OMP_NUM_THREADS: "1" };
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("GPUORCH_")) env[k] = v;
  Object.assign(env, opts.env);
  // Debian's torch 1.13 on Python 3.11 crashes with the default --redirects 0 /
  // --tee 0 (and knows only the underscore spellings of the flags); with these
  // each worker's stdout line comes with a `[default<local rank>]:` prefix.
  // The agent polls its workers every --monitor_interval seconds (default 5):
  // a short one lets torchrun exit soon after they do.
  const argv = [
    "--nnodes", "1",
    "--nproc_per_node", "2",
    "--master_addr", "127.0.0.1",
    "--master_port", String(await freePort()),
    "--redirects", "1",
    "--tee", "1",
    "--log_dir", logDir,
    "--monitor_interval", "0.2",
    TRAIN_DDP,
    "--steps", String(STEPS),
    "--batch-size", "64",
    ...(opts.args ?? []),
  ];
  const child = spawn(TORCHRUN, argv, { env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  live.add(child);
  const lines: Line[] = [];
  const output: string[] = [];
  const onText = (text: string) => {
    output.push(text);
    const m = /^\[default(\d+)\]:(.*)$/.exec(text);
    const line: Line = m ? { rank: Number(m[1]), text: m[2]! } : { text };
    lines.push(line);
    opts.onLine?.(line, child);
  };
  for (const stream of [child.stdout!, child.stderr!]) {
    let pending = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      pending += chunk;
      const parts = pending.split("\n");
      pending = parts.pop()!;
      for (const p of parts) onText(p);
    });
    stream.on("end", () => {
      if (pending) onText(pending);
    });
  }
  const timer = setTimeout(() => killGroup(child), RUN_TIMEOUT_MS);
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.on("error", reject);
      child.on("close", (c, s) => resolve([c, s]));
    });
    return { code, signal, lines, output: output.join("\n") };
  } finally {
    clearTimeout(timer);
    live.delete(child);
  }
}

/** The `GPUORCH_CHECKPOINT step=<n> reason=<r>` lines (rank 0 only prints them). */
function checkpointsOf(run: RunResult): { step: number; reason: string }[] {
  return run.lines.flatMap((l) => {
    const m = /^GPUORCH_CHECKPOINT step=(\d+) reason=(\w+)$/.exec(l.text);
    return m ? [{ step: Number(m[1]), reason: m[2]! }] : [];
  });
}

function hashOf(run: RunResult): string {
  const hashes = run.lines.flatMap((l) => /^GPUORCH_MODEL_SHA256=([0-9a-f]{64})$/.exec(l.text)?.[1] ?? []);
  expect(hashes, run.output).toHaveLength(1);
  return hashes[0]!;
}

function stepsOf(run: RunResult, rank: number): number[] {
  return run.lines.flatMap((l) => (l.rank === rank ? (/^GPUORCH_STEP=(\d+)$/.exec(l.text)?.[1] ?? []) : [])).map(Number);
}

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

function expectCompleteCheckpoint(dir: string): void {
  expect(readdirSync(dir).sort()).toEqual(["COMPLETE", "state.pt"]);
  expect(readFileSync(join(dir, "COMPLETE"))).toHaveLength(0);
}

/** Runs an async function once, on first use, so any case can run alone (`-t`). */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

/** Case 1's run: uninterrupted, a checkpoint every 10 steps, ledger via --ledger. */
const baseline = once(async () => {
  const checkpointDir = join(work, "baseline-ckpt");
  const ledger = join(work, "baseline.ledger");
  const run = await torchrun({
    args: ["--checkpoint-every", String(EVERY), "--ledger", ledger],
    env: { GPUORCH_CHECKPOINT_DIR: checkpointDir },
  });
  expect(run.code, run.output).toBe(0);
  return { run, checkpointDir, ledger, hash: hashOf(run) };
});

/** Case 2's run: resumed from the baseline's step 10, as attempt 2, ledger via $GPUORCH_LEDGER. */
const resumedFrom10 = once(async () => {
  const base = await baseline();
  const ledger = join(work, "resumed.ledger");
  const run = await torchrun({
    env: {
      GPUORCH_RESUME_FROM: join(base.checkpointDir, "10"),
      GPUORCH_RESUME_STEP: "10",
      GPUORCH_LEDGER: ledger,
      GPUORCH_ATTEMPT: "2",
    },
  });
  expect(run.code, run.output).toBe(0);
  return { run, ledger };
});

/** The train_ddp.py workers of a torchrun: its children (found in /proc) running the script. */
function workerPids(torchrunPid: number): number[] {
  const pids: number[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // Fields after the parenthesised command: state, ppid, …
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid !== torchrunPid) continue;
      if (readFileSync(`/proc/${name}/cmdline`, "utf8").includes("train_ddp.py")) pids.push(Number(name));
    } catch {
      // the process ended meanwhile
    }
  }
  return pids;
}

// The cases run concurrently (each run waits for a slot); those that need the
// uninterrupted run's checkpoints share the one baseline().
describe.skipIf(!haveTorchrun).concurrent(`examples/train_ddp.py checkpoints under real torchrun (skipped when ${TORCHRUN} is missing)`, () => {
  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "gpuorch-train-ddp-"));
  });
  // Not afterEach: that would kill the runs of cases still going. A hung run
  // is killed by its own timer.
  afterAll(async () => {
    for (const child of live) killGroup(child);
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("writes complete checkpoints at every interval step and prints the model hash once", async () => {
    const { run, checkpointDir } = await baseline();
    expect(checkpointsOf(run)).toEqual([
      { step: 10, reason: "interval" },
      { step: 20, reason: "interval" },
      { step: 30, reason: "interval" }, // the final step is also an interval step: one checkpoint
    ]);
    expect(readdirSync(checkpointDir).sort()).toEqual(["10", "20", "30"]);
    for (const step of ["10", "20", "30"]) expectCompleteCheckpoint(join(checkpointDir, step));
    expect(stepsOf(run, 0)).toEqual(range(1, STEPS));
    expect(stepsOf(run, 1)).toEqual(range(1, STEPS));
    // Only rank 0 prints checkpoints and the hash.
    expect(run.lines.filter((l) => l.rank === 1 && /^GPUORCH_(CHECKPOINT|MODEL_SHA256)/.test(l.text))).toEqual([]);
  });

  it("resumes from step 10 to the same final parameters as the uninterrupted run", async () => {
    const base = await baseline();
    const { run } = await resumedFrom10();
    expect(run.lines).toContainEqual({ rank: 0, text: "GPUORCH_RESUMED step=10" });
    expect(stepsOf(run, 0)).toEqual(range(11, STEPS));
    expect(stepsOf(run, 1)).toEqual(range(11, STEPS));
    expect(hashOf(run)).toBe(base.hash);
  });

  it("refuses a resume whose GPUORCH_RESUME_STEP does not match the checkpoint", async () => {
    const base = await baseline();
    const run = await torchrun({ env: { GPUORCH_RESUME_FROM: join(base.checkpointDir, "10"), GPUORCH_RESUME_STEP: "11" } });
    expect(run.code).not.toBe(0);
    expect(run.output).toMatch(/step mismatch: GPUORCH_RESUME_STEP=11 but .*10\/state\.pt holds step 10/);
    expect(run.lines.some((l) => l.text.startsWith("GPUORCH_STEP="))).toBe(false);
  });

  it("checkpoints when the trigger file appears, removes it, and resumes from that checkpoint exactly", async () => {
    const base = await baseline();
    const checkpointDir = join(work, "trigger-ckpt");
    const trigger = join(work, "checkpoint-now");
    let created = false;
    const run = await torchrun({
      args: ["--checkpoint-every", String(EMERGENCY_EVERY), "--step-sleep", STEP_SLEEP],
      env: { GPUORCH_CHECKPOINT_DIR: checkpointDir, GPUORCH_CHECKPOINT_TRIGGER: trigger },
      onLine: (line) => {
        if (!created && line.rank === 0 && line.text === "GPUORCH_STEP=5") {
          created = true;
          writeFileSync(trigger, "");
        }
      },
    });
    expect(run.code, run.output).toBe(0);
    expect(created).toBe(true);
    const triggered = checkpointsOf(run).filter((c) => c.reason === "trigger");
    expect(triggered, run.output).toHaveLength(1);
    const step = triggered[0]!.step;
    expect(step).toBeGreaterThan(5);
    expect(step % EMERGENCY_EVERY, `trigger checkpoint at step ${step}`).not.toBe(0);
    expect(checkpointsOf(run)).toEqual([
      { step, reason: "trigger" },
      { step: 20, reason: "interval" },
      { step: 30, reason: "final" },
    ]);
    expectCompleteCheckpoint(join(checkpointDir, String(step)));
    expect(existsSync(trigger)).toBe(false);
    expect(hashOf(run)).toBe(base.hash); // checkpointing does not perturb training

    const resumed = await torchrun({ env: { GPUORCH_RESUME_FROM: join(checkpointDir, String(step)), GPUORCH_RESUME_STEP: String(step) } });
    expect(resumed.code, resumed.output).toBe(0);
    expect(stepsOf(resumed, 0)[0]).toBe(step + 1);
    expect(hashOf(resumed)).toBe(base.hash);
  });

  it("survives SIGUSR1 on every worker and checkpoints on it", async () => {
    const base = await baseline();
    const checkpointDir = join(work, "signal-ckpt");
    let signalled: number[] = [];
    const run = await torchrun({
      args: ["--checkpoint-every", String(EMERGENCY_EVERY), "--step-sleep", STEP_SLEEP],
      env: { GPUORCH_CHECKPOINT_DIR: checkpointDir },
      onLine: (line, child) => {
        if (signalled.length === 0 && line.rank === 0 && line.text === "GPUORCH_STEP=5") {
          signalled = workerPids(child.pid!);
          for (const pid of signalled) process.kill(pid, "SIGUSR1");
        }
      },
    });
    expect(signalled).toHaveLength(2);
    expect(run.code, run.output).toBe(0);
    const bySignal = checkpointsOf(run).filter((c) => c.reason === "signal");
    expect(bySignal, run.output).toHaveLength(1);
    const step = bySignal[0]!.step;
    expect(step).toBeGreaterThan(5);
    expectCompleteCheckpoint(join(checkpointDir, String(step)));
    expect(stepsOf(run, 1)).toEqual(range(1, STEPS)); // rank 1 ran on too
    expect(hashOf(run)).toBe(base.hash);
  });

  it("appends one ledger line per rank and step (from --ledger and from $GPUORCH_LEDGER)", async () => {
    const base = await baseline();
    const resumed = await resumedFrom10();
    const parse = (path: string) =>
      readFileSync(path, "utf8")
        .split("\n")
        .filter((l) => l !== "")
        .map((l) => {
          const [rank, step, attempt, pid, time] = l.split(" ");
          expect(l).toMatch(/^[01] \d+ \d+ \d+ \d+\.\d{6}$/);
          return { rank: Number(rank), step: Number(step), attempt: Number(attempt), pid: Number(pid), time: Number(time) };
        });
    const check = (path: string, firstStep: number, attempt: number) => {
      const entries = parse(path);
      const pids = new Set<number>();
      for (const rank of [0, 1]) {
        const mine = entries.filter((e) => e.rank === rank);
        expect(mine.map((e) => e.step)).toEqual(range(firstStep, STEPS)); // each step exactly once, in order
        expect(new Set(mine.map((e) => e.attempt))).toEqual(new Set([attempt]));
        expect(new Set(mine.map((e) => e.pid)).size).toBe(1); // one process per rank
        pids.add(mine[0]!.pid);
        const times = mine.map((e) => e.time);
        expect(times).toEqual([...times].sort((a, b) => a - b));
      }
      expect(pids.size).toBe(2);
    };
    check(base.ledger, 1, 0);
    check(resumed.ledger, 11, 2);
  });
});
