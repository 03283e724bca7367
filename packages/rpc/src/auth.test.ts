import { Metadata } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { bearerMetadata, bearerToken, bearerTokenFromHeader, generateToken, hashToken, tokenKindOf } from "./auth.js";

describe("bearer tokens", () => {
  it("parses the header with a case-insensitive scheme", () => {
    expect(bearerTokenFromHeader("Bearer abc")).toBe("abc");
    expect(bearerTokenFromHeader("bearer  abc ")).toBe("abc");
    expect(bearerTokenFromHeader("BEARER abc")).toBe("abc");
    expect(bearerTokenFromHeader("Basic abc")).toBeNull();
    expect(bearerTokenFromHeader("Bearer")).toBeNull();
    expect(bearerTokenFromHeader("Bearer a b")).toBeNull();
    expect(bearerTokenFromHeader(undefined)).toBeNull();
  });

  it("reads gRPC authorization metadata", () => {
    expect(bearerToken(bearerMetadata("t1"))).toBe("t1");
    const md = new Metadata();
    md.set("Authorization", "bearer t2");
    expect(bearerToken(md)).toBe("t2");
    expect(bearerToken(new Metadata())).toBeNull();
  });

  it("generates prefixed 32-byte tokens and hashes them with sha256", () => {
    const u = generateToken("user");
    const a = generateToken("agent");
    expect(u).toMatch(/^gpo_u_[A-Za-z0-9_-]{43}$/);
    expect(a).toMatch(/^gpo_a_[A-Za-z0-9_-]{43}$/);
    expect(u).not.toBe(generateToken("user"));
    expect(tokenKindOf(u)).toBe("user");
    expect(tokenKindOf(a)).toBe("agent");
    expect(tokenKindOf("nope")).toBeNull();
    expect(hashToken("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });
});
