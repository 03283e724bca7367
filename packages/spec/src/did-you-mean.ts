/**
 * "Did you mean" suggestions by edit distance. Inputs are user-controlled, so
 * both sides are clipped: comparing a 1 MB key against a list of candidates
 * must stay cheap.
 */

const MAX_COMPARED = 64;

// The three rolling rows of editDistance, allocated once: "did you mean" compares an
// unknown key with every key allowed where it is.
const rowA = new Int32Array(MAX_COMPARED + 1);
const rowB = new Int32Array(MAX_COMPARED + 1);
const rowC = new Int32Array(MAX_COMPARED + 1);

/** Optimal-string-alignment distance (Levenshtein plus adjacent transposition). */
export function editDistance(a: string, b: string): number {
  const n = Math.min(a.length, MAX_COMPARED);
  const m = Math.min(b.length, MAX_COMPARED);
  if (n === 0) return m;
  if (m === 0) return n;
  // Previous-previous, previous and current row.
  let pp = rowA;
  let prev = rowB;
  let cur = rowC;
  for (let j = 0; j <= m; j++) prev[j] = j;
  for (let i = 1; i <= n; i++) {
    const ai = a.charCodeAt(i - 1);
    cur[0] = i;
    // cur[j - 1] and prev[j - 1], carried along instead of read back.
    let left = i;
    let diag = i - 1;
    for (let j = 1; j <= m; j++) {
      const bj = b.charCodeAt(j - 1);
      const up = prev[j] ?? 0;
      let v = ai === bj ? diag : diag + 1;
      if (up + 1 < v) v = up + 1;
      if (left + 1 < v) v = left + 1;
      if (i > 1 && j > 1 && ai === b.charCodeAt(j - 2) && a.charCodeAt(i - 2) === bj) {
        const swap = (pp[j - 2] ?? 0) + 1;
        if (swap < v) v = swap;
      }
      cur[j] = v;
      left = v;
      diag = up;
    }
    const done = pp;
    pp = prev;
    prev = cur;
    cur = done;
  }
  return prev[m] ?? 0;
}

/**
 * Candidates close to `input`, best first. Case is ignored. "Close" means at
 * most about a third of the longer word changed (at least 1, at most 3 edits),
 * or one is a prefix of the other.
 */
export function closestMatches(input: string, candidates: readonly string[], limit = 3): string[] {
  const x = input.toLowerCase().slice(0, MAX_COMPARED);
  if (x.length === 0) return [];
  const scored: Array<{ c: string; d: number }> = [];
  for (const c of candidates) {
    const y = c.toLowerCase();
    const allowed = Math.min(3, Math.max(1, Math.floor(Math.max(x.length, y.length) / 3)));
    const prefix = x.length >= 3 && (y.startsWith(x) || x.startsWith(y));
    // The distance is at least the difference in (compared) length: most candidates are out before computing it.
    if (!prefix && Math.abs(x.length - Math.min(y.length, MAX_COMPARED)) > allowed) continue;
    const d = editDistance(x, y);
    if (d <= allowed || prefix) scored.push({ c, d });
  }
  scored.sort((p, q) => p.d - q.d || p.c.localeCompare(q.c));
  return scored.slice(0, limit).map((s) => s.c);
}

/** `'a'`, `'a' or 'b'`, `'a', 'b' or 'c'`. */
export function joinOr(words: readonly string[]): string {
  const quoted = words.map((c) => `'${c}'`);
  const last = quoted.pop() ?? "";
  return quoted.length > 0 ? `${quoted.join(", ")} or ${last}` : last;
}

/** `; did you mean 'gpus'?` / `; did you mean 'a' or 'b'?` / `` (nothing close). */
export function didYouMean(input: string, candidates: readonly string[], limit = 1): string {
  const m = closestMatches(input, candidates, limit);
  return m.length === 0 ? "" : `; did you mean ${joinOr(m)}?`;
}
