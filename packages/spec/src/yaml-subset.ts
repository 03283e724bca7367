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
import { appendPath, type PathSegment } from "./issues.js";
import type { SpecIssue } from "./types.js";
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
const PLUS = 0x2b;
const DOT = 0x2e;
const ZERO = 0x30;
const UPPER_E = 0x45;
const LOWER_E = 0x65;
const LOWER_O = 0x6f;
const LOWER_X = 0x78;

/**
 * Characters the reader refuses wherever they are: control characters other
 * than the `\n` and `\r\n` that end lines (tabs included), DEL and C1
 * controls, a BOM, Unicode line and paragraph separators. Each character is
 * looked at once: by the scanner of the token it is in, or in nextLine for
 * comments and line ends.
 */
const isOddCharacter = (c: number): boolean =>
  c < 0x20 || (c >= 0x7f && (c <= 0x9f || c === 0x2028 || c === 0x2029 || c === 0xfeff));
/** The text of a comment up to its line end, or up to an odd character. Sticky: nextLine sets lastIndex. */
// eslint-disable-next-line no-control-regex -- control characters are what it stops at
const COMMENT_TEXT = /[^\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]*/y;

const isKeyStart = (c: number): boolean => (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;
const isKeyChar = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39) || c === 0x5f || c === DASH || c === 0x2e;
const isFlowIndicator = (c: number): boolean => c === COMMA || c === LBRACKET || c === RBRACKET || c === LBRACE || c === RBRACE;
/** End of line: `\n`, `\r` (nextLine refuses one that is not before `\n`) or the end of the text (NaN). */
const isEol = (c: number): boolean => c === NEWLINE || c === CR || Number.isNaN(c);

/** First characters of a plain scalar: ones with no YAML meaning, digits, letters, non-ASCII (not odd). */
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
      return c >= 0xa0 && !isOddCharacter(c);
  }
}

const SPECIAL_NUMBER_SOURCE = /^[-+]?\.(inf|Inf|INF|nan|NaN|NAN)$/;
const DECIMAL_INTEGER = /^[-+]?\d+$/;

const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;
const isHexDigit = (c: number): boolean => isDigit(c) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);

/**
 * The number a plain scalar is under the YAML 1.2 core schema, or undefined.
 * One pass instead of testing eemeli/yaml's number patterns one by one
 * (octal `0o[0-7]+`, decimal `[-+]?[0-9]+`, hex `0x[0-9a-fA-F]+`,
 * `[-+]?.inf` and `.nan`, exponent and plain floats): no two of them match
 * the same text, so their order does not matter. Same conversions.
 */
function resolveNumber(s: string): number | undefined {
  const n = s.length;
  const c0 = s.charCodeAt(0);
  if (c0 === ZERO && n > 2) {
    const radix = s.charCodeAt(1) === LOWER_O ? 8 : s.charCodeAt(1) === LOWER_X ? 16 : 0;
    if (radix !== 0) {
      for (let i = 2; i < n; i++) {
        const c = s.charCodeAt(i);
        if (radix === 8 ? c < 0x30 || c > 0x37 : !isHexDigit(c)) return undefined;
      }
      return parseInt(s.substring(2), radix);
    }
  }
  let i = c0 === PLUS || c0 === DASH ? 1 : 0;
  if (s.charCodeAt(i) === DOT && n - i === 4) {
    const word = s.substring(i + 1);
    if (word === "inf" || word === "Inf" || word === "INF") return c0 === DASH ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
    if (i === 0 && (word === "nan" || word === "NaN" || word === "NAN")) return NaN;
  }
  // [-+]? digits? (. digits?)? ([eE] [-+]? digits)?, with a digit before the exponent.
  const intStart = i;
  while (isDigit(s.charCodeAt(i))) i++;
  let digits = i - intStart;
  const dot = s.charCodeAt(i) === DOT;
  if (dot) {
    const fracStart = ++i;
    while (isDigit(s.charCodeAt(i))) i++;
    digits += i - fracStart;
  }
  if (digits === 0) return undefined;
  if (i === n) return dot ? parseFloat(s) : parseInt(s, 10);
  const e = s.charCodeAt(i);
  if (e !== LOWER_E && e !== UPPER_E) return undefined;
  i++;
  if (s.charCodeAt(i) === PLUS || s.charCodeAt(i) === DASH) i++;
  const expStart = i;
  while (isDigit(s.charCodeAt(i))) i++;
  return i > expStart && i === n ? parseFloat(s) : undefined;
}

/**
 * A plain scalar as the YAML 1.2 core schema resolves it (null, bool, then
 * numbers), with eemeli/yaml's conversions.
 */
function resolvePlain(s: string): string | number | boolean | null {
  const c = s.charCodeAt(0);
  if ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a)) {
    // The core schema's null and boolean words (`[Nn]ull|NULL`, `[Tt]rue|TRUE|[Ff]alse|FALSE`); no number starts with a letter.
    switch (s) {
      case "null":
      case "Null":
      case "NULL":
        return null;
      case "true":
      case "True":
      case "TRUE":
        return true;
      case "false":
      case "False":
      case "FALSE":
        return false;
      default:
        return s;
    }
  }
  if (s === "~") return null;
  return resolveNumber(s) ?? s;
}

/** Keys the core schema reads as null or a boolean (`true:`): not plain string keys. */
const isNonStringKey = (key: string): boolean => typeof resolvePlain(key) !== "string";

/** Numbers kept per node in NodePositions.where: parent node, line, column, key line, key column (0 when not in a mapping). */
const WHERE_FIELDS = 5;

/**
 * Where the reader met each node, in the order the full path's walk meets
 * them, as flat numbers. A valid spec never looks a position up, so the
 * full path's `path → NodeInfo` map (a formatted path and an object per node)
 * is only built when something asks for it, which is when there are issues.
 */
class NodePositions {
  readonly where: number[] = [];
  /** The mapping key or list index of each node (the root's is unused). */
  readonly keys: PathSegment[] = [];
  /** Node number → source text, for the nodes that are numbers. */
  readonly numberSources = new Map<number, string>();

  /** Record a node; returns its number. */
  add(parent: number, key: PathSegment, line: number, column: number, keyLine: number, keyColumn: number): number {
    const node = this.keys.length;
    this.where.push(parent, line, column, keyLine, keyColumn);
    this.keys.push(key);
    return node;
  }

  /** The node at `path`, or -1. Children are recorded after their parent, so each step scans forward. */
  find(path: readonly PathSegment[]): number {
    let node = 0;
    for (const seg of path) {
      let found = -1;
      for (let n = node + 1; n < this.keys.length; n++) {
        if (this.where[n * WHERE_FIELDS] === node && this.keys[n] === seg) {
          found = n;
          break;
        }
      }
      if (found < 0) return -1;
      node = found;
    }
    return node;
  }

  /** The map yaml-tree.ts documents, with the same paths, objects and insertion order as the full path's walk. */
  toMap(): Map<string, NodeInfo> {
    const nodes = new Map<string, NodeInfo>();
    const paths: string[] = [];
    const w = this.where;
    for (let n = 0; n < this.keys.length; n++) {
      const at = n * WHERE_FIELDS;
      const path = n === 0 ? "" : appendPath(paths[w[at] as number] as string, this.keys[n] as PathSegment);
      paths.push(path);
      const info: NodeInfo = { line: w[at + 1] as number, column: w[at + 2] as number };
      const keyLine = w[at + 3] as number;
      if (keyLine > 0) {
        info.keyLine = keyLine;
        info.keyColumn = w[at + 4] as number;
      }
      const source = this.numberSources.get(n);
      if (source !== undefined) info.numberSource = source;
      nodes.set(path, info);
    }
    return nodes;
  }
}

/** A tree read by this reader: never has issues or dropped values; its positions are built on first use. */
class SubsetTree implements YamlTree {
  readonly issues: SpecIssue[] = [];
  readonly poisoned = new Set<string>();
  private built: Map<string, NodeInfo> | undefined;

  constructor(
    readonly value: unknown,
    private readonly positions: NodePositions,
  ) {}

  get nodes(): Map<string, NodeInfo> {
    this.built ??= this.positions.toMap();
    return this.built;
  }

  numberSource(path: readonly PathSegment[]): string | undefined {
    const node = this.positions.find(path);
    return node < 0 ? undefined : this.positions.numberSources.get(node);
  }
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
  private readonly positions = new NodePositions();

  constructor(private readonly text: string) {
    this.n = text.length;
  }

  /** Leave the subset: also ends the text, so every loop stops. */
  private fail(): undefined {
    this.failed = true;
    this.eof = true;
    return undefined;
  }

  /**
   * From `i`, the end of a line or the `#` of a comment, to the start of the
   * next line. The comment's characters are checked here, and `\r` must end
   * a line with `\n`.
   */
  private nextLine(i: number): void {
    const t = this.text;
    if (t.charCodeAt(i) === HASH) {
      COMMENT_TEXT.lastIndex = i + 1;
      COMMENT_TEXT.test(t);
      i = COMMENT_TEXT.lastIndex;
    }
    const c = t.charCodeAt(i);
    if (c === NEWLINE || (c === CR && t.charCodeAt(i + 1) === NEWLINE)) {
      this.lineStart = c === CR ? i + 2 : i + 1;
      this.line++;
    } else if (Number.isNaN(c)) {
      this.lineStart = this.n;
      this.eof = true;
    } else this.fail(); // an odd character, or a `\r` alone
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
    this.toContent();
    // The top level is a block mapping at column 1 (anything else is an issue the full path words).
    if (this.eof || this.indent !== 0 || this.isSeqItem()) return null;
    const root = this.positions.add(-1, "", this.line, 1, 0, 0);
    const value = this.blockMap(0, root, 1);
    if (this.failed || !this.eof) return null;
    return new SubsetTree(value, this.positions);
  }

  /** A block mapping whose keys sit at column `indent` + 1; the current line holds its first key. `node`: its recorded node. */
  private blockMap(indent: number, node: number, depth: number): Record<string, unknown> | undefined {
    if (depth > MAX_NESTING) return this.fail();
    const t = this.text;
    const out: Record<string, unknown> = {};
    let count = 0;
    // Keys whose value is null are left out of `out`, so they need their own record for the duplicate check.
    let nullKeys: Set<string> | undefined;
    while (!this.eof && this.indent === indent) {
      const ks = this.lineStart + indent;
      const ke = this.keyEnd(ks);
      if (ke < 0 || t.charCodeAt(ke) !== COLON) return this.fail();
      const afterColon = t.charCodeAt(ke + 1);
      if (afterColon !== SPACE && !isEol(afterColon)) return this.fail();
      const key = t.slice(ks, ke);
      if (count >= MAX_ITEMS || isNonStringKey(key) || Object.hasOwn(out, key) || nullKeys?.has(key) === true) return this.fail();
      count++;
      const keyLine = this.line;
      const keyColumn = indent + 1;
      let i = ke + 1;
      while (t.charCodeAt(i) === SPACE) i++;
      const c = t.charCodeAt(i);
      let value: unknown;
      if (isEol(c) || (c === HASH && i > ke + 1)) {
        // The value is a block on the following lines.
        this.nextLine(i);
        this.toContent();
        if (this.eof) return this.fail();
        const child = this.positions.add(node, key, this.line, this.indent + 1, keyLine, keyColumn);
        if (this.isSeqItem() && this.indent >= indent) {
          value = this.blockSeq(this.indent, this.indent === indent, child, depth + 1);
        } else if (this.indent > indent) {
          value = this.blockMap(this.indent, child, depth + 1);
        } else return this.fail(); // `key:` with nothing: the full path places its empty node
        if (this.failed) return undefined;
        if (!this.eof && this.indent > indent) return this.fail();
      } else {
        value = this.inline(i, node, key, keyLine, keyColumn, depth + 1, false);
        if (this.failed) return undefined;
        this.endLine(this.cursor);
        if (this.failed) return undefined;
        if (!this.eof && this.indent > indent) return this.fail();
      }
      if (value !== null) setKey(out, key, value);
      else (nullKeys ??= new Set()).add(key);
    }
    return out;
  }

  /** A block list whose `-` sit at column `indent` + 1, each with a one-line item. */
  private blockSeq(indent: number, sameIndentAsKey: boolean, node: number, depth: number): unknown[] | undefined {
    if (depth > MAX_NESTING) return this.fail();
    const out: unknown[] = [];
    while (!this.eof && this.indent === indent && this.isSeqItem()) {
      if (out.length >= MAX_ITEMS) return this.fail();
      let i = this.lineStart + indent + 1;
      while (this.text.charCodeAt(i) === SPACE) i++;
      const v = this.inline(i, node, out.length, 0, 0, depth + 1, false);
      if (this.failed) return undefined;
      out.push(v);
      this.endLine(this.cursor);
      if (this.failed) return undefined;
    }
    if (!this.eof && this.indent > indent) return this.fail();
    if (!this.eof && this.indent === indent && !sameIndentAsKey) return this.fail();
    return out;
  }

  /**
   * A value on one line starting at `i`, the entry `key` of the collection
   * recorded as `parent`; records its node and sets `cursor` to where it ends.
   */
  private inline(i: number, parent: number, key: PathSegment, keyLine: number, keyColumn: number, depth: number, flow: boolean): unknown {
    const t = this.text;
    const c = t.charCodeAt(i);
    const node = this.positions.add(parent, key, this.line, i - this.lineStart + 1, keyLine, keyColumn);
    if (c === LBRACKET) return this.flowSeq(i, node, depth);
    if (c === LBRACE) return this.flowMap(i, node, depth);
    if (c === SQUOTE || c === DQUOTE) {
      let j = i + 1;
      let escaped = false;
      for (;;) {
        const d = t.charCodeAt(j);
        if (isEol(d) || d === BACKSLASH || isOddCharacter(d)) return this.fail();
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
    return this.plain(i, node, flow);
  }

  private plain(i: number, node: number, flow: boolean): unknown {
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
      } else if (isOddCharacter(c)) return this.fail();
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
      this.positions.numberSources.set(node, source);
    }
    return v;
  }

  /** `[a, b, …]` on one line; `node`: its recorded node. */
  private flowSeq(i: number, node: number, depth: number): unknown[] | undefined {
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
      const v = this.inline(i, node, out.length, 0, 0, depth + 1, true);
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

  /** `{k: v, …}` on one line, plain keys; `node`: its recorded node. */
  private flowMap(i: number, node: number, depth: number): Record<string, unknown> | undefined {
    if (depth > MAX_NESTING) return this.fail();
    const t = this.text;
    const out: Record<string, unknown> = {};
    let count = 0;
    let nullKeys: Set<string> | undefined;
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
      if (count >= MAX_ITEMS || isNonStringKey(key) || Object.hasOwn(out, key) || nullKeys?.has(key) === true) return this.fail();
      count++;
      const keyColumn = i - this.lineStart + 1;
      i = ke + 2;
      while (t.charCodeAt(i) === SPACE) i++;
      const c = t.charCodeAt(i);
      if (c === COMMA || c === RBRACE || isEol(c)) return this.fail(); // empty value
      const v = this.inline(i, node, key, this.line, keyColumn, depth + 1, true);
      if (this.failed) return undefined;
      if (v !== null) setKey(out, key, v);
      else (nullKeys ??= new Set()).add(key);
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
