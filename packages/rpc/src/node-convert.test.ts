import { AppError, NODE_STATES, type NodeInfo } from "@gpuorch/core";
import * as pb from "@gpuorch/proto";
import { describe, expect, it } from "vitest";
import { gpuSampleFromProto, gpuSampleToProto, nodeFromProto, nodeRegistrationFromProto, nodeStateFromProto, nodeStateToProto, nodeToJson, nodeToProto } from "./node-convert.js";

const node: NodeInfo = {
  id: "0190a3b2-0000-7000-8000-000000000001",
  hostname: "gpu-1",
  labels: { provider: "aws", region: "us-east-1", zone: "us-east-1a", network: "vpc-1", instanceType: "p4d.24xlarge", spot: true, privateIp: "10.0.0.1" },
  state: "unreachable",
  degradedReason: null,
  cpuCores: 96,
  memoryMib: 1_179_648,
  agentVersion: "0.1.0",
  driverVersion: "535.54.03",
  cudaVersion: "12.2",
  registeredAt: new Date("2030-01-01T00:00:00Z"),
  lastHeartbeatAt: new Date("2030-01-01T00:00:05Z"),
  gpus: [
    {
      index: 0,
      uuid: "GPU-a",
      name: "NVIDIA A100-SXM4-80GB",
      memoryTotalMib: 81920,
      migEnabled: true,
      migDevices: [{ gpuInstanceId: 1, computeInstanceId: 0, profile: "1g.10gb", memoryMib: 9728, uuid: "MIG-1" }],
      sample: { index: 0, utilizationGpuPercent: null, utilizationMemoryPercent: null, memoryUsedMib: 13, temperatureC: 31, powerDrawW: 61.5 },
      updatedAt: new Date("2030-01-01T00:00:05Z"),
      allocatedJobId: "0190f1a2-0000-7000-8000-000000000001",
    },
    { index: 1, uuid: "GPU-b", name: "NVIDIA A100-SXM4-80GB", memoryTotalMib: 81920, migEnabled: false, migDevices: [], sample: null, updatedAt: null, allocatedJobId: null },
  ],
};

describe("node conversions", () => {
  it("maps every node state both ways and refuses UNSPECIFIED", () => {
    for (const s of NODE_STATES) expect(nodeStateFromProto(nodeStateToProto(s))).toBe(s);
    expect(() => nodeStateFromProto(pb.NodeState.NODE_STATE_UNSPECIFIED)).toThrow(AppError);
  });

  it("round-trips a node through the wire bytes, keeping absent readings null", () => {
    const bytes = pb.Node.encode(nodeToProto(node)).finish();
    expect(nodeFromProto(pb.Node.decode(bytes))).toEqual(node);
  });

  it("keeps an unreadable sample field absent on the wire", () => {
    const s = { index: 2, utilizationGpuPercent: null, utilizationMemoryPercent: 5, memoryUsedMib: null, temperatureC: null, powerDrawW: null };
    const wire = pb.GpuSample.decode(pb.GpuSample.encode(gpuSampleToProto(s)).finish());
    expect(wire.utilizationGpuPercent).toBeUndefined();
    expect(gpuSampleFromProto(wire)).toEqual(s);
  });

  it("validates a registration: hostname required, node_id a UUID, GPU indexes unique", () => {
    const req = pb.RegisterRequest.fromPartial({ hostname: " ", nodeId: "nope", gpus: [{ index: 0 }, { index: 0 }] });
    let err: AppError | undefined;
    try {
      nodeRegistrationFromProto(req);
    } catch (e) {
      err = e as AppError;
    }
    expect(err?.code).toBe("INVALID_ARGUMENT");
    expect(err?.fields.map((f) => f.field)).toEqual(["hostname", "node_id", "gpus[1].index"]);
    const ok = nodeRegistrationFromProto(pb.RegisterRequest.fromPartial({ hostname: "h", memoryMib: "2048", degradedReason: "" }));
    expect(ok).toMatchObject({ nodeId: null, hostname: "h", memoryMib: 2048, degradedReason: null, gpus: [] });
  });

  it("prints canonical snake_case JSON with nulls kept", () => {
    const j = nodeToJson(node) as { gpus: Record<string, unknown>[] } & Record<string, unknown>;
    expect(j).toMatchObject({ id: node.id, instance_type: "p4d.24xlarge", spot: true, state: "unreachable", last_heartbeat_at: "2030-01-01T00:00:05.000Z" });
    expect(j.gpus[0]).toMatchObject({ utilization_gpu_percent: null, memory_used_mib: 13, mig_devices: [{ profile: "1g.10gb", uuid: "MIG-1", gpu_instance_id: 1, compute_instance_id: 0, memory_mib: 9728 }] });
    expect(j.gpus[1]).toMatchObject({ utilization_gpu_percent: null, updated_at: null });
  });
});
