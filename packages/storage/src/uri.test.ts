import { AppError } from "@gpuorch/core";
import { classifyUri } from "@gpuorch/spec";
import { describe, expect, it } from "vitest";
import type { ObjectLocation } from "./types.js";
import { joinKey, objectUri, parseObjectUri } from "./uri.js";

function invalid(uri: string, field?: string): AppError {
  try {
    parseObjectUri(uri, field);
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
  throw new Error(`expected ${uri} to be refused`);
}

describe("parseObjectUri", () => {
  it.each<[string, ObjectLocation]>([
    ["file:///data/ckpt/100/model.pt", { scheme: "file", bucket: "", key: "/data/ckpt/100/model.pt" }],
    ["file://localhost/data/x", { scheme: "file", bucket: "", key: "/data/x" }],
    ["file:///data/a%20b/%25.bin", { scheme: "file", bucket: "", key: "/data/a b/%.bin" }],
    ["file:///data/./x/../y/", { scheme: "file", bucket: "", key: "/data/y/" }],
    ["/data/plain path ok", { scheme: "file", bucket: "", key: "/data/plain path ok" }],
    ["/data/100%.bin", { scheme: "file", bucket: "", key: "/data/100%.bin" }],
    ["s3://my-bucket/ckpt/job-1/100/model.pt", { scheme: "s3", bucket: "my-bucket", key: "ckpt/job-1/100/model.pt" }],
    ["S3://my-bucket/k", { scheme: "s3", bucket: "my-bucket", key: "k" }],
    ["s3://my-bucket", { scheme: "s3", bucket: "my-bucket", key: "" }],
    ["s3://my-bucket/", { scheme: "s3", bucket: "my-bucket", key: "" }],
    ["s3://my-bucket/dir/", { scheme: "s3", bucket: "my-bucket", key: "dir/" }],
    ["s3://my-bucket/a%20b?c#d", { scheme: "s3", bucket: "my-bucket", key: "a b?c#d" }],
    ["minio://127.0.0.1:9000/bkt/a/b", { scheme: "minio", bucket: "bkt", key: "a/b", endpoint: "127.0.0.1:9000" }],
    ["minio://minio.internal/bkt/k", { scheme: "minio", bucket: "bkt", key: "k", endpoint: "minio.internal" }],
    ["az://acct01/ckpts/job/1.pt", { scheme: "az", bucket: "ckpts", key: "job/1.pt", account: "acct01" }],
    ["gs://my_bucket.example/obj/x", { scheme: "gs", bucket: "my_bucket.example", key: "obj/x" }],
  ])("parses %s", (uri, loc) => {
    expect(parseObjectUri(uri)).toEqual(loc);
  });

  it.each([
    ["", "empty"],
    ["relative/path", "relative path"],
    ["https://example.com/x", "http(s) URLs are not supported"],
    ["git@github.com:org/repo.git", "git repositories"],
    ["s4://bucket/key", "did you mean 's3://'"],
    ["s3:/bucket/key", "lacks '//'"],
    ["s3://Bad_Bucket/key", "not a valid S3 bucket name"],
    ["s3://bucket/a b", "whitespace"],
    ["s3://bucket//key", "must not start with '/'"],
    ["s3://bucket/%zz", "malformed percent-escape"],
    ["file://server/share/x", "names host 'server'"],
    ["file:///a%00b", "NUL"],
    ["minio://http:9000x/bkt/key", "not a host[:port]"],
    ["minio://host:9000", "not a valid bucket name"],
    ["az://acct01/Bad_Container/blob", "not a container name"],
    [`s3://bucket/${"k".repeat(1025)}`, "1025 bytes"],
  ])("refuses %j (%s) with INVALID_ARGUMENT naming the field", (uri, why) => {
    const e = invalid(uri, "checkpoint.uri");
    expect(e.code).toBe("INVALID_ARGUMENT");
    expect(e.reason).toBe("invalid_object_uri");
    expect(e.message).toContain(why);
    expect(e.fields).toEqual([{ field: "checkpoint.uri", message: expect.stringContaining(why) as unknown }]);
  });

  it("accepts exactly what the spec accepts for data URIs", () => {
    const uris = ["s3://ab/k", "s3://a/k", "gs://x.y/z", "az://ab/cont/x", "minio://h:1/bb/k", "file:///", "file:///x", "/x", "x", "ftp://h/x"];
    for (const uri of uris) {
      const spec = classifyUri(uri, false).ok;
      let ours = true;
      try {
        parseObjectUri(uri);
      } catch {
        ours = false;
      }
      // Relative paths are fine in a spec (resolved later) but not as an object location.
      expect({ uri, ours }).toEqual({ uri, ours: spec && uri !== "x" });
    }
  });
});

describe("objectUri", () => {
  it.each<ObjectLocation>([
    { scheme: "file", bucket: "", key: "/data/a b/100%/x\ty" },
    { scheme: "s3", bucket: "bkt", key: "ckpt/run 1/%41/ü.pt" },
    { scheme: "s3", bucket: "bkt", key: "" },
    { scheme: "minio", bucket: "bkt", key: "a/b", endpoint: "127.0.0.1:9000" },
    { scheme: "az", bucket: "cont", key: "x/y", account: "acct01" },
    { scheme: "gs", bucket: "bkt", key: "dir/" },
  ])("is the inverse of parseObjectUri for $scheme://$bucket/$key", (loc) => {
    const uri = objectUri(loc);
    expect(classifyUri(uri, false).ok).toBe(true);
    expect(parseObjectUri(uri)).toEqual(loc);
  });

  it("writes percent-escapes only where the spec needs them", () => {
    expect(objectUri({ scheme: "s3", bucket: "b", key: "a b/50%/c" })).toBe("s3://b/a%20b/50%25/c");
    expect(objectUri({ scheme: "file", bucket: "", key: "/tmp/x" })).toBe("file:///tmp/x");
  });

  it("refuses a minio or az location without its endpoint or account", () => {
    expect(() => objectUri({ scheme: "minio", bucket: "b", key: "k" })).toThrow(/needs its endpoint/);
    expect(() => objectUri({ scheme: "az", bucket: "b", key: "k" })).toThrow(/needs its account/);
  });
});

describe("joinKey", () => {
  it.each<[string, string[], string]>([
    ["ckpt/job-1/", ["100", "model.pt"], "ckpt/job-1/100/model.pt"],
    ["ckpt/job-1", ["100/", "/model.pt"], "ckpt/job-1/100/model.pt"],
    ["", ["a", "b"], "a/b"],
    ["/data/ckpt", ["100", "shard 0.pt"], "/data/ckpt/100/shard 0.pt"],
    ["ckpt", ["100/"], "ckpt/100/"],
    ["ckpt/", [], "ckpt/"],
    ["ckpt", ["", "//"], "ckpt"],
  ])("joinKey(%j, ...%j) is %j", (prefix, parts, want) => {
    expect(joinKey(prefix, ...parts)).toBe(want);
  });

  it("refuses . and .. segments so a key cannot climb out of its prefix", () => {
    expect(() => joinKey("ckpt", "../other")).toThrow(AppError);
    expect(() => joinKey("ckpt", "a/./b")).toThrow(/'\.'/);
  });
});
