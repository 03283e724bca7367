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

/** Cost, utilization and pricing readings behind the gauges; each read at scrape time. */
export interface CostMetricSources {
  /** Persisted running cost and GPU-seconds of every job, summed per team and project. */
  costTotals: () => Promise<{ team: string; project: string; costMicros: bigint; gpuSeconds: number }[]>;
  gpuUtilization: () => Promise<{ hostname: string; gpuIndex: number; gpuName: string; utilizationPercent: number; team: string; project: string }[]>;
  /** Per provider: the oldest price date of its rows, and the last successful live refresh (null: never). */
  pricing: () => Promise<{ provider: string; oldestPriceDate: string | null; lastSuccessAt: Date | null; consecutiveFailures: number; rows: number }[]>;
  now: () => Date;
}

export function createControllerMetrics(
  countJobs: () => Promise<Record<JobStatus, number>>,
  countNodes: () => Promise<Record<NodeState, number>> = async () => Object.fromEntries(NODE_STATES.map((s) => [s, 0])) as Record<NodeState, number>,
  costs?: CostMetricSources,
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
  if (costs) registerCostMetrics(registry, costs);
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

function registerCostMetrics(registry: Registry, src: CostMetricSources): void {
  new Gauge({
    name: "gpuorch_job_cost_usd",
    help: "Running cost of jobs (persisted by the cost tracker), summed per team and project; project '' = none",
    labelNames: ["team", "project"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const t of await src.costTotals()) this.set({ team: t.team, project: t.project }, Number(t.costMicros) / 1e6);
    },
  });
  new Gauge({
    name: "gpuorch_job_gpu_seconds",
    help: "GPU-seconds held by jobs (GPU-hours × 3600), summed per team and project",
    labelNames: ["team", "project"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const t of await src.costTotals()) this.set({ team: t.team, project: t.project }, t.gpuSeconds);
    },
  });
  new Gauge({
    name: "gpuorch_gpu_utilization_percent",
    help: "Latest GPU utilization reported by each node's agent; team/project of the job holding the GPU ('' when idle)",
    labelNames: ["node", "gpu", "model", "team", "project"] as const,
    registers: [registry],
    async collect() {
      this.reset();
      for (const g of await src.gpuUtilization()) {
        this.set({ node: g.hostname, gpu: String(g.gpuIndex), model: g.gpuName, team: g.team, project: g.project }, g.utilizationPercent);
      }
    },
  });
  const pricingGauge = (name: string, help: string, value: (p: Awaited<ReturnType<CostMetricSources["pricing"]>>[number], now: Date) => number | null): void => {
    new Gauge({
      name,
      help,
      labelNames: ["provider"] as const,
      registers: [registry],
      async collect() {
        this.reset();
        const now = src.now();
        for (const p of await src.pricing()) {
          const v = value(p, now);
          if (v !== null) this.set({ provider: p.provider }, v);
        }
      },
    });
  };
  pricingGauge("gpuorch_pricing_catalog_age_seconds", "Age of the oldest price in the catalog, per provider (from each row's price date)", (p, now) =>
    p.oldestPriceDate === null ? null : Math.max(0, (now.getTime() - Date.parse(`${p.oldestPriceDate}T00:00:00Z`)) / 1000),
  );
  pricingGauge("gpuorch_pricing_refresh_age_seconds", "Seconds since the provider's last successful live price refresh (absent: never refreshed)", (p, now) =>
    p.lastSuccessAt === null ? null : Math.max(0, (now.getTime() - p.lastSuccessAt.getTime()) / 1000),
  );
  pricingGauge("gpuorch_pricing_refresh_consecutive_failures", "Live price refreshes failed in a row, per provider", (p) => p.consecutiveFailures);
  pricingGauge("gpuorch_pricing_catalog_rows", "Catalog rows per provider", (p) => p.rows);
}
