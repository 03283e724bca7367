export interface BackoffOptions {
  /** Delay ceiling of the first retry (attempt 0). */
  baseMs: number;
  /** Cap on the ceiling, however many attempts. */
  maxMs: number;
  /** Growth per attempt; default 2. */
  factor?: number;
  /**
   * "full": uniform in [0, ceiling) — spreads a herd of reconnecting agents best.
   * "equal": ceiling/2 plus uniform in [0, ceiling/2) — never retries almost at once.
   * "none": exactly the ceiling (deterministic waits).
   */
  jitter: "full" | "equal" | "none";
}

/**
 * Milliseconds to wait before retry number `attempt` (0-based):
 * ceiling = min(maxMs, baseMs * factor^attempt), then jittered.
 * `random` returns a number in [0, 1); inject it for deterministic tests.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const factor = opts.factor ?? 2;
  const n = Math.max(0, Math.floor(attempt));
  // Computing factor^n for a large n overflows to Infinity, which min() caps anyway.
  const ceiling = Math.max(0, Math.min(opts.maxMs, opts.baseMs * Math.pow(factor, n)));
  const r = Math.min(Math.max(random(), 0), 1);
  switch (opts.jitter) {
    case "full":
      return Math.floor(ceiling * r);
    case "equal":
      return Math.floor(ceiling / 2 + (ceiling / 2) * r);
    case "none":
      return Math.floor(ceiling);
  }
}

/** Waits `ms`; rejects with the signal's reason (an AbortError by default) when it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The signal's reason as an Error (an AbortError when none, or not an Error, was given). */
export function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason;
  return new DOMException(reason === undefined ? "aborted" : String(reason), "AbortError");
}

/** Whether `e` means "stopped because someone aborted", not a failure. */
export function isAbortError(e: unknown): boolean {
  return e instanceof Error && e.name === "AbortError";
}
