/**
 * CPU cost of parseJobSpec (decode, YAML, validation, normalization) per
 * call, in microseconds, for each examples/*.yaml and for one typical invalid
 * spec (a misspelt key). The controller runs it on every submission, so it
 * bounds submissions per second per core.
 *
 * The spec is passed as a string, as the controller receives it. Each file is
 * warmed up first (the JIT settles), then measured in R rounds of N calls;
 * the figure is the median round, and stderr shows min/median/max.
 *
 * Usage: node bench/dist/spec-parse.bench.js [--iterations N] [--rounds R] [--warmup W]
 */
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseBenchArgs } from "./options.js";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "./controller-process.js";
import { figure } from "./latency.js";

/** The slice of @gpuorch/spec this benchmark calls. */
type ParseJobSpec = (input: string) => { ok: true } | { ok: false; issues: ReadonlyArray<{ path: string; message: string }> };

/** A misspelt key (`gpu:` for `gpus:`): the most common way a spec is wrong. */
const INVALID_SPEC = join("packages", "spec", "testdata", "invalid", "unknown-key-gpu.yaml");

const USAGE = "usage: spec-parse.bench.js [--iterations N (2000)] [--rounds R (7)] [--warmup W (5000)]";

interface Options {
  iterations: number;
  rounds: number;
  warmup: number;
}

function parseOptions(argv: string[]): Options {
  const { int } = parseBenchArgs(argv, { iterations: { type: "string" }, rounds: { type: "string" }, warmup: { type: "string" } }, USAGE);
  return {
    iterations: int("iterations", 2000, 1),
    rounds: int("rounds", 7, 1),
    warmup: int("warmup", 5000, 0),
  };
}

/** Microseconds per call of each round, ascending. */
function measure(parse: ParseJobSpec, text: string, opts: Options): number[] {
  for (let i = 0; i < opts.warmup; i++) parse(text);
  const rounds: number[] = [];
  for (let r = 0; r < opts.rounds; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < opts.iterations; i++) parse(text);
    rounds.push(Number(process.hrtime.bigint() - t0) / 1000 / opts.iterations);
  }
  return rounds.sort((a, b) => a - b);
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  // The built package, as the controller loads it (the benchmarks measure built code).
  const specEntry = pathToFileURL(join(REPO_ROOT, "packages", "spec", "dist", "index.js")).href;
  const { parseJobSpec } = (await import(specEntry)) as { parseJobSpec: ParseJobSpec };

  const examplesDir = join(REPO_ROOT, "examples");
  const cases: Array<{ name: string; file: string; valid: boolean }> = readdirSync(examplesDir)
    .filter((f) => f.endsWith(".yaml"))
    .sort()
    .map((f) => ({ name: `spec_parse_${basename(f, ".yaml").replace(/[^A-Za-z0-9]+/g, "_")}`, file: join(examplesDir, f), valid: true }));
  if (cases.length === 0) throw new Error(`no *.yaml in ${examplesDir}`);
  cases.push({ name: "spec_parse_invalid", file: join(REPO_ROOT, INVALID_SPEC), valid: false });

  console.error(`spec-parse: ${opts.warmup} warm-up calls, then ${opts.rounds} rounds of ${opts.iterations} calls per file`);
  for (const c of cases) {
    const text = readFileSync(c.file, "utf8");
    const r = parseJobSpec(text);
    // Measure the path we mean to: a valid example that fails (or the reverse) would time the wrong thing.
    if (r.ok !== c.valid) {
      const why = r.ok ? "it parsed" : r.issues.map((i) => `${i.path}: ${i.message}`).join("; ");
      throw new Error(`${c.file}: expected ${c.valid ? "a valid" : "an invalid"} spec, but ${why}`);
    }
    const rounds = measure(parseJobSpec, text, opts);
    const median = rounds[Math.floor(rounds.length / 2)] as number;
    const [min, max] = [rounds[0] as number, rounds[rounds.length - 1] as number];
    console.error(
      `${c.name} (${c.file.slice(REPO_ROOT.length + 1)}, ${text.length} chars): min ${min.toFixed(1)} / median ${median.toFixed(1)} / max ${max.toFixed(1)} us per call, ${Math.round(1e6 / median)} calls/s`,
    );
    console.log(figure(c.name, median, "us/op"));
  }
}

main().catch((err: unknown) => {
  console.error("spec-parse: FAILED:", err);
  process.exitCode = 1;
});
