import { existsSync, readFileSync } from "node:fs";
import { createConnection } from "node:net";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { startPostgres } from "./postgres-server.js";
import { createTestDatabase } from "./test-database.js";

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

async function query<T extends pg.QueryResultRow>(url: string, text: string): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text)).rows;
  } finally {
    await c.end();
  }
}

describe("startPostgres", () => {
  it("runs a throw-away cluster on loopback, clones templates, and leaves nothing after stop()", async () => {
    const server = await startPostgres();
    try {
      expect(server.url()).toBe(`postgres://postgres@127.0.0.1:${server.port}/postgres`);
      const settings = await query<{ name: string; setting: string }>(
        server.url(),
        "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'listen_addresses') ORDER BY name",
      );
      expect(settings).toEqual([
        { name: "fsync", setting: "off" },
        { name: "listen_addresses", setting: "127.0.0.1" },
        { name: "synchronous_commit", setting: "off" },
      ]);
      const srcUrl = await server.createDatabase("src");
      await query(srcUrl, "CREATE TABLE t AS SELECT 42 AS answer");
      const cloneUrl = await server.createDatabase("clone", "src");
      expect(await query(cloneUrl, "SELECT answer FROM t")).toEqual([{ answer: 42 }]);
    } finally {
      await server.stop();
    }
    expect(existsSync(server.dir)).toBe(false);
    expect(await portOpen(server.port)).toBe(false);
    await server.stop();
  });
});

/** Every table the newest drizzle snapshot declares: a clone must carry all of them, and nothing else. */
function latestSchemaTables(): string[] {
  const meta = new URL("../../db/drizzle/meta/", import.meta.url);
  const journal = JSON.parse(readFileSync(new URL("_journal.json", meta), "utf8")) as { entries: { tag: string }[] };
  const last = journal.entries.at(-1);
  if (!last) throw new Error("drizzle journal has no entries");
  const snapshot = JSON.parse(readFileSync(new URL(`${last.tag.slice(0, 4)}_snapshot.json`, meta), "utf8")) as {
    tables: Record<string, { name: string }>;
  };
  return Object.values(snapshot.tables)
    .map((t) => t.name)
    .sort();
}

describe("createTestDatabase", () => {
  it("hands each caller a fresh, migrated clone of the run's template", async () => {
    const [a, b] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    expect(a.name).not.toBe(b.name);
    const tables = await query<{ tablename: string }>(a.url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename");
    expect(tables.map((t) => t.tablename)).toEqual(latestSchemaTables());
    await query(a.url, "INSERT INTO teams (id, name) VALUES (gen_random_uuid(), 'only-in-a')");
    expect(await query(b.url, "SELECT name FROM teams")).toEqual([]);
  });

  it("detects a connection left open", async () => {
    const t = await createTestDatabase();
    const leaked = new pg.Client({ connectionString: t.url });
    await leaked.connect();
    await expect(t.assertNoLeftoverConnections(100)).rejects.toThrow(/1 connection\(s\) to test database/);
    await leaked.end();
    await t.assertNoLeftoverConnections();
  });
});
