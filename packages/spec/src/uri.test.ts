import { describe, expect, it } from "vitest";
import { classifyUri, isScript } from "./uri.js";

describe("classifyUri", () => {
  it.each([
    ["./train.py", true, "local"],
    ["/abs/path/code", true, "local"],
    ["train.py", true, "local"],
    ["file:///srv/code.tar.gz", true, "file"],
    ["s3://bucket/code.tar.gz", true, "s3"],
    ["s3://my.bucket-1", false, "s3"],
    ["gs://bucket/key", false, "gs"],
    ["az://account1/container/blob", false, "az"],
    ["minio://minio.local:9000/bucket/key", false, "minio"],
    ["git+https://github.com/org/repo.git", true, "git"],
    ["git+https://github.com/org/repo#main", true, "git"],
    ["git+ssh://git@github.com/org/repo.git", true, "git"],
    ["https://github.com/org/repo.git", true, "git"],
    ["https://github.com/org/repo.git#v1.2.0", true, "git"],
    ["git@github.com:org/repo.git", true, "git"],
    ["git@github.com:org/repo.git#abc123", true, "git"],
    ["s3://bucket", false, "s3"],
    ["gs://bucket", false, "gs"],
    ["minio://h:9000/bucket", false, "minio"],
    ["https://github.com/o/r.git/#v1", true, "git"],
  ])("%s (git %s) → %s", (uri, allowGit, kind) => {
    expect(classifyUri(uri, allowGit)).toEqual({ ok: true, value: kind });
  });

  it.each([
    ["", true, "empty string"],
    ["https://example.com/code.tar.gz", true, "only for git repositories"],
    ["https://example.com/data", false, "not supported for data"],
    ["git+https://github.com/org/repo.git", false, "only accepted for entrypoint.uri"],
    ["git@github.com:org/repo.git", false, "only accepted for entrypoint.uri"],
    ["s4://bucket/x", false, "(did you mean 's3://'?)"],
    ["ftp://host/x", true, "unsupported URI scheme 'ftp://'"],
    ["s3:/bucket/x", false, "lacks '//'"],
    ["s3://B/x", false, "not a valid S3 bucket name"],
    ["az://account/", false, "not a container name"],
    ["az://Acc/container", false, "not a storage account name"],
    ["minio://bucket-only", false, "is not a valid bucket name"],
    ["file://", false, "names no path"],
    ["https://github.com/org/repo.git#", true, "git ref after '#'"],
    [" ./train.py", true, "leading or trailing spaces"],
    ["./a\nb", true, "control character"],
    ["s3://bucket/a b", false, "whitespace"],
    [`s3://bucket/${"k".repeat(5000)}`, false, "at most 4096 characters"],
    ["az://acct1", false, "'' is not a container name"],
    ["az://acct1/", false, "'' is not a container name"],
    ["minio://minio.local:9000", false, "'' is not a valid bucket name"],
    ["git+https://#main", true, "has no host"],
    ["git+ssh:///org/repo", true, "has no host"],
  ])("%j (git %s) is refused: %s", (uri, allowGit, msg) => {
    const r = classifyUri(uri, allowGit);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toContain(msg);
  });
});

describe("isScript", () => {
  it.each([
    ["./train.py", true],
    ["s3://b/run.SH", true],
    ["s3://b/code.tar.gz", false],
    ["https://github.com/o/r.git#x.py", false],
    ["./dir/", false],
    ["s3://b/run.py?x=1", true],
    ["./a.sh#frag", true],
    ["./dir.py/x", false],
    ["run.PY?", true],
  ])("%s → %s", (uri, script) => {
    expect(isScript(uri)).toBe(script);
  });
});
