import { JOB_STATUSES, type JobStatus, NODE_STATES, type NodeState } from "@gpuorch/core";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

/** One registry per process; everything the controller exports lives here. */
export interface ControllerMetrics {
  registry: Registry;
  grpcRequests: Counter<"method" | "code">;
  grpcDuration: Histogram<"method">;
  httpRequests: Counter<"route" | "method" | "status">;
  httpDuration: Histogram<"route">;
  heartbeatsReceived: Counter;
  heartbeatFlushes: Histogram;
  nodeStateChanges: Counter<"to">;
  observeGrpc(method: string, code: string, seconds: number): void;
}

export function createControllerMetrics(
  countJobs: () => Promise<Record<JobStatus, number>>,
  countNodes: () => Promise<Record<NodeState, number>> = async () => Object.fromEntries(NODE_STATES.map((s) => [s, 0])) as Record<NodeState, number>,
): ControllerMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "gpuorch_controller_" });
  // prom-client names three gauges *_total, which Prometheus reserves for counters
  // (promtool rejects them); the same numbers remain available per type in
  // nodejs_active_{handles,requests,resources}.
  for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
    registry.removeSingleMetric(`gpuorch_controller_${name}`);
  }
  const buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
  const grpcRequests = new Counter({
    name: "gpuorch_grpc_requests_total",
    help: "gRPC requests handled, by method and status code",
    labelNames: ["method", "code"] as const,
    registers: [registry],
  });
  const grpcDuration = new Histogram({
    name: "gpuorch_grpc_request_duration_seconds",
    help: "gRPC request latency (unary calls; whole stream for WatchJob)",
    labelNames: ["method"] as const,
    buckets,
    registers: [registry],
  });
  const httpRequests = new Counter({
    name: "gpuorch_http_requests_total",
    help: "HTTP admin requests, by route, method and status",
    labelNames: ["route", "method", "status"] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: "gpuorch_http_request_duration_seconds",
    help: "HTTP admin request latency",
    labelNames: ["route"] as const,
    buckets,
    registers: [registry],
  });
  new Gauge({
    name: "gpuorch_jobs",
    help: "Jobs by current status",
    labelNames: ["status"] as const,
    registers: [registry],
    async collect() {
      const counts = await countJobs();
      for (const s of JOB_STATUSES) this.set({ status: s }, counts[s]);
    },
  });
  new Gauge({
    name: "gpuorch_nodes",
    help: "Registered nodes by state",
    labelNames: ["state"] as const,
    registers: [registry],
    async collect() {
      const counts = await countNodes();
      for (const s of NODE_STATES) this.set({ state: s }, counts[s]);
    },
  });
  const heartbeatsReceived = new Counter({
    name: "gpuorch_heartbeats_received_total",
    help: "Agent heartbeats received (acked and buffered for the next batched write)",
    registers: [registry],
  });
  const heartbeatFlushes = new Histogram({
    name: "gpuorch_heartbeat_flush_duration_seconds",
    help: "Duration of one batched heartbeat write",
    buckets,
    registers: [registry],
  });
  const nodeStateChanges = new Counter({
    name: "gpuorch_node_state_changes_total",
    help: "Node state changes by the health loop and by returning heartbeats, by new state",
    labelNames: ["to"] as const,
    registers: [registry],
  });
  return {
    registry,
    heartbeatsReceived,
    heartbeatFlushes,
    nodeStateChanges,
    grpcRequests,
    grpcDuration,
    httpRequests,
    httpDuration,
    observeGrpc(method, code, seconds) {
      grpcRequests.inc({ method, code });
      grpcDuration.observe({ method }, seconds);
    },
  };
}
