import { randomUUID } from "node:crypto";
import { AppError } from "@gpuorch/core";
import { type TestDatabase, createTestDatabase, newJobInput } from "@gpuorch/testing";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sqlRows } from "./db-errors.js";
import { insertJobs } from "./job-batch-insert.js";
import { type Database, openDatabase } from "./open.js";
import { preparedRows } from "./prepared.js";
import { createTeam } from "./teams.js";

describe("preparedRows (PostgreSQL)", () => {
  let testDb: TestDatabase;
  let database: Database;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    // One connection, so the session that prepared the statement is the one asked about it.
    database = await openDatabase({ url: testDb.url, poolMax: 1 });
  });
  afterAll(async () => {
    await database.close();
    await testDb.assertNoLeftoverConnections();
  });

  it("the submit insert is a server-side prepared statement, planned once per connection", async () => {
    const db = database.db;
    const team = await createTeam(db, { id: randomUUID(), name: `prep-${randomUUID().slice(0, 8)}` });
    for (let round = 0; round < 3; round++) {
      const out = await insertJobs(db, [newJobInput(team.id), newJobInput(team.id)]);
      expect(out.every((o) => o.ok)).toBe(true);
    }
    const prepared = await sqlRows<{ name: string; calls: string }>(
      db,
      sql`SELECT name, (generic_plans + custom_plans)::text AS calls FROM pg_prepared_statements WHERE name = 'gpuorch_insert_jobs'`,
    );
    expect(prepared).toEqual([{ name: "gpuorch_insert_jobs", calls: "3" }]);
  });

  it("inside a transaction it runs the same SQL unprepared (the statement belongs to the pool's sessions)", async () => {
    const rows = await database.db.transaction((tx) => preparedRows<{ n: number }>(tx, "gpuorch_test_tx", sql`SELECT 41 + ${1}::int AS n`));
    expect(rows).toEqual([{ n: 42 }]);
    const listed = await sqlRows<{ name: string }>(database.db, sql`SELECT name FROM pg_prepared_statements WHERE name = 'gpuorch_test_tx'`);
    expect(listed).toEqual([]);
  });

  it("refuses a second text under one name (the server would run the first one's plan)", async () => {
    await preparedRows(database.db, "gpuorch_test_once", sql`SELECT ${1}::int AS n`);
    const err = await preparedRows(database.db, "gpuorch_test_once", sql`SELECT ${2}::int + 1 AS n`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe("INTERNAL");
  });
});
