import { describe, expect, it } from "vitest";
import { finishIssues, formatPath, formatSpecIssues, MAX_ISSUES } from "./issues.js";
import type { SpecIssue } from "./types.js";

describe("formatPath", () => {
  it.each<[PropertyKey[], string]>([
    [[], ""],
    [["resources", "gpus"], "resources.gpus"],
    [["entrypoint", "args", 2], "entrypoint.args[2]"],
    [["entrypoint", "env", "1BAD"], 'entrypoint.env["1BAD"]'],
    [["hpo", "parameters", "optimizer.lr", "min"], 'hpo.parameters["optimizer.lr"].min'],
    [[0, "a"], "[0].a"],
  ])("%j → %s", (path, out) => {
    expect(formatPath(path)).toBe(out);
  });
});

describe("formatSpecIssues", () => {
  const full: SpecIssue = { path: "resources.gpus", line: 7, column: 9, message: "expected an integer" };
  it("writes compiler-style lines", () => {
    expect(formatSpecIssues([full], "job.yaml")).toBe("job.yaml:7:9: resources.gpus: expected an integer");
    expect(formatSpecIssues([full])).toBe("7:9: resources.gpus: expected an integer");
  });
  it("leaves out missing parts without stray separators", () => {
    expect(formatSpecIssues([{ ...full, line: null, column: null }], "job.yaml")).toBe("job.yaml: resources.gpus: expected an integer");
    expect(formatSpecIssues([{ ...full, column: null }], "job.yaml")).toBe("job.yaml:7: resources.gpus: expected an integer");
    expect(formatSpecIssues([{ ...full, path: "" }], "job.yaml")).toBe("job.yaml:7:9: expected an integer");
    expect(formatSpecIssues([{ path: "", line: null, column: null, message: "too big" }])).toBe("too big");
  });
  it("puts one issue per line", () => {
    expect(formatSpecIssues([full, full]).split("\n")).toHaveLength(2);
  });
});

describe("finishIssues", () => {
  it("sorts by position, unpositioned last, and drops duplicates", () => {
    const a: SpecIssue = { path: "a", line: 3, column: 1, message: "m" };
    const b: SpecIssue = { path: "b", line: 1, column: 5, message: "m" };
    const c: SpecIssue = { path: "c", line: null, column: null, message: "m" };
    const d: SpecIssue = { path: "d", line: 1, column: 2, message: "m" };
    expect(finishIssues([c, a, b, d, a])).toEqual([d, b, a, c]);
  });
  it("caps the list and says how many were left out", () => {
    const many = Array.from({ length: 80 }, (_, i): SpecIssue => ({ path: `k${i}`, line: i + 1, column: 1, message: "m" }));
    const out = finishIssues(many);
    expect(out).toHaveLength(MAX_ISSUES + 1);
    expect(out[MAX_ISSUES]?.message).toBe("30 more issues not shown; fix the ones above first");
  });
});
