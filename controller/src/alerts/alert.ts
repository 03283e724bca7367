import type { IdSource } from "@gpuorch/core";

export const ALERT_KINDS = ["budget_threshold", "budget_exceeded", "budget_projection", "node_lost", "gpu_underutilized", "pricing_stale"] as const;
export type AlertKind = (typeof ALERT_KINDS)[number];

/** Ascending: a channel's `min_severity` passes its own level and those after it. */
export const ALERT_SEVERITIES = ["info", "warning", "critical"] as const;
export type AlertSeverity = (typeof ALERT_SEVERITIES)[number];

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** Something an operator should hear about. Immutable once recorded; every channel gets the same one. */
export interface Alert {
  id: string;
  kind: AlertKind;
  severity: AlertSeverity;
  team: string;
  project?: string;
  jobId?: string;
  nodeId?: string;
  /** One human sentence. */
  message: string;
  /** Machine-readable facts (money as decimal strings, never floats). */
  details: Record<string, JsonValue>;
  /** ISO 8601. */
  createdAt: string;
  /**
   * At most one alert per key is ever recorded (the store enforces it), e.g.
   * `budget:<job>:80`: a crash between raising an alert and persisting that
   * it was raised cannot alert twice.
   */
  dedupeKey?: string;
}

/** Severity a kind gets when the caller does not choose one. */
export const DEFAULT_ALERT_SEVERITY: Readonly<Record<AlertKind, AlertSeverity>> = {
  budget_threshold: "warning",
  budget_exceeded: "critical",
  budget_projection: "warning",
  node_lost: "critical",
  gpu_underutilized: "info",
  pricing_stale: "warning",
};

export function severityRank(s: AlertSeverity): number {
  return ALERT_SEVERITIES.indexOf(s);
}

export interface NewAlert {
  kind: AlertKind;
  /** Default: DEFAULT_ALERT_SEVERITY[kind]. */
  severity?: AlertSeverity;
  team: string;
  project?: string;
  jobId?: string;
  nodeId?: string;
  message: string;
  details?: Record<string, JsonValue>;
  dedupeKey?: string;
}

export function createAlert(input: NewAlert, deps: { now: () => Date; ids: IdSource }): Alert {
  return {
    id: deps.ids.newId(),
    kind: input.kind,
    severity: input.severity ?? DEFAULT_ALERT_SEVERITY[input.kind],
    team: input.team,
    ...(input.project !== undefined ? { project: input.project } : {}),
    ...(input.jobId !== undefined ? { jobId: input.jobId } : {}),
    ...(input.nodeId !== undefined ? { nodeId: input.nodeId } : {}),
    message: input.message,
    details: input.details ?? {},
    createdAt: deps.now().toISOString(),
    ...(input.dedupeKey !== undefined ? { dedupeKey: input.dedupeKey } : {}),
  };
}

/** The alert as webhooks receive it: snake_case like the HTTP API, absent ids as null so the shape is stable. */
export interface AlertWire {
  id: string;
  kind: AlertKind;
  severity: AlertSeverity;
  team: string;
  project: string | null;
  job_id: string | null;
  node_id: string | null;
  message: string;
  details: Record<string, JsonValue>;
  created_at: string;
}

export function alertToWire(a: Alert): AlertWire {
  return {
    id: a.id,
    kind: a.kind,
    severity: a.severity,
    team: a.team,
    project: a.project ?? null,
    job_id: a.jobId ?? null,
    node_id: a.nodeId ?? null,
    message: a.message,
    details: a.details,
    created_at: a.createdAt,
  };
}
