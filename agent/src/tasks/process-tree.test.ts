import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "@gpuorch/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { childPids, signalWorkers } from "./process-tree.js";

/**
 * Real processes. Every tree is spawned detached (its own process group) and
 * the whole group is SIGKILLed after each test, orphans included: nothing
 * below calls setsid, so every descendant stays in the group.
 *
 * The guard stand-in is `sh guard.sh`, whose only child is the task's
 * command (a script run as a non-last command, so sh forks rather than
 * execs). Workers install their USR1 trap before writing their ready file,
 * and the test signals only after every ready file exists: deterministic.
 */

const cmdline = (pid: number): string[] => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  } catch {
    return [];
  }
};
const alive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] !== "Z";
  } catch {
    return false;
  }
};
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("process tree (Linux /proc)", () => {
  let dir: string;
  let groups: ChildProcess[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "gpuorch-ptree-"));
    groups = [];
    // $1: the worker's name. Traps USR1 (writes <name>.got), then idles in an interruptible wait.
    writeFileSync(join(dir, "worker.sh"), ['trap \'echo got > "$D/$1.got"; kill $! 2>/dev/null; exit 0\' USR1', ': > "$D/$1.ready"', "sleep 30 &", "wait", ""].join("\n"));
    // A launcher (torchrun-like): two workers; it records a USR1 it should never get.
    writeFileSync(
      join(dir, "launcher.sh"),
      ['trap \'echo got > "$D/launcher.got"\' USR1', 'sh "$D/worker.sh" w1 &', 'sh "$D/worker.sh" w2 &', ': > "$D/launcher.ready"', "wait", "wait", ""].join("\n"),
    );
    // A training program ("python3 train.py"): handles USR1 itself, has a helper child (a data loader).
    writeFileSync(join(dir, "train.sh"), ['trap \'echo got > "$D/train.got"; exit 0\' USR1', 'sh "$D/worker.sh" loader &', ': > "$D/train.ready"', "wait", ""].join("\n"));
    // The guard: runs the command (its only child), then notes that it ended.
    writeFileSync(join(dir, "guard.sh"), ['sh "$D/$1"', 'echo "$?" > "$D/guard.done"', ""].join("\n"));
  });

  afterEach(() => {
    for (const p of groups) {
      try {
        if (p.pid) process.kill(-p.pid, "SIGKILL");
      } catch {
        // the group is gone already
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  function start(argv: string[]): ChildProcess & { pid: number } {
    const p = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: "ignore", env: { ...process.env, D: dir } });
    groups.push(p);
    if (!p.pid) throw new Error(`could not spawn ${argv.join(" ")}`);
    return p as ChildProcess & { pid: number };
  }

  const exists = (name: string): boolean => existsSync(join(dir, name));

  it("childPids finds a shell's two background sleeps", async () => {
    const sh = start(["/bin/sh", "-c", "sleep 30 & sleep 30 & wait"]);
    const kids = await waitFor(() => {
      const k = childPids(sh.pid);
      return k.length === 2 && k.every((pid) => cmdline(pid)[0] === "sleep") ? k : null;
    });
    expect(kids.map(cmdline)).toEqual([
      ["sleep", "30"],
      ["sleep", "30"],
    ]);
    expect(new Set(kids).size).toBe(2);
    expect(kids).not.toContain(sh.pid);
    expect(childPids(kids[0]!)).toEqual([]); // a sleep has no children
  });

  it("childPids parses a command name containing spaces and parentheses", async () => {
    const odd = join(dir, "x) 1 (y");
    symlinkSync("/usr/bin/sleep", odd);
    const sh = start(["/bin/sh", "-c", '"$D/x) 1 (y" 30 & wait']);
    const kids = await waitFor(() => {
      const k = childPids(sh.pid);
      return k.length === 1 && cmdline(k[0]!)[0] === odd ? k : null;
    });
    expect(readFileSync(`/proc/${kids[0]}/stat`, "utf8")).toContain("(x) 1 (y)");
  });

  it("childPids of a process that does not exist is empty", () => {
    expect(childPids(2 ** 22 + 12_345)).toEqual([]);
  });

  it('signalWorkers with a launcher ("sh") signals the launcher\'s children, not the launcher', async () => {
    const guard = start(["/bin/sh", join(dir, "guard.sh"), "launcher.sh"]);
    await waitFor(() => exists("w1.ready") && exists("w2.ready") && exists("launcher.ready"));
    const [launcher, ...others] = childPids(guard.pid);
    expect(others).toEqual([]);
    expect(cmdline(launcher!)).toEqual(["sh", join(dir, "launcher.sh")]);
    const workers = childPids(launcher!);
    expect(workers).toHaveLength(2);

    expect(signalWorkers(guard.pid, "sh", "SIGUSR1")).toBe(2);
    await waitFor(() => exists("w1.got") && exists("w2.got"));
    // The workers exit from their trap; the launcher's `wait` returns and it exits 0 (it was not killed).
    await waitFor(() => exists("guard.done"));
    expect(readFileSync(join(dir, "guard.done"), "utf8").trim()).toBe("0");
    expect(exists("launcher.got")).toBe(false);
  });

  it('signalWorkers with a program ("python3") signals only the command, not its children', async () => {
    const guard = start(["/bin/sh", join(dir, "guard.sh"), "train.sh"]);
    await waitFor(() => exists("train.ready") && exists("loader.ready"));
    const [train] = childPids(guard.pid);
    const [loader] = childPids(train!);
    expect(cmdline(loader!)).toEqual(["sh", join(dir, "worker.sh"), "loader"]);

    expect(signalWorkers(guard.pid, "python3", "SIGUSR1")).toBe(1);
    await waitFor(() => exists("train.got"));
    await waitFor(() => exists("guard.done"));
    // The loader was left alone: still alive, its trap never ran...
    await pause(200);
    expect(exists("loader.got")).toBe(false);
    expect(alive(loader!)).toBe(true);
    // ...and it would have noticed a USR1: proof the check above could have failed.
    process.kill(loader!, "SIGUSR1");
    await waitFor(() => exists("loader.got"));
  });

  it("signalWorkers signals nothing when the guard has no children yet (or is gone)", async () => {
    const idle = start(["/bin/sh", "-c", "exec sleep 30"]); // the shell becomes the sleep: no children
    await waitFor(() => cmdline(idle.pid)[0] === "sleep");
    expect(childPids(idle.pid)).toEqual([]);
    expect(signalWorkers(idle.pid, "sh", "SIGUSR1")).toBe(0);
    expect(signalWorkers(idle.pid, "python3", "SIGUSR1")).toBe(0);
    expect(signalWorkers(2 ** 22 + 12_345, "torchrun")).toBe(0);
    expect(alive(idle.pid)).toBe(true); // the guard itself is never signalled
  });
});
