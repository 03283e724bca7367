import { type ChannelOptions, Server, ServerCredentials } from "@grpc/grpc-js";
import { AppError } from "@gpuorch/core";

export interface GrpcServerOptions {
  /** Largest request accepted; default 4 MiB. */
  maxReceiveMessageBytes?: number;
  /** Largest response sent; default 16 MiB. */
  maxSendMessageBytes?: number;
  /** Server-initiated keepalive pings on idle connections; default 60 s, answered within 20 s. */
  keepaliveTimeMs?: number;
  keepaliveTimeoutMs?: number;
  /** Extra grpc-js channel options, applied last. */
  channelOptions?: ChannelOptions;
}

export function createGrpcServer(opts: GrpcServerOptions = {}): Server {
  return new Server({
    "grpc.max_receive_message_length": opts.maxReceiveMessageBytes ?? 4 * 1024 * 1024,
    "grpc.max_send_message_length": opts.maxSendMessageBytes ?? 16 * 1024 * 1024,
    "grpc.keepalive_time_ms": opts.keepaliveTimeMs ?? 60_000,
    "grpc.keepalive_timeout_ms": opts.keepaliveTimeoutMs ?? 20_000,
    "grpc.keepalive_permit_without_calls": 1,
    ...opts.channelOptions,
  });
}

export interface ServerTlsOptions {
  cert: Buffer;
  key: Buffer;
  /** CA for client certificates (mTLS). */
  ca?: Buffer;
  /** Reject clients without a certificate signed by `ca`. */
  requireClientCert?: boolean;
}

/** Insecure when `tls` is absent or false. */
export function serverCredentials(tls?: ServerTlsOptions | false): ServerCredentials {
  if (!tls) return ServerCredentials.createInsecure();
  return ServerCredentials.createSsl(
    tls.ca ?? null,
    [{ cert_chain: tls.cert, private_key: tls.key }],
    tls.requireClientCert ?? false,
  );
}

/** Binds and resolves with the bound port (useful with port 0). Throws UNAVAILABLE when the bind fails. */
export function listen(server: Server, host: string, port: number, tls?: ServerTlsOptions | false): Promise<number> {
  const address = host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
  return new Promise((resolve, reject) => {
    server.bindAsync(address, serverCredentials(tls), (err, bound) => {
      if (err) {
        reject(new AppError("UNAVAILABLE", `cannot listen on ${address}: ${err.message}`, { reason: "bind_failed", cause: err }));
      } else {
        resolve(bound);
      }
    });
  });
}

/**
 * Stops accepting calls and waits up to `graceMs` for running ones to
 * finish, then cancels whatever is left.
 */
export function stopServer(server: Server, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      server.forceShutdown();
      resolve();
    }, graceMs);
    server.tryShutdown(() => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve();
    });
  });
}
