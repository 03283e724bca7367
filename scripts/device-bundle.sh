#!/bin/bash
# Builds .devcarry/ for scripts/device-gpu-check.sh on a GPU machine that has no Node and no
# registry: esbuild bundles of the controller, agent and CLI, PGlite's wasm/data files and the
# migrations beside them, grpc-health-check's proto, and this machine's node binary (xz).
# Usage: pnpm build && bash scripts/device-bundle.sh   (then carry .devcarry; it is git-excluded)
set -euo pipefail
cd "$(dirname "$0")/.."
ESB=$(ls -d node_modules/.pnpm/esbuild@*/node_modules/esbuild/bin/esbuild | tail -1)
PGL=$(ls -d node_modules/.pnpm/@electric-sql+pglite@*/node_modules/@electric-sql/pglite/dist | tail -1)
HC=$(ls -d node_modules/.pnpm/grpc-health-check@*/node_modules/grpc-health-check | tail -1)
rm -rf .devcarry && mkdir -p .devcarry/bin/hc/proto
grep -qx "/.devcarry/" .git/info/exclude || echo "/.devcarry/" >> .git/info/exclude
BANNER='import { createRequire as __cr } from "node:module"; import { fileURLToPath as __fu } from "node:url"; const require = __cr(import.meta.url); const __dirname = __fu(new URL("./hc/build/src", import.meta.url)); const __filename = __dirname + "/x.js";'
for x in controller:controller/dist/main.js agent:agent/dist/main.js cli:packages/cli/dist/main.js; do
  "$ESB" "${x#*:}" --bundle --platform=node --format=esm --target=node20 --outfile=".devcarry/bin/${x%%:*}.mjs" \
    --external:pg-native --banner:js="$BANNER" --log-level=error
done
cp "$PGL/pglite.wasm" "$PGL/pglite.data" "$PGL/initdb.wasm" .devcarry/bin/
cp -r "$HC/proto/." .devcarry/bin/hc/proto/
cp -r packages/db/drizzle .devcarry/drizzle
cp scripts/device-gpu-check.sh .devcarry/gpu-check.sh
xz -T2 -6 -c "$(command -v node)" > .devcarry/node.xz
du -sh .devcarry
