import { posix } from "node:path";
import { AppError, type Framework } from "@gpuorch/core";

/**
 * Turns one node's share of a job attempt into the command the agent runs.
 * Pure: no I/O, no clock; files the launch needs (the horovod host list and
 * discovery script) are returned in `files` and written by the task runner.
 */

/** A host of the job's cluster, in node-rank order. */
export interface LaunchHost {
  /** Private address or name other nodes reach this node at. */
  host: string;
  /** Processes on that node (its allocated GPUs, or its CPU process count). */
  slots: number;
  /** tensorflow_multiworker only: this worker's port; default the master port. */
  port?: number;
}

export interface LaunchEntrypoint {
  /** An argv list (`["python", "train.py"]`, `["train.py"]`) or one shell string. */
  command: readonly string[] | string;
  args?: readonly string[];
  env?: Readonly<Record<string, string>>;
  /** Relative paths are taken from the attempt directory. Default: the attempt directory. */
  workingDir?: string;
}

/** Executables the launch runs; configurable because the first `python3` on PATH may lack torch. */
export interface LauncherPaths {
  torchrun: string;
  python: string;
  horovodrun: string;
  /** Interpreter for shell-string commands. */
  shell: string;
}

export const DEFAULT_LAUNCHER_PATHS: LauncherPaths = {
  torchrun: "torchrun",
  python: "python3",
  horovodrun: "horovodrun",
  shell: "/bin/sh",
};

export interface LaunchTask {
  framework: Framework;
  jobId: string;
  /** The job's attempt number (1-based); each attempt runs in its own directory. */
  attempt: number;
  entrypoint: LaunchEntrypoint;
  nodeRank: number;
  numNodes: number;
  /** GPU indices or MIG UUIDs allocated on this node; become CUDA_VISIBLE_DEVICES. */
  gpus: readonly string[];
  /** Processes per node when no GPU is allocated. Default 1. */
  cpuProcesses?: number;
  /** Private address of the rank-0 node. */
  masterAddr: string;
  /** Chosen by the controller, the same on every node of the attempt. */
  masterPort: number;
  /** Every node of the attempt in node-rank order (horovod, tensorflow_multiworker). Default: the master only. */
  hosts?: readonly LaunchHost[];
  /** horovod_elastic: fewest / most processes; default one node's worth / all of them. */
  minNp?: number;
  maxNp?: number;
}

export interface BuildLaunchOptions {
  /** The agent's work root; the attempt runs in `<workDir>/<jobId>/attempt-<n>/`. */
  workDir: string;
  paths?: Partial<LauncherPaths>;
  /** Set NCCL_SOCKET_IFNAME only when the node config names an interface. */
  ncclSocketIfname?: string;
}

/** A file to write before the launch, relative to the attempt directory. */
export interface LaunchFile {
  name: string;
  content: string;
  mode: number;
}

export interface Launch {
  jobId: string;
  attempt: number;
  nodeRank: number;
  /**
   * `standby`: nothing to run on this node — horovodrun on node 0 starts this
   * node's processes itself (over ssh), so the agent only keeps the node allocated.
   */
  role: "run" | "standby";
  argv: string[];
  /** Only what the launch sets; the runner adds it over the agent's environment. */
  env: Record<string, string>;
  cwd: string;
  attemptDir: string;
  files: LaunchFile[];
  /** Why parts of the entrypoint were changed (for example a user torchrun flag the launcher owns). */
  warnings: string[];
}

export const HOROVOD_HOSTS_FILE = "horovod-hosts";
export const HOROVOD_DISCOVERY_SCRIPT = "discover-hosts.sh";
export const PROGRESS_FILE = "progress";

/** `<workDir>/<jobId>/attempt-<n>` */
export function attemptWorkDir(workDir: string, jobId: string, attempt: number): string {
  return posix.join(workDir, jobId, `attempt-${attempt}`);
}

export function buildLaunch(task: LaunchTask, opts: BuildLaunchOptions): Launch {
  validate(task);
  const paths: LauncherPaths = { ...DEFAULT_LAUNCHER_PATHS, ...opts.paths };
  const attemptDir = attemptWorkDir(opts.workDir, task.jobId, task.attempt);
  const cwd = posix.resolve(attemptDir, task.entrypoint.workingDir ?? ".");
  const nproc = task.gpus.length > 0 ? task.gpus.length : (task.cpuProcesses ?? 1);
  const hosts: readonly LaunchHost[] = task.hosts ?? [{ host: task.masterAddr, slots: nproc }];
  const warnings: string[] = [];
  const files: LaunchFile[] = [];

  // Precedence: launcher defaults < the job's env < what the launcher must control.
  const env: Record<string, string> = {
    PYTHONUNBUFFERED: "1",
    ...task.entrypoint.env,
    CUDA_VISIBLE_DEVICES: task.gpus.join(","),
    GPUORCH_JOB_ID: task.jobId,
    GPUORCH_ATTEMPT: String(task.attempt),
    GPUORCH_NODE_RANK: String(task.nodeRank),
    GPUORCH_NUM_NODES: String(task.numNodes),
    GPUORCH_WORK_DIR: attemptDir,
    GPUORCH_PROGRESS_FILE: posix.join(attemptDir, PROGRESS_FILE),
  };
  const base = { jobId: task.jobId, attempt: task.attempt, nodeRank: task.nodeRank, cwd, attemptDir };

  switch (task.framework) {
    case "pytorch_ddp": {
      const { target, dropped } = torchrunTarget(task.entrypoint, paths);
      for (const flag of dropped) warnings.push(`dropped ${flag} from the entrypoint: the launcher sets torchrun options and its interpreter`);
      const argv = [
        paths.torchrun,
        "--nnodes",
        String(task.numNodes),
        "--nproc_per_node",
        String(nproc),
        "--node_rank",
        String(task.nodeRank),
        "--master_addr",
        task.masterAddr,
        "--master_port",
        String(task.masterPort),
        // Debian's torch 1.13 on Python 3.11 crashes with the default
        // --redirects 0 / --tee 0; with these every line gets a `[defaultN]:` prefix.
        "--redirects",
        "1",
        "--tee",
        "1",
        // torchrun checks its workers every 5 s by default: a finished job would idle that long.
        "--monitor_interval",
        "0.5",
        // Its per-worker logs stay in the attempt's directory, not in /tmp.
        "--log_dir",
        posix.join(attemptDir, "torchrun"),
        ...target,
      ];
      const ddpEnv: Record<string, string> = {
        NCCL_DEBUG: "WARN",
        ...env,
        MASTER_ADDR: task.masterAddr,
        MASTER_PORT: String(task.masterPort),
        WORLD_SIZE: String(task.numNodes * nproc),
        NODE_RANK: String(task.nodeRank),
        LOCAL_WORLD_SIZE: String(nproc),
      };
      if (opts.ncclSocketIfname !== undefined) ddpEnv.NCCL_SOCKET_IFNAME = opts.ncclSocketIfname;
      return { ...base, role: "run", argv, env: ddpEnv, files, warnings };
    }
    case "horovod":
    case "horovod_elastic": {
      const np = hosts.reduce((sum, h) => sum + h.slots, 0);
      const hostList = hosts.map((h) => `${h.host}:${h.slots}`);
      const command = plainCommand(task.entrypoint, paths);
      const hvdEnv: Record<string, string> = { NCCL_DEBUG: "WARN", ...env };
      if (opts.ncclSocketIfname !== undefined) hvdEnv.NCCL_SOCKET_IFNAME = opts.ncclSocketIfname;
      if (task.nodeRank !== 0) {
        warnings.push("horovodrun on node 0 starts this node's processes; nothing runs here");
        return { ...base, role: "standby", argv: [], env: hvdEnv, files, warnings };
      }
      if (task.framework === "horovod") {
        const argv = [paths.horovodrun, "-np", String(np), "-H", hostList.join(","), ...command];
        return { ...base, role: "run", argv, env: hvdEnv, files, warnings };
      }
      const minNp = task.minNp ?? (hosts[0]?.slots ?? nproc);
      const maxNp = task.maxNp ?? np;
      if (minNp > maxNp) {
        throw AppError.invalid(`horovod_elastic: min_np ${minNp} exceeds max_np ${maxNp}`, [
          { field: "minNp", message: `must be at most ${maxNp}` },
        ]);
      }
      // The script reads a file so the agent can change the host set while the job runs.
      files.push({ name: HOROVOD_HOSTS_FILE, content: hostList.map((h) => `${h}\n`).join(""), mode: 0o644 });
      files.push({
        name: HOROVOD_DISCOVERY_SCRIPT,
        content: `#!/bin/sh\nexec cat ${shellQuote(posix.join(attemptDir, HOROVOD_HOSTS_FILE))}\n`,
        mode: 0o755,
      });
      const argv = [
        paths.horovodrun,
        "-np",
        String(np),
        "--min-np",
        String(minNp),
        "--max-np",
        String(maxNp),
        "--host-discovery-script",
        posix.join(attemptDir, HOROVOD_DISCOVERY_SCRIPT),
        ...command,
      ];
      return { ...base, role: "run", argv, env: hvdEnv, files, warnings };
    }
    case "tensorflow_multiworker": {
      const tfConfig = {
        cluster: { worker: hosts.map((h) => `${h.host}:${h.port ?? task.masterPort}`) },
        task: { type: "worker", index: task.nodeRank },
      };
      const argv = plainCommand(task.entrypoint, paths);
      return { ...base, role: "run", argv, env: { ...env, TF_CONFIG: JSON.stringify(tfConfig) }, files, warnings };
    }
    case "pytorch":
    case "command": {
      const argv = plainCommand(task.entrypoint, paths);
      return { ...base, role: "run", argv, env, files, warnings };
    }
  }
}

function validate(task: LaunchTask): void {
  const fields: { field: string; message: string }[] = [];
  const positiveInt = (v: number) => Number.isInteger(v) && v > 0;
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(task.jobId)) fields.push({ field: "jobId", message: "must be a plain name (letters, digits, . _ -)" });
  if (!positiveInt(task.attempt)) fields.push({ field: "attempt", message: "must be a positive integer" });
  if (!positiveInt(task.numNodes)) fields.push({ field: "numNodes", message: "must be a positive integer" });
  if (!Number.isInteger(task.nodeRank) || task.nodeRank < 0 || task.nodeRank >= task.numNodes) {
    fields.push({ field: "nodeRank", message: `must be in [0, ${task.numNodes})` });
  }
  if (task.cpuProcesses !== undefined && !positiveInt(task.cpuProcesses)) fields.push({ field: "cpuProcesses", message: "must be a positive integer" });
  if (!Number.isInteger(task.masterPort) || task.masterPort < 1 || task.masterPort > 65535) fields.push({ field: "masterPort", message: "must be a port (1-65535)" });
  if (task.hosts !== undefined && task.hosts.length !== task.numNodes) {
    fields.push({ field: "hosts", message: `must list ${task.numNodes} hosts, one per node` });
  }
  if (task.hosts?.some((h) => !positiveInt(h.slots))) fields.push({ field: "hosts", message: "slots must be positive integers" });
  const command = task.entrypoint.command;
  if (typeof command === "string" ? command.trim() === "" : command.length === 0) {
    fields.push({ field: "entrypoint.command", message: "must not be empty" });
  }
  if (fields.length > 0) throw AppError.invalid(`invalid launch task: ${fields.map((f) => `${f.field} ${f.message}`).join("; ")}`, fields);
}

const isPython = (exe: string): boolean => /^python[0-9.]*$/.test(posix.basename(exe));
const isTorchrun = (exe: string): boolean => posix.basename(exe) === "torchrun";

/** The entrypoint as plain argv: a shell string runs under the shell, `python` becomes the configured python, a bare `.py` gets it prepended. */
function plainCommand(ep: LaunchEntrypoint, paths: LauncherPaths): string[] {
  const args = ep.args ?? [];
  if (typeof ep.command === "string") {
    return [paths.shell, "-c", ...shellTail(ep.command, args)];
  }
  const [exe, ...rest] = ep.command;
  if (exe === undefined) return [...args];
  if (isPython(exe)) return [paths.python, ...rest, ...args];
  if (exe.endsWith(".py")) return [paths.python, exe, ...rest, ...args];
  return [exe, ...rest, ...args];
}

// torchrun options the launcher owns; a user's value would contradict the allocation.
const OWNED_TORCHRUN_OPTIONS = new Set([
  "nnodes",
  "nproc_per_node",
  "node_rank",
  "master_addr",
  "master_port",
  "redirects",
  "tee",
  "monitor_interval",
  "log_dir",
  "standalone",
  "rdzv_backend",
  "rdzv_endpoint",
  "rdzv_id",
  "rdzv_conf",
]);
// torchrun flags that take no value.
const TORCHRUN_SWITCHES = new Set(["standalone", "no_python", "run_path", "module", "m"]);

/**
 * What torchrun should run: `script.py args`, `-m module args`, or
 * `--no_python exe args`. A command that already starts with torchrun keeps
 * its own options except those the launcher owns.
 */
function torchrunTarget(ep: LaunchEntrypoint, paths: LauncherPaths): { target: string[]; dropped: string[] } {
  const args = ep.args ?? [];
  if (typeof ep.command === "string") return { target: ["--no_python", paths.shell, "-c", ...shellTail(ep.command, args)], dropped: [] };
  const [exe, ...rest] = ep.command;
  if (exe === undefined) return { target: [...args], dropped: [] };
  if (isTorchrun(exe)) {
    const kept: string[] = [];
    const dropped: string[] = [];
    let i = 0;
    for (; i < rest.length; i++) {
      const token = rest[i] ?? "";
      if (!token.startsWith("-")) break;
      const [rawName = "", inlineValue] = token.replace(/^--?/, "").split(/=(.*)/s, 2);
      const name = rawName.replaceAll("-", "_");
      const takesValue = !TORCHRUN_SWITCHES.has(name) && inlineValue === undefined;
      const option = takesValue && i + 1 < rest.length ? [token, rest[i + 1] ?? ""] : [token];
      if (takesValue) i++;
      if (OWNED_TORCHRUN_OPTIONS.has(name)) dropped.push(token);
      else kept.push(...option);
    }
    return { target: [...kept, ...rest.slice(i), ...args], dropped };
  }
  if (isPython(exe)) {
    // torchrun runs scripts with its own interpreter: `python -m mod` becomes
    // `-m mod`; interpreter flags (-u, -O) have no torchrun equivalent.
    let i = 0;
    const dropped: string[] = [];
    while (i < rest.length && (rest[i] ?? "").startsWith("-") && rest[i] !== "-m") dropped.push(rest[i++] ?? "");
    return { target: [...rest.slice(i), ...args], dropped };
  }
  if (exe.endsWith(".py")) return { target: [exe, ...rest, ...args], dropped: [] };
  return { target: ["--no_python", exe, ...rest, ...args], dropped: [] };
}

// `"$@"` hands the args to the string as positional parameters, so no quoting of ours is involved.
function shellTail(command: string, args: readonly string[]): string[] {
  return args.length > 0 ? [`${command} "$@"`, "sh", ...args] : [command];
}

function shellQuote(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}
