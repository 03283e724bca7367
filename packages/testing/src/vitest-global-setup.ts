import { openDatabase } from "@gpuorch/db";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { type PostgresServer, quoteIdent, startPostgres } from "./postgres-server.js";
import { TEMPLATE_DATABASE } from "./test-database.js";

/**
 * Vitest global setup (wired in the root vitest.config.ts): ONE PostgreSQL per
 * test run, with a template database migrated once; test files clone it with
 * createTestDatabase(). Start-up is cheap (initdb + start + migrate: 2–3 s on
 * a loaded 2-CPU machine), so it runs even when no selected test needs
 * PostgreSQL. Without PostgreSQL binaries the run still proceeds and only
 * tests that ask for a database fail, with the reason.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let server: PostgresServer | undefined;
  try {
    server = await startPostgres({ fast: true });
    await server.createDatabase(TEMPLATE_DATABASE);
    const database = await openDatabase({ url: server.url(TEMPLATE_DATABASE), poolMax: 1 });
    await database.close();
    // Nobody may connect to the template any more: a stray session would make
    // every CREATE DATABASE … TEMPLATE fail.
    const client = new pg.Client({ connectionString: server.url() });
    await client.connect();
    try {
      await client.query(`ALTER DATABASE ${quoteIdent(TEMPLATE_DATABASE)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`);
    } finally {
      await client.end();
    }
    project.provide("gpuorchPostgres", { url: server.url() });
  } catch (e) {
    await server?.stop();
    server = undefined;
    const message = e instanceof Error ? e.message : String(e);
    console.error(`[gpuorch] PostgreSQL test server unavailable: ${message}`);
    project.provide("gpuorchPostgres", { error: message });
  }
  return async () => {
    await server?.stop();
  };
}
