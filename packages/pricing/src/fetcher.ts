import type { CatalogOffer, CloudProvider } from "@gpuorch/core";
import { backoffDelay, isAbortError, sleep as realSleep } from "@gpuorch/runtime";
import { type FetchFailureKind, PricingFetchError } from "./errors.js";

/** One provider's live price source. */
export interface PriceFetcher {
  readonly provider: CloudProvider;
  /** gpu_pricing.source of what it returns ("aws-price-list", "azure-retail-prices", "gcp-cloud-billing"). */
  readonly source: string;
  /**
   * The provider's complete current price list, or a PricingFetchError:
   * never a partial list (a refresh replaces the source's rows whole).
   */
  fetch(signal: AbortSignal): Promise<FetchResult>;
}

export interface FetchResult {
  offers: CatalogOffer[];
  /** Things skipped on purpose (an unknown new instance family, an opt-in region), one line each. */
  warnings: string[];
}

/** Retry policy of the fetch-based clients (Azure, GCP). The AWS SDK retries on its own (maxAttempts). */
export interface HttpRetry {
  /** Attempts per request, including the first; default 3. */
  maxAttempts?: number;
  /** Injected for tests; default: a real timer. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  random?: () => number;
}

export type FetchLike = (input: string, init?: { headers?: Record<string, string>; signal?: AbortSignal }) => Promise<Response>;

/**
 * GET a JSON document, retrying 429/5xx/network failures with jittered
 * backoff; anything else (other 4xx, an unreadable body) fails at once.
 */
export async function getJson(
  provider: CloudProvider,
  url: string,
  opts: {
    fetch: FetchLike;
    headers?: Record<string, string>;
    signal: AbortSignal;
    retry?: HttpRetry;
    /** A short reason from an error body (the provider's error JSON). */
    describe?: (body: string) => string;
    /** Overrides the kind of a non-success status (a provider that says "bad key" with a 400). */
    classify?: (status: number, body: string) => FetchFailureKind | undefined;
  },
): Promise<unknown> {
  const maxAttempts = Math.max(1, opts.retry?.maxAttempts ?? 3);
  const sleep = opts.retry?.sleep ?? realSleep;
  const random = opts.retry?.random ?? Math.random;
  const safeUrl = redactUrl(url);
  let last: PricingFetchError | null = null;
  for (let attempt = 0; attempt < maxAttempts; attempt++) {
    if (attempt > 0) {
      try {
        await sleep(backoffDelay(attempt - 1, { baseMs: 1_000, maxMs: 30_000, jitter: "equal" }, random), opts.signal);
      } catch (e) {
        throw new PricingFetchError(provider, "aborted", `aborted while waiting to retry ${safeUrl}`, { cause: e });
      }
    }
    let res: Response;
    try {
      res = await opts.fetch(url, { headers: { accept: "application/json", ...opts.headers }, signal: opts.signal });
    } catch (e) {
      if (opts.signal.aborted || isAbortError(e)) throw new PricingFetchError(provider, "aborted", `aborted: GET ${safeUrl}`, { cause: e });
      last = new PricingFetchError(provider, "network", `GET ${safeUrl} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      continue;
    }
    let body: string;
    try {
      body = await res.text();
    } catch (e) {
      if (opts.signal.aborted) throw new PricingFetchError(provider, "aborted", `aborted: GET ${safeUrl}`, { cause: e });
      last = new PricingFetchError(provider, "network", `GET ${safeUrl}: body read failed`, { cause: e });
      continue;
    }
    if (!res.ok) {
      const detail = opts.describe ? opts.describe(body) : body.slice(0, 200);
      const kind = opts.classify?.(res.status, body) ?? (res.status === 429 ? "throttled" : res.status === 401 || res.status === 403 ? "credentials" : "http");
      const err = new PricingFetchError(provider, kind, `GET ${safeUrl}: HTTP ${res.status}${detail ? `: ${detail}` : ""}`, { status: res.status });
      if (res.status === 429 || res.status >= 500) {
        last = err;
        continue;
      }
      throw err;
    }
    try {
      return JSON.parse(body) as unknown;
    } catch (e) {
      throw new PricingFetchError(provider, "malformed", `GET ${safeUrl}: response is not JSON`, { cause: e });
    }
  }
  throw last ?? new PricingFetchError(provider, "network", `GET ${safeUrl} failed`);
}

/** The URL without secrets (an API key in the query) for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.searchParams.has("key")) u.searchParams.set("key", "REDACTED");
    return u.toString();
  } catch {
    return url;
  }
}

/** Float USD → micro-USD. Prices from JSON APIs arrive as numbers; 6 decimals is all the catalog keeps. */
export function usdNumberToMicros(provider: CloudProvider, v: unknown, what: string): bigint {
  if (typeof v !== "number" || !Number.isFinite(v) || v < 0) {
    throw new PricingFetchError(provider, "malformed", `${what}: expected a price >= 0, got ${JSON.stringify(v)}`);
  }
  return BigInt(Math.round(v * 1_000_000));
}
