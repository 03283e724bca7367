/**
 * One driver worker of heartbeat-ingest.bench.ts (a worker_threads module):
 * registers its share of the simulated nodes, opens one AgentService Connect
 * stream per node and sends each node's heartbeats on a fixed schedule,
 * measuring the ack latency of every heartbeat. Several workers share the
 * load so that the driver, not only the controller, can use both cores.
 *
 * Protocol with the main thread (all messages are plain objects):
 *   main → worker  {type:"window", measureFrom, measureTo}  wall-clock ms (Date.now() scale)
 *                  {type:"stop"}
 *   worker → main  {type:"registered", n} {type:"connected"} {type:"progress", …}
 *                  {type:"sampled", nodes:[{g, nodeId}]} {type:"sent", sends:[g, wallMs, …]}
 *                  {type:"done", …, latencies: Float64Array} {type:"failed", message}
 */
import { parentPort, workerData } from "node:worker_threads";
import { AgentServiceClient, ConnectRequest, type ConnectResponse, type GpuSample, RegisterRequest } from "@gpuorch/proto";
import { bearerMetadata, clientCredentials } from "@gpuorch/rpc";

export interface DriverConfig {
  address: string;
  token: string;
  /** Global indexes [first, first + count) of the nodes this worker simulates. */
  first: number;
  count: number;
  /** All nodes over all workers: a node's phase in the second is index / total. */
  total: number;
  hz: number;
  /** HTTP/2 connections this worker opens; its nodes are spread over them round-robin. */
  connections: number;
  /** Nodes with index % sampleEvery === 0 report their send times for the state-current poller. */
  sampleEvery: number;
  runId: string;
  /** Wall-clock ms (Date.now() scale) the common heartbeat schedule starts from. */
  t0: number;
  gpuName: string;
  gpuMemoryMib: number;
  gpusPerNode: number;
}

type Stream = ReturnType<AgentServiceClient["connect"]>;

interface SimNode {
  g: number;
  nodeId: string;
  stream: Stream | null;
  seq: number;
  /** performance.now() of each unacked heartbeat, oldest first (acks come in order on a stream). */
  unacked: number[];
  /** Whether each unacked heartbeat was sent inside the measured window. */
  unackedMeasured: boolean[];
  gpus: GpuSample[];
  sampled: boolean;
  firstAck: boolean;
}

const cfg = workerData as DriverConfig;
const port = parentPort!;
const post = (msg: unknown): void => port.postMessage(msg);

function makeGpus(g: number): GpuSample[] {
  return Array.from({ length: cfg.gpusPerNode }, (_, index) => ({
    index,
    utilizationGpuPercent: (g * 7 + index * 13) % 100,
    utilizationMemoryPercent: (g * 3 + index * 5) % 100,
    memoryUsedMib: String(20_000 + ((g + index) % 50) * 1000),
    temperatureC: 40 + ((g + index) % 30),
    powerDrawW: 200 + ((g * 11 + index) % 400),
  }));
}

function registerRequest(g: number): RegisterRequest {
  const hostname = `bench-${cfg.runId}-${String(g).padStart(5, "0")}`;
  return RegisterRequest.fromPartial({
    hostname,
    labels: { provider: "onprem", region: "bench", zone: "a", network: "bench-net", instanceType: "dgx-h100", spot: false, privateIp: `10.${(g >> 16) & 255}.${(g >> 8) & 255}.${g & 255}` },
    gpus: Array.from({ length: cfg.gpusPerNode }, (_, index) => ({
      index,
      uuid: `GPU-${cfg.runId}-${g}-${index}`,
      name: cfg.gpuName,
      memoryTotalMib: String(cfg.gpuMemoryMib),
      migEnabled: false,
      migDevices: [],
    })),
    cpuCores: 224,
    memoryMib: String(2_000_000),
    agentVersion: "bench",
    driverVersion: "535.161.08",
    cudaVersion: "12.2",
    nodeId: "",
  });
}

function registerOne(client: AgentServiceClient, req: RegisterRequest): Promise<string> {
  return new Promise((resolve, reject) => {
    client.register(req, bearerMetadata(cfg.token), { deadline: Date.now() + 60_000 }, (err, res) => {
      if (err) reject(new Error(`Register ${req.hostname}: ${err.message}`));
      else resolve(res.nodeId);
    });
  });
}

async function main(): Promise<void> {
  // Own subchannel pool per client: otherwise grpc-js would multiplex every client onto one connection.
  const clients = Array.from(
    { length: cfg.connections },
    () =>
      new AgentServiceClient(cfg.address, clientCredentials(false), {
        "grpc.use_local_subchannel_pool": 1,
        "grpc.keepalive_time_ms": 30_000,
        "grpc.keepalive_timeout_ms": 10_000,
      }),
  );
  const clientOf = (i: number): AgentServiceClient => clients[i % clients.length]!;
  const nodes: SimNode[] = Array.from({ length: cfg.count }, (_, i) => {
    const g = cfg.first + i;
    return { g, nodeId: "", stream: null, seq: 0, unacked: [], unackedMeasured: [], gpus: makeGpus(g), sampled: g % cfg.sampleEvery === 0, firstAck: false };
  });

  // Window (set by the main thread's "window" message) and counters.
  let measureFrom = Infinity;
  let measureTo = -Infinity;
  let sentTotal = 0;
  let ackedTotal = 0;
  let sentMeasured = 0;
  let ackedMeasured = 0;
  let streamErrors = 0;
  let firstError: string | null = null;
  let latencies = new Float64Array(1 << 16);
  let nLat = 0;
  let pendingSamples: number[] = [];
  let connected = 0;
  /** Beats not sent because the driver fell more than a period behind its schedule. */
  let skipped = 0;
  /** Set once we end the streams ourselves: their cancellation is not an error. */
  let stopping = false;

  const send = (n: SimNode, perfNow: number): void => {
    const stream = n.stream;
    if (!stream) return;
    n.seq++;
    const wall = Date.now();
    const gpus = n.gpus;
    // Busy GPUs: utilization and power change on every beat, as real readings do.
    for (const gpu of gpus) {
      gpu.utilizationGpuPercent = (n.seq * 17 + n.g + gpu.index * 7) % 100;
      gpu.powerDrawW = 200 + ((n.seq * 31 + n.g + gpu.index * 13) % 400);
    }
    stream.write(ConnectRequest.fromPartial({ nodeId: n.nodeId, heartbeat: { seq: String(n.seq), sentAt: new Date(wall), gpus } }));
    const measured = wall >= measureFrom && wall < measureTo;
    n.unacked.push(perfNow);
    n.unackedMeasured.push(measured);
    sentTotal++;
    if (measured) {
      sentMeasured++;
      if (n.sampled) pendingSamples.push(n.g, wall);
    }
  };

  const onAck = (n: SimNode): void => {
    const sentAt = n.unacked.shift();
    const measured = n.unackedMeasured.shift();
    if (sentAt === undefined) return;
    ackedTotal++;
    if (!n.firstAck) {
      n.firstAck = true;
      if (++connected === nodes.length) post({ type: "connected" });
    }
    if (measured) {
      ackedMeasured++;
      if (nLat === latencies.length) {
        const bigger = new Float64Array(latencies.length * 2);
        bigger.set(latencies);
        latencies = bigger;
      }
      latencies[nLat++] = performance.now() - sentAt;
    }
  };

  /** One Connect stream per node, opened right after its registration as an agent does; the first heartbeat binds it. */
  const connect = (i: number): void => {
    const n = nodes[i]!;
    const stream = clientOf(i).connect(bearerMetadata(cfg.token));
    n.stream = stream;
    stream.on("data", (res: ConnectResponse) => {
      if (res.heartbeatAck) onAck(n);
    });
    stream.on("error", (err: Error) => {
      n.stream = null;
      // A cancel at the end is ours; anything else is a failure of the run.
      if ((err as { code?: number }).code === 1 && stopping) return;
      streamErrors++;
      firstError ??= `node ${n.g}: ${err.message}`;
    });
    stream.on("end", () => {
      n.stream = null;
    });
    send(n, performance.now());
  };

  // The schedule runs from the start, so a node heartbeats from the moment it is connected (not
  // only once the whole fleet is): node g sends at t0 + (g / total) · period + k · period, which
  // spreads the fleet's beats evenly over each period. Nodes not yet connected are skipped.
  const periodMs = 1000 / cfg.hz;
  const t0Perf = cfg.t0 - performance.timeOrigin;
  const phase = nodes.map((n) => (n.g / cfg.total) * periodMs);
  let round = Math.max(0, Math.floor((performance.now() - t0Perf) / periodMs));
  let ptr = 0;
  let running = true;
  const tick = (): void => {
    if (!running) return;
    const now = performance.now();
    // A driver stalled (CPU starved) for more than a period skips the beats it missed, as an
    // agent's timer would, instead of sending them in a burst; the skips are reported.
    if (now - (t0Perf + round * periodMs + phase[ptr]!) > periodMs) {
      const target = Math.floor((now - t0Perf) / periodMs) - 1;
      skipped += (target - round) * nodes.length;
      round = target;
    }
    for (;;) {
      const due = t0Perf + round * periodMs + phase[ptr]!;
      if (due > now) break;
      const n = nodes[ptr]!;
      if (n.seq > 0) send(n, now);
      if (++ptr === nodes.length) {
        ptr = 0;
        round++;
      }
    }
    const nextDue = t0Perf + round * periodMs + phase[ptr]!;
    setTimeout(tick, Math.max(0, Math.min(5, nextDue - performance.now())));
  };
  setTimeout(tick, Math.max(0, t0Perf - performance.now()));

  let lastSent = 0;
  let lastAcked = 0;
  const progress = setInterval(() => {
    const outstanding = nodes.reduce((s, n) => s + n.unacked.length, 0);
    post({ type: "progress", sent: sentTotal - lastSent, acked: ackedTotal - lastAcked, outstanding, open: nodes.filter((n) => n.stream).length, errors: streamErrors, skipped });
    lastSent = sentTotal;
    lastAcked = ackedTotal;
    if (pendingSamples.length > 0) {
      post({ type: "sent", sends: pendingSamples });
      pendingSamples = [];
    }
  }, 1000);

  const stopped = new Promise<void>((resolve) => {
    port.on("message", (msg: { type: string; measureFrom?: number; measureTo?: number }) => {
      if (msg.type === "window") {
        measureFrom = msg.measureFrom!;
        measureTo = msg.measureTo!;
      } else if (msg.type === "stop") resolve();
    });
  });

  // Register, a bounded number in flight (as a fleet booting does, not thousands of transactions at once).
  let next = 0;
  let registered = 0;
  await Promise.all(
    Array.from({ length: Math.min(32, cfg.count) }, async () => {
      for (;;) {
        const i = next++;
        if (i >= cfg.count) return;
        nodes[i]!.nodeId = await registerOne(clientOf(i), registerRequest(cfg.first + i));
        connect(i);
        if (++registered % 250 === 0) post({ type: "registered", n: 250 });
      }
    }),
  );
  post({ type: "registered", n: registered % 250 });
  post({ type: "sampled", nodes: nodes.filter((n) => n.sampled).map((n) => ({ g: n.g, nodeId: n.nodeId })) });

  await stopped;
  running = false;
  // Let the last heartbeats be acked (bounded), so they are not counted as lost.
  const drainDeadline = performance.now() + 5_000;
  while (nodes.some((n) => n.unacked.length > 0 && n.stream) && performance.now() < drainDeadline) await new Promise((r) => setTimeout(r, 20));
  clearInterval(progress);
  if (pendingSamples.length > 0) post({ type: "sent", sends: pendingSamples });
  const unackedMeasured = nodes.reduce((s, n) => s + n.unackedMeasured.filter(Boolean).length, 0);
  post({ type: "done", sentMeasured, ackedMeasured, unackedMeasured, streamErrors, firstError, skipped, latencies: latencies.slice(0, nLat) });
  stopping = true;
  for (const n of nodes) n.stream?.end();
  // Give the ends a moment to reach the controller before the connections close.
  await new Promise((r) => setTimeout(r, 200));
  for (const c of clients) c.close();
}

main().catch((err: unknown) => {
  post({ type: "failed", message: err instanceof Error ? err.stack ?? err.message : String(err) });
});
