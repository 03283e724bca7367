/**
 * nvidia-smi prints every reading as text, in both the XML and the CSV output:
 * "67.03 W", "81920 MiB", "0 %", "27 C", and one of several placeholders when a
 * value does not exist on this GPU or driver ("N/A", "[N/A]", "[Not Supported]",
 * "Requested functionality has been deprecated", "Unknown Error"). The agent
 * reports such readings as null rather than guessing a number.
 */

const NUMBER_WITH_UNIT = /^(-?\d+(?:\.\d+)?)(?:\s*([A-Za-z%]+))?$/;

/** The text with placeholders ("N/A", "[Not Supported]", …) turned into null. */
export function textValue(raw: string | null | undefined): string | null {
  if (raw === null || raw === undefined) return null;
  const t = raw.trim();
  if (t === "") return null;
  // CSV wraps every "no value" answer in brackets; the XML spells a few of them out.
  if (t.startsWith("[") && t.endsWith("]")) return null;
  switch (t) {
    case "N/A":
    case "Not Supported":
    case "Unknown Error":
    case "Insufficient Permissions":
    case "Requested functionality has been deprecated":
      return null;
    default:
      return t;
  }
}

/**
 * A number from "67.03 W" or "81920 MiB" or "42". When `unit` is given, a
 * value in another unit is rejected (null) instead of silently misread:
 * nvidia-smi has never changed units, but a future "GiB" must not become MiB.
 */
export function numberValue(raw: string | null | undefined, unit?: string): number | null {
  const t = textValue(raw);
  if (t === null) return null;
  const m = NUMBER_WITH_UNIT.exec(t);
  if (!m || m[1] === undefined) return null;
  if (unit !== undefined && m[2] !== undefined && m[2] !== unit) return null;
  return Number(m[1]);
}

/** An integer count such as an index or an instance id; null for anything else. */
export function integerValue(raw: string | null | undefined): number | null {
  const n = numberValue(raw);
  return n !== null && Number.isInteger(n) ? n : null;
}

/** "Enabled"/"Disabled" (any case) as a boolean; null for N/A and anything unexpected. */
export function enabledValue(raw: string | null | undefined): boolean | null {
  const t = textValue(raw)?.toLowerCase();
  if (t === "enabled") return true;
  if (t === "disabled") return false;
  return null;
}
