import { describe, expect, it } from "vitest";
import { LineSplitter, ProgressTracker, parseProgressLine, splitRankPrefix } from "./output-parser.js";

const bytes = (s: string) => new TextEncoder().encode(s);

describe("LineSplitter", () => {
  it("joins lines split across chunks, drops CR, and keeps an unterminated last line for end()", () => {
    const s = new LineSplitter();
    expect(s.push(bytes("ab"))).toEqual([]);
    expect(s.push(bytes("c\r\nde\n\nf"))).toEqual(["abc", "de", ""]);
    expect(s.end()).toEqual(["f"]);
    expect(s.end()).toEqual([]);
  });

  it("cuts a line longer than the bound instead of buffering it forever", () => {
    const s = new LineSplitter(4);
    expect(s.push(bytes("abcdefghij"))).toEqual(["abcd", "efgh"]);
    expect(s.push(bytes("k\n"))).toEqual(["ijk"]);
  });

  it("does not break a multi-byte character split between chunks", () => {
    const s = new LineSplitter();
    const euro = bytes("€\n");
    expect(s.push(euro.subarray(0, 1))).toEqual([]);
    expect(s.push(euro.subarray(1))).toEqual(["€"]);
  });
});

describe("splitRankPrefix", () => {
  it("reads torchrun's [defaultN]: and [rankN]: tags", () => {
    expect(splitRankPrefix("[default0]:hello")).toEqual({ rank: 0, text: "hello" });
    expect(splitRankPrefix("[rank12]:GPUORCH_STEP=3")).toEqual({ rank: 12, text: "GPUORCH_STEP=3" });
    expect(splitRankPrefix("[other0]:x")).toEqual({ text: "[other0]:x" });
    expect(splitRankPrefix("plain")).toEqual({ text: "plain" });
  });
});

describe("parseProgressLine", () => {
  it("parses steps and metrics, prefixed or not", () => {
    expect(parseProgressLine("GPUORCH_STEP=42")).toEqual({ kind: "step", step: 42 });
    expect(parseProgressLine("[default1]:GPUORCH_STEP=7 ")).toEqual({ kind: "step", step: 7 });
    expect(parseProgressLine("GPUORCH_METRIC loss=0.25")).toEqual({ kind: "metric", name: "loss", value: 0.25 });
    expect(parseProgressLine("[rank0]:GPUORCH_METRIC val/acc=1e-3")).toEqual({ kind: "metric", name: "val/acc", value: 0.001 });
  });

  it("ignores anything else, including non-numbers", () => {
    for (const line of ["", "step 3", "GPUORCH_STEP=", "GPUORCH_STEP=-1", "GPUORCH_STEP=1.5", "GPUORCH_METRIC loss=nan", "GPUORCH_METRIC loss", "x GPUORCH_STEP=1"]) {
      expect(parseProgressLine(line)).toBeUndefined();
    }
  });
});

describe("ProgressTracker", () => {
  it("keeps the highest step and the latest metric values, and says when something changed", () => {
    const t = new ProgressTracker();
    expect(t.apply("GPUORCH_STEP=2")).toBe(true);
    expect(t.apply("[default1]:GPUORCH_STEP=2")).toBe(false);
    expect(t.apply("GPUORCH_STEP=1")).toBe(false);
    expect(t.apply("GPUORCH_METRIC loss=1.5")).toBe(true);
    expect(t.apply("GPUORCH_METRIC loss=1.5")).toBe(false);
    expect(t.apply("GPUORCH_METRIC loss=1.25")).toBe(true);
    expect(t.apply("hello")).toBe(false);
    expect(t.step).toBe(2);
    expect(t.metrics).toEqual({ loss: 1.25 });
  });
});
