// Regenerates packages/proto/src/gen from proto/ with buf + ts-proto.
// `--check` regenerates into a temp dir and fails when the committed code differs
// (CI runs it, so the committed generated code can never drift from the .proto).
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, cpSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const buf = join(root, "node_modules/.bin/buf");
const target = join(root, "packages/proto/src/gen");
const check = process.argv.includes("--check");

function list(dir) {
  const out = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...list(p));
    else out.push(p);
  }
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), "gpuorch-proto-"));
try {
  execFileSync(buf, ["generate", "--template", "buf.gen.yaml", "-o", tmp], { cwd: root, stdio: "inherit" });
  const fresh = join(tmp, "packages/proto/src/gen");
  if (check) {
    const a = list(fresh).map((p) => relative(fresh, p)).sort();
    const b = list(target).map((p) => relative(target, p)).sort();
    const diffs = [];
    if (a.join("\n") !== b.join("\n")) diffs.push(`file lists differ:\n generated: ${a.join(", ")}\n committed: ${b.join(", ")}`);
    for (const f of a) {
      if (b.includes(f) && readFileSync(join(fresh, f), "utf8") !== readFileSync(join(target, f), "utf8")) diffs.push(`differs: ${f}`);
    }
    if (diffs.length) {
      console.error("generated protobuf code is out of date; run `pnpm proto:gen` and commit:\n" + diffs.join("\n"));
      process.exit(1);
    }
    console.log(`proto: ${a.length} generated files match the committed code`);
  } else {
    rmSync(target, { recursive: true, force: true });
    cpSync(fresh, target, { recursive: true });
    console.log(`proto: generated ${list(target).length} files into ${relative(root, target)}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
