import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppError } from "@gpuorch/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileStore, FILE_CHECKSUM_SUFFIX } from "./file-store.js";
import { hashFile } from "./verify.js";
import { collect, rejection } from "./store.test-util.js";

let dir: string;
const store = createFileStore();

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "gpuorch-file-store-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function source(name: string, bytes: number | Buffer): Promise<string> {
  const path = join(dir, "src", name);
  await mkdir(join(dir, "src"), { recursive: true });
  await writeFile(path, typeof bytes === "number" ? randomBytes(bytes) : bytes);
  return path;
}

/** Everything under `d`, recursively, as paths relative to it. */
async function tree(d: string): Promise<string[]> {
  return (await readdir(d, { recursive: true })).map(String).sort();
}

describe("file store", () => {
  it("puts a file atomically with its checksum, heads it cheaply and gets it back verified", async () => {
    const src = await source("model.pt", 3 * 1024 * 1024 + 17);
    const key = join(dir, "store", "ckpt", "100", "model.pt");
    const progress: [number, number | null][] = [];
    const put = await store.putFile(key, src, { onProgress: (d, t) => progress.push([d, t]) });
    const want = await hashFile(src);
    expect(put).toEqual({ uri: `file://${key}`, ...want });
    expect(progress.at(-1)).toEqual([want.bytes, want.bytes]);

    const info = await store.head(key);
    expect(info).toMatchObject({ key, bytes: want.bytes, sha256: want.sha256 });
    expect(info?.updatedAt).toBeInstanceOf(Date);
    // The sidecar sits next to the data; nothing temporary is left.
    expect(await tree(join(dir, "store", "ckpt", "100"))).toEqual(["model.pt", `model.pt${FILE_CHECKSUM_SUFFIX}`]);

    const dest = join(dir, "dl", "model.pt");
    const got = await store.getFile(key, dest, { onProgress: (d, t) => progress.push([d, t]) });
    expect(got).toEqual(want);
    expect((await readFile(dest)).equals(await readFile(src))).toBe(true); // not toEqual: element-wise on 3 MB is slow
    expect(progress.at(-1)).toEqual([want.bytes, want.bytes]);
  });

  it("overwrites an object in place of the old one and keeps the checksum in step", async () => {
    const key = join(dir, "obj.bin");
    await store.putFile(key, await source("a", Buffer.from("first version")));
    const second = await store.putFile(key, await source("b", Buffer.from("second, longer version")));
    expect((await store.head(key))?.sha256).toBe(second.sha256);
    expect(await readFile(key, "utf8")).toBe("second, longer version");
    expect((await tree(dir)).filter((p) => !p.startsWith("src"))).toEqual(["obj.bin", `obj.bin${FILE_CHECKSUM_SUFFIX}`]);
  });

  it("reports no checksum for a file it did not write or that changed behind its back", async () => {
    const foreign = join(dir, "foreign.bin");
    await writeFile(foreign, "written by hand");
    expect(await store.head(foreign)).toMatchObject({ bytes: 15, sha256: null });

    const key = join(dir, "obj.bin");
    await store.putFile(key, await source("a", 1000));
    // Replaced through a rename (new inode): the sidecar no longer describes it.
    await writeFile(join(dir, "other"), randomBytes(1000));
    await rename(join(dir, "other"), key);
    expect(await store.head(key)).toMatchObject({ bytes: 1000, sha256: null });

    await store.putFile(key, await source("b", 1000));
    // Rewritten in place with another size.
    await writeFile(key, randomBytes(999));
    expect(await store.head(key)).toMatchObject({ bytes: 999, sha256: null });
  });

  it("getFile refuses bytes that do not match the recorded or expected checksum and leaves nothing behind", async () => {
    const key = join(dir, "obj.bin");
    await store.putFile(key, await source("a", 4096));
    const dest = join(dir, "dl", "obj.bin");

    const e1 = await rejection(store.getFile(key, dest, { expectSha256: "0".repeat(64) }));
    expect(e1).toMatchObject({ code: "ABORTED", reason: "checksum_mismatch" });

    // A sidecar that matches the file's identity but not its bytes (bit rot, or a torn write).
    const sidecar = `${key}${FILE_CHECKSUM_SUFFIX}`;
    const record = JSON.parse(await readFile(sidecar, "utf8")) as { sha256: string };
    await writeFile(sidecar, JSON.stringify({ ...record, sha256: "f".repeat(64) }));
    expect((await store.head(key))?.sha256).toBe("f".repeat(64));
    const e2 = await rejection(store.getFile(key, dest));
    expect(e2).toMatchObject({ code: "ABORTED", reason: "checksum_mismatch" });
    expect(await readdir(join(dir, "dl"))).toEqual([]);
  });

  it("getFile enforces maxBytes and reports a missing object as NOT_FOUND", async () => {
    const key = join(dir, "big.bin");
    await store.putFile(key, await source("a", 10_000));
    const dest = join(dir, "dl", "big.bin");
    expect(await rejection(store.getFile(key, dest, { maxBytes: 9_999 }))).toMatchObject({ code: "FAILED_PRECONDITION", reason: "object_too_large" });
    expect(await store.getFile(key, dest, { maxBytes: 10_000 })).toMatchObject({ bytes: 10_000 });
    await rm(dest);
    expect(await rejection(store.getFile(join(dir, "nope"), dest))).toMatchObject({ code: "NOT_FOUND", reason: "object_not_found" });
    expect(await readdir(join(dir, "dl"))).toEqual([]);
    expect(await store.head(join(dir, "nope"))).toBeNull();
    expect(await store.head(join(dir, "src"))).toBeNull(); // a directory is not an object
  });

  it("lists files under a prefix in key order, without sidecars, temporary files or link loops", async () => {
    const root = join(dir, "ckpt");
    const put = (rel: string) => store.putFile(join(root, rel), join(dir, "src", "x"));
    await source("x", 10);
    for (const rel of ["job-1/200/model.pt", "job-1/100/model.pt", "job-1/100/COMPLETE", "job-1-old/1/model.pt", "job-10/5/m.pt", "job-1.txt"]) await put(rel);
    await writeFile(join(root, "job-1", "by-hand.log"), "x");
    await writeFile(join(root, "job-1", "100", "model.pt.gpuorch-tmp-123-abc"), "half");
    await symlink(root, join(root, "job-1", "loop"));
    await symlink(join(root, "job-1.txt"), join(root, "job-1", "link.txt"));

    const keys = async (prefix: string) => (await collect(store.list(prefix))).map((o) => o.key.slice(root.length + 1));
    expect(await keys(`${root}/job-1/`)).toEqual(["job-1/100/COMPLETE", "job-1/100/model.pt", "job-1/200/model.pt", "job-1/by-hand.log", "job-1/link.txt"]);
    // A prefix that is not a directory matches file and directory names alike, in byte order ('-' < '.' < '/' < '0').
    expect(await keys(`${root}/job-1`)).toEqual([
      "job-1-old/1/model.pt",
      "job-1.txt",
      "job-1/100/COMPLETE",
      "job-1/100/model.pt",
      "job-1/200/model.pt",
      "job-1/by-hand.log",
      "job-1/link.txt",
      "job-10/5/m.pt",
    ]);
    expect(await keys(`${root}/job-1/1`)).toEqual(["job-1/100/COMPLETE", "job-1/100/model.pt"]);
    expect(await collect(store.list(join(dir, "missing", "x")))).toEqual([]);

    const infos = await collect(store.list(`${root}/job-1/`));
    expect(infos.find((o) => o.key.endsWith("by-hand.log"))?.sha256).toBeNull();
    expect(infos.find((o) => o.key.endsWith("200/model.pt"))?.sha256).toMatch(/^[0-9a-f]{64}$/);
    await expect(collect(store.list("relative/prefix"))).rejects.toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("deletes present and absent keys alike, sidecars included", async () => {
    const a = join(dir, "a.bin");
    const b = join(dir, "b.bin");
    await store.putFile(a, await source("a", 10));
    await store.putFile(b, await source("b", 10));
    await store.delete([a, join(dir, "absent"), a]);
    expect(await store.head(a)).toBeNull();
    expect(await store.head(b)).not.toBeNull();
    await expect(stat(`${a}${FILE_CHECKSUM_SUFFIX}`)).rejects.toMatchObject({ code: "ENOENT" });
    await store.delete([]);
    expect(await rejection(store.delete([join(dir, "src")]))).toMatchObject({ code: "INVALID_ARGUMENT" });
  });

  it("refuses relative, unnormalized and reserved keys and a missing source", async () => {
    const src = await source("a", 10);
    for (const key of ["rel/key", `${dir}/x/../y`, `${dir}/dir/`, `${dir}/x${FILE_CHECKSUM_SUFFIX}`, `${dir}/x.gpuorch-tmp-1`]) {
      const e = await rejection(store.putFile(key, src));
      expect(e).toBeInstanceOf(AppError);
      expect(e).toMatchObject({ code: "INVALID_ARGUMENT", reason: "invalid_object_key" });
    }
    expect(await rejection(store.putFile(join(dir, "k"), join(dir, "no-such-file")))).toMatchObject({ code: "INVALID_ARGUMENT" });
    expect(store.uriOf("/data/a b")).toBe("file:///data/a%20b");
  });

  it("an aborted upload leaves neither the object nor temporary files", async () => {
    const src = await source("big", 8 * 1024 * 1024);
    const key = join(dir, "out", "big");
    const before = new AbortController();
    before.abort();
    expect(await rejection(store.putFile(key, src, { signal: before.signal }))).toMatchObject({ name: "AbortError" });

    const mid = new AbortController();
    let calls = 0;
    const e = await rejection(
      store.putFile(key, src, {
        signal: mid.signal,
        onProgress: () => {
          if (++calls === 1) mid.abort();
        },
      }),
    );
    expect(e).toMatchObject({ name: "AbortError" });
    expect(await store.head(key)).toBeNull();
    expect(await readdir(join(dir, "out"))).toEqual([]);
  });
});
