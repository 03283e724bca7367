import { AppError, isAppError, type Principal, type TokenKind } from "@gpuorch/core";
import type {
  handleBidiStreamingCall,
  handleServerStreamingCall,
  handleUnaryCall,
  Metadata,
  ServerDuplexStream,
  ServerWritableStream,
} from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import type { Readable } from "node:stream";
import { abortReason, isAbortError, type Logger } from "@gpuorch/runtime";
import { type Authenticate, bearerToken } from "./auth.js";
import { toServiceError } from "./errors.js";

export interface HandlerOptions {
  authenticate: Authenticate;
  logger: Logger;
  /** The RPC's name for logs and metrics, e.g. "JobService/SubmitJob". */
  method: string;
  /** Called once per call when it ends, with the gRPC status name ("OK", "NOT_FOUND", "CANCELLED", …). */
  onCall?: (method: string, code: string, seconds: number) => void;
  /** Token kinds allowed to call this method; default: any authenticated principal. */
  kinds?: readonly TokenKind[];
  /**
   * The server's lifetime signal. When it aborts, handlers see `ctx.signal`
   * abort and a call that then ends with an abort reports UNAVAILABLE
   * ("shutting down") so clients retry elsewhere or later.
   */
  signal?: AbortSignal;
}

export interface CallContext {
  principal: Principal;
  metadata: Metadata;
  /** Aborted when the client cancels or disconnects, the deadline passes, or the server shuts down. */
  signal: AbortSignal;
  /** Bound to method, team and token id. */
  logger: Logger;
}

/** Sends one message; waits while the transport is full; rejects once the call is cancelled. */
export type Send<Res> = (res: Res) => Promise<void>;

/** Checks the bearer token and the principal's kind; throws UNAUTHENTICATED / PERMISSION_DENIED. */
export async function authenticateCall(
  metadata: Metadata,
  opts: Pick<HandlerOptions, "authenticate" | "kinds">,
): Promise<Principal> {
  const token = bearerToken(metadata);
  if (!token) throw AppError.unauthenticated("missing bearer token (authorization: Bearer <token>)");
  const principal = await opts.authenticate(token);
  if (!principal) throw AppError.unauthenticated("invalid or revoked bearer token");
  if (opts.kinds && !opts.kinds.includes(principal.kind)) {
    throw new AppError("PERMISSION_DENIED", `a ${principal.kind} token may not call this method`, {
      reason: "wrong_token_kind",
    });
  }
  return principal;
}

/** Wraps a promise-returning implementation of a unary RPC. */
export function unaryHandler<Req, Res>(
  opts: HandlerOptions,
  fn: (req: Req, ctx: CallContext) => Promise<Res>,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const run = new CallRun(opts, call);
    void run.execute(
      async (ctx) => {
        const res = await fn(call.request, ctx);
        callback(null, res);
      },
      (err) => callback(err),
    );
  };
}

/** Wraps a server-streaming RPC; the call ends when `fn` resolves. */
export function serverStreamHandler<Req, Res>(
  opts: HandlerOptions,
  fn: (req: Req, ctx: CallContext, send: Send<Res>) => Promise<void>,
): handleServerStreamingCall<Req, Res> {
  return (call: ServerWritableStream<Req, Res>) => {
    const run = new CallRun(opts, call);
    void run.execute(
      async (ctx) => {
        await fn(call.request, ctx, makeSend(call, ctx.signal));
        if (!call.cancelled) call.end();
      },
      (err) => {
        if (!call.cancelled && !call.writableEnded) call.emit("error", err);
      },
    );
  };
}

/**
 * Wraps a bidirectional RPC. `requests` ends when the client half-closes; it
 * throws the abort reason if the call is cancelled. The call ends when `fn`
 * resolves.
 */
export function bidiStreamHandler<Req, Res>(
  opts: HandlerOptions,
  fn: (requests: AsyncIterable<Req>, ctx: CallContext, send: Send<Res>) => Promise<void>,
): handleBidiStreamingCall<Req, Res> {
  return (call: ServerDuplexStream<Req, Res>) => {
    const run = new CallRun(opts, call);
    void run.execute(
      async (ctx) => {
        await fn(readRequests(call, ctx.signal), ctx, makeSend(call, ctx.signal));
        if (!call.cancelled) call.end();
      },
      (err) => {
        if (!call.cancelled && !call.writableEnded) call.emit("error", err);
      },
    );
  };
}

/**
 * The handler's context. Its logger (a pino child) and its signal are made
 * only if the handler uses them: most unary calls (SubmitJob) use neither, and
 * each cost microseconds on every call. A class, so the getters live on the
 * prototype instead of being defined again on every call's object.
 */
class LazyCallContext implements CallContext {
  private childLogger: Logger | null = null;

  constructor(
    readonly principal: Principal,
    readonly metadata: Metadata,
    private readonly run: CallRun,
    private readonly opts: HandlerOptions,
  ) {}

  get signal(): AbortSignal {
    return this.run.signal;
  }

  get logger(): Logger {
    const { principal, opts } = this;
    this.childLogger ??= opts.logger.child({ method: opts.method, team: principal.teamName, tokenId: principal.tokenId });
    return this.childLogger;
  }
}

/** What CallRun needs of any grpc-js server call. */
interface SurfaceCall {
  cancelled: boolean;
  readonly metadata: Metadata;
  on(event: "cancelled", listener: () => void): unknown;
  off(event: "cancelled", listener: () => void): unknown;
}

/** The parts every kind of call shares: auth, signal, error mapping, logging, metrics. */
class CallRun {
  private readonly started = performance.now();
  /**
   * Aborted by the client's cancel or by the server's shutdown (`opts.signal`),
   * whichever comes first. Made when first asked for (`signal`).
   */
  private cancel: AbortController | null = null;
  /** Why the call was aborted, once it was (kept for a signal asked for later). */
  private abortedWith: { reason: unknown } | null = null;
  /** Set when the client cancelled, to tell that from a shutdown. */
  private clientCancelled = false;

  constructor(
    private readonly opts: HandlerOptions,
    private readonly call: SurfaceCall,
  ) {}

  get signal(): AbortSignal {
    if (this.cancel === null) {
      this.cancel = new AbortController();
      if (this.abortedWith) this.cancel.abort(this.abortedWith.reason);
    }
    return this.cancel.signal;
  }

  private abort(reason: unknown): void {
    if (this.abortedWith) return;
    this.abortedWith = { reason };
    this.cancel?.abort(reason);
  }

  async execute(
    body: (ctx: CallContext) => Promise<void>,
    fail: (err: ReturnType<typeof toServiceError>) => void,
  ): Promise<void> {
    const { opts, call } = this;
    const onCancelled = (): void => {
      this.clientCancelled = true;
      this.abort(new DOMException("the client cancelled the call", "AbortError"));
    };
    // A listener on the server's signal, not AbortSignal.any: that costs ~20 us and a
    // FinalizationRegistry entry per call on Node 20, and every SubmitJob pays it.
    const server = opts.signal;
    const onShutdown = (): void => this.abort(server?.reason);
    call.on("cancelled", onCancelled);
    server?.addEventListener("abort", onShutdown, { once: true });
    if (call.cancelled) onCancelled();
    else if (server?.aborted) onShutdown();
    let principal: Principal | null = null;
    try {
      principal = await authenticateCall(call.metadata, opts);
      await body(new LazyCallContext(principal, call.metadata, this, opts));
      this.record(call.cancelled ? "CANCELLED" : "OK");
    } catch (e) {
      const err = this.classify(e, principal);
      if (err === "cancelled") {
        this.record("CANCELLED");
        return;
      }
      fail(err);
      this.record(status[err.code] as string);
    } finally {
      call.off("cancelled", onCancelled);
      server?.removeEventListener("abort", onShutdown);
    }
  }

  /** Maps what `fn` threw to the status to send, logging what deserves it. */
  private classify(e: unknown, principal: Principal | null): ReturnType<typeof toServiceError> | "cancelled" {
    const { opts } = this;
    const context = { method: opts.method, team: principal?.teamName ?? null, tokenId: principal?.tokenId ?? null };
    // Once the client is gone nobody reads the status; whatever the handler threw on its way out is noise.
    if (this.clientCancelled) {
      opts.logger.debug(context, "call cancelled by the client");
      return "cancelled";
    }
    if (opts.signal?.aborted && isAbortError(e)) {
      opts.logger.info(context, "call ended by server shutdown");
      return toServiceError(new AppError("UNAVAILABLE", "the controller is shutting down", { reason: "shutting_down" }));
    }
    if (isAppError(e) && e.code !== "INTERNAL") {
      opts.logger.debug({ ...context, code: e.code, reason: e.reason, error: e.message }, "call failed");
    } else {
      // Unexpected: the caller gets a generic message, so this line is the only record of it.
      opts.logger.error({ ...context, err: e }, "unexpected error in handler");
    }
    return toServiceError(e);
  }

  private record(code: string): void {
    if (!this.opts.onCall) return;
    try {
      this.opts.onCall(this.opts.method, code, (performance.now() - this.started) / 1000);
    } catch (e) {
      this.opts.logger.error({ method: this.opts.method, err: e }, "onCall observer threw");
    }
  }
}

interface WritableCall<Res> {
  cancelled: boolean;
  write(chunk: Res): boolean;
  once(event: "drain" | "close", listener: () => void): unknown;
  off(event: "drain" | "close", listener: () => void): unknown;
}

function makeSend<Res>(call: WritableCall<Res>, signal: AbortSignal): Send<Res> {
  return async (res) => {
    if (signal.aborted) throw abortReason(signal);
    if (call.cancelled) throw new DOMException("the client cancelled the call", "AbortError");
    if (call.write(res)) return;
    await new Promise<void>((resolve, reject) => {
      const cleanup = (): void => {
        call.off("drain", onDrain);
        call.off("close", onClose);
        signal.removeEventListener("abort", onAbort);
      };
      const onDrain = (): void => {
        cleanup();
        resolve();
      };
      const onAbort = (): void => {
        cleanup();
        reject(abortReason(signal));
      };
      const onClose = (): void => {
        cleanup();
        reject(new DOMException("the call closed", "AbortError"));
      };
      call.once("drain", onDrain);
      call.once("close", onClose);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  };
}

const REQUEST_BUFFER = 16;

/**
 * The call's requests as an async iterable. Not the stream's own iterator:
 * that destroys the stream when reading ends, which would also kill the
 * response side of a bidi call before its last messages and status go out.
 */
function readRequests<Req>(call: Readable, signal: AbortSignal): AsyncIterable<Req> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<Req> {
      const queue: Req[] = [];
      let ended = false;
      let failed = false;
      let failure: unknown;
      let wake: (() => void) | null = null;
      const notify = (): void => {
        const w = wake;
        wake = null;
        w?.();
      };
      const onData = (m: Req): void => {
        queue.push(m);
        if (queue.length >= REQUEST_BUFFER) call.pause();
        notify();
      };
      const onEnd = (): void => {
        ended = true;
        notify();
      };
      const onError = (e: unknown): void => {
        failed = true;
        failure = e;
        notify();
      };
      const cleanup = (): void => {
        call.off("data", onData);
        call.off("end", onEnd);
        call.off("error", onError);
        signal.removeEventListener("abort", notify);
      };
      call.on("data", onData);
      call.on("end", onEnd);
      call.on("error", onError);
      signal.addEventListener("abort", notify);
      return {
        async next(): Promise<IteratorResult<Req>> {
          for (;;) {
            if (signal.aborted) {
              cleanup();
              throw abortReason(signal);
            }
            const head = queue.shift();
            if (head !== undefined) {
              if (queue.length < REQUEST_BUFFER / 2) call.resume();
              return { value: head, done: false };
            }
            if (failed) {
              cleanup();
              throw failure;
            }
            if (ended) {
              cleanup();
              return { value: undefined, done: true };
            }
            await new Promise<void>((resolve) => (wake = resolve));
          }
        },
        async return(): Promise<IteratorResult<Req>> {
          cleanup();
          return { value: undefined, done: true };
        },
      };
    },
  };
}
