import { createHmac } from "node:crypto";
import type { Logger } from "@gpuorch/runtime";
import { type Alert, alertToWire, severityRank } from "./alert.js";
import { type AlertChannelConfig, type AlertChannelType, channelName, redactUrl } from "./channel-config.js";
import { type AttemptOutcome, postOnce } from "./http-post.js";
import { renderSlackMessage } from "./slack-message.js";

export const SIGNATURE_HEADER = "x-gpuorch-signature";
export const TIMESTAMP_HEADER = "x-gpuorch-timestamp";
export const DELIVERY_HEADER = "x-gpuorch-delivery";
export const ATTEMPT_HEADER = "x-gpuorch-attempt";
const USER_AGENT = "gpuorch-alerts/1";

export interface AttemptContext {
  /** Stable over every attempt of one delivery (the receiver's idempotency key). */
  deliveryId: string;
  /** 1-based. */
  attempt: number;
  signal: AbortSignal;
}

/** One configured destination. `attempt` makes exactly one try and never throws. */
export interface AlertChannel {
  readonly name: string;
  readonly type: AlertChannelType;
  readonly maxAttempts: number;
  /** Where it sends, safe to log (no token). */
  readonly target: string;
  accepts(alert: Alert): boolean;
  attempt(alert: Alert, ctx: AttemptContext): Promise<AttemptOutcome>;
}

export interface ChannelDeps {
  logger: Logger;
  now: () => Date;
  maxRetryAfterMs: number;
}

/** `sha256=<hex HMAC-SHA256 of body>` as sent in X-Gpuorch-Signature. */
export function signBody(secret: string, body: string): string {
  return `sha256=${createHmac("sha256", secret).update(body, "utf8").digest("hex")}`;
}

/** The exact bytes a webhook receives (stable across attempts: the signature covers them). */
export function webhookBody(alert: Alert): string {
  return JSON.stringify(alertToWire(alert));
}

export function createAlertChannel(config: AlertChannelConfig, deps: ChannelDeps): AlertChannel {
  const name = channelName(config);
  const accepts = (a: Alert): boolean =>
    (config.min_severity === undefined || severityRank(a.severity) >= severityRank(config.min_severity)) &&
    (config.kinds === undefined || config.kinds.includes(a.kind)) &&
    (config.teams === undefined || config.teams.includes(a.team));

  switch (config.type) {
    case "log": {
      const logger = deps.logger.child({ channel: name });
      return {
        name,
        type: "log",
        maxAttempts: 1,
        target: "log",
        accepts,
        attempt: async (a) => {
          const fields = { alert: { id: a.id, kind: a.kind, severity: a.severity, team: a.team, project: a.project, jobId: a.jobId, nodeId: a.nodeId, details: a.details, createdAt: a.createdAt } };
          const msg = `alert: ${a.message}`;
          switch (a.severity) {
            case "info":
              logger.info(fields, msg);
              break;
            case "warning":
              logger.warn(fields, msg);
              break;
            case "critical":
              logger.error(fields, msg);
              break;
          }
          return { kind: "delivered" };
        },
      };
    }
    case "webhook": {
      const { url, secret, timeout_ms: timeoutMs, max_attempts: maxAttempts } = config;
      return {
        name,
        type: "webhook",
        maxAttempts,
        target: redactUrl(url),
        accepts,
        attempt: (a, ctx) => {
          const body = webhookBody(a);
          const headers: Record<string, string> = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            [DELIVERY_HEADER]: ctx.deliveryId,
            [ATTEMPT_HEADER]: String(ctx.attempt),
            [TIMESTAMP_HEADER]: String(Math.floor(deps.now().getTime() / 1000)),
          };
          if (secret !== undefined) headers[SIGNATURE_HEADER] = signBody(secret, body);
          return postOnce({ url, body, headers, timeoutMs, signal: ctx.signal, now: deps.now, maxRetryAfterMs: deps.maxRetryAfterMs });
        },
      };
    }
    case "slack": {
      const { url, timeout_ms: timeoutMs, max_attempts: maxAttempts } = config;
      return {
        name,
        type: "slack",
        maxAttempts,
        target: redactUrl(url),
        accepts,
        attempt: (a, ctx) =>
          postOnce({
            url,
            body: JSON.stringify(renderSlackMessage(a)),
            headers: { "content-type": "application/json", "user-agent": USER_AGENT },
            timeoutMs,
            signal: ctx.signal,
            now: deps.now,
            maxRetryAfterMs: deps.maxRetryAfterMs,
          }),
      };
    }
  }
}
