import type { SpecIssue } from "./types.js";

export type Decoded = { ok: true; text: string } | { ok: false; issue: SpecIssue };

const rootIssue = (message: string, line: number | null = null, column: number | null = null): SpecIssue => ({
  path: "",
  line,
  column,
  message,
});

function describeLimit(maxBytes: number): string {
  if (maxBytes % (1024 * 1024) === 0) return `${maxBytes} bytes (${maxBytes / (1024 * 1024)} MiB)`;
  if (maxBytes % 1024 === 0) return `${maxBytes} bytes (${maxBytes / 1024} KiB)`;
  return `${maxBytes} bytes`;
}

/**
 * Whether `s` takes more than `max` bytes as UTF-8, measured only as far as
 * needed: a huge string costs no more than the limit to check.
 */
export function utf8LengthExceeds(s: string, max: number): boolean {
  // Every UTF-16 unit is at least one UTF-8 byte and at most three.
  if (s.length > max) return true;
  if (s.length * 3 <= max) return false;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
    if (n > max) return true;
  }
  return false;
}

/**
 * The offset of the first byte that is not part of a well-formed UTF-8
 * sequence (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF),
 * with its 1-based line and UTF-16 column; null when all bytes are valid.
 */
export function firstInvalidUtf8(bytes: Uint8Array): { offset: number; line: number; column: number } | null {
  let line = 1;
  let column = 1;
  let i = 0;
  const n = bytes.length;
  while (i < n) {
    const b = bytes[i] ?? 0;
    let len: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b < 0x80) len = 1;
    else if (b >= 0xc2 && b <= 0xdf) len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
      len = 3;
      if (b === 0xe0) lo = 0xa0;
      if (b === 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      len = 4;
      if (b === 0xf0) lo = 0x90;
      if (b === 0xf4) hi = 0x8f;
    } else return { offset: i, line, column };
    if (i + len > n) return { offset: i, line, column };
    for (let k = 1; k < len; k++) {
      const c = bytes[i + k] ?? 0;
      const min = k === 1 ? lo : 0x80;
      const max = k === 1 ? hi : 0xbf;
      if (c < min || c > max) return { offset: i, line, column };
    }
    if (b === 0x0a) {
      line++;
      column = 1;
    } else column += len === 4 ? 2 : 1;
    i += len;
  }
  return null;
}

/** Enforce the size limit on the raw input, then decode bytes as strict UTF-8. */
export function decodeSpecInput(input: unknown, maxBytes: number): Decoded {
  let text: string;
  if (typeof input === "string") {
    if (utf8LengthExceeds(input, maxBytes)) {
      return {
        ok: false,
        issue: rootIssue(`the spec is larger than the limit of ${describeLimit(maxBytes)}; job specs are small, keep data out of them`),
      };
    }
    text = input;
  } else if (input instanceof Uint8Array) {
    if (input.byteLength > maxBytes) {
      return {
        ok: false,
        issue: rootIssue(
          `the spec is ${input.byteLength} bytes, larger than the limit of ${describeLimit(maxBytes)}; job specs are small, keep data out of them`,
        ),
      };
    }
    try {
      text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(input);
    } catch {
      const bad = firstInvalidUtf8(input);
      const where = bad ? ` at byte offset ${bad.offset} (0x${(input[bad.offset] ?? 0).toString(16).padStart(2, "0")})` : "";
      return {
        ok: false,
        issue: rootIssue(`the spec is not valid UTF-8${where}; save it as UTF-8`, bad?.line ?? null, bad?.column ?? null),
      };
    }
  } else {
    return { ok: false, issue: rootIssue(`expected the spec as a string or bytes, got ${input === null ? "null" : typeof input}`) };
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  return { ok: true, text };
}
