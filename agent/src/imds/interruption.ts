import { AppError, toAppError } from "@gpuorch/core";
import { type Logger, sleep as realSleep } from "@gpuorch/runtime";
import { AWS_DEFAULT_ENDPOINT, requestAwsToken } from "./aws-imds.js";
import { AZURE_API_VERSION, AZURE_DEFAULT_ENDPOINT, isRecord } from "./azure-imds.js";
import { DEFAULT_IMDS_TIMEOUT_MS, normalizeEndpoint } from "./cloud-labels.js";
import { GCP_DEFAULT_ENDPOINT, fromGoogle } from "./gcp-metadata.js";
import { excerpt, imdsRequest, invalidResponse, type CloudProvider, type ImdsContext } from "./imds-request.js";

/*
 * Spot / preemption interruption notices, read from the instance metadata service.
 *
 * Intended use (not wired into the daemon yet): the agent runs one
 * `InterruptionWatcher` for the provider its node labels came from. On a
 * notice (`onNotice`, once per distinct notice) it
 *   1. asks the running job to checkpoint now: SIGUSR1 to the job's process
 *      group by default, or by creating the job's trigger file when the spec
 *      asks for one (the training script polls for it);
 *   2. uploads that checkpoint as soon as the job reports it written;
 *   3. reports the node to the controller as preempting (with `at`, when
 *      known), so the controller requeues the job elsewhere instead of waiting
 *      for the node to disappear.
 * A "rebalance" notice (AWS) is only a warning that the instance is at
 * elevated risk: worth an early checkpoint, not a reason to give up the node.
 *
 * Sources and what each one says:
 * - AWS (IMDSv2): PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds,
 *   then GETs with X-aws-ec2-metadata-token.
 *   GET /latest/meta-data/spot/instance-action: 404 until an interruption is
 *   scheduled, then {"action":"terminate"|"stop"|"hibernate","time":"<ISO 8601 UTC>"}
 *   about two minutes ahead
 *   (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-instance-termination-notices.html).
 *   GET /latest/meta-data/events/recommendations/rebalance: 404, or {"noticeTime":"…"}
 *   (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/rebalance-recommendations.html).
 *   The token is kept between polls and renewed before it expires, and once more
 *   whenever a GET answers 401 (token expired or IMDS restarted).
 * - GCP: GET /computeMetadata/v1/instance/preempted with Metadata-Flavor: Google
 *   answers "FALSE" or "TRUE"; GCP stops the VM about 30 s after it turns TRUE and
 *   gives no time, so `at` is null
 *   (https://cloud.google.com/compute/docs/instances/create-use-preemptible#detecting_if_an_instance_was_preempted).
 *   Plain polling, no `?wait_for_change=true`: a long-poll would need its own
 *   timeout handling and reconnect logic, and a 1 s poll of a link-local
 *   service costs nothing.
 * - Azure: GET /metadata/scheduledevents?api-version=2020-07-01 with Metadata: true
 *   answers {"DocumentIncarnation":n,"Events":[{EventId, EventType, Resources:[vm names],
 *   NotBefore:"<RFC 1123>"|"", …}]}; only EventType "Preempt" counts (Freeze,
 *   Reboot, Redeploy, Terminate of maintenance are not spot evictions), and
 *   only when Resources names this VM. The VM name comes from `azureVmName`, or
 *   else from the instance document (compute.name), read once; when neither is
 *   known a Preempt event for any VM counts (better a needless checkpoint than a
 *   lost one). The event is not acknowledged (no POST StartRequests): the VM
 *   keeps its whole notice (at least 30 s)
 *   (https://learn.microsoft.com/en-us/azure/virtual-machines/linux/scheduled-events).
 *
 * Default poll intervals (`DEFAULT_INTERRUPTION_INTERVAL_MS`): AWS 5 s (two
 * minutes' notice), Azure 5 s (at least 30 s notice), GCP 1 s (about 30 s
 * notice, all of which the checkpoint needs).
 */

export type InterruptionKind = "terminate" | "stop" | "hibernate" | "rebalance" | "preempt";

export interface InterruptionNotice {
  provider: CloudProvider;
  kind: InterruptionKind;
  /** When the provider says the instance goes; null when it does not say (GCP, AWS rebalance, Azure without NotBefore). */
  at: Date | null;
  /** What the service said, for logs and events; stable for one notice (it is part of the dedupe key). */
  detail: string;
}

export const DEFAULT_INTERRUPTION_INTERVAL_MS: Readonly<Record<CloudProvider, number>> = { aws: 5000, gcp: 1000, azure: 5000 };

const DEFAULT_ENDPOINTS: Record<CloudProvider, string> = { aws: AWS_DEFAULT_ENDPOINT, gcp: GCP_DEFAULT_ENDPOINT, azure: AZURE_DEFAULT_ENDPOINT };

// Polled for hours: a longer-lived token than the start-up read's, renewed a minute before it lapses.
const AWS_TOKEN_TTL_SECONDS = 300;
const AWS_TOKEN_RENEW_BEFORE_MS = 60_000;

/** State kept between polls; pass the same object to every `checkInterruption` of one watcher. */
export interface InterruptionCache {
  awsToken?: { value: string; renewAtMs: number };
  /** Azure VM name read from the instance document; null: the document had none. */
  azureVmName?: string | null;
}

export interface InterruptionCheckOptions {
  /** Base URL instead of the provider's own (for tests or a proxy). */
  endpoint?: string;
  fetch?: typeof fetch;
  /** Per request; default 1000. The whole poll is bounded by 3 × this. */
  timeoutMs?: number;
  signal?: AbortSignal;
  now?: () => Date;
  /** Azure: this VM's name as Scheduled Events lists it. undefined: read it from the instance document; null: match any VM. */
  azureVmName?: string | null;
  cache?: InterruptionCache;
}

/**
 * One poll: the current notice, or null when there is none. Rejects with the
 * IMDS AppErrors of `imdsRequest` (`imds_timeout`, `imds_unreachable`,
 * `imds_aborted`), `imds_refused` (AWS token refused), `imds_unavailable` or
 * `imds_invalid_response` (an answer the provider does not document).
 */
export async function checkInterruption(provider: CloudProvider, opts: InterruptionCheckOptions = {}): Promise<InterruptionNotice | null> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_IMDS_TIMEOUT_MS;
  const totalTimeoutMs = 3 * timeoutMs;
  const deadline = AbortSignal.timeout(totalTimeoutMs);
  const ctx: ImdsContext = {
    provider,
    endpoint: opts.endpoint === undefined ? DEFAULT_ENDPOINTS[provider] : normalizeEndpoint(opts.endpoint),
    fetch: opts.fetch ?? globalThis.fetch,
    timeoutMs,
    totalTimeoutMs,
    signal: opts.signal ? AbortSignal.any([opts.signal, deadline]) : deadline,
    callerSignal: opts.signal,
  };
  const cache = opts.cache ?? {};
  const now = opts.now ?? (() => new Date());
  switch (provider) {
    case "aws":
      return checkAws(ctx, cache, now);
    case "gcp":
      return checkGcp(ctx);
    case "azure":
      return checkAzure(ctx, cache, opts.azureVmName);
  }
}

async function checkAws(ctx: ImdsContext, cache: InterruptionCache, now: () => Date): Promise<InterruptionNotice | null> {
  const token = async (): Promise<string> => {
    const held = cache.awsToken;
    if (held && now().getTime() < held.renewAtMs) return held.value;
    const value = await requestAwsToken(ctx, String(AWS_TOKEN_TTL_SECONDS));
    cache.awsToken = { value, renewAtMs: now().getTime() + AWS_TOKEN_TTL_SECONDS * 1000 - AWS_TOKEN_RENEW_BEFORE_MS };
    return value;
  };
  /** The parsed JSON body, or undefined for 404 (no notice). */
  const get = async (path: string): Promise<Record<string, unknown> | undefined> => {
    let res = await imdsRequest(ctx, "GET", path, { "X-aws-ec2-metadata-token": await token() });
    if (res.status === 401) {
      // Expired (or IMDS restarted and forgot it): one new token, one retry.
      delete cache.awsToken;
      res = await imdsRequest(ctx, "GET", path, { "X-aws-ec2-metadata-token": await token() });
      if (res.status === 401) {
        delete cache.awsToken;
        throw new AppError("FAILED_PRECONDITION", `aws instance metadata at ${ctx.endpoint}: GET ${path} refused a fresh session token (401)`, {
          reason: "imds_refused",
          meta: { provider: "aws", status: 401 },
        });
      }
    }
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw invalidResponse(ctx, `GET ${path} answered ${res.status}`);
    return parseObject(ctx, path, res.body);
  };

  const actionPath = "/latest/meta-data/spot/instance-action";
  const action = await get(actionPath);
  if (action) {
    const raw = action.action;
    const kind: InterruptionKind = raw === "stop" || raw === "hibernate" ? raw : "terminate";
    const time = typeof action.time === "string" ? action.time : "";
    // An unknown action or unreadable time still means the instance is going: report it as terminate / unknown time.
    return { provider: "aws", kind, at: parseDate(time), detail: `spot/instance-action: action ${JSON.stringify(raw ?? null)} at ${time || "(no time)"}` };
  }
  const rebalance = await get("/latest/meta-data/events/recommendations/rebalance");
  if (rebalance) {
    const noticeTime = typeof rebalance.noticeTime === "string" ? rebalance.noticeTime : "";
    return { provider: "aws", kind: "rebalance", at: null, detail: `rebalance recommendation issued ${noticeTime || "(no time)"}` };
  }
  return null;
}

async function checkGcp(ctx: ImdsContext): Promise<InterruptionNotice | null> {
  const path = "/computeMetadata/v1/instance/preempted";
  const res = await imdsRequest(ctx, "GET", path, { "Metadata-Flavor": "Google" });
  if (res.status !== 200) throw invalidResponse(ctx, `GET ${path} answered ${res.status}`);
  if (!fromGoogle(res)) throw invalidResponse(ctx, `GET ${path} answered without Metadata-Flavor: Google`);
  const value = res.body.trim();
  if (value === "FALSE") return null;
  if (value === "TRUE") return { provider: "gcp", kind: "preempt", at: null, detail: "instance/preempted is TRUE (the VM stops about 30 s later)" };
  throw invalidResponse(ctx, `instance/preempted is ${excerpt(value)}, not TRUE or FALSE`);
}

async function checkAzure(ctx: ImdsContext, cache: InterruptionCache, configuredName: string | null | undefined): Promise<InterruptionNotice | null> {
  const vmName = configuredName !== undefined ? configuredName : await azureVmName(ctx, cache);
  const path = "/metadata/scheduledevents?api-version=2020-07-01";
  const res = await imdsRequest(ctx, "GET", path, { Metadata: "true" });
  if (res.status !== 200) throw invalidResponse(ctx, `GET ${path} answered ${res.status}`);
  const doc = parseObject(ctx, path, res.body);
  if (!Array.isArray(doc.Events)) throw invalidResponse(ctx, `GET ${path} answered JSON without an Events array`);
  const mine = (doc.Events as unknown[]).filter(isRecord).filter((e) => {
    if (e.EventType !== "Preempt") return false;
    if (vmName === null) return true;
    const resources = Array.isArray(e.Resources) ? (e.Resources as unknown[]) : [];
    return resources.some((r) => typeof r === "string" && r.toLowerCase() === vmName.toLowerCase());
  });
  const event = mine[0];
  if (!event) return null;
  const notBefore = typeof event.NotBefore === "string" ? event.NotBefore : "";
  const id = typeof event.EventId === "string" ? event.EventId : "(no id)";
  return {
    provider: "azure",
    kind: "preempt",
    at: parseDate(notBefore),
    // No EventStatus here: Scheduled → Started is the same notice, and the detail is part of the dedupe key.
    detail: `scheduled event ${id}: Preempt${vmName === null ? " (VM name unknown: any VM's event counts)" : ` for ${vmName}`}`,
  };
}

/** compute.name from the instance document, cached; null when unknown (not cached after a failure, so the next poll asks again). */
async function azureVmName(ctx: ImdsContext, cache: InterruptionCache): Promise<string | null> {
  if (cache.azureVmName !== undefined) return cache.azureVmName;
  try {
    const res = await imdsRequest(ctx, "GET", `/metadata/instance?api-version=${AZURE_API_VERSION}`, { Metadata: "true" });
    if (res.status !== 200) return null;
    const doc: unknown = JSON.parse(res.body);
    const name = isRecord(doc) && isRecord(doc.compute) && typeof doc.compute.name === "string" ? doc.compute.name.trim() : "";
    cache.azureVmName = name === "" ? null : name;
    return cache.azureVmName;
  } catch (e) {
    if (ctx.callerSignal?.aborted) throw e;
    return null;
  }
}

function parseObject(ctx: ImdsContext, path: string, body: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    throw invalidResponse(ctx, `GET ${path} answered ${excerpt(body)}, not JSON`);
  }
  if (!isRecord(doc)) throw invalidResponse(ctx, `GET ${path} answered ${excerpt(body)}, not a JSON object`);
  return doc;
}

function parseDate(s: string): Date | null {
  if (s.trim() === "") return null;
  const ms = Date.parse(s);
  return Number.isNaN(ms) ? null : new Date(ms);
}

export type InterruptionWatcherState = "idle" | "running" | "stopped";

export interface InterruptionWatcherOptions {
  provider: CloudProvider;
  /** Called once per distinct notice (same provider, kind, time and detail: not again). Not awaited; a throw or rejection is logged. */
  onNotice: (notice: InterruptionNotice) => void | Promise<void>;
  logger: Logger;
  /** Default `DEFAULT_INTERRUPTION_INTERVAL_MS[provider]`. */
  intervalMs?: number;
  endpoint?: string;
  /** Per request; default 1000. */
  timeoutMs?: number;
  azureVmName?: string | null;
  fetch?: typeof fetch;
  /** Aborting it stops the watcher like `stop()`. */
  signal?: AbortSignal;
  now?: () => Date;
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

/**
 * Polls `checkInterruption` every interval (the first poll at once). A failed
 * poll is logged (warn on the first of a run of failures, debug after) and
 * retried next tick; nothing escapes the loop. States: `idle` → `running`
 * (start) → `stopped` (stop or the signal; stop waits for a poll in progress,
 * which it aborts). `start` after stop does nothing.
 */
export class InterruptionWatcher {
  private readonly abort = new AbortController();
  private readonly seen = new Set<string>();
  private readonly cache: InterruptionCache = {};
  private loop: Promise<void> | null = null;
  private current: InterruptionWatcherState = "idle";

  constructor(private readonly opts: InterruptionWatcherOptions) {}

  get state(): InterruptionWatcherState {
    return this.current;
  }

  start(): void {
    if (this.current !== "idle") return;
    this.current = "running";
    const signal = this.opts.signal ? AbortSignal.any([this.opts.signal, this.abort.signal]) : this.abort.signal;
    this.loop = this.run(signal).finally(() => {
      this.current = "stopped";
    });
  }

  async stop(): Promise<void> {
    this.abort.abort(new DOMException("interruption watcher stopped", "AbortError"));
    if (this.current === "idle") this.current = "stopped";
    await this.loop;
  }

  private async run(signal: AbortSignal): Promise<void> {
    const { provider, logger } = this.opts;
    const intervalMs = this.opts.intervalMs ?? DEFAULT_INTERRUPTION_INTERVAL_MS[provider];
    const sleep = this.opts.sleep ?? realSleep;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const notice = await checkInterruption(provider, {
          cache: this.cache,
          signal,
          ...(this.opts.endpoint !== undefined ? { endpoint: this.opts.endpoint } : {}),
          ...(this.opts.fetch ? { fetch: this.opts.fetch } : {}),
          ...(this.opts.timeoutMs !== undefined ? { timeoutMs: this.opts.timeoutMs } : {}),
          ...(this.opts.azureVmName !== undefined ? { azureVmName: this.opts.azureVmName } : {}),
          ...(this.opts.now ? { now: this.opts.now } : {}),
        });
        if (failures > 0) logger.info({ provider, failures }, "interruption notices readable again");
        failures = 0;
        if (notice) this.deliver(notice);
      } catch (err) {
        if (signal.aborted) return;
        failures += 1;
        const e = toAppError(err);
        const fields = { provider, failures, reason: e.reason, err: e };
        if (failures === 1) logger.warn(fields, "reading interruption notices failed; retrying");
        else logger.debug(fields, "reading interruption notices failed again");
      }
      try {
        await sleep(intervalMs, signal);
      } catch {
        if (signal.aborted) return;
      }
    }
  }

  private deliver(notice: InterruptionNotice): void {
    const key = `${notice.provider}|${notice.kind}|${notice.at?.toISOString() ?? ""}|${notice.detail}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.opts.logger.warn({ provider: notice.provider, kind: notice.kind, at: notice.at?.toISOString() ?? null, detail: notice.detail }, "interruption notice");
    try {
      const r = this.opts.onNotice(notice);
      if (r instanceof Promise) r.catch((err: unknown) => this.opts.logger.error({ err }, "interruption notice handler failed"));
    } catch (err) {
      this.opts.logger.error({ err }, "interruption notice handler failed");
    }
  }
}
