/**
 * A reader for the plain subset of YAML that job specs are written in: block
 * mappings with plain keys, block lists of one-line items, one-line scalars
 * (plain, 'single' or "double" quoted without escapes), one-line flow lists
 * and mappings, comments, `\n` or `\r\n` line ends.
 *
 * It returns exactly the tree that the full path in yaml-tree.ts builds
 * (same values, YAML 1.2 core scalars, positions, number source text), or
 * null as soon as the text uses anything else (anchors, aliases, tags, block
 * scalars, multi-line scalars or flow collections, quoted or complex keys,
 * empty values, tabs, directives, a second document …) or anything the full
 * path would report (duplicate keys, numbers out of range …). The caller then
 * reads the text with the full YAML parser, which explains what is wrong.
 *
 * Why: the full parser (eemeli/yaml's lexer, CST parser, composer, plus our
 * walk) costs about 0.4 ms for a 40-line spec, and the controller parses every
 * submission; this reader takes a few microseconds for the same text.
 * yaml-subset.test.ts checks the "exactly the same tree" claim against the
 * full path on the corpus and on mutated specs.
 */
import { appendPath } from "./issues.js";
import type { NodeInfo, YamlTree } from "./yaml-tree.js";

// Limits well inside yaml-tree's, so anything near them takes the full path
// and gets its exact issue there.
const MAX_NESTING = 32;
const MAX_ITEMS = 1000;
const MAX_KEY = 64;

const NEWLINE = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const HASH = 0x23;
const DASH = 0x2d;
const COLON = 0x3a;
const COMMA = 0x2c;
const SQUOTE = 0x27;
const DQUOTE = 0x22;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const BACKSLASH = 0x5c;

/**
 * True for text this reader never looks at twice: control characters other
 * than `\n` and `\r\n` (tabs included), C1 controls, a BOM, Unicode line or
 * paragraph separators.
 */
function hasOddCharacter(text: string): boolean {
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f) continue;
    if (c === NEWLINE) continue;
    if (c === CR && text.charCodeAt(i + 1) === NEWLINE) continue;
    if (c >= 0xa0 && c !== 0xfeff && c !== 0x2028 && c !== 0x2029) continue;
    return true;
  }
  return false;
}

const isKeyStart = (c: number): boolean => (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;
const isKeyChar = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === DASH || c === 0x2e;
const isFlowIndicator = (c: number): boolean => c === COMMA || c === LBRACKET || c === RBRACKET || c === LBRACE || c === RBRACE;
/** End of line: `\n`, `\r` (always before `\n` here) or the end of the text (NaN). */
const isEol = (c: number): boolean => c === NEWLINE || c === CR || Number.isNaN(c);

/** First characters of a plain scalar: ones with no YAML meaning, digits, letters, non-ASCII. */
function isPlainStart(c: number): boolean {
  if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39)) return true;
  switch (c) {
    case 0x5f: // _
    case 0x2e: // .
    case 0x2f: // /
    case 0x24: // $
    case 0x2b: // +
    case 0x7e: // ~
    case 0x28: // (
    case 0x3d: // =
    case 0x5e: // ^
      return true;
    default:
      return c >= 0xa0;
  }
}

/** Keys the core schema reads as null or a boolean: not plain string keys. */
const NON_STRING_KEYS = new Set(["null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE"]);

const NULL_RE = /^(?:~|[Nn]ull|NULL)?$/;
const BOOL_RE = /^(?:[Tt]rue|TRUE|[Ff]alse|FALSE)$/;
const INT_OCT_RE = /^0o[0-7]+$/;
const INT_RE = /^[-+]?[0-9]+$/;
const INT_HEX_RE = /^0x[0-9a-fA-F]+$/;
const FLOAT_NAN_RE = /^(?:[-+]?\.(?:inf|Inf|INF)|\.nan|\.NaN|\.NAN)$/;
const FLOAT_EXP_RE = /^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+$/;
const FLOAT_RE = /^[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)$/;
const SPECIAL_NUMBER_SOURCE = /^[-+]?\.(inf|Inf|INF|nan|NaN|NAN)$/;
const DECIMAL_INTEGER = /^[-+]?\d+$/;

/**
 * A plain scalar as the YAML 1.2 core schema resolves it, in the same order
 * as eemeli/yaml's tags (null, bool, octal, decimal, hex, .inf/.nan,
 * exponent float, float), with the same conversions.
 */
function resolvePlain(s: string): string | number | boolean | null {
  const c = s.charCodeAt(0);
  // Letters other than n/N/t/T/f/F start none of the patterns below.
  const letter = (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a);
  if (letter && c !== 0x6e && c !== 0x4e && c !== 0x74 && c !== 0x54 && c !== 0x66 && c !== 0x46) return s;
  if (NULL_RE.test(s)) return null;
  if (BOOL_RE.test(s)) return c === 0x74 || c === 0x54;
  if (letter) return s;
  if (INT_OCT_RE.test(s)) return parseInt(s.substring(2), 8);
  if (INT_RE.test(s)) return parseInt(s, 10);
  if (INT_HEX_RE.test(s)) return parseInt(s.substring(2), 16);
  if (FLOAT_NAN_RE.test(s)) {
    if (s.slice(-3).toLowerCase() === "nan") return NaN;
    return s.charCodeAt(0) === DASH ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  }
  if (FLOAT_EXP_RE.test(s) || FLOAT_RE.test(s)) return parseFloat(s);
  return s;
}

/**
 * One pass over the text, line by line. Leaving the subset sets `failed`
 * (no exceptions: a bail-out is routine) and every step unwinds from there.
 */
class SubsetReader {
  private readonly n: number;
  /** Offset of the current line's first character. */
  private lineStart = 0;
  /** 1-based number of the current line. */
  private line = 1;
  /** Spaces before the current content line's first character. */
  private indent = 0;
  private eof = false;
  /** Where the last value read ended. */
  private cursor = 0;
  private failed = false;
  private readonly nodes = new Map<string, NodeInfo>();

  constructor(private readonly text: string) {
    this.n = text.length;
  }

  private fail(): undefined {
    this.failed = true;
    return undefined;
  }

  private info(offset: number, lineStart: number, line: number, keyLine: number, keyColumn: number): NodeInfo {
    const info: NodeInfo = { line, column: offset - lineStart + 1 };
    if (keyLine > 0) {
      info.keyLine = keyLine;
      info.keyColumn = keyColumn;
    }
    return info;
  }

  /** Move to the start of the line after the one holding `i`. */
  private nextLine(i: number): void {
    const nl = this.text.indexOf("\n", i);
    if (nl < 0) {
      this.lineStart = this.n;
      this.eof = true;
      return;
    }
    this.lineStart = nl + 1;
    this.line++;
  }

  /** From the start of a line, skip blank and comment-only lines; sets `indent` or `eof`. */
  private toContent(): void {
    const t = this.text;
    while (!this.eof) {
      let i = this.lineStart;
      while (t.charCodeAt(i) === SPACE) i++;
      const c = t.charCodeAt(i);
      if (Number.isNaN(c)) {
        this.eof = true;
        return;
      }
      if (c === NEWLINE || c === CR || c === HASH) {
        this.nextLine(i);
        continue;
      }
      this.indent = i - this.lineStart;
      return;
    }
  }

  /** After a value: spaces, then the end of the line or a ` # comment`; then the next content line. */
  private endLine(i: number): void {
    const t = this.text;
    const from = i;
    while (t.charCodeAt(i) === SPACE) i++;
    const c = t.charCodeAt(i);
    if (!isEol(c) && !(c === HASH && i > from)) {
      this.fail();
      return;
    }
    this.nextLine(i);
    this.toContent();
  }

  private isSeqItem(): boolean {
    const i = this.lineStart + this.indent;
    return this.text.charCodeAt(i) === DASH && this.text.charCodeAt(i + 1) === SPACE;
  }

  /** End of a plain key starting at `i`, or -1. */
  private keyEnd(i: number): number {
    const t = this.text;
    if (!isKeyStart(t.charCodeAt(i))) return -1;
    let j = i + 1;
    while (isKeyChar(t.charCodeAt(j))) j++;
    if (j - i > MAX_KEY) return -1;
    return j;
  }

  read(): YamlTree | null {
    if (hasOddCharacter(this.text)) return null;
    this.toContent();
    // The top level is a block mapping at column 1 (anything else is an issue the full path words).
    if (this.eof || this.indent !== 0 || this.isSeqItem()) return null;
    this.nodes.set("", this.info(this.lineStart, this.lineStart, this.line, 0, 0));
    const value = this.blockMap(0, "", 1);
    if (this.failed || !this.eof) return null;
    return { value, nodes: this.nodes, issues: [], poisoned: new Set() };
  }

  /** A block mapping whose keys sit at column `indent` + 1; the current line holds its first key. */
  private blockMap(indent: number, path: string, depth: number): Record<string, unknown> | undefined {
    if (depth > MAX_NESTING) return this.fail();
    const t = this.text;
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    while (!this.eof && this.indent === indent) {
      const ks = this.lineStart + indent;
      const ke = this.keyEnd(ks);
      if (ke < 0 || t.charCodeAt(ke) !== COLON) return this.fail();
      const afterColon = t.charCodeAt(ke + 1);
      if (afterColon !== SPACE && !isEol(afterColon)) return this.fail();
      const key = t.slice(ks, ke);
      if (seen.has(key) || NON_STRING_KEYS.has(key) || seen.size >= MAX_ITEMS) return this.fail();
      seen.add(key);
      const keyLine = this.line;
      const keyColumn = indent + 1;
      const childPath = appendPath(path, key);
      let i = ke + 1;
      while (t.charCodeAt(i) === SPACE) i++;
      const c = t.charCodeAt(i);
      let value: unknown;
      if (isEol(c) || (c === HASH && i > ke + 1)) {
        // The value is a block on the following lines.
        this.nextLine(i);
        this.toContent();
        if (this.eof) return this.fail();
        const info = this.info(this.lineStart + this.indent, this.lineStart, this.line, keyLine, keyColumn);
        this.nodes.set(childPath, info);
        if (this.isSeqItem() && this.indent >= indent) {
          value = this.blockSeq(this.indent, this.indent === indent, childPath, depth + 1);
        } else if (this.indent > indent) {
          value = this.blockMap(this.indent, childPath, depth + 1);
        } else return this.fail(); // `key:` with nothing: the full path places its empty node
        if (this.failed) return undefined;
        if (!this.eof && this.indent > indent) return this.fail();
      } else {
        value = this.inline(i, childPath, keyLine, keyColumn, depth + 1, false);
        if (this.failed) return undefined;
        this.endLine(this.cursor);
        if (this.failed) return undefined;
        if (!this.eof && this.indent > indent) return this.fail();
      }
      if (value !== null) setKey(out, key, value);
    }
    return out;
  }

  /** A block list whose `-` sit at column `indent` + 1, each with a one-line item. */
  private blockSeq(indent: number, sameIndentAsKey: boolean, path: string, depth: number): unknown[] | undefined {
    if (depth > MAX_NESTING) return this.fail();
    const out: unknown[] = [];
    while (!this.eof && this.indent === indent && this.isSeqItem()) {
      if (out.length >= MAX_ITEMS) return this.fail();
      let i = this.lineStart + indent + 1;
      while (this.text.charCodeAt(i) === SPACE) i++;
      const v = this.inline(i, appendPath(path, out.length), 0, 0, depth + 1, false);
      if (this.failed) return undefined;
      out.push(v);
      this.endLine(this.cursor);
      if (this.failed) return undefined;
    }
    if (!this.eof && this.indent > indent) return this.fail();
    if (!this.eof && this.indent === indent && !sameIndentAsKey) return this.fail();
    return out;
  }

  /** A value on one line starting at `i`; records its node and sets `cursor` to where it ends. */
  private inline(i: number, path: string, keyLine: number, keyColumn: number, depth: number, flow: boolean): unknown {
    const t = this.text;
    const c = t.charCodeAt(i);
    const info = this.info(i, this.lineStart, this.line, keyLine, keyColumn);
    this.nodes.set(path, info);
    if (c === LBRACKET) return this.flowSeq(i, path, depth);
    if (c === LBRACE) return this.flowMap(i, path, depth);
    if (c === SQUOTE || c === DQUOTE) {
      let j = i + 1;
      let escaped = false;
      for (;;) {
        const d = t.charCodeAt(j);
        if (isEol(d) || d === BACKSLASH) return this.fail();
        if (d === c) {
          if (c === SQUOTE && t.charCodeAt(j + 1) === SQUOTE) {
            escaped = true;
            j += 2;
            continue;
          }
          break;
        }
        j++;
      }
      const after = t.charCodeAt(j + 1);
      if (!(after === SPACE || isEol(after) || (flow && (after === COMMA || after === RBRACKET || after === RBRACE)))) return this.fail();
      this.cursor = j + 1;
      const raw = t.slice(i + 1, j);
      return escaped ? raw.replace(/''/g, "'") : raw;
    }
    return this.plain(i, info, flow);
  }

  private plain(i: number, info: NodeInfo, flow: boolean): unknown {
    const t = this.text;
    const c0 = t.charCodeAt(i);
    if (c0 === DASH) {
      const d = t.charCodeAt(i + 1);
      if (d === SPACE || isEol(d) || (flow && isFlowIndicator(d))) return this.fail();
    } else if (!isPlainStart(c0)) return this.fail();
    let j = i + 1;
    let end = j; // after the last non-space character
    for (;;) {
      const c = t.charCodeAt(j);
      if (isEol(c)) break;
      if (c === SPACE) {
        if (t.charCodeAt(j + 1) === HASH) break;
        j++;
        continue;
      }
      if (c === COLON) {
        const d = t.charCodeAt(j + 1);
        if (d === SPACE || isEol(d) || (flow && isFlowIndicator(d))) return this.fail();
      } else if (flow && isFlowIndicator(c)) {
        if (c === LBRACKET || c === LBRACE) return this.fail();
        break;
      }
      j++;
      end = j;
    }
    this.cursor = end;
    const source = t.slice(i, end);
    const v = resolvePlain(source);
    if (typeof v === "number") {
      // The same refusals as the full path's walk; here they mean "let it report them".
      if (!Number.isFinite(v) && !SPECIAL_NUMBER_SOURCE.test(source)) return this.fail();
      if (Number.isInteger(v) && !Number.isSafeInteger(v) && DECIMAL_INTEGER.test(source)) return this.fail();
      info.numberSource = source;
    }
    return v;
  }

  /** `[a, b, …]` on one line. */
  private flowSeq(i: number, path: string, depth: number): unknown[] | undefined {
    if (depth > MAX_NESTING) return this.fail();
    const t = this.text;
    const out: unknown[] = [];
    i++;
    while (t.charCodeAt(i) === SPACE) i++;
    if (t.charCodeAt(i) === RBRACKET) {
      this.cursor = i + 1;
      return out;
    }
    for (;;) {
      if (out.length >= MAX_ITEMS) return this.fail();
      const v = this.inline(i, appendPath(path, out.length), 0, 0, depth + 1, true);
      if (this.failed) return undefined;
      out.push(v);
      i = this.cursor;
      while (t.charCodeAt(i) === SPACE) i++;
      const c = t.charCodeAt(i);
      if (c === RBRACKET) {
        this.cursor = i + 1;
        return out;
      }
      if (c !== COMMA) return this.fail();
      i++;
      while (t.charCodeAt(i) === SPACE) i++;
      if (t.charCodeAt(i) === RBRACKET) return this.fail(); // trailing comma: left to the full path
    }
  }

  /** `{k: v, …}` on one line, plain keys. */
  private flowMap(i: number, path: string, depth: number): Record<string, unknown> | undefined {
    if (depth > MAX_NESTING) return this.fail();
    const t = this.text;
    const out: Record<string, unknown> = {};
    const seen = new Set<string>();
    i++;
    while (t.charCodeAt(i) === SPACE) i++;
    if (t.charCodeAt(i) === RBRACE) {
      this.cursor = i + 1;
      return out;
    }
    for (;;) {
      const ke = this.keyEnd(i);
      if (ke < 0 || t.charCodeAt(ke) !== COLON || t.charCodeAt(ke + 1) !== SPACE) return this.fail();
      const key = t.slice(i, ke);
      if (seen.has(key) || NON_STRING_KEYS.has(key) || seen.size >= MAX_ITEMS) return this.fail();
      seen.add(key);
      const keyColumn = i - this.lineStart + 1;
      i = ke + 2;
      while (t.charCodeAt(i) === SPACE) i++;
      const c = t.charCodeAt(i);
      if (c === COMMA || c === RBRACE || isEol(c)) return this.fail(); // empty value
      const v = this.inline(i, appendPath(path, key), this.line, keyColumn, depth + 1, true);
      if (this.failed) return undefined;
      if (v !== null) setKey(out, key, v);
      i = this.cursor;
      while (t.charCodeAt(i) === SPACE) i++;
      const d = t.charCodeAt(i);
      if (d === RBRACE) {
        this.cursor = i + 1;
        return out;
      }
      if (d !== COMMA) return this.fail();
      i++;
      while (t.charCodeAt(i) === SPACE) i++;
      if (t.charCodeAt(i) === RBRACE) return this.fail(); // trailing comma: left to the full path
    }
  }
}

/** As the full path's walk stores a key: an own data property, even for `__proto__`. */
function setKey(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === "__proto__") Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  else out[key] = value;
}

/** The tree of `text` if it is in the subset (see the file comment), else null. */
export function readYamlSubset(text: string): YamlTree | null {
  return new SubsetReader(text).read();
}
