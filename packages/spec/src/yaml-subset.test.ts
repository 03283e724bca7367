/**
 * readYamlSubset must give exactly the full path's tree, or null. Checked on
 * the corpus, on hand-picked edge cases and on seeded random mutations of the
 * corpus (the same seeds every run).
 */
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { readYamlSubset } from "./yaml-subset.js";
import { loadYaml, type YamlTree } from "./yaml-tree.js";

const TESTDATA = new URL("../testdata/", import.meta.url);
const EXAMPLES = new URL("../../../examples/", import.meta.url);

function yamlFiles(dir: URL): Array<{ name: string; text: string }> {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => ({ name: f, text: readFileSync(new URL(f, dir), "utf8").replace(/^\uFEFF/, "") }));
}

const valid = yamlFiles(new URL("valid/", TESTDATA));
const invalid = yamlFiles(new URL("invalid/", TESTDATA));
const examples = yamlFiles(EXAMPLES);

/** The tree as comparable plain data; `undefined` when the full path refuses the text. */
function fullTree(text: string): unknown {
  const r = loadYaml(text, { subset: false });
  return r.ok ? plain(r.tree) : undefined;
}

function plain(t: YamlTree): unknown {
  // JSON keeps key order (compared too) but loses -0 and NaN; the value itself is compared as well.
  return { value: t.value, json: JSON.stringify(t.value), nodes: [...t.nodes], issues: t.issues, poisoned: [...t.poisoned] };
}

/** Null, or the same tree as the full path. */
function expectSameOrNull(text: string): boolean {
  const fast = readYamlSubset(text);
  if (fast === null) return false;
  expect(plain(fast), JSON.stringify(text)).toEqual(fullTree(text));
  return true;
}

/** xorshift32: the same cases on every run. */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

describe("readYamlSubset", () => {
  it("reads every example and every valid corpus spec, with the full path's tree", () => {
    for (const f of [...examples, ...valid]) expect(expectSameOrNull(f.text), f.name).toBe(true);
  });

  it("gives the full path's tree for every invalid corpus spec it reads", () => {
    for (const f of invalid) expectSameOrNull(f.text);
  });

  it.each([
    ["comment lines at any indentation", "a:\n  b: 1\n# c\n  c: 2\nd: x\n    # e\nf: y\n"],
    ["a list at its key's indentation", "a:\n- x\n# c\n- 'y'\nb: 1\n"],
    ["an indented list", "a:\n    - x\n    - [1, {b: c}]\n"],
    ["CRLF line ends", "a: b\r\nc:\r\n  - 1\r\n  - 'x'\r\n"],
    ["core schema scalars", "a: [~, null, NULL, true, False, 0o17, -12, +3, 0x1F, .5, 1., 1e3, -.inf, .NaN, 1_000, 0x, yes]\n"],
    ["quoted scalars", `a: 'it''s'\nb: "a # b"\nc: ''\nd: [ 'x' , "y" ]\n`],
    ["plain scalars with indicators inside", "a: s3://b/k\nb: x:y\nc: a#b\nd: ---\ne: a, b [c]\nf: [a#b, -x, a:b]\n"],
    ["trailing spaces and comments", "a:   b   # c\nb: [x]  # d\nc:  # e\n  d: 1\n"],
    ["non-ASCII text", "a: 日本 é\nb: '😀'\nc: x\u00a0\n"],
    ["__proto__ as a plain key", "__proto__: {polluted: 1}\nconstructor: x\n"],
    ["a document without a final newline", "a: 1"],
  ])("agrees with the full path: %s", (_what, text) => {
    expect(expectSameOrNull(text)).toBe(true);
  });

  it.each([
    ["an anchor and an alias", "a: &x 1\nb: *x\n"],
    ["a tag", "a: !!str 90\n"],
    ["a block scalar", "a: |\n  text\n"],
    ["a multi-line plain scalar", "a: one\n  two\n"],
    ["a multi-line flow list", "a: [x,\n  y]\n"],
    ["an empty value", "a:\nb: 1\n"],
    ["a duplicate key", "a: 1\na: 2\n"],
    ["a merge key", "a:\n  <<: {b: 1}\n"],
    ["a quoted key", "'a': 1\n"],
    ["a key that is not a plain word", "1BAD: x\n"],
    ["a key the core schema reads as a boolean", "true: x\n"],
    ["a tab", "a:\tb\n"],
    ["a lone carriage return", "a: b\rc: d\n"],
    ["a directive", "%YAML 1.2\n---\na: 1\n"],
    ["a document marker", "---\na: 1\n"],
    ["a second document", "a: 1\n---\nb: 2\n"],
    ["a list at the top", "- a\n- b\n"],
    ["a mapping in a list", "a:\n  - b: 1\n"],
    ["a nested mapping on the key's line", "a: b: c\n"],
    ["a double-quoted escape", 'a: "x\\ty"\n'],
    ["a trailing comma", "a: [x, y, ]\n"],
    ["an integer beyond 2^53", "a: 9007199254740993\n"],
    ["a float overflow", "a: 1e400\n"],
    ["a bad indentation", "a:\n   b: 1\n  c: 2\n"],
    ["only comments", "# nothing\n"],
  ])("leaves %s to the full path", (_what, text) => {
    expect(readYamlSubset(text)).toBeNull();
  });

  it("gives the full path's tree for seeded random mutations of the corpus", () => {
    const rnd = random(20260101);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    const pieces = [
      ":", ": ", " ", "  ", "#", " #", "-", "- ", "[", "]", "{", "}", ",", ", ", "'", '"', "\\", "\t", "\n", "\r\n",
      "&a ", "*a", "!", "?", "|", ">", "%", "@", "0", "1", ".", "e", "0x1F", "0o17", "-1", "1e3", ".5", ".inf", "~",
      "null", "True", "é", "\u00a0", "😀", "---\n", "<<: ", "12.50", "1e400", "9007199254740993", "\n  ", "\n    ",
      "\n#c\n", "''", "[]", "{}", "a: b", "x: y\n", "  - x\n", "{a: [1, 2]}",
    ];
    const sources = [...examples, ...valid, ...invalid].map((f) => f.text);
    const lines = sources.join("\n").split(/(?<=\n)/);
    let read = 0;
    const runs = 1500;
    for (let k = 0; k < runs; k++) {
      let t = pick(sources);
      const edits = 1 + Math.floor(rnd() * 3);
      for (let m = 0; m < edits; m++) {
        const at = Math.floor(rnd() * (t.length + 1));
        const r = rnd();
        if (r < 0.45) t = t.slice(0, at) + pick(pieces) + t.slice(at);
        else if (r < 0.7) t = t.slice(0, at) + t.slice(at + 1 + Math.floor(rnd() * 3));
        else if (r < 0.85) t = t.slice(0, at) + pick(lines) + t.slice(at);
        else {
          const ls = t.split("\n");
          const i = Math.floor(rnd() * ls.length);
          ls[i] = " ".repeat(Math.floor(rnd() * 6)) + (ls[i] ?? "").trimStart();
          t = ls.join("\n");
        }
      }
      if (expectSameOrNull(t)) read++;
    }
    // Enough of them stay in the subset for the comparison to mean something.
    expect(read).toBeGreaterThan(runs / 10);
  });
});
