import type { SQL } from "drizzle-orm";
import { AppError, isAppError } from "@gpuorch/core";

/** The fields of a PostgreSQL error that both drivers (pg, PGlite) expose. */
export interface PgErrorFields {
  code: string;
  message: string;
  constraint?: string;
  table?: string;
  column?: string;
  detail?: string;
}

/**
 * Finds the PostgreSQL error behind `e`. Drizzle wraps driver errors in a
 * DrizzleQueryError whose `cause` is the driver's error, so walk the chain.
 */
export function findPgError(e: unknown): PgErrorFields | undefined {
  let cur: unknown = e;
  for (let depth = 0; depth < 5 && typeof cur === "object" && cur !== null; depth++) {
    const o = cur as Record<string, unknown>;
    if (typeof o["code"] === "string" && /^[0-9A-Z]{5}$/.test(o["code"]) && typeof o["message"] === "string") {
      const out: PgErrorFields = { code: o["code"], message: o["message"] };
      for (const k of ["constraint", "table", "column", "detail"] as const) {
        const v = o[k];
        if (typeof v === "string") out[k] = v;
      }
      return out;
    }
    cur = o["cause"];
  }
  return undefined;
}

function nodeErrorCode(e: unknown): string | undefined {
  let cur: unknown = e;
  for (let depth = 0; depth < 5 && typeof cur === "object" && cur !== null; depth++) {
    const code = (cur as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("E")) return code;
    cur = (cur as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * Translates anything a query threw into an AppError with a stable code, so
 * callers switch on codes rather than on driver-specific SQLSTATEs.
 * AppErrors pass through unchanged.
 */
export function toDbAppError(e: unknown): AppError {
  if (isAppError(e)) return e;
  const pgErr = findPgError(e);
  if (pgErr) {
    const meta: Record<string, unknown> = { sqlstate: pgErr.code };
    if (pgErr.constraint) meta["constraint"] = pgErr.constraint;
    if (pgErr.table) meta["table"] = pgErr.table;
    const opts = (reason: string) => ({ reason, meta, cause: e });
    const c = pgErr.code;
    if (c === "23505") return new AppError("ALREADY_EXISTS", pgErr.message, opts("already_exists"));
    if (c === "23514" || c === "23502") return new AppError("INVALID_ARGUMENT", pgErr.message, opts("constraint_violation"));
    if (c === "23503") return new AppError("FAILED_PRECONDITION", pgErr.message, opts("foreign_key_violation"));
    // Raised by the append-only triggers (see drizzle/0001_append_only_triggers.sql).
    if (c === "23001") return new AppError("FAILED_PRECONDITION", pgErr.message, opts("append_only"));
    if (c.startsWith("22")) return new AppError("INVALID_ARGUMENT", pgErr.message, opts("invalid_value"));
    if (c === "40001" || c === "40P01") return new AppError("ABORTED", pgErr.message, opts("serialization_failure"));
    if (c === "57014") return new AppError("DEADLINE_EXCEEDED", pgErr.message, opts("query_canceled"));
    if (c.startsWith("08") || c.startsWith("57P") || c === "53300") {
      return new AppError("UNAVAILABLE", pgErr.message, opts("database_unavailable"));
    }
    return new AppError("INTERNAL", pgErr.message, opts("database_error"));
  }
  const nodeCode = nodeErrorCode(e);
  if (nodeCode === "ECONNREFUSED" || nodeCode === "ECONNRESET" || nodeCode === "ETIMEDOUT" || nodeCode === "EPIPE") {
    return new AppError("UNAVAILABLE", `database connection failed: ${nodeCode}`, { reason: "database_unavailable", cause: e });
  }
  const message = e instanceof Error ? e.message : String(e);
  return AppError.internal(`database error: ${message}`, e);
}

/** Runs one query function, translating what it throws (see toDbAppError). */
export async function dbCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw toDbAppError(e);
  }
}

/** Runs a raw SQL statement and returns its rows, errors translated (see toDbAppError). */
export async function sqlRows<T>(db: { execute(q: SQL): Promise<unknown> }, query: SQL): Promise<T[]> {
  const res = (await dbCall(() => db.execute(query))) as { rows: T[] };
  return res.rows;
}
