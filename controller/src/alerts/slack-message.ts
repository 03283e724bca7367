import type { Alert, AlertKind } from "./alert.js";

/** Slack's limit on a section's text. */
const MAX_SECTION_CHARS = 3000;

const TITLES: Record<AlertKind, string> = {
  budget_threshold: "Budget threshold reached",
  budget_exceeded: "Budget exceeded",
  budget_projection: "Budget overrun projected",
  node_lost: "Node lost",
  gpu_underutilized: "GPUs underutilized",
  pricing_stale: "Pricing data stale",
};

export interface SlackMessage {
  /** Plain fallback (notifications, clients without blocks). */
  text: string;
  blocks: SlackBlock[];
}

export type SlackBlock =
  | { type: "section"; text: { type: "mrkdwn"; text: string } }
  | { type: "context"; elements: { type: "mrkdwn"; text: string }[] };

/** Slack mrkdwn needs only &, < and > escaped (https://api.slack.com/reference/surfaces/formatting#escaping). */
export function escapeMrkdwn(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** An incoming-webhook message: one line of fallback text, the message, then where it happened. */
export function renderSlackMessage(a: Alert): SlackMessage {
  const title = TITLES[a.kind];
  const sev = a.severity.toUpperCase();
  const where = [`team ${a.team}`, a.project ? `project ${a.project}` : null, a.jobId ? `job ${a.jobId}` : null, a.nodeId ? `node ${a.nodeId}` : null].filter(
    (x): x is string => x !== null,
  );
  const body = truncate(`*[${sev}] ${escapeMrkdwn(title)}*\n${escapeMrkdwn(a.message)}`, MAX_SECTION_CHARS);
  return {
    text: truncate(`[${sev}] ${title}: ${a.message}`, MAX_SECTION_CHARS),
    blocks: [
      { type: "section", text: { type: "mrkdwn", text: body } },
      { type: "context", elements: [{ type: "mrkdwn", text: escapeMrkdwn(`${where.join(" · ")} · ${a.createdAt} · alert ${a.id}`) }] },
    ],
  };
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 1)}…`;
}
