import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AppError } from "@gpuorch/core";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { envVarName, loadConfig } from "./config.js";

const schema = z.object({
  grpcPort: z.number().int().min(0).max(65535).default(7070),
  host: z.string().default("127.0.0.1"),
  embedded: z.boolean().default(false),
  logLevel: z.enum(["debug", "info", "warn"]).default("info"),
  databaseUrl: z.string().optional(),
  tags: z.array(z.string()).default([]),
  tls: z.object({ cert: z.string(), key: z.string() }).optional(),
});

const dir = mkdtempSync(join(tmpdir(), "gpuorch-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function errorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (e) {
    if (e instanceof AppError) return e;
    throw e;
  }
  throw new Error("expected an AppError");
}

describe("loadConfig", () => {
  it("uses schema defaults when nothing is given", () => {
    expect(loadConfig(schema, { env: {} })).toEqual({
      grpcPort: 7070,
      host: "127.0.0.1",
      embedded: false,
      logLevel: "info",
      tags: [],
    });
  });

  it("layers file < env < flags", () => {
    const f = file("c.yaml", "grpcPort: 1000\nhost: file-host\nlogLevel: warn\n");
    const cfg = loadConfig(schema, {
      file: f,
      env: { GPUORCH_GRPC_PORT: "2000", GPUORCH_HOST: "env-host" },
      flags: { host: "flag-host", embedded: undefined },
    });
    expect(cfg.grpcPort).toBe(2000);
    expect(cfg.host).toBe("flag-host");
    expect(cfg.logLevel).toBe("warn");
    expect(cfg.embedded).toBe(false);
  });

  it("coerces env strings to numbers, booleans and lists", () => {
    const cfg = loadConfig(schema, {
      env: { GPUORCH_GRPC_PORT: " 8080 ", GPUORCH_EMBEDDED: "yes", GPUORCH_TAGS: "a, b,c", GPUORCH_UNKNOWN: "x" },
    });
    expect(cfg).toMatchObject({ grpcPort: 8080, embedded: true, tags: ["a", "b", "c"] });
  });

  it("honours a custom prefix and ignores empty variables", () => {
    const cfg = loadConfig(schema, { envPrefix: "X_", env: { X_HOST: "h", X_GRPC_PORT: "" } });
    expect(cfg.host).toBe("h");
    expect(cfg.grpcPort).toBe(7070);
  });

  it("reads JSON files and deep-merges nested objects", () => {
    const f = file("c.json", JSON.stringify({ tls: { cert: "c.pem", key: "k.pem" } }));
    const cfg = loadConfig(schema, { file: f, env: {}, flags: { tls: { key: "other.pem" } } });
    expect(cfg.tls).toEqual({ cert: "c.pem", key: "other.pem" });
  });

  it("lists every bad key with the source of its value", () => {
    const f = file("bad.yaml", "logLevel: loud\nbogus: 1\n");
    const err = errorOf(() =>
      loadConfig(schema, { file: f, env: { GPUORCH_GRPC_PORT: "abc" }, flags: { embedded: "maybe" } }),
    );
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.reason).toBe("invalid_config");
    expect(err.message).toContain("grpcPort (from GPUORCH_GRPC_PORT): expected a number, got 'abc'");
    expect(err.message).toContain(`logLevel (from ${f}):`);
    expect(err.message).toContain(`bogus (from ${f}): unknown key`);
    expect(err.message).toContain("embedded (from --embedded): expected a boolean, got 'maybe'");
    expect(err.fields.map((x) => x.field).sort()).toEqual(["bogus", "embedded", "grpcPort", "logLevel"]);
  });

  it("says how to set a missing required key", () => {
    const required = z.object({ databaseUrl: z.string() });
    const err = errorOf(() => loadConfig(required, { env: {} }));
    expect(err.message).toContain(
      "databaseUrl: required (set GPUORCH_DATABASE_URL, --database-url or databaseUrl in the config file)",
    );
  });

  it("reports range errors with the offending value", () => {
    const err = errorOf(() => loadConfig(schema, { env: { GPUORCH_GRPC_PORT: "70000" } }));
    expect(err.message).toMatch(/grpcPort \(from GPUORCH_GRPC_PORT\): .*65535.*got 70000/);
  });

  it("reports a missing file and a malformed file clearly", () => {
    expect(errorOf(() => loadConfig(schema, { file: join(dir, "nope.yaml"), env: {} })).message).toMatch(/not found/);
    const bad = file("broken.yaml", "a: [1, 2\n");
    const err = errorOf(() => loadConfig(schema, { file: bad, env: {} }));
    expect(err.message).toContain("not valid YAML or JSON");
    expect(err.fields[0]?.line).toBeGreaterThan(0);
  });

  it("maps camelCase keys to SCREAMING_SNAKE env names", () => {
    expect(envVarName("grpcPort")).toBe("GPUORCH_GRPC_PORT");
    expect(envVarName("s3Bucket")).toBe("GPUORCH_S3_BUCKET");
    expect(envVarName("httpURLPrefix", "X_")).toBe("X_HTTP_URL_PREFIX");
  });
});
