import { createHash } from "node:crypto";
import { z } from "zod";
import { ALERT_KINDS, ALERT_SEVERITIES } from "./alert.js";

const httpUrl = z.url({ protocol: /^https?$/, error: "must be an http(s) URL" });
const name = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "lowercase letters, digits, '-' and '_' (at most 63)")
  .optional()
  .describe("Stable name; delivery rows refer to it, so renaming a channel orphans its pending deliveries");
const timeoutMs = z.coerce.number().int().min(1).max(120_000).default(10_000);
const maxAttempts = z.coerce.number().int().min(1).max(20).default(5);

/** Which alerts a channel receives; every given filter must pass. */
const filters = {
  /** Alerts at this severity or above. */
  min_severity: z.enum(ALERT_SEVERITIES).optional(),
  kinds: z.array(z.enum(ALERT_KINDS)).min(1).optional(),
  teams: z.array(z.string().min(1)).min(1).optional(),
};

export const logChannelConfigSchema = z.strictObject({ type: z.literal("log"), name, ...filters });

export const webhookChannelConfigSchema = z.strictObject({
  type: z.literal("webhook"),
  name,
  url: httpUrl,
  /** HMAC-SHA256 key: with it every request carries `X-Gpuorch-Signature: sha256=<hex>` of the body. */
  secret: z.string().min(1).optional(),
  timeout_ms: timeoutMs,
  max_attempts: maxAttempts,
  ...filters,
});

export const slackChannelConfigSchema = z.strictObject({
  type: z.literal("slack"),
  name,
  /** Incoming-webhook URL; its path is a secret (never logged). */
  url: httpUrl,
  timeout_ms: timeoutMs,
  max_attempts: maxAttempts,
  ...filters,
});

export const alertChannelConfigSchema = z.discriminatedUnion("type", [logChannelConfigSchema, webhookChannelConfigSchema, slackChannelConfigSchema]);

/** The controller's `alertChannels` setting: channel names (given or derived) must be unique. */
export const alertChannelsConfigSchema = z.array(alertChannelConfigSchema).superRefine((list, ctx) => {
  const seen = new Map<string, number>();
  list.forEach((c, i) => {
    const n = channelName(c);
    const first = seen.get(n);
    if (first !== undefined) {
      ctx.addIssue({ code: "custom", path: [i, "name"], message: `channel name '${n}' is also used by entry ${first}; give one a distinct name` });
    } else {
      seen.set(n, i);
    }
  });
});

export type AlertChannelConfig = z.infer<typeof alertChannelConfigSchema>;
export type AlertChannelInput = z.input<typeof alertChannelConfigSchema>;
export type AlertChannelType = AlertChannelConfig["type"];

/**
 * The channel's stable name: the configured one, else `log`, or the type
 * plus a short hash of the URL (no part of the URL itself: it may hold a
 * token), so restarts with the same configuration find their pending deliveries.
 */
export function channelName(c: { type: AlertChannelType; name?: string | undefined; url?: string }): string {
  if (c.name) return c.name;
  if (c.type === "log" || c.url === undefined) return c.type;
  return `${c.type}-${createHash("sha256").update(c.url).digest("hex").slice(0, 10)}`;
}

/**
 * A URL safe to log: scheme and host only, the path (Slack's secret), query
 * and credentials replaced.
 */
export function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    const rest = u.pathname !== "/" || u.search !== "" ? "/…" : "";
    return `${u.protocol}//${u.host}${rest}`;
  } catch {
    return "<invalid url>";
  }
}
