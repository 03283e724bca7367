import { AppError, type NodeLabels, toAppError } from "@gpuorch/core";
import type { Logger } from "@gpuorch/runtime";
import { type CloudLabelsResult, DEFAULT_IMDS_TIMEOUT_MS, type ImdsProviderChoice, readCloudLabels } from "./cloud-labels.js";
import { CLOUD_PROVIDERS, type CloudProvider } from "./imds-request.js";

export type ImdsMode = "off" | ImdsProviderChoice;
export const IMDS_MODES = ["off", "auto", "aws", "gcp", "azure"] as const satisfies readonly ImdsMode[];

/** The part of the agent's config that decides its labels (AgentConfig fits). */
export interface NodeLabelsConfig extends NodeLabels {
  imds: ImdsMode;
  imdsEndpoint?: string | undefined;
  imdsTimeoutMs?: number | undefined;
}

export interface ResolveNodeLabelsDeps {
  logger: Logger;
  fetch?: typeof fetch;
  signal?: AbortSignal;
}

export interface ResolvedNodeLabels {
  labels: NodeLabels;
  /** The labels whose value came from the metadata service (empty when it was not asked or failed). */
  fromImds: (keyof NodeLabels)[];
  /** Which service answered; null when none was asked or none answered. */
  imds: CloudLabelsResult["source"] | null;
}

const TEXT_LABELS = ["provider", "region", "zone", "network", "instanceType", "privateIp"] as const;

/**
 * The node's labels: the configured ones (flags, `GPUORCH_*` env, config
 * file), completed from the instance metadata service when `imds` is not "off".
 *
 * - "off" (the default): no request at all, so an on-prem node never waits on
 *   a link-local address that nobody answers.
 * - "aws" | "gcp" | "azure": ask that provider; any failure rejects (the
 *   operator said this is that cloud, so registering without its labels would
 *   misplace work). A different configured `provider` is a contradiction
 *   (INVALID_ARGUMENT `imds_provider_conflict`).
 * - "auto": best effort. A configured cloud provider narrows the probe to it; any
 *   other configured provider (onprem, local, …) skips the service; an empty
 *   one probes all three. A failure is logged as a warning and the configured
 *   labels are used as they are.
 *
 * Configured labels always win: a non-empty text label is kept, and so is
 * `spot: true`. `spot: false` is also the default and cannot be told apart
 * from "not configured", so on a cloud VM the service decides it.
 * Nothing is asked when every label is already configured.
 */
export async function resolveNodeLabels(config: NodeLabelsConfig, deps: ResolveNodeLabelsDeps): Promise<ResolvedNodeLabels> {
  const configured: NodeLabels = {
    provider: config.provider,
    region: config.region,
    zone: config.zone,
    network: config.network,
    instanceType: config.instanceType,
    spot: config.spot,
    privateIp: config.privateIp,
  };
  const asConfigured: ResolvedNodeLabels = { labels: configured, fromImds: [], imds: null };
  if (config.imds === "off") return asConfigured;

  const log = deps.logger.child({ component: "imds" });
  if (TEXT_LABELS.every((k) => configured[k] !== "") && configured.spot) {
    log.debug({ imds: config.imds }, "every node label is configured; not asking the instance metadata service");
    return asConfigured;
  }

  let provider: ImdsProviderChoice = config.imds;
  if (config.imds === "auto") {
    if (isCloudProvider(configured.provider)) {
      provider = configured.provider;
    } else if (configured.provider !== "") {
      log.debug({ provider: configured.provider }, "the provider label is not a cloud; not asking the instance metadata service");
      return asConfigured;
    }
  } else if (configured.provider !== "" && configured.provider !== config.imds) {
    throw AppError.invalid(
      `imds is ${config.imds} but the provider label is ${configured.provider}; drop one of them`,
      [
        { field: "imds", message: `asks ${config.imds}'s metadata service` },
        { field: "provider", message: `says ${configured.provider}` },
      ],
      "imds_provider_conflict",
    );
  }

  let read: CloudLabelsResult;
  try {
    read = await readCloudLabels({
      provider,
      ...(config.imdsEndpoint !== undefined ? { endpoint: config.imdsEndpoint } : {}),
      timeoutMs: config.imdsTimeoutMs ?? DEFAULT_IMDS_TIMEOUT_MS,
      ...(deps.fetch ? { fetch: deps.fetch } : {}),
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
  } catch (e) {
    const err = toAppError(e);
    // A cancelled start-up is not a reason to register anything; a bad endpoint is a config error.
    if (config.imds !== "auto" || err.reason === "imds_aborted" || err.code === "INVALID_ARGUMENT") throw err;
    log.warn({ reason: err.reason, err: err.message }, "no labels from the instance metadata service; using the configured ones");
    return asConfigured;
  }

  const labels = { ...configured };
  const fromImds: (keyof NodeLabels)[] = [];
  for (const key of TEXT_LABELS) {
    const found = read.labels[key];
    if (configured[key] === "") {
      labels[key] = found;
      if (found !== "") fromImds.push(key);
    } else if (found !== "" && found !== configured[key]) {
      log.info({ label: key, configured: configured[key], imds: found }, "configured label differs from the instance metadata service; keeping the configured one");
    }
  }
  if (!configured.spot) {
    labels.spot = read.labels.spot;
    fromImds.push("spot");
  }
  log.debug({ source: read.source, fromImds }, "node labels read from the instance metadata service");
  return { labels, fromImds, imds: read.source };
}

function isCloudProvider(p: string): p is CloudProvider {
  return (CLOUD_PROVIDERS as readonly string[]).includes(p);
}
