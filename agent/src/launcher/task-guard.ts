#!/usr/bin/env node
/**
 * The task guard: the leader of every task's process group (like Slurm's
 * slurmstepd). `node task-guard.js <grace ms> -- <argv…>` runs argv as its
 * child in the same group, with the guard's stdout/stderr, and:
 *
 * - ends the whole group when its stdin closes — the agent holds the other
 *   end, so an agent that dies (kill -9, OOM, a crashed node's agent) takes
 *   its tasks with it: SIGTERM to the group, the grace, SIGKILL. No task
 *   outlives the agent that started it, so a rank can never run twice at
 *   once when the controller starts the next attempt elsewhere;
 * - survives the group signals the agent sends (SIGTERM on stop, SIGUSR1
 *   for checkpoint-now reaches the group's workers, not the guard), and
 *   exits the way its child did: the same exit code, or the same signal.
 */
import { spawn } from "node:child_process";

function main(): void {
  const argv = process.argv.slice(2);
  const sep = argv.indexOf("--");
  const grace = Number(argv[0]);
  const cmd = argv.slice(sep + 1);
  if (sep !== 1 || !Number.isFinite(grace) || cmd.length === 0) {
    process.stderr.write("usage: task-guard <grace ms> -- <command> [args…]\n");
    process.exit(2);
  }
  // Stop requests reach the whole group; the child handles them, the guard waits for it.
  for (const s of ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2"] as const) process.on(s, () => {});
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ["ignore", "inherit", "inherit"] });
  child.on("error", (err) => {
    process.stderr.write(`task-guard: ${cmd[0]} could not be started: ${err.message}\n`);
    process.exit(127);
  });
  let orphaned = false;
  const endGroup = (): void => {
    if (orphaned) return;
    orphaned = true;
    try {
      process.kill(-process.pid, "SIGTERM");
    } catch {
      return;
    }
    setTimeout(() => {
      try {
        process.kill(-process.pid, "SIGKILL");
      } catch {
        // gone
      }
    }, grace).unref();
  };
  process.stdin.on("end", endGroup);
  process.stdin.on("close", endGroup);
  process.stdin.on("error", endGroup);
  process.stdin.resume();
  child.on("exit", (code, signal) => {
    orphaned = true; // the task ended on its own: nothing to end
    process.stdin.destroy();
    if (signal) {
      for (const s of ["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2"] as const) process.removeAllListeners(s);
      process.kill(process.pid, signal);
      return;
    }
    process.exit(code ?? 1);
  });
}

main();
