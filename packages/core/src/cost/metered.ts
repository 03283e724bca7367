/**
 * Rate × quantity in integer micro-dollars. Rates (micro-USD per hour, per GB)
 * are exact bigints; quantities (hours, GB) are floats because they come out
 * of throughput ratios and probabilities. The rule: convert the quantity to
 * millionths once, multiply in bigint, and round the product UP to the next
 * micro-dollar once. A cost is therefore never under-estimated by rounding,
 * and sums of such products are exact bigint sums.
 */

const MILLION = 1_000_000n;

/**
 * `q` in millionths, rounded up; a value within float noise (1e-9 relative)
 * of an exact millionth counts as that millionth, so 0.1 h is 100000, not
 * 100001, even though 0.1 × 1e6 is 100000.00000000001 in binary floating point.
 */
export function toMillionths(q: number): bigint {
  if (!Number.isFinite(q) || q < 0) throw new RangeError(`quantity must be a finite number ≥ 0, got ${q}`);
  const x = q * 1e6;
  if (x > Number.MAX_SAFE_INTEGER) throw new RangeError(`quantity ${q} is too large to meter exactly`);
  const r = Math.round(x);
  return BigInt(Math.abs(x - r) <= 1e-9 * Math.max(1, x) ? r : Math.ceil(x));
}

/** ceil(a / b) for a ≥ 0, b > 0. */
export function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b;
}

/** ceil(ratePerUnit × quantity) micro-dollars: one rounding per product. */
export function meteredMicros(microsPerUnit: bigint, quantity: number): bigint {
  return ceilDiv(microsPerUnit * toMillionths(quantity), MILLION);
}
