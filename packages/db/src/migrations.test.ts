import { execFile } from "node:child_process";
import { cp, mkdtemp, readdir, rm } from "node:fs/promises";
import { existsSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { createTestDatabase, newJobInput } from "@gpuorch/testing";
import { sql } from "drizzle-orm";
import { describe, expect, it } from "vitest";
import { type Database, MIGRATIONS_FOLDER, openDatabase } from "./open.js";
import { insertJob } from "./jobs.js";
import { ensureTeam } from "./index.js";

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

  describe("job specs are stored lz4-compressed where the server has lz4 (0009)", () => {
    /** The compression each spec column asks for, and what a stored 8 KB spec actually got. */
    async function compression(d: Database): Promise<{ columns: Record<string, string>; stored: { yaml: string | null; spec: string | null } }> {
      const team = await ensureTeam(d.db, { id: crypto.randomUUID(), name: `t-${crypto.randomUUID().slice(0, 8)}` });
      // Big enough to pass the 2 kB TOAST threshold, compressible, so PostgreSQL compresses both columns.
      const padding = "# padding line that compresses well\n".repeat(220);
      const job = await insertJob(d.db, newJobInput(team.id, { specYaml: `${padding}job:\n  name: big\n`, spec: { job: { name: "big" }, notes: padding } }));
      const cols = (await d.db.execute(sql`
        SELECT attname, attcompression::text AS c FROM pg_attribute
        WHERE attrelid = 'jobs'::regclass AND attname IN ('spec_yaml', 'spec')`)) as unknown as { rows: { attname: string; c: string }[] };
      const stored = (await d.db.execute(sql`
        SELECT pg_column_compression(spec_yaml) AS yaml, pg_column_compression(spec) AS spec FROM jobs WHERE id = ${job.job.id}`)) as unknown as {
        rows: { yaml: string | null; spec: string | null }[];
      };
      return { columns: Object.fromEntries(cols.rows.map((r) => [r.attname, r.c])), stored: stored.rows[0]! };
    }

    it("on PostgreSQL (Debian builds have lz4)", async () => {
      const testDb = await createTestDatabase();
      const d = await openDatabase({ url: testDb.url, poolMax: 1 });
      try {
        expect(await compression(d)).toEqual({ columns: { spec_yaml: "l", spec: "l" }, stored: { yaml: "lz4", spec: "lz4" } });
      } finally {
        await d.close();
      }
    });

    it("falls back to pglz on PGlite, which lacks lz4, without failing the migration", async () => {
      const d = await openDatabase({ memory: true });
      try {
        expect(await compression(d)).toEqual({ columns: { spec_yaml: "", spec: "" }, stored: { yaml: "pglz", spec: "pglz" } });
      } finally {
        await d.close();
      }
    });
  });
});
