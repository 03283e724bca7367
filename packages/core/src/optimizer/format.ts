import type { PlanTarget } from "./types.js";

/*
 * Human strings for plan tables and the binding-constraint message. They are
 * shown to users at submit, so amounts carry units and enough digits to tell
 * two compared numbers apart.
 */

/**
 * Dollars with cents. `ceil` for amounts compared against a budget (a cost of
 * $100.000001 must not print as "$100.00 > $100.00"), `round` (half up)
 * otherwise. Sub-cent non-zero amounts keep their micro digits.
 */
export function usd(micros: bigint, mode: "round" | "ceil" = "round"): string {
  const neg = micros < 0n;
  const abs = neg ? -micros : micros;
  if (abs > 0n && abs < 10_000n) return `${neg ? "-" : ""}$0.${abs.toString().padStart(6, "0").replace(/0+$/, "")}`;
  const cents = mode === "ceil" && !neg ? (abs + 9_999n) / 10_000n : (abs + 5_000n) / 10_000n;
  return `${neg ? "-" : ""}$${cents / 100n}.${(cents % 100n).toString().padStart(2, "0")}`;
}

/** A budget as the user wrote it, with at least cents. */
export function usdExact(micros: bigint): string {
  if (micros % 10_000n === 0n) return usd(micros);
  const s = (micros < 0n ? -micros : micros).toString().padStart(7, "0");
  return `${micros < 0n ? "-" : ""}$${s.slice(0, -6)}.${s.slice(-6).replace(/0+$/, "")}`;
}

export function hoursText(h: number): string {
  if (!Number.isFinite(h)) return "∞ h";
  if (h >= 100) return `${Math.round(h)} h`;
  if (h >= 1) return `${(Math.round(h * 10) / 10).toFixed(1)} h`;
  if (h >= 0.1) return `${(Math.round(h * 100) / 100).toFixed(2)} h`;
  return `${Math.max(1, Math.round(h * 60))} min`;
}

/**
 * A reliability and the threshold it misses, with as many decimals (3 to 6)
 * as it takes to show them apart without rounding the threshold the user
 * wrote (0.9999 must not print as 1.000).
 */
export function probabilityPair(a: number, b: number): [string, string] {
  for (let d = 3; d < 6; d++) {
    if (a.toFixed(d) !== b.toFixed(d) && Number(b.toFixed(d)) === b) return [a.toFixed(d), b.toFixed(d)];
  }
  return [a.toFixed(6), b.toFixed(6)];
}

function gpuCountText(n: number): string {
  return Number.isInteger(n) ? String(n) : String(Math.round(n * 1000) / 1000);
}

/** "8×A100-80GB spot, aws us-east-1 p4de.24xlarge" or "8×A100 on onprem dc1 n1,n2". */
export function targetText(t: PlanTarget): string {
  const gpus = `${gpuCountText(t.gpusPerNode * t.nodes)}×${t.gpuType}`;
  if (t.kind === "existing") return `${gpus} on ${t.provider} ${t.region} node${t.nodeIds.length > 1 ? "s" : ""} ${t.nodeIds.join(",")}`;
  const where = `${t.provider} ${t.region}${t.zone === "" ? "" : `/${t.zone}`}`;
  return `${gpus} ${t.spot ? "spot" : "on-demand"}, ${where} ${t.instanceType}${t.nodes > 1 ? `×${t.nodes}` : ""}`;
}

/** multi_task split: "80 → aws spot us-east-1 g5.xlarge×10, 50 → onprem dc1 n1". */
export function splitText(targets: readonly PlanTarget[]): string {
  return targets
    .map((t) =>
      t.kind === "existing"
        ? `${t.units} → ${t.provider} ${t.region} ${t.nodeIds.join(",")}`
        : `${t.units} → ${t.provider}${t.spot ? " spot" : ""} ${t.region}${t.zone === "" ? "" : `/${t.zone}`} ${t.instanceType}×${t.nodes}`,
    )
    .join(", ");
}
