/** Nearest-rank percentile of an ascending-sorted sample (p in 0..100). */
export function percentile(sortedAsc: ArrayLike<number>, p: number): number {
  const n = sortedAsc.length;
  if (n === 0) throw new Error("percentile of an empty sample");
  const rank = Math.min(n, Math.max(1, Math.ceil((p / 100) * n)));
  return sortedAsc[rank - 1] as number;
}

/** A figure in the one format every benchmark prints: `name: value unit`. */
export function figure(name: string, value: number, unit: string): string {
  return `${name}: ${value.toFixed(1)} ${unit}`;
}
