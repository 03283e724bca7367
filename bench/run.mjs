#!/usr/bin/env node
// Runs the compiled benchmarks (bench/dist/*.bench.js) one after another.
//
//   node bench/run.mjs                          every benchmark
//   node bench/run.mjs submit                   those whose file name starts with "submit"
//   node bench/run.mjs submit --jobs 2000       arguments from the first flag on go to each benchmark
//
// Each benchmark's stdout (its `name: value unit` lines) and stderr pass
// through untouched. Exit status: 0 when all passed, 1 when one failed, 2 on
// a usage error.
import { spawn } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const distDir = join(here, "dist");
const SUFFIX = ".bench.js";

const argv = process.argv.slice(2);
const firstFlag = argv.findIndex((a) => a.startsWith("-"));
const names = firstFlag === -1 ? argv : argv.slice(0, firstFlag);
const forwarded = firstFlag === -1 ? [] : argv.slice(firstFlag);

const available = existsSync(distDir)
  ? readdirSync(distDir)
      .filter((f) => f.endsWith(SUFFIX))
      .sort()
  : [];
if (available.length === 0) {
  console.error(`bench: no ${SUFFIX} files in ${distDir}; build first (pnpm exec tsc -b)`);
  process.exit(2);
}

const short = (file) => basename(file, SUFFIX);
let selected = available;
if (names.length > 0) {
  selected = [];
  for (const name of names) {
    const matches = available.filter((f) => short(f) === name || short(f).startsWith(name));
    if (matches.length === 0) {
      console.error(`bench: no benchmark matches '${name}'; available: ${available.map(short).join(", ")}`);
      process.exit(2);
    }
    for (const m of matches) if (!selected.includes(m)) selected.push(m);
  }
}

let current = null;
let interrupted = false;
// Ctrl-C reaches the benchmark directly (same process group); a SIGTERM sent
// to this runner alone is passed on so the benchmark can stop its servers.
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    interrupted = true;
    if (current && current.exitCode === null && sig === "SIGTERM") current.kill(sig);
  });
}

const failed = [];
for (const file of selected) {
  if (interrupted) break;
  console.error(`\n== bench ${short(file)}`);
  const started = performance.now();
  const code = await new Promise((resolve) => {
    current = spawn(process.execPath, [join(distDir, file), ...forwarded], { stdio: "inherit" });
    current.once("error", (err) => {
      console.error(`bench: cannot start ${file}: ${err.message}`);
      resolve(1);
    });
    current.once("exit", (c, signal) => resolve(c ?? (signal ? `signal ${signal}` : 1)));
  });
  current = null;
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  if (code === 0) console.error(`== bench ${short(file)}: ok (${secs} s)`);
  else {
    console.error(`== bench ${short(file)}: FAILED (exit ${code}, ${secs} s)`);
    failed.push(short(file));
  }
}

if (failed.length > 0 || interrupted) {
  console.error(`bench: ${failed.length > 0 ? `failed: ${failed.join(", ")}` : "interrupted"}`);
  process.exit(1);
}
