/**
 * validate.ts runs each section schema through z.compile: a generated parser
 * answers the input it accepts and hands everything else to the schema. These
 * tests pin that this changes nothing: same verdict, same output (keys in the
 * same order), same issues, on every section of the corpus and on seeded
 * mutations of them; and that every section does compile (no silent fallback
 * to the slow path).
 */
import { readdirSync, readFileSync } from "node:fs";
import * as z from "zod";
import { describe, expect, it } from "vitest";
import { SECTION_SCHEMAS } from "./schema.js";
import { loadYaml } from "./yaml-tree.js";
import { seededRandom } from "./seeded-random.test-util.js";

const SECTIONS: Record<string, z.ZodType> = SECTION_SCHEMAS;

const dirs = ["../testdata/valid/", "../testdata/invalid/", "../../../examples/"].map((d) => new URL(d, import.meta.url));
const roots = dirs.flatMap((dir) =>
  readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .flatMap((f) => {
      const r = loadYaml(readFileSync(new URL(f, dir), "utf8").replace(/^\uFEFF/, ""));
      return r.ok && typeof r.tree.value === "object" && r.tree.value !== null ? [r.tree.value as Record<string, unknown>] : [];
    }),
);

/** Field values that hit every kind of check: types, ranges, units, URIs, vocabularies, nesting. */
const POOL: unknown[] = [
  null, 0, 1, 2, -1, 1.5, 8, 17, 4096, 4097, 1e6, 1e9, Number.NaN, Number.POSITIVE_INFINITY, true, false, "", " ", "x", "a-b", "A", "-a",
  "training", "hpo", "pytorch", "pytorch_ddp", "multi_task", "prefer", "required", "pre-stage", "signal", "minimize", "val_loss",
  "uniform", "loguniform", "int", "choice", 1e-5, 64,
  "80GB", "1.5TiB", "0GB", "80", "30m", "1h30m", "0s", "2026-12-01T18:00:00Z", "2026-12-01T18:00:00", "$500", "12.50", "-5",
  "s3://bucket/key", "s3://B/k", "gs://bucket/k", "az://acct1/container/b", "minio://h:9000/bucket/k", "./train.py", "https://github.com/o/r.git#main",
  "git@github.com:o/r.git", "ftp://x/y", "aws", "awz", "us-east-1", "bad region!", "A100", "h100", "T5", "1g.10gb", "MIG 1G.10GB", "9g.1gb",
  [], ["a"], ["aws", "aws", "gcp"], [1, "a"], ["x".repeat(5000)], {}, { a: 1 }, { A: "b" }, { "1BAD": "x" }, { A: 1 },
  { lr: { type: "uniform", min: 0, max: 1 } }, { c: { type: "choice", values: [] } }, { c: { type: "choice", values: ["a", 1, true] } },
  { p: { type: "int", min: 1.5, max: 3 } }, { p: { type: "loguniform", min: 0, max: 1, values: [1] } }, { "bad name": { type: "uniform", min: 0, max: 1 } },
  { metric: "m", direction: "minimize" }, { metric: "m", direction: "up" },
];

const isMapping = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The corpus's value for each section, plus seeded mutations: a field (or a
 * field of a nested mapping) replaced, removed or added.
 */
function inputs(name: string): unknown[] {
  const base = roots.map((r) => r[name]).filter((v) => v !== undefined);
  const out: unknown[] = [...base, undefined, {}, [], "x", 1];
  const rnd = seededRandom(name.length * 7919 + 1);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
  const mutate = (m: Record<string, unknown>): Record<string, unknown> => {
    const copy = { ...m };
    const keys = Object.keys(copy);
    const key = pick(keys);
    const r = rnd();
    if (key !== undefined && isMapping(copy[key]) && r < 0.4) copy[key] = mutate(copy[key]);
    else if (key !== undefined && r < 0.75) copy[key] = pick(POOL);
    else if (key !== undefined && r < 0.85) delete copy[key];
    else copy[pick(["gpus", "name", "uri", "budget", "mode", "tasks", "keep", "interval", "trials", "min", "gpu", "extra"])] = pick(POOL);
    return copy;
  };
  const mappings = base.filter(isMapping);
  for (let k = 0; k < 600 && mappings.length > 0; k++) {
    let m = pick(mappings);
    for (let e = Math.floor(rnd() * 2); e >= 0; e--) m = mutate(m);
    out.push(m);
  }
  return out;
}

describe("compiled section schemas", () => {
  it.each(Object.keys(SECTIONS))("%s compiles with no fallback to the runtime parser", (name) => {
    expect(() => z.compile(SECTIONS[name] as z.ZodType, { strict: true })).not.toThrow();
  });

  it.each(Object.keys(SECTIONS))("%s gives the schema's own result on the corpus and its mutations", (name) => {
    const schema = SECTIONS[name] as z.ZodType;
    const compiled = z.compile(schema);
    let accepted = 0;
    let refused = 0;
    for (const input of inputs(name)) {
      const want = schema.safeParse(input);
      const got = compiled.safeParse(input);
      const what = JSON.stringify(input)?.slice(0, 300);
      expect(got.success, what).toBe(want.success);
      if (want.success && got.success) {
        accepted++;
        expect(got.data, what).toEqual(want.data);
        expect(JSON.stringify(got.data), what).toBe(JSON.stringify(want.data));
      } else if (!want.success && !got.success) {
        refused++;
        expect(got.error.issues, what).toEqual(want.error.issues);
      }
    }
    // Both outcomes are exercised (the version literal has only a handful of inputs).
    expect(accepted).toBeGreaterThan(name === "version" ? 0 : 10);
    expect(refused).toBeGreaterThan(name === "version" ? 0 : 100);
  });
});
