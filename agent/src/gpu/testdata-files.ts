import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

// Test-only: the captures are not copied into dist, so this resolves against
// the source tree that vitest runs from.

/** Absolute path of a capture in ./testdata (see testdata/README.md for where each came from). */
export function testdataPath(name: string): string {
  return fileURLToPath(new URL(`./testdata/${name}`, import.meta.url));
}

export function readTestdata(name: string): string {
  return readFileSync(testdataPath(name), "utf8");
}
