/** What one delivery attempt came to; the dispatcher decides what to record and whether to retry. */
export type AttemptOutcome =
  | { kind: "delivered"; httpStatus?: number }
  /** Network error, timeout, 408, 429, 5xx: try again (after `retryAfterMs` when the receiver said so). */
  | { kind: "retryable"; httpStatus?: number; error: string; retryAfterMs?: number }
  /** Any other 4xx or 3xx: the same request will never succeed. */
  | { kind: "permanent"; httpStatus?: number; error: string }
  /** Cut short by the dispatcher stopping: neither success nor failure. */
  | { kind: "interrupted"; error: string };

export interface HttpPostOptions {
  url: string;
  body: string;
  headers: Record<string, string>;
  timeoutMs: number;
  /** Aborts the attempt when the dispatcher stops. */
  signal: AbortSignal;
  now: () => Date;
  /** Upper bound on a receiver's Retry-After. */
  maxRetryAfterMs: number;
}

const SNIPPET_BYTES = 256;

/**
 * POSTs `body` once and classifies the answer. Never throws. Redirects are
 * not followed (a POST turned into a GET would lose the alert), and the
 * error text never holds the URL (it may carry a token).
 */
export async function postOnce(opts: HttpPostOptions): Promise<AttemptOutcome> {
  if (opts.signal.aborted) return { kind: "interrupted", error: "dispatcher stopping" };
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(), opts.timeoutMs);
  const signal = AbortSignal.any([opts.signal, timeout.signal]);
  try {
    const res = await fetch(opts.url, { method: "POST", body: opts.body, headers: opts.headers, redirect: "manual", signal });
    const snippet = await readSnippet(res);
    const status = res.status;
    if (status >= 200 && status < 300) return { kind: "delivered", httpStatus: status };
    const error = `HTTP ${status}${snippet ? `: ${snippet}` : ""}`;
    if (status === 408 || status === 429 || status >= 500) {
      const retryAfterMs = parseRetryAfter(res.headers.get("retry-after"), opts.now(), opts.maxRetryAfterMs);
      return { kind: "retryable", httpStatus: status, error, ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) };
    }
    return { kind: "permanent", httpStatus: status, error: status >= 300 && status < 400 ? `${error} (redirects are not followed)` : error };
  } catch (err) {
    if (opts.signal.aborted) return { kind: "interrupted", error: "interrupted: dispatcher stopping" };
    if (timeout.signal.aborted) return { kind: "retryable", error: `timed out after ${opts.timeoutMs} ms` };
    return { kind: "retryable", error: describeNetworkError(err) };
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Retry-After as milliseconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3),
 * capped at `maxMs`; undefined when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, now: Date, maxMs: number): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  let ms: number;
  if (/^\d+$/.test(v)) {
    ms = Number(v) * 1000;
  } else {
    const t = Date.parse(v);
    if (Number.isNaN(t)) return undefined;
    ms = t - now.getTime();
  }
  return Math.min(Math.max(0, ms), maxMs);
}

/** The start of the response body (receivers explain rejections there); the rest is discarded. */
async function readSnippet(res: Response): Promise<string> {
  if (!res.body) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    while (size < SNIPPET_BYTES) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.byteLength;
    }
  } finally {
    if (size >= SNIPPET_BYTES) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
  const text = Buffer.concat(chunks).subarray(0, SNIPPET_BYTES).toString("utf8").replace(/\uFFFD+$/, "");
  return text.replace(/\s+/g, " ").trim();
}

function describeNetworkError(err: unknown): string {
  // undici wraps the socket error: "fetch failed" with the useful part in `cause`.
  const cause: unknown = err instanceof Error ? err.cause : undefined;
  const code = cause instanceof Error && "code" in cause && typeof cause.code === "string" ? cause.code : undefined;
  const msg = cause instanceof Error ? cause.message : err instanceof Error ? err.message : String(err);
  // Node's connection errors name the address (host:port, no path): safe to keep.
  return `network error: ${code && !msg.includes(code) ? `${code} ` : ""}${msg}`;
}
