import { afterEach, describe, expect, it } from "vitest";
import { AWS_PRODUCT_FILTERS, averageSpotByZoneGroup, awsZoneGroupOfAz, createAwsPriceFetcher } from "./aws.js";
import { PricingFetchError } from "./errors.js";
import { type RecordedRequest, type RecordingServer, type Reply, startRecordingServer, testdata } from "./recording-server.js";

const NOW = new Date("2030-01-01T00:00:00.000Z");
const clock = { now: () => NOW };
const credentials = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY" };
const GPU_TOKEN = "eyJwYWdlIjoyLCJmYW1pbHkiOiJHUFUgaW5zdGFuY2UifQ==";
const SPOT_TOKEN = "AAEAAbz2k7Xc2y0Zl0eXAMPLEnextToken1";

const json = (body: string, status = 200): Reply => ({
  status,
  headers: { "content-type": "application/x-amz-json-1.1", "x-amzn-requestid": "4c1bd1ae-7f7d-4d6c-9a7e-EXAMPLE" },
  body,
});
const xml = (body: string, status = 200): Reply => ({ status, headers: { "content-type": "text/xml;charset=UTF-8" }, body });

/** The SigV4 credential scope names the region a request was signed for. */
const signedRegion = (r: RecordedRequest): string => /Credential=[^/]+\/\d{8}\/([a-z0-9-]+)\/(\w+)\/aws4_request/.exec(String(r.headers["authorization"]))?.[1] ?? "?";
const signedService = (r: RecordedRequest): string => /Credential=[^/]+\/\d{8}\/[a-z0-9-]+\/(\w+)\/aws4_request/.exec(String(r.headers["authorization"]))?.[1] ?? "?";
const form = (r: RecordedRequest): Record<string, string> => Object.fromEntries(new URLSearchParams(r.body));

interface Overrides {
  pricing?: (body: { Filters: { Field: string; Value: string }[]; NextToken?: string }) => Reply | undefined;
  spot?: (region: string, params: Record<string, string>) => Reply | undefined;
}

function awsHandler(over: Overrides = {}) {
  return (r: RecordedRequest): Reply => {
    if (r.headers["x-amz-target"] === "AWSPriceListService.GetProducts") {
      const body = JSON.parse(r.body) as { Filters: { Field: string; Value: string }[]; NextToken?: string };
      const o = over.pricing?.(body);
      if (o) return o;
      const family = body.Filters.find((f) => f.Field === "instanceFamily")?.Value;
      if (family === "GPU instance") return json(testdata(body.NextToken === GPU_TOKEN ? "aws/get-products-gpu-2.json" : "aws/get-products-gpu-1.json"));
      if (family === "Machine Learning ASIC Instances") return json(testdata("aws/get-products-asic-1.json"));
      return json(JSON.stringify({ FormatVersion: "aws_v1", PriceList: [] }));
    }
    const params = form(r);
    const region = signedRegion(r);
    const o = over.spot?.(region, params);
    if (o) return o;
    if (region === "us-east-1") return xml(testdata(params["NextToken"] === SPOT_TOKEN ? "aws/spot-us-east-1-2.xml" : "aws/spot-us-east-1-1.xml"));
    if (region === "us-west-2") return xml(testdata("aws/spot-us-west-2-1.xml"));
    if (region === "af-south-1") return xml(testdata("aws/ec2-opt-in-required.xml"), 401);
    return xml(testdata("aws/ec2-malformed.xml"), 500);
  };
}

describe("AWS price fetcher against a local Price List + EC2 endpoint", () => {
  let server: RecordingServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  const fetcherFor = (s: RecordingServer, extra: { regions?: string[] } = {}) =>
    createAwsPriceFetcher({ clock, credentials, pricingEndpoint: s.url, ec2Endpoint: s.url, maxAttempts: 1, ...extra });

  it("asks GetProducts per accelerated family with the documented filters, following NextToken", async () => {
    server = await startRecordingServer(awsHandler());
    await fetcherFor(server).fetch(new AbortController().signal);
    const pricing = server.requests.filter((r) => r.headers["x-amz-target"] !== undefined);
    expect(pricing.map((r) => [r.method, r.url, r.headers["x-amz-target"], r.headers["content-type"], signedRegion(r), signedService(r)])).toEqual([
      ["POST", "/", "AWSPriceListService.GetProducts", "application/x-amz-json-1.1", "us-east-1", "pricing"],
      ["POST", "/", "AWSPriceListService.GetProducts", "application/x-amz-json-1.1", "us-east-1", "pricing"],
      ["POST", "/", "AWSPriceListService.GetProducts", "application/x-amz-json-1.1", "us-east-1", "pricing"],
    ]);
    const filters = (family: string) => [...AWS_PRODUCT_FILTERS, { Type: "TERM_MATCH", Field: "instanceFamily", Value: family }];
    expect(pricing.map((r) => JSON.parse(r.body) as unknown)).toEqual([
      { ServiceCode: "AmazonEC2", Filters: filters("GPU instance"), FormatVersion: "aws_v1", MaxResults: 100 },
      { ServiceCode: "AmazonEC2", Filters: filters("GPU instance"), FormatVersion: "aws_v1", MaxResults: 100, NextToken: GPU_TOKEN },
      { ServiceCode: "AmazonEC2", Filters: filters("Machine Learning ASIC Instances"), FormatVersion: "aws_v1", MaxResults: 100 },
    ]);
    expect(AWS_PRODUCT_FILTERS.map((f) => `${f.Field}=${f.Value}`)).toEqual([
      "operatingSystem=Linux",
      "tenancy=Shared",
      "preInstalledSw=NA",
      "capacitystatus=Used",
      "licenseModel=No License required",
      "operation=RunInstances",
    ]);
  });

  it("asks DescribeSpotPriceHistory per region for its instance types, Linux/UNIX, the price in effect now, following nextToken", async () => {
    server = await startRecordingServer(awsHandler());
    await fetcherFor(server).fetch(new AbortController().signal);
    const ec2 = server.requests.filter((r) => r.headers["x-amz-target"] === undefined);
    expect(ec2.map((r) => [r.method, r.url, r.headers["content-type"], signedRegion(r), signedService(r)])).toEqual([
      ["POST", "/", "application/x-www-form-urlencoded", "af-south-1", "ec2"],
      ["POST", "/", "application/x-www-form-urlencoded", "us-east-1", "ec2"],
      ["POST", "/", "application/x-www-form-urlencoded", "us-east-1", "ec2"],
      ["POST", "/", "application/x-www-form-urlencoded", "us-west-2", "ec2"],
    ]);
    const common = { Action: "DescribeSpotPriceHistory", Version: "2016-11-15", "ProductDescription.1": "Linux/UNIX", StartTime: "2030-01-01T00:00:00Z", EndTime: "2030-01-01T00:00:00Z", MaxResults: "1000" };
    const east = { ...common, "InstanceType.1": "g4dn.xlarge", "InstanceType.2": "g6f.large", "InstanceType.3": "inf2.xlarge", "InstanceType.4": "p4d.24xlarge", "InstanceType.5": "p5.48xlarge", "InstanceType.6": "trn1.32xlarge" };
    expect(ec2.map(form)).toEqual([
      { ...common, "InstanceType.1": "g4dn.xlarge" },
      east,
      { ...east, NextToken: SPOT_TOKEN },
      { ...common, "InstanceType.1": "g4dn.xlarge" },
    ]);
  });

  it("builds whole-instance offers: on-demand from the Price List, spot = mean over AZs of each AZ's latest price", async () => {
    server = await startRecordingServer(awsHandler());
    const { offers, warnings } = await fetcherFor(server).fetch(new AbortController().signal);
    const byKey = new Map(offers.map((o) => [`${o.region}/${o.zone}/${o.instanceType}`, o]));
    expect(byKey.get("us-east-1//p4d.24xlarge")).toEqual({
      provider: "aws",
      region: "us-east-1",
      zone: "",
      instanceType: "p4d.24xlarge",
      gpuType: "A100",
      gpuCount: 8,
      gpuMemoryGb: 40,
      vcpus: 96,
      memoryGb: 1152,
      onDemandMicrosPerHour: 21_957_642n,
      spotMicrosPerHour: 8_590_750n, // (8.5 + 8.6 + 8.67225) / 3, the README's sanity row
      spotInterruptionsPerHour: expect.closeTo(-Math.log(1 - 0.075) / 730, 12) as unknown as number,
      spotAvailability: 0.7,
      interconnect: "efa",
      priceDate: "2030-01-01",
      source: "aws-price-list",
    });
    // p5: us-east-1a's older 30.0 is superseded by its 28.106467; 1d has the same price.
    expect(byKey.get("us-east-1//p5.48xlarge")?.spotMicrosPerHour).toBe(28_106_467n);
    expect(byKey.get("us-east-1//g6f.large")).toMatchObject({ gpuType: "L4", gpuCount: 0.125, vcpus: 2, memoryGb: 8, spotMicrosPerHour: 80_800n, interconnect: null });
    expect(byKey.get("us-east-1//trn1.32xlarge")).toMatchObject({ gpuType: "Trainium", gpuCount: 16, onDemandMicrosPerHour: 21_500_000n, spotMicrosPerHour: 9_050_000n, interconnect: "efa" });
    expect(byKey.get("us-east-1//inf2.xlarge")).toMatchObject({ gpuType: "Inferentia2", gpuCount: 1, gpuMemoryGb: 32 });
    // A Local Zone group is its own offer with its own AZs' spot.
    expect(byKey.get("us-west-2//g4dn.xlarge")).toMatchObject({ onDemandMicrosPerHour: 526_000n, spotMicrosPerHour: 175_000n });
    expect(byKey.get("us-west-2/us-west-2-lax-1/g4dn.xlarge")).toMatchObject({ onDemandMicrosPerHour: 631_000n, spotMicrosPerHour: 255_000n });
    // An opt-in region the account has not enabled: on-demand only, said in a warning.
    expect(byKey.get("af-south-1//g4dn.xlarge")).toMatchObject({ spotMicrosPerHour: null, spotInterruptionsPerHour: null, spotAvailability: null });
    expect(offers).toHaveLength(9);
    expect(warnings).toEqual([
      "p5.48xlarge: marketoption CapacityBlock",
      "p7.48xlarge: unknown accelerator family, skipped (add it to AWS_FAMILIES)",
      "af-south-1: no spot prices (OptInRequired: the account may not have this region enabled)",
    ]);
  });

  it("limits itself to the configured regions", async () => {
    server = await startRecordingServer(awsHandler());
    const { offers } = await fetcherFor(server, { regions: ["us-west-2"] }).fetch(new AbortController().signal);
    expect(new Set(offers.map((o) => o.region))).toEqual(new Set(["us-west-2"]));
    expect(server.requests.filter((r) => r.headers["x-amz-target"] === undefined).map(signedRegion)).toEqual(["us-west-2"]);
  });

  it("fails whole with a typed error when GetProducts is throttled, answers 500, or sends an unreadable PriceList entry", async () => {
    const cases: [Reply, string, number | undefined][] = [
      [json(testdata("aws/get-products-throttled.json"), 400), "throttled", 400],
      [json('{"__type":"InternalErrorException","message":"internal"}', 500), "http", 500],
      [json(testdata("aws/get-products-malformed-item.json")), "malformed", undefined],
      [json("{not json"), "malformed", 200],
    ];
    for (const [reply, kind, status] of cases) {
      server = await startRecordingServer(awsHandler({ pricing: () => reply }));
      const err = await fetcherFor(server)
        .fetch(new AbortController().signal)
        .catch((e: unknown) => e);
      expect(err, kind).toBeInstanceOf(PricingFetchError);
      expect(err).toMatchObject({ provider: "aws", kind, status });
      await server.close();
      server = undefined;
    }
  });

  it("fails whole when DescribeSpotPriceHistory is throttled or unreadable in any region (no partial catalog)", async () => {
    for (const [reply, kind] of [
      [xml(testdata("aws/ec2-request-limit-exceeded.xml"), 503), "throttled"],
      [xml(testdata("aws/ec2-malformed.xml")), "malformed"],
    ] as const) {
      server = await startRecordingServer(awsHandler({ spot: (region) => (region === "us-west-2" ? reply : undefined) }));
      await expect(fetcherFor(server).fetch(new AbortController().signal)).rejects.toMatchObject({ name: "PricingFetchError", kind });
      await server.close();
      server = undefined;
    }
  });

  it("says 'credentials' when the service rejects the signature", async () => {
    server = await startRecordingServer(awsHandler({ pricing: () => json('{"__type":"UnrecognizedClientException","message":"The security token included in the request is invalid."}', 400) }));
    await expect(fetcherFor(server).fetch(new AbortController().signal)).rejects.toMatchObject({ kind: "credentials", code: "FAILED_PRECONDITION" });
  });

  it("says 'network' when nothing listens, and 'aborted' when the caller aborts", async () => {
    server = await startRecordingServer(awsHandler());
    const url = server.url;
    await server.close();
    server = undefined;
    const f = createAwsPriceFetcher({ clock, credentials, pricingEndpoint: url, ec2Endpoint: url, maxAttempts: 1 });
    await expect(f.fetch(new AbortController().signal)).rejects.toMatchObject({ kind: "network", code: "UNAVAILABLE" });
    const ac = new AbortController();
    ac.abort();
    await expect(f.fetch(ac.signal)).rejects.toMatchObject({ kind: "aborted" });
  });
});

describe("AWS spot averaging", () => {
  it("maps AZs to their region or Local Zone group", () => {
    expect(awsZoneGroupOfAz("us-east-1", "us-east-1f")).toBe("");
    expect(awsZoneGroupOfAz("us-west-2", "us-west-2-lax-1a")).toBe("us-west-2-lax-1");
    expect(awsZoneGroupOfAz("us-west-2", "us-east-1a")).toBeNull();
  });

  it("rounds the mean half up to a micro-dollar", () => {
    const at = new Date("2030-01-01T00:00:00Z");
    const m = averageSpotByZoneGroup("us-east-1", [
      { InstanceType: "g5.xlarge", AvailabilityZone: "us-east-1a", SpotPrice: "0.000001", Timestamp: at },
      { InstanceType: "g5.xlarge", AvailabilityZone: "us-east-1b", SpotPrice: "0.000002", Timestamp: at },
    ] as never);
    expect(m.get("g5.xlarge|")).toBe(2n);
  });
});
