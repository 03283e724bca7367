import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createMemoryLogger } from "@gpuorch/runtime";
import { parseJobSpec } from "@gpuorch/spec";
import { describe, expect, it } from "vitest";
import { SpecParserPool, parsedSpec } from "./spec-parser-pool.js";

// The built worker: `pnpm test` runs tsc -b first (the worker cannot run TypeScript sources).
const WORKER = new URL("../dist/spec-worker.js", import.meta.url);
const EXITING_WORKER = new URL("../testdata/exiting-spec-worker.mjs", import.meta.url);
const CORPUS = fileURLToPath(new URL("../../packages/spec/testdata/", import.meta.url));

const corpus: string[] = ["valid", "invalid"].flatMap((dir) =>
  readdirSync(join(CORPUS, dir))
    .filter((f) => f.endsWith(".yaml"))
    .map((f) => readFileSync(join(CORPUS, dir, f), "utf8")),
);

describe("SpecParserPool", () => {
  it("answers exactly what parseJobSpec answers, for a burst of valid and invalid specs over two workers", async () => {
    expect(corpus.length).toBeGreaterThan(40);
    const pool = new SpecParserPool({ workers: 2, logger: createMemoryLogger(), workerUrl: WORKER });
    try {
      const burst = [...corpus, ...corpus, ...corpus];
      const results = await Promise.all(burst.map((yaml) => pool.parse(yaml)));
      expect(results.map((r) => r.result)).toEqual(burst.map((yaml) => parseJobSpec(yaml)));
      expect(results).toEqual(burst.map((yaml) => parsedSpec(yaml)));
      expect(results.filter((r) => r.result.ok).every((r) => typeof r.admissionKey === "string")).toBe(true);
      expect(results.some((r) => !r.result.ok && r.admissionKey === null)).toBe(true);
    } finally {
      await pool.close();
    }
  });

  it("loses nothing when a worker dies: its specs are parsed on the event loop and it is replaced", async () => {
    const logger = createMemoryLogger();
    const pool = new SpecParserPool({ workers: 1, logger, workerUrl: EXITING_WORKER });
    try {
      for (let round = 0; round < 3; round++) {
        const batch = corpus.slice(round * 5, round * 5 + 5);
        expect(await Promise.all(batch.map((yaml) => pool.parse(yaml)))).toEqual(batch.map((yaml) => parsedSpec(yaml)));
      }
      const exits = logger.records.filter((r) => r.msg?.startsWith("spec parser worker exited"));
      expect(exits.length).toBeGreaterThanOrEqual(3);
      expect(exits[0]?.fields).toMatchObject({ code: 3 });
    } finally {
      await pool.close();
    }
  });

  it("parses inline with no workers and after close", async () => {
    const none = new SpecParserPool({ workers: 0, logger: createMemoryLogger() });
    expect((await none.parse(corpus[0]!)).result).toEqual(parseJobSpec(corpus[0]!));
    const pool = new SpecParserPool({ workers: 1, logger: createMemoryLogger(), workerUrl: WORKER });
    const inFlight = pool.parse(corpus[1]!);
    await pool.close();
    expect((await inFlight).result).toEqual(parseJobSpec(corpus[1]!));
    expect((await pool.parse(corpus[2]!)).result).toEqual(parseJobSpec(corpus[2]!));
  });
});
