import { describe, expect, it } from "vitest";
import { closestMatches, didYouMean, editDistance, joinOr } from "./did-you-mean.js";

describe("editDistance", () => {
  it.each([
    ["", "", 0],
    ["gpus", "gpus", 0],
    ["gpu", "gpus", 1],
    ["gpsu", "gpus", 1], // adjacent transposition counts once
    ["kitten", "sitting", 3],
    ["", "abc", 3],
  ])("%j → %j is %i", (a, b, d) => {
    expect(editDistance(a, b)).toBe(d);
    expect(editDistance(b, a)).toBe(d);
  });

  it("agrees with the textbook full-matrix algorithm on seeded random words", () => {
    const reference = (a: string, b: string): number => {
      const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
      for (let i = 1; i <= a.length; i++) {
        for (let j = 1; j <= b.length; j++) {
          const row = d[i] as number[];
          const up = d[i - 1] as number[];
          row[j] = Math.min((up[j] as number) + 1, (row[j - 1] as number) + 1, (up[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
          if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
            row[j] = Math.min(row[j] as number, ((d[i - 2] as number[])[j - 2] as number) + 1);
          }
        }
      }
      return (d[a.length] as number[])[b.length] as number;
    };
    let s = 7;
    const rnd = (): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 4294967296;
    };
    const word = (): string => Array.from({ length: Math.floor(rnd() * 12) }, () => "abcd_-"[Math.floor(rnd() * 6)]).join("");
    for (let k = 0; k < 3000; k++) {
      const [a, b] = [word(), word()];
      expect(editDistance(a, b), `${a} ${b}`).toBe(reference(a, b));
    }
  });

  it("clips very long inputs so the cost stays bounded", () => {
    const t0 = performance.now();
    expect(editDistance("a".repeat(1_000_000), "b".repeat(1_000_000))).toBe(64);
    expect(performance.now() - t0).toBeLessThan(200);
  });
});

describe("closestMatches", () => {
  const keys = ["gpus", "max_gpus_per_node", "requires_multi_node", "gpu_memory", "gpu_type", "gpu_fraction"];

  it("suggests the nearest key first", () => {
    expect(closestMatches("gpu", keys)[0]).toBe("gpus");
    expect(closestMatches("gpu_typ", keys)[0]).toBe("gpu_type");
    expect(closestMatches("require_multi_node", keys)).toEqual(["requires_multi_node"]);
  });

  it("ignores case", () => {
    expect(closestMatches("GPUS", keys)[0]).toBe("gpus");
  });

  it("suggests nothing for unrelated words", () => {
    expect(closestMatches("banana", keys)).toEqual([]);
    expect(closestMatches("", keys)).toEqual([]);
  });

  it("suggests what comparing every candidate suggests, on seeded random words", () => {
    // closestMatches skips candidates whose length alone rules them out; this is the rule without the shortcut.
    const everyCandidate = (input: string, candidates: readonly string[], limit: number): string[] => {
      const x = input.toLowerCase().slice(0, 64);
      if (x.length === 0) return [];
      return candidates
        .map((c) => ({ c, y: c.toLowerCase(), d: editDistance(x, c.toLowerCase()) }))
        .filter(({ y, d }) => d <= Math.min(3, Math.max(1, Math.floor(Math.max(x.length, y.length) / 3))) || (x.length >= 3 && (y.startsWith(x) || x.startsWith(y))))
        .sort((p, q) => p.d - q.d || p.c.localeCompare(q.c))
        .slice(0, limit)
        .map(({ c }) => c);
    };
    let s = 11;
    const rnd = (): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return s / 4294967296;
    };
    const word = (): string => Array.from({ length: Math.floor(rnd() * (rnd() < 0.05 ? 90 : 14)) }, () => "gpu_sA-"[Math.floor(rnd() * 7)]).join("");
    const pool = [...keys, ...Array.from({ length: 30 }, word)];
    for (let k = 0; k < 2000; k++) {
      const input = word();
      const candidates = pool.filter(() => rnd() < 0.3);
      expect(closestMatches(input, candidates, 3), input).toEqual(everyCandidate(input, candidates, 3));
    }
  });

  it("admits prefixes of at least three characters", () => {
    expect(closestMatches("max_gpus", keys)).toContain("max_gpus_per_node");
  });
});

describe("didYouMean", () => {
  it("formats one or several suggestions", () => {
    expect(didYouMean("trainig", ["training", "hpo", "inference", "eval"])).toBe("; did you mean 'training'?");
    expect(didYouMean("zzz", ["training"])).toBe("");
    expect(joinOr(["a"])).toBe("'a'");
    expect(joinOr(["a", "b", "c"])).toBe("'a', 'b' or 'c'");
  });
});
