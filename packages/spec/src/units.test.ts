import { describe, expect, it } from "vitest";
import { parseBudget, parseDeadline, parseDuration, parseSize, quote } from "./units.js";

const value = <T>(r: { ok: true; value: T } | { ok: false; message: string }): T | string =>
  r.ok ? r.value : `ERR ${r.message}`;

describe("parseSize (→ decimal GB)", () => {
  it.each([
    ["80GB", 80],
    ["80 GB", 80],
    ["80gb", 80],
    ["80G", 80],
    ["80GiB", 85.89934592],
    ["1TiB", 1099.511627776],
    ["1.5TB", 1500],
    ["512MB", 0.512],
    ["512M", 0.512],
    ["100MiB", 0.1048576],
    ["64KiB", 0.000065536],
    ["1000B", 0.000001],
    ["2T", 2000],
    [".5GB", 0.5],
  ])("%s → %d", (input, gb) => {
    expect(value(parseSize(input))).toBe(gb);
  });

  it.each([
    ["80", "expected a size with a unit"],
    ["80 gigs", "unknown size unit 'gigs'"],
    ["GB", "expected a size with a unit"],
    ["-1GB", "expected a size with a unit"],
    ["0GB", "expected a size > 0"],
    ["2000TB", "at most 1PB"],
    ["1e3GB", "expected a size with a unit"],
  ])("%s is refused: %s", (input, msg) => {
    expect(value(parseSize(input))).toContain(msg);
  });
});

describe("parseDuration (→ seconds)", () => {
  it.each([
    ["90s", 90],
    ["30m", 1800],
    ["2h", 7200],
    ["1h30m", 5400],
    ["1d", 86400],
    ["1d2h3m4s", 93784],
    ["1H30M", 5400],
  ])("%s → %i", (input, s) => {
    expect(value(parseDuration(input))).toBe(s);
  });

  it.each([
    ["30", "expected a duration like"],
    ["30 minutes", "expected a duration like"],
    ["30m1h", "expected a duration like"],
    ["1.5h", "expected a duration like"],
    ["0s", "at least 1s"],
    ["31d", "at most 30 days"],
    ["", "expected a duration like"],
  ])("%j is refused", (input, msg) => {
    expect(value(parseDuration(input))).toContain(msg);
  });
});

describe("parseBudget (→ exact decimal string)", () => {
  it.each<[string | number, string | undefined, string]>([
    [500, "500", "500"],
    [12.5, "12.50", "12.50"],
    [0.1, "0.1", "0.1"],
    [0.1, undefined, "0.1"],
    [1234.123456, "1234.123456", "1234.123456"],
    [7, "007", "7"],
    ["$500", undefined, "500"],
    ["$ 99.99", undefined, "99.99"],
    ["500 USD", undefined, "500"],
    ["USD 500", undefined, "500"],
    ["750.50usd", undefined, "750.50"],
    ["0.000001", undefined, "0.000001"],
  ])("%j (source %j) → %s", (input, source, out) => {
    expect(value(parseBudget(input, source))).toBe(out);
  });

  it("keeps digits a float would lose", () => {
    // 0.1 + 0.2 style loss never happens: the source text is used as is.
    expect(value(parseBudget(Number("123456789012.123456"), "123456789012.123456"))).toBe("123456789012.123456");
  });

  it.each<[string | number, string | undefined, string]>([
    [-500, "-500", "expected an amount in USD > 0, got -500"],
    [0, "0", "> 0"],
    ["$0.00", undefined, "> 0"],
    ["-$5", undefined, "> 0"],
    [10.1234567, "10.1234567", "at most 6 fraction digits"],
    [1000, "1e3", "like 500"],
    [Number.POSITIVE_INFINITY, ".inf", "> 0"],
    ["five hundred", undefined, "like 500"],
    ["$1,000", undefined, "like 500"],
    ["1234567890123", undefined, "below 10^12"],
  ])("%j (source %j) is refused: %s", (input, source, msg) => {
    expect(value(parseBudget(input, source))).toContain(msg);
  });
});

describe("parseDeadline (→ UTC ISO string)", () => {
  it.each([
    ["2026-12-01T18:00:00Z", "2026-12-01T18:00:00.000Z"],
    ["2026-12-01T18:00Z", "2026-12-01T18:00:00.000Z"],
    ["2026-12-01T20:00:00+02:00", "2026-12-01T18:00:00.000Z"],
    ["2026-12-01T13:30:00-0430", "2026-12-01T18:00:00.000Z"],
    ["2026-12-01 18:00:00.123456z", "2026-12-01T18:00:00.123Z"],
    ["2028-02-29T00:00:00Z", "2028-02-29T00:00:00.000Z"],
  ])("%s → %s", (input, iso) => {
    expect(value(parseDeadline(input))).toBe(iso);
  });

  it.each([
    ["2026-12-01T18:00:00", "has no time zone"],
    ["2026-12-01", "expected a date AND a time"],
    ["tomorrow", "expected an ISO 8601 date-time"],
    ["2026-02-30T00:00:00Z", "not a valid calendar date-time"],
    ["2027-02-29T00:00:00Z", "not a valid calendar date-time"],
    ["2026-12-01T24:00:00Z", "not a valid calendar date-time"],
    ["2026-12-01T18:00:00+25:00", "invalid zone offset"],
    ["1900-01-01T00:00:00Z", "after 1970"],
  ])("%s is refused: %s", (input, msg) => {
    expect(value(parseDeadline(input))).toContain(msg);
  });

  it("writes UTC deadlines as Date#toISOString does, for every way of saying UTC", () => {
    // A UTC deadline is printed from its own fields rather than through Date: pin that the two agree.
    let s = 20260404;
    const rnd = (): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 4294967296;
    };
    const two = (n: number): string => String(n).padStart(2, "0");
    for (let k = 0; k < 2000; k++) {
      const at = new Date(Date.UTC(1970, 0, 1) + Math.floor(rnd() * (Date.UTC(9999, 11, 31) - Date.UTC(1970, 0, 1))));
      const date = `${at.getUTCFullYear()}-${two(at.getUTCMonth() + 1)}-${two(at.getUTCDate())}`;
      const time = `${two(at.getUTCHours())}:${two(at.getUTCMinutes())}`;
      const secs = two(at.getUTCSeconds());
      const ms = String(at.getUTCMilliseconds()).padStart(3, "0");
      const zone = ["Z", "z", "+00:00", "-00:00", "+0000", "+00"][k % 6] as string;
      const sep = ["T", "t", " "][k % 3] as string;
      expect(value(parseDeadline(`${date}${sep}${time}:${secs}.${ms}456${zone}`))).toBe(at.toISOString());
      expect(value(parseDeadline(`${date}${sep}${time}${zone}`))).toBe(new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate(), at.getUTCHours(), at.getUTCMinutes())).toISOString());
    }
  });
});

describe("quote", () => {
  it("clips long strings so messages stay short", () => {
    expect(quote("x".repeat(100))).toBe(JSON.stringify(`${"x".repeat(40)}…`));
  });
});
