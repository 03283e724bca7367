import { createHash, randomBytes, randomUUID } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppError } from "@gpuorch/core";
import { freePort } from "@gpuorch/testing";
import { OAuth2Client } from "google-auth-library";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type GcsStoreOptions, createGcsStore } from "./gcs-store.js";
import { SHA256_METADATA_KEY } from "./types.js";
import { collect, rejection } from "./store.test-util.js";

// ---------------------------------------------------------------------------
// A fake of the GCS JSON API v1, just the calls the store makes, shaped after
// the public reference (objects.insert multipart and resumable, objects.get
// with and without alt=media, objects.list, objects.delete, error bodies).
// Every request is recorded so tests can assert what went over the wire.
// ---------------------------------------------------------------------------

interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface StoredObject {
  name: string;
  data: Buffer;
  contentType: string;
  metadata: Record<string, string> | undefined;
  generation: number;
  created: Date;
  updated: Date;
}

interface Fault {
  status: number;
  reason: string;
  message: string;
}

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC32C (Castagnoli) as GCS reports it: base64 of the big-endian 32-bit value. */
function crc32c(data: Buffer): string {
  let c = 0xffffffff;
  for (const b of data) c = ((CRC32C_TABLE[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8)) >>> 0;
  const out = Buffer.alloc(4);
  out.writeUInt32BE((c ^ 0xffffffff) >>> 0);
  return out.toString("base64");
}

const md5 = (data: Buffer): string => createHash("md5").update(data).digest("base64");
const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

class FakeGcs {
  readonly requests: RecordedRequest[] = [];
  readonly buckets = new Map<string, Map<string, StoredObject>>();
  /** Answers matching requests with an error instead of serving them. */
  fault: ((r: RecordedRequest) => Fault | undefined) | undefined;
  /** Flips a byte of every media response (headers still describe the stored bytes). */
  corruptMedia = false;
  private readonly sessions = new Map<string, { bucket: string; name: string; metadata: Record<string, unknown>; received: Buffer[] }>();
  private generation = 1_700_000_000_000_000;
  private server: Server | undefined;
  endpoint = "";

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => this.handle(req, Buffer.concat(chunks), res));
    });
    await new Promise<void>((resolve) => this.server?.listen(0, "127.0.0.1", resolve));
    this.endpoint = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((resolve, reject) => s.close((e) => (e ? reject(e) : resolve())));
  }

  /** Overwrites an object behind the store's back (a new generation), keeping its custom metadata. */
  tamper(bucket: string, name: string, data: Buffer): void {
    const o = this.buckets.get(bucket)?.get(name);
    if (!o) throw new Error(`no object ${name}`);
    o.data = data;
    o.generation = ++this.generation;
    o.updated = new Date();
  }

  private handle(req: IncomingMessage, body: Buffer, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", this.endpoint);
    const r: RecordedRequest = { method: req.method ?? "", path: url.pathname, query: Object.fromEntries(url.searchParams), headers: req.headers, body };
    this.requests.push(r);
    const fault = this.fault?.(r);
    if (fault) return this.error(res, fault.status, fault.message, fault.reason);

    const upload = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
    const object = /^\/storage\/v1\/b\/([^/]+)\/o\/(.+)$/.exec(url.pathname);
    const objects = /^\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
    const bucketName = decodeURIComponent((upload ?? object ?? objects)?.[1] ?? "");
    const bucket = this.buckets.get(bucketName);
    if (!upload && !object && !objects) return this.error(res, 404, "Not Found", "notFound");
    if (!bucket) return this.error(res, 404, "The specified bucket does not exist.", "notFound");

    if (upload && req.method === "POST" && r.query.uploadType === "multipart") {
      const [metaPart, mediaPart] = parseMultipart(body, req.headers["content-type"] ?? "");
      if (!metaPart || !mediaPart) return this.error(res, 400, "Invalid multipart request", "invalid");
      const meta = JSON.parse(metaPart.body.toString("utf8")) as Record<string, unknown>;
      const name = r.query.name ?? (meta.name as string | undefined);
      if (!name) return this.error(res, 400, "Required parameter: name", "required");
      return this.json(res, 200, this.resource(this.put(bucketName, name, mediaPart.body, meta)));
    }
    if (upload && req.method === "POST" && r.query.uploadType === "resumable") {
      const name = r.query.name;
      if (!name) return this.error(res, 400, "Required parameter: name", "required");
      const id = randomUUID();
      this.sessions.set(id, { bucket: bucketName, name, metadata: body.length ? (JSON.parse(body.toString("utf8")) as Record<string, unknown>) : {}, received: [] });
      const location = `${this.endpoint}/upload/storage/v1/b/${encodeURIComponent(bucketName)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
      res.writeHead(200, { Location: location, "Content-Length": "0" });
      return void res.end();
    }
    if (upload && req.method === "PUT" && r.query.upload_id) {
      const session = this.sessions.get(r.query.upload_id);
      if (!session) return this.error(res, 404, "No such upload session", "notFound");
      // Content-Range: "bytes A-B/T", "bytes A-*/T" (the rest is this request's body) or "bytes */T" (status query); T may be "*".
      const m = /^bytes (?:(\d+)-(\d+|\*)|\*)\/(\d+|\*)$/.exec(String(req.headers["content-range"] ?? ""));
      if (!m) return this.error(res, 400, "Invalid Content-Range", "invalid");
      const have = session.received.reduce((n, b) => n + b.length, 0);
      if (m[1] !== undefined) {
        if (Number(m[1]) !== have) return this.error(res, 400, `Invalid request. Expected offset ${have}`, "invalid");
        session.received.push(body);
      }
      const total = have + (m[1] !== undefined ? body.length : 0);
      const complete = m[3] !== "*" ? total === Number(m[3]) : m[2] === "*";
      if (!complete) {
        res.writeHead(308, total > 0 ? { Range: `bytes=0-${total - 1}`, "Content-Length": "0" } : { "Content-Length": "0" });
        return void res.end();
      }
      this.sessions.delete(r.query.upload_id);
      return this.json(res, 200, this.resource(this.put(session.bucket, session.name, Buffer.concat(session.received), session.metadata)));
    }
    if (objects && req.method === "GET") {
      const prefix = r.query.prefix ?? "";
      const max = Math.min(Number(r.query.maxResults ?? 1000), 1000);
      const after = r.query.pageToken ? Buffer.from(r.query.pageToken, "base64url").toString("utf8") : undefined;
      const names = [...bucket.keys()].filter((n) => n.startsWith(prefix) && (after === undefined || n > after)).sort();
      const page = names.slice(0, max);
      const out: Record<string, unknown> = { kind: "storage#objects" };
      if (names.length > max) out.nextPageToken = Buffer.from(page.at(-1) ?? "").toString("base64url");
      if (page.length) out.items = page.map((n) => this.resource(bucket.get(n) as StoredObject));
      return this.json(res, 200, out);
    }
    if (object) {
      const name = decodeURIComponent(object[2] ?? "");
      const o = bucket.get(name);
      if (!o || (r.query.generation !== undefined && r.query.generation !== String(o.generation))) {
        return this.error(res, 404, `No such object: ${bucketName}/${name}`, "notFound");
      }
      if (req.method === "DELETE") {
        bucket.delete(name);
        res.writeHead(204);
        return void res.end();
      }
      if (req.method === "GET" && r.query.alt === "media") {
        const data = Buffer.from(o.data);
        if (this.corruptMedia && data.length > 0) data[0] = (data[0] ?? 0) ^ 0xff;
        res.writeHead(200, {
          "Content-Type": o.contentType,
          "Content-Length": String(data.length),
          ETag: `"${md5(o.data)}"`,
          "Last-Modified": o.updated.toUTCString(),
          "x-goog-generation": String(o.generation),
          "x-goog-metageneration": "1",
          "x-goog-stored-content-encoding": "identity",
          "x-goog-stored-content-length": String(o.data.length),
          "x-goog-hash": `crc32c=${crc32c(o.data)},md5=${md5(o.data)}`,
        });
        return void res.end(data);
      }
      if (req.method === "GET") return this.json(res, 200, this.resource(o));
    }
    return this.error(res, 405, "Method not allowed", "methodNotAllowed");
  }

  private put(bucket: string, name: string, data: Buffer, meta: Record<string, unknown>): StoredObject {
    const now = new Date();
    const o: StoredObject = {
      name,
      data,
      contentType: typeof meta.contentType === "string" ? meta.contentType : "application/octet-stream",
      metadata: meta.metadata as Record<string, string> | undefined,
      generation: ++this.generation,
      created: now,
      updated: now,
    };
    this.buckets.get(bucket)?.set(name, o);
    return o;
  }

  private resource(o: StoredObject): Record<string, unknown> {
    const bucket = [...this.buckets].find(([, objs]) => objs.get(o.name) === o)?.[0] ?? "";
    const path = `b/${encodeURIComponent(bucket)}/o/${encodeURIComponent(o.name)}`;
    return {
      kind: "storage#object",
      id: `${bucket}/${o.name}/${o.generation}`,
      selfLink: `${this.endpoint}/storage/v1/${path}`,
      mediaLink: `${this.endpoint}/download/storage/v1/${path}?generation=${o.generation}&alt=media`,
      name: o.name,
      bucket,
      generation: String(o.generation),
      metageneration: "1",
      contentType: o.contentType,
      storageClass: "STANDARD",
      size: String(o.data.length),
      md5Hash: md5(o.data),
      crc32c: crc32c(o.data),
      etag: "CKih16GjycICEAE=",
      timeCreated: o.created.toISOString(),
      updated: o.updated.toISOString(),
      timeStorageClassUpdated: o.created.toISOString(),
      ...(o.metadata ? { metadata: o.metadata } : {}),
    };
  }

  private json(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { "Content-Type": "application/json; charset=UTF-8", "Content-Length": String(Buffer.byteLength(text)) });
    res.end(text);
  }

  private error(res: ServerResponse, status: number, message: string, reason: string): void {
    this.json(res, status, { error: { code: status, message, errors: [{ message, domain: "global", reason }] } });
  }
}

/** Splits a multipart/related body into parts (headers + body). */
function parseMultipart(body: Buffer, contentType: string): Array<{ headers: string; body: Buffer }> {
  const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1];
  if (!boundary) return [];
  const delim = Buffer.from(`--${boundary}`);
  const parts: Array<{ headers: string; body: Buffer }> = [];
  let pos = body.indexOf(delim);
  while (pos !== -1) {
    const start = pos + delim.length;
    if (body.subarray(start, start + 2).toString() === "--") break;
    const next = body.indexOf(delim, start);
    if (next === -1) break;
    const part = body.subarray(start + 2, next - 2); // drop the CRLF after the delimiter and before the next
    const split = part.indexOf("\r\n\r\n");
    parts.push({ headers: part.subarray(0, split).toString("utf8"), body: part.subarray(split + 4) });
    pos = next;
  }
  return parts;
}

// ---------------------------------------------------------------------------

const BUCKET = "gpuorch-ckpt";
let fake: FakeGcs;
let dir: string;

const store = (extra: Partial<GcsStoreOptions> = {}) => createGcsStore({ bucket: BUCKET, apiEndpoint: fake.endpoint, maxRetries: 0, ...extra });
/** The requests as "METHOD path", the path decoded the way the server saw it. */
const lines = (reqs: RecordedRequest[]) => reqs.map((r) => `${r.method} ${r.path}`);

async function file(name: string, data: Buffer | string): Promise<string> {
  const p = join(dir, name);
  await writeFile(p, data);
  return p;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gpuorch-gcs-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  delete process.env.STORAGE_EMULATOR_HOST;
  fake = new FakeGcs();
  fake.buckets.set(BUCKET, new Map());
  await fake.start();
});

afterEach(async () => {
  await fake.stop();
});

describe("createGcsStore at the GCS JSON API boundary", () => {
  it("uploads a small file in one multipart request carrying gpuorch-sha256, then reads it back by generation", async () => {
    const data = randomBytes(10_000);
    const src = await file("small.bin", data);
    const s = store();
    const put = await s.putFile("runs/1/model.pt", src);
    expect(put).toEqual({ uri: `gs://${BUCKET}/runs/1/model.pt`, bytes: data.length, sha256: sha(data) });

    expect(lines(fake.requests)).toEqual([`POST /upload/storage/v1/b/${BUCKET}/o`, `GET /storage/v1/b/${BUCKET}/o/runs%2F1%2Fmodel.pt`]);
    const [insert, verify] = fake.requests;
    expect(insert?.query).toMatchObject({ uploadType: "multipart", name: "runs/1/model.pt" });
    expect(insert?.headers["content-type"]).toMatch(/^multipart\/related; boundary=/);
    const [metaPart, mediaPart] = parseMultipart(insert?.body ?? Buffer.alloc(0), String(insert?.headers["content-type"]));
    expect(JSON.parse(metaPart?.body.toString() ?? "{}")).toEqual({ contentType: "application/octet-stream", metadata: { [SHA256_METADATA_KEY]: sha(data) } });
    expect(mediaPart?.body.equals(data)).toBe(true);
    expect(verify?.query.alt).toBeUndefined();
    // A custom endpoint gets no credentials unless asked to.
    expect(fake.requests.every((r) => r.headers.authorization === undefined)).toBe(true);

    fake.requests.length = 0;
    const dst = join(dir, "out", "small.bin");
    const progress: Array<[number, number | null]> = [];
    expect(await s.getFile("runs/1/model.pt", dst, { onProgress: (d, t) => progress.push([d, t]) })).toEqual({ bytes: data.length, sha256: sha(data) });
    expect((await readFile(dst)).equals(data)).toBe(true);
    expect(progress.at(-1)).toEqual([data.length, data.length]);
    const generation = String(fake.buckets.get(BUCKET)?.get("runs/1/model.pt")?.generation);
    expect(lines(fake.requests)).toEqual([`GET /storage/v1/b/${BUCKET}/o/runs%2F1%2Fmodel.pt`, `GET /storage/v1/b/${BUCKET}/o/runs%2F1%2Fmodel.pt`]);
    expect(fake.requests[1]?.query).toEqual({ alt: "media", generation });

    expect(await s.head("runs/1/model.pt")).toEqual({ key: "runs/1/model.pt", bytes: data.length, sha256: sha(data), updatedAt: expect.any(Date) as Date });
  });

  it("uses a resumable session above the threshold, chunk by chunk with 308s in between", async () => {
    const chunk = 256 * 1024;
    const data = randomBytes(2 * chunk + 90_000);
    const src = await file("big.bin", data);
    const s = store({ resumableThresholdBytes: chunk, chunkSizeBytes: chunk });
    const progress: number[] = [];
    await s.putFile("big/ckpt.bin", src, { onProgress: (d) => progress.push(d) });
    expect(progress.at(-1)).toBe(data.length);

    expect(lines(fake.requests)).toEqual([
      `POST /upload/storage/v1/b/${BUCKET}/o`,
      `PUT /upload/storage/v1/b/${BUCKET}/o`,
      `PUT /upload/storage/v1/b/${BUCKET}/o`,
      `PUT /upload/storage/v1/b/${BUCKET}/o`,
      `GET /storage/v1/b/${BUCKET}/o/big%2Fckpt.bin`,
    ]);
    const [start, ...puts] = fake.requests;
    expect(start?.query).toEqual({ uploadType: "resumable", name: "big/ckpt.bin" });
    expect(start?.headers["x-upload-content-type"]).toBe("application/octet-stream");
    expect(JSON.parse(start?.body.toString() ?? "{}")).toEqual({ metadata: { [SHA256_METADATA_KEY]: sha(data) } });
    const sessionId = puts[0]?.query.upload_id;
    expect(sessionId).toBeTruthy();
    expect(puts.slice(0, 3).map((p) => [p.query.upload_id, p.headers["content-range"], p.body.length])).toEqual([
      [sessionId, `bytes 0-${chunk - 1}/*`, chunk],
      [sessionId, `bytes ${chunk}-${2 * chunk - 1}/*`, chunk],
      [sessionId, `bytes ${2 * chunk}-${data.length - 1}/${data.length}`, 90_000],
    ]);

    const dst = join(dir, "out", "big.bin");
    await s.getFile("big/ckpt.bin", dst);
    expect((await readFile(dst)).equals(data)).toBe(true);
  });

  it("streams a resumable upload in one request when no chunk size is set", async () => {
    const data = randomBytes(300_000);
    const src = await file("stream.bin", data);
    await store({ resumableThresholdBytes: 1 }).putFile("stream.bin", src);
    const puts = fake.requests.filter((r) => r.method === "PUT");
    expect(puts.map((p) => p.headers["content-range"])).toEqual(["bytes 0-*/*"]);
    expect(fake.buckets.get(BUCKET)?.get("stream.bin")?.data.equals(data)).toBe(true);
    expect(fake.requests[0]?.query.uploadType).toBe("resumable");
  });

  it("lists a prefix page by page with pageToken, in key order", async () => {
    const src = await file("tiny.bin", "x");
    const s = store({ pageSize: 2 });
    for (const k of ["list/b/3", "list/a/1", "list/a/2", "list/c", "list/a/10", "other/list/a"]) await s.putFile(k, src);
    fake.requests.length = 0;

    const all = await collect(s.list("list/"));
    expect(all.map((o) => o.key)).toEqual(["list/a/1", "list/a/10", "list/a/2", "list/b/3", "list/c"]);
    expect(all.every((o) => o.bytes === 1 && o.sha256 === sha(Buffer.from("x")) && o.updatedAt instanceof Date)).toBe(true);
    expect(lines(fake.requests)).toEqual(Array(3).fill(`GET /storage/v1/b/${BUCKET}/o`));
    const queries = fake.requests.map((r) => r.query);
    expect(queries.map((q) => [q.prefix, q.maxResults])).toEqual(Array(3).fill(["list/", "2"]));
    expect(queries[0]?.pageToken).toBeUndefined();
    expect(queries[1]?.pageToken).toBe(Buffer.from("list/a/10").toString("base64url"));
    expect(queries[2]?.pageToken).toBe(Buffer.from("list/b/3").toString("base64url"));

    expect(await collect(s.list("nothing/"))).toEqual([]);
  });

  it("answers null for an absent object and NOT_FOUND when downloading it", async () => {
    const s = store();
    expect(await s.head("absent")).toBeNull();
    const err = await rejection(s.getFile("absent", join(dir, "nf", "absent")));
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: "NOT_FOUND", reason: "object_not_found" });
  });

  it("names a missing bucket in NOT_FOUND", async () => {
    const src = await file("tiny.bin", "x");
    const s = store({ bucket: "no-such-bucket" });
    const calls = [() => s.putFile("k", src), () => s.getFile("k", join(dir, "nf", "k")), () => s.head("k"), () => collect(s.list("")), () => s.delete(["k"])];
    for (const call of calls) {
      const err = await rejection(call());
      expect(err).toMatchObject({ code: "NOT_FOUND", reason: "bucket_not_found" });
      expect((err as Error).message).toContain("no-such-bucket");
    }
  });

  it("maps 403 to PERMISSION_DENIED and 503 to UNAVAILABLE", async () => {
    const src = await file("tiny.bin", "x");
    const s = store();
    fake.fault = () => ({ status: 403, reason: "forbidden", message: "ci@proj.iam.gserviceaccount.com does not have storage.objects.get access" });
    const err = await rejection(s.head("k"));
    expect(err).toMatchObject({ code: "PERMISSION_DENIED", reason: "storage_permission_denied" });
    expect((err as Error).message).toContain("storage.objects.get");
    expect(await rejection(s.putFile("k", src))).toMatchObject({ code: "PERMISSION_DENIED" });
    expect(fake.requests).toHaveLength(2);

    fake.fault = () => ({ status: 503, reason: "backendError", message: "Backend Error" });
    expect(await rejection(s.head("k"))).toMatchObject({ code: "UNAVAILABLE", reason: "storage_unavailable" });
  });

  it("maps an unreachable endpoint to UNAVAILABLE", async () => {
    const port = await freePort();
    const s = createGcsStore({ bucket: BUCKET, apiEndpoint: `http://127.0.0.1:${port}`, maxRetries: 0 });
    expect(await rejection(s.head("k"))).toMatchObject({ code: "UNAVAILABLE", reason: "storage_unavailable" });
  });

  it("detects an object overwritten behind its back, keeping its metadata, and leaves no file", async () => {
    const data = randomBytes(20_000);
    const src = await file("victim.bin", data);
    const s = store();
    await s.putFile("corrupt/ckpt", src);
    const evil = Buffer.from(data);
    evil[7] = (evil[7] ?? 0) ^ 0xff;
    fake.tamper(BUCKET, "corrupt/ckpt", evil);

    const outDir = join(dir, "corrupt-out");
    const err = await rejection(s.getFile("corrupt/ckpt", join(outDir, "ckpt")));
    expect(err).toMatchObject({ code: "ABORTED", reason: "checksum_mismatch" });
    expect(await readdir(outDir)).toEqual([]);
  });

  it("rejects bytes damaged in transit (the library's CRC32C check) and leaves no file", async () => {
    const data = randomBytes(20_000);
    const src = await file("transit.bin", data);
    const s = store();
    await s.putFile("transit/ckpt", src);
    fake.corruptMedia = true;
    const outDir = join(dir, "transit-out");
    const err = await rejection(s.getFile("transit/ckpt", join(outDir, "ckpt"), { expectSha256: sha(data) }));
    expect(err).toMatchObject({ code: "ABORTED", reason: "checksum_mismatch" });
    expect(await readdir(outDir).catch(() => [])).toEqual([]);
  });

  it("refuses an object larger than maxBytes before fetching its bytes", async () => {
    const src = await file("max.bin", randomBytes(4096));
    const s = store();
    await s.putFile("max/obj", src);
    fake.requests.length = 0;
    const err = await rejection(s.getFile("max/obj", join(dir, "max-out", "obj"), { maxBytes: 4095 }));
    expect(err).toMatchObject({ code: "FAILED_PRECONDITION", reason: "object_too_large" });
    expect(fake.requests.filter((r) => r.query.alt === "media")).toEqual([]);
    expect(await readdir(join(dir, "max-out")).catch(() => [])).toEqual([]);
  });

  it("deletes present keys and ignores absent ones", async () => {
    const src = await file("tiny.bin", "x");
    const s = store({ concurrency: 1 });
    await s.putFile("del/1", src);
    fake.requests.length = 0;
    await s.delete(["del/1", "del/absent"]);
    expect(lines(fake.requests)).toEqual([`DELETE /storage/v1/b/${BUCKET}/o/del%2F1`, `DELETE /storage/v1/b/${BUCKET}/o/del%2Fabsent`]);
    expect(fake.buckets.get(BUCKET)?.has("del/1")).toBe(false);
  });

  it("sends the caller's credentials on every request when asked to", async () => {
    const authClient = new OAuth2Client();
    authClient.setCredentials({ access_token: "test-access-token", expiry_date: Date.now() + 3_600_000 });
    // Multipart uploads: the library does not pass useAuthWithCustomEndpoint on to
    // resumable sessions, which on real GCS (a googleapis.com host) are always authorised.
    const s = store({ authClient, useAuthWithCustomEndpoint: true });
    const src = await file("auth.bin", "secret stuff");
    await s.putFile("auth/obj", src);
    await s.getFile("auth/obj", join(dir, "auth-out", "obj"));
    await collect(s.list("auth/"));
    await s.delete(["auth/obj"]);
    expect(new Set(fake.requests.map((r) => r.method))).toEqual(new Set(["POST", "GET", "DELETE"]));
    expect(fake.requests.map((r) => r.headers.authorization)).toEqual(fake.requests.map(() => "Bearer test-access-token"));
  });

  it("stops an upload when the signal aborts and honours an aborted signal elsewhere", async () => {
    const data = randomBytes(1024 * 1024);
    const src = await file("abort.bin", data);
    const s = store({ resumableThresholdBytes: 1 });
    const ac = new AbortController();
    const err = await rejection(s.putFile("abort/ckpt", src, { signal: ac.signal, onProgress: () => ac.abort() }));
    expect((err as Error).name).toBe("AbortError");
    expect(fake.buckets.get(BUCKET)?.has("abort/ckpt")).toBe(false);

    const aborted = AbortSignal.abort();
    expect(((await rejection(s.head("k", { signal: aborted }))) as Error).name).toBe("AbortError");
    expect(((await rejection(collect(s.list("", { signal: aborted })))) as Error).name).toBe("AbortError");
    expect(((await rejection(s.getFile("k", join(dir, "abort-out", "k"), { signal: aborted }))) as Error).name).toBe("AbortError");
    expect(await readdir(join(dir, "abort-out")).catch(() => [])).toEqual([]);
  });
});
