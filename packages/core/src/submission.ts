import { AppError } from "./app-error.js";
import type { Principal } from "./models.js";

/** The team every admin submission without `job.team` lands in. */
export const DEFAULT_TEAM = "default";

/**
 * Which team a submitted job belongs to. A team token can only submit into
 * its own team (a differing `job.team` is refused, naming the field); an
 * admin token submits into `job.team`, or the default team.
 */
export function resolveSubmitTeam(principal: Principal, specTeam: string | undefined): string {
  if (principal.admin) return specTeam ?? principal.teamName ?? DEFAULT_TEAM;
  if (principal.kind !== "user" || principal.teamName === null) {
    throw new AppError("PERMISSION_DENIED", "this token cannot submit jobs", { reason: "permission_denied" });
  }
  if (specTeam !== undefined && specTeam !== principal.teamName) {
    throw new AppError("PERMISSION_DENIED", `job.team '${specTeam}' is not your token's team '${principal.teamName}'`, {
      reason: "wrong_team",
      fields: [{ field: "job.team", message: `must be '${principal.teamName}' (the team of your token) or omitted` }],
    });
  }
  return principal.teamName;
}

/** The team filter a principal's reads are confined to (null = all teams). */
export function readScope(principal: Principal): { teamId: string | null } {
  return { teamId: principal.admin ? null : principal.teamId };
}

/** Page sizes: 1..max, default when 0/absent. */
export function clampPageSize(requested: number | undefined, field: string, def = 50, max = 1000): number {
  if (requested === undefined || requested === 0) return def;
  if (!Number.isInteger(requested) || requested < 1 || requested > max) {
    throw AppError.invalid(`${field} must be an integer between 1 and ${max}, got ${requested}`, [
      { field, message: `expected 1..${max}, got ${requested}` },
    ]);
  }
  return requested;
}
