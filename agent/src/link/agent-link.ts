import { AppError, type AgentArtifactReport, type AgentInterruptionReport, type AgentTaskReport, type GpuSample, type NodeRegistration, type TaskLogChunk, isAppError } from "@gpuorch/core";
import type { ConnectRequest, ConnectResponse, RegisterRequest, RegisterResponse } from "@gpuorch/proto";
import { artifactReportToProto, fromServiceError, gpuSampleToProto, interruptionToProto, logChunkToProto, nodeRegistrationToProto, taskReportToProto } from "@gpuorch/rpc";
import { type BackoffOptions, type Logger, backoffDelay, sleep } from "@gpuorch/runtime";
import type { NodeIdStore } from "./node-id-store.js";

/** The part of a bidi call the link uses (grpc-js' ClientDuplexStream satisfies it). */
export interface ConnectCall {
  write(req: ConnectRequest): boolean;
  cancel(): void;
  on(event: "data", listener: (res: ConnectResponse) => void): unknown;
  on(event: "error", listener: (err: Error) => void): unknown;
  on(event: "end", listener: () => void): unknown;
}

/** The part of AgentClient the link uses. */
export interface AgentLinkClient {
  readonly address: string;
  register(req: RegisterRequest, opts: { signal?: AbortSignal; timeoutMs?: number }): Promise<RegisterResponse>;
  openConnect(): ConnectCall;
}

export interface AgentLinkDeps {
  client: AgentLinkClient;
  /** The node's current registration (its nodeId is filled in by the link). */
  registration: () => NodeRegistration;
  /** The latest GPU readings, sent with each heartbeat. */
  samples: () => GpuSample[];
  nodeIds: NodeIdStore;
  logger: Logger;
  /** Overrides the interval the controller answers at registration. */
  heartbeatSeconds?: number | undefined;
  backoff: BackoffOptions;
  /** Injected for deterministic tests. */
  random?: () => number;
  onStateChange?: (state: LinkState) => void;
  /** Every task's true state, sent with each heartbeat. */
  tasks?: () => AgentTaskReport[];
  /** Whether the node refuses new launches. */
  draining?: () => boolean;
  /** Commands from the controller (launch, stop, drain, forget). */
  onCommand?: (res: ConnectResponse) => void;
  /** Log lines kept while the controller is unreachable; older ones are dropped beyond this. */
  maxQueuedLogLines?: number;
}

/**
 * - `idle`: constructed.
 * - `registering`: calling Register (first start, or the controller forgot the node).
 * - `connecting`: Connect opened, first heartbeat sent, no ack yet.
 * - `connected`: acks arriving.
 * - `backoff`: waiting (jittered exponential) before the next attempt.
 * - `stopped`: stop() was called; the loop has ended.
 */
export type LinkState = "idle" | "registering" | "connecting" | "connected" | "backoff" | "stopped";

/** How many heartbeats may be in flight unacked when the next is due; one more and the stream is dead. */
const MAX_UNACKED = 2;

/**
 * The agent's one reconcile loop owning the controller connection (see
 * docs/protocol.md): register (idempotent; the node id persists in the work
 * dir), open Connect, heartbeat every interval, treat two missed acks as a
 * dead stream, reconnect with jittered exponential backoff that stop()
 * cancels, and register again when the controller answers `node_unknown`.
 */
export class AgentLink {
  private readonly abort = new AbortController();
  private loop: Promise<void> | null = null;
  private currentState: LinkState = "idle";
  private id: string | null;
  private intervalMs = 5_000;
  private call: ConnectCall | null = null;
  private logQueue: TaskLogChunk[] = [];
  private queuedLines = 0;
  private droppedLines = 0;

  constructor(private readonly deps: AgentLinkDeps) {
    this.id = deps.nodeIds.load();
  }

  get state(): LinkState {
    return this.currentState;
  }

  get nodeId(): string | null {
    return this.id;
  }

  /** The heartbeat period in use (the controller's answer unless overridden); 5 s before registration. */
  get heartbeatIntervalMs(): number {
    return this.intervalMs;
  }

  /** A task changed: sent at once when connected (otherwise the next heartbeat's full list carries it). */
  sendTaskStatus(report: AgentTaskReport): void {
    if (this.call && this.id && this.currentState === "connected") this.call.write({ nodeId: this.id, taskStatus: taskReportToProto(report) });
  }

  /** An artifact report: written when connected (true); the outbox resends it otherwise. */
  sendArtifact(report: AgentArtifactReport): boolean {
    if (!(this.call && this.id && this.currentState === "connected")) return false;
    this.call.write({ nodeId: this.id, artifact: artifactReportToProto(report) });
    return true;
  }

  /** An interruption report: written when connected (true). */
  sendInterruption(report: AgentInterruptionReport): boolean {
    if (!(this.call && this.id && this.currentState === "connected")) return false;
    this.call.write({ nodeId: this.id, interruption: interruptionToProto(report) });
    return true;
  }

  /** Output: sent at once when connected, else queued (bounded; the oldest lines go first). */
  sendLogs(chunk: TaskLogChunk): void {
    if (this.call && this.id && this.currentState === "connected" && this.logQueue.length === 0) {
      this.call.write({ nodeId: this.id, logChunk: logChunkToProto(chunk) });
      return;
    }
    this.logQueue.push(chunk);
    this.queuedLines += chunk.lines.length;
    const max = this.deps.maxQueuedLogLines ?? 50_000;
    while (this.queuedLines > max && this.logQueue.length > 1) {
      const dropped = this.logQueue.shift()!;
      this.queuedLines -= dropped.lines.length;
      this.droppedLines += dropped.lines.length;
    }
  }

  private flushLogQueue(call: ConnectCall, nodeId: string): void {
    if (this.droppedLines > 0) {
      this.deps.logger.warn({ lines: this.droppedLines }, "task output dropped while the controller was unreachable");
      this.droppedLines = 0;
    }
    for (const chunk of this.logQueue) call.write({ nodeId, logChunk: logChunkToProto(chunk) });
    this.logQueue = [];
    this.queuedLines = 0;
  }

  start(): void {
    if (this.loop || this.abort.signal.aborted) return;
    this.loop = this.run(this.abort.signal);
  }

  /** Ends the stream and the loop (cancelling a backoff wait or a Register in flight). */
  async stop(): Promise<void> {
    this.abort.abort(new DOMException("agent link stopped", "AbortError"));
    await this.loop;
    this.setState("stopped");
  }

  private setState(s: LinkState): void {
    if (this.currentState === s) return;
    this.currentState = s;
    this.deps.onStateChange?.(s);
  }

  private async run(signal: AbortSignal): Promise<void> {
    const { deps } = this;
    let attempt = 0;
    let mustRegister = true;
    while (!signal.aborted) {
      try {
        if (mustRegister) {
          this.setState("registering");
          await this.register(signal);
          mustRegister = false;
        }
        this.setState("connecting");
        await this.stream(this.id!, signal, () => {
          attempt = 0;
        });
      } catch (e) {
        if (signal.aborted) break;
        const err = isAppError(e) ? e : fromServiceError(e, { address: deps.client.address });
        if (err.code === "NOT_FOUND" && err.reason === "node_unknown") {
          mustRegister = true;
          deps.logger.warn({ nodeId: this.id }, "the controller does not know this node; registering again");
        } else if (err.code === "UNAUTHENTICATED" || err.code === "PERMISSION_DENIED") {
          deps.logger.error({ code: err.code, error: err.message }, "the controller refused the agent token; retrying");
        } else {
          deps.logger.warn({ code: err.code, reason: err.reason, error: err.message, attempt }, "controller link down; reconnecting");
        }
      }
      if (signal.aborted) break;
      const delay = backoffDelay(attempt++, deps.backoff, deps.random);
      this.setState("backoff");
      try {
        await sleep(delay, signal);
      } catch {
        break;
      }
    }
  }

  private async register(signal: AbortSignal): Promise<void> {
    const reg = { ...this.deps.registration(), nodeId: this.id };
    const res = await this.deps.client.register(nodeRegistrationToProto(reg), { signal, timeoutMs: 10_000 });
    if (res.nodeId !== this.id) this.deps.nodeIds.save(res.nodeId);
    this.id = res.nodeId;
    const seconds = this.deps.heartbeatSeconds ?? (res.heartbeatIntervalSeconds > 0 ? res.heartbeatIntervalSeconds : 5);
    this.intervalMs = seconds * 1000;
    this.deps.logger.info({ nodeId: res.nodeId, hostname: reg.hostname, gpus: reg.gpus.length, heartbeatSeconds: seconds }, "registered");
  }

  /**
   * One Connect stream: resolves when `signal` aborts, rejects with why it
   * ended otherwise (error status, the controller ending it, or two missed
   * acks). `onEstablished` runs at the first ack.
   */
  private stream(nodeId: string, signal: AbortSignal, onEstablished: () => void): Promise<void> {
    const { deps } = this;
    return new Promise<void>((resolve, reject) => {
      const call = deps.client.openConnect();
      let seq = 0;
      let lastAck = 0;
      let established = false;
      let finished = false;
      const finish = (err?: AppError): void => {
        if (finished) return;
        finished = true;
        if (this.call === call) this.call = null;
        clearInterval(timer);
        signal.removeEventListener("abort", onAbort);
        // The cancelled call still reports an error status; nobody waits for it.
        call.on("error", () => {});
        call.cancel();
        if (err) reject(err);
        else resolve();
      };
      const beat = (): void => {
        if (seq - lastAck >= MAX_UNACKED) {
          finish(new AppError("UNAVAILABLE", `no ack for heartbeats ${lastAck + 1}..${seq}: stream dead`, { reason: "stream_dead" }));
          return;
        }
        seq += 1;
        call.write({
          nodeId,
          heartbeat: {
            seq: String(seq),
            sentAt: new Date(),
            gpus: deps.samples().map(gpuSampleToProto),
            tasks: (deps.tasks?.() ?? []).map(taskReportToProto),
            draining: deps.draining?.() ?? false,
          },
        });
      };
      const onAbort = (): void => finish();
      call.on("data", (res) => {
        if (!res.heartbeatAck) {
          deps.onCommand?.(res);
          return;
        }
        const acked = Number(res.heartbeatAck.seq);
        if (acked > lastAck) lastAck = acked;
        if (!established) {
          established = true;
          this.call = call;
          this.setState("connected");
          this.flushLogQueue(call, nodeId);
          onEstablished();
          deps.logger.info({ nodeId, intervalMs: this.intervalMs }, "connected");
        }
      });
      call.on("error", (e) => finish(fromServiceError(e, { address: deps.client.address })));
      call.on("end", () => finish(new AppError("UNAVAILABLE", "the controller ended the stream", { reason: "stream_ended" })));
      signal.addEventListener("abort", onAbort, { once: true });
      const timer = setInterval(beat, this.intervalMs);
      // The first heartbeat goes at once: it names the node, so an unknown node is answered now.
      beat();
    });
  }
}
