import { describe, expect, it } from "vitest";
import { AppError } from "../app-error.js";
import { meteredMicros } from "./metered.js";
import { decideMigration, type MigrationAlternative, type MigrationDecision, type MigrationInput, type MigrationTarget } from "./migration.js";

const cur = (over: Partial<MigrationTarget> = {}): MigrationTarget => ({
  key: "aws/us-east-1/p4d/spot",
  provider: "aws",
  region: "us-east-1",
  spot: false,
  hourlyMicros: 1_000_000n,
  interruptionRatePerHour: 0,
  available: true,
  ...over,
});

const alt = (key: string, over: Partial<MigrationAlternative> = {}): MigrationAlternative => ({
  key,
  provider: "gcp",
  region: "us-central1",
  spot: false,
  hourlyMicros: 1_000_000n,
  interruptionRatePerHour: 0,
  available: true,
  egressMicros: 0n,
  ...over,
});

/** 10 h to pay on any target: 8 remaining + 1 restart + 1 lost; on-demand, so no interruption overhead. */
const base = (over: Partial<MigrationInput> = {}): MigrationInput => ({
  current: cur(),
  alternatives: [],
  remainingHours: 8,
  restartHours: 1,
  lostWorkHours: 1,
  ...over,
});

describe("decideMigration", () => {
  it("stays when the saving is below the switching cost (egress)", () => {
    // alt runs 10 h × $0.80 = $8.00 (saving $2.00) but the checkpoint costs $2.50 to move.
    const d = decideMigration(base({ alternatives: [alt("b", { hourlyMicros: 800_000n, egressMicros: 2_500_000n })] }));
    expect(d).toMatchObject({ action: "stay", stayTotalMicros: 10_000_000n, moveTotalMicros: 10_500_000n, savingMicros: 2_000_000n, switchCostMicros: 2_500_000n });
    expect(d.target.key).toBe("aws/us-east-1/p4d/spot");
    expect(d.reason).toContain("$2.00");
    expect(d.reason).toContain("$2.50");
    expect(d.reason).toMatch(/^staying on /);
  });

  it("moves when the saving beats the switching cost by more than the hysteresis", () => {
    // stay $10.00; alt $6.00 + $1.00 egress = $7.00: net $3.00 > 5 % of $10.00.
    const d = decideMigration(base({ alternatives: [alt("b", { hourlyMicros: 600_000n, egressMicros: 1_000_000n })] }));
    expect(d).toMatchObject({ action: "move", stayTotalMicros: 10_000_000n, moveTotalMicros: 7_000_000n, savingMicros: 4_000_000n, switchCostMicros: 1_000_000n });
    expect(d.target.key).toBe("b");
    expect(d.reason).toMatch(/^moving from .* to b /);
    expect(d.reason).toContain("$3.00 > 5% hysteresis ($0.50)");
  });

  it("stays when the net saving is positive but within the hysteresis", () => {
    // net $0.40 < $0.50.
    const d = decideMigration(base({ alternatives: [alt("b", { hourlyMicros: 960_000n })] }));
    expect(d).toMatchObject({ action: "stay", moveTotalMicros: 9_600_000n, savingMicros: 400_000n, switchCostMicros: 0n });
    expect(decideMigration(base({ alternatives: [alt("b", { hourlyMicros: 960_000n })], hysteresis: 0.03 })).action).toBe("move");
  });

  it("hysteresis boundary is exact in integer micros: equal stays, one micro more moves", () => {
    // stay = $10.000000, 5 % = 500 000 µ$; alt run $9.00 + egress.
    const at = (egress: bigint): MigrationDecision => decideMigration(base({ alternatives: [alt("b", { hourlyMicros: 900_000n, egressMicros: egress })] }));
    expect(at(500_000n)).toMatchObject({ action: "stay", moveTotalMicros: 9_500_000n });
    expect(at(499_999n)).toMatchObject({ action: "move", moveTotalMicros: 9_499_999n });
    // 0.1 is not exact in binary but resolves to exactly 100 000 ppm: net 1 000 000 = 10 % stays.
    const ten = (egress: bigint): string => decideMigration(base({ alternatives: [alt("b", { hourlyMicros: 800_000n, egressMicros: egress })], hysteresis: 0.1 })).action;
    expect(ten(1_000_000n)).toBe("stay");
    expect(ten(999_999n)).toBe("move");
    // Hysteresis 0: any strictly positive net saving moves; a tie stays.
    const zero = (egress: bigint): string => decideMigration(base({ alternatives: [alt("b", { hourlyMicros: 900_000n, egressMicros: egress })], hysteresis: 0 })).action;
    expect(zero(1_000_000n)).toBe("stay");
    expect(zero(999_999n)).toBe("move");
  });

  it("an unavailable current target forces a move to the cheapest available alternative, even a dearer one", () => {
    const d = decideMigration(
      base({
        current: cur({ available: false }),
        alternatives: [alt("dear", { hourlyMicros: 2_000_000n }), alt("cheapest-but-full", { hourlyMicros: 100_000n, available: false }), alt("ok", { hourlyMicros: 1_500_000n, egressMicros: 300_000n })],
      }),
    );
    expect(d).toMatchObject({ action: "move", stayTotalMicros: 10_000_000n, moveTotalMicros: 15_300_000n, switchCostMicros: 300_000n, savingMicros: -5_000_000n });
    expect(d.target.key).toBe("ok");
    expect(d.reason).toMatch(/is unavailable; moving to the cheapest available alternative, ok \(\$15\.30 to finish, incl\. \$0\.30 egress\)/);
  });

  it("with no alternatives: stays; with the current target gone too, waits for capacity", () => {
    const none = decideMigration(base());
    expect(none).toMatchObject({ action: "stay", moveTotalMicros: null, savingMicros: 0n, switchCostMicros: 0n });
    expect(none.reason).toBe("staying on aws/us-east-1/p4d/spot ($10.00 to finish): no alternative available");
    const onlyFull = decideMigration(base({ alternatives: [alt("b", { available: false, hourlyMicros: 1n })] }));
    expect(onlyFull).toMatchObject({ action: "stay", moveTotalMicros: null });
    const waiting = decideMigration(base({ current: cur({ available: false, label: "8×A100 spot aws us-east-1" }), alternatives: [alt("b", { available: false })] }));
    expect(waiting).toMatchObject({ action: "stay", moveTotalMicros: null });
    expect(waiting.target.key).toBe("aws/us-east-1/p4d/spot");
    expect(waiting.reason).toBe("no alternative available; waiting for capacity (current target 8×A100 spot aws us-east-1 is unavailable)");
  });

  it("egress counts: a cheaper-running target loses to a co-located one once its egress is added", () => {
    const d = decideMigration(
      base({
        alternatives: [alt("far", { hourlyMicros: 500_000n, egressMicros: 4_000_000n }), alt("near", { hourlyMicros: 700_000n, region: "us-east-1", provider: "aws" })],
      }),
    );
    // far = $5.00 + $4.00 = $9.00; near = $7.00.
    expect(d).toMatchObject({ action: "move", moveTotalMicros: 7_000_000n, switchCostMicros: 0n });
    expect(d.target.key).toBe("near");
  });

  it("adds the cost model's expected spot interruption overhead (restart + half a checkpoint interval each)", () => {
    // work 9 h, λ 0.1/h → 0.9 interruptions × (1 h restart + 0.5 h lost) = 1.35 h; + 1 h restart + 9 h = 11.35 h.
    const d = decideMigration(base({ current: cur({ spot: true, interruptionRatePerHour: 0.1 }), checkpointHours: 1 }));
    expect(d.stayTotalMicros).toBe(11_350_000n);
    // The same rate on an on-demand target is ignored.
    expect(decideMigration(base({ current: cur({ spot: false, interruptionRatePerHour: 0.1 }), checkpointHours: 1 })).stayTotalMicros).toBe(10_000_000n);
    // No checkpoint interval known: half the work is lost per interruption (0.9 × (1 + 4.5) = 4.95 h).
    expect(decideMigration(base({ current: cur({ spot: true, interruptionRatePerHour: 0.1 }) })).stayTotalMicros).toBe(14_950_000n);
  });

  it("a per-target restart time enters the switching cost as the extra restart hours at the target's rate", () => {
    // alt needs 2 h to restart instead of 1: +1 h × $0.70 = $0.70 switching cost on top of $0.20 egress.
    const d = decideMigration(base({ alternatives: [alt("slow", { hourlyMicros: 700_000n, restartHours: 2, egressMicros: 200_000n })] }));
    // alt: 11 h × $0.70 = $7.70 + $0.20 = $7.90; saving = 10.00 − (7.90 − 0.90) = $3.00.
    expect(d).toMatchObject({ action: "move", moveTotalMicros: 7_900_000n, switchCostMicros: 900_000n, savingMicros: 3_000_000n });
    expect(d.savingMicros - d.switchCostMicros).toBe(d.stayTotalMicros - (d.moveTotalMicros ?? 0n));
  });

  it("ties: an alternative that costs exactly the same stays; equal alternatives are ranked by key", () => {
    expect(decideMigration(base({ alternatives: [alt("b")], hysteresis: 0 })).action).toBe("stay");
    const d = decideMigration(base({ alternatives: [alt("z", { hourlyMicros: 500_000n }), alt("a", { hourlyMicros: 500_000n }), alt("m", { hourlyMicros: 500_000n })] }));
    expect(d.target.key).toBe("a");
  });

  it("rejects invalid input with an AppError", () => {
    const err = (i: MigrationInput): AppError => {
      try {
        decideMigration(i);
      } catch (e) {
        if (e instanceof AppError) return e;
        throw e;
      }
      throw new Error("did not throw");
    };
    const e1 = err(base({ remainingHours: -1, hysteresis: Number.NaN }));
    expect(e1.code).toBe("INVALID_ARGUMENT");
    expect(e1.reason).toBe("invalid_migration_input");
    expect(e1.fields.map((f) => f.field)).toEqual(["remainingHours", "hysteresis"]);
    expect(err(base({ alternatives: [alt("aws/us-east-1/p4d/spot")] })).fields[0]?.field).toBe("alternatives[0].key");
    expect(err(base({ alternatives: [alt("b", { egressMicros: -1n })] })).fields[0]?.field).toBe("alternatives[0].egressMicros");
  });
});

/** mulberry32: tiny seeded PRNG so every run checks the same instances. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("decideMigration property", () => {
  /** Expected hours written out independently of spotExpectation: restart + W + λW·(restart + min(ckpt, W)/2). */
  function bruteRun(i: MigrationInput, t: MigrationTarget): bigint {
    const r = t.restartHours ?? i.restartHours;
    const w = i.remainingHours + i.lostWorkHours;
    const lam = t.spot ? t.interruptionRatePerHour : 0;
    const ck = i.checkpointHours ?? null;
    const lost = (ck === null ? w : Math.min(ck, w)) / 2;
    return meteredMicros(t.hourlyMicros, r + (w + lam * w * (r + lost)));
  }

  function bruteDecide(i: MigrationInput, ppm: bigint): { action: "stay" | "move"; key: string; stay: bigint; move: bigint | null; saving: bigint; sw: bigint } {
    const stay = bruteRun(i, i.current);
    const options = i.alternatives
      .filter((a) => a.available)
      .map((a) => ({ a, total: bruteRun(i, a) + a.egressMicros }))
      .sort((x, y) => (x.total < y.total ? -1 : x.total > y.total ? 1 : x.a.key < y.a.key ? -1 : x.a.key > y.a.key ? 1 : 0));
    const best = options[0];
    if (!best) return { action: "stay", key: i.current.key, stay, move: null, saving: 0n, sw: 0n };
    const r0 = i.current.restartHours ?? i.restartHours;
    const sw = best.a.egressMicros + meteredMicros(best.a.hourlyMicros, best.a.restartHours ?? i.restartHours) - meteredMicros(best.a.hourlyMicros, r0);
    const saving = stay - best.total + sw;
    const move = !i.current.available || (stay - best.total) * 1_000_000n > ppm * stay;
    return { action: move ? "move" : "stay", key: move ? best.a.key : i.current.key, stay, move: best.total, saving, sw };
  }

  function randomInput(r: () => number): { input: MigrationInput; ppm: bigint } {
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
    // Coarse grids make ties and boundary hits frequent; fine values cover the rest.
    const hoursOf = (): number => (r() < 0.5 ? Math.floor(r() * 40) / 4 : r() * 30);
    const rate = (): bigint => (r() < 0.5 ? pick([0n, 500_000n, 1_000_000n, 2_500_000n, 32_000_000n]) : BigInt(Math.floor(r() * 40_000_000)));
    const target = (key: string): MigrationTarget => {
      const spot = r() < 0.5;
      const t: MigrationTarget = {
        key,
        provider: pick(["aws", "gcp", "azure"]),
        region: pick(["r1", "r2"]),
        spot,
        hourlyMicros: rate(),
        interruptionRatePerHour: r() < 0.3 ? 0 : r() * 0.2,
        available: r() < 0.8,
      };
      if (r() < 0.25) t.restartHours = hoursOf() / 10;
      return t;
    };
    const keys = ["k0", "k1", "k2", "k3", "k4", "k5"].sort(() => r() - 0.5);
    const n = Math.floor(r() * 6);
    const current = target(keys[n] as string);
    const alternatives: MigrationAlternative[] = [];
    for (let j = 0; j < n; j++) alternatives.push({ ...target(keys[j] as string), egressMicros: r() < 0.4 ? 0n : BigInt(Math.floor(r() * 5_000_000)) });
    const ppm = pick([0n, 50_000n, 50_000n, 100_000n, BigInt(Math.floor(r() * 300_000))]);
    const input: MigrationInput = {
      current,
      alternatives,
      remainingHours: hoursOf(),
      restartHours: Math.floor(r() * 8) / 8,
      lostWorkHours: Math.floor(r() * 8) / 8,
      checkpointHours: r() < 0.3 ? null : pick([0.25, 0.5, 1, r() * 3]),
      hysteresis: Number(ppm) / 1e6,
    };
    if (r() < 0.5) delete input.checkpointHours;
    // Steer half of the cases onto the hysteresis boundary (±1 µ$) through one alternative's egress.
    const a0 = alternatives[0];
    if (a0 && r() < 0.5) {
      const stay = bruteRun(input, current);
      if ((ppm * stay) % 1_000_000n === 0n) {
        const egress = stay - bruteRun(input, a0) - (ppm * stay) / 1_000_000n + pick([-1n, -1n, 0n, 0n, 1n]);
        if (egress >= 0n) alternatives[0] = { ...a0, egressMicros: egress, available: true };
      }
    }
    return { input, ppm };
  }

  it("equals a brute-force recomputation on 2000 seeded inputs and never moves without clearing the hysteresis", () => {
    const seen = { move: 0, stay: 0, forced: 0, boundaryStay: 0, boundaryMove: 0, none: 0 };
    for (let seed = 1; seed <= 2000; seed++) {
      const r = prng(seed);
      const { input, ppm } = randomInput(r);
      const d = decideMigration(input);
      const b = bruteDecide(input, ppm);
      const ctx = `seed ${seed}`;
      expect({ action: d.action, key: d.target.key, stay: d.stayTotalMicros, move: d.moveTotalMicros, saving: d.savingMicros, sw: d.switchCostMicros }, ctx).toEqual({
        action: b.action,
        key: b.key,
        stay: b.stay,
        move: b.move,
        saving: b.saving,
        sw: b.sw,
      });
      if (d.moveTotalMicros !== null) expect(d.savingMicros - d.switchCostMicros, ctx).toBe(d.stayTotalMicros - d.moveTotalMicros);
      if (d.action === "move") {
        expect(d.moveTotalMicros, ctx).not.toBeNull();
        expect(d.target.available, ctx).toBe(true);
        const net = d.stayTotalMicros - (d.moveTotalMicros ?? 0n);
        if (input.current.available) expect(net * 1_000_000n > ppm * d.stayTotalMicros, ctx).toBe(true);
        else seen.forced++;
        seen.move++;
      } else {
        expect(d.target, ctx).toBe(input.current);
        seen.stay++;
      }
      if (d.moveTotalMicros === null) seen.none++;
      else if (input.current.available) {
        const diff = (d.stayTotalMicros - d.moveTotalMicros) * 1_000_000n - ppm * d.stayTotalMicros;
        if (diff === 0n) seen.boundaryStay++;
        if (diff > 0n && diff <= 1_000_000n) seen.boundaryMove++;
      }
      // Input order never matters.
      const shuffled = { ...input, alternatives: [...input.alternatives].reverse() };
      const d2 = decideMigration(shuffled);
      expect({ ...d2, target: d2.target.key }, ctx).toEqual({ ...d, target: d.target.key });
    }
    // The generator really exercises every branch, the exact boundary included.
    expect(seen.move).toBeGreaterThan(100);
    expect(seen.stay).toBeGreaterThan(100);
    expect(seen.forced).toBeGreaterThan(20);
    expect(seen.none).toBeGreaterThan(20);
    expect(seen.boundaryStay).toBeGreaterThan(10);
    expect(seen.boundaryMove).toBeGreaterThan(10);
  });
});
