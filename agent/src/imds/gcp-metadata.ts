import { isIPv4 } from "node:net";
import { AppError } from "@gpuorch/core";
import type { CloudLabels, ReadLabels } from "./cloud-labels.js";
import { excerpt, imdsRequest, invalidResponse, type ImdsContext, type ImdsResponse } from "./imds-request.js";

/*
 * Google Compute Engine metadata server:
 * https://cloud.google.com/compute/docs/metadata/querying-metadata (the
 * `Metadata-Flavor: Google` request header is required; the server answers
 * with the same header, which is how a client knows it reached the real one)
 * https://cloud.google.com/compute/docs/metadata/predefined-metadata-keys
 * (instance/zone = projects/<number>/zones/<zone>, instance/machine-type =
 * projects/<number>/machineTypes/<type>, network-interfaces/0/ip,
 * network-interfaces/0/network = projects/<number>/networks/<name>,
 * scheduling/preemptible = TRUE|FALSE).
 */

export const GCP_DEFAULT_ENDPOINT = "http://metadata.google.internal";

const BASE = "/computeMetadata/v1/instance/";
const FLAVOR = { "Metadata-Flavor": "Google" };

/** Identifies GCP by instance/zone answered with `Metadata-Flavor: Google`; the returned function reads the rest. */
export async function probeGcp(ctx: ImdsContext): Promise<ReadLabels> {
  const res = await imdsRequest(ctx, "GET", `${BASE}zone`, FLAVOR);
  if (res.status !== 200 || !fromGoogle(res)) {
    throw new AppError(
      "UNAVAILABLE",
      `gcp metadata server at ${ctx.endpoint}: GET ${BASE}zone answered ${res.status}${fromGoogle(res) ? "" : " without Metadata-Flavor: Google"}`,
      { reason: "imds_unavailable", meta: { provider: "gcp", status: res.status } },
    );
  }
  return () => readGcp(ctx, res.body.trim());
}

/** Whether the answer carries `Metadata-Flavor: Google`, i.e. came from the real metadata server. */
export function fromGoogle(res: ImdsResponse): boolean {
  return res.headers.get("metadata-flavor") === "Google";
}

async function readGcp(ctx: ImdsContext, zonePath: string): Promise<CloudLabels> {
  /** The key's value; undefined for a 404 when `optional`. */
  const get = async (key: string, optional = false): Promise<string | undefined> => {
    const res = await imdsRequest(ctx, "GET", BASE + key, FLAVOR);
    if (optional && res.status === 404) return undefined;
    if (res.status !== 200) throw invalidResponse(ctx, `GET ${BASE}${key} answered ${res.status}`);
    if (!fromGoogle(res)) throw invalidResponse(ctx, `GET ${BASE}${key} answered without Metadata-Flavor: Google`);
    return res.body.trim();
  };
  const [machineTypePath, privateIp, network, preemptible, provisioningModel] = await Promise.all([
    get("machine-type"),
    get("network-interfaces/0/ip"),
    get("network-interfaces/0/network"),
    get("scheduling/preemptible"),
    // Spot VMs carry provisioningModel SPOT; the key is newer than `preemptible` and not on
    // every metadata server, so a 404 means "not reported", not "broken".
    get("scheduling/provisioning-model", true),
  ]);
  const zone = /^projects\/[^/]+\/zones\/([a-z0-9-]+)$/.exec(zonePath)?.[1];
  if (zone === undefined || !zone.includes("-")) {
    throw invalidResponse(ctx, `instance/zone is ${excerpt(zonePath)}, not projects/<project>/zones/<zone>`);
  }
  // A zone is its region plus one suffix: us-central1-a → us-central1.
  const region = zone.slice(0, zone.lastIndexOf("-"));
  const instanceType = /^projects\/[^/]+\/machineTypes\/([a-z0-9-]+)$/.exec(machineTypePath ?? "")?.[1];
  if (instanceType === undefined) {
    throw invalidResponse(ctx, `instance/machine-type is ${excerpt(machineTypePath ?? "")}, not projects/<project>/machineTypes/<type>`);
  }
  if (privateIp === undefined || !isIPv4(privateIp)) {
    throw invalidResponse(ctx, `network-interfaces/0/ip is ${excerpt(privateIp ?? "")}, not an IPv4 address`);
  }
  // The full path, not just the name: "default" exists in every project.
  if (network === undefined || !/^projects\/[^/]+\/networks\/[^/]+$/.test(network)) {
    throw invalidResponse(ctx, `network-interfaces/0/network is ${excerpt(network ?? "")}, not projects/<project>/networks/<name>`);
  }
  if (preemptible !== "TRUE" && preemptible !== "FALSE") {
    throw invalidResponse(ctx, `scheduling/preemptible is ${excerpt(preemptible ?? "")}, not TRUE or FALSE`);
  }
  const spot = preemptible === "TRUE" || provisioningModel?.toUpperCase() === "SPOT";
  return { provider: "gcp", region, zone, network, instanceType, spot, privateIp };
}
