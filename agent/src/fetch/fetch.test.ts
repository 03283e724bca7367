import { execFileSync, spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppError, isAppError } from "@gpuorch/core";
import { createMemoryLogger } from "@gpuorch/runtime";
import { FILE_CHECKSUM_SUFFIX, type ObjectStore, type S3Store, createFileStore, createS3Store, openObjectStore } from "@gpuorch/storage";
import { S3RVER_CREDENTIALS, type S3rverProcess, startS3rver } from "@gpuorch/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type FetchOptions, FETCH_CACHE_SUBDIR, fetchDataset, fetchEntrypoint } from "./index.js";

const sha = (b: Buffer | string): string => createHash("sha256").update(b).digest("hex");
const noSleep = { attempts: 3, sleep: async (): Promise<void> => {} };
const hasZip = spawnSync("zip", ["-v"]).status === 0 && spawnSync("unzip", ["-v"]).status === 0;

async function rejection(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (e) {
    if (!isAppError(e)) throw e;
    return e;
  }
  throw new Error("expected a rejection");
}

/** Cache entries (complete ones), ignoring the staging area. */
function entries(cacheDir: string): string[] {
  const root = join(cacheDir, FETCH_CACHE_SUBDIR);
  return existsSync(root) ? readdirSync(root).filter((n) => n !== ".staging") : [];
}

function staging(cacheDir: string): string[] {
  const d = join(cacheDir, FETCH_CACHE_SUBDIR, ".staging");
  return existsSync(d) ? readdirSync(d) : [];
}

describe("fetch from a real S3 API (s3rver)", () => {
  let dir: string;
  let server: S3rverProcess;
  let admin: S3Store;
  let cacheDir: string;
  let minio: string;
  const saved: Record<string, string | undefined> = {};

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "gpuorch-fetch-s3-"));
    server = await startS3rver({ directory: join(dir, "s3rver"), buckets: ["jobs"] });
    admin = createS3Store({ bucket: "jobs", endpoint: server.endpoint, forcePathStyle: true, credentials: S3RVER_CREDENTIALS, maxAttempts: 1 });
    minio = `minio://127.0.0.1:${server.port}/jobs`;
    // The fetcher opens its stores like the agent does: credentials from the standard chain.
    for (const k of ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"]) saved[k] = process.env[k];
    process.env.AWS_ACCESS_KEY_ID = S3RVER_CREDENTIALS.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = S3RVER_CREDENTIALS.secretAccessKey;
    process.env.AWS_REGION = "us-east-1";
  });
  afterAll(async () => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    admin?.close();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(() => {
    cacheDir = mkdtempSync(join(dir, "cache-"));
  });

  const opts = (extra: Partial<FetchOptions> = {}): FetchOptions => ({ cacheDir, maxBytes: 10 * 1024 * 1024, store: { s3Endpoint: server.endpoint }, retry: noSleep, ...extra });

  async function put(key: string, body: Buffer | string): Promise<void> {
    const p = join(dir, `upload-${randomBytes(4).toString("hex")}`);
    writeFileSync(p, body);
    await admin.putFile(key, p);
    rmSync(p);
  }

  /** Object downloads (GetObject) the server saw since the last clear; listings and heads excluded. */
  async function downloads(): Promise<string[]> {
    return (await server.requests()).filter((r) => r.startsWith("GET /jobs/") && !r.includes("list-type"));
  }

  it("fetches a single script object, executable, with its checksum", async () => {
    const script = "#!/bin/sh\necho hello from train\n";
    await put("code/train.sh", script);
    const progress: [number, number][] = [];
    const got = await fetchEntrypoint("s3://jobs/code/train.sh", opts({ field: "entrypoint.uri", onProgress: (d, t) => progress.push([d, t]) }));
    expect(got).toMatchObject({ bytes: script.length, files: 1, sha256: sha(script), cached: false });
    expect(got.path.startsWith(join(cacheDir, FETCH_CACHE_SUBDIR))).toBe(true);
    expect(got.path.endsWith("/train.sh")).toBe(true);
    expect(readFileSync(got.path, "utf8")).toBe(script);
    expect(statSync(got.path).mode & 0o111).not.toBe(0);
    expect(execFileSync(got.path, { encoding: "utf8" })).toBe("hello from train\n");
    expect(progress.at(-1)).toEqual([script.length, script.length]);
    expect(staging(cacheDir)).toEqual([]);
  });

  it("extracts a .tar.gz entrypoint (minio://) into a directory with its runnable files", async () => {
    const src = join(dir, "tarsrc");
    mkdirSync(join(src, "pkg"), { recursive: true });
    writeFileSync(join(src, "run.sh"), "#!/bin/sh\ncat \"$(dirname \"$0\")/pkg/msg.txt\"\n");
    chmodSync(join(src, "run.sh"), 0o755);
    writeFileSync(join(src, "pkg", "msg.txt"), "extracted ok\n");
    // Links that stay inside the tree, and a name with a space, are fine.
    execFileSync("ln", ["-s", "pkg/msg.txt", join(src, "my link")]);
    execFileSync("ln", [join(src, "pkg", "msg.txt"), join(src, "pkg", "hard.txt")]);
    const archive = join(dir, "code.tar.gz");
    execFileSync("tar", ["-czf", archive, "-C", src, "."]);
    await admin.putFile("code/bundle.tar.gz", archive);

    const got = await fetchEntrypoint(`${minio}/code/bundle.tar.gz`, opts({ field: "entrypoint.uri" }));
    expect(got).toMatchObject({ files: 4, bytes: readFileSync(join(src, "run.sh")).length + 2 * 13, sha256: sha(readFileSync(archive)), cached: false });
    expect(statSync(got.path).isDirectory()).toBe(true);
    expect(execFileSync(join(got.path, "run.sh"), { encoding: "utf8" })).toBe("extracted ok\n");
    expect(readFileSync(join(got.path, "my link"), "utf8")).toBe("extracted ok\n");
    expect(readFileSync(join(got.path, "pkg", "hard.txt"), "utf8")).toBe("extracted ok\n");
    // The archive itself is not kept in the cache entry.
    expect(readdirSync(join(got.path, "..")).sort()).toEqual(["content", "meta.json"]);

    // The same object as data is not extracted.
    const data = await fetchDataset(`${minio}/code/bundle.tar.gz`, opts());
    expect(readFileSync(data.path).equals(readFileSync(archive))).toBe(true);
  });

  it("fetches a prefix with nested keys into a directory, ignoring folder markers", async () => {
    const bodies: Record<string, Buffer> = { "a.txt": Buffer.from("alpha"), "sub/b.bin": randomBytes(70_000), "sub/deep/c.json": Buffer.from("{}") };
    for (const [k, b] of Object.entries(bodies)) await put(`datasets/v1/${k}`, b);
    await put("datasets/v1/empty/", "");
    await put("datasets/v10/other.txt", "not under the prefix");
    const got = await fetchDataset("s3://jobs/datasets/v1/", opts({ field: "data.dataset", concurrency: 2 }));
    const total = Object.values(bodies).reduce((a, b) => a + b.length, 0);
    expect(got).toMatchObject({ bytes: total, files: 3, sha256: null, cached: false });
    for (const [k, b] of Object.entries(bodies)) expect(readFileSync(join(got.path, k)).equals(b)).toBe(true);
    expect(statSync(join(got.path, "empty")).isDirectory()).toBe(true);
    expect(existsSync(join(got.path, "other.txt"))).toBe(false);
  });

  it("serves unchanged content from the cache without downloading, and downloads again when it changes", async () => {
    await put("data/shard.bin", randomBytes(4096));
    const first = await fetchDataset("s3://jobs/data/shard.bin", opts());
    expect(first.cached).toBe(false);

    await server.clearRequests();
    let calls = 0;
    const again = await fetchDataset("s3://jobs/data/shard.bin", opts({ onProgress: () => calls++ }));
    expect(again).toEqual({ ...first, cached: true });
    expect(calls).toBe(0);
    expect(await downloads()).toEqual([]);

    const changed = randomBytes(4096);
    await put("data/shard.bin", changed);
    await server.clearRequests();
    const third = await fetchDataset("s3://jobs/data/shard.bin", opts());
    expect(third.cached).toBe(false);
    expect(third.path).not.toBe(first.path);
    expect(third.sha256).toBe(sha(changed));
    expect(readFileSync(third.path).equals(changed)).toBe(true);
    expect(await downloads()).toHaveLength(1);
    // The older entry is left for whoever may still use it.
    expect(readFileSync(first.path).equals(changed)).toBe(false);
    expect(entries(cacheDir)).toHaveLength(2);

    // A prefix hits the cache too.
    await put("pre/x", "1");
    await put("pre/y/z", "2");
    expect((await fetchDataset("s3://jobs/pre/", opts())).cached).toBe(false);
    await server.clearRequests();
    expect((await fetchDataset("s3://jobs/pre/", opts())).cached).toBe(true);
    expect(await downloads()).toEqual([]);
  });

  it("shares one download between concurrent fetches of the same content", async () => {
    await put("data/shared.bin", randomBytes(256 * 1024));
    await server.clearRequests();
    const [a, b] = await Promise.all([fetchDataset("s3://jobs/data/shared.bin", opts()), fetchDataset("s3://jobs/data/shared.bin", opts())]);
    expect(a.path).toBe(b.path);
    expect(await downloads()).toHaveLength(1);
  });

  it("refuses content over maxBytes before downloading anything", async () => {
    await put("big/one.bin", randomBytes(3000));
    await put("big/two.bin", randomBytes(3000));
    await server.clearRequests();
    const e = await rejection(fetchDataset("s3://jobs/big/", opts({ maxBytes: 5000, field: "data.dataset" })));
    expect(e.code).toBe("RESOURCE_EXHAUSTED");
    expect(e.reason).toBe("fetch_too_large");
    expect(e.message).toContain("data.dataset");
    expect(e.message).toContain("s3://jobs/big/");
    expect(e.message).toContain("6000");
    expect(e.message).toContain("5000");
    expect(e.fields.map((f) => f.field)).toEqual(["data.dataset"]);
    const single = await rejection(fetchEntrypoint("s3://jobs/big/one.bin", opts({ maxBytes: 2999, field: "entrypoint.uri" })));
    expect([single.code, single.reason]).toEqual(["RESOURCE_EXHAUSTED", "fetch_too_large"]);
    expect(await downloads()).toEqual([]);
    expect(entries(cacheDir)).toEqual([]);
  });

  it("reports a missing object, prefix or bucket as NOT_FOUND naming the field", async () => {
    for (const uri of ["s3://jobs/nope/train.py", "s3://jobs/nope/", "s3://no-such-bucket/x.py"]) {
      const e = await rejection(fetchEntrypoint(uri, opts({ field: "entrypoint.uri" })));
      expect([e.code, e.reason]).toEqual(["NOT_FOUND", "fetch_not_found"]);
      expect(e.message).toMatch(/^entrypoint\.uri: /);
      expect(e.message).toContain(uri.replace(/\/x\.py$/, ""));
      expect(e.fields[0]?.field).toBe("entrypoint.uri");
    }
    expect(entries(cacheDir)).toEqual([]);
  });

  it("refuses archives with '..' or absolute entries, writing nothing", async () => {
    const work = join(dir, "evil-src");
    mkdirSync(work, { recursive: true });
    writeFileSync(join(work, "evil"), "pwned");
    const climbing = join(dir, "climb.tgz");
    execFileSync("tar", ["-czf", climbing, "-C", work, "-P", "--transform", "s,^,../,", "evil"]);
    expect(execFileSync("tar", ["-tzf", climbing], { encoding: "utf8" })).toContain("../evil");
    await admin.putFile("code/climb.tgz", climbing);
    const absolute = join(dir, "abs.tar");
    execFileSync("tar", ["-cf", absolute, "-P", join(work, "evil")]);
    await admin.putFile("code/abs.tar", absolute);
    const linked = join(dir, "link.tgz");
    const linkSrc = join(dir, "link-src");
    mkdirSync(linkSrc);
    execFileSync("ln", ["-s", "/etc", join(linkSrc, "etc")]);
    execFileSync("tar", ["-czf", linked, "-C", linkSrc, "."]);
    await admin.putFile("code/link.tgz", linked);

    for (const name of ["climb.tgz", "abs.tar", "link.tgz"]) {
      const e = await rejection(fetchEntrypoint(`s3://jobs/code/${name}`, opts({ field: "entrypoint.uri" })));
      expect([e.code, e.reason]).toEqual(["INVALID_ARGUMENT", "fetch_unsafe_archive"]);
      expect(e.message).toContain("entrypoint.uri");
    }
    expect(existsSync(join(cacheDir, FETCH_CACHE_SUBDIR, "evil"))).toBe(false);
    expect(existsSync(join(cacheDir, FETCH_CACHE_SUBDIR, ".staging", "evil"))).toBe(false);
    expect(entries(cacheDir)).toEqual([]);
    expect(staging(cacheDir)).toEqual([]);
  });

  it("refuses an archive that would extract to more than 4× maxBytes", async () => {
    const src = join(dir, "bomb-src");
    mkdirSync(src, { recursive: true });
    writeFileSync(join(src, "zeros"), Buffer.alloc(200_000));
    const bomb = join(dir, "bomb.tgz");
    execFileSync("tar", ["-czf", bomb, "-C", src, "zeros"]);
    expect(statSync(bomb).size).toBeLessThan(10_000);
    await admin.putFile("code/bomb.tgz", bomb);
    const e = await rejection(fetchEntrypoint("s3://jobs/code/bomb.tgz", opts({ maxBytes: 40_000 })));
    expect([e.code, e.reason]).toEqual(["RESOURCE_EXHAUSTED", "fetch_too_large"]);
    expect(e.message).toContain("160000");
    expect(entries(cacheDir)).toEqual([]);
  });

  it.skipIf(!hasZip)("extracts a .zip entrypoint with unzip", async () => {
    const src = join(dir, "zipsrc");
    mkdirSync(join(src, "lib"), { recursive: true });
    writeFileSync(join(src, "main.py"), "print('zip')\n");
    writeFileSync(join(src, "lib", "util.py"), "X = 1\n");
    const zip = join(dir, "code.zip");
    execFileSync("zip", ["-qr", zip, "."], { cwd: src });
    await admin.putFile("code/app.zip", zip);
    const got = await fetchEntrypoint("s3://jobs/code/app.zip", opts());
    expect(got).toMatchObject({ files: 2, cached: false });
    expect(readFileSync(join(got.path, "lib", "util.py"), "utf8")).toBe("X = 1\n");
  });
});

describe("fetch from file:// and error handling", () => {
  let dir: string;
  let cacheDir: string;
  let src: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "gpuorch-fetch-file-"));
    cacheDir = join(dir, "cache");
    src = join(dir, "store");
    mkdirSync(src);
  });
  // Each test has its own directory: remove each, not only the last.
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const opts = (extra: Partial<FetchOptions> = {}): FetchOptions => ({ cacheDir, maxBytes: 1024 * 1024, retry: noSleep, ...extra });

  async function put(path: string, body: string | Buffer): Promise<void> {
    const tmp = join(dir, `tmp-${randomBytes(4).toString("hex")}`);
    writeFileSync(tmp, body);
    await createFileStore().putFile(path, tmp);
    rmSync(tmp);
  }

  it("copies a file:// directory (with or without the trailing '/') into the cache, a snapshot the source cannot change", async () => {
    await put(join(src, "ds", "a.txt"), "a");
    await put(join(src, "ds", "b", "c.txt"), "cc");
    writeFileSync(join(src, "ds", "plain.txt"), "written without the store"); // no checksum sidecar: size-checked only
    const got = await fetchDataset(`file://${src}/ds/`, opts());
    expect(got).toMatchObject({ files: 3, bytes: 3 + 25, cached: false });
    expect(got.path.startsWith(cacheDir)).toBe(true);
    expect(readFileSync(join(got.path, "b", "c.txt"), "utf8")).toBe("cc");
    expect(existsSync(join(got.path, `a.txt${FILE_CHECKSUM_SUFFIX}`))).toBe(false);

    const noSlash = await fetchDataset(`file://${src}/ds`, opts());
    expect(readFileSync(join(noSlash.path, "a.txt"), "utf8")).toBe("a");
    expect((await fetchDataset(`file://${src}/ds/`, opts())).cached).toBe(true);

    await put(join(src, "ds", "a.txt"), "A2");
    const changed = await fetchDataset(`file://${src}/ds/`, opts());
    expect(changed.cached).toBe(false);
    expect(readFileSync(join(changed.path, "a.txt"), "utf8")).toBe("A2");
    expect(readFileSync(join(got.path, "a.txt"), "utf8")).toBe("a");
  });

  it("refuses a corrupted object (recorded checksum does not match) and caches nothing", async () => {
    await put(join(src, "model.bin"), "good weights");
    // Tamper the recorded checksum while the sidecar still describes the file.
    const sidecar = join(src, `model.bin${FILE_CHECKSUM_SUFFIX}`);
    const meta = JSON.parse(readFileSync(sidecar, "utf8")) as { sha256: string };
    writeFileSync(sidecar, JSON.stringify({ ...meta, sha256: sha("other weights") }));
    expect((await createFileStore().head(join(src, "model.bin")))?.sha256).toBe(sha("other weights"));

    const logger = createMemoryLogger();
    const e = await rejection(fetchDataset(`file://${src}/model.bin`, opts({ field: "data.dataset", logger })));
    expect(e.code).toBe("ABORTED");
    expect(e.message).toMatch(/data\.dataset: .*failed verification/);
    expect(logger.records.filter((r) => r.level === "warn")).toHaveLength(2); // retried: a torn transfer looks the same
    expect(entries(cacheDir)).toEqual([]);
    expect(staging(cacheDir)).toEqual([]);
  });

  it("refuses prefix keys that would escape the target directory", async () => {
    await put(join(src, "ds", "ok.txt"), "ok");
    const file = createFileStore();
    const evil: ObjectStore = {
      ...file,
      async *list(prefix, o) {
        yield* file.list(prefix, o);
        yield { key: `${prefix}../escape.txt`, bytes: 1, sha256: null, updatedAt: null };
      },
    };
    const e = await rejection(fetchDataset(`file://${src}/ds/`, opts({ field: "data.dataset", openStore: (uri, o, f) => ({ ...openObjectStore(uri, o, f), store: evil }) })));
    expect([e.code, e.reason]).toEqual(["INVALID_ARGUMENT", "fetch_unsafe_key"]);
    expect(e.message).toContain("data.dataset");
    expect(entries(cacheDir)).toEqual([]);
  });

  it("retries transient failures with backoff but not permanent ones", async () => {
    await put(join(src, "x.bin"), "payload");
    const file = createFileStore();
    let gets = 0;
    const flaky: ObjectStore = {
      ...file,
      async getFile(key, path, o) {
        gets++;
        if (gets === 1) throw new AppError("UNAVAILABLE", "store briefly unreachable", { reason: "storage_unavailable" });
        return file.getFile(key, path, o);
      },
    };
    const delays: number[] = [];
    const got = await fetchDataset(`file://${src}/x.bin`, opts({ openStore: (u, o, f) => ({ ...openObjectStore(u, o, f), store: flaky }), retry: { attempts: 3, sleep: async (ms) => void delays.push(ms) } }));
    expect(readFileSync(got.path, "utf8")).toBe("payload");
    expect(gets).toBe(2);
    expect(delays).toHaveLength(1);

    let denied = 0;
    const locked: ObjectStore = {
      ...file,
      async head() {
        denied++;
        throw new AppError("PERMISSION_DENIED", "access denied", { reason: "storage_access_denied" });
      },
    };
    const e = await rejection(fetchDataset(`file://${src}/y.bin`, opts({ openStore: (u, o, f) => ({ ...openObjectStore(u, o, f), store: locked }) })));
    expect(e.code).toBe("PERMISSION_DENIED");
    expect(denied).toBe(1);
  });

  it("never takes a half-built entry for a complete one, and clears staging left by dead processes", async () => {
    await put(join(src, "w.bin"), "weights");
    // A crash between download and publish leaves only a staging directory (no pid 999999999 runs: Linux caps pids at 2^22).
    const leftover = join(cacheDir, FETCH_CACHE_SUBDIR, ".staging", "deadbeef-cafe.999999999.0a1b2c3d");
    mkdirSync(join(leftover, "content"), { recursive: true });
    writeFileSync(join(leftover, "content", "w.bin"), "half");
    const first = await fetchDataset(`file://${src}/w.bin`, opts());
    expect(first.cached).toBe(false);
    expect(staging(cacheDir)).toEqual([]);
    // An entry damaged from outside (its record gone) is rebuilt, not trusted.
    rmSync(join(first.path, "..", "..", "meta.json"));
    const again = await fetchDataset(`file://${src}/w.bin`, opts());
    expect(again).toMatchObject({ path: first.path, cached: false });
    expect(readFileSync(again.path, "utf8")).toBe("weights");
    expect(staging(cacheDir)).toEqual([]);
    expect((await fetchDataset(`file://${src}/w.bin`, opts())).cached).toBe(true);
  });

  it("shares one download; a caller that gives up does not cancel it for the others", async () => {
    await put(join(src, "s.bin"), "shared bytes");
    const file = createFileStore();
    let gets = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const slow: ObjectStore = {
      ...file,
      async getFile(key, path, o) {
        gets++;
        await gate;
        return file.getFile(key, path, o);
      },
    };
    const openStore: FetchOptions["openStore"] = (u, o, f) => ({ ...openObjectStore(u, o, f), store: slow });
    const quitter = new AbortController();
    const a = fetchDataset(`file://${src}/s.bin`, opts({ openStore, signal: quitter.signal }));
    const b = fetchDataset(`file://${src}/s.bin`, opts({ openStore }));
    await new Promise((r) => setTimeout(r, 50));
    quitter.abort();
    await expect(a).rejects.toThrow(/abort/i);
    release();
    const got = await b;
    expect(readFileSync(got.path, "utf8")).toBe("shared bytes");
    expect(gets).toBe(1);
  });

  it("refuses plain local paths and bad URIs with INVALID_ARGUMENT", async () => {
    for (const uri of [join(src, "x.py"), "relative/x.py", "ftp://host/x.py"]) {
      const e = await rejection(fetchEntrypoint(uri, opts({ field: "entrypoint.uri" })));
      expect(e.code).toBe("INVALID_ARGUMENT");
      expect(e.fields[0]?.field).toBe("entrypoint.uri");
    }
  });

  it("stops at once when aborted, leaving nothing behind", async () => {
    await put(join(src, "x.bin"), "payload");
    const ac = new AbortController();
    ac.abort();
    await expect(fetchDataset(`file://${src}/x.bin`, opts({ signal: ac.signal }))).rejects.toThrow(/abort/i);
    expect(entries(cacheDir)).toEqual([]);
    expect(staging(cacheDir)).toEqual([]);
  });
});
