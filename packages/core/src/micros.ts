/**
 * Money arithmetic in integer micro-dollars (bigint). Floats never accumulate
 * money: parse decimal strings into micros, add bigints, format back.
 */
const MICROS_PER_USD = 1_000_000n;

export function parseUsdMicros(s: string): bigint {
  const m = /^(-)?(\d+)(?:\.(\d{1,6})\d*)?$/.exec(s.trim());
  if (!m) throw new RangeError(`not a decimal dollar amount: ${JSON.stringify(s)}`);
  const whole = BigInt(m[2] ?? "0");
  const frac = BigInt((m[3] ?? "").padEnd(6, "0"));
  const v = whole * MICROS_PER_USD + frac;
  return m[1] ? -v : v;
}

/** Format micros as a decimal string with `digits` fraction digits (truncated toward zero). */
export function formatUsdMicros(micros: bigint, digits = 6): string {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  const whole = abs / MICROS_PER_USD;
  const frac = (abs % MICROS_PER_USD).toString().padStart(6, "0").slice(0, digits);
  return `${neg ? "-" : ""}${whole}${digits > 0 ? "." + frac : ""}`;
}
