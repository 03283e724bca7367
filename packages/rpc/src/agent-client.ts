import type { ClientDuplexStream, Metadata } from "@grpc/grpc-js";
import * as pb from "@gpuorch/proto";
import { bearerMetadata } from "./auth.js";
import { type ClientTlsOptions, type JobCallOptions, type UnaryDef, callUnary, clientCredentials, waitForChannel } from "./client.js";

export interface ServiceClientOptions {
  /** host:port of the controller's gRPC endpoint. */
  address: string;
  token: string;
  tls?: ClientTlsOptions | false;
  /** Deadline of each unary call; default 30 s. */
  timeoutMs?: number;
}

const CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": 16 * 1024 * 1024,
  "grpc.keepalive_time_ms": 30_000,
  "grpc.keepalive_timeout_ms": 10_000,
  // The agent link runs its own reconnect loop (with backoff); it wants fast failures, not grpc-js' hidden ones.
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": 2_000,
};

/**
 * The agent's side of AgentService: `register` (unary, AppErrors) and
 * `openConnect()`, the raw bidi stream the agent's link loop owns (it reads
 * `data`/`error`/`end` itself and converts errors with `fromServiceError`).
 */
export class AgentClient {
  readonly address: string;
  private readonly raw: pb.AgentServiceClient;
  private readonly metadata: Metadata;
  private readonly timeoutMs: number;

  constructor(opts: ServiceClientOptions) {
    this.address = opts.address;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.metadata = bearerMetadata(opts.token);
    this.raw = new pb.AgentServiceClient(opts.address, clientCredentials(opts.tls), CHANNEL_OPTIONS);
  }

  register(req: pb.RegisterRequest, opts: JobCallOptions = {}): Promise<pb.RegisterResponse> {
    return callUnary(this.raw, pb.AgentServiceService.register, req, {
      metadata: this.metadata,
      timeoutMs: opts.timeoutMs ?? this.timeoutMs,
      address: this.address,
      signal: opts.signal,
    });
  }

  /** Opens a Connect stream (no deadline: it lives until either side ends it). */
  openConnect(): ClientDuplexStream<pb.ConnectRequest, pb.ConnectResponse> {
    const def = pb.AgentServiceService.connect;
    return this.raw.makeBidiStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, this.metadata.clone(), {});
  }

  waitForReady(timeoutMs: number): Promise<void> {
    return waitForChannel(this.raw, this.address, timeoutMs);
  }

  close(): void {
    this.raw.close();
  }
}

/** NodeService for the CLI: `listNodes`, `drainNode` (admin). */
export class NodeClient {
  readonly address: string;
  private readonly raw: pb.NodeServiceClient;
  private readonly metadata: Metadata;
  private readonly timeoutMs: number;

  constructor(opts: ServiceClientOptions) {
    this.address = opts.address;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.metadata = bearerMetadata(opts.token);
    this.raw = new pb.NodeServiceClient(opts.address, clientCredentials(opts.tls), CHANNEL_OPTIONS);
  }

  listNodes(req: Partial<pb.ListNodesRequest> = {}, opts: JobCallOptions = {}): Promise<pb.ListNodesResponse> {
    return callUnary(this.raw, pb.NodeServiceService.listNodes, pb.ListNodesRequest.fromPartial(req), {
      metadata: this.metadata,
      timeoutMs: opts.timeoutMs ?? this.timeoutMs,
      address: this.address,
      signal: opts.signal,
    });
  }

  /** Admin only: `drain: true` stops new placements on the node; `false` makes it ready again. Returns the node. */
  drainNode(req: Partial<pb.DrainNodeRequest> & { nodeId: string }, opts: JobCallOptions = {}): Promise<pb.DrainNodeResponse> {
    return callUnary(this.raw, pb.NodeServiceService.drainNode, pb.DrainNodeRequest.fromPartial(req), {
      metadata: this.metadata,
      timeoutMs: opts.timeoutMs ?? this.timeoutMs,
      address: this.address,
      signal: opts.signal,
    });
  }

  waitForReady(timeoutMs: number): Promise<void> {
    return waitForChannel(this.raw, this.address, timeoutMs);
  }

  close(): void {
    this.raw.close();
  }
}

/** Promise-based CostService client (`gpuorch pricing`, `costs`, `recommendations`). */
export class CostClient {
  readonly address: string;
  private readonly raw: pb.CostServiceClient;
  private readonly metadata: Metadata;
  private readonly timeoutMs: number;

  constructor(opts: ServiceClientOptions) {
    this.address = opts.address;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.metadata = bearerMetadata(opts.token);
    this.raw = new pb.CostServiceClient(opts.address, clientCredentials(opts.tls), CHANNEL_OPTIONS);
  }

  listPrices(req: Partial<pb.ListPricesRequest> = {}, opts: JobCallOptions = {}): Promise<pb.ListPricesResponse> {
    return this.call(pb.CostServiceService.listPrices, pb.ListPricesRequest.fromPartial(req), opts);
  }

  getCosts(req: Partial<pb.GetCostsRequest> = {}, opts: JobCallOptions = {}): Promise<pb.GetCostsResponse> {
    return this.call(pb.CostServiceService.getCosts, pb.GetCostsRequest.fromPartial(req), opts);
  }

  listRecommendations(opts: JobCallOptions = {}): Promise<pb.ListRecommendationsResponse> {
    return this.call(pb.CostServiceService.listRecommendations, pb.ListRecommendationsRequest.fromPartial({}), opts);
  }

  waitForReady(timeoutMs: number): Promise<void> {
    return waitForChannel(this.raw, this.address, timeoutMs);
  }

  close(): void {
    this.raw.close();
  }

  private call<Req, Res>(def: UnaryDef<Req, Res>, req: Req, opts: JobCallOptions): Promise<Res> {
    return callUnary(this.raw, def, req, { metadata: this.metadata, timeoutMs: opts.timeoutMs ?? this.timeoutMs, address: this.address, signal: opts.signal });
  }
}
