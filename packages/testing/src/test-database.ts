import { randomBytes } from "node:crypto";
import pg from "pg";
import { quoteIdent } from "./postgres-server.js";
import { waitFor } from "./wait-for.js";

/** The database every test database is cloned from: migrations applied once per run. */
export const TEMPLATE_DATABASE = "gpuorch_template";

/** What the vitest global setup hands to test files (see vitest-global-setup.ts). */
export type ProvidedPostgres = { url: string; error?: undefined } | { url?: undefined; error: string };

declare module "vitest" {
  export interface ProvidedContext {
    gpuorchPostgres: ProvidedPostgres;
  }
}

export interface TestDatabase {
  name: string;
  /** postgres:// URL of this database. */
  url: string;
  /** Sessions connected to this database, other than the one asking. */
  connectionCount(): Promise<number>;
  /**
   * Fails when a connection to this database is still open (after a short
   * grace: a closed pool's backends take a moment to exit).
   */
  assertNoLeftoverConnections(graceMs?: number): Promise<void>;
}

/** The server URL (database `postgres`) that the global setup started for this run. */
export async function testPostgresServerUrl(): Promise<string> {
  // Imported lazily so @gpuorch/testing also loads outside vitest (benchmarks).
  const { inject } = await import("vitest");
  const provided = inject("gpuorchPostgres");
  if (provided.error !== undefined) throw new Error(`no PostgreSQL for this test run: ${provided.error}`);
  return provided.url;
}

function withDatabase(serverUrl: string, name: string): string {
  const u = new URL(serverUrl);
  u.pathname = `/${encodeURIComponent(name)}`;
  return u.toString();
}

async function withAdmin<T>(serverUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * A fresh database cloned from the migrated template (about 0.1 s), for one
 * test file or one test; `empty: true` gives one without migrations (for
 * testing migrations themselves). Nothing drops it: the whole server goes
 * away at the end of the run.
 */
export async function createTestDatabase(opts: { empty?: boolean } = {}): Promise<TestDatabase> {
  const serverUrl = await testPostgresServerUrl();
  const name = `gpuorch_test_${randomBytes(6).toString("hex")}`;
  const template = opts.empty ? "template0" : TEMPLATE_DATABASE;
  await withAdmin(serverUrl, (c) => c.query(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE ${quoteIdent(template)}`));
  const connectionCount = () =>
    withAdmin(serverUrl, async (c) => {
      const r = await c.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        [name],
      );
      return r.rows[0]?.n ?? 0;
    });
  return {
    name,
    url: withDatabase(serverUrl, name),
    connectionCount,
    async assertNoLeftoverConnections(graceMs = 2_000) {
      let last = -1;
      try {
        await waitFor(async () => (last = await connectionCount()) === 0, { timeoutMs: graceMs, intervalMs: 20 });
      } catch {
        throw new Error(`${last} connection(s) to test database ${name} left open`);
      }
    },
  };
}
