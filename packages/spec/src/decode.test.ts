import { describe, expect, it } from "vitest";
import { decodeSpecInput, firstInvalidUtf8, utf8LengthExceeds } from "./decode.js";

const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);

describe("utf8LengthExceeds", () => {
  it("counts UTF-8 bytes, not UTF-16 units", () => {
    expect(utf8LengthExceeds("abc", 3)).toBe(false);
    expect(utf8LengthExceeds("abcd", 3)).toBe(true);
    expect(utf8LengthExceeds("ü", 1)).toBe(true); // 2 bytes
    expect(utf8LengthExceeds("€", 2)).toBe(true); // 3 bytes
    expect(utf8LengthExceeds("🚀", 3)).toBe(true); // 4 bytes, 2 units
    expect(utf8LengthExceeds("🚀", 4)).toBe(false);
  });
});

describe("firstInvalidUtf8", () => {
  it.each([
    ["valid ASCII and multi-byte", bytes(0x61, 0xc3, 0xbc, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x9a, 0x80), null],
    ["a stray continuation byte", bytes(0x61, 0x80), { offset: 1, line: 1, column: 2 }],
    ["0xff", bytes(0x0a, 0x0a, 0x20, 0xff), { offset: 3, line: 3, column: 2 }],
    ["an overlong encoding of '/'", bytes(0xc0, 0xaf), { offset: 0, line: 1, column: 1 }],
    ["an encoded surrogate", bytes(0xed, 0xa0, 0x80), { offset: 0, line: 1, column: 1 }],
    ["a code point above U+10FFFF", bytes(0xf4, 0x90, 0x80, 0x80), { offset: 0, line: 1, column: 1 }],
    ["a truncated sequence", bytes(0x61, 0x62, 0xe2, 0x82), { offset: 2, line: 1, column: 3 }],
    ["after an astral character (2 UTF-16 columns)", bytes(0xf0, 0x9f, 0x9a, 0x80, 0xfe), { offset: 4, line: 1, column: 3 }],
  ])("%s", (_name, input, want) => {
    expect(firstInvalidUtf8(input)).toEqual(want);
  });
});

describe("decodeSpecInput", () => {
  it("strips a byte-order mark from bytes and from strings", () => {
    expect(decodeSpecInput(bytes(0xef, 0xbb, 0xbf, 0x61), 10)).toEqual({ ok: true, text: "a" });
    expect(decodeSpecInput("\ufeffa", 10)).toEqual({ ok: true, text: "a" });
  });

  it("checks the byte size before decoding", () => {
    const r = decodeSpecInput(new Uint8Array(11), 10);
    expect(r).toEqual({ ok: false, issue: { path: "", line: null, column: null, message: expect.stringContaining("the spec is 11 bytes") } });
  });

  it("measures strings in UTF-8 bytes", () => {
    expect(decodeSpecInput("ü".repeat(6), 12).ok).toBe(true);
    expect(decodeSpecInput("ü".repeat(6), 11).ok).toBe(false);
  });

  it("reports the position of the first bad byte", () => {
    const r = decodeSpecInput(bytes(0x61, 0x0a, 0x62, 0xff), 100);
    expect(r).toEqual({
      ok: false,
      issue: { path: "", line: 2, column: 2, message: "the spec is not valid UTF-8 at byte offset 3 (0xff); save it as UTF-8" },
    });
  });

  it("refuses other input types instead of throwing", () => {
    expect(decodeSpecInput(42, 10).ok).toBe(false);
    expect(decodeSpecInput(null, 10).ok).toBe(false);
  });
});
