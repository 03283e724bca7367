import { AppError } from "@gpuorch/core";

export type CloudProvider = "aws" | "gcp" | "azure";
export const CLOUD_PROVIDERS: readonly CloudProvider[] = ["aws", "gcp", "azure"];

/** What every IMDS request of one read shares. */
export interface ImdsContext {
  provider: CloudProvider;
  /** Base URL, no trailing slash. */
  endpoint: string;
  fetch: typeof fetch;
  /** Per request. */
  timeoutMs: number;
  /** The caller's signal combined with the read's total deadline. */
  signal: AbortSignal;
  /** Aborts when the caller gave up (as opposed to the read's own deadline). */
  callerSignal: AbortSignal | undefined;
  totalTimeoutMs: number;
}

export interface ImdsResponse {
  status: number;
  headers: Headers;
  body: string;
}

// Every answer the agent reads is a few hundred bytes (Azure's whole document a few KiB);
// the bound only stops something that is not an IMDS from filling memory.
const MAX_BODY_BYTES = 64 * 1024;

/**
 * One request to the metadata service. Resolves with any HTTP answer (callers
 * judge the status: a 404 means "not this provider" on one path and "broken"
 * on another); rejects with an AppError when no answer came: `imds_timeout`
 * (DEADLINE_EXCEEDED), `imds_unreachable` (UNAVAILABLE), `imds_aborted`
 * (ABORTED, the caller's signal), `imds_invalid_response` (body too large).
 */
export async function imdsRequest(
  ctx: ImdsContext,
  method: "GET" | "PUT",
  path: string,
  headers: Record<string, string>,
): Promise<ImdsResponse> {
  const url = ctx.endpoint + path;
  const perRequest = AbortSignal.timeout(ctx.timeoutMs);
  const signal = AbortSignal.any([ctx.signal, perRequest]);
  const what = `${ctx.provider} ${method} ${url}`;
  try {
    // `redirect: "manual"`: no IMDS redirects, and following one could leave the link-local address.
    const res = await ctx.fetch(url, { method, headers, signal, redirect: "manual" });
    const body = await readBounded(res, what);
    return { status: res.status, headers: res.headers, body };
  } catch (e) {
    if (e instanceof AppError) throw e;
    if (ctx.callerSignal?.aborted) {
      throw new AppError("ABORTED", `${what}: cancelled`, { reason: "imds_aborted", cause: e, meta: { provider: ctx.provider } });
    }
    if (perRequest.aborted) {
      throw new AppError("DEADLINE_EXCEEDED", `${what}: no answer within ${ctx.timeoutMs} ms`, {
        reason: "imds_timeout",
        cause: e,
        meta: { provider: ctx.provider },
      });
    }
    if (ctx.signal.aborted) {
      throw new AppError("DEADLINE_EXCEEDED", `${what}: the whole read took longer than ${ctx.totalTimeoutMs} ms`, {
        reason: "imds_timeout",
        cause: e,
        meta: { provider: ctx.provider },
      });
    }
    throw new AppError("UNAVAILABLE", `${what}: ${describeFetchError(e)}`, {
      reason: "imds_unreachable",
      cause: e,
      meta: { provider: ctx.provider },
    });
  }
}

/** An AppError for an answer that is not what the provider documents. */
export function invalidResponse(ctx: ImdsContext, message: string): AppError {
  return new AppError("INTERNAL", `${ctx.provider} instance metadata at ${ctx.endpoint}: ${message}`, {
    reason: "imds_invalid_response",
    meta: { provider: ctx.provider },
  });
}

/** A short, quoted excerpt of an unexpected body for error messages. */
export function excerpt(body: string): string {
  const flat = body.replace(/\s+/g, " ").trim();
  return JSON.stringify(flat.length > 80 ? `${flat.slice(0, 80)}…` : flat);
}

async function readBounded(res: Response, what: string): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > MAX_BODY_BYTES) {
      await reader.cancel();
      throw new AppError("INTERNAL", `${what}: answer larger than ${MAX_BODY_BYTES} bytes; not an instance metadata service`, {
        reason: "imds_invalid_response",
      });
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString("utf8");
}

function describeFetchError(e: unknown): string {
  // undici reports "fetch failed" and keeps the socket error (ECONNREFUSED, ENOTFOUND, …) as the cause.
  const cause = e instanceof Error ? e.cause : undefined;
  if (cause && typeof cause === "object") {
    const code = (cause as { code?: unknown }).code;
    const message = (cause as { message?: unknown }).message;
    if (typeof code === "string") return `no answer (${code})`;
    if (typeof message === "string") return `no answer (${message})`;
  }
  return `no answer (${e instanceof Error ? e.message : String(e)})`;
}
