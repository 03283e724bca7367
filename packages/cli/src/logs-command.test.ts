import { AppError } from "@gpuorch/core";
import type { JobClient } from "@gpuorch/rpc";
import { describe, expect, it } from "vitest";
import { formatTasks } from "./job-tasks.js";
import { formatLogLine, parseLogsOptions, printLogs } from "./logs-command.js";

function invalid(fn: () => unknown): AppError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error("expected an error");
}

const at = new Date("2030-01-01T00:00:00.000Z");
type WireLine = (JobClient["getJobLogs"] extends (...args: never[]) => AsyncGenerator<infer M> ? M : never) extends { lines: (infer L)[] } ? L : never;
const wire = (seq: number, text: string, over: Partial<WireLine> = {}): WireLine => ({ seq: String(seq), attempt: 1, rank: 0, nodeRank: 0, stream: "stdout", text, at, ...over });

describe("gpuorch logs", () => {
  it("parses flags: rank 0 and tail 0 are valid, defaults mean everything", () => {
    expect(parseLogsOptions("job-1", {})).toEqual({ jobId: "job-1", follow: false, rank: undefined, tail: 0, attempt: 0, json: false });
    expect(parseLogsOptions("job-1", { follow: true, rank: "0", tail: "50", attempt: "2", json: true })).toEqual({ jobId: "job-1", follow: true, rank: 0, tail: 50, attempt: 2, json: true });
  });

  it("rejects bad flags as INVALID_ARGUMENT (exit 2) naming the flag", () => {
    for (const [flags, field] of [
      [{ rank: "-1" }, "rank"],
      [{ rank: "x" }, "rank"],
      [{ tail: "-5" }, "tail"],
      [{ tail: "1.5" }, "tail"],
      [{ attempt: "0" }, "attempt"],
    ] as const) {
      const e = invalid(() => parseLogsOptions("job-1", flags));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.fields[0]?.field).toBe(field);
      expect(e.message).toContain(`--${field}`);
    }
    expect(invalid(() => parseLogsOptions(undefined, {})).fields[0]?.field).toBe("JOB");
  });

  it("formats lines as [rank N] text, flags stderr, and prints gpuorch's markers as they are", () => {
    const base = { seq: 1, attempt: 1, nodeRank: 0, at };
    expect(formatLogLine({ ...base, rank: 3, stream: "stdout", text: "loss=0.1" })).toBe("[rank 3] loss=0.1");
    expect(formatLogLine({ ...base, rank: 0, stream: "stderr", text: "warning" })).toBe("[rank 0] (stderr) warning");
    expect(formatLogLine({ ...base, rank: 0, stream: "system", text: "[gpuorch] 5 older lines dropped (limit 10 per job)" })).toBe("[gpuorch] 5 older lines dropped (limit 10 per job)");
  });

  it("prints every streamed batch, marks a new attempt, and exits 0", async () => {
    const requests: unknown[] = [];
    const client = {
      async *getJobLogs(req: unknown) {
        requests.push(req);
        yield { lines: [wire(1, "a"), wire(2, "b", { rank: 1 })] };
        yield { lines: [] };
        yield { lines: [wire(9, "again", { attempt: 2 })] };
      },
    };
    let out = "";
    const code = await printLogs(client as never, parseLogsOptions("job-1", { rank: "1", follow: true }), (s) => (out += s));
    expect(code).toBe(0);
    expect(requests).toEqual([{ jobId: "job-1", tail: 0, attempt: 0, follow: true, rank: 1 }]);
    expect(out).toBe("[rank 0] a\n[rank 1] b\n[gpuorch] --- attempt 2 ---\n[rank 0] again\n");
  });

  it("--json prints one JSON object per line (NDJSON)", async () => {
    const client = {
      async *getJobLogs() {
        yield { lines: [wire(7, "hello", { stream: "stderr", nodeRank: 2, rank: 5 })] };
      },
    };
    let out = "";
    await printLogs(client as never, parseLogsOptions("job-1", { json: true }), (s) => (out += s));
    expect(out.trimEnd().split("\n").map((l) => JSON.parse(l) as unknown)).toEqual([
      { seq: 7, attempt: 1, rank: 5, node_rank: 2, stream: "stderr", text: "hello", at: at.toISOString() },
    ]);
  });
});

describe("gpuorch get: tasks table", () => {
  it("shows node, rank or unit, GPUs, state, exit code and step", () => {
    const task = {
      id: "t1",
      attempt: 1,
      nodeId: "n1",
      hostname: "gpu-a",
      nodeRank: 1,
      numNodes: 2,
      unit: -1,
      gpuIndices: [0, 1],
      state: "failed" as const,
      exitCode: 3,
      step: 1200,
      reason: "rank 1 exited 3",
      startedAt: at,
      endedAt: at,
    };
    const text = formatTasks([task, { ...task, hostname: "", nodeId: "n2", unit: 4, gpuIndices: [], state: "running", exitCode: null, step: null, reason: null }]);
    const lines = text.split("\n");
    expect(lines[0]).toMatch(/^NODE\s+RANK\/UNIT\s+GPUS\s+STATE\s+EXIT\s+STEP\s+REASON$/);
    expect(lines[1]).toMatch(/^gpu-a\s+1\/2\s+0,1\s+failed\s+3\s+1200\s+rank 1 exited 3$/);
    expect(lines[2]).toMatch(/^n2\s+unit 4\s+-\s+running\s+-\s+-$/);
  });
});
