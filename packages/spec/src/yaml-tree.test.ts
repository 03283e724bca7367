import { describe, expect, it } from "vitest";
import { readdirSync, readFileSync } from "node:fs";
import { loadYaml, MAX_DEPTH, MAX_FLOW_ITEMS, MAX_LINES, prescan, prescanMayRefuse, type YamlTree } from "./yaml-tree.js";
import { seededRandom } from "./seeded-random.test-util.js";

function tree(src: string): YamlTree {
  const r = loadYaml(src);
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.tree;
}

describe("loadYaml", () => {
  it("records 1-based positions of values and keys", () => {
    const t = tree("job:\n  name: x\nresources:\n  gpus: 8\nargs: [a, 'b']\n");
    expect(t.nodes.get("resources.gpus")).toEqual({ line: 4, column: 9, keyLine: 4, keyColumn: 3, numberSource: "8" });
    expect(t.nodes.get("job")).toMatchObject({ line: 2, column: 3, keyLine: 1, keyColumn: 1 });
    expect(t.nodes.get("args[1]")).toMatchObject({ line: 5, column: 11 });
  });

  it("keeps the source text of numbers so decimals stay exact", () => {
    const t = tree("a: 12.50\nb: 0x10\nc: 1e3\n");
    expect(t.value).toEqual({ a: 12.5, b: 16, c: 1000 });
    expect([t.nodes.get("a")?.numberSource, t.nodes.get("b")?.numberSource, t.nodes.get("c")?.numberSource]).toEqual(["12.50", "0x10", "1e3"]);
  });

  it("parses YAML 1.2 core scalars even under a %YAML 1.1 directive", () => {
    const t = tree("%YAML 1.1\n---\na: yes\nb: 2026-01-01\nc: on\n");
    expect(t.value).toEqual({ a: "yes", b: "2026-01-01", c: "on" });
  });

  it("treats `key:` and `key: ~` as absent", () => {
    expect(tree("a:\nb: ~\nc: 1\n").value).toEqual({ c: 1 });
  });

  it("stores __proto__ as a plain key without touching the prototype", () => {
    const v = tree("__proto__: {polluted: 1}\n").value as Record<string, unknown>;
    expect(Object.keys(v)).toEqual(["__proto__"]);
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("reports duplicate keys with the first position and keeps the first value", () => {
    const t = tree("a: 1\nb: 2\na: 3\n");
    expect(t.value).toEqual({ a: 1, b: 2 });
    expect(t.issues).toEqual([{ path: "a", line: 3, column: 1, message: "duplicate key 'a' (first set at line 1, column 1)" }]);
  });

  it("never expands aliases: each is an issue and its value is dropped", () => {
    const t = tree("a: &x [1, 2]\nb: *x\n");
    expect(t.value).toEqual({ a: [1, 2] });
    expect(t.issues.map((i) => [i.path, i.line, i.column])).toEqual([
      ["a", 1, 4],
      ["b", 2, 4],
    ]);
    expect(t.poisoned.has("b")).toBe(true);
  });

  it("refuses merge keys and poisons the mapping that used one", () => {
    const t = tree("m:\n  <<: {a: 1}\n  b: 2\n");
    expect(t.issues[0]?.message).toContain("merge keys (<<) are not supported");
    expect(t.poisoned.has("m")).toBe(true);
  });

  it("refuses non-standard tags but allows !!str", () => {
    const t = tree("a: !!str 90\nb: !!binary aGk=\nc: !env HOME\n");
    expect(t.value).toEqual({ a: "90" });
    expect(t.issues.map((i) => i.message)).toEqual([
      "the tag !!binary is not supported in job specs; remove it",
      "the tag !env is not supported in job specs; remove it",
    ]);
  });

  it("refuses complex keys", () => {
    const t = tree("? [a, b]\n: 1\n");
    expect(t.issues[0]?.message).toBe("mapping keys must be plain strings");
  });

  it("refuses numbers that do not fit a double or a safe integer", () => {
    const t = tree("a: 1e400\nb: 9007199254740993\nc: .inf\n");
    expect(t.issues.map((i) => i.message)).toEqual([
      "the number 1e400 is too large to represent",
      "the integer 9007199254740993 is too large; integers in a spec must be below 2^53",
    ]);
    expect(t.value).toEqual({ c: Number.POSITIVE_INFINITY });
  });

  it("turns YAML syntax errors into located issues", () => {
    const r = loadYaml("a:\n  b: 1\n c: 2\n");
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.issues[0]).toMatchObject({ line: 3, message: expect.stringContaining("invalid YAML") });
  });

  it(`accepts exactly ${MAX_DEPTH} levels of nesting and refuses one more`, () => {
    const nested = (n: number): string => `${"[".repeat(n)}${"]".repeat(n)}`;
    expect(loadYaml(`a: ${nested(MAX_DEPTH - 1)}`).ok).toBe(true);
    const r = loadYaml(`a: ${nested(MAX_DEPTH)}`);
    expect(r.ok).toBe(false);
  });

  it("measures block nesting exactly on the CST", () => {
    const block = (n: number): string => Array.from({ length: n }, (_, i) => `${" ".repeat(i)}k:`).join("\n") + " 1\n";
    expect(loadYaml(block(MAX_DEPTH)).ok).toBe(true);
    const r = loadYaml(block(MAX_DEPTH + 1));
    expect(r.ok ? "ok" : r.issues[0]?.message).toBe(`nesting deeper than ${MAX_DEPTH} levels`);
  });
});

describe("prescan", () => {
  it("ignores brackets inside quotes and comments", () => {
    const noisy = `a: "${"[".repeat(100)}"\nb: '${"{".repeat(100)}'\n# ${"[".repeat(100)}\nc: x\n`;
    expect(prescan(noisy)).toBeNull();
  });

  it("ignores brackets inside words, e.g. a[0] in a plain scalar", () => {
    expect(prescan(`cmd: ${"a[0] ".repeat(500)}\n`)).toBeNull();
  });

  it("finds deep flow nesting and compact sequences in linear time", () => {
    const t0 = performance.now();
    expect(prescan("[".repeat(1_000_000))?.offset).toBe(64);
    expect(prescan("- ".repeat(1_000_000))?.message).toContain("nesting deeper");
    expect(performance.now() - t0).toBeLessThan(500);
  });
});

describe("prescanMayRefuse", () => {
  const dirs = ["../testdata/valid/", "../testdata/invalid/", "../../../examples/"].map((d) => new URL(d, import.meta.url));
  const corpus = dirs.flatMap((dir) =>
    readdirSync(dir)
      .filter((f) => f.endsWith(".yaml"))
      .map((f) => readFileSync(new URL(f, dir), "utf8")),
  );

  /** The one property loadYaml relies on: when it says no, prescan finds nothing. */
  const expectSound = (text: string): void => {
    if (!prescanMayRefuse(text)) expect(prescan(text), JSON.stringify(text.slice(0, 200))).toBeNull();
  };

  it("lets real specs skip the scan", () => {
    for (const text of corpus) {
      expectSound(text);
      if (text.length < 2000) expect(prescanMayRefuse(text)).toBe(false);
    }
  });

  it("never skips a text prescan refuses", () => {
    const head = "job: {name: x}\n";
    const cases = [
      "[".repeat(MAX_DEPTH + 1),
      "- ".repeat(MAX_DEPTH + 1),
      "? ".repeat(MAX_DEPTH + 1),
      "-\t".repeat(MAX_DEPTH + 1),
      `a: ${"[".repeat(MAX_DEPTH / 2)}\n${"- ".repeat(MAX_DEPTH / 2 + 1)}x\n`,
      // prescan takes the quote opened by `"` in a plain scalar to close on the next line, then counts the `- ` after it.
      `cmd: echo "\nx: a" ${"- ".repeat(MAX_DEPTH + 1)}\n`,
      `${head}${"# c\n".repeat(MAX_LINES)}`,
      `${head}a: [${"1,".repeat(MAX_FLOW_ITEMS)}]\n`,
      `${head}${"a: [1, 2]\n".repeat(MAX_FLOW_ITEMS / 2)}`,
    ];
    for (const text of cases) {
      expect(prescan(text), JSON.stringify(text.slice(0, 80))).not.toBeNull();
      expect(prescanMayRefuse(text)).toBe(true);
    }
  });

  it("is sound on seeded random texts near the limits", () => {
    const rnd = seededRandom(20260303);
    // Mostly openers, so that many texts go past the depth limit; quotes are left to the cases above
    // (they only make prescan's counts lower).
    const pieces = ["[", "{", "- ", "? ", "-\t", "?\t", "a", " ", ",", "\n", "\n- - ", ": "];
    const rare = ["]", "}", "#", "x\n"];
    let refused = 0;
    let skipped = 0;
    for (let k = 0; k < 400; k++) {
      let text = "";
      const n = rnd() < 0.5 ? Math.floor(rnd() * 150) : 100 + Math.floor(rnd() * 700);
      for (let i = 0; i < n; i++) text += rnd() < 0.1 ? rare[Math.floor(rnd() * rare.length)] : pieces[Math.floor(rnd() * pieces.length)];
      expectSound(text);
      if (prescan(text) !== null) refused++;
      if (!prescanMayRefuse(text)) skipped++;
    }
    expect(skipped).toBeGreaterThan(100);
    expect(refused).toBeGreaterThan(20);
  });
});
