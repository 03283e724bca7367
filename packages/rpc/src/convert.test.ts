import {
  ARTIFACT_TYPES,
  EXECUTION_MODES,
  FRAMEWORKS,
  JOB_STATUSES,
  JOB_TYPES,
  type Job,
  type JobArtifact,
  type JobEvent,
} from "@gpuorch/core";
import * as pb from "@gpuorch/proto";
import { describe, expect, it } from "vitest";
import {
  artifactFromProto,
  artifactToJson,
  artifactToProto,
  artifactTypeFromProto,
  artifactTypeFromProtoOrNull,
  artifactTypeToProto,
  executionModeFromProto,
  executionModeToProto,
  frameworkFromProto,
  frameworkToProto,
  jobEventFromProto,
  jobEventToJson,
  jobEventToProto,
  jobFromProto,
  jobStatusFromProto,
  jobStatusToProto,
  jobToJson,
  jobToProto,
  jobTypeFromProto,
  jobTypeToProto,
} from "./convert.js";

function sampleJob(over: Partial<Job> = {}): Job {
  return {
    id: "0190c3a2-0000-7000-8000-000000000001",
    teamId: "team-1",
    teamName: "vision",
    name: "resnet",
    project: null,
    type: "training",
    framework: "pytorch_ddp",
    executionMode: "single_cluster",
    status: "pending",
    statusReason: null,
    priority: 5,
    attempt: 1,
    maxAttempts: 3,
    version: 7,
    gpus: 8,
    specYaml: "name: resnet\n",
    budgetUsd: null,
    deadline: null,
    estimatedCostUsd: null,
    runningCostUsd: "0",
    target: null,
    createdAt: new Date("2025-01-02T03:04:05.678Z"),
    updatedAt: new Date("2025-01-02T03:04:06.000Z"),
    scheduledAt: null,
    startedAt: null,
    finishedAt: null,
    ...over,
  };
}

describe("enum conversions", () => {
  it("round-trips every JobStatus, JobType, Framework, ExecutionMode and ArtifactType", () => {
    for (const s of JOB_STATUSES) expect(jobStatusFromProto(jobStatusToProto(s))).toBe(s);
    for (const t of JOB_TYPES) expect(jobTypeFromProto(jobTypeToProto(t))).toBe(t);
    for (const f of FRAMEWORKS) expect(frameworkFromProto(frameworkToProto(f))).toBe(f);
    for (const m of EXECUTION_MODES) expect(executionModeFromProto(executionModeToProto(m))).toBe(m);
    for (const a of ARTIFACT_TYPES) expect(artifactTypeFromProto(artifactTypeToProto(a))).toBe(a);
  });

  it("maps each domain value to a distinct proto value and covers every proto value", () => {
    const count = (e: object) => Object.values(e).filter((v) => typeof v === "number" && v > 0).length;
    expect(new Set(JOB_STATUSES.map(jobStatusToProto)).size).toBe(count(pb.JobStatus));
    expect(new Set(JOB_TYPES.map(jobTypeToProto)).size).toBe(count(pb.JobType));
    expect(new Set(FRAMEWORKS.map(frameworkToProto)).size).toBe(count(pb.Framework));
    expect(new Set(EXECUTION_MODES.map(executionModeToProto)).size).toBe(count(pb.ExecutionMode));
    expect(new Set(ARTIFACT_TYPES.map(artifactTypeToProto)).size).toBe(count(pb.ArtifactType));
  });

  it("rejects UNSPECIFIED and unknown values as INVALID_ARGUMENT naming the field", () => {
    expect(() => jobStatusFromProto(pb.JobStatus.JOB_STATUS_UNSPECIFIED, "statuses[0]")).toThrow(
      expect.objectContaining({ code: "INVALID_ARGUMENT", fields: [expect.objectContaining({ field: "statuses[0]" })] }),
    );
    expect(() => frameworkFromProto(42 as pb.Framework)).toThrow(/unknown value 42/);
    expect(artifactTypeFromProtoOrNull(pb.ArtifactType.ARTIFACT_TYPE_UNSPECIFIED)).toBeNull();
  });
});

describe("message conversions", () => {
  it("round-trips a bare job (nulls ↔ empty strings / unset timestamps)", () => {
    const job = sampleJob();
    const p = jobToProto(job);
    expect(p).toMatchObject({ team: "vision", project: "", statusReason: "", budgetUsd: "", version: "7", target: undefined, deadline: undefined });
    const { teamId: _teamId, ...wire } = job;
    expect(jobFromProto(p)).toEqual(wire);
    // And through the binary encoding too.
    expect(jobFromProto(pb.Job.decode(pb.Job.encode(p).finish()))).toEqual(wire);
  });

  it("round-trips a placed, finished job", () => {
    const job = sampleJob({
      project: "imagenet",
      status: "completed",
      statusReason: "exit 0",
      budgetUsd: "100.50",
      estimatedCostUsd: "42.123456",
      runningCostUsd: "40.000001",
      deadline: new Date("2025-02-01T00:00:00.000Z"),
      target: { provider: "aws", region: "us-east-1", zone: null, instanceType: "p4d.24xlarge", instanceCount: 2, spot: true },
      scheduledAt: new Date("2025-01-02T03:05:00.000Z"),
      startedAt: new Date("2025-01-02T03:06:00.000Z"),
      finishedAt: new Date("2025-01-02T05:06:00.001Z"),
    });
    const { teamId: _teamId, ...wire } = job;
    expect(jobFromProto(pb.Job.decode(pb.Job.encode(jobToProto(job)).finish()))).toEqual(wire);
    expect(jobToProto(job, { includeSpec: false }).specYaml).toBe("");
  });

  it("round-trips events, including a creating event without from_status", () => {
    const events: JobEvent[] = [
      { jobId: "j", seq: 1, fromStatus: null, toStatus: "pending", attempt: 1, reason: "submitted", actor: "user:alice", createdAt: new Date(1) },
      { jobId: "j", seq: 2, fromStatus: "pending", toStatus: "scheduled", attempt: 1, reason: "placed", actor: "scheduler", createdAt: new Date(2) },
    ];
    for (const e of events) {
      expect(jobEventFromProto(pb.JobEvent.decode(pb.JobEvent.encode(jobEventToProto(e)).finish()))).toEqual(e);
    }
  });

  it("round-trips artifacts with and without step, size and digest", () => {
    const full: JobArtifact = { id: "a1", jobId: "j", attempt: 2, type: "checkpoint", uri: "s3://b/k", step: 0, bytes: 1234, sha256: "ab".repeat(32), createdAt: new Date(5) };
    const bare: JobArtifact = { ...full, id: "a2", type: "log", step: null, bytes: null, sha256: null };
    const empty: JobArtifact = { ...full, id: "a3", type: "metrics", bytes: 0 };
    for (const a of [full, bare, empty]) expect(artifactFromProto(artifactToProto(a))).toEqual(a);
  });

  it("rejects an unknown provider and a missing created_at", () => {
    const p = jobToProto(sampleJob({ target: { provider: "aws", region: "r", zone: "z", instanceType: "i", instanceCount: 1, spot: false } }));
    expect(() => jobFromProto({ ...p, target: { ...p.target!, provider: "oracle" } })).toThrow(/provider/);
    expect(() => jobFromProto({ ...p, createdAt: undefined })).toThrow(/created_at/);
  });
});

describe("canonical JSON", () => {
  it("has exactly the documented snake_case keys", () => {
    const json = jobToJson(
      sampleJob({ target: { provider: "gcp", region: "us-central1", zone: "us-central1-a", instanceType: "a3-highgpu-8g", instanceCount: 1, spot: false } }),
    );
    expect(Object.keys(json)).toEqual([
      "id", "name", "team", "project", "type", "framework", "execution_mode", "status", "status_reason",
      "priority", "attempt", "max_attempts", "gpus", "budget_usd", "estimated_cost_usd", "running_cost_usd",
      "selected_target", "deadline", "created_at", "updated_at", "scheduled_at", "started_at", "finished_at", "version",
    ]);
    expect(json.selected_target).toEqual({
      provider: "gcp",
      region: "us-central1",
      zone: "us-central1-a",
      instance_type: "a3-highgpu-8g",
      instance_count: 1,
      spot: false,
    });
    expect(json.created_at).toBe("2025-01-02T03:04:05.678Z");
    expect(json.deadline).toBeNull();
    expect(json.version).toBe(7);
    expect(jobToJson(sampleJob(), { includeSpec: true }).spec_yaml).toBe("name: resnet\n");
  });

  it("gives the same JSON from a domain job and from its wire form", () => {
    const job = sampleJob({ status: "running", startedAt: new Date(10) });
    expect(jobToJson(jobFromProto(jobToProto(job)))).toEqual(jobToJson(job));
  });

  it("renders events and artifacts", () => {
    expect(jobEventToJson({ jobId: "j", seq: 1, fromStatus: null, toStatus: "pending", attempt: 1, reason: "r", actor: "a", createdAt: new Date(0) })).toEqual({
      job_id: "j", seq: 1, from_status: null, to_status: "pending", attempt: 1, reason: "r", actor: "a", created_at: "1970-01-01T00:00:00.000Z",
    });
    expect(artifactToJson({ id: "a", jobId: "j", attempt: 1, type: "model", uri: "file:///m", step: null, bytes: 3, sha256: null, createdAt: new Date(0) })).toEqual({
      id: "a", job_id: "j", attempt: 1, type: "model", uri: "file:///m", step: null, bytes: 3, sha256: null, created_at: "1970-01-01T00:00:00.000Z",
    });
  });
});
