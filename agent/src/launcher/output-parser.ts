/**
 * Pure parsing of a task's output: splitting chunks into lines, the rank tag
 * torchrun puts in front of each line, and the progress contract
 * (`GPUORCH_STEP=<n>`, `GPUORCH_METRIC name=value`).
 */

/** Default bound on one line: a progress bar redrawn with `\r` must not grow memory forever. */
export const MAX_LINE_CHARS = 64 * 1024;

/** Splits a byte stream into lines; a line split across chunks is joined, an overlong one is cut. */
export class LineSplitter {
  private rest = "";
  private readonly decoder = new TextDecoder("utf-8");

  constructor(private readonly maxLineChars = MAX_LINE_CHARS) {}

  /** The complete lines in `chunk` (without their `\n` or `\r\n`). */
  push(chunk: Uint8Array): string[] {
    const text = this.rest + this.decoder.decode(chunk, { stream: true });
    const parts = text.split("\n");
    this.rest = parts.pop() ?? "";
    const lines = parts.map(stripCr);
    while (this.rest.length > this.maxLineChars) {
      lines.push(this.rest.slice(0, this.maxLineChars));
      this.rest = this.rest.slice(this.maxLineChars);
    }
    return lines;
  }

  /** The unterminated last line, if any, once the stream has ended. */
  end(): string[] {
    const text = this.rest + this.decoder.decode();
    this.rest = "";
    return text === "" ? [] : [stripCr(text)];
  }
}

const stripCr = (line: string): string => (line.endsWith("\r") ? line.slice(0, -1) : line);

// torchrun --tee (torch 1.13) writes `[default0]:`; newer torch uses `[rank0]:`.
const RANK_PREFIX = /^\[(?:default|rank)(\d+)\]:/;

/** The local rank tag of a torchrun line, and the line without it. */
export function splitRankPrefix(line: string): { rank?: number; text: string } {
  const m = RANK_PREFIX.exec(line);
  if (!m) return { text: line };
  return { rank: Number(m[1]), text: line.slice(m[0].length) };
}

export type ProgressLine = { kind: "step"; step: number } | { kind: "metric"; name: string; value: number };

const STEP_LINE = /^\s*GPUORCH_STEP=(\d+)\s*$/;
const METRIC_LINE = /^\s*GPUORCH_METRIC\s+([A-Za-z_][\w./-]*)=(\S+)\s*$/;

/** A progress line, with or without a rank prefix; undefined for anything else. */
export function parseProgressLine(line: string): ProgressLine | undefined {
  const { text } = splitRankPrefix(line);
  const step = STEP_LINE.exec(text);
  if (step) {
    const n = Number(step[1]);
    return Number.isSafeInteger(n) ? { kind: "step", step: n } : undefined;
  }
  const metric = METRIC_LINE.exec(text);
  if (metric) {
    const value = Number(metric[2]);
    return Number.isFinite(value) ? { kind: "metric", name: metric[1] ?? "", value } : undefined;
  }
  return undefined;
}

/**
 * The task's progress so far: the highest step any rank reported (ranks of
 * one job print the same steps, and a restarted rank must not move it back)
 * and the latest value of each metric.
 */
export class ProgressTracker {
  private stepValue: number | undefined;
  private readonly metricValues: Record<string, number> = {};

  get step(): number | undefined {
    return this.stepValue;
  }

  get metrics(): Record<string, number> {
    return { ...this.metricValues };
  }

  /** Applies one line; true when the progress changed. */
  apply(line: string): boolean {
    const p = parseProgressLine(line);
    if (p === undefined) return false;
    if (p.kind === "step") {
      if (this.stepValue !== undefined && p.step <= this.stepValue) return false;
      this.stepValue = p.step;
      return true;
    }
    if (this.metricValues[p.name] === p.value) return false;
    this.metricValues[p.name] = p.value;
    return true;
  }
}
