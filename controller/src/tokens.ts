import type { TokenKind } from "@gpuorch/core";
import { type Database, ensureTeam, insertApiToken } from "@gpuorch/db";
import { generateToken, hashToken } from "@gpuorch/rpc";
import type { IdSource } from "@gpuorch/core";

export interface CreatedToken {
  id: string;
  token: string;
  team: string | null;
  kind: TokenKind;
  admin: boolean;
  name: string;
}

/** Mints a token, stores only its sha256, and returns the secret exactly once. */
export async function createToken(
  db: Database["db"],
  ids: IdSource,
  opts: { team: string | null; admin: boolean; kind: TokenKind; name: string },
): Promise<CreatedToken> {
  const teamId = opts.team === null ? null : (await ensureTeam(db, { id: ids.newId(), name: opts.team })).id;
  const token = generateToken(opts.kind);
  const id = ids.newId();
  await insertApiToken(db, { id, teamId, name: opts.name, kind: opts.kind, admin: opts.admin, tokenHash: hashToken(token) });
  return { id, token, team: opts.team, kind: opts.kind, admin: opts.admin, name: opts.name };
}
