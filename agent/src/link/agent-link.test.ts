import { EventEmitter } from "node:events";
import { AppError, type NodeRegistration } from "@gpuorch/core";
import type { ConnectRequest, ConnectResponse, RegisterRequest, RegisterResponse } from "@gpuorch/proto";
import { createLogger } from "@gpuorch/runtime";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AgentLink, type AgentLinkClient, type ConnectCall } from "./agent-link.js";
import type { NodeIdStore } from "./node-id-store.js";

const NODE = "0190a3b2-0000-7000-8000-000000000001";

class FakeCall extends EventEmitter implements ConnectCall {
  written: ConnectRequest[] = [];
  cancelled = false;
  /** Ack every heartbeat at once unless switched off. */
  autoAck = true;
  write(req: ConnectRequest): boolean {
    this.written.push(req);
    if (this.autoAck && req.heartbeat) queueMicrotask(() => this.emit("data", { heartbeatAck: { seq: req.heartbeat!.seq } } satisfies ConnectResponse));
    return true;
  }
  cancel(): void {
    this.cancelled = true;
  }
}

class FakeClient implements AgentLinkClient {
  readonly address = "controller:7070";
  registers: RegisterRequest[] = [];
  calls: FakeCall[] = [];
  registerResult: () => Promise<RegisterResponse> = async () => ({ nodeId: NODE, heartbeatIntervalSeconds: 1 });
  onOpen: (call: FakeCall) => void = () => {};
  register(req: RegisterRequest): Promise<RegisterResponse> {
    this.registers.push(req);
    return this.registerResult();
  }
  openConnect(): FakeCall {
    const call = new FakeCall();
    this.calls.push(call);
    this.onOpen(call);
    return call;
  }
}

const registration: NodeRegistration = {
  nodeId: null,
  hostname: "gpu-1",
  labels: { provider: "onprem", region: "lab", zone: "", network: "", instanceType: "", spot: false, privateIp: "" },
  cpuCores: 8,
  memoryMib: 1024,
  agentVersion: "0.1.0",
  driverVersion: "",
  cudaVersion: "",
  degradedReason: null,
  gpus: [],
};

function memoryStore(initial: string | null = null): NodeIdStore & { saved: string[] } {
  let id = initial;
  const saved: string[] = [];
  return { saved, load: () => id, save: (v) => { id = v; saved.push(v); } };
}

function makeLink(client: FakeClient, store = memoryStore()) {
  return new AgentLink({
    client,
    registration: () => registration,
    samples: () => [{ index: 0, utilizationGpuPercent: 50, utilizationMemoryPercent: 1, memoryUsedMib: 10, temperatureC: 40, powerDrawW: 70 }],
    nodeIds: store,
    logger: createLogger({ name: "test", level: "silent" }),
    backoff: { baseMs: 100, maxMs: 1_000, jitter: "none" },
  });
}

describe("AgentLink", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("registers, persists the node id, and heartbeats with GPU samples once per interval", async () => {
    const client = new FakeClient();
    const store = memoryStore();
    const link = makeLink(client, store);
    link.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(client.registers).toHaveLength(1);
    expect(store.saved).toEqual([NODE]);
    expect(link.state).toBe("connected");
    await vi.advanceTimersByTimeAsync(3_000);
    const beats = client.calls[0]!.written.map((w) => w.heartbeat!);
    expect(beats.map((b) => b.seq)).toEqual(["1", "2", "3", "4"]);
    expect(beats[0]?.gpus).toEqual([expect.objectContaining({ index: 0, utilizationGpuPercent: 50, memoryUsedMib: "10" })]);
    expect(client.calls[0]!.written.every((w) => w.nodeId === NODE)).toBe(true);
    await link.stop();
    expect(link.state).toBe("stopped");
    expect(client.calls[0]!.cancelled).toBe(true);
  });

  it("sends the persisted node id when registering again after a restart", async () => {
    const client = new FakeClient();
    const link = makeLink(client, memoryStore(NODE));
    link.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(client.registers[0]?.nodeId).toBe(NODE);
    await link.stop();
  });

  it("declares the stream dead after two missed acks and reconnects after a backoff", async () => {
    const client = new FakeClient();
    client.onOpen = (call) => {
      // The first stream acks the first heartbeat only, then goes silent.
      if (client.calls.length === 1) {
        call.autoAck = true;
        const write = call.write.bind(call);
        call.write = (req) => {
          const r = write(req);
          call.autoAck = false;
          return r;
        };
      }
    };
    const link = makeLink(client);
    link.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(link.state).toBe("connected");
    // seq 2 and 3 go unacked; at the next tick the stream is dead.
    await vi.advanceTimersByTimeAsync(3_000);
    expect(client.calls[0]!.cancelled).toBe(true);
    expect(link.state).toBe("backoff");
    await vi.advanceTimersByTimeAsync(100);
    expect(client.calls).toHaveLength(2);
    expect(client.registers).toHaveLength(1);
    await link.stop();
  });

  it("registers again when the controller answers node_unknown", async () => {
    const client = new FakeClient();
    const link = makeLink(client);
    // The controller's answer as fromServiceError rebuilds it from the status metadata.
    client.onOpen = (call) => {
      if (client.calls.length === 1) {
        call.autoAck = false;
        queueMicrotask(() => call.emit("error", new AppError("NOT_FOUND", "node unknown", { reason: "node_unknown" })));
      }
    };
    link.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(link.state).toBe("backoff");
    await vi.advanceTimersByTimeAsync(100);
    expect(client.registers).toHaveLength(2);
    expect(link.state).toBe("connected");
    await link.stop();
  });

  it("backs off exponentially while the controller is unreachable, and stop() cancels the wait", async () => {
    const client = new FakeClient();
    client.registerResult = () => Promise.reject(new AppError("UNAVAILABLE", "cannot reach the controller", { reason: "controller_unreachable" }));
    const link = makeLink(client);
    link.start();
    await vi.advanceTimersByTimeAsync(0);
    expect(client.registers).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(100); // attempt 0: 100 ms
    expect(client.registers).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(199); // attempt 1: 200 ms
    expect(client.registers).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(client.registers).toHaveLength(3);
    expect(link.state).toBe("backoff");
    await link.stop();
    expect(link.state).toBe("stopped");
    await vi.advanceTimersByTimeAsync(10_000);
    expect(client.registers).toHaveLength(3);
  });
});
