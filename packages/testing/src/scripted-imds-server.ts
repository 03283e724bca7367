import { createServer, type IncomingHttpHeaders, type ServerResponse } from "node:http";
import type { Socket } from "node:net";

/*
 * Test support: real HTTP servers on 127.0.0.1 that answer like each cloud's
 * metadata service, including the refusals the real ones give to requests
 * missing their header. Not a cloud VM: the bodies follow the providers'
 * documented shapes (sources next to each builder).
 */

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
}

export interface ScriptedAnswer {
  status?: number;
  headers?: Record<string, string>;
  body?: string;
}

/** "hang" accepts the request and never answers. */
export type ImdsScript = (req: RecordedRequest) => ScriptedAnswer | "hang";

export interface ScriptedImdsServer {
  url: string;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

export async function startScriptedImds(script: ImdsScript): Promise<ScriptedImdsServer> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res: ServerResponse) => {
    const rec: RecordedRequest = { method: req.method ?? "", path: req.url ?? "", headers: req.headers };
    requests.push(rec);
    req.resume();
    const answer = script(rec);
    if (answer === "hang") return;
    res.writeHead(answer.status ?? 200, { "Content-Type": "text/plain", ...answer.headers });
    res.end(answer.body ?? "");
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const addr = server.address();
  if (addr === null || typeof addr === "string") throw new Error("no port");
  return {
    url: `http://127.0.0.1:${addr.port}`,
    requests,
    close: () =>
      new Promise<void>((resolve, reject) => {
        for (const s of sockets) s.destroy();
        server.close((e) => (e ? reject(e) : resolve()));
      }),
  };
}

export const AWS_TOKEN = "AQAEAHbZk5s0n9Rz3lE7gBYxWqbKfNqOyl8xJ0Y6c1w7w1a3m0m8Zg==";

export interface AwsInstance {
  region: string;
  zone: string;
  instanceType: string;
  localIpv4: string;
  mac: string;
  vpcId: string;
  lifeCycle: string;
  /** Body of spot/instance-action; undefined: no notice (404). Read on every request, so a test may change it. */
  instanceAction?: string;
  /** Body of events/recommendations/rebalance; undefined: no recommendation (404). */
  rebalance?: string;
}

/** Instance values shaped like the examples in the EC2 user guide's instance metadata categories page. */
export const AWS_SPOT_P4D: AwsInstance = {
  region: "us-east-1",
  zone: "us-east-1a",
  instanceType: "p4d.24xlarge",
  localIpv4: "172.31.12.34",
  mac: "0e:49:61:0f:c3:11",
  vpcId: "vpc-0a1b2c3d4e5f67890",
  lifeCycle: "spot",
};

/**
 * EC2 IMDS with HttpTokens=required (IMDSv2 only):
 * https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html
 * PUT /latest/api/token needs X-aws-ec2-metadata-token-ttl-seconds (1–21600) and
 * returns the token; GETs without a valid token get 401; unknown paths 404.
 */
export function awsImds(instance: AwsInstance, overrides: Record<string, ScriptedAnswer> = {}): ImdsScript {
  return (req) => {
    const override = overrides[`${req.method} ${req.path}`];
    if (override) return override;
    if (req.method === "PUT" && req.path === "/latest/api/token") {
      const ttl = Number(req.headers["x-aws-ec2-metadata-token-ttl-seconds"]);
      if (!Number.isInteger(ttl) || ttl < 1 || ttl > 21600) return { status: 400, body: "" };
      return { body: AWS_TOKEN };
    }
    if (req.method !== "GET") return { status: 405, body: "" };
    if (req.headers["x-aws-ec2-metadata-token"] !== AWS_TOKEN) return { status: 401, body: "" };
    const values: Record<string, string> = {
      "/latest/meta-data/placement/region": instance.region,
      "/latest/meta-data/placement/availability-zone": instance.zone,
      "/latest/meta-data/instance-type": instance.instanceType,
      "/latest/meta-data/local-ipv4": instance.localIpv4,
      "/latest/meta-data/mac": instance.mac,
      "/latest/meta-data/instance-life-cycle": instance.lifeCycle,
      [`/latest/meta-data/network/interfaces/macs/${instance.mac}/vpc-id`]: instance.vpcId,
    };
    // Spot notices: https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html
    // and https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/rebalance-recommendations.html (404 until issued).
    if (instance.instanceAction !== undefined) values["/latest/meta-data/spot/instance-action"] = instance.instanceAction;
    if (instance.rebalance !== undefined) values["/latest/meta-data/events/recommendations/rebalance"] = instance.rebalance;
    const v = values[req.path];
    return v === undefined ? { status: 404, body: notFoundHtml } : { body: v };
  };
}

// What EC2's IMDS sends with a 404 (an HTML page, not JSON).
const notFoundHtml =
  '<?xml version="1.0" encoding="iso-8859-1"?>\n<!DOCTYPE html>\n<html><head><title>404 - Not Found</title></head><body><h1>404 - Not Found</h1></body></html>\n';

export interface GcpInstance {
  projectNumber: string;
  zone: string;
  machineType: string;
  ip: string;
  network: string;
  preemptible: "TRUE" | "FALSE";
  /** undefined: the key is absent (404). */
  provisioningModel?: string;
  /** instance/preempted; read on every request, so a test may change it. undefined: absent (404). */
  preempted?: "TRUE" | "FALSE";
}

/** Values in the shapes of the predefined metadata keys page (projects/<number>/zones/<zone>, …). */
export const GCP_A2_STANDARD: GcpInstance = {
  projectNumber: "123456789012",
  zone: "us-central1-a",
  machineType: "a2-highgpu-1g",
  ip: "10.128.0.7",
  network: "default",
  preemptible: "FALSE",
  provisioningModel: "STANDARD",
};

/**
 * GCE metadata server: https://cloud.google.com/compute/docs/metadata/querying-metadata
 * Requests without `Metadata-Flavor: Google` get 403; every answer carries
 * `Metadata-Flavor: Google`.
 */
export function gcpMetadata(instance: GcpInstance, overrides: Record<string, ScriptedAnswer> = {}): ImdsScript {
  const flavor = { "Metadata-Flavor": "Google" };
  return (req) => {
    const override = overrides[`${req.method} ${req.path}`];
    if (override) return override;
    if (req.headers["metadata-flavor"] !== "Google") {
      return { status: 403, headers: { ...flavor, "Content-Type": "text/html; charset=UTF-8" }, body: "Missing Metadata-Flavor:Google header." };
    }
    const base = "/computeMetadata/v1/instance/";
    const values: Record<string, string | undefined> = {
      [`${base}zone`]: `projects/${instance.projectNumber}/zones/${instance.zone}`,
      [`${base}machine-type`]: `projects/${instance.projectNumber}/machineTypes/${instance.machineType}`,
      [`${base}network-interfaces/0/ip`]: instance.ip,
      [`${base}network-interfaces/0/network`]: `projects/${instance.projectNumber}/networks/${instance.network}`,
      [`${base}scheduling/preemptible`]: instance.preemptible,
      [`${base}scheduling/provisioning-model`]: instance.provisioningModel,
      [`${base}preempted`]: instance.preempted,
    };
    const v = req.method === "GET" ? values[req.path] : undefined;
    return v === undefined ? { status: 404, headers: flavor, body: "Not Found" } : { headers: { ...flavor, "Content-Type": "application/text" }, body: v };
  };
}

/**
 * The instance document of Azure IMDS api-version 2021-02-01, trimmed to a
 * representative subset of the documented sample response at
 * https://learn.microsoft.com/en-us/azure/virtual-machines/instance-metadata-service
 * (keeps its shape: compute.* strings, network.interface[].ipv4.ipAddress[]).
 */
export function azureInstanceDocument(compute: { location: string; zone: string; vmSize: string; priority: string }, privateIp: string): object {
  return {
    compute: {
      azEnvironment: "AzurePublicCloud",
      isHostCompatibilityLayerVm: "false",
      licenseType: "",
      location: compute.location,
      name: "examplevmname",
      offer: "UbuntuServer",
      osType: "Linux",
      placementGroupId: "",
      platformFaultDomain: "0",
      platformUpdateDomain: "0",
      priority: compute.priority,
      provider: "Microsoft.Compute",
      resourceGroupName: "gpu-nodes",
      resourceId: "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/gpu-nodes/providers/Microsoft.Compute/virtualMachines/examplevmname",
      sku: "18.04-LTS",
      subscriptionId: "00000000-0000-0000-0000-000000000000",
      tags: "",
      userData: "",
      version: "18.04.202103250",
      vmId: "02aab8a4-74ef-476e-8182-f6d2ba4166a6",
      vmScaleSetName: "",
      vmSize: compute.vmSize,
      zone: compute.zone,
    },
    network: {
      interface: [
        {
          ipv4: {
            ipAddress: [{ privateIpAddress: privateIp, publicIpAddress: "" }],
            subnet: [{ address: "10.1.0.0", prefix: "24" }],
          },
          ipv6: { ipAddress: [] },
          macAddress: "000D3AF806EC",
        },
      ],
    },
  };
}

/**
 * Azure IMDS: requests need `Metadata: true` (else 400) and an api-version;
 * https://learn.microsoft.com/en-us/azure/virtual-machines/instance-metadata-service
 */
export function azureImds(
  document: object,
  overrides: Record<string, ScriptedAnswer> = {},
  /** The Scheduled Events document (api-version 2020-07-01), asked on every request; default: no events. */
  scheduledEvents: () => object = () => ({ DocumentIncarnation: 0, Events: [] }),
): ImdsScript {
  return (req) => {
    const override = overrides[`${req.method} ${req.path}`];
    if (override) return override;
    const json = { "Content-Type": "application/json; charset=utf-8" };
    if (req.headers["metadata"] !== "true") {
      return { status: 400, headers: json, body: JSON.stringify({ error: "Bad request. Required metadata header not specified" }) };
    }
    if (req.method === "GET" && req.path === "/metadata/instance?api-version=2021-02-01") return { headers: json, body: JSON.stringify(document) };
    // https://learn.microsoft.com/en-us/azure/virtual-machines/linux/scheduled-events
    if (req.method === "GET" && req.path === "/metadata/scheduledevents?api-version=2020-07-01") {
      return { headers: json, body: JSON.stringify(scheduledEvents()) };
    }
    return { status: 404, headers: json, body: JSON.stringify({ error: "Not found" }) };
  };
}
