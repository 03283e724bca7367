import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, createMemoryLogger, createNullLogger } from "./logger.js";

function sink() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, stream };
}

describe("createLogger", () => {
  it("writes structured JSON lines with name, level label, bound fields and message", () => {
    const { lines, stream } = sink();
    const log = createLogger({ name: "controller", destination: stream, level: "debug" });
    log.child({ jobId: "j1" }).info({ attempt: 2 }, "job started");
    log.debug("plain message");
    expect(lines[0]).toMatchObject({ name: "controller", level: "info", jobId: "j1", attempt: 2, msg: "job started" });
    expect(typeof lines[0]?.["time"]).toBe("string");
    expect(lines[1]).toMatchObject({ level: "debug", msg: "plain message" });
  });

  it("drops lines below the level and serializes errors", () => {
    const { lines, stream } = sink();
    const log = createLogger({ name: "x", destination: stream });
    log.debug("hidden");
    log.error({ err: new Error("kaput") }, "failed");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: "error", msg: "failed", err: { message: "kaput", type: "Error" } });
  });
});

describe("memory and null loggers", () => {
  it("memory logger records child fields", () => {
    const log = createMemoryLogger();
    log.child({ a: 1 }).child({ b: 2 }).warn({ c: 3 }, "hi");
    expect(log.records).toEqual([{ level: "warn", msg: "hi", fields: { a: 1, b: 2, c: 3 } }]);
  });

  it("null logger accepts everything", () => {
    const log = createNullLogger();
    log.child({}).error("x");
    expect(log.child({})).toBe(log);
  });
});
