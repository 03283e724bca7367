/**
 * readYamlSubset must give exactly the full path's tree, or null. Checked on
 * the corpus, on hand-picked edge cases and on seeded random mutations of the
 * corpus (the same seeds every run).
 */
import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { formatPath, type PathSegment } from "./issues.js";
import { readYamlSubset } from "./yaml-subset.js";
import { loadYaml, type YamlTree } from "./yaml-tree.js";
import { seededRandom } from "./seeded-random.test-util.js";

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
    ["a control character in a comment", "# a\u0001b\na: 1\n"],
    ["a control character in a trailing comment", "a: 1 # x\u0000\n"],
    ["a DEL in a plain scalar", "a: x\u007fy\n"],
    ["a C1 control in a plain scalar", "a: x\u0085y\n"],
    ["a NUL in a quoted scalar", "a: 'x\u0000y'\n"],
    ["a BOM inside a value", "a: \ufeffx\n"],
    ["a line separator in a comment", "a: 1\n# x\u2028y\n"],
    ["a paragraph separator starting a scalar", "a: [\u2029]\n"],
    ["a carriage return alone at the end", "a: 1\r"],
    ["a carriage return alone in a comment", "# x\ry\na: 1\n"],
  ])("leaves %s to the full path", (_what, text) => {
    expect(readYamlSubset(text)).toBeNull();
  });

  it("reads numbers as the full path does", () => {
    // Every plain scalar of up to three characters from the characters numbers are made of, and longer forms.
    const chars = ["0", "1", "8", "+", "-", ".", "e", "E", "x", "o", "f", "_"];
    const scalars = [...chars];
    for (const a of chars) for (const b of chars) scalars.push(a + b);
    for (const a of chars) for (const b of chars) for (const c of chars) scalars.push(a + b + c);
    scalars.push(
      ...[".inf", "-.inf", "+.inf", ".Inf", "-.INF", ".nan", ".NaN", ".NAN", "-.nan", "+.NaN", ".Nan", "..inf"],
      ...["0o17", "0o8", "0o", "0O17", "0x1F", "0xff", "0xg", "0X1F", "-0x1", "+0o7"],
      ...["12.50", "1.e3", ".5e-3", "1e+3", "1E3", "-1.5E-7", "1e", "1e+", "-0", "007", "1_000", "1:20", "9007199254740991"],
    );
    // The ones the subset reads (a lone `-` is a list item, `-x` a scalar …), as one block list.
    const items = scalars.filter((v) => readYamlSubset(`a: ${v}\n`) !== null);
    expect(items.length).toBeGreaterThan(1000);
    for (let i = 0; i < items.length; i += 900) {
      const text = `a:\n${items
        .slice(i, i + 900)
        .map((v) => `  - ${v}\n`)
        .join("")}`;
      expect(expectSameOrNull(text)).toBe(true);
    }
  });

  it("answers numberSource as the full path's nodes do, without building them", () => {
    for (const f of [...examples, ...valid]) {
      const fast = readYamlSubset(f.text);
      const full = loadYaml(f.text, { subset: false });
      if (fast === null || !full.ok) throw new Error(`${f.name} is not read by both paths`);
      const paths: PathSegment[][] = [];
      const collect = (v: unknown, path: PathSegment[]): void => {
        paths.push(path);
        if (Array.isArray(v)) v.forEach((item, i) => collect(item, [...path, i]));
        else if (typeof v === "object" && v !== null) for (const [k, item] of Object.entries(v)) collect(item, [...path, k]);
      };
      collect(full.tree.value, []);
      for (const path of [...paths, ["constraints", "budget"], ["no", "such", "path"]]) {
        expect(fast.numberSource(path), `${f.name}: ${formatPath(path)}`).toBe(full.tree.nodes.get(formatPath(path))?.numberSource);
      }
    }
  });

  it("gives the full path's tree for seeded random mutations of the corpus", () => {
    const rnd = seededRandom(20260101);
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

  it("refuses every text with an odd character anywhere, as seeded random insertions show", () => {
    // Checked where each token is scanned, not in a pass of its own: this pins that no place is missed.
    // eslint-disable-next-line no-control-regex -- control characters are what it looks for
    const odd = /[\x00-\x09\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ufeff]|\r(?!\n)/;
    const oddPieces = ["\u0000", "\u0001", "\t", "\u000b", "\u001f", "\u007f", "\u0085", "\u009f", "\u2028", "\u2029", "\ufeff", "\r", " \r", "\r\n"];
    const rnd = seededRandom(20260202);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T;
    const sources = [...examples, ...valid].map((f) => f.text);
    let refused = 0;
    for (let k = 0; k < 1500; k++) {
      let t = pick(sources);
      const at = Math.floor(rnd() * (t.length + 1));
      t = t.slice(0, at) + pick(oddPieces) + t.slice(at);
      if (odd.test(t)) {
        expect(readYamlSubset(t), JSON.stringify(t)).toBeNull();
        refused++;
      } else expectSameOrNull(t);
    }
    expect(refused).toBeGreaterThan(1000);
  });
});
