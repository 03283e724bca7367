import type { SpecIssue } from "./types.js";

/** How many issues a result carries; more are summarized in one last issue. */
export const MAX_ISSUES = 50;

export type PathSegment = string | number;

const IDENT = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** `["entrypoint", "args", 2]` → `entrypoint.args[2]`; odd keys are quoted: `env["a.b"]`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) out = appendPath(out, seg);
  return out;
}

/** The formatted path `parent` (see formatPath) extended by one segment. */
export function appendPath(parent: string, seg: PropertyKey): string {
  if (typeof seg === "number") return `${parent}[${seg}]`;
  const s = String(seg);
  if (IDENT.test(s)) return parent.length === 0 ? s : `${parent}.${s}`;
  return `${parent}[${JSON.stringify(s.length > 64 ? `${s.slice(0, 64)}…` : s)}]`;
}

/** Positioned issues first, in source order; then the rest in path order. */
export function sortIssues(issues: SpecIssue[]): SpecIssue[] {
  return [...issues].sort((a, b) => {
    if (a.line === null || b.line === null) {
      if (a.line !== b.line) return a.line === null ? 1 : -1;
    } else if (a.line !== b.line) return a.line - b.line;
    if (a.column !== b.column) {
      if (a.column === null) return 1;
      if (b.column === null) return -1;
      return a.column - b.column;
    }
    return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
  });
}

/** Sort, drop exact duplicates, cap at MAX_ISSUES (plus one summary line). */
export function finishIssues(issues: SpecIssue[]): SpecIssue[] {
  const seen = new Set<string>();
  const unique: SpecIssue[] = [];
  for (const i of sortIssues(issues)) {
    const k = `${i.line}:${i.column}:${i.path}:${i.message}`;
    if (seen.has(k)) continue;
    seen.add(k);
    unique.push(i);
  }
  if (unique.length <= MAX_ISSUES) return unique;
  const rest = unique.length - MAX_ISSUES;
  return [
    ...unique.slice(0, MAX_ISSUES),
    { path: "", line: null, column: null, message: `${rest} more issue${rest === 1 ? "" : "s"} not shown; fix the ones above first` },
  ];
}

/**
 * One line per issue, like a compiler: `spec.yaml:7:9: resources.gpus: expected …`.
 * Missing parts are left out (`spec.yaml: : …` never appears).
 */
export function formatSpecIssues(issues: SpecIssue[], source?: string): string {
  return issues
    .map((i) => {
      let where = source ?? "";
      if (i.line !== null) {
        where += `${where.length > 0 ? ":" : ""}${i.line}`;
        if (i.column !== null) where += `:${i.column}`;
      }
      const head = [where, i.path].filter((s) => s.length > 0).join(": ");
      return head.length > 0 ? `${head}: ${i.message}` : i.message;
    })
    .join("\n");
}
