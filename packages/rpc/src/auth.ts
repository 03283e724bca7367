import { createHash, randomBytes } from "node:crypto";
import type { Principal, TokenKind } from "@gpuorch/core";
import { Metadata } from "@grpc/grpc-js";

/** Resolves a bearer token to who is calling; null when the token is unknown or revoked. */
export type Authenticate = (token: string) => Promise<Principal | null>;

const BEARER = /^\s*bearer\s+(\S+)\s*$/i;

/** The token from an HTTP `Authorization: Bearer <t>` header (scheme case-insensitive). */
export function bearerTokenFromHeader(header: string | undefined | null): string | null {
  if (!header) return null;
  return BEARER.exec(header)?.[1] ?? null;
}

/** The token from gRPC `authorization` metadata. */
export function bearerToken(metadata: Metadata): string | null {
  for (const v of metadata.get("authorization")) {
    const token = bearerTokenFromHeader(typeof v === "string" ? v : v.toString("utf8"));
    if (token) return token;
  }
  return null;
}

/** Metadata carrying `authorization: Bearer <token>`, for clients. */
export function bearerMetadata(token: string): Metadata {
  const md = new Metadata();
  md.set("authorization", `Bearer ${token}`);
  return md;
}

/** What the database stores instead of the token: sha256, hex. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

const KIND_PREFIX: Record<TokenKind, string> = { user: "gpo_u_", agent: "gpo_a_" };

/**
 * A new secret token: `gpo_u_` (user) or `gpo_a_` (agent) and 32 random
 * bytes in base64url. The fixed prefix lets secret scanners find leaked ones.
 */
export function generateToken(kind: TokenKind): string {
  return KIND_PREFIX[kind] + randomBytes(32).toString("base64url");
}

/** The kind a token's prefix claims (not proof of anything: authenticate it). */
export function tokenKindOf(token: string): TokenKind | null {
  if (token.startsWith(KIND_PREFIX.user)) return "user";
  if (token.startsWith(KIND_PREFIX.agent)) return "agent";
  return null;
}
