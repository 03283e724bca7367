import { AppError, type NodeLabels, toAppError } from "@gpuorch/core";
import { AWS_DEFAULT_ENDPOINT, probeAws } from "./aws-imds.js";
import { AZURE_DEFAULT_ENDPOINT, probeAzure } from "./azure-imds.js";
import { GCP_DEFAULT_ENDPOINT, probeGcp } from "./gcp-metadata.js";
import { CLOUD_PROVIDERS, type CloudProvider, type ImdsContext } from "./imds-request.js";

/** Node labels as one cloud's metadata service reports them. */
export interface CloudLabels extends NodeLabels {
  provider: CloudProvider;
}

/** What a successful identification hands back: reads the labels (more requests for AWS and GCP). */
export type ReadLabels = () => Promise<CloudLabels>;

export type ImdsProviderChoice = "auto" | CloudProvider;

export interface ReadCloudLabelsOptions {
  /** "auto" asks all three at once and keeps the one that identifies itself. */
  provider: ImdsProviderChoice;
  /**
   * Base URL (scheme, host, optional port) instead of the provider's own
   * (http://169.254.169.254 for AWS and Azure, http://metadata.google.internal
   * for GCP). In "auto" mode all three are asked there: the three protocols use
   * disjoint paths and headers, and on the real clouds both names reach the
   * same link-local address anyway.
   */
  endpoint?: string;
  /** Per request; default 1000. */
  timeoutMs?: number;
  /** For the whole read (AWS needs three rounds of requests); default 3 × timeoutMs. */
  totalTimeoutMs?: number;
  fetch?: typeof fetch;
  signal?: AbortSignal;
}

export interface CloudLabelsResult {
  labels: CloudLabels;
  /** Where they came from: the provider and the base URL asked. */
  source: { provider: CloudProvider; endpoint: string };
}

export const DEFAULT_IMDS_TIMEOUT_MS = 1000;

const PROBES: Record<CloudProvider, { endpoint: string; probe: (ctx: ImdsContext) => Promise<ReadLabels> }> = {
  aws: { endpoint: AWS_DEFAULT_ENDPOINT, probe: probeAws },
  gcp: { endpoint: GCP_DEFAULT_ENDPOINT, probe: probeGcp },
  azure: { endpoint: AZURE_DEFAULT_ENDPOINT, probe: probeAzure },
};

/**
 * Reads this VM's node labels from its cloud's instance metadata service.
 * Rejects with an AppError whose reason says what went wrong:
 * `imds_unavailable` (nothing answered as that provider; in "auto" mode: as
 * any provider), `imds_timeout`, `imds_unreachable`, `imds_refused` (AWS
 * refused the IMDSv2 token), `imds_invalid_response` (answered, but not what
 * the provider documents), `imds_ambiguous`, `imds_aborted`, and
 * INVALID_ARGUMENT `invalid_imds_endpoint`.
 */
export async function readCloudLabels(opts: ReadCloudLabelsOptions): Promise<CloudLabelsResult> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_IMDS_TIMEOUT_MS;
  const totalTimeoutMs = opts.totalTimeoutMs ?? 3 * timeoutMs;
  const endpoint = opts.endpoint === undefined ? undefined : normalizeEndpoint(opts.endpoint);
  const deadline = AbortSignal.timeout(totalTimeoutMs);
  const signal = opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline;
  const contextFor = (provider: CloudProvider): ImdsContext => ({
    provider,
    endpoint: endpoint ?? PROBES[provider].endpoint,
    fetch: opts.fetch ?? globalThis.fetch,
    timeoutMs,
    totalTimeoutMs,
    signal,
    callerSignal: opts.signal,
  });

  if (opts.provider !== "auto") {
    const ctx = contextFor(opts.provider);
    const read = await PROBES[opts.provider].probe(ctx);
    return { labels: await read(), source: { provider: ctx.provider, endpoint: ctx.endpoint } };
  }

  const contexts = CLOUD_PROVIDERS.map(contextFor);
  const settled = await Promise.allSettled(contexts.map((ctx) => PROBES[ctx.provider].probe(ctx)));
  if (opts.signal?.aborted) {
    throw new AppError("ABORTED", "reading the instance metadata service was cancelled", { reason: "imds_aborted" });
  }
  const identified: { ctx: ImdsContext; read: ReadLabels }[] = [];
  const misses: string[] = [];
  settled.forEach((s, i) => {
    const ctx = contexts[i];
    if (!ctx) return;
    // Any failure to identify is a miss here, whatever its status: each cloud's service
    // rejects the other clouds' requests (Azure 400, GCP 403, AWS 404 or 401).
    if (s.status === "fulfilled") identified.push({ ctx, read: s.value });
    else misses.push(toAppError(s.reason).message);
  });
  const only = identified[0];
  if (identified.length === 0 || !only) {
    throw new AppError("UNAVAILABLE", `no instance metadata service answered:\n${misses.map((m) => `  - ${m}`).join("\n")}`, {
      reason: "imds_unavailable",
    });
  }
  if (identified.length > 1) {
    const names = identified.map((x) => `${x.ctx.provider} at ${x.ctx.endpoint}`).join(", ");
    throw new AppError("FAILED_PRECONDITION", `more than one instance metadata service identified itself (${names}); set the provider instead of auto`, {
      reason: "imds_ambiguous",
    });
  }
  return { labels: await only.read(), source: { provider: only.ctx.provider, endpoint: only.ctx.endpoint } };
}

/** A validated http(s) base URL without trailing slash; INVALID_ARGUMENT `invalid_imds_endpoint` otherwise. */
export function normalizeEndpoint(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw AppError.invalid(`IMDS endpoint ${JSON.stringify(raw)} is not a URL`, [{ field: "imdsEndpoint", message: "not a URL" }], "invalid_imds_endpoint");
  }
  if ((url.protocol !== "http:" && url.protocol !== "https:") || url.search !== "" || url.hash !== "") {
    throw AppError.invalid(
      `IMDS endpoint ${JSON.stringify(raw)} must be an http(s) base URL without query or fragment`,
      [{ field: "imdsEndpoint", message: "must be an http(s) base URL" }],
      "invalid_imds_endpoint",
    );
  }
  return url.toString().replace(/\/+$/, "");
}
