import { AppError, type AgentArtifactReport, type AgentInterruptionReport, FRAMEWORKS, type TaskCheckpointNowCommand, type TaskLaunchCommand } from "@gpuorch/core";
import * as pb from "@gpuorch/proto";
import { describe, expect, it } from "vitest";
import {
  artifactReportFromProto,
  artifactReportToProto,
  checkpointNowFromProto,
  checkpointNowToProto,
  interruptionFromProto,
  interruptionToProto,
  launchFromProto,
  launchToProto,
} from "./task-convert.js";

const JOB = "0197a0c0-0000-7000-8000-0000000000c1";
const TASK = "0197a0c0-0000-7000-8000-0000000000d1";
const ART = "0197a0c0-0000-7000-8000-0000000000a1";
const SHA = "0123456789abcdef".repeat(4);

/** The error `fn` throws (it must throw an AppError). */
function errorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error("expected an AppError, nothing was thrown");
}

const launch: TaskLaunchCommand = {
  commandId: "cmd-1",
  taskId: TASK,
  jobId: JOB,
  jobName: "resnet",
  attempt: 4,
  framework: "pytorch_ddp",
  entrypoint: { uri: "s3://code/train.tgz", command: ["python", "train.py"], commandShell: false, args: ["--lr", "0.1"], env: { A: "1" }, workingDir: "src" },
  nodeRank: 1,
  numNodes: 2,
  gpus: ["0", "MIG-abc"],
  masterAddr: "10.0.0.1",
  masterPort: 29500,
  hosts: [
    { host: "10.0.0.1", slots: 8, port: 22 },
    { host: "10.0.0.2", slots: 8, port: 22 },
  ],
  unit: -1,
  cpuProcesses: 0,
  checkpoint: { uri: "s3://ckpts/resnet/", keep: 3, intervalSteps: 500, intervalSeconds: 1800.5, trigger: "file" },
  resume: { uri: `s3://ckpts/resnet/${JOB}/attempt-3/step-000000001500/gpuorch-manifest.json`, sha256: SHA, step: 1500, attempt: 3 },
  datasetUri: "s3://data/shard-0/",
};

const wireLaunch = (c: TaskLaunchCommand): pb.LaunchTask => pb.LaunchTask.decode(pb.LaunchTask.encode(launchToProto(c)).finish());

const artifact: AgentArtifactReport = {
  artifactId: ART,
  taskId: TASK,
  jobId: JOB,
  attempt: 4,
  nodeRank: 1,
  type: "checkpoint",
  uri: `s3://ckpts/resnet/${JOB}/attempt-4/step-000000002000/gpuorch-manifest.json`,
  step: 2000,
  bytes: 5_368_709_120, // > 2^32: int64 on the wire
  sha256: SHA,
  emergency: true,
};

const wireArtifact = (a: AgentArtifactReport): pb.ArtifactReport => pb.ArtifactReport.decode(pb.ArtifactReport.encode(artifactReportToProto(a)).finish());

describe("launch conversions (checkpoint, resume, dataset)", () => {
  it("round-trips a launch with a checkpoint policy, a resume point and a dataset through the wire bytes", () => {
    expect(launchFromProto(wireLaunch(launch))).toEqual(launch);
  });

  it("round-trips a launch without checkpoint, resume or dataset as nulls and an empty string", () => {
    const fresh: TaskLaunchCommand = { ...launch, checkpoint: null, resume: null, datasetUri: "" };
    const wire = wireLaunch(fresh);
    expect(wire.checkpoint).toBeUndefined();
    expect(wire.resume).toBeUndefined();
    expect(launchFromProto(wire)).toEqual(fresh);
  });

  it("keeps absent intervals null, a step-0 resume, and the signal trigger", () => {
    const c: TaskLaunchCommand = {
      ...launch,
      checkpoint: { uri: "file:///ckpts", keep: 1, intervalSteps: null, intervalSeconds: null, trigger: "signal" },
      resume: { ...launch.resume!, step: 0, attempt: 1 },
    };
    expect(launchFromProto(wireLaunch(c))).toEqual(c);
  });

  it("round-trips every framework", () => {
    for (const framework of FRAMEWORKS) expect(launchFromProto(wireLaunch({ ...launch, framework })).framework).toBe(framework);
  });

  it("reads an empty trigger (an older controller) as signal", () => {
    const p = launchToProto(launch);
    p.checkpoint = { ...p.checkpoint!, trigger: "" };
    expect(launchFromProto(p).checkpoint?.trigger).toBe("signal");
  });

  it("refuses a bad launch naming the field", () => {
    const cases: [Partial<pb.LaunchTask>, string][] = [
      [{ commandId: "" }, "launch.command_id"],
      [{ taskId: "" }, "launch.task_id"],
      [{ jobId: "" }, "launch.job_id"],
      [{ attempt: 0 }, "launch.attempt"],
      [{ nodeRank: 2 }, "launch.node_rank"],
      [{ nodeRank: -1 }, "launch.node_rank"],
      [{ numNodes: 0, nodeRank: 0 }, "launch.node_rank"],
      [{ framework: pb.Framework.FRAMEWORK_UNSPECIFIED }, "launch.framework"],
    ];
    for (const [patch, field] of cases) {
      const e = errorOf(() => launchFromProto({ ...launchToProto(launch), ...patch }));
      expect(e.code, field).toBe("INVALID_ARGUMENT");
      expect(e.fields.map((f) => f.field), JSON.stringify(patch)).toEqual([field]);
    }
  });

  it("refuses a bad checkpoint policy naming the field", () => {
    const base = launchToProto(launch).checkpoint!;
    const cases: [Partial<pb.CheckpointPolicy>, string, RegExp][] = [
      [{ uri: "" }, "launch.checkpoint.uri", /required/],
      [{ keep: 0 }, "launch.checkpoint.keep", /must be >= 1/],
      [{ keep: -3 }, "launch.checkpoint.keep", /must be >= 1/],
      [{ trigger: "sigterm" }, "launch.checkpoint.trigger", /signal, file/],
    ];
    for (const [patch, field, msg] of cases) {
      const e = errorOf(() => launchFromProto({ ...launchToProto(launch), checkpoint: { ...base, ...patch } }));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.fields.map((f) => f.field)).toEqual([field]);
      expect(e.message).toMatch(msg);
    }
  });

  it("refuses an incomplete resume point (no uri, a sha256 that is not lowercase hex, a negative or huge step)", () => {
    const base = launchToProto(launch).resume!;
    for (const patch of [{ uri: "" }, { sha256: "" }, { sha256: SHA.toUpperCase() }, { sha256: SHA.slice(1) }, { step: "-1" }, { step: "9007199254740993" }] satisfies Partial<pb.ResumeFrom>[]) {
      const e = errorOf(() => launchFromProto({ ...launchToProto(launch), resume: { ...base, ...patch } }));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.fields.map((f) => f.field), JSON.stringify(patch)).toEqual(["launch.resume"]);
    }
  });
});

describe("artifact report conversions", () => {
  it("round-trips a checkpoint report (int64 bytes beyond 2^32, emergency) through the wire bytes", () => {
    expect(artifactReportFromProto(wireArtifact(artifact))).toEqual(artifact);
  });

  it("round-trips a log report without a step, and a step-0 checkpoint", () => {
    const log: AgentArtifactReport = { ...artifact, type: "log", step: null, bytes: 0, emergency: false, uri: `s3://ckpts/resnet/${JOB}/attempt-4/logs/node-1.log` };
    const wire = wireArtifact(log);
    expect(wire.step).toBeUndefined();
    expect(artifactReportFromProto(wire)).toEqual(log);
    const zero: AgentArtifactReport = { ...artifact, step: 0 };
    expect(wireArtifact(zero).step).toBe("0");
    expect(artifactReportFromProto(wireArtifact(zero))).toEqual(zero);
  });

  it("normalizes an upper-case artifact id to lower case", () => {
    expect(artifactReportFromProto(wireArtifact({ ...artifact, artifactId: ART.toUpperCase() })).artifactId).toBe(ART);
  });

  it("refuses a bad report naming the field", () => {
    const cases: [Partial<pb.ArtifactReport>, string][] = [
      [{ artifactId: "" }, "artifact.artifact_id"],
      [{ artifactId: "not-a-uuid" }, "artifact.artifact_id"],
      [{ artifactId: `${ART}0` }, "artifact.artifact_id"],
      [{ jobId: "" }, "artifact.job_id"],
      [{ attempt: 0 }, "artifact.attempt"],
      [{ uri: "" }, "artifact.uri"],
      [{ sha256: "" }, "artifact.sha256"],
      [{ sha256: SHA.toUpperCase() }, "artifact.sha256"],
      [{ sha256: `${SHA}0` }, "artifact.sha256"],
      [{ sha256: "g".repeat(64) }, "artifact.sha256"],
      [{ bytes: "-1" }, "artifact.bytes"],
      [{ bytes: "9007199254740993" }, "artifact.bytes"],
      [{ step: "-5" }, "artifact.step"],
      [{ step: undefined }, "artifact.step"], // a checkpoint needs a step
      [{ type: pb.ArtifactType.ARTIFACT_TYPE_UNSPECIFIED }, "artifact.type"],
      [{ type: 99 as pb.ArtifactType }, "artifact.type"],
    ];
    for (const [patch, field] of cases) {
      const e = errorOf(() => artifactReportFromProto({ ...artifactReportToProto(artifact), ...patch }));
      expect(e.code, JSON.stringify(patch)).toBe("INVALID_ARGUMENT");
      expect(e.fields.map((f) => f.field), JSON.stringify(patch)).toEqual([field]);
      expect(e.message, JSON.stringify(patch)).toContain(field);
    }
    expect(errorOf(() => artifactReportFromProto({ ...artifactReportToProto(artifact), step: undefined })).message).toMatch(/required for a checkpoint/);
  });

  it("accepts a non-checkpoint without a step", () => {
    const p = { ...artifactReportToProto(artifact), type: pb.ArtifactType.ARTIFACT_TYPE_MODEL, step: undefined };
    expect(artifactReportFromProto(p)).toMatchObject({ type: "model", step: null });
  });
});

describe("interruption report conversions", () => {
  const report: AgentInterruptionReport = {
    provider: "aws",
    kind: "terminate",
    at: new Date("2030-05-01T12:00:02.000Z"),
    detail: '{"action":"terminate"}',
    stage: "notice",
    message: "",
    tasks: [
      { taskId: TASK, jobId: JOB, attempt: 4 },
      { taskId: "t2", jobId: "j2", attempt: 1 },
    ],
  };
  const wire = (r: AgentInterruptionReport): pb.InterruptionReport => pb.InterruptionReport.decode(pb.InterruptionReport.encode(interruptionToProto(r)).finish());

  it("round-trips every stage, with and without a time", () => {
    for (const stage of ["notice", "checkpointed", "checkpoint_failed"] as const) {
      expect(interruptionFromProto(wire({ ...report, stage }))).toEqual({ ...report, stage });
    }
    const noTime: AgentInterruptionReport = { ...report, at: null, stage: "checkpoint_failed", message: "no checkpoint within 120 s", tasks: [] };
    expect(wire(noTime).at).toBeUndefined();
    expect(interruptionFromProto(wire(noTime))).toEqual(noTime);
  });

  it("refuses an unspecified or unknown stage naming the field", () => {
    for (const stage of [pb.InterruptionStage.INTERRUPTION_STAGE_UNSPECIFIED, 42 as pb.InterruptionStage]) {
      const e = errorOf(() => interruptionFromProto({ ...interruptionToProto(report), stage }));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.fields.map((f) => f.field)).toEqual(["interruption.stage"]);
    }
  });
});

describe("checkpoint-now conversions", () => {
  const cmd: TaskCheckpointNowCommand = { commandId: "cmd-9", taskId: TASK, jobId: JOB, attempt: 4, reason: "spot interruption notice (aws terminate)" };

  it("round-trips through the wire bytes", () => {
    const wire = pb.CheckpointNow.decode(pb.CheckpointNow.encode(checkpointNowToProto(cmd)).finish());
    expect(checkpointNowFromProto(wire)).toEqual(cmd);
  });

  it("refuses a command without a command id or a task id", () => {
    for (const patch of [{ commandId: "" }, { taskId: "" }]) {
      const e = errorOf(() => checkpointNowFromProto({ ...checkpointNowToProto(cmd), ...patch }));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.message).toMatch(/checkpoint_now\.(command_id|task_id): required/);
    }
  });
});
