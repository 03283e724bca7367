import { readdirSync, readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * Liveness of a whole process group. `kill(-pgid, 0)` answers ESRCH once no
 * member is left; but an orphaned grandchild that died is a zombie until init
 * reaps it, and in a container PID 1 may never do so, so on Linux a group
 * whose remaining members are all zombies also counts as gone.
 */
export function processGroupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
    // EPERM: a member exists that we may not signal; it is alive.
    return true;
  }
  const members = processGroupMembers(pgid);
  return members === undefined || members.some((m) => m.state !== "Z");
}

export interface GroupMember {
  pid: number;
  /** The one-letter state of /proc/<pid>/stat (`R`, `S`, `Z`, …). */
  state: string;
}

/** Members of a process group from /proc; undefined where there is no /proc. */
export function processGroupMembers(pgid: number): GroupMember[] | undefined {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return undefined;
  }
  const members: GroupMember[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // exited while we looked
    }
    // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    if (Number(fields[2]) === pgid) members.push({ pid: Number(entry), state: fields[0] ?? "?" });
  }
  return members;
}

/** Sends `signal` to every member; false when the group is already gone. */
export function signalProcessGroup(pgid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    // ESRCH: nothing left to signal.
    return false;
  }
}

/** Resolves true once the group is gone, false when `timeoutMs` passes first. */
export async function waitProcessGroupGone(pgid: number, timeoutMs: number, pollMs = 25): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (!processGroupAlive(pgid)) return true;
    if (performance.now() >= deadline) return false;
    await sleep(pollMs);
  }
}
