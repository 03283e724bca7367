import { describe, expect, it } from "vitest";
import { CsvSyntaxError, parseCsv } from "./csv.js";

describe("parseCsv", () => {
  it("reads quoted fields with commas, doubled quotes and line breaks, keeping each record's first line", () => {
    const text = 'a,b,c\r\n1,"x, y","say ""hi"""\n2,"two\nlines",\n\n3,,z';
    expect(parseCsv(text)).toEqual([
      { line: 1, fields: ["a", "b", "c"] },
      { line: 2, fields: ["1", "x, y", 'say "hi"'] },
      { line: 3, fields: ["2", "two\nlines", ""] },
      { line: 6, fields: ["3", "", "z"] },
    ]);
  });

  it("ignores a byte-order mark and a missing final newline", () => {
    expect(parseCsv("\ufeffh\nv")).toEqual([
      { line: 1, fields: ["h"] },
      { line: 2, fields: ["v"] },
    ]);
  });

  it("rejects an unterminated quote, text after a closing quote, and a stray quote", () => {
    expect(() => parseCsv('a\n"open')).toThrow(CsvSyntaxError);
    expect(() => parseCsv('"a"b')).toThrow(/after a closing quote/);
    expect(() => parseCsv('a"b')).toThrow(/quote inside an unquoted field/);
    try {
      parseCsv('h\nok\n"x\ny');
    } catch (e) {
      expect((e as CsvSyntaxError).line).toBe(3);
    }
  });
});
