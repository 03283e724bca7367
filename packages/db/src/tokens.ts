import { AppError, type Principal, type TokenKind } from "@gpuorch/core";
import { and, eq, isNull, sql } from "drizzle-orm";
import { dbCall } from "./db-errors.js";
import type { Db } from "./open.js";
import { apiTokens, teams } from "./schema.js";

export interface NewApiToken {
  id: string;
  /** null only for admin tokens, which see every team. */
  teamId: string | null;
  name: string;
  kind: TokenKind;
  admin: boolean;
  /** sha256 hex of the bearer token. Never pass the token itself. */
  tokenHash: string;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

export function insertApiToken(db: Db, token: NewApiToken): Promise<void> {
  return dbCall(async () => {
    if (!SHA256_HEX.test(token.tokenHash)) {
      throw AppError.invalid("tokenHash must be the lowercase sha256 hex of the token", [
        { field: "token_hash", message: "expected 64 lowercase hex characters" },
      ]);
    }
    await db.insert(apiTokens).values({
      id: token.id,
      teamId: token.teamId,
      name: token.name,
      kind: token.kind,
      isAdmin: token.admin,
      tokenHash: token.tokenHash,
    });
  });
}

/**
 * The caller a token hash belongs to, or null for an unknown or revoked token.
 * Read-only on purpose: it runs on every request, and a last_used_at write
 * here would serialize all requests of one token on its row lock.
 */
export function findPrincipalByTokenHash(db: Db, tokenHash: string): Promise<Principal | null> {
  return dbCall(async () => {
    const [row] = await db
      .select({
        tokenId: apiTokens.id,
        teamId: apiTokens.teamId,
        teamName: teams.name,
        kind: apiTokens.kind,
        admin: apiTokens.isAdmin,
      })
      .from(apiTokens)
      .leftJoin(teams, eq(teams.id, apiTokens.teamId))
      .where(and(eq(apiTokens.tokenHash, tokenHash), isNull(apiTokens.revokedAt)));
    return row ?? null;
  });
}

/** Revokes a token. Returns false when it was unknown or already revoked. */
export function revokeToken(db: Db, id: string): Promise<boolean> {
  return dbCall(async () => {
    const rows = await db
      .update(apiTokens)
      .set({ revokedAt: sql`now()` })
      .where(and(eq(apiTokens.id, id), isNull(apiTokens.revokedAt)))
      .returning({ id: apiTokens.id });
    return rows.length > 0;
  });
}
