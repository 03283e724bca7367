import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { openObjectStore } from "./open-store.js";

describe("openObjectStore", () => {
  const dir = mkdtempSync(join(tmpdir(), "gpuorch-open-store-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("picks the backend by scheme and hands back the key", () => {
    const cases: [string, string, string][] = [
      ["s3://ckpt-bucket/runs/1/model.pt", "s3", "runs/1/model.pt"],
      ["minio://127.0.0.1:9000/ckpt-bucket/a/b", "minio", "a/b"],
      ["az://devstoreaccount1/ckpts/a/b", "az", "a/b"],
      ["gs://ckpt-bucket/a/b", "gs", "a/b"],
      [`file://${dir}/x`, "file", `${dir}/x`],
    ];
    for (const [uri, scheme, key] of cases) {
      const { store, location } = openObjectStore(uri, { env: {} });
      expect([store.scheme, location.key]).toEqual([scheme, key]);
      expect(store.uriOf(location.key)).toBe(uri);
    }
  });

  it("round-trips a file through file:// with its checksum", async () => {
    const src = join(dir, "src.bin");
    writeFileSync(src, "checkpoint bytes");
    const { store, location } = openObjectStore(`file://${dir}/store/ckpt.bin`);
    const put = await store.putFile(location.key, src);
    expect(put).toEqual({ uri: `file://${dir}/store/ckpt.bin`, bytes: 16, sha256: createHash("sha256").update("checkpoint bytes").digest("hex") });
    const got = await store.getFile(location.key, join(dir, "back.bin"));
    expect(got).toEqual({ bytes: 16, sha256: put.sha256 });
  });

  it("names the field when the URI is not an object URI", () => {
    expect(() => openObjectStore("ftp://x/y", {}, "checkpoint.uri")).toThrow(/checkpoint\.uri|ftp/);
    expect(() => openObjectStore("s3://Bad_Bucket/k", {}, "checkpoint.uri")).toThrow(/bucket/);
  });
});
