import { createHash, randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentArtifactReport, TaskCheckpointPolicy } from "@gpuorch/core";
import { createLogger } from "@gpuorch/runtime";
import { type ObjectStore, type S3Store, createFileStore, createS3Store } from "@gpuorch/storage";
import { S3RVER_CREDENTIALS, type S3rverProcess, startS3rver, waitFor } from "@gpuorch/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { CHECKPOINT_MARKER, MANIFEST_NAME, checkpointKeyPrefix } from "./checkpoints.js";
import { TaskCheckpointer, type TaskCheckpointerDeps, checkpointPaths } from "./task-checkpointer.js";

const JOB = "0197a0c0-0000-7000-8000-0000000000c1";
const TASK = "0197a0c0-0000-7000-8000-0000000000d1";
const sha = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");
const logger = createLogger({ name: "test", level: "silent" });

function policy(over: Partial<TaskCheckpointPolicy> = {}): TaskCheckpointPolicy {
  return { uri: "file:///unused", keep: 2, intervalSteps: null, intervalSeconds: null, trigger: "signal", ...over };
}

/** Writes `<localDir>/<step>/model.pt` (and the marker last, when complete). */
function writeCheckpoint(localDir: string, step: number, body: string = `weights@${step}`, complete = true): void {
  const d = join(localDir, String(step));
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, "model.pt"), body);
  if (complete) writeFileSync(join(d, CHECKPOINT_MARKER), "");
}

/** A store that fails the first `failures` putFile calls, then delegates. */
function flakyStore(inner: ObjectStore, failures: number): ObjectStore & { puts: number; failed: number } {
  const s = {
    puts: 0,
    failed: 0,
    scheme: inner.scheme,
    uriOf: (k: string) => inner.uriOf(k),
    putFile: async (...args: Parameters<ObjectStore["putFile"]>) => {
      s.puts++;
      if (s.failed < failures) {
        s.failed++;
        throw new Error("simulated network failure");
      }
      return inner.putFile(...args);
    },
    getFile: (...args: Parameters<ObjectStore["getFile"]>) => inner.getFile(...args),
    head: (...args: Parameters<ObjectStore["head"]>) => inner.head(...args),
    list: (...args: Parameters<ObjectStore["list"]>) => inner.list(...args),
    delete: (...args: Parameters<ObjectStore["delete"]>) => inner.delete(...args),
  };
  return s;
}

describe("TaskCheckpointer (file:// store)", () => {
  let dir: string;
  let localDir: string;
  let triggerFile: string;
  let baseKey: string;
  let reports: AgentArtifactReport[];
  let live: TaskCheckpointer[];
  let timers: ReturnType<typeof setInterval>[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "gpuorch-tckpt-"));
    ({ localDir, triggerFile } = checkpointPaths(join(dir, "attempt")));
    mkdirSync(localDir, { recursive: true });
    baseKey = join(dir, "store");
    mkdirSync(baseKey);
    reports = [];
    live = [];
    timers = [];
  });
  afterEach(() => {
    for (const t of timers) clearInterval(t);
    for (const c of live) c.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  function make(over: Partial<TaskCheckpointerDeps> = {}): TaskCheckpointer {
    const c = new TaskCheckpointer({
      policy: policy(),
      jobId: JOB,
      attempt: 3,
      taskId: TASK,
      nodeRank: 0,
      localDir,
      triggerFile,
      store: createFileStore(),
      baseKey,
      report: (r) => reports.push(r),
      logger,
      newId: randomUUID,
      pollMs: 25,
      transfer: { attempts: 1 },
      ...over,
    });
    live.push(c);
    return c;
  }

  const manifestPath = (step: number, attempt = 3): string => checkpointKeyPrefix(baseKey, JOB, attempt, step) + MANIFEST_NAME;

  /** A fake job: polls for the trigger file and runs `answer` once when it appears. */
  function fakeJob(answer: () => void): { answered: () => boolean } {
    let done = false;
    const t = setInterval(() => {
      if (done || !existsSync(triggerFile)) return;
      done = true;
      answer();
    }, 10);
    timers.push(t);
    return { answered: () => done };
  }

  it("never uploads a directory without COMPLETE", async () => {
    writeCheckpoint(localDir, 100, "half-written", false);
    const c = make();
    expect(await c.tick()).toBeNull();
    c.start();
    await new Promise((r) => setTimeout(r, 150));
    expect(reports).toEqual([]);
    expect(c.lastUploadedStep).toBeNull();
    expect(existsSync(checkpointKeyPrefix(baseKey, JOB, 3, 100))).toBe(false);

    // An older complete one is uploaded; the newer incomplete one is still ignored.
    writeCheckpoint(localDir, 50);
    await waitFor(() => reports.length === 1);
    expect(reports[0]!.step).toBe(50);
    expect(existsSync(checkpointKeyPrefix(baseKey, JOB, 3, 100))).toBe(false);

    // Once its marker appears it goes up.
    writeFileSync(join(localDir, "100", CHECKPOINT_MARKER), "");
    await waitFor(() => reports.length === 2);
    expect(reports[1]!.step).toBe(100);
  });

  it("uploads only the newest when several piled up, and reports it with the right fields", async () => {
    for (const s of [10, 20, 30]) writeCheckpoint(localDir, s);
    const c = make({ policy: policy({ keep: 5 }) });
    const r = await c.tick();
    expect(reports).toHaveLength(1);
    expect(r).toEqual(reports[0]);
    const manifest = readFileSync(manifestPath(30));
    expect(reports[0]).toEqual({
      artifactId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      taskId: TASK,
      jobId: JOB,
      attempt: 3,
      nodeRank: 0,
      type: "checkpoint",
      uri: expect.stringMatching(new RegExp(`^file://.*/step-000000000030/${MANIFEST_NAME}$`)),
      step: 30,
      bytes: Buffer.byteLength("weights@30"),
      sha256: sha(manifest),
      emergency: false,
    });
    expect(JSON.parse(manifest.toString("utf8"))).toMatchObject({ jobId: JOB, attempt: 3, step: 30, files: [{ path: "model.pt", sha256: sha("weights@30") }] });
    // Older ones were skipped, not uploaded.
    for (const s of [10, 20]) expect(existsSync(checkpointKeyPrefix(baseKey, JOB, 3, s))).toBe(false);
    expect(c.lastUploadedStep).toBe(30);

    // Nothing new: no second report, the same one is answered.
    expect(await c.tick()).toEqual(reports[0]);
    expect(reports).toHaveLength(1);
  });

  it("keeps `keep` complete local checkpoints once the newest is uploaded", async () => {
    for (const s of [1, 2, 3, 4, 5]) writeCheckpoint(localDir, s);
    writeCheckpoint(localDir, 6, "in progress", false);
    const c = make({ policy: policy({ keep: 2 }) });
    await c.tick();
    expect(readdirSync(localDir).sort((a, b) => Number(a) - Number(b))).toEqual(["4", "5", "6"]);

    writeCheckpoint(localDir, 7); // 6 was abandoned: it goes once 7 is safe
    await c.tick();
    expect(readdirSync(localDir).sort((a, b) => Number(a) - Number(b))).toEqual(["5", "7"]);
  });

  it("deletes incomplete directories older than the uploaded step (abandoned writes)", async () => {
    writeCheckpoint(localDir, 1, "abandoned", false);
    writeCheckpoint(localDir, 2);
    const c = make({ policy: policy({ keep: 1 }) });
    await c.tick();
    expect(readdirSync(localDir)).toEqual(["2"]);
  });

  it("keeps every local copy when the upload failed", async () => {
    for (const s of [1, 2, 3]) writeCheckpoint(localDir, s);
    const c = make({ policy: policy({ keep: 1 }), store: flakyStore(createFileStore(), 100) });
    await expect(c.tick()).rejects.toThrow(/simulated network failure/);
    expect(readdirSync(localDir).sort()).toEqual(["1", "2", "3"]);
    expect(reports).toEqual([]);
  });

  it("retries a failed upload at the next poll", async () => {
    writeCheckpoint(localDir, 42);
    const store = flakyStore(createFileStore(), 1);
    const c = make({ store });
    await expect(c.tick()).rejects.toThrow(/simulated network failure/);
    expect(reports).toEqual([]);
    expect(c.lastUploadedStep).toBeNull();

    c.start();
    await waitFor(() => reports.length === 1);
    expect(store.failed).toBe(1);
    expect(reports[0]).toMatchObject({ step: 42, emergency: false });
    expect(sha(readFileSync(manifestPath(42)))).toBe(reports[0]!.sha256);
    await new Promise((r) => setTimeout(r, 100));
    expect(reports).toHaveLength(1); // uploaded once, not again at every poll
  });

  it("requestNow: the job answers the trigger with a newer checkpoint → uploaded and reported as emergency", async () => {
    writeCheckpoint(localDir, 100);
    const c = make();
    await c.tick();
    expect(reports).toHaveLength(1);
    const signal = vi.fn(() => 1);
    c.setSignalJob(signal);
    const job = fakeJob(() => {
      expect(readFileSync(triggerFile, "utf8")).toBe("spot notice\n");
      writeCheckpoint(localDir, 150);
      rmSync(triggerFile);
    });

    const res = await c.requestNow("spot notice", 10_000);
    expect(job.answered()).toBe(true);
    expect(signal).toHaveBeenCalledTimes(1);
    if (!res.ok) throw new Error(`unexpected failure: ${res.message}`);
    expect(res.step).toBe(150);
    expect(res.step).toBeGreaterThan(100);
    expect(res.uploaded).toMatchObject({ step: 150, emergency: true, type: "checkpoint" });
    expect(reports).toHaveLength(2);
    expect(reports[1]).toEqual(res.uploaded);
    expect(reports[1]!.artifactId).not.toBe(reports[0]!.artifactId);
    expect(res.uploaded.sha256).toBe(sha(readFileSync(manifestPath(150))));
    expect(c.lastUploadedStep).toBe(150);
    expect(existsSync(triggerFile)).toBe(false);
  });

  it("requestNow: the job never answers → ok:false after the deadline, trigger file removed, nothing reported", async () => {
    writeCheckpoint(localDir, 100);
    const c = make();
    await c.tick();
    const started = Date.now();
    const res = await c.requestNow("spot notice", 500);
    const took = Date.now() - started;
    expect(res.ok).toBe(false);
    if (!res.ok) expect(res.message).toMatch(/no checkpoint within/);
    expect(took).toBeGreaterThanOrEqual(450);
    expect(took).toBeLessThan(5_000);
    expect(existsSync(triggerFile)).toBe(false);
    expect(reports.map((r) => r.emergency)).toEqual([false]);
  });

  it("requestNow: the job consumes the trigger without a newer checkpoint → the last one re-reported flagged, same artifactId", async () => {
    writeCheckpoint(localDir, 100);
    const c = make();
    const first = await c.tick();
    expect(first).toMatchObject({ step: 100, emergency: false });
    fakeJob(() => rmSync(triggerFile));

    const res = await c.requestNow("checkpoint-now", 10_000);
    if (!res.ok) throw new Error(`unexpected failure: ${res.message}`);
    expect(res.step).toBe(100);
    expect(reports).toHaveLength(2);
    expect(reports[1]).toEqual({ ...first, emergency: true });
    expect(reports[1]!.artifactId).toBe(first!.artifactId);
    expect(res.uploaded).toEqual(reports[1]);
    // Still uploaded once: the store holds one step.
    expect(readdirSync(join(baseKey, JOB, "attempt-3"))).toEqual(["step-000000000100"]);

    // Asked again: already flagged, not reported a third time.
    fakeJob(() => rmSync(triggerFile));
    const again = await c.requestNow("checkpoint-now", 10_000);
    expect(again.ok).toBe(true);
    expect(reports).toHaveLength(2);
  });

  it("requestNow: the job consumes the trigger and an older checkpoint was never uploaded → it is uploaded as emergency", async () => {
    writeCheckpoint(localDir, 70);
    const c = make();
    fakeJob(() => rmSync(triggerFile));
    const res = await c.requestNow("checkpoint-now", 10_000);
    if (!res.ok) throw new Error(`unexpected failure: ${res.message}`);
    expect(res.step).toBe(70);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ step: 70, emergency: true });
  });

  it("requestNow: the job consumes the trigger but has no checkpoint at all → ok:false at once", async () => {
    const c = make();
    fakeJob(() => rmSync(triggerFile));
    const started = Date.now();
    const res = await c.requestNow("checkpoint-now", 10_000);
    expect(res.ok).toBe(false);
    if (!res.ok) expect(res.message).toMatch(/written no checkpoint/);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(reports).toEqual([]);
  });

  it('trigger "file" never calls the signal function; "signal" does, once per request', async () => {
    for (const trigger of ["file", "signal"] as const) {
      rmSync(localDir, { recursive: true, force: true });
      mkdirSync(localDir, { recursive: true });
      reports.length = 0;
      const c = make({ policy: policy({ trigger }) });
      const signal = vi.fn(() => 2);
      c.setSignalJob(signal);
      let step = 500;
      fakeJob(() => {
        writeCheckpoint(localDir, ++step);
        rmSync(triggerFile);
      });
      const res = await c.requestNow("test", 10_000);
      expect(res).toMatchObject({ ok: true, step: 501 });
      expect(signal).toHaveBeenCalledTimes(trigger === "signal" ? 1 : 0);
      c.stop();
    }
  });

  it("finish() uploads a checkpoint written just before the end, then stops", async () => {
    const c = make({ pollMs: 60_000 });
    c.start();
    writeCheckpoint(localDir, 900);
    await c.finish(10_000);
    expect(reports).toHaveLength(1);
    expect(reports[0]).toMatchObject({ step: 900, emergency: false });
    expect(existsSync(manifestPath(900))).toBe(true);
    // Stopped: later checkpoints are not uploaded.
    writeCheckpoint(localDir, 901);
    expect(await c.tick()).toBeNull();
    c.start();
    await new Promise((r) => setTimeout(r, 100));
    expect(reports).toHaveLength(1);
  });

  it("finish() gives up on an upload that hangs past its timeout and aborts it", async () => {
    const inner = createFileStore();
    let aborted = false;
    const hanging: ObjectStore = {
      ...inner,
      scheme: inner.scheme,
      uriOf: (k) => inner.uriOf(k),
      putFile: (_k, _p, opts) =>
        new Promise((_, reject) => {
          opts?.signal?.addEventListener("abort", () => {
            aborted = true;
            reject(opts.signal?.reason);
          });
        }),
    };
    writeCheckpoint(localDir, 5);
    const c = make({ store: hanging });
    const started = Date.now();
    await c.finish(200);
    expect(Date.now() - started).toBeLessThan(5_000);
    await waitFor(() => aborted);
    expect(reports).toEqual([]);
  });
});

describe("TaskCheckpointer over a real S3 API (s3rver)", () => {
  let dir: string;
  let server: S3rverProcess;
  let store: S3Store;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "gpuorch-tckpt-s3-"));
    server = await startS3rver({ directory: join(dir, "s3rver"), buckets: ["ckpts"] });
    store = createS3Store({ bucket: "ckpts", endpoint: server.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS, maxAttempts: 1 });
  });
  afterAll(async () => {
    store?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("uploads the newest checkpoint, reports the manifest's s3:// URI and SHA-256, and answers requestNow", async () => {
    const { localDir, triggerFile } = checkpointPaths(join(dir, "attempt"));
    const reports: AgentArtifactReport[] = [];
    const c = new TaskCheckpointer({
      policy: policy({ keep: 1, uri: "s3://ckpts/runs" }),
      jobId: JOB,
      attempt: 1,
      taskId: TASK,
      nodeRank: 1,
      localDir,
      triggerFile,
      store,
      baseKey: "runs",
      report: (r) => reports.push(r),
      logger,
      newId: randomUUID,
      pollMs: 25,
      transfer: { attempts: 1 },
    });
    try {
      writeCheckpoint(localDir, 41, "old");
      writeCheckpoint(localDir, 42, "x".repeat(70_000));
      c.start();
      await waitFor(() => reports.length === 1, { timeoutMs: 20_000 });
      const key = `runs/${JOB}/attempt-1/step-000000000042/${MANIFEST_NAME}`;
      expect(reports[0]).toMatchObject({ type: "checkpoint", step: 42, bytes: 70_000, nodeRank: 1, uri: `s3://ckpts/${key}`, emergency: false });
      const got = join(dir, "manifest.json");
      await store.getFile(key, got);
      expect(sha(readFileSync(got))).toBe(reports[0]!.sha256);
      expect(await store.head(`runs/${JOB}/attempt-1/step-000000000041/${MANIFEST_NAME}`)).toBeNull();
      expect(readdirSync(localDir)).toEqual(["42"]);

      const t = setInterval(() => {
        if (!existsSync(triggerFile)) return;
        clearInterval(t);
        writeCheckpoint(localDir, 43, "emergency");
        rmSync(triggerFile);
      }, 10);
      const res = await c.requestNow("spot", 20_000).finally(() => clearInterval(t));
      expect(res).toMatchObject({ ok: true, step: 43, uploaded: { emergency: true, uri: `s3://ckpts/runs/${JOB}/attempt-1/step-000000000043/${MANIFEST_NAME}` } });
      expect(await store.head(`runs/${JOB}/attempt-1/step-000000000043/model.pt`)).toMatchObject({ bytes: 9, sha256: sha("emergency") });
    } finally {
      c.stop();
    }
  });
});
