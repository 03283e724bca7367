import { parseArgs, type ParseArgsConfig } from "node:util";

/**
 * Parses a benchmark's flags; `--help` prints `usage` and exits. `int(name,
 * def, min)` reads an integer flag with a clear error naming it.
 */
export function parseBenchArgs(
  argv: string[],
  options: NonNullable<ParseArgsConfig["options"]>,
  usage: string,
): { values: Record<string, string | boolean | undefined>; int: (name: string, def: number, min: number) => number } {
  const { values } = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true });
  const vals = values as Record<string, string | boolean | undefined>;
  if (vals.help) {
    console.error(usage);
    process.exit(0);
  }
  const int = (name: string, def: number, min: number): number => {
    const v = vals[name];
    if (v === undefined) return def;
    if (typeof v !== "string" || !/^\d+$/.test(v) || Number(v) < min) {
      throw new Error(`--${name} must be an integer ≥ ${min}, got '${String(v)}'\n${usage}`);
    }
    return Number(v);
  };
  return { values: vals, int };
}
