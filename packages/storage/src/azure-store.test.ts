import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  AccountSASPermissions,
  AccountSASResourceTypes,
  AccountSASServices,
  BlobServiceClient,
  type ContainerClient,
  StorageSharedKeyCredential,
  generateAccountSASQueryParameters,
} from "@azure/storage-blob";
import { AppError } from "@gpuorch/core";
import { type SpawnedProcess, assertNoLeftoverProcesses, freePort, spawnProcess, waitFor } from "@gpuorch/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AZURE_SHA256_METADATA_KEY, azureCredentialFromEnv, createAzureStore } from "./azure-store.js";
import { collect, rejection } from "./store.test-util.js";

// Azurite's documented development account (public, not a secret).
const ACCOUNT = "devstoreaccount1";
const KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const AZURITE = fileURLToPath(new URL("../node_modules/.bin/azurite-blob", import.meta.url));

let azurite: SpawnedProcess;
let endpoint: string;
let dir: string;
let admin: BlobServiceClient;
let container: ContainerClient;
const CONTAINER = "checkpoints";

const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
const store = (extra: Partial<Parameters<typeof createAzureStore>[0]> = {}) =>
  createAzureStore({ account: ACCOUNT, container: CONTAINER, endpoint, credential: { kind: "shared-key", accountKey: KEY }, ...extra });

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "gpuorch-azure-"));
  // Not --silent: the access log lets a test count the list requests.
  azurite = spawnProcess(AZURITE, ["--blobHost", "127.0.0.1", "--blobPort", "0", "--location", join(dir, "azurite"), "--skipApiVersionCheck", "--disableTelemetry", "--loose"], { name: "azurite-blob" });
  const m = await azurite.waitForOutput(/successfully listens on (http:\/\/127\.0\.0\.1:\d+)/, 30_000);
  endpoint = `${m[1]}/${ACCOUNT}`;
  admin = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(ACCOUNT, KEY));
  container = admin.getContainerClient(CONTAINER);
  await container.create();
});

afterAll(async () => {
  await azurite?.stop();
  await rm(dir, { recursive: true, force: true });
  assertNoLeftoverProcesses();
});

describe("createAzureStore against azurite", () => {
  it("round-trips a file and records its sha256 as blob metadata", async () => {
    const data = randomBytes(300_000);
    const src = join(dir, "small.bin");
    await writeFile(src, data);
    const s = store();
    const progress: number[] = [];
    const put = await s.putFile("runs/1/model.pt", src, { onProgress: (done) => progress.push(done) });
    expect(put).toEqual({ uri: `az://${ACCOUNT}/${CONTAINER}/runs/1/model.pt`, bytes: data.length, sha256: sha(data) });
    expect(progress.at(-1)).toBe(data.length);

    // Azure refuses '-' in metadata names, hence the underscore.
    const props = await container.getBlobClient("runs/1/model.pt").getProperties();
    expect(props.metadata).toEqual({ [AZURE_SHA256_METADATA_KEY]: sha(data) });
    expect(AZURE_SHA256_METADATA_KEY).toBe("gpuorch_sha256");

    const info = await s.head("runs/1/model.pt");
    expect(info).toMatchObject({ key: "runs/1/model.pt", bytes: data.length, sha256: sha(data) });
    expect(info?.updatedAt).toBeInstanceOf(Date);

    const dst = join(dir, "out", "small.bin");
    const got = await s.getFile("runs/1/model.pt", dst);
    expect(got).toEqual({ bytes: data.length, sha256: sha(data) });
    expect(sha(await readFile(dst))).toBe(sha(data));
  });

  it("uploads a file larger than the block size as blocks and reads it back intact", async () => {
    const data = randomBytes(10 * 1024 * 1024 + 12_345);
    const src = join(dir, "big.bin");
    await writeFile(src, data);
    const s = store({ blockSizeBytes: 1024 * 1024, concurrency: 3 });
    const put = await s.putFile("big/ckpt.bin", src);
    expect(put.bytes).toBe(data.length);

    const blocks = await container.getBlockBlobClient("big/ckpt.bin").getBlockList("committed");
    expect(blocks.committedBlocks?.length).toBe(11);
    expect(blocks.committedBlocks?.[0]?.size).toBe(1024 * 1024);

    const dst = join(dir, "out", "big.bin");
    const progress: Array<[number, number | null]> = [];
    await s.getFile("big/ckpt.bin", dst, { onProgress: (d, t) => progress.push([d, t]) });
    expect((await readFile(dst)).equals(data)).toBe(true);
    expect(progress.at(-1)).toEqual([data.length, data.length]);
  });

  it("lists keys under a prefix in key order, page by page", async () => {
    const src = join(dir, "tiny.bin");
    await writeFile(src, "x");
    const s = store({ pageSize: 2 });
    for (const k of ["list/b/3", "list/a/1", "list/a/2", "list/c", "list/a/10", "other/list/a"]) await s.putFile(k, src);

    const before = azurite.output().split("\n").filter((l) => l.includes("comp=list")).length;
    const all = await collect(s.list("list/"));
    expect(all.map((o) => o.key)).toEqual(["list/a/1", "list/a/10", "list/a/2", "list/b/3", "list/c"]);
    expect(all.every((o) => o.bytes === 1 && o.sha256 === sha(Buffer.from("x")))).toBe(true);
    // Five blobs, two per page: three list requests, the later two with a continuation marker.
    // Azurite writes its access log line after the response: wait for it.
    const listLines = () => azurite.output().split("\n").filter((l) => l.includes("comp=list")).slice(before);
    const log = await waitFor(() => (listLines().length >= 3 ? listLines() : null), { message: "three list requests in the azurite log" });
    expect(log).toHaveLength(3);
    expect(log.filter((l) => /[?&]marker=/.test(l))).toHaveLength(2);
    expect(log.every((l) => /maxresults=2/.test(l) && /prefix=list%2F/.test(l))).toBe(true);

    expect((await collect(s.list("list/a/"))).map((o) => o.key)).toEqual(["list/a/1", "list/a/10", "list/a/2"]);
    expect(await collect(s.list("nothing-here/"))).toEqual([]);
  });

  it("deletes present keys and ignores absent ones", async () => {
    const src = join(dir, "tiny.bin");
    await writeFile(src, "x");
    const s = store();
    await s.putFile("del/1", src);
    await s.putFile("del/2", src);
    await s.delete(["del/1", "del/never-existed", "del/2"]);
    expect(await s.head("del/1")).toBeNull();
    expect(await s.head("del/2")).toBeNull();
    await s.delete([]);
    await s.delete(["del/1"]);
  });

  it("detects a blob replaced behind its back and leaves no file", async () => {
    const data = randomBytes(50_000);
    const src = join(dir, "victim.bin");
    await writeFile(src, data);
    const s = store();
    await s.putFile("corrupt/ckpt", src);
    // Same size, same recorded checksum, different bytes.
    const evil = Buffer.from(data);
    evil[100] = (evil[100] ?? 0) ^ 0xff;
    await container.getBlockBlobClient("corrupt/ckpt").upload(evil, evil.length, { metadata: { [AZURE_SHA256_METADATA_KEY]: sha(data) } });

    const outDir = join(dir, "corrupt-out");
    const err = await rejection(s.getFile("corrupt/ckpt", join(outDir, "ckpt")));
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: "ABORTED", reason: "checksum_mismatch" });
    expect(await readdir(outDir)).toEqual([]);

    // A caller-supplied checksum wins over the recorded one.
    const err2 = await rejection(s.getFile("corrupt/ckpt", join(outDir, "ckpt"), { expectSha256: "0".repeat(64) }));
    expect(err2).toMatchObject({ code: "ABORTED", reason: "checksum_mismatch" });
    expect(await readdir(outDir)).toEqual([]);
  });

  it("refuses an object larger than maxBytes without writing it", async () => {
    const data = randomBytes(4096);
    const src = join(dir, "max.bin");
    await writeFile(src, data);
    const s = store();
    await s.putFile("max/obj", src);
    const outDir = join(dir, "max-out");
    const err = await rejection(s.getFile("max/obj", join(outDir, "obj"), { maxBytes: 4095 }));
    expect(err).toMatchObject({ code: "FAILED_PRECONDITION", reason: "object_too_large" });
    expect(await readdir(outDir).catch(() => [])).toEqual([]);
    await expect(s.getFile("max/obj", join(outDir, "obj"), { maxBytes: 4096 })).resolves.toMatchObject({ bytes: 4096 });
  });

  it("names a missing container in NOT_FOUND, and a missing blob is null or NOT_FOUND", async () => {
    const src = join(dir, "tiny.bin");
    await writeFile(src, "x");
    const s = store({ container: "no-such-container" });
    const calls = [() => s.putFile("k", src), () => s.getFile("k", join(dir, "nf", "k")), () => s.head("k"), () => collect(s.list("")), () => s.delete(["k"])];
    for (const call of calls) {
      const err = await rejection(call());
      expect(err).toBeInstanceOf(AppError);
      expect(err).toMatchObject({ code: "NOT_FOUND", reason: "container_not_found" });
      expect((err as Error).message).toContain("no-such-container");
    }
    expect(await store().head("absent/key")).toBeNull();
    expect(await rejection(store().getFile("absent/key", join(dir, "nf", "k")))).toMatchObject({ code: "NOT_FOUND", reason: "object_not_found" });
  });

  it("stops an upload and a download when the signal aborts", async () => {
    const data = randomBytes(6 * 1024 * 1024);
    const src = join(dir, "abort.bin");
    await writeFile(src, data);
    const s = store({ blockSizeBytes: 1024 * 1024, concurrency: 1 });
    const ac = new AbortController();
    const err = await rejection(s.putFile("abort/ckpt", src, { signal: ac.signal, onProgress: () => ac.abort() }));
    expect((err as Error).name).toBe("AbortError");
    // Uncommitted blocks are invisible: the blob does not exist.
    expect(await s.head("abort/ckpt")).toBeNull();

    await s.putFile("abort/ckpt", src);
    const outDir = join(dir, "abort-out");
    const ac2 = new AbortController();
    const err2 = await rejection(s.getFile("abort/ckpt", join(outDir, "ckpt"), { signal: ac2.signal, onProgress: () => ac2.abort() }));
    expect((err2 as Error).name).toBe("AbortError");
    expect(await readdir(outDir).catch(() => [])).toEqual([]);
  });

  describe("credentials", () => {
    it("reads a connection string, an account key or a SAS token from the environment, in that order", () => {
      expect(azureCredentialFromEnv({})).toEqual({ kind: "anonymous" });
      expect(azureCredentialFromEnv({ AZURE_STORAGE_SAS_TOKEN: "sv=x" })).toEqual({ kind: "sas", sasToken: "sv=x" });
      expect(azureCredentialFromEnv({ AZURE_STORAGE_SAS_TOKEN: "sv=x", AZURE_STORAGE_KEY: "k" })).toEqual({ kind: "shared-key", accountKey: "k" });
      expect(azureCredentialFromEnv({ AZURE_STORAGE_SAS_TOKEN: "sv=x", AZURE_STORAGE_KEY: "k", AZURE_STORAGE_CONNECTION_STRING: "c" })).toEqual({ kind: "connection-string", connectionString: "c" });
    });

    it("works with a connection string, an account key and a SAS token taken from env", async () => {
      const src = join(dir, "cred.bin");
      await writeFile(src, "credentials");
      const connectionString = `DefaultEndpointsProtocol=http;AccountName=${ACCOUNT};AccountKey=${KEY};BlobEndpoint=${endpoint};`;
      const sas = generateAccountSASQueryParameters(
        {
          permissions: AccountSASPermissions.parse("rwdlc"),
          resourceTypes: AccountSASResourceTypes.parse("sco").toString(),
          services: AccountSASServices.parse("b").toString(),
          expiresOn: new Date(Date.now() + 3_600_000),
        },
        new StorageSharedKeyCredential(ACCOUNT, KEY),
      ).toString();
      const envs = [{ AZURE_STORAGE_CONNECTION_STRING: connectionString }, { AZURE_STORAGE_KEY: KEY }, { AZURE_STORAGE_SAS_TOKEN: `?${sas}` }];
      for (const [i, env] of envs.entries()) {
        const s = createAzureStore({ account: ACCOUNT, container: CONTAINER, endpoint, env });
        await s.putFile(`cred/${i}`, src);
        expect(await s.head(`cred/${i}`)).toMatchObject({ bytes: 11 });
      }
    });

    it("refuses a connection string for another account without echoing it", () => {
      const connectionString = `DefaultEndpointsProtocol=http;AccountName=someoneelse;AccountKey=${KEY};BlobEndpoint=${endpoint};`;
      let err: unknown;
      try {
        createAzureStore({ account: ACCOUNT, container: CONTAINER, credential: { kind: "connection-string", connectionString } });
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: "INVALID_ARGUMENT", reason: "azure_account_mismatch" });
      expect((err as Error).message).not.toContain(KEY);
    });

    it("maps a wrong key to PERMISSION_DENIED and a dead endpoint to UNAVAILABLE, without leaking the key", async () => {
      const wrongKey = Buffer.from("not the key").toString("base64");
      const s = store({ credential: { kind: "shared-key", accountKey: wrongKey } });
      const err = await rejection(s.head("runs/1/model.pt"));
      expect(err).toMatchObject({ code: "PERMISSION_DENIED" });
      expect((err as Error).message).toContain(CONTAINER);
      expect(JSON.stringify({ m: (err as Error).message, c: String((err as Error).cause) })).not.toContain(wrongKey);

      const port = await freePort();
      const dead = store({ endpoint: `http://127.0.0.1:${port}/${ACCOUNT}`, maxTries: 1 });
      expect(await rejection(dead.head("k"))).toMatchObject({ code: "UNAVAILABLE", reason: "storage_unavailable" });
    });
  });
});
