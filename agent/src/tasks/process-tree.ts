import { readFileSync, readdirSync } from "node:fs";

/**
 * Which of a task's processes get SIGUSR1 (the "checkpoint now" signal).
 *
 * A launcher (torchrun, horovodrun, mpirun, a shell) would die of it — the
 * default action of SIGUSR1 is to terminate — and it is not the process
 * that trains, so its direct children get the signal instead: torchrun's
 * workers, the shell's program. Any other leader (python train.py) is the
 * job itself and gets it alone (its own children, e.g. data loader workers,
 * are left alone).
 */
const LAUNCHERS = new Set(["torchrun", "horovodrun", "mpirun", "mpiexec", "sh", "bash", "dash"]);

/** Direct children of `pid`, from /proc (Linux). */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync("/proc");
  } catch {
    return out;
  }
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // Fields after the command (which may contain spaces and parentheses): state, ppid, …
      const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(rest[1]) === pid) out.push(Number(name));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/**
 * Sends SIGUSR1 to the job's training processes (see above); returns how
 * many were signalled. `guardPid` leads the task's group (task-guard.ts);
 * the command it runs is its only child.
 */
export function signalWorkers(guardPid: number, leaderArgv0: string, signal: NodeJS.Signals = "SIGUSR1"): number {
  const leaders = childPids(guardPid);
  const targets = LAUNCHERS.has(leaderArgv0) ? leaders.flatMap(childPids) : leaders;
  let n = 0;
  for (const pid of targets) {
    try {
      process.kill(pid, signal);
      n++;
    } catch {
      // gone already
    }
  }
  return n;
}
