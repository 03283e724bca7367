import { isIPv4 } from "node:net";
import { AppError } from "@gpuorch/core";
import type { CloudLabels, ReadLabels } from "./cloud-labels.js";
import { excerpt, imdsRequest, invalidResponse, type ImdsContext } from "./imds-request.js";

/*
 * AWS EC2 instance metadata, IMDSv2 only (session token), which also works on
 * instances that require it (HttpTokens=required):
 * https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html
 * https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html
 * Categories (placement/region, placement/availability-zone, instance-type,
 * local-ipv4, mac, network/interfaces/macs/<mac>/vpc-id, instance-life-cycle):
 * https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-categories.html
 */

export const AWS_DEFAULT_ENDPOINT = "http://169.254.169.254";

// The agent reads once at start-up; a short-lived token limits what a leaked one is worth.
const TOKEN_TTL_SECONDS = "60";

/**
 * Identifies AWS by obtaining a session token (PUT /latest/api/token); the
 * returned function reads the labels with it. Rejects without identifying
 * when the token request gets no 200.
 */
export async function probeAws(ctx: ImdsContext): Promise<ReadLabels> {
  const token = await requestAwsToken(ctx, TOKEN_TTL_SECONDS);
  return () => readAws(ctx, token);
}

/**
 * An IMDSv2 session token valid for `ttlSeconds` (1–21600). Rejects with
 * `imds_refused` (401/403) or `imds_unavailable` (any other status, or a body
 * that is not a token).
 */
export async function requestAwsToken(ctx: ImdsContext, ttlSeconds: string): Promise<string> {
  const res = await imdsRequest(ctx, "PUT", "/latest/api/token", { "X-aws-ec2-metadata-token-ttl-seconds": ttlSeconds });
  if (res.status !== 200) {
    // 400: bad TTL header; 403: IMDS disabled on the instance; 405: a proxy added X-Forwarded-For.
    const why = res.status === 401 || res.status === 403 ? "refused the session token" : `answered ${res.status}`;
    throw new AppError(
      res.status === 401 || res.status === 403 ? "FAILED_PRECONDITION" : "UNAVAILABLE",
      `aws instance metadata at ${ctx.endpoint}: PUT /latest/api/token ${why} (IMDSv2 is required; is the metadata service enabled for this instance?)`,
      { reason: res.status === 401 || res.status === 403 ? "imds_refused" : "imds_unavailable", meta: { provider: "aws", status: res.status } },
    );
  }
  const token = res.body.trim();
  // A token is an opaque base64-ish string; whitespace or markup means something else answered.
  if (token === "" || !/^[A-Za-z0-9+/=_-]+$/.test(token)) {
    throw new AppError("UNAVAILABLE", `aws instance metadata at ${ctx.endpoint}: PUT /latest/api/token answered ${excerpt(res.body)}, not a session token`, {
      reason: "imds_unavailable",
      meta: { provider: "aws" },
    });
  }
  return token;
}

async function readAws(ctx: ImdsContext, token: string): Promise<CloudLabels> {
  const get = async (category: string): Promise<string> => {
    const path = `/latest/meta-data/${category}`;
    const res = await imdsRequest(ctx, "GET", path, { "X-aws-ec2-metadata-token": token });
    if (res.status === 401) {
      throw new AppError("FAILED_PRECONDITION", `aws instance metadata at ${ctx.endpoint}: GET ${path} refused the session token (401)`, {
        reason: "imds_refused",
        meta: { provider: "aws", status: 401 },
      });
    }
    if (res.status !== 200) throw invalidResponse(ctx, `GET ${path} answered ${res.status}`);
    return res.body.trim();
  };
  const [region, zone, instanceType, privateIp, mac, lifeCycle] = await Promise.all([
    get("placement/region"),
    get("placement/availability-zone"),
    get("instance-type"),
    get("local-ipv4"),
    get("mac"),
    get("instance-life-cycle"),
  ]);
  const name = /^[a-z0-9]+(-[a-z0-9]+)*$/;
  if (!name.test(region)) throw invalidResponse(ctx, `placement/region is ${excerpt(region)}, not a region name`);
  // Availability, Local and Wavelength Zones all extend the region's name (us-west-2a, us-west-2-lax-1a).
  if (!name.test(zone) || !zone.startsWith(region)) {
    throw invalidResponse(ctx, `placement/availability-zone is ${excerpt(zone)}, not a zone of ${region}`);
  }
  if (!/^[a-z0-9][a-z0-9-]*\.[a-z0-9-]+$/.test(instanceType)) {
    throw invalidResponse(ctx, `instance-type is ${excerpt(instanceType)}, not an instance type`);
  }
  if (!isIPv4(privateIp)) throw invalidResponse(ctx, `local-ipv4 is ${excerpt(privateIp)}, not an IPv4 address`);
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) throw invalidResponse(ctx, `mac is ${excerpt(mac)}, not a MAC address`);
  if (!/^[a-z][a-z-]*$/.test(lifeCycle)) {
    throw invalidResponse(ctx, `instance-life-cycle is ${excerpt(lifeCycle)}, not a purchasing option`);
  }
  const vpcId = await get(`network/interfaces/macs/${mac.toLowerCase()}/vpc-id`);
  if (!/^vpc-[0-9a-f]+$/.test(vpcId)) throw invalidResponse(ctx, `network/interfaces/macs/${mac}/vpc-id is ${excerpt(vpcId)}, not a VPC id`);
  return { provider: "aws", region, zone, network: vpcId, instanceType, spot: lifeCycle === "spot", privateIp };
}
