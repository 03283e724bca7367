import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const pkg = (name: string) => fileURLToPath(new URL(`./packages/${name}/src/index.ts`, import.meta.url));

// Tests import workspace packages from source; cross-process tests in test/
// spawn the built binaries (`pnpm test` runs `tsc -b` first).
export default defineConfig({
  resolve: {
    alias: {
      "@gpuorch/core": pkg("core"),
      "@gpuorch/spec": pkg("spec"),
      "@gpuorch/runtime": pkg("runtime"),
      "@gpuorch/proto": pkg("proto"),
      "@gpuorch/db": pkg("db"),
      "@gpuorch/pricing": pkg("pricing"),
      "@gpuorch/storage": pkg("storage"),
      "@gpuorch/rpc": pkg("rpc"),
      "@gpuorch/testing": pkg("testing"),
      "@gpuorch/cli": pkg("cli"),
    },
  },
  test: {
    include: ["packages/*/src/**/*.test.ts", "controller/src/**/*.test.ts", "agent/src/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    globalSetup: ["packages/testing/src/vitest-global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    // CI also writes a JSON report so .ci/run can print a plain "N passed, N failed" line.
    reporters: process.env.GPUORCH_TEST_REPORT ? ["default", "json"] : ["default"],
    ...(process.env.GPUORCH_TEST_REPORT ? { outputFile: { json: process.env.GPUORCH_TEST_REPORT } } : {}),
  },
});
