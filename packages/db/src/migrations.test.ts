import { execFile } from "node:child_process";
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { createTestDatabase } from "@gpuorch/testing";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { MIGRATIONS_FOLDER, openDatabase } from "./open.js";

describe("migrations", () => {
  it("are found next to the package (from src/ and dist/ alike)", () => {
    expect(existsSync(join(MIGRATIONS_FOLDER, "meta", "_journal.json"))).toBe(true);
  });

  it("match schema.ts: drizzle-kit generate finds nothing left to migrate", async () => {
    const pkgRoot = dirname(MIGRATIONS_FOLDER);
    const work = await mkdtemp(join(tmpdir(), "gpuorch-drift-"));
    try {
      await cp(MIGRATIONS_FOLDER, join(work, "drizzle"), { recursive: true });
      // drizzle-kit wants --out relative to its working directory.
      const drizzleKit = join(pkgRoot, "node_modules", "drizzle-kit", "bin.cjs");
      const schema = join(pkgRoot, "src", "schema.ts");
      const args = [drizzleKit, "generate", "--dialect", "postgresql", "--schema", schema, "--out", "drizzle"];
      const { stdout } = await promisify(execFile)(process.execPath, args, { cwd: work });
      expect(stdout, "schema.ts changed without `pnpm --filter @gpuorch/db db:generate`").toContain("No schema changes");
      expect((await readdir(join(work, "drizzle"))).sort()).toEqual((await readdir(MIGRATIONS_FOLDER)).sort());
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });

  it("apply once when several processes start at once on an empty PostgreSQL database", async () => {
    const testDb = await createTestDatabase({ empty: true });
    const opened = await Promise.all(Array.from({ length: 4 }, () => openDatabase({ url: testDb.url, poolMax: 1 })));
    try {
      const first = opened[0];
      if (!first) throw new Error("nothing opened");
      // Both drivers return { rows }; the shared Db type cannot say so.
      const applied = (await first.db.execute(sql`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`)) as unknown as {
        rows: { n: number }[];
      };
      const journal = JSON.parse(readFileSync(join(MIGRATIONS_FOLDER, "meta", "_journal.json"), "utf8")) as { entries: unknown[] };
      expect(applied.rows).toEqual([{ n: journal.entries.length }]);
    } finally {
      await Promise.all(opened.map((d) => d.close()));
    }
    await testDb.assertNoLeftoverConnections();
  });
});
