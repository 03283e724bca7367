import { type CatalogOffer, type CloudProvider, type Clock, toAppError } from "@gpuorch/core";
import { type Logger, backoffDelay, isAbortError, sleep as realSleep } from "@gpuorch/runtime";
import { isPricingFetchError } from "./errors.js";
import type { FetchResult, PriceFetcher } from "./fetcher.js";

/** How one provider's live refresh went, as persisted (table pricing_source_status). */
export interface PricingSourceStatus {
  provider: CloudProvider;
  source: string;
  lastAttemptAt: Date | null;
  lastSuccessAt: Date | null;
  lastError: string | null;
  consecutiveFailures: number;
  rowCount: number;
  oldestPriceDate: string | null;
  newestPriceDate: string | null;
}

/**
 * What the refresher needs from the database. @gpuorch/db's
 * createPricingStore(db) implements it (replacePricingOffers,
 * recordPricingFailure, listPricingStatus).
 */
export interface PricingStore {
  /** Replaces every row of (provider, source) with `offers` and records the success, in one transaction. */
  replaceOffers(input: { provider: CloudProvider; source: string; offers: readonly CatalogOffer[]; at: Date }): Promise<{ rowCount: number }>;
  /** Records a failed attempt; the provider's rows stay as they were. */
  recordFailure(input: { provider: CloudProvider; source: string; at: Date; error: string }): Promise<void>;
  listStatus(): Promise<PricingSourceStatus[]>;
}

export type RefreshOutcome =
  | { provider: CloudProvider; outcome: "refreshed"; rowCount: number; warnings: string[] }
  /** Another process (a replica, or this one before a restart) refreshed within the TTL. */
  | { provider: CloudProvider; outcome: "fresh"; lastSuccessAt: Date }
  | { provider: CloudProvider; outcome: "failed"; error: string; kind: string };

export interface PricingRefresherOptions {
  fetchers: readonly PriceFetcher[];
  store: PricingStore;
  clock: Clock;
  logger: Logger;
  /** In [0, 1); default Math.random. */
  random?: () => number;
  /** Refresh period per provider; default 15 minutes. */
  ttlMs?: number;
  /** Relative jitter of the period: each wait is ttl × (1 ± jitter); default 0.1. */
  jitter?: number;
  /** Stops the refresher when it aborts (as stop() does). */
  signal?: AbortSignal;
  /** Longest a single provider fetch may take; default 5 minutes. */
  fetchTimeoutMs?: number;
  /** Injected for tests; default a real timer. */
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
  /** Called after a provider's rows changed (reload the optimizer's catalog). */
  onRefreshed?: (provider: CloudProvider, result: FetchResult) => void;
}

/**
 * Keeps the live prices fresh. States: `idle` → `running` (start) →
 * `stopped` (stop(), or the signal). While running, each provider is
 * refreshed at start and then every ttl ± jitter; a failed fetch keeps the
 * provider's last good rows, records the error in its status and is retried
 * with backoff (credential problems only every ttl). A provider refreshed by
 * another process within the TTL is not fetched again.
 */
export interface PricingRefresher {
  readonly state: "idle" | "running" | "stopped";
  start(): void;
  /** Aborts any fetch or wait in progress and resolves when the loop has ended. */
  stop(): Promise<void>;
  /** One refresh of one provider now (the loop's step; also for `gpuorch pricing --refresh`). */
  refresh(provider: CloudProvider): Promise<RefreshOutcome>;
  /** When each provider is next due (ms since epoch), while running. */
  nextDue(): ReadonlyMap<CloudProvider, number>;
}

export const DEFAULT_PRICING_TTL_MS = 15 * 60_000;

export function createPricingRefresher(opts: PricingRefresherOptions): PricingRefresher {
  const ttl = opts.ttlMs ?? DEFAULT_PRICING_TTL_MS;
  const jitter = Math.min(Math.max(opts.jitter ?? 0.1, 0), 0.9);
  const random = opts.random ?? Math.random;
  const sleep = opts.sleep ?? realSleep;
  const fetchTimeout = opts.fetchTimeoutMs ?? 5 * 60_000;
  const log = opts.logger.child({ component: "pricing-refresher" });
  const byProvider = new Map<CloudProvider, PriceFetcher>();
  for (const f of opts.fetchers) {
    if (byProvider.has(f.provider)) throw new Error(`two price fetchers for ${f.provider}`);
    byProvider.set(f.provider, f);
  }
  const abort = new AbortController();
  const onOuterAbort = (): void => abort.abort(opts.signal?.reason);
  let loop: Promise<void> | null = null;
  const due = new Map<CloudProvider, number>();
  const failures = new Map<CloudProvider, number>();

  const jittered = (ms: number): number => Math.round(ms * (1 + jitter * (2 * random() - 1)));

  async function refresh(provider: CloudProvider): Promise<RefreshOutcome> {
    const fetcher = byProvider.get(provider);
    if (!fetcher) throw new Error(`no price fetcher for ${provider}`);
    const status = (await opts.store.listStatus()).find((s) => s.provider === provider);
    const started = opts.clock.now();
    if (status?.lastSuccessAt && status.source === fetcher.source && started.getTime() - status.lastSuccessAt.getTime() < ttl * (1 - jitter)) {
      return { provider, outcome: "fresh", lastSuccessAt: status.lastSuccessAt };
    }
    const signal = AbortSignal.any([abort.signal, AbortSignal.timeout(fetchTimeout)]);
    try {
      const result = await fetcher.fetch(signal);
      const { rowCount } = await opts.store.replaceOffers({ provider, source: fetcher.source, offers: result.offers, at: opts.clock.now() });
      failures.set(provider, 0);
      log.info({ provider, source: fetcher.source, rows: rowCount, warnings: result.warnings.length, ms: opts.clock.now().getTime() - started.getTime() }, "prices refreshed");
      for (const w of result.warnings.slice(0, 20)) log.debug({ provider, warning: w }, "price row skipped");
      opts.onRefreshed?.(provider, result);
      return { provider, outcome: "refreshed", rowCount, warnings: result.warnings };
    } catch (e) {
      if (abort.signal.aborted) throw e;
      const err = toAppError(e);
      const kind = isPricingFetchError(e) ? e.kind : err.reason;
      const message = isPricingFetchError(e) && e.kind === "credentials" ? `no credentials: ${err.message}` : err.message;
      failures.set(provider, (failures.get(provider) ?? 0) + 1);
      log.warn({ provider, source: fetcher.source, kind, err: message }, "price refresh failed; keeping the last good prices");
      try {
        await opts.store.recordFailure({ provider, source: fetcher.source, at: opts.clock.now(), error: message });
      } catch (storeErr) {
        log.error({ provider, err: storeErr }, "could not record the price refresh failure");
      }
      return { provider, outcome: "failed", error: message, kind };
    }
  }

  function delayAfter(o: RefreshOutcome): number {
    switch (o.outcome) {
      case "refreshed":
        return jittered(ttl);
      case "fresh":
        return Math.max(0, o.lastSuccessAt.getTime() + jittered(ttl) - opts.clock.now().getTime());
      case "failed": {
        if (o.kind === "credentials") return jittered(ttl);
        const n = failures.get(o.provider) ?? 1;
        return backoffDelay(n - 1, { baseMs: 60_000, maxMs: ttl, jitter: "equal" }, random);
      }
    }
  }

  async function run(): Promise<void> {
    const signal = abort.signal;
    const start = opts.clock.now().getTime();
    for (const p of byProvider.keys()) due.set(p, start);
    while (!signal.aborted) {
      const now = opts.clock.now().getTime();
      for (const [p, at] of [...due].sort((a, b) => a[1] - b[1])) {
        if (at > now || signal.aborted) continue;
        try {
          const o = await refresh(p);
          due.set(p, opts.clock.now().getTime() + delayAfter(o));
        } catch (e) {
          if (signal.aborted) return;
          // Only the store's listStatus can land here (fetch errors are outcomes): retry that provider soon.
          log.error({ provider: p, err: e }, "price refresh step failed");
          due.set(p, opts.clock.now().getTime() + backoffDelay(0, { baseMs: 60_000, maxMs: ttl, jitter: "equal" }, random));
        }
      }
      const next = Math.min(...due.values());
      try {
        await sleep(Math.max(0, next - opts.clock.now().getTime()), signal);
      } catch (e) {
        if (isAbortError(e) || signal.aborted) return;
        throw e;
      }
    }
  }

  return {
    get state() {
      return abort.signal.aborted ? "stopped" : loop ? "running" : "idle";
    },
    start(): void {
      if (loop || abort.signal.aborted) return;
      if (opts.signal?.aborted) {
        abort.abort(opts.signal.reason);
        return;
      }
      opts.signal?.addEventListener("abort", onOuterAbort, { once: true });
      if (byProvider.size === 0) {
        log.info({}, "no price fetchers configured; the catalog stays as shipped");
      }
      loop = byProvider.size === 0 ? Promise.resolve() : run().catch((e: unknown) => log.error({ err: e }, "pricing refresher stopped on an error"));
    },
    async stop(): Promise<void> {
      opts.signal?.removeEventListener("abort", onOuterAbort);
      if (!abort.signal.aborted) abort.abort(new DOMException("pricing refresher stopped", "AbortError"));
      await loop;
    },
    refresh,
    nextDue: () => new Map(due),
  };
}

/** Seconds since the provider's last successful refresh; null if it never succeeded. */
export function pricingStalenessSeconds(status: PricingSourceStatus | undefined, now: Date): number | null {
  if (!status?.lastSuccessAt) return null;
  return Math.max(0, (now.getTime() - status.lastSuccessAt.getTime()) / 1000);
}

function ago(from: Date, now: Date): string {
  const s = Math.max(0, Math.round((now.getTime() - from.getTime()) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

/** One line for `gpuorch pricing`: where a provider's prices stand. */
export function describePricingStatus(status: PricingSourceStatus | undefined, now: Date): string {
  if (!status || (!status.lastSuccessAt && !status.lastError)) return "never refreshed: prices as shipped/seeded";
  if (!status.lastSuccessAt) return `never refreshed: ${status.lastError}`;
  const ok = `refreshed ${ago(status.lastSuccessAt, now)} (${status.rowCount} rows${status.oldestPriceDate ? `, prices of ${status.oldestPriceDate}` : ""})`;
  if (status.lastError && status.lastAttemptAt) return `last error ${ago(status.lastAttemptAt, now)}: ${status.lastError}; ${ok}`;
  return ok;
}
