import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash, randomBytes } from "node:crypto";
import { type S3Store, createFileStore, createS3Store } from "@gpuorch/storage";
import { S3RVER_CREDENTIALS, type S3rverProcess, startS3rver } from "@gpuorch/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { CHECKPOINT_MARKER, MANIFEST_NAME, checkpointKeyPrefix, deleteCheckpoint, downloadCheckpoint, scanCheckpoints, uploadCheckpoint } from "./checkpoints.js";

const JOB = "0197a0c0-0000-7000-8000-000000000001";
const sha = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");

describe("checkpoint contract over a real object store (file://)", () => {
  let dir: string;
  let local: string;
  let bucket: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "gpuorch-ckpt-"));
    local = join(dir, "ckpt");
    bucket = join(dir, "store");
    mkdirSync(bucket);
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function writeCheckpoint(step: number, files: Record<string, Buffer | string>, complete = true): void {
    const d = join(local, String(step));
    for (const [name, body] of Object.entries(files)) {
      mkdirSync(join(d, name, ".."), { recursive: true });
      writeFileSync(join(d, name), body);
    }
    if (complete) writeFileSync(join(d, CHECKPOINT_MARKER), "");
  }

  it("sees only complete checkpoints (marker present), in step order, with nested files", async () => {
    writeCheckpoint(200, { "model.pt": "b", "optim/state.pt": "c" });
    writeCheckpoint(100, { "model.pt": "a" });
    writeCheckpoint(300, { "model.pt": "partial" }, false);
    mkdirSync(join(local, "not-a-step"));
    const found = await scanCheckpoints(local);
    expect(found.map((c) => [c.step, c.files])).toEqual([
      [100, ["model.pt"]],
      [200, ["model.pt", "optim/state.pt"]],
    ]);
    expect(await scanCheckpoints(join(dir, "missing"))).toEqual([]);
  });

  it("uploads files then the manifest, and downloads the exact bytes back, verified", async () => {
    const model = randomBytes(3 * 1024 * 1024 + 17);
    writeCheckpoint(1200, { "model.pt": model, "optim/state.pt": "adam" });
    const [ckpt] = await scanCheckpoints(local);
    const progress: number[] = [];
    const store = createFileStore();
    const up = await uploadCheckpoint(store, bucket, ckpt!, { jobId: JOB, attempt: 2, now: new Date("2026-11-23T12:00:00Z") }, { onProgress: (d) => progress.push(d) });
    const prefix = checkpointKeyPrefix(bucket, JOB, 2, 1200);
    expect(up).toMatchObject({ step: 1200, manifestKey: prefix + MANIFEST_NAME, bytes: model.length + 4 });
    const manifestText = readFileSync(prefix + MANIFEST_NAME, "utf8");
    expect(up.sha256).toBe(sha(manifestText));
    expect(JSON.parse(manifestText)).toEqual({
      version: 1,
      jobId: JOB,
      attempt: 2,
      step: 1200,
      createdAt: "2026-11-23T12:00:00.000Z",
      files: [
        { path: "model.pt", bytes: model.length, sha256: sha(model) },
        { path: "optim/state.pt", bytes: 4, sha256: sha("adam") },
      ],
    });
    expect(progress.at(-1)).toBe(model.length + 4);

    const dest = join(dir, "resume");
    const got = await downloadCheckpoint(store, up.manifestKey, up.sha256, dest);
    expect(got).toEqual({ step: 1200, dir: dest, bytes: model.length + 4 });
    expect(readFileSync(join(dest, "model.pt")).equals(model)).toBe(true);
    expect(readFileSync(join(dest, "optim/state.pt"), "utf8")).toBe("adam");
    expect(existsSync(join(dest, CHECKPOINT_MARKER))).toBe(true);
    expect(existsSync(join(dest, MANIFEST_NAME))).toBe(false);
  });

  it("refuses a manifest that is not the recorded one, and a file changed behind its manifest; leaves nothing behind", async () => {
    writeCheckpoint(10, { "model.pt": "weights" });
    const store = createFileStore();
    const up = await uploadCheckpoint(store, bucket, (await scanCheckpoints(local))[0]!, { jobId: JOB, attempt: 1, now: new Date() });
    const dest = join(dir, "resume");
    await expect(downloadCheckpoint(store, up.manifestKey, "0".repeat(64), dest, { attempts: 1 })).rejects.toThrow(/failed verification|sha256/);
    expect(existsSync(dest)).toBe(false);

    // Same size, different bytes: only the checksum can tell.
    writeFileSync(checkpointKeyPrefix(bucket, JOB, 1, 10) + "model.pt", "WEIGHTS");
    await expect(downloadCheckpoint(store, up.manifestKey, up.sha256, dest, { attempts: 2, sleep: async () => {} })).rejects.toThrow(/failed verification|sha256/);
    expect(existsSync(dest)).toBe(false);
    expect(readdirSync(dir).filter((n) => n.startsWith("resume"))).toEqual([]);
  });

  it("keeps attempts apart: the same step of two attempts never shares an object", async () => {
    const store = createFileStore();
    writeCheckpoint(100, { "model.pt": "attempt one" });
    const a1 = await uploadCheckpoint(store, bucket, (await scanCheckpoints(local))[0]!, { jobId: JOB, attempt: 1, now: new Date() });
    writeCheckpoint(100, { "model.pt": "attempt two" });
    const a2 = await uploadCheckpoint(store, bucket, (await scanCheckpoints(local))[0]!, { jobId: JOB, attempt: 2, now: new Date() });
    expect(a1.manifestKey).not.toBe(a2.manifestKey);
    expect(readFileSync(checkpointKeyPrefix(bucket, JOB, 1, 100) + "model.pt", "utf8")).toBe("attempt one");
    expect(readFileSync(checkpointKeyPrefix(bucket, JOB, 2, 100) + "model.pt", "utf8")).toBe("attempt two");
  });

  it("deletes one checkpoint, manifest first, and refuses a key that is not a manifest", async () => {
    const store = createFileStore();
    writeCheckpoint(300, { "model.pt": "w", "optim/state.pt": "o" });
    const up = await uploadCheckpoint(store, bucket, (await scanCheckpoints(local))[0]!, { jobId: JOB, attempt: 1, now: new Date() });
    expect(await deleteCheckpoint(store, up.manifestKey)).toBe(3);
    const prefix = checkpointKeyPrefix(bucket, JOB, 1, 300);
    for (const f of [MANIFEST_NAME, "model.pt", "optim/state.pt"]) expect(existsSync(prefix + f)).toBe(false);
    expect(await deleteCheckpoint(store, up.manifestKey)).toBe(1); // already gone: not an error
    await expect(deleteCheckpoint(store, prefix + "model.pt")).rejects.toThrow(/not a checkpoint manifest/);
  });
});

describe("checkpoint contract over a real S3 API (s3rver)", () => {
  let dir: string;
  let server: S3rverProcess;
  let store: S3Store;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "gpuorch-ckpt-s3-"));
    server = await startS3rver({ directory: join(dir, "s3rver"), buckets: ["ckpts"] });
    store = createS3Store({ bucket: "ckpts", endpoint: server.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS, maxAttempts: 1 });
  });
  afterAll(async () => {
    store?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("uploads, resumes from the recorded manifest, and deletes a checkpoint", async () => {
    const local = join(dir, "ckpt");
    const bodies = new Map<number, Buffer>();
    for (const step of [5, 10, 15]) {
      const d = join(local, String(step));
      mkdirSync(d, { recursive: true });
      bodies.set(step, randomBytes(64 * 1024 + step));
      writeFileSync(join(d, "model.pt"), bodies.get(step)!);
      writeFileSync(join(d, CHECKPOINT_MARKER), "");
    }
    const ups = [];
    for (const c of await scanCheckpoints(local)) ups.push(await uploadCheckpoint(store, "runs", c, { jobId: JOB, attempt: 1, now: new Date() }));
    expect(ups.map((u) => u.uri)).toEqual([5, 10, 15].map((s) => `s3://ckpts/runs/${JOB}/attempt-1/step-${String(s).padStart(12, "0")}/${MANIFEST_NAME}`));

    const dest = join(dir, "resume");
    const latest = ups.at(-1)!;
    expect(await downloadCheckpoint(store, latest.manifestKey, latest.sha256, dest)).toMatchObject({ step: 15 });
    expect(readFileSync(join(dest, "model.pt")).equals(bodies.get(15)!)).toBe(true);

    expect(await deleteCheckpoint(store, ups[0]!.manifestKey)).toBe(2);
    expect(await store.head(ups[0]!.manifestKey)).toBeNull();
    expect(await store.head(`runs/${JOB}/attempt-1/step-000000000005/model.pt`)).toBeNull();
    expect(await store.head(ups[1]!.manifestKey)).not.toBeNull();
  });
});
