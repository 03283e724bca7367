import { AppError } from "./app-error.js";

const UNIT_MS = { m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/**
 * A "since" bound as users type it: an ISO 8601 / RFC 3339 time
 * (`2026-11-01`, `2026-11-01T12:00:00Z`) or an age back from `now` (`30m`,
 * `24h`, `7d`). `field` names the flag or parameter in the error.
 */
export function parseSince(v: string, now: Date, field = "since"): Date {
  const rel = /^(\d+)([mhd])$/.exec(v);
  if (rel) return new Date(now.getTime() - Number(rel[1]) * UNIT_MS[rel[2] as keyof typeof UNIT_MS]);
  const t = Date.parse(v);
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(t)) {
    throw AppError.invalid(`${field} must be an ISO 8601 time (2026-11-01, 2026-11-01T12:00:00Z) or an age like 24h, 7d, 30m; got '${v}'`, [
      { field, message: "expected an ISO 8601 time or an age (30m, 24h, 7d)" },
    ]);
  }
  return new Date(t);
}
