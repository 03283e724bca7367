import { createHash } from "node:crypto";
import type { Principal } from "@gpuorch/core";
import { describe, expect, it } from "vitest";
import { createTokenAuthenticator } from "./token-cache.js";

const alice: Principal = { tokenId: "tok-1", teamId: "team-1", teamName: "ml", kind: "user", admin: false };
const sha256 = (s: string): string => createHash("sha256").update(s, "utf8").digest("hex");

function setup(opts: { ttlMs?: number; negativeTtlMs?: number; maxEntries?: number } = {}) {
  let t = 0;
  const known = new Map<string, Principal>([[sha256("gpo_u_good"), alice]]);
  const asked: string[] = [];
  const auth = createTokenAuthenticator(
    async (hash) => {
      asked.push(hash);
      await new Promise((r) => setTimeout(r, 5));
      return known.get(hash) ?? null;
    },
    { ...opts, now: () => t },
  );
  return { auth, asked, known, advance: (ms: number) => void (t += ms) };
}

describe("createTokenAuthenticator", () => {
  it("looks a token up by its SHA-256 (what the database stores) once, then answers from the cache until the TTL", async () => {
    const s = setup({ ttlMs: 1_000 });
    expect(await s.auth("gpo_u_good")).toEqual(alice);
    expect(await s.auth("gpo_u_good")).toEqual(alice);
    expect(s.asked).toEqual([sha256("gpo_u_good")]);
    // Revoked in the database: still accepted until the entry expires, then refused.
    s.known.clear();
    s.advance(999);
    expect(await s.auth("gpo_u_good")).toEqual(alice);
    s.advance(2);
    expect(await s.auth("gpo_u_good")).toBeNull();
    expect(s.asked).toHaveLength(2);
  });

  it("caches unknown tokens only briefly, and concurrent misses share one lookup", async () => {
    const s = setup({ negativeTtlMs: 100 });
    const answers = await Promise.all([s.auth("gpo_u_bad"), s.auth("gpo_u_bad"), s.auth("gpo_u_bad")]);
    expect(answers).toEqual([null, null, null]);
    expect(s.asked).toEqual([sha256("gpo_u_bad")]);
    s.known.set(sha256("gpo_u_bad"), alice);
    s.advance(50);
    expect(await s.auth("gpo_u_bad")).toBeNull();
    s.advance(51);
    expect(await s.auth("gpo_u_bad")).toEqual(alice);
  });

  it("stays bounded: past maxEntries the cache starts over", async () => {
    const s = setup({ maxEntries: 3 });
    for (const tok of ["a", "b", "c", "d"]) await s.auth(tok);
    await s.auth("a");
    expect(s.asked).toEqual(["a", "b", "c", "d", "a"].map(sha256));
  });
});
