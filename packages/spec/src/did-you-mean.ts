/**
 * "Did you mean" suggestions by edit distance. Inputs are user-controlled, so
 * both sides are clipped: comparing a 1 MB key against a list of candidates
 * must stay cheap.
 */

const MAX_COMPARED = 64;

/** Optimal-string-alignment distance (Levenshtein plus adjacent transposition). */
export function editDistance(a: string, b: string): number {
  const s = a.slice(0, MAX_COMPARED);
  const t = b.slice(0, MAX_COMPARED);
  const n = s.length;
  const m = t.length;
  if (n === 0) return m;
  if (m === 0) return n;
  // Three rolling rows: previous-previous, previous, current.
  let pp = new Array<number>(m + 1).fill(0);
  let prev = Array.from({ length: m + 1 }, (_, j) => j);
  let cur = new Array<number>(m + 1).fill(0);
  for (let i = 1; i <= n; i++) {
    cur[0] = i;
    for (let j = 1; j <= m; j++) {
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      let v = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost);
      if (i > 1 && j > 1 && s[i - 1] === t[j - 2] && s[i - 2] === t[j - 1]) {
        v = Math.min(v, (pp[j - 2] ?? 0) + 1);
      }
      cur[j] = v;
    }
    [pp, prev, cur] = [prev, cur, pp];
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
    const d = editDistance(x, y);
    const allowed = Math.min(3, Math.max(1, Math.floor(Math.max(x.length, y.length) / 3)));
    const prefix = x.length >= 3 && (y.startsWith(x) || x.startsWith(y));
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
