import { AppError } from "@gpuorch/core";
import { eq } from "drizzle-orm";
import { dbCall } from "./db-errors.js";
import type { Db } from "./open.js";
import { teams } from "./schema.js";

export interface Team {
  id: string;
  name: string;
}

/** Inserts a team; ALREADY_EXISTS when the id or the name is taken. */
export function createTeam(db: Db, team: Team): Promise<Team> {
  return dbCall(async () => {
    const [row] = await db.insert(teams).values(team).returning({ id: teams.id, name: teams.name });
    if (!row) throw AppError.internal("insert into teams returned no row");
    return row;
  });
}

export function getTeamByName(db: Db, name: string): Promise<Team | null> {
  return dbCall(async () => {
    const [row] = await db.select({ id: teams.id, name: teams.name }).from(teams).where(eq(teams.name, name));
    return row ?? null;
  });
}

/**
 * The team called `team.name`, created with `team.id` if missing. Safe when
 * several processes ensure the same team at once: the losers' inserts do
 * nothing and they read the winner's row.
 */
export function ensureTeam(db: Db, team: Team): Promise<Team> {
  return dbCall(async () => {
    await db.insert(teams).values(team).onConflictDoNothing();
    const [row] = await db.select({ id: teams.id, name: teams.name }).from(teams).where(eq(teams.name, team.name));
    if (!row) {
      // Only possible when team.id already names another team.
      throw new AppError("ALREADY_EXISTS", `team id ${team.id} is already used by another team`, { reason: "team_id_taken" });
    }
    return row;
  });
}
