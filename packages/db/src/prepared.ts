import { AppError } from "@gpuorch/core";
import type { SQL } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";
import pg from "pg";
import { dbCall, sqlRows } from "./db-errors.js";
import type { Db } from "./open.js";

const dialect = new PgDialect();

/** Statement name → its text: a name is bound to one text for the life of the process. */
const texts = new Map<string, string>();

/**
 * Runs a hot statement as a named prepared statement on PostgreSQL, so each
 * pooled connection parses, analyzes and plans it once instead of on every
 * call. For the submit insert (a CTE over jsonb_to_recordset feeding two
 * INSERTs) that planning was ~400 us of PostgreSQL CPU per statement, more
 * than the inserts themselves.
 *
 * Only for statements whose text never changes (all variation in
 * parameters) and only on the root database of the node-postgres driver: a
 * transaction, or PGlite (in process, no protocol-level statements), runs
 * the same SQL the ordinary way. Rows come back as `db.execute` gives them
 * (the driver's default parsers, timestamps as written by drizzle's session
 * or as Date: callers accept both).
 */
export async function preparedRows<T>(db: Db, name: string, query: SQL): Promise<T[]> {
  const client = (db as { $client?: unknown }).$client;
  if (!(client instanceof pg.Pool)) return sqlRows<T>(db, query);
  const { sql: text, params } = dialect.sqlToQuery(query);
  const known = texts.get(name);
  if (known === undefined) texts.set(name, text);
  else if (known !== text) throw AppError.internal(`prepared statement '${name}' was given a second text`);
  const res = await dbCall(() => client.query<T & pg.QueryResultRow>({ name, text, values: params }));
  return res.rows;
}
