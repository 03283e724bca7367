import type { Principal } from "@gpuorch/core";
import type { Authenticate } from "@gpuorch/rpc";
import { hashToken } from "@gpuorch/rpc";

/**
 * Resolves bearer tokens to principals with a short-lived cache, so the hot
 * path (every RPC) does not hit the database. Revocation takes effect within
 * `ttlMs`. Unknown tokens are cached briefly too, bounding the cost of a
 * client hammering with a bad token.
 */
export function createTokenAuthenticator(
  lookup: (hash: string) => Promise<Principal | null>,
  opts: { ttlMs?: number; negativeTtlMs?: number; maxEntries?: number; now?: () => number } = {},
): Authenticate {
  const ttl = opts.ttlMs ?? 30_000;
  const negTtl = opts.negativeTtlMs ?? 2_000;
  const max = opts.maxEntries ?? 10_000;
  const now = opts.now ?? (() => performance.now());
  const cache = new Map<string, { p: Principal | null; until: number }>();
  const inflight = new Map<string, Promise<Principal | null>>();
  // Keyed by the token as presented: the process holds every token it is sent anyway, and
  // hashing it (SHA-256, as stored) on every call cost more than the rest of authentication.
  return async (token: string) => {
    const hit = cache.get(token);
    if (hit && hit.until > now()) return hit.p;
    let pending = inflight.get(token);
    if (!pending) {
      pending = lookup(hashToken(token)).finally(() => inflight.delete(token));
      inflight.set(token, pending);
    }
    const p = await pending;
    if (cache.size >= max) cache.clear();
    cache.set(token, { p, until: now() + (p ? ttl : negTtl) });
    return p;
  };
}
