import { AppError, type NodeLabels } from "@gpuorch/core";
import { type Logger, loadConfig } from "@gpuorch/runtime";
import { describe, expect, it } from "vitest";
import { agentConfigSchema } from "../agent-config.js";
import { resolveNodeLabels, type NodeLabelsConfig } from "./node-labels.js";
import { AWS_SPOT_P4D, GCP_A2_STANDARD, awsImds, gcpMetadata } from "@gpuorch/testing";
import { scriptedImdsPerTest } from "./imds.test-util.js";

const serve = scriptedImdsPerTest();

interface LogLine {
  level: string;
  obj: object | string;
  msg: string | undefined;
}

function recordingLogger(lines: LogLine[] = []): Logger & { lines: LogLine[] } {
  const at =
    (level: string) =>
    (obj: object | string, msg?: string): void => {
      lines.push({ level, obj, msg });
    };
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error"), child: () => recordingLogger(lines) };
}

const EMPTY: NodeLabels = { provider: "", region: "", zone: "", network: "", instanceType: "", spot: false, privateIp: "" };

function config(over: Partial<NodeLabelsConfig>): NodeLabelsConfig {
  return { ...EMPTY, imds: "off", imdsTimeoutMs: 300, ...over };
}

const refuseFetch: typeof fetch = () => Promise.reject(new Error("the metadata service must not be asked"));

describe("resolveNodeLabels", () => {
  it("asks nothing when imds is off (the default), so on-prem nodes never wait", async () => {
    const got = await resolveNodeLabels(config({ provider: "onprem", region: "dc1" }), { logger: recordingLogger(), fetch: refuseFetch });
    expect(got).toEqual({ labels: { ...EMPTY, provider: "onprem", region: "dc1" }, fromImds: [], imds: null });
  });

  it("fills only the labels config left empty; configured ones win", async () => {
    const s = await serve(awsImds(AWS_SPOT_P4D));
    const logger = recordingLogger();
    const got = await resolveNodeLabels(config({ imds: "aws", imdsEndpoint: s.url, region: "us-east-1", network: "vpc-override", privateIp: "192.168.7.7" }), { logger });
    expect(got.labels).toEqual({
      provider: "aws",
      region: "us-east-1",
      zone: "us-east-1a",
      network: "vpc-override",
      instanceType: "p4d.24xlarge",
      spot: true,
      privateIp: "192.168.7.7",
    });
    expect(got.fromImds).toEqual(["provider", "zone", "instanceType", "spot"]);
    expect(got.imds).toEqual({ provider: "aws", endpoint: s.url });
    // The overridden values are logged so an operator can see the disagreement.
    expect(logger.lines.filter((l) => l.level === "info").map((l) => (l.obj as { label: string }).label)).toEqual(["network", "privateIp"]);
  });

  it("keeps a configured spot: true; takes spot from the service otherwise", async () => {
    const s = await serve(gcpMetadata(GCP_A2_STANDARD));
    const forced = await resolveNodeLabels(config({ imds: "gcp", imdsEndpoint: s.url, spot: true }), { logger: recordingLogger() });
    expect(forced.labels.spot).toBe(true);
    expect(forced.fromImds).not.toContain("spot");
    const read = await resolveNodeLabels(config({ imds: "gcp", imdsEndpoint: s.url }), { logger: recordingLogger() });
    expect(read.labels.spot).toBe(false);
    expect(read.fromImds).toContain("spot");
  });

  it("asks nothing when every label is configured", async () => {
    const all = { provider: "aws", region: "r", zone: "z", network: "n", instanceType: "t", spot: true, privateIp: "10.0.0.1" };
    const got = await resolveNodeLabels(config({ ...all, imds: "auto" }), { logger: recordingLogger(), fetch: refuseFetch });
    expect(got.labels).toEqual(all);
  });

  it("auto skips the service when the provider label is not a cloud", async () => {
    const got = await resolveNodeLabels(config({ imds: "auto", provider: "onprem" }), { logger: recordingLogger(), fetch: refuseFetch });
    expect(got.labels.provider).toBe("onprem");
    expect(got.imds).toBeNull();
  });

  it("auto narrows the probe to a configured cloud provider", async () => {
    const s = await serve(gcpMetadata(GCP_A2_STANDARD));
    const got = await resolveNodeLabels(config({ imds: "auto", provider: "gcp", imdsEndpoint: s.url }), { logger: recordingLogger() });
    expect(got.labels.zone).toBe("us-central1-a");
    expect(s.requests.every((r) => r.path.startsWith("/computeMetadata/"))).toBe(true);
  });

  it("auto falls back to the configured labels, with a warning, when no service answers", async () => {
    const s = await serve(() => "hang");
    const logger = recordingLogger();
    const started = performance.now();
    const got = await resolveNodeLabels(config({ imds: "auto", region: "here", imdsEndpoint: s.url, imdsTimeoutMs: 50 }), { logger });
    expect(performance.now() - started).toBeLessThan(1500);
    expect(got).toEqual({ labels: { ...EMPTY, region: "here" }, fromImds: [], imds: null });
    const warn = logger.lines.find((l) => l.level === "warn");
    expect(warn?.obj).toMatchObject({ reason: "imds_unavailable" });
  });

  it("an explicit provider that does not answer is an error", async () => {
    const s = await serve(() => "hang");
    await expect(resolveNodeLabels(config({ imds: "azure", imdsEndpoint: s.url, imdsTimeoutMs: 50 }), { logger: recordingLogger() })).rejects.toMatchObject({
      code: "DEADLINE_EXCEEDED",
      reason: "imds_timeout",
    });
  });

  it("an explicit provider contradicting the provider label is a config error", async () => {
    const err = await resolveNodeLabels(config({ imds: "aws", provider: "gcp" }), { logger: recordingLogger(), fetch: refuseFetch }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect(err).toMatchObject({ code: "INVALID_ARGUMENT", reason: "imds_provider_conflict" });
  });
});

describe("agent config", () => {
  it("reads imds, imdsEndpoint and imdsTimeoutMs from GPUORCH_* env with off / 1000 ms defaults", () => {
    expect(loadConfig(agentConfigSchema, { env: {} })).toMatchObject({ imds: "off", imdsTimeoutMs: 1000 });
    const c = loadConfig(agentConfigSchema, {
      env: { GPUORCH_IMDS: "auto", GPUORCH_IMDS_ENDPOINT: "http://127.0.0.1:8080", GPUORCH_IMDS_TIMEOUT_MS: "250" },
    });
    expect(c).toMatchObject({ imds: "auto", imdsEndpoint: "http://127.0.0.1:8080", imdsTimeoutMs: 250 });
  });

  it("rejects an unknown mode and a non-http endpoint, naming the variable", () => {
    expect(() => loadConfig(agentConfigSchema, { env: { GPUORCH_IMDS: "oracle" } })).toThrow(/GPUORCH_IMDS/);
    expect(() => loadConfig(agentConfigSchema, { env: { GPUORCH_IMDS_ENDPOINT: "ftp://x" } })).toThrow(/GPUORCH_IMDS_ENDPOINT/);
  });
});
