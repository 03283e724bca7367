/**
 * YAML text → plain JS value plus a position for every path, with the
 * hostile-input guards in front of the parser. Uses eemeli/yaml's low-level
 * Parser/Composer so we can look at the CST before composing it, and walks the
 * composed AST ourselves instead of calling `toJS()`: that is where source
 * ranges, duplicate keys, aliases and number source text are all visible.
 */
import { Composer, LineCounter, Parser, isAlias, isMap, isPair, isScalar, isSeq, type CST, type Document, type Node as YamlNode } from "yaml";
import { formatPath, type PathSegment } from "./issues.js";
import type { SpecIssue } from "./types.js";
import { quote } from "./units.js";
import { readYamlSubset } from "./yaml-subset.js";

/** Deepest nesting of mappings/lists accepted. A real spec is 4 deep. */
export const MAX_DEPTH = 64;
/**
 * Lines per spec: 50× a large real spec, and low enough that the YAML parser
 * (about 25 µs a line) stays well under a second on hostile input.
 */
export const MAX_LINES = 10_000;
/** Flow-collection items (`[`, `{`, `,`) per spec, for the same reason. */
export const MAX_FLOW_ITEMS = 10_000;
/** Entries per mapping or list. */
export const MAX_ENTRIES = 10_000;
/** Longest mapping key. */
export const MAX_KEY_LENGTH = 256;

export interface NodeInfo {
  line: number;
  column: number;
  /** Where the key of this entry starts, when the value sits in a mapping. */
  keyLine?: number;
  keyColumn?: number;
  /** Source text of a number scalar, for exact decimals (budget). */
  numberSource?: string;
}

export interface YamlTree {
  value: unknown;
  /** Formatted path → where its value (and key) is. The subset reader builds it on first use. */
  readonly nodes: Map<string, NodeInfo>;
  /** nodes.get(formatPath(path))?.numberSource, without building `nodes` where it is built on demand. */
  numberSource(path: readonly PathSegment[]): string | undefined;
  /** Problems found while walking; the value is still usable. */
  issues: SpecIssue[];
  /** Paths whose value was dropped (alias, bad key …): schema issues under them are noise. */
  poisoned: Set<string>;
}

export type LoadResult = { ok: true; tree: YamlTree } | { ok: false; issues: SpecIssue[] };

const STD_TAGS = new Set(["str", "int", "float", "bool", "null", "map", "seq"].map((t) => `tag:yaml.org,2002:${t}`));

type Pos = { line: number; column: number };

/**
 * One pass over the raw text before the YAML parser sees it. The parser's
 * cost grows with flow nesting and token count, so pathological inputs
 * (100k `[`, a million `- - -`, half a million commas) are refused here in
 * linear time. Quote and comment tracking is approximate; it can only make
 * counts lower than the truth, and the exact depth is checked on the CST.
 */
export function prescan(text: string): { offset: number; message: string } | null {
  // Character codes rather than one-character strings: this runs on every spec.
  let lines = 1;
  let flowDepth = 0;
  let flowItems = 0;
  let inDouble = false;
  let inSingle = false;
  let atLineStart = true;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a /* \n */) {
      lines++;
      if (lines > MAX_LINES) {
        return { offset: i + 1, message: `the spec has more than ${MAX_LINES} lines; job specs are small, keep data out of them` };
      }
      atLineStart = true;
      continue;
    }
    if (inDouble) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inDouble = false;
      continue;
    }
    if (inSingle) {
      if (c === 0x27 /* ' */) {
        if (text.charCodeAt(i + 1) === 0x27) i++;
        else inSingle = false;
      }
      continue;
    }
    if (atLineStart) {
      atLineStart = false;
      let j = i;
      while (text.charCodeAt(j) === 0x20) j++;
      let compact = 0;
      for (;;) {
        const d = text.charCodeAt(j);
        const e = text.charCodeAt(j + 1);
        // `- ` or `? ` (space or tab after): one more level of compact nesting.
        if (!((d === 0x2d || d === 0x3f) && (e === 0x20 || e === 0x09))) break;
        compact++;
        j += 2;
        while (text.charCodeAt(j) === 0x20 || text.charCodeAt(j) === 0x09) j++;
        if (compact + flowDepth > MAX_DEPTH) {
          return { offset: j, message: `nesting deeper than ${MAX_DEPTH} levels` };
        }
      }
      i = j - 1;
      continue;
    }
    // Letters, digits and most punctuation mean nothing here.
    if (c !== 0x23 && c !== 0x22 && c !== 0x27 && c !== 0x5b && c !== 0x7b && c !== 0x5d && c !== 0x7d && c !== 0x2c) continue;
    const prev = i === 0 ? 0x0a : text.charCodeAt(i - 1);
    const boundary = prev === 0x20 || prev === 0x09 || prev === 0x0a || prev === 0x0d || prev === 0x5b || prev === 0x7b || prev === 0x2c;
    if (c === 0x23 /* # */ && (prev === 0x20 || prev === 0x09 || prev === 0x0a || i === 0)) {
      while (i + 1 < n && text.charCodeAt(i + 1) !== 0x0a) i++;
    } else if (c === 0x22 && (boundary || (flowDepth > 0 && prev === 0x3a /* : */))) inDouble = true;
    else if (c === 0x27 && (boundary || (flowDepth > 0 && prev === 0x3a))) inSingle = true;
    else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      flowDepth++;
      flowItems++;
      if (flowDepth > MAX_DEPTH) return { offset: i, message: `nesting deeper than ${MAX_DEPTH} levels` };
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      if (flowDepth > 0) flowDepth--;
    } else if (c === 0x2c /* , */ && flowDepth > 0) flowItems++;
    if (flowItems > MAX_FLOW_ITEMS) {
      return { offset: i, message: `the spec has more than ${MAX_FLOW_ITEMS} list/mapping items; job specs are small` };
    }
  }
  return null;
}

/** Occurrences of `needle` in `text`, counting no further than `limit` + 1. */
function countUpTo(text: string, needle: string, limit: number): number {
  let count = 0;
  for (let i = text.indexOf(needle); i >= 0 && count <= limit; i = text.indexOf(needle, i + needle.length)) count++;
  return count;
}

/**
 * False when prescan(text) is certainly null, judged from counts that
 * indexOf takes (native, several times faster than prescan's loop over every
 * character). Every count prescan compares with a limit is at most a raw
 * count here: lines are 1 + its `\n`; flow depth and items only grow at `[`,
 * `{` and `,`; one level of compact nesting is one `- `, `? `, `-\t` or `?\t`.
 * Quotes and comments only make prescan's counts lower. A text shorter than
 * the line and item limits cannot reach them, which leaves only the depth
 * to count for a real spec.
 */
export function prescanMayRefuse(text: string): boolean {
  const opens = countUpTo(text, "[", MAX_DEPTH) + countUpTo(text, "{", MAX_DEPTH);
  let depth = opens;
  for (const pair of ["- ", "? ", "-\t", "?\t"]) {
    if (depth > MAX_DEPTH) return true;
    depth += countUpTo(text, pair, MAX_DEPTH);
  }
  if (depth > MAX_DEPTH) return true;
  if (text.length < MAX_LINES && text.length <= MAX_FLOW_ITEMS) return false;
  return countUpTo(text, "\n", MAX_LINES) + 1 > MAX_LINES || opens + countUpTo(text, ",", MAX_FLOW_ITEMS) > MAX_FLOW_ITEMS;
}

/** Exact nesting depth of the CST, iteratively; the offset where MAX_DEPTH is first exceeded. */
export function cstTooDeep(tokens: readonly CST.Token[]): number | null {
  const stack: Array<{ t: CST.Token; d: number }> = tokens.map((t) => ({ t, d: 0 }));
  while (stack.length > 0) {
    const { t, d } = stack.pop() as { t: CST.Token; d: number };
    if (t.type === "document") {
      if (t.value) stack.push({ t: t.value, d });
      continue;
    }
    if (t.type === "block-map" || t.type === "block-seq" || t.type === "flow-collection") {
      if (d + 1 > MAX_DEPTH) return t.offset;
      for (const it of t.items) {
        if ("key" in it && it.key) stack.push({ t: it.key, d: d + 1 });
        if (it.value) stack.push({ t: it.value, d: d + 1 });
      }
    }
  }
  return null;
}

const YAML_MESSAGES: Partial<Record<string, string>> = {
  TAB_AS_INDENT: "tab characters are not allowed for indentation in YAML; indent with spaces",
  KEY_OVER_1024_CHARS: "a key is longer than 1024 characters",
  RESOURCE_EXHAUSTION: "the document is too deeply nested or too large to read",
  BAD_ALIAS: "aliases (*name) are not supported in job specs; write the value out",
  ALIAS_PROPS: "aliases (*name) are not supported in job specs; write the value out",
  MULTIPLE_ANCHORS: "anchors (&name) are not supported in job specs",
};

/**
 * Parse and check `text`; on success, the plain value with positions. Text in
 * the plain subset real specs use is read by readYamlSubset, which gives the
 * same tree in a fraction of the time; everything else, and every text with a
 * problem, by the full YAML parser. `subset: false` forces the full path (tests
 * compare the two).
 */
export function loadYaml(text: string, opts: { subset?: boolean } = {}): LoadResult {
  const pre = prescanMayRefuse(text) ? prescan(text) : null;
  if (pre) {
    // The parser has not run, so count lines ourselves.
    const upto = text.slice(0, pre.offset);
    const line = (upto.match(/\n/g)?.length ?? 0) + 1;
    const column = pre.offset - (upto.lastIndexOf("\n") + 1) + 1;
    return { ok: false, issues: [{ path: "", line, column, message: pre.message }] };
  }
  if (opts.subset !== false) {
    const tree = readYamlSubset(text);
    if (tree) return { ok: true, tree };
  }
  const lc = new LineCounter();
  const at = (offset: number): Pos => {
    const p = lc.linePos(offset);
    return { line: Math.max(1, p.line), column: Math.max(1, p.col) };
  };
  const tokens = Array.from(new Parser(lc.addNewLine).parse(text));
  const deep = cstTooDeep(tokens);
  if (deep !== null) {
    return { ok: false, issues: [{ path: "", ...at(deep), message: `nesting deeper than ${MAX_DEPTH} levels` }] };
  }
  const composer = new Composer({
    version: "1.2",
    schema: "core",
    merge: false,
    uniqueKeys: false, // checked by the walk below, which can say where the first one was
    strict: true,
    prettyErrors: false,
  });
  const docs = Array.from(composer.compose(tokens, true, text.length));
  const first = docs[0];
  const second = docs[1];
  if (second) {
    return {
      ok: false,
      issues: [
        {
          path: "",
          ...at(second.range[0]),
          message: "a spec holds exactly one YAML document; found a second one here (remove the '---' or split the file)",
        },
      ],
    };
  }
  if (!first) return { ok: false, issues: [emptyIssue()] };

  const issues: SpecIssue[] = [];
  for (const e of first.errors) {
    const detail = e.message.split("\n", 1)[0] ?? e.message;
    issues.push({
      path: pathAt(first, e.pos[0]),
      ...at(e.pos[0]),
      message: YAML_MESSAGES[e.code] ?? `invalid YAML: ${detail}`,
    });
  }
  for (const w of first.warnings) {
    if (w.code === "TAG_RESOLVE_FAILED") continue; // reported by the walk, with the tag name
    issues.push({ path: pathAt(first, w.pos[0]), ...at(w.pos[0]), message: `YAML warning: ${w.message.split("\n", 1)[0]}` });
  }
  if (issues.length > 0) return { ok: false, issues };
  if (first.contents === null || (isScalar(first.contents) && first.contents.value === null && first.contents.tag === undefined)) {
    return { ok: false, issues: [emptyIssue()] };
  }
  const tree = walkDocument(first, text, at);
  return { ok: true, tree };
}

function emptyIssue(): SpecIssue {
  return {
    path: "",
    line: 1,
    column: 1,
    message: "the spec is empty; expected a mapping with at least job, entrypoint and resources",
  };
}

/** Best-effort path of the deepest node whose range holds `offset` (for syntax errors). */
function pathAt(doc: Document.Parsed, offset: number): string {
  const path: PathSegment[] = [];
  let node: unknown = doc.contents;
  for (let guard = 0; guard < MAX_DEPTH + 2 && node; guard++) {
    if (isMap(node)) {
      const hit = node.items.find((p) => {
        const k = isScalar(p.key) ? p.key : null;
        const v = p.value as YamlNode | null;
        const start = k?.range?.[0] ?? v?.range?.[0];
        const end = v?.range?.[2] ?? k?.range?.[2];
        return start !== undefined && end !== undefined && start <= offset && offset <= end;
      });
      if (!hit || !isScalar(hit.key)) break;
      path.push(String(hit.key.value));
      node = hit.value;
    } else if (isSeq(node)) {
      const idx = node.items.findIndex((it) => {
        const r = (it as YamlNode | null)?.range;
        return r != null && r[0] <= offset && offset <= r[2];
      });
      if (idx < 0) break;
      path.push(idx);
      node = node.items[idx];
    } else break;
  }
  return formatPath(path);
}

const POISON: unique symbol = Symbol("poison");

function walkDocument(doc: Document.Parsed, text: string, at: (offset: number) => Pos): YamlTree {
  const nodes = new Map<string, NodeInfo>();
  const issues: SpecIssue[] = [];
  const poisoned = new Set<string>();
  const issue = (path: string, pos: Pos, message: string): void => {
    issues.push({ path, line: pos.line, column: pos.column, message });
  };

  const walk = (node: unknown, path: PathSegment[], depth: number, keyPos?: Pos): unknown => {
    const p = formatPath(path);
    const range = (node as YamlNode | null)?.range;
    const pos = range ? at(range[0]) : (keyPos ?? { line: 1, column: 1 });
    const info: NodeInfo = { line: pos.line, column: pos.column };
    if (keyPos) {
      info.keyLine = keyPos.line;
      info.keyColumn = keyPos.column;
    }
    nodes.set(p, info);
    if (depth > MAX_DEPTH) {
      issue(p, pos, `nesting deeper than ${MAX_DEPTH} levels`);
      poisoned.add(p);
      return POISON;
    }
    if (isAlias(node)) {
      issue(p, pos, `aliases (*${node.source.slice(0, 40)}) are not supported in job specs; write the value out`);
      poisoned.add(p);
      return POISON;
    }
    if (isScalar(node) || isMap(node) || isSeq(node)) {
      if (node.anchor !== undefined) {
        // The node's range starts after its properties; point at the `&name` itself when it is near.
        const amp = range ? text.lastIndexOf(`&${node.anchor}`, range[0]) : -1;
        const apos = range && amp >= 0 && range[0] - amp <= 1024 ? at(amp) : pos;
        issue(p, apos, `anchors (&${node.anchor.slice(0, 40)}) are not supported in job specs; write values out instead of reusing them`);
      }
      if (node.tag !== undefined && !STD_TAGS.has(node.tag)) {
        const tag = node.tag.replace(/^tag:yaml\.org,2002:/, "!!").slice(0, 60);
        issue(p, pos, `the tag ${tag} is not supported in job specs; remove it`);
        poisoned.add(p);
        return POISON;
      }
    }
    if (isScalar(node)) {
      const v = node.value;
      if (v === null || typeof v === "boolean" || typeof v === "string") {
        if (typeof v === "string" && v.includes("\u0000")) {
          issue(p, pos, "strings may not contain NUL characters");
          poisoned.add(p);
          return POISON;
        }
        return v;
      }
      if (typeof v === "number") {
        const source = (node as { source?: string }).source ?? String(v);
        info.numberSource = source;
        if (!Number.isFinite(v) && !/^[-+]?\.(inf|Inf|INF|nan|NaN|NAN)$/.test(source)) {
          issue(p, pos, `the number ${source.slice(0, 40)} is too large to represent`);
          poisoned.add(p);
          return POISON;
        }
        if (Number.isInteger(v) && !Number.isSafeInteger(v) && /^[-+]?\d+$/.test(source)) {
          issue(p, pos, `the integer ${source.slice(0, 40)} is too large; integers in a spec must be below 2^53`);
          poisoned.add(p);
          return POISON;
        }
        return v;
      }
      issue(p, pos, "unsupported value type; use a string, number, boolean, list or mapping");
      poisoned.add(p);
      return POISON;
    }
    if (isSeq(node)) {
      const out: unknown[] = [];
      for (let i = 0; i < node.items.length; i++) {
        if (i >= MAX_ENTRIES) {
          issue(p, pos, `more than ${MAX_ENTRIES} list items`);
          poisoned.add(p);
          break;
        }
        const child = walk(node.items[i], [...path, i], depth + 1);
        out.push(child === POISON ? null : child);
      }
      return out;
    }
    if (isMap(node)) {
      const out: Record<string, unknown> = {};
      const seen = new Map<string, Pos>();
      let count = 0;
      for (const pair of node.items) {
        if (!isPair(pair)) continue;
        if (++count > MAX_ENTRIES) {
          issue(p, pos, `more than ${MAX_ENTRIES} keys in one mapping`);
          poisoned.add(p);
          break;
        }
        const keyNode = pair.key as YamlNode | null;
        const kPos = keyNode?.range ? at(keyNode.range[0]) : pos;
        if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === "object") {
          issue(p, kPos, isAlias(keyNode) ? "aliases are not supported as keys" : "mapping keys must be plain strings");
          continue;
        }
        const key = String(keyNode.value);
        if (key.length > MAX_KEY_LENGTH) {
          issue(p, kPos, `a key is longer than ${MAX_KEY_LENGTH} characters: ${quote(key)}`);
          continue;
        }
        const childPath = [...path, key];
        const cp = formatPath(childPath);
        if (key === "<<" && keyNode.type === "PLAIN") {
          issue(cp, kPos, "merge keys (<<) are not supported in job specs; write the keys out");
          // The mapping is missing whatever the merge would have added: its other errors are noise.
          poisoned.add(p);
          continue;
        }
        const dup = seen.get(key);
        if (dup) {
          issue(cp, kPos, `duplicate key '${key.slice(0, 64)}' (first set at line ${dup.line}, column ${dup.column})`);
          continue;
        }
        seen.set(key, kPos);
        const value = walk(pair.value, childPath, depth + 1, kPos);
        // `key:` with nothing (or ~/null) after it is the same as leaving the key out.
        if (value === POISON || value === null) continue;
        Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
      }
      return out;
    }
    // `key:` with no value at all.
    return null;
  };

  const value = walk(doc.contents, [], 0);
  return {
    value: value === POISON ? null : value,
    nodes,
    numberSource: (path) => nodes.get(formatPath(path))?.numberSource,
    issues,
    poisoned,
  };
}
