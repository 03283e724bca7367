import { describe, expect, it } from "vitest";
import { AppError } from "@gpuorch/core";
import { attemptWorkDir, buildLaunch, type LaunchTask } from "./launch-builder.js";

const WORK = "/var/lib/gpuorch/work";
const DIR = "/var/lib/gpuorch/work/job-7/attempt-2";

const base: LaunchTask = {
  framework: "pytorch_ddp",
  jobId: "job-7",
  attempt: 2,
  entrypoint: { command: ["python", "train.py"], args: ["--epochs", "3"], env: { NCCL_DEBUG: "INFO", FOO: "bar" } },
  nodeRank: 1,
  numNodes: 2,
  gpus: ["0", "1", "2", "3"],
  masterAddr: "10.0.0.5",
  masterPort: 29500,
  hosts: [
    { host: "10.0.0.5", slots: 4 },
    { host: "10.0.0.6", slots: 4 },
  ],
};

const commonEnv = {
  PYTHONUNBUFFERED: "1",
  FOO: "bar",
  GPUORCH_JOB_ID: "job-7",
  GPUORCH_ATTEMPT: "2",
  GPUORCH_NODE_RANK: "1",
  GPUORCH_NUM_NODES: "2",
  GPUORCH_WORK_DIR: DIR,
  GPUORCH_PROGRESS_FILE: `${DIR}/progress`,
};

describe("buildLaunch", () => {
  it("puts each attempt in <workDir>/<jobId>/attempt-<n>", () => {
    expect(attemptWorkDir(WORK, "job-7", 2)).toBe(DIR);
  });

  it("pytorch_ddp: torchrun with the node's share, the Debian 1.13 redirect workaround, and the DDP env", () => {
    const launch = buildLaunch(base, { workDir: WORK, paths: { torchrun: "/usr/bin/torchrun" } });
    expect(launch.role).toBe("run");
    expect(launch.argv).toEqual([
      "/usr/bin/torchrun",
      "--nnodes", "2",
      "--nproc_per_node", "4",
      "--node_rank", "1",
      "--master_addr", "10.0.0.5",
      "--master_port", "29500",
      "--redirects", "1",
      "--tee", "1",
      "--monitor_interval", "0.5",
      "--log_dir", `${WORK}/job-7/attempt-2/torchrun`,
      "train.py", "--epochs", "3",
    ]);
    expect(launch.env).toEqual({
      ...commonEnv,
      NCCL_DEBUG: "INFO", // the job's own setting wins over the launcher's default
      CUDA_VISIBLE_DEVICES: "0,1,2,3",
      MASTER_ADDR: "10.0.0.5",
      MASTER_PORT: "29500",
      WORLD_SIZE: "8",
      NODE_RANK: "1",
      LOCAL_WORLD_SIZE: "4",
    });
    expect(launch.cwd).toBe(DIR);
    expect(launch.attemptDir).toBe(DIR);
    expect(launch.files).toEqual([]);
    expect(launch.warnings).toEqual([]);
  });

  it("pytorch_ddp: NCCL_DEBUG defaults to WARN and NCCL_SOCKET_IFNAME is set only when configured", () => {
    const task: LaunchTask = { ...base, entrypoint: { command: ["train.py"] } };
    const plain = buildLaunch(task, { workDir: WORK });
    expect(plain.env.NCCL_DEBUG).toBe("WARN");
    expect(plain.env).not.toHaveProperty("NCCL_SOCKET_IFNAME");
    expect(buildLaunch(task, { workDir: WORK, ncclSocketIfname: "ens5" }).env.NCCL_SOCKET_IFNAME).toBe("ens5");
  });

  it("pytorch_ddp: MIG UUIDs go to CUDA_VISIBLE_DEVICES and count as processes", () => {
    const launch = buildLaunch(
      { ...base, nodeRank: 0, numNodes: 1, hosts: undefined, gpus: ["MIG-aaaa", "MIG-bbbb"] },
      { workDir: WORK },
    );
    expect(launch.env.CUDA_VISIBLE_DEVICES).toBe("MIG-aaaa,MIG-bbbb");
    expect(launch.argv.slice(0, 5)).toEqual(["torchrun", "--nnodes", "1", "--nproc_per_node", "2"]);
    expect(launch.env.WORLD_SIZE).toBe("2");
  });

  it("pytorch_ddp: a CPU node runs cpuProcesses per node and sees no GPU", () => {
    const launch = buildLaunch({ ...base, gpus: [], cpuProcesses: 3 }, { workDir: WORK });
    expect(launch.argv.slice(3, 5)).toEqual(["--nproc_per_node", "3"]);
    expect(launch.env.CUDA_VISIBLE_DEVICES).toBe("");
    expect(launch.env.WORLD_SIZE).toBe("6");
  });

  it("pytorch_ddp: a user torchrun command keeps its own options but not those the launcher owns", () => {
    const launch = buildLaunch(
      { ...base, entrypoint: { command: ["torchrun", "--nproc-per-node=8", "--max_restarts", "2", "--nnodes", "4", "train.py"], args: ["--amp"] } },
      { workDir: WORK },
    );
    expect(launch.argv.slice(19)).toEqual(["--max_restarts", "2", "train.py", "--amp"]);
    expect(launch.warnings).toEqual([
      "dropped --nproc-per-node=8 from the entrypoint: the launcher sets torchrun options and its interpreter",
      "dropped --nnodes from the entrypoint: the launcher sets torchrun options and its interpreter",
    ]);
  });

  it("pytorch_ddp: python -m becomes torchrun -m, other executables run with --no_python, shell strings under sh", () => {
    const tail = (command: LaunchTask["entrypoint"]["command"], args?: string[]) =>
      buildLaunch({ ...base, entrypoint: { command, ...(args ? { args } : {}) } }, { workDir: WORK }).argv.slice(19);
    expect(tail(["python3", "-u", "-m", "mypkg.train"], ["--lr", "0.1"])).toEqual(["-m", "mypkg.train", "--lr", "0.1"]);
    expect(tail(["./run.sh", "fast"])).toEqual(["--no_python", "./run.sh", "fast"]);
    expect(tail("python train.py --x 1 | tee log", ["a b"])).toEqual([
      "--no_python", "/bin/sh", "-c", 'python train.py --x 1 | tee log "$@"', "sh", "a b",
    ]);
  });

  it("horovod: horovodrun on node 0 over every host's slots", () => {
    const launch = buildLaunch(
      { ...base, framework: "horovod", nodeRank: 0, entrypoint: { ...base.entrypoint, command: ["python", "train_hvd.py"] } },
      { workDir: WORK, paths: { horovodrun: "/opt/hvd/bin/horovodrun", python: "/usr/bin/python3" } },
    );
    expect(launch.role).toBe("run");
    expect(launch.argv).toEqual([
      "/opt/hvd/bin/horovodrun", "-np", "8", "-H", "10.0.0.5:4,10.0.0.6:4",
      "/usr/bin/python3", "train_hvd.py", "--epochs", "3",
    ]);
    expect(launch.env).toEqual({
      ...commonEnv,
      GPUORCH_NODE_RANK: "0",
      NCCL_DEBUG: "INFO",
      CUDA_VISIBLE_DEVICES: "0,1,2,3",
    });
  });

  it("horovod: other nodes stand by, horovodrun starts their processes", () => {
    const launch = buildLaunch({ ...base, framework: "horovod" }, { workDir: WORK });
    expect(launch.role).toBe("standby");
    expect(launch.argv).toEqual([]);
  });

  it("horovod_elastic: min/max np and a discovery script that prints the host file", () => {
    const launch = buildLaunch(
      { ...base, framework: "horovod_elastic", nodeRank: 0, maxNp: 16, entrypoint: { command: ["train_elastic.py"] } },
      { workDir: WORK },
    );
    expect(launch.argv).toEqual([
      "horovodrun", "-np", "8", "--min-np", "4", "--max-np", "16",
      "--host-discovery-script", `${DIR}/discover-hosts.sh`,
      "python3", "train_elastic.py",
    ]);
    expect(launch.files).toEqual([
      { name: "horovod-hosts", content: "10.0.0.5:4\n10.0.0.6:4\n", mode: 0o644 },
      { name: "discover-hosts.sh", content: `#!/bin/sh\nexec cat '${DIR}/horovod-hosts'\n`, mode: 0o755 },
    ]);
  });

  it("horovod_elastic: min_np above max_np is rejected", () => {
    expect(() => buildLaunch({ ...base, framework: "horovod_elastic", nodeRank: 0, minNp: 10, maxNp: 8 }, { workDir: WORK })).toThrow(
      /min_np 10 exceeds max_np 8/,
    );
  });

  it("tensorflow_multiworker: TF_CONFIG names every worker and this node's index", () => {
    const launch = buildLaunch(
      { ...base, framework: "tensorflow_multiworker", entrypoint: { command: ["python", "train_tf.py"], env: { NCCL_DEBUG: "INFO", FOO: "bar" } } },
      { workDir: WORK },
    );
    expect(launch.argv).toEqual(["python3", "train_tf.py"]);
    expect(launch.env).toEqual({
      ...commonEnv,
      NCCL_DEBUG: "INFO",
      CUDA_VISIBLE_DEVICES: "0,1,2,3",
      TF_CONFIG: '{"cluster":{"worker":["10.0.0.5:29500","10.0.0.6:29500"]},"task":{"type":"worker","index":1}}',
    });
  });

  it("tensorflow_multiworker: a host's own port is used when given", () => {
    const launch = buildLaunch(
      {
        ...base,
        framework: "tensorflow_multiworker",
        hosts: [
          { host: "127.0.0.1", slots: 1, port: 4001 },
          { host: "127.0.0.1", slots: 1, port: 4002 },
        ],
      },
      { workDir: WORK },
    );
    expect(JSON.parse(launch.env.TF_CONFIG ?? "")).toEqual({
      cluster: { worker: ["127.0.0.1:4001", "127.0.0.1:4002"] },
      task: { type: "worker", index: 1 },
    });
  });

  it("pytorch and command: plain argv, relative working_dir under the attempt directory", () => {
    const pytorch = buildLaunch(
      { ...base, framework: "pytorch", numNodes: 1, nodeRank: 0, hosts: undefined, entrypoint: { command: ["python", "eval.py"], args: ["--split", "test"], workingDir: "code", env: { NCCL_DEBUG: "INFO", FOO: "bar" } } },
      { workDir: WORK, paths: { python: "/usr/bin/python3" } },
    );
    expect(pytorch.argv).toEqual(["/usr/bin/python3", "eval.py", "--split", "test"]);
    expect(pytorch.cwd).toBe(`${DIR}/code`);
    expect(pytorch.env).toEqual({ ...commonEnv, GPUORCH_NODE_RANK: "0", GPUORCH_NUM_NODES: "1", NCCL_DEBUG: "INFO", CUDA_VISIBLE_DEVICES: "0,1,2,3" });

    const command = buildLaunch(
      { ...base, framework: "command", numNodes: 1, nodeRank: 0, hosts: undefined, entrypoint: { command: "echo $1 && nvidia-smi", args: ["hi"], workingDir: "/srv/app" } },
      { workDir: WORK },
    );
    expect(command.argv).toEqual(["/bin/sh", "-c", 'echo $1 && nvidia-smi "$@"', "sh", "hi"]);
    expect(command.cwd).toBe("/srv/app");
    expect(buildLaunch({ ...base, framework: "command", entrypoint: { command: ["/bin/true"] } }, { workDir: WORK }).argv).toEqual(["/bin/true"]);
  });

  it("the launcher's variables win over the job's env", () => {
    const launch = buildLaunch(
      { ...base, entrypoint: { command: ["train.py"], env: { MASTER_PORT: "1", CUDA_VISIBLE_DEVICES: "7", GPUORCH_ATTEMPT: "9" } } },
      { workDir: WORK },
    );
    expect(launch.env).toMatchObject({ MASTER_PORT: "29500", CUDA_VISIBLE_DEVICES: "0,1,2,3", GPUORCH_ATTEMPT: "2" });
  });

  it("rejects an impossible task with every offending field", () => {
    let caught: unknown;
    try {
      buildLaunch({ ...base, jobId: "../x", nodeRank: 2, masterPort: 70000, hosts: [{ host: "a", slots: 1 }], entrypoint: { command: [] } }, { workDir: WORK });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(AppError);
    const err = caught as AppError;
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.fields.map((f) => f.field)).toEqual(["jobId", "nodeRank", "masterPort", "hosts", "entrypoint.command"]);
  });
});
