import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { createNullLogger } from "@gpuorch/runtime";
import { buildLaunch } from "./launch-builder.js";
import { startTask, type TaskExit, type TaskHandle, type TaskOutputChunk } from "./task-runner.js";

// Debian's python3-torch puts torch into the system interpreter only; the
// first python3 on PATH may lack it, so the test names both paths.
const TORCHRUN = "/usr/bin/torchrun";
const PYTHON = "/usr/bin/python3";
const TRAIN_DDP = fileURLToPath(new URL("../../../examples/train_ddp.py", import.meta.url));
const haveTorchrun = existsSync(TORCHRUN);
if (!haveTorchrun) console.warn(`skipping the real torchrun test: ${TORCHRUN} is missing (apt-get install python3-torch)`);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === "string") throw new Error("no port");
  return address.port;
}

const handles: TaskHandle[] = [];
afterEach(async () => {
  await Promise.all(handles.splice(0).map((h) => h.stop(1_000)));
});

describe.skipIf(!haveTorchrun)(`real torchrun (skipped when ${TORCHRUN} is missing: apt-get install python3-torch)`, () => {
  it("runs examples/train_ddp.py as 2 nodes x 1 process on 127.0.0.1 over gloo", async () => {
    const workDir = await mkdtemp(join(tmpdir(), "gpuorch-torchrun-"));
    try {
      const masterPort = await freePort();
      const nodes = await Promise.all(
        [0, 1].map(async (nodeRank) => {
          const launch = buildLaunch(
            {
              framework: "pytorch_ddp",
              jobId: "ddp-e2e",
              attempt: 1,
              entrypoint: { command: ["python3", TRAIN_DDP], args: ["--steps", "20"] },
              nodeRank,
              numNodes: 2,
              gpus: [],
              cpuProcesses: 1,
              masterAddr: "127.0.0.1",
              masterPort,
              hosts: [
                { host: "127.0.0.1", slots: 1 },
                { host: "127.0.0.1", slots: 1 },
              ],
            },
            // Each node of a real cluster has its own disk; here each gets its own work root.
            { workDir: join(workDir, `node${nodeRank}`), paths: { torchrun: TORCHRUN, python: PYTHON } },
          );
          const lines: TaskOutputChunk[] = [];
          const steps: (number | undefined)[] = [];
          let exit: TaskExit | undefined;
          const handle = await startTask(launch, {
            workDir: join(workDir, `node${nodeRank}`),
            logger: createNullLogger(),
            onOutput: (chunk) => lines.push(chunk),
            onProgress: (step) => steps.push(step),
            onExit: (result) => {
              exit = result;
            },
            stopGraceMs: 2_000,
          });
          handles.push(handle);
          const result = await handle.exited;
          return { nodeRank, lines, steps, exit, result };
        }),
      );
      for (const node of nodes) {
        const context = `node ${node.nodeRank}:\n${node.lines.map((l) => `${l.stream} ${l.rank ?? "-"} ${l.text}`).join("\n")}`;
        expect(node.result.exitCode, context).toBe(0);
        expect(node.exit).toEqual(node.result);
        expect(node.result.step, context).toBe(20);
        expect(node.steps.at(-1)).toBe(20);
        expect(node.result.metrics.loss).toEqual(expect.any(Number));
        // torchrun --tee tags each worker line with its local rank.
        expect(node.lines).toContainEqual({ stream: "stdout", text: "GPUORCH_STEP=20", rank: 0 });
        expect(node.lines.some((l) => l.rank === 0 && l.text === `rank ${node.nodeRank}/2 done: 20 steps, final loss ${node.result.metrics.loss?.toFixed(6)}`), context).toBe(true);
      }
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  });

  it("stop() ends torchrun and all its workers", async () => {
    const workDir = await mkdtemp(join(tmpdir(), "gpuorch-torchrun-"));
    try {
      const launch = buildLaunch(
        {
          framework: "pytorch_ddp",
          jobId: "ddp-stop",
          attempt: 1,
          entrypoint: { command: [TRAIN_DDP], args: ["--steps", "1000000"] },
          nodeRank: 0,
          numNodes: 1,
          gpus: [],
          cpuProcesses: 2,
          masterAddr: "127.0.0.1",
          masterPort: await freePort(),
        },
        { workDir, paths: { torchrun: TORCHRUN, python: PYTHON } },
      );
      let reached!: () => void;
      const stepFive = new Promise<void>((resolve) => (reached = resolve));
      const handle = await startTask(launch, {
        workDir,
        logger: createNullLogger(),
        onOutput: () => {},
        onProgress: (step) => {
          if ((step ?? 0) >= 5) reached();
        },
        onExit: () => {},
      });
      handles.push(handle);
      await stepFive;
      expect(liveGroupMembers(handle.pgid).length).toBeGreaterThanOrEqual(3); // torchrun + 2 workers
      await handle.stop(5_000);
      expect(liveGroupMembers(handle.pgid)).toEqual([]);
      expect(await handle.exited).toMatchObject({ stopped: true });
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  });
});

function liveGroupMembers(pgid: number): number[] {
  return execFileSync("ps", ["-e", "-o", "pid=,pgid=,stat="], { encoding: "utf8" })
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter(([, g, st]) => Number(g) === pgid && !st?.startsWith("Z"))
    .map(([p]) => Number(p));
}
