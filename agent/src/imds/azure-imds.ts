import { isIPv4 } from "node:net";
import { AppError } from "@gpuorch/core";
import type { CloudLabels, ReadLabels } from "./cloud-labels.js";
import { excerpt, imdsRequest, invalidResponse, type ImdsContext } from "./imds-request.js";

/*
 * Azure Instance Metadata Service, instance endpoint:
 * https://learn.microsoft.com/en-us/azure/virtual-machines/instance-metadata-service
 * GET /metadata/instance?api-version=2021-02-01 with `Metadata: true` (requests
 * without it are rejected with 400). Fields used: compute.location,
 * compute.zone ("" for a VM outside availability zones, else "1", "2", "3"),
 * compute.vmSize, compute.priority ("Regular", "Low" or "Spot"),
 * network.interface[0].ipv4.ipAddress[0].privateIpAddress.
 *
 * The network label stays empty: IMDS names the subnet only by its address
 * range (network.interface[].ipv4.subnet[]), never by the virtual network's
 * resource id, and two VNets may use the same range, so a range would group
 * nodes that cannot reach each other. Set `network` in config on Azure.
 */

export const AZURE_DEFAULT_ENDPOINT = "http://169.254.169.254";
export const AZURE_API_VERSION = "2021-02-01";

const PATH = `/metadata/instance?api-version=${AZURE_API_VERSION}`;

/** Identifies Azure by a JSON document with a `compute` object; the returned function parses the labels from it. */
export async function probeAzure(ctx: ImdsContext): Promise<ReadLabels> {
  const res = await imdsRequest(ctx, "GET", PATH, { Metadata: "true" });
  if (res.status !== 200) {
    throw new AppError("UNAVAILABLE", `azure instance metadata at ${ctx.endpoint}: GET ${PATH} answered ${res.status}`, {
      reason: "imds_unavailable",
      meta: { provider: "azure", status: res.status },
    });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(res.body);
  } catch {
    throw new AppError("UNAVAILABLE", `azure instance metadata at ${ctx.endpoint}: GET ${PATH} answered ${excerpt(res.body)}, not JSON`, {
      reason: "imds_unavailable",
      meta: { provider: "azure" },
    });
  }
  if (!isRecord(doc) || !isRecord(doc.compute)) {
    throw new AppError("UNAVAILABLE", `azure instance metadata at ${ctx.endpoint}: GET ${PATH} answered JSON without a compute object`, {
      reason: "imds_unavailable",
      meta: { provider: "azure" },
    });
  }
  const parsed = doc;
  return () => Promise.resolve(labelsFromAzureDocument(ctx, parsed));
}

function labelsFromAzureDocument(ctx: ImdsContext, doc: Record<string, unknown>): CloudLabels {
  const compute = isRecord(doc.compute) ? doc.compute : {};
  const text = (field: string): string => {
    const v = compute[field];
    if (typeof v !== "string") throw invalidResponse(ctx, `compute.${field} is ${v === undefined ? "missing" : JSON.stringify(v)}, not a string`);
    return v.trim();
  };
  const region = text("location");
  if (!/^[a-z0-9]+$/.test(region)) throw invalidResponse(ctx, `compute.location is ${excerpt(region)}, not a region name`);
  const zone = text("zone");
  const instanceType = text("vmSize");
  if (!/^[A-Za-z0-9_]+$/.test(instanceType)) throw invalidResponse(ctx, `compute.vmSize is ${excerpt(instanceType)}, not a VM size`);
  const priority = text("priority");
  const network = doc.network;
  const iface = isRecord(network) && Array.isArray(network.interface) ? (network.interface[0] as unknown) : undefined;
  const ipv4 = isRecord(iface) ? iface.ipv4 : undefined;
  const address = isRecord(ipv4) && Array.isArray(ipv4.ipAddress) ? (ipv4.ipAddress[0] as unknown) : undefined;
  const privateIp = isRecord(address) ? address.privateIpAddress : undefined;
  if (typeof privateIp !== "string" || !isIPv4(privateIp)) {
    throw invalidResponse(ctx, `network.interface[0].ipv4.ipAddress[0].privateIpAddress is ${JSON.stringify(privateIp) ?? "missing"}, not an IPv4 address`);
  }
  // "Low" is the older low-priority (evictable) VM, priced and evicted like Spot.
  const spot = priority === "Spot" || priority === "Low";
  return { provider: "azure", region, zone, network: "", instanceType, spot, privateIp };
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
