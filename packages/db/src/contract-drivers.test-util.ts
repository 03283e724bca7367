import { type TestDatabase, createTestDatabase } from "@gpuorch/testing";
import { type Database, openDatabase } from "./open.js";

/** One contract suite, two drivers: the embedded PGlite and a real PostgreSQL started by the harness. */
export interface Driver {
  name: string;
  open(): Promise<{ database: Database; testDb?: TestDatabase }>;
}

/** The two drivers every repository contract suite runs on; `poolMax` sizes the PostgreSQL pool (races need more). */
export function contractDrivers(opts: { poolMax?: number } = {}): Driver[] {
  return [
    { name: "pglite", open: async () => ({ database: await openDatabase({ memory: true }) }) },
    {
      name: "postgresql",
      open: async () => {
        const testDb = await createTestDatabase();
        return { database: await openDatabase({ url: testDb.url, poolMax: opts.poolMax ?? 4 }), testDb };
      },
    },
  ];
}
