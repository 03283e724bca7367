import { AppError, type CloudProvider, type ErrorCode } from "@gpuorch/core";

/**
 * Why a provider's price fetch failed. Each kind maps to one AppError code so
 * callers (the refresher, `gpuorch pricing`) can switch on it:
 * - credentials: nothing to sign or authorize the request with (or it was refused)
 * - throttled:   the provider said slow down (HTTP 429, ThrottlingException, RequestLimitExceeded)
 * - http:        any other non-success HTTP status (5xx, 4xx)
 * - network:     no answer (connection refused, DNS, reset, timeout)
 * - malformed:   an answer we cannot read (bad JSON/XML, missing fields, nonsense prices)
 * - aborted:     the caller's AbortSignal fired
 */
export const FETCH_FAILURE_KINDS = ["credentials", "throttled", "http", "network", "malformed", "aborted"] as const;
export type FetchFailureKind = (typeof FETCH_FAILURE_KINDS)[number];

function codeFor(kind: FetchFailureKind): ErrorCode {
  switch (kind) {
    case "credentials":
      return "FAILED_PRECONDITION";
    case "throttled":
    case "http":
    case "network":
      return "UNAVAILABLE";
    case "malformed":
      return "INTERNAL";
    case "aborted":
      return "ABORTED";
  }
}

/**
 * A provider price fetch that produced nothing usable. Fetchers throw only
 * this: a fetch either returns a complete price list or fails whole, never a
 * partial catalog.
 */
export class PricingFetchError extends AppError {
  readonly provider: CloudProvider;
  readonly kind: FetchFailureKind;
  /** HTTP status of the failing response, when there was one. */
  readonly status: number | undefined;

  constructor(provider: CloudProvider, kind: FetchFailureKind, message: string, opts: { status?: number; cause?: unknown } = {}) {
    super(codeFor(kind), `${provider} prices: ${message}`, {
      reason: `pricing_fetch_${kind}`,
      cause: opts.cause,
      meta: { provider, kind, ...(opts.status === undefined ? {} : { status: opts.status }) },
    });
    this.name = "PricingFetchError";
    this.provider = provider;
    this.kind = kind;
    this.status = opts.status;
  }
}

export function isPricingFetchError(e: unknown): e is PricingFetchError {
  return e instanceof PricingFetchError;
}

/** A malformed catalog file: names the file, line and column. */
export function catalogFileError(file: string, line: number, column: string | null, message: string): AppError {
  const where = column === null ? `${file}:${line}` : `${file}:${line}: column ${column}`;
  return new AppError("INVALID_ARGUMENT", `${where}: ${message}`, {
    reason: "invalid_pricing_catalog",
    fields: [{ field: column ?? file, message, line }],
    meta: { file, line, ...(column === null ? {} : { column }) },
  });
}
