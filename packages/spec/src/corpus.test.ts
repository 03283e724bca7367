/**
 * The spec corpus: every file under testdata/valid and testdata/invalid, plus
 * hostile inputs too large to commit (built here), checked against
 * testdata/expected.json. One test per manifest entry.
 */
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { formatSpecIssues, parseJobSpec, type ParseResult } from "./index.js";

const TESTDATA = new URL("../testdata/", import.meta.url);

interface Expected {
  ok: boolean;
  fields?: Record<string, unknown>;
  path?: string;
  line?: number | null;
  column?: number | null;
  contains?: string;
  generated?: string;
}

const manifest = JSON.parse(readFileSync(new URL("expected.json", TESTDATA), "utf8")) as Record<string, Expected>;

const VALID_HEAD = "job:\n  name: generated\n  type: training\n  framework: pytorch\nentrypoint:\n  command: python train.py\nresources:\n  gpus: 1\n";

/** Inputs too large (or too silly) to commit; names match the manifest. */
const GENERATED: Record<string, () => string | Uint8Array> = {
  "generated/oversize-10mib.yaml": () => `${VALID_HEAD}# ${"x".repeat(10 * 1024 * 1024)}\n`,
  "generated/oversize-bytes.yaml": () => new Uint8Array(2 * 1024 * 1024).fill(0x20),
  "generated/flow-nesting-100k.yaml": () => "[".repeat(100_000),
  "generated/flow-mapping-nesting.yaml": () => `a: ${"{a: ".repeat(200_000)}`,
  "generated/compact-sequences-500k.yaml": () => "- ".repeat(500_000),
  "generated/block-nesting-1000.yaml": () => Array.from({ length: 1000 }, (_, i) => `${" ".repeat(i)}k:\n`).join(""),
  "generated/many-lines.yaml": () => `${VALID_HEAD}extra:\n${"- x\n".repeat(20_000)}`,
  "generated/many-flow-items.yaml": () => `a: [${"1,".repeat(500_000)}]`,
  "generated/very-long-name.yaml": () =>
    `# a 900 kB name\njob:\n  name: ${"a".repeat(900_000)}\n  type: training\n  framework: pytorch\nentrypoint:\n  command: x\nresources:\n  gpus: 1\n`,
  "generated/many-aliases.yaml": () =>
    "job:\n  name: alias-flood\n  type: training\n  framework: pytorch\nresources: {gpus: 1}\nentrypoint:\n" +
    `  command: &x python train.py\n  working_dir: /w\n  args: [${Array.from({ length: 5000 }, () => "*x").join(", ")}]\n`,
};

function load(name: string): string | Uint8Array {
  const gen = GENERATED[name];
  if (gen) return gen();
  // Bytes, not text: the decoder (and its UTF-8 check) is part of what is tested.
  return new Uint8Array(readFileSync(new URL(name, TESTDATA)));
}

function get(obj: unknown, dotted: string): unknown {
  let cur: unknown = obj;
  for (const k of dotted.split(".")) {
    if (typeof cur !== "object" || cur === null) return undefined;
    cur = (cur as Record<string, unknown>)[k];
  }
  return cur;
}

function explain(r: ParseResult): string {
  return r.ok ? "parsed OK" : formatSpecIssues(r.issues);
}

describe("spec corpus manifest", () => {
  it("lists every committed file, and every listed file exists or is generated", () => {
    const onDisk = ["valid", "invalid"].flatMap((dir) =>
      readdirSync(new URL(`${dir}/`, TESTDATA))
        .filter((f) => f.endsWith(".yaml"))
        .map((f) => `${dir}/${f}`),
    );
    const listed = Object.keys(manifest);
    expect(listed.filter((n) => !n.startsWith("generated/")).sort()).toEqual(onDisk.sort());
    expect(listed.filter((n) => n.startsWith("generated/")).sort()).toEqual(Object.keys(GENERATED).sort());
    for (const n of Object.keys(GENERATED)) expect(manifest[n]?.generated, n).toBeTruthy();
    expect(onDisk.filter((n) => n.startsWith("valid/")).length).toBeGreaterThanOrEqual(20);
    expect(onDisk.filter((n) => n.startsWith("invalid/")).length).toBeGreaterThanOrEqual(40);
  });
});

describe("spec corpus", () => {
  it.each(Object.entries(manifest))("%s", (name, want) => {
    const input = load(name);
    const started = performance.now();
    const r = parseJobSpec(input);
    const elapsed = performance.now() - started;
    // Hostile inputs are refused quickly; generous bound for slow CI machines.
    expect(elapsed).toBeLessThan(3000);
    if (want.ok) {
      expect(r.ok, explain(r)).toBe(true);
      if (!r.ok) return;
      for (const [path, value] of Object.entries(want.fields ?? {})) {
        expect(get(r.spec, path), path).toEqual(value);
      }
      // The spec is plain JSON data: it survives a round trip unchanged.
      expect(JSON.parse(JSON.stringify(r.spec))).toEqual(r.spec);
      // Text and bytes give the same result.
      if (input instanceof Uint8Array) expect(parseJobSpec(new TextDecoder().decode(input))).toEqual(r);
      return;
    }
    expect(r.ok, "expected the spec to be rejected").toBe(false);
    if (r.ok) return;
    expect(r.issues).toContainEqual({
      path: want.path,
      line: want.line,
      column: want.column,
      message: expect.stringContaining(want.contains ?? "") as unknown as string,
    });
    expect(r.issues.length).toBeLessThanOrEqual(51);
  });
});

describe("examples/ at the repository root", () => {
  const dir = new URL("../../../examples/", import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));

  it("has the documented examples", () => {
    expect(files).toEqual(expect.arrayContaining(["ddp-resnet.yaml", "hpo-sweep.yaml", "batch-inference.yaml"]));
  });

  it.each(files)("%s parses", (f) => {
    const r = parseJobSpec(new Uint8Array(readFileSync(new URL(f, dir))));
    expect(r.ok, explain(r)).toBe(true);
  });
});
