import { describe, expect, it } from "vitest";
import { readCloudLabels } from "./cloud-labels.js";
import {
  AWS_SPOT_P4D,
  AWS_TOKEN,
  GCP_A2_STANDARD,
  awsImds,
  azureImds,
  azureInstanceDocument,
  gcpMetadata,
  startScriptedImds,
} from "@gpuorch/testing";
import { scriptedImdsPerTest, appErrorOf } from "./imds.test-util.js";

const serve = scriptedImdsPerTest();

const rejection = appErrorOf;

const AZURE_SPOT_DOC = azureInstanceDocument({ location: "westus2", zone: "1", vmSize: "Standard_NC24ads_A100_v4", priority: "Spot" }, "10.1.0.4");

describe("aws (IMDSv2)", () => {
  it("gets a session token with a TTL, then reads every label with it", async () => {
    const s = await serve(awsImds(AWS_SPOT_P4D));
    const got = await readCloudLabels({ provider: "aws", endpoint: s.url });
    expect(got).toEqual({
      labels: {
        provider: "aws",
        region: "us-east-1",
        zone: "us-east-1a",
        network: "vpc-0a1b2c3d4e5f67890",
        instanceType: "p4d.24xlarge",
        spot: true,
        privateIp: "172.31.12.34",
      },
      source: { provider: "aws", endpoint: s.url },
    });
    const [first, ...gets] = s.requests;
    expect(first?.method).toBe("PUT");
    expect(first?.path).toBe("/latest/api/token");
    expect(Number(first?.headers["x-aws-ec2-metadata-token-ttl-seconds"])).toBeGreaterThan(0);
    expect(gets.map((r) => `${r.method} ${r.path}`).sort()).toEqual(
      [
        "GET /latest/meta-data/instance-life-cycle",
        "GET /latest/meta-data/instance-type",
        "GET /latest/meta-data/local-ipv4",
        "GET /latest/meta-data/mac",
        "GET /latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/vpc-id",
        "GET /latest/meta-data/placement/availability-zone",
        "GET /latest/meta-data/placement/region",
      ].sort(),
    );
    for (const r of gets) expect(r.headers["x-aws-ec2-metadata-token"]).toBe(AWS_TOKEN);
  });

  it("reports an on-demand instance as not spot", async () => {
    const s = await serve(awsImds({ ...AWS_SPOT_P4D, lifeCycle: "on-demand" }));
    expect((await readCloudLabels({ provider: "aws", endpoint: s.url })).labels.spot).toBe(false);
  });

  it("fails clearly when the token request is refused (401)", async () => {
    const s = await serve(awsImds(AWS_SPOT_P4D, { "PUT /latest/api/token": { status: 401 } }));
    const err = await rejection(readCloudLabels({ provider: "aws", endpoint: s.url }));
    expect(err.code).toBe("FAILED_PRECONDITION");
    expect(err.reason).toBe("imds_refused");
    expect(err.message).toContain("PUT /latest/api/token refused the session token");
    expect(s.requests).toHaveLength(1);
  });

  it("fails clearly when a read with the token is refused (401)", async () => {
    const s = await serve(awsImds(AWS_SPOT_P4D, { "GET /latest/meta-data/instance-type": { status: 401 } }));
    const err = await rejection(readCloudLabels({ provider: "aws", endpoint: s.url }));
    expect(err.reason).toBe("imds_refused");
    expect(err.message).toContain("GET /latest/meta-data/instance-type refused the session token");
  });

  it("names the category that answered garbage", async () => {
    const s = await serve(awsImds(AWS_SPOT_P4D, { "GET /latest/meta-data/placement/region": { body: "<html><body>Welcome</body></html>" } }));
    const err = await rejection(readCloudLabels({ provider: "aws", endpoint: s.url }));
    expect(err.reason).toBe("imds_invalid_response");
    expect(err.message).toContain("placement/region is");
    expect(err.message).toContain("not a region name");
  });

  it("rejects a zone outside the region", async () => {
    const s = await serve(awsImds({ ...AWS_SPOT_P4D, zone: "eu-west-1b" }));
    const err = await rejection(readCloudLabels({ provider: "aws", endpoint: s.url }));
    expect(err.message).toContain("not a zone of us-east-1");
  });
});

describe("gcp", () => {
  it("sends Metadata-Flavor: Google and parses zone, region, machine type, network and IP", async () => {
    const s = await serve(gcpMetadata(GCP_A2_STANDARD));
    const got = await readCloudLabels({ provider: "gcp", endpoint: s.url });
    expect(got.labels).toEqual({
      provider: "gcp",
      region: "us-central1",
      zone: "us-central1-a",
      network: "projects/123456789012/networks/default",
      instanceType: "a2-highgpu-1g",
      spot: false,
      privateIp: "10.128.0.7",
    });
    expect(s.requests.map((r) => r.path).sort()).toEqual(
      [
        "/computeMetadata/v1/instance/machine-type",
        "/computeMetadata/v1/instance/network-interfaces/0/ip",
        "/computeMetadata/v1/instance/network-interfaces/0/network",
        "/computeMetadata/v1/instance/scheduling/preemptible",
        "/computeMetadata/v1/instance/scheduling/provisioning-model",
        "/computeMetadata/v1/instance/zone",
      ].sort(),
    );
    for (const r of s.requests) {
      expect(r.method).toBe("GET");
      expect(r.headers["metadata-flavor"]).toBe("Google");
    }
  });

  it("treats provisioning model SPOT as spot, and a missing provisioning-model key as not reported", async () => {
    const spot = await serve(gcpMetadata({ ...GCP_A2_STANDARD, provisioningModel: "SPOT" }));
    expect((await readCloudLabels({ provider: "gcp", endpoint: spot.url })).labels.spot).toBe(true);
    const preemptible = await serve(gcpMetadata({ ...GCP_A2_STANDARD, preemptible: "TRUE", provisioningModel: undefined }));
    expect((await readCloudLabels({ provider: "gcp", endpoint: preemptible.url })).labels.spot).toBe(true);
  });

  it("refuses an answer without the Metadata-Flavor: Google response header", async () => {
    const s = await serve(() => ({ body: "projects/1/zones/us-central1-a" }));
    const err = await rejection(readCloudLabels({ provider: "gcp", endpoint: s.url }));
    expect(err.reason).toBe("imds_unavailable");
    expect(err.message).toContain("without Metadata-Flavor: Google");
  });

  it("names the key that answered garbage", async () => {
    const s = await serve(
      gcpMetadata(GCP_A2_STANDARD, {
        "GET /computeMetadata/v1/instance/machine-type": { headers: { "Metadata-Flavor": "Google" }, body: "a2-highgpu-1g" },
      }),
    );
    const err = await rejection(readCloudLabels({ provider: "gcp", endpoint: s.url }));
    expect(err.reason).toBe("imds_invalid_response");
    expect(err.message).toContain('instance/machine-type is "a2-highgpu-1g", not projects/<project>/machineTypes/<type>');
  });
});

describe("azure", () => {
  it("sends Metadata: true with the api-version and parses the instance document", async () => {
    const s = await serve(azureImds(AZURE_SPOT_DOC));
    const got = await readCloudLabels({ provider: "azure", endpoint: s.url });
    expect(got.labels).toEqual({
      provider: "azure",
      region: "westus2",
      zone: "1",
      network: "",
      instanceType: "Standard_NC24ads_A100_v4",
      spot: true,
      privateIp: "10.1.0.4",
    });
    expect(s.requests).toHaveLength(1);
    expect(s.requests[0]?.method).toBe("GET");
    expect(s.requests[0]?.path).toBe("/metadata/instance?api-version=2021-02-01");
    expect(s.requests[0]?.headers["metadata"]).toBe("true");
  });

  it("reports Regular priority as not spot and keeps an empty zone", async () => {
    const s = await serve(azureImds(azureInstanceDocument({ location: "eastus", zone: "", vmSize: "Standard_ND96asr_v4", priority: "Regular" }, "10.0.0.5")));
    const { labels } = await readCloudLabels({ provider: "azure", endpoint: s.url });
    expect(labels.spot).toBe(false);
    expect(labels.zone).toBe("");
  });

  it("names the missing field of a broken document", async () => {
    const doc = azureInstanceDocument({ location: "westus2", zone: "1", vmSize: "x", priority: "Spot" }, "10.1.0.4") as { compute: Record<string, unknown> };
    delete doc.compute.vmSize;
    const s = await serve(azureImds(doc));
    const err = await rejection(readCloudLabels({ provider: "azure", endpoint: s.url }));
    expect(err.reason).toBe("imds_invalid_response");
    expect(err.message).toContain("compute.vmSize is missing");
  });

  it("says when the answer is not JSON", async () => {
    const s = await serve(() => ({ body: "<html>captive portal</html>" }));
    const err = await rejection(readCloudLabels({ provider: "azure", endpoint: s.url }));
    expect(err.message).toContain('answered "<html>captive portal</html>", not JSON');
  });
});

describe("timeouts and failures", () => {
  it("bounds a service that never answers by the request timeout", async () => {
    const s = await serve(() => "hang");
    const started = performance.now();
    const err = await rejection(readCloudLabels({ provider: "aws", endpoint: s.url, timeoutMs: 50 }));
    expect(performance.now() - started).toBeLessThan(2000);
    expect(err.code).toBe("DEADLINE_EXCEEDED");
    expect(err.reason).toBe("imds_timeout");
    expect(err.message).toContain("no answer within 50 ms");
  });

  it("bounds the whole read by its total timeout even when each request is quick enough", async () => {
    let n = 0;
    const aws = awsImds(AWS_SPOT_P4D);
    // Answers the token, then stalls the reads past the total while each stays under the per-request limit.
    const s = await serve((req) => (n++ === 0 ? aws(req) : "hang"));
    const err = await rejection(readCloudLabels({ provider: "aws", endpoint: s.url, timeoutMs: 1000, totalTimeoutMs: 60 }));
    expect(err.reason).toBe("imds_timeout");
    expect(err.message).toContain("the whole read took longer than 60 ms");
  });

  it("reports a closed port as unreachable", async () => {
    const s = await startScriptedImds(() => ({ body: "" }));
    await s.close();
    const err = await rejection(readCloudLabels({ provider: "gcp", endpoint: s.url, timeoutMs: 500 }));
    expect(err.reason).toBe("imds_unreachable");
    expect(err.message).toContain("ECONNREFUSED");
  });

  it("stops when the caller aborts", async () => {
    const s = await serve(() => "hang");
    const ac = new AbortController();
    const p = readCloudLabels({ provider: "azure", endpoint: s.url, timeoutMs: 5000, signal: ac.signal });
    ac.abort();
    const err = await rejection(p);
    expect(err.reason).toBe("imds_aborted");
  });

  it("refuses an oversized answer", async () => {
    const s = await serve(() => ({ body: "x".repeat(200 * 1024) }));
    const err = await rejection(readCloudLabels({ provider: "azure", endpoint: s.url }));
    expect(err.reason).toBe("imds_invalid_response");
    expect(err.message).toContain("answer larger than");
  });

  it("rejects an endpoint that is not an http(s) base URL", async () => {
    const err = await rejection(readCloudLabels({ provider: "aws", endpoint: "169.254.169.254" }));
    expect(err.code).toBe("INVALID_ARGUMENT");
    expect(err.reason).toBe("invalid_imds_endpoint");
  });
});

describe("auto", () => {
  it.each([
    ["aws", awsImds(AWS_SPOT_P4D)],
    ["gcp", gcpMetadata(GCP_A2_STANDARD)],
    ["azure", azureImds(AZURE_SPOT_DOC)],
  ] as const)("picks %s when only its service answers as itself", async (provider, script) => {
    const s = await serve(script);
    const got = await readCloudLabels({ provider: "auto", endpoint: s.url, timeoutMs: 500 });
    expect(got.source).toEqual({ provider, endpoint: s.url });
    expect(got.labels.provider).toBe(provider);
    // All three were asked, each in its own protocol.
    expect(s.requests.some((r) => r.method === "PUT" && r.path === "/latest/api/token")).toBe(true);
    expect(s.requests.some((r) => r.path === "/computeMetadata/v1/instance/zone" && r.headers["metadata-flavor"] === "Google")).toBe(true);
    expect(s.requests.some((r) => r.path === "/metadata/instance?api-version=2021-02-01" && r.headers["metadata"] === "true")).toBe(true);
  });

  it("probes in parallel and gives up after one timeout when nothing answers", async () => {
    const s = await serve(() => "hang");
    const started = performance.now();
    const err = await rejection(readCloudLabels({ provider: "auto", endpoint: s.url, timeoutMs: 80 }));
    const took = performance.now() - started;
    expect(took).toBeLessThan(1500);
    expect(err.code).toBe("UNAVAILABLE");
    expect(err.reason).toBe("imds_unavailable");
    expect(err.message).toMatch(/no instance metadata service answered:\n {2}- aws .*no answer within 80 ms\n {2}- gcp .*\n {2}- azure /);
  });

  it("reports a service that identified itself but then broke, not 'nothing answered'", async () => {
    const s = await serve(gcpMetadata(GCP_A2_STANDARD, { "GET /computeMetadata/v1/instance/network-interfaces/0/ip": { status: 500, headers: { "Metadata-Flavor": "Google" } } }));
    const err = await rejection(readCloudLabels({ provider: "auto", endpoint: s.url, timeoutMs: 500 }));
    expect(err.reason).toBe("imds_invalid_response");
    expect(err.message).toContain("GET /computeMetadata/v1/instance/network-interfaces/0/ip answered 500");
  });

  it("refuses to guess when two services identify themselves", async () => {
    const aws = awsImds(AWS_SPOT_P4D);
    const gcp = gcpMetadata(GCP_A2_STANDARD);
    const s = await serve((req) => (req.path.startsWith("/computeMetadata/") ? gcp(req) : aws(req)));
    const err = await rejection(readCloudLabels({ provider: "auto", endpoint: s.url, timeoutMs: 500 }));
    expect(err.reason).toBe("imds_ambiguous");
  });
});
