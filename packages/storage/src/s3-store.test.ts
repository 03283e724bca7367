import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { AppError } from "@gpuorch/core";
import { assertNoLeftoverProcesses, freePort, waitFor } from "@gpuorch/testing";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createMinioStore, createS3Store, type S3Store, type S3StoreOptions } from "./s3-store.js";
import { S3RVER_CREDENTIALS as credentials, startS3rver, type S3rverProcess } from "@gpuorch/testing";
import { SHA256_METADATA_KEY } from "./types.js";
import { parseObjectUri } from "./uri.js";
import { hashFile } from "./verify.js";
import { collect, rejection } from "./store.test-util.js";

/*
 * Against a real S3 API: s3rver on 127.0.0.1, port 0, in a temporary
 * directory, run as a child process (see packages/testing/src/s3rver.ts for why). What
 * s3rver 3.7 lacks, and how the tests live with it:
 * - on Node >= 17 a truncated ListObjectsV2 answers 500 (its continuation
 *   tokens use DES, gone from OpenSSL 3's default provider): the child runs
 *   with --openssl-legacy-provider;
 * - it stores `Content-Encoding: aws-chunked` bodies verbatim (chunk
 *   framing and all): the store never streams a body with SDK-computed
 *   trailing checksums (single puts send a buffer plus x-amz-checksum-sha256,
 *   multipart parts are buffers), so this never bites;
 * - it ignores x-amz-checksum-* headers (no server-side verification);
 * - AbortMultipartUpload is not implemented (405 MethodNotAllowed): the test
 *   checks that the store sends it, not that parts are gone;
 * - HEAD of a key in a missing bucket is a bare 404, as on S3;
 * - it lists in directory-walk order, not byte order ("a/x" before "a-b"),
 *   and pages with start-after, so a paged listing can skip keys where the
 *   two orders differ: the listing test uses keys where they agree;
 * - DeleteObjects deletes concurrently and each delete removes directories
 *   it left empty, so two deletes that empty the same directory race and
 *   one answers 500: the delete test keeps a sentinel object beside them.
 */

const BUCKET = "ckpt";
const MIB = 1024 * 1024;

let dir: string;
let server: S3rverProcess;
let endpoint: string;
let raw: S3Client;
const stores: S3Store[] = [];

function s3(opts: Partial<S3StoreOptions> = {}): S3Store {
  const store = createS3Store({ bucket: BUCKET, endpoint, forcePathStyle: true, credentials, maxAttempts: 1, ...opts });
  stores.push(store);
  return store;
}

async function source(name: string, bytes: number): Promise<string> {
  const path = join(dir, "src", name);
  await mkdir(join(dir, "src"), { recursive: true });
  await writeFile(path, randomBytes(bytes));
  return path;
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  return (await readFile(a)).equals(await readFile(b));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gpuorch-s3-store-"));
  server = await startS3rver({ directory: join(dir, "s3rver"), buckets: [BUCKET] });
  endpoint = server.endpoint;
  raw = new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true, credentials });
});

afterAll(async () => {
  for (const s of stores) s.close();
  raw.destroy();
  await server.stop();
  await rm(dir, { recursive: true, force: true });
  assertNoLeftoverProcesses();
});

/** The request lines s3rver saw since the last clear, without the SDK's `x-id=` tag. */
async function requests(): Promise<string[]> {
  return (await server.requests()).map((r) => r.replace(/[?&]x-id=[A-Za-z]+$/, ""));
}

beforeEach(async () => {
  await server.clearRequests();
  await rm(join(dir, "dl"), { recursive: true, force: true });
  await mkdir(join(dir, "dl"), { recursive: true });
});

describe("s3 store against s3rver", () => {
  it("round-trips a small object with its sha256 in x-amz-meta-gpuorch-sha256", async () => {
    const store = s3();
    const src = await source("small.bin", 100_000);
    const want = await hashFile(src);
    const progress: [number, number | null][] = [];
    const put = await store.putFile("jobs/j1/100/model.pt", src, { onProgress: (d, t) => progress.push([d, t]) });
    expect(put).toEqual({ uri: "s3://ckpt/jobs/j1/100/model.pt", ...want });
    expect(progress.at(-1)).toEqual([want.bytes, want.bytes]);
    expect((await requests()).filter((r) => r.startsWith("PUT "))).toEqual(["PUT /ckpt/jobs/j1/100/model.pt"]);

    const meta = await raw.send(new HeadObjectCommand({ Bucket: BUCKET, Key: "jobs/j1/100/model.pt" }));
    expect(meta.Metadata?.[SHA256_METADATA_KEY]).toBe(want.sha256);
    expect(await store.head("jobs/j1/100/model.pt")).toMatchObject({ key: "jobs/j1/100/model.pt", bytes: want.bytes, sha256: want.sha256 });

    const dest = join(dir, "dl", "model.pt");
    expect(await store.getFile("jobs/j1/100/model.pt", dest)).toEqual(want);
    expect(await sameBytes(src, dest)).toBe(true);
  });

  it("uploads a large file in 5 MiB parts and the object hashes to the recorded checksum", async () => {
    const store = s3({ multipartThresholdBytes: 5 * MIB, partSizeBytes: 5 * MIB, queueSize: 1 });
    const src = await source("large.bin", 12 * MIB + 123);
    const want = await hashFile(src);
    const progress: number[] = [];
    const put = await store.putFile("jobs/j1/200/model.pt", src, { onProgress: (d) => progress.push(d) });
    expect(put).toMatchObject(want);
    expect((await requests()).filter((r) => r.includes("?uploads"))).toHaveLength(1);
    expect((await requests()).filter((r) => r.startsWith("PUT ") && r.includes("partNumber="))).toHaveLength(3);
    expect((await requests()).filter((r) => r.startsWith("POST ") && r.includes("uploadId="))).toHaveLength(1);
    expect(progress).toEqual([5 * MIB, 10 * MIB, 12 * MIB + 123]);

    expect((await store.head("jobs/j1/200/model.pt"))?.sha256).toBe(want.sha256);
    const dest = join(dir, "dl", "large.bin");
    expect(await store.getFile("jobs/j1/200/model.pt", dest)).toEqual(want);
    expect(await sameBytes(src, dest)).toBe(true);
  });

  it("lists under a prefix in key order, page by page", async () => {
    const store = s3({ pageSize: 2 });
    const src = await source("tiny", 10);
    const keys = ["list/a/3", "list/a/1", "list/a/2/x", "list/a/10", "list/a/2/y", "list/b/1", "list/ab-sibling"];
    for (const k of keys) await store.putFile(k, src);
    await server.clearRequests();
    const got = await collect(store.list("list/a/"));
    expect(got.map((o) => o.key)).toEqual(["list/a/1", "list/a/10", "list/a/2/x", "list/a/2/y", "list/a/3"]);
    expect(got[0]).toMatchObject({ bytes: 10, sha256: null });
    expect(got[0]?.updatedAt).toBeInstanceOf(Date);
    expect((await requests()).filter((r) => r.includes("list-type=2"))).toHaveLength(3);
    expect((await collect(store.list("list/"))).map((o) => o.key)).toEqual(["list/a/1", "list/a/10", "list/a/2/x", "list/a/2/y", "list/a/3", "list/ab-sibling", "list/b/1"]);
    expect(await collect(store.list("list/none/"))).toEqual([]);
  });

  it("deletes present and absent keys in batches", async () => {
    const store = s3({ deleteBatchSize: 2 });
    const src = await source("tiny", 10);
    for (const k of ["del/1", "del/2", "del/3", "del/sentinel"]) await store.putFile(k, src);
    await server.clearRequests();
    await store.delete(["del/1", "del/absent", "del/2", "del/3", "del/1", "del/absent-2"]);
    expect((await requests()).filter((r) => r.startsWith("POST ") && r.includes("?delete"))).toHaveLength(3);
    expect((await collect(store.list("del/"))).map((o) => o.key)).toEqual(["del/sentinel"]);
    await store.delete([]);
  });

  it("getFile refuses bytes swapped behind its back under the old checksum and leaves no file", async () => {
    const store = s3();
    const src = await source("victim", 50_000);
    const put = await store.putFile("corrupt/obj", src);
    await raw.send(new PutObjectCommand({ Bucket: BUCKET, Key: "corrupt/obj", Body: randomBytes(50_000), Metadata: { [SHA256_METADATA_KEY]: put.sha256 } }));
    const e = await rejection(store.getFile("corrupt/obj", join(dir, "dl", "obj")));
    expect(e).toBeInstanceOf(AppError);
    expect(e).toMatchObject({ code: "ABORTED", reason: "checksum_mismatch" });
    expect(e.message).toContain("s3://ckpt/corrupt/obj");
    expect(await readdir(join(dir, "dl"))).toEqual([]);
    // The caller's expected checksum is checked too.
    await store.putFile("corrupt/obj", src);
    const wrong = await rejection(store.getFile("corrupt/obj", join(dir, "dl", "obj"), { expectSha256: "0".repeat(64) }));
    expect(wrong).toMatchObject({ code: "ABORTED", reason: "checksum_mismatch" });
    expect(await readdir(join(dir, "dl"))).toEqual([]);
  });

  it("getFile enforces maxBytes before downloading and frees the connection", async () => {
    const store = s3();
    const src = await source("big", 200_000);
    await store.putFile("limit/obj", src);
    for (let i = 0; i < 3; i++) {
      const e = await rejection(store.getFile("limit/obj", join(dir, "dl", "obj"), { maxBytes: 199_999 }));
      expect(e).toMatchObject({ code: "FAILED_PRECONDITION", reason: "object_too_large" });
    }
    expect(await readdir(join(dir, "dl"))).toEqual([]);
    expect(await store.getFile("limit/obj", join(dir, "dl", "obj"), { maxBytes: 200_000 })).toMatchObject({ bytes: 200_000 });
  });

  it("tells a missing bucket from a missing key", async () => {
    const present = s3();
    expect(await present.head("no/such/key")).toBeNull();
    expect(await rejection(present.getFile("no/such/key", join(dir, "dl", "x")))).toMatchObject({ code: "NOT_FOUND", reason: "object_not_found" });

    const missing = s3({ bucket: "no-such-bucket" });
    const src = await source("tiny", 10);
    const big = await source("big-for-missing", 6 * MIB);
    const multipart = s3({ bucket: "no-such-bucket", multipartThresholdBytes: 5 * MIB, partSizeBytes: 5 * MIB });
    for (const call of [
      () => missing.head("k"),
      () => missing.putFile("k", src),
      () => multipart.putFile("k", big),
      () => missing.getFile("k", join(dir, "dl", "x")),
      () => collect(missing.list("")),
      () => missing.delete(["k"]),
    ]) {
      const e = await rejection(call());
      expect(e).toMatchObject({ code: "NOT_FOUND", reason: "bucket_not_found" });
      expect(e.message).toContain("no-such-bucket");
    }
  });

  it("an aborted multipart upload stops, leaves no object and asks the server to drop the parts", async () => {
    const store = s3({ multipartThresholdBytes: 5 * MIB, partSizeBytes: 5 * MIB, queueSize: 1 });
    const src = await source("abort.bin", 16 * MIB);
    const ac = new AbortController();
    const e = await rejection(store.putFile("abort/obj", src, { signal: ac.signal, onProgress: () => ac.abort() }));
    expect(e.name).toBe("AbortError");
    expect(await store.head("abort/obj")).toBeNull();
    expect((await requests()).filter((r) => r.startsWith("POST ") && r.includes("uploadId="))).toEqual([]); // never completed
    // s3rver answers AbortMultipartUpload with 405, but the request must go out.
    await waitFor(async () => (await requests()).some((r) => r.startsWith("DELETE /ckpt/abort/obj?uploadId=")), { message: "AbortMultipartUpload" });

    const before = new AbortController();
    before.abort();
    expect((await rejection(store.putFile("abort/small", await source("s", 10), { signal: before.signal }))).name).toBe("AbortError");
    expect(await store.head("abort/small")).toBeNull();
  });

  it("maps bad credentials to PERMISSION_DENIED and an unreachable endpoint to UNAVAILABLE", async () => {
    const bad = s3({ credentials: { accessKeyId: "WRONG", secretAccessKey: "WRONG-SECRET" } });
    for (const call of [() => bad.head("k"), () => bad.getFile("k", join(dir, "dl", "x")), () => collect(bad.list(""))]) {
      const e = await rejection(call());
      expect(e).toMatchObject({ code: "PERMISSION_DENIED", reason: "storage_access_denied" });
      expect(e.message).not.toContain("WRONG-SECRET");
    }
    const port = await freePort();
    const down = s3({ endpoint: `http://127.0.0.1:${port}` });
    const e = await rejection(down.head("k"));
    expect(e).toMatchObject({ code: "UNAVAILABLE", reason: "storage_unavailable" });
    expect(e.message).toContain(`127.0.0.1:${port}`);
  });

  it("refuses bad bucket names and keys up front", async () => {
    expect(() => createS3Store({ bucket: "Not_A_Bucket" })).toThrow(AppError);
    const store = s3();
    for (const key of ["", "/leading", "k".repeat(1025)]) {
      expect(await rejection(store.head(key))).toMatchObject({ code: "INVALID_ARGUMENT", reason: "invalid_object_key" });
    }
  });
});

describe("minio store (s3rver addressed as minio://)", () => {
  it("round-trips through a minio:// URI, path-style", async () => {
    const hostPort = endpoint.slice("http://".length);
    const loc = parseObjectUri(`minio://${hostPort}/${BUCKET}/m/1/model.pt`);
    expect(loc).toMatchObject({ scheme: "minio", endpoint: hostPort, bucket: BUCKET, key: "m/1/model.pt" });
    const store = createMinioStore(loc.endpoint ?? "", loc.bucket, { credentials });
    stores.push(store);
    const src = await source("minio.bin", 70_000);
    const put = await store.putFile(loc.key, src);
    expect(put.uri).toBe(`minio://${hostPort}/${BUCKET}/m/1/model.pt`);
    expect(parseObjectUri(put.uri)).toEqual(loc);
    expect((await requests()).filter((r) => r.startsWith("PUT "))).toEqual([`PUT /${BUCKET}/m/1/model.pt`]);
    expect((await store.head(loc.key))?.sha256).toBe(put.sha256);
    expect((await collect(store.list("m/"))).map((o) => o.key)).toEqual(["m/1/model.pt"]);
    const dest = join(dir, "dl", "minio.bin");
    expect(await store.getFile(loc.key, dest)).toMatchObject({ sha256: put.sha256 });
    expect(await sameBytes(src, dest)).toBe(true);
    await store.delete([loc.key]);
    expect(await store.head(loc.key)).toBeNull();
  });

  it("accepts a full http:// endpoint and refuses a malformed one", () => {
    const store = createMinioStore(`${endpoint}/`, BUCKET, { credentials });
    stores.push(store);
    expect(store.uriOf("a b")).toBe(`minio://${endpoint.slice("http://".length)}/${BUCKET}/a%20b`);
    expect(() => createMinioStore("not a host", BUCKET)).toThrow(AppError);
  });
});
