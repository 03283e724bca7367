import { decodeSpecInput } from "./decode.js";
import { finishIssues } from "./issues.js";
import type { ParseResult } from "./types.js";
import { validateTree } from "./validate.js";
import { loadYaml } from "./yaml-tree.js";

/** Largest spec accepted by default: 1 MiB of UTF-8. */
export const SPEC_MAX_BYTES = 1024 * 1024;

/**
 * Parse and validate a YAML job spec. Never throws: every failure, including
 * hostile input (oversized, non-UTF-8, alias bombs, deep nesting) and bugs of
 * our own, comes back as located issues, sorted by position.
 */
export function parseJobSpec(input: string | Uint8Array, opts?: { maxBytes?: number }): ParseResult {
  try {
    const requested = opts?.maxBytes;
    const maxBytes = typeof requested === "number" && Number.isFinite(requested) && requested > 0 ? Math.floor(requested) : SPEC_MAX_BYTES;
    const decoded = decodeSpecInput(input, maxBytes);
    if (!decoded.ok) return { ok: false, issues: [decoded.issue] };
    const loaded = loadYaml(decoded.text);
    if (!loaded.ok) return { ok: false, issues: finishIssues(loaded.issues) };
    const { spec, issues } = validateTree(loaded.tree);
    if (spec === null || issues.length > 0) {
      return {
        ok: false,
        issues: issues.length > 0 ? finishIssues(issues) : [{ path: "", line: null, column: null, message: "invalid spec" }],
      };
    }
    return { ok: true, spec };
  } catch (e) {
    const tooDeep = e instanceof RangeError;
    return {
      ok: false,
      issues: [
        {
          path: "",
          line: null,
          column: null,
          message: tooDeep
            ? "the spec is too deeply nested or too large to read"
            : `internal error while reading the spec (please report it): ${e instanceof Error ? e.message.slice(0, 200) : String(e).slice(0, 200)}`,
        },
      ],
    };
  }
}
