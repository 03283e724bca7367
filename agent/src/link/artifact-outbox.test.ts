import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentArtifactReport } from "@gpuorch/core";
import { createLogger } from "@gpuorch/runtime";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ArtifactOutbox } from "./artifact-outbox.js";

const logger = createLogger({ name: "test", level: "silent" });

function report(step: number, over: Partial<AgentArtifactReport> = {}): AgentArtifactReport {
  return {
    artifactId: randomUUID(),
    taskId: "0197a0c0-0000-7000-8000-0000000000d1",
    jobId: "0197a0c0-0000-7000-8000-0000000000c1",
    attempt: 2,
    nodeRank: 0,
    type: "checkpoint",
    uri: `s3://b/runs/job/attempt-2/step-${String(step).padStart(12, "0")}/gpuorch-manifest.json`,
    step,
    bytes: 1000 + step,
    sha256: "a".repeat(64),
    emergency: false,
    ...over,
  };
}

describe("ArtifactOutbox", () => {
  let dir: string;
  let file: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "gpuorch-outbox-"));
    file = join(dir, "work", "artifact-outbox.json");
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const saved = (): AgentArtifactReport[] => JSON.parse(readFileSync(file, "utf8")) as AgentArtifactReport[];

  it("sends a report at once and keeps it (on disk too) until acked", () => {
    const send = vi.fn(() => true);
    const box = new ArtifactOutbox({ file, send, logger });
    const r = report(100);
    box.add(r);
    expect(send).toHaveBeenCalledExactlyOnceWith(r);
    expect(box.size).toBe(1);
    expect(saved()).toEqual([r]);

    box.ack(r.artifactId, true, "");
    expect(box.size).toBe(0);
    expect(saved()).toEqual([]);
    box.resendAll();
    expect(send).toHaveBeenCalledTimes(1);
  });

  it("keeps a report it could not send, and resends everything unacked after a reconnect", () => {
    let connected = false;
    const sent: AgentArtifactReport[] = [];
    const box = new ArtifactOutbox({ file, send: (r) => (connected ? (sent.push(r), true) : false), logger });
    const a = report(1);
    const b = report(2);
    box.add(a);
    box.add(b);
    expect(sent).toEqual([]);
    expect(box.size).toBe(2);
    expect(saved()).toEqual([a, b]);

    connected = true;
    box.resendAll();
    expect(sent).toEqual([a, b]);
    expect(box.size).toBe(2); // sent is not acked

    box.ack(a.artifactId, true, "");
    sent.length = 0;
    box.resendAll();
    expect(sent).toEqual([b]);
  });

  it("stops a resend at the first report the link refuses (disconnected mid-way)", () => {
    let budget = 1;
    const send = vi.fn(() => budget-- > 0);
    const box = new ArtifactOutbox({ file, send: () => false, logger });
    for (const s of [1, 2, 3]) box.add(report(s));
    const again = new ArtifactOutbox({ file, send, logger });
    again.resendAll();
    expect(send).toHaveBeenCalledTimes(2);
    expect(again.size).toBe(3);
  });

  it("replaces a report resent under the same id (the emergency re-flag) instead of queueing it twice", () => {
    const sent: AgentArtifactReport[] = [];
    const box = new ArtifactOutbox({ file, send: (r) => (sent.push(r), true), logger });
    const r = report(7);
    box.add(r);
    box.add({ ...r, emergency: true });
    expect(box.size).toBe(1);
    expect(saved()).toEqual([{ ...r, emergency: true }]);
    sent.length = 0;
    box.resendAll();
    expect(sent).toEqual([{ ...r, emergency: true }]);
  });

  it("a refused report is dropped and handed to onRefused; an accepted one is not", () => {
    const onRefused = vi.fn();
    const box = new ArtifactOutbox({ file, send: () => true, logger, onRefused });
    const ok = report(1);
    const stale = report(2, { attempt: 1 });
    box.add(ok);
    box.add(stale);
    box.ack(ok.artifactId, true, "");
    expect(onRefused).not.toHaveBeenCalled();
    box.ack(stale.artifactId, false, "attempt 1 is over");
    expect(onRefused).toHaveBeenCalledExactlyOnceWith(stale, "attempt 1 is over");
    expect(box.size).toBe(0);
    expect(saved()).toEqual([]);

    // An ack for an unknown (or already acked) id is ignored.
    box.ack(stale.artifactId, false, "again");
    box.ack(randomUUID(), false, "unknown");
    expect(onRefused).toHaveBeenCalledTimes(1);
  });

  it("survives a restart: a new instance reads the file and resends what was not acked", () => {
    const first = new ArtifactOutbox({ file, send: () => true, logger });
    const a = report(10);
    const b = report(20, { type: "log", step: null, uri: "s3://b/runs/job/attempt-2/logs/node-0.log" });
    const c = report(30);
    first.add(a);
    first.add(b);
    first.add(c);
    first.ack(a.artifactId, true, "");

    const sent: AgentArtifactReport[] = [];
    const second = new ArtifactOutbox({ file, send: (r) => (sent.push(r), true), logger });
    expect(second.size).toBe(2);
    expect(sent).toEqual([]); // nothing is sent before the connect
    second.resendAll();
    expect(sent).toEqual([b, c]);
    second.ack(b.artifactId, true, "");

    const third = new ArtifactOutbox({ file, send: () => true, logger });
    expect(third.size).toBe(1);
    const resent: AgentArtifactReport[] = [];
    new ArtifactOutbox({ file, send: (r) => (resent.push(r), true), logger }).resendAll();
    expect(resent).toEqual([c]);
    expect(existsSync(`${file}.tmp`)).toBe(false);
  });

  it("tolerates a missing, empty, truncated or garbage file: starts empty and rewrites it on the next add", () => {
    for (const body of [null, "", "[{\"artifactId\":\"x\"", "\u0000\u0001garbage", "{\"not\":\"a list\"}"]) {
      rmSync(file, { force: true });
      if (body !== null) {
        rmSync(join(dir, "work"), { recursive: true, force: true });
        new ArtifactOutbox({ file, send: () => true, logger }).add(report(0)); // creates the directory
        writeFileSync(file, body);
      }
      const send = vi.fn(() => true);
      const box = new ArtifactOutbox({ file, send, logger });
      expect(box.size).toBe(0);
      box.resendAll();
      expect(send).not.toHaveBeenCalled();
      const r = report(5);
      box.add(r);
      expect(saved()).toEqual([r]);
    }
  });
});
