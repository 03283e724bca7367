import { AppError } from "@gpuorch/core";
import {
  type ChannelCredentials,
  type Client,
  type ChannelOptions,
  type ClientReadableStream,
  credentials,
  type Metadata,
  type ServiceError,
} from "@grpc/grpc-js";
import * as pb from "@gpuorch/proto";
import { abortReason } from "@gpuorch/runtime";
import { bearerMetadata } from "./auth.js";
import { fromServiceError } from "./errors.js";

export interface ClientTlsOptions {
  /** CA that signed the controller's certificate; default: the system roots. */
  ca?: Buffer;
  /** Client certificate and key for mTLS. */
  cert?: Buffer;
  key?: Buffer;
}

export interface JobClientOptions {
  /** host:port of the controller's gRPC endpoint. */
  address: string;
  token: string;
  /** Absent or false: plaintext. */
  tls?: ClientTlsOptions | false;
  /** Deadline of each unary call; default 30 s. `connect` also waits this long for the channel. */
  timeoutMs?: number;
  /** Extra grpc-js channel options, applied last. */
  channelOptions?: ChannelOptions;
}

export interface JobCallOptions {
  /** Overrides the client's per-call deadline. */
  timeoutMs?: number;
  /** Cancels the call; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Accepts any subset of a message's fields; the rest take proto defaults. */
type Input<M extends { fromPartial(o: never): unknown }> = Parameters<M["fromPartial"]>[0];

export interface UnaryDef<Req, Res> {
  path: string;
  requestSerialize: (v: Req) => Buffer;
  responseDeserialize: (b: Buffer) => Res;
}

export function clientCredentials(tls?: ClientTlsOptions | false): ChannelCredentials {
  if (!tls) return credentials.createInsecure();
  return credentials.createSsl(tls.ca ?? null, tls.key ?? null, tls.cert ?? null);
}

/**
 * Promise-based JobService client for the CLI and tests. Every call carries
 * the bearer token and a deadline; failures reject with AppErrors rebuilt
 * from the server's error metadata (or UNAVAILABLE "cannot reach the
 * controller at …" when there is no server to answer).
 */
export class JobClient {
  readonly address: string;
  private readonly raw: pb.JobServiceClient;
  private readonly metadata: Metadata;
  private readonly timeoutMs: number;

  constructor(opts: JobClientOptions) {
    this.address = opts.address;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.metadata = bearerMetadata(opts.token);
    this.raw = new pb.JobServiceClient(opts.address, clientCredentials(opts.tls), {
      "grpc.max_receive_message_length": 16 * 1024 * 1024,
      "grpc.keepalive_time_ms": 30_000,
      "grpc.keepalive_timeout_ms": 10_000,
      ...opts.channelOptions,
    });
  }

  /** Creates a client and waits until its channel is connected (UNAVAILABLE if it cannot within `timeoutMs`). */
  static async connect(opts: JobClientOptions): Promise<JobClient> {
    const client = new JobClient(opts);
    try {
      await client.waitForReady(opts.timeoutMs ?? 10_000);
    } catch (e) {
      client.close();
      throw e;
    }
    return client;
  }

  submitJob(req: Input<typeof pb.SubmitJobRequest>, opts?: JobCallOptions): Promise<pb.SubmitJobResponse> {
    return this.unary(pb.JobServiceService.submitJob, pb.SubmitJobRequest.fromPartial(req), opts);
  }

  getJob(req: Input<typeof pb.GetJobRequest>, opts?: JobCallOptions): Promise<pb.GetJobResponse> {
    return this.unary(pb.JobServiceService.getJob, pb.GetJobRequest.fromPartial(req), opts);
  }

  listJobs(req: Input<typeof pb.ListJobsRequest>, opts?: JobCallOptions): Promise<pb.ListJobsResponse> {
    return this.unary(pb.JobServiceService.listJobs, pb.ListJobsRequest.fromPartial(req), opts);
  }

  cancelJob(req: Input<typeof pb.CancelJobRequest>, opts?: JobCallOptions): Promise<pb.CancelJobResponse> {
    return this.unary(pb.JobServiceService.cancelJob, pb.CancelJobRequest.fromPartial(req), opts);
  }

  getJobEvents(req: Input<typeof pb.GetJobEventsRequest>, opts?: JobCallOptions): Promise<pb.GetJobEventsResponse> {
    return this.unary(pb.JobServiceService.getJobEvents, pb.GetJobEventsRequest.fromPartial(req), opts);
  }

  listArtifacts(req: Input<typeof pb.ListArtifactsRequest>, opts?: JobCallOptions): Promise<pb.ListArtifactsResponse> {
    return this.unary(pb.JobServiceService.listArtifacts, pb.ListArtifactsRequest.fromPartial(req), opts);
  }

  /** Prices a spec without submitting it (`gpuorch plan`). */
  planJob(req: Input<typeof pb.PlanJobRequest>, opts?: JobCallOptions): Promise<pb.PlanJobResponse> {
    return this.unary(pb.JobServiceService.planJob, pb.PlanJobRequest.fromPartial(req), opts);
  }

  /**
   * Streams a job's snapshot and events. No deadline: it lasts until the
   * server ends it (the job is terminal), `signal` aborts (the iteration
   * then simply ends), or the consumer stops iterating (the call is
   * cancelled). Failures throw AppErrors.
   */
  watchJob(req: Input<typeof pb.WatchJobRequest>, signal?: AbortSignal): AsyncGenerator<pb.WatchJobResponse> {
    return this.serverStream(pb.JobServiceService.watchJob, pb.WatchJobRequest.fromPartial(req), signal);
  }

  /**
   * Streams a job's stored log lines (batches, ascending seq); with
   * `follow`, new lines until the job is terminal and its lines are stored.
   * Same lifetime rules as `watchJob`: no deadline, `signal` ends the
   * iteration quietly, failures throw AppErrors.
   */
  getJobLogs(req: Input<typeof pb.GetJobLogsRequest>, signal?: AbortSignal): AsyncGenerator<pb.GetJobLogsResponse> {
    return this.serverStream(pb.JobServiceService.getJobLogs, pb.GetJobLogsRequest.fromPartial(req), signal);
  }

  private async *serverStream<Req, Res>(def: UnaryDef<Req, Res>, req: Req, signal?: AbortSignal): AsyncGenerator<Res> {
    if (signal?.aborted) return;
    const stream: ClientReadableStream<Res> = this.raw.makeServerStreamRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      req,
      this.metadata.clone(),
      {},
    );
    const onAbort = (): void => stream.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for await (const msg of stream) {
        yield msg as Res;
      }
    } catch (e) {
      if (signal?.aborted) return;
      throw fromServiceError(e, { address: this.address });
    } finally {
      signal?.removeEventListener("abort", onAbort);
      // The CANCELLED status of an abandoned call arrives as an 'error' event; nobody waits for it.
      stream.on("error", () => {});
      stream.cancel();
    }
  }

  /** Resolves once the channel is connected; UNAVAILABLE "cannot reach the controller at …" after `timeoutMs`. */
  waitForReady(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.raw.waitForReady(Date.now() + timeoutMs, (err) => {
        if (!err) {
          resolve();
          return;
        }
        reject(
          new AppError("UNAVAILABLE", `cannot reach the controller at ${this.address}: ${err.message}`, {
            reason: "controller_unreachable",
            cause: err,
          }),
        );
      });
    });
  }

  close(): void {
    this.raw.close();
  }

  private unary<Req, Res>(def: UnaryDef<Req, Res>, req: Req, opts: JobCallOptions = {}): Promise<Res> {
    return callUnary(this.raw, def, req, { metadata: this.metadata, timeoutMs: opts.timeoutMs ?? this.timeoutMs, address: this.address, signal: opts.signal });
  }
}

/**
 * One unary call on any grpc-js client: bearer metadata, a deadline,
 * cancellation by `signal`, failures as AppErrors. Shared by the clients of
 * every service.
 */
export function callUnary<Req, Res>(
  raw: Client,
  def: UnaryDef<Req, Res>,
  req: Req,
  opts: { metadata: Metadata; timeoutMs: number; address: string; signal?: AbortSignal | undefined },
): Promise<Res> {
  const { signal } = opts;
  if (signal?.aborted) return Promise.reject(abortReason(signal));
  return new Promise<Res>((resolve, reject) => {
    const deadline = new Date(Date.now() + opts.timeoutMs);
    const onAbort = (): void => call.cancel();
    const call = raw.makeUnaryRequest(
      def.path,
      def.requestSerialize,
      def.responseDeserialize,
      req,
      opts.metadata.clone(),
      { deadline },
      (err: ServiceError | null, res?: Res) => {
        signal?.removeEventListener("abort", onAbort);
        if (signal?.aborted) reject(abortReason(signal));
        else if (err) reject(fromServiceError(err, { address: opts.address }));
        else if (res === undefined) reject(AppError.internal(`empty response from ${def.path}`));
        else resolve(res);
      },
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Resolves once `raw`'s channel is connected; UNAVAILABLE "cannot reach the controller at …" after `timeoutMs`. */
export function waitForChannel(raw: Client, address: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    raw.waitForReady(Date.now() + timeoutMs, (err) => {
      if (!err) {
        resolve();
        return;
      }
      reject(
        new AppError("UNAVAILABLE", `cannot reach the controller at ${address}: ${err.message}`, {
          reason: "controller_unreachable",
          cause: err,
        }),
      );
    });
  });
}

/** Sync factory: the channel connects lazily on the first call. */
export function createJobClient(opts: JobClientOptions): JobClient {
  return new JobClient(opts);
}
