/**
 * Parsers for the unit-bearing scalars of a spec: sizes, durations, money and
 * deadlines. Each returns a result instead of throwing so the caller can
 * attach the YAML position; messages say what was expected.
 */

export type Parsed<T> = { ok: true; value: T } | { ok: false; message: string };

const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
const fail = <T>(message: string): Parsed<T> => ({ ok: false, message });

/** JSON-quoted and clipped, so a 1 MB string never ends up in a message. */
export function quote(s: string, max = 40): string {
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
}

/** Gigabytes (10^9 bytes) per unit. Single letters are decimal shorthands. */
const SIZE_UNITS: ReadonlyMap<string, number> = new Map([
  ["b", 1e-9],
  ["k", 1e-6],
  ["kb", 1e-6],
  ["m", 1e-3],
  ["mb", 1e-3],
  ["g", 1],
  ["gb", 1],
  ["t", 1e3],
  ["tb", 1e3],
  ["kib", 1024 / 1e9],
  ["mib", 1024 ** 2 / 1e9],
  ["gib", 1024 ** 3 / 1e9],
  ["tib", 1024 ** 4 / 1e9],
]);
const SIZE_UNIT_NAMES = "B, KB, MB, GB, TB, KiB, MiB, GiB or TiB";

/** Upper bound for any size: 1 PB, far above any single node. */
export const MAX_SIZE_GB = 1e6;

/**
 * "80GB" → 80, "80GiB" → 85.89934592, "512M" → 0.512. Result in decimal GB,
 * rounded to whole bytes. A unit is required: a bare number is ambiguous.
 */
export function parseSize(input: string): Parsed<number> {
  const m = /^\s*(\d{1,15}(?:\.\d{1,9})?|\.\d{1,9})\s*([A-Za-z]+)\s*$/.exec(input);
  if (!m) {
    return fail(`expected a size with a unit, like 80GB or 80GiB, got ${quote(input)}`);
  }
  const unit = (m[2] ?? "").toLowerCase();
  const factor = SIZE_UNITS.get(unit);
  if (factor === undefined) {
    return fail(`unknown size unit '${(m[2] ?? "").slice(0, 16)}' in ${quote(input)}; use ${SIZE_UNIT_NAMES}`);
  }
  const amount = Number(m[1]);
  const bytes = Math.round(amount * factor * 1e9);
  if (bytes <= 0) return fail(`expected a size > 0, got ${quote(input)}`);
  const gb = bytes / 1e9;
  if (gb > MAX_SIZE_GB) return fail(`expected a size of at most 1PB, got ${quote(input)}`);
  return ok(gb);
}

/** Upper bound for durations: 30 days. */
export const MAX_DURATION_SECONDS = 30 * 24 * 3600;

/** "90s" → 90, "30m" → 1800, "1h30m" → 5400, "1d" → 86400. Components in d,h,m,s order. */
export function parseDuration(input: string): Parsed<number> {
  const m = /^\s*(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,7})s)?\s*$/i.exec(input);
  if (!m || (m[1] ?? m[2] ?? m[3] ?? m[4]) === undefined) {
    return fail(`expected a duration like 90s, 30m, 2h or 1h30m, got ${quote(input)}`);
  }
  const [d, h, min, s] = [m[1], m[2], m[3], m[4]].map((x) => (x === undefined ? 0 : Number(x))) as [
    number,
    number,
    number,
    number,
  ];
  const seconds = d * 86400 + h * 3600 + min * 60 + s;
  if (seconds < 1) return fail(`expected a duration of at least 1s, got ${quote(input)}`);
  if (seconds > MAX_DURATION_SECONDS) return fail(`expected a duration of at most 30 days, got ${quote(input)}`);
  return ok(seconds);
}

export const BUDGET_MAX_FRACTION_DIGITS = 6;
const BUDGET_MAX_INTEGER_DIGITS = 12;

/**
 * A USD amount as a decimal string, exact: the digits the user wrote are
 * kept (leading zeros dropped), never passed through a float. Accepts
 * `500`, `12.50`, `"$500"`, `"500 USD"`. For a YAML number pass its source
 * text as `numberSource` so 0.1 stays "0.1" and 12.50 stays "12.50".
 */
export function parseBudget(input: string | number, numberSource?: string): Parsed<string> {
  let text: string;
  if (typeof input === "number") {
    text = (numberSource ?? String(input)).trim();
    if (!Number.isFinite(input)) return fail(`expected an amount in USD > 0, got ${text.slice(0, 40)}`);
  } else {
    text = input.trim();
    const stripped = /^(?:\$\s*|usd\s+)?(.*?)(?:\s*usd)?$/i.exec(text);
    text = (stripped?.[1] ?? text).trim();
  }
  const shown = typeof input === "number" ? text.slice(0, 40) : quote(input);
  if (/^[-−]/.test(text) || /^\$?\s*-/.test(text)) return fail(`expected an amount in USD > 0, got ${shown}`);
  const m = /^\+?(\d+)(?:\.(\d*))?$/.exec(text);
  if (!m) {
    return fail(`expected an amount in USD like 500, 12.50 or "$500", got ${shown}`);
  }
  const whole = (m[1] ?? "").replace(/^0+(?=\d)/, "");
  const frac = m[2] ?? "";
  if (frac.length > BUDGET_MAX_FRACTION_DIGITS) {
    return fail(`expected at most ${BUDGET_MAX_FRACTION_DIGITS} fraction digits (micro-dollars), got ${shown}`);
  }
  if (whole.length > BUDGET_MAX_INTEGER_DIGITS) {
    return fail(`expected an amount in USD below 10^${BUDGET_MAX_INTEGER_DIGITS}, got ${shown}`);
  }
  if (/^0*$/.test(whole) && /^0*$/.test(frac)) return fail(`expected an amount in USD > 0, got ${shown}`);
  return ok(frac.length > 0 ? `${whole}.${frac}` : whole);
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] as const;

/**
 * ISO 8601 date-time WITH a zone (`Z` or ±hh:mm) → the same instant in UTC,
 * e.g. "2026-12-01T20:00:00+02:00" → "2026-12-01T18:00:00.000Z". A
 * date-time without a zone is refused: the controller must not guess one.
 */
export function parseDeadline(input: string): Parsed<string> {
  const s = input.trim();
  const m =
    /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$/.exec(
      s,
    );
  if (!m) {
    return fail(`expected an ISO 8601 date-time with a zone, like 2026-12-01T18:00:00Z, got ${quote(input)}`);
  }
  const [, ys, mos, ds, hs, mins, ss, fs, zone] = m;
  if (hs === undefined) {
    return fail(`expected a date AND a time with a zone, like ${ys}-${mos}-${ds}T18:00:00Z, got ${quote(input)}`);
  }
  if (zone === undefined) {
    return fail(
      `deadline ${quote(input)} has no time zone; add Z for UTC or an offset like +02:00 (e.g. ${s}Z)`,
    );
  }
  const y = Number(ys);
  const mo = Number(mos);
  const d = Number(ds);
  const h = Number(hs);
  const mi = Number(mins);
  const sec = ss === undefined ? 0 : Number(ss);
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const dim = mo === 2 && !leap ? 28 : (DAYS_IN_MONTH[mo - 1] ?? 0);
  if (mo < 1 || mo > 12 || d < 1 || d > dim || h > 23 || mi > 59 || sec > 59) {
    return fail(`${quote(input)} is not a valid calendar date-time`);
  }
  if (y < 1970) return fail(`expected a deadline after 1970, got ${quote(input)}`);
  let offsetMinutes = 0;
  if (zone !== "Z" && zone !== "z") {
    const zm = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone);
    const zh = Number(zm?.[2] ?? "0");
    const zmin = Number(zm?.[3] ?? "0");
    if (zh > 23 || zmin > 59) return fail(`${quote(input)} has an invalid zone offset '${zone}'`);
    offsetMinutes = (zm?.[1] === "-" ? -1 : 1) * (zh * 60 + zmin);
  }
  const ms = (fs ?? "").padEnd(3, "0").slice(0, 3);
  // In UTC the instant's fields are the ones just checked (a four-digit year, so no
  // extended year either): print them as toISOString would, without its cost.
  if (offsetMinutes === 0) return ok(`${ys}-${mos}-${ds}T${hs}:${mins}:${ss ?? "00"}.${ms}Z`);
  const epoch = Date.UTC(y, mo - 1, d, h, mi, sec, Number(ms)) - offsetMinutes * 60_000;
  return ok(new Date(epoch).toISOString());
}
