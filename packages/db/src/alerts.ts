import { sql } from "drizzle-orm";
import { dbCall, sqlRows } from "./db-errors.js";
import type { Db } from "./open.js";

/**
 * Alerts and their deliveries. An alert with a dedupe key is stored at most
 * once (unique index), so a threshold crossed again after a controller
 * restart alerts nobody twice; each delivery keeps every attempt.
 */


export interface StoredAlert {
  id: string;
  kind: string;
  severity: string;
  team: string;
  project?: string;
  jobId?: string;
  nodeId?: string;
  message: string;
  details: Record<string, unknown>;
  createdAt: string;
  dedupeKey?: string;
}

export interface NewDeliveryRow {
  deliveryId: string;
  alertId: string;
  channel: string;
  channelType: string;
}

/** The alert and its pending deliveries in one statement; nothing is written when its dedupe key exists (an empty key is no key). */
export async function insertAlert(db: Db, alert: StoredAlert, deliveries: readonly NewDeliveryRow[]): Promise<{ created: boolean }> {
  const d = JSON.stringify(deliveries.map((x) => ({ id: x.deliveryId, channel: x.channel, channel_type: x.channelType })));
  const r = await sqlRows<{ id: string }>(
    db,
    sql`
      WITH a AS (
        INSERT INTO alerts (id, dedupe_key, kind, severity, team, project, job_id, node_id, message, details, created_at)
        VALUES (${alert.id}::uuid, ${alert.dedupeKey || null}, ${alert.kind}, ${alert.severity}, ${alert.team}, ${alert.project ?? null},
          ${alert.jobId ?? null}::uuid, ${alert.nodeId ?? null}::uuid, ${alert.message}, ${JSON.stringify(alert.details)}::jsonb, ${alert.createdAt}::timestamptz)
        ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
        RETURNING id
      ), d AS (
        INSERT INTO alert_deliveries (id, alert_id, channel, channel_type)
        SELECT x.id, a.id, x.channel, x.channel_type FROM a CROSS JOIN jsonb_to_recordset(${d}::jsonb) AS x(id uuid, channel text, channel_type text)
      )
      SELECT id FROM a`,
  );
  return { created: r.length > 0 };
}

export interface DeliveryAttemptRow {
  deliveryId: string;
  attempt: number;
  status: "pending" | "delivered" | "failed";
  httpStatus?: number;
  error?: string;
  at: Date;
}

export async function recordDeliveryAttempt(db: Db, a: DeliveryAttemptRow): Promise<void> {
  await dbCall(() =>
    db.execute(sql`
      WITH ins AS (
        INSERT INTO alert_delivery_attempts (delivery_id, attempt, status, http_status, error, at)
        VALUES (${a.deliveryId}::uuid, ${a.attempt}, ${a.status}, ${a.httpStatus ?? null}, ${a.error ?? null}, ${a.at.toISOString()}::timestamptz)
        ON CONFLICT (delivery_id, attempt) DO UPDATE SET status = EXCLUDED.status, http_status = EXCLUDED.http_status, error = EXCLUDED.error, at = EXCLUDED.at
      )
      UPDATE alert_deliveries SET status = ${a.status}, attempts = greatest(attempts, ${a.attempt}), last_http_status = ${a.httpStatus ?? null},
        last_error = ${a.error ?? null}, updated_at = ${a.at.toISOString()}::timestamptz
      WHERE id = ${a.deliveryId}::uuid`),
  );
}

export interface PendingDeliveryRow {
  deliveryId: string;
  channel: string;
  attempts: number;
  alert: StoredAlert;
}

interface PendingRow {
  delivery_id: string;
  channel: string;
  attempts: number;
  id: string;
  kind: string;
  severity: string;
  team: string;
  project: string | null;
  job_id: string | null;
  node_id: string | null;
  message: string;
  details: Record<string, unknown> | string;
  created_at: Date | string;
  dedupe_key: string | null;
}

export async function listPendingDeliveries(db: Db, opts: { limit: number }): Promise<PendingDeliveryRow[]> {
  const r = await sqlRows<PendingRow>(
    db,
    sql`SELECT d.id AS delivery_id, d.channel, d.attempts, a.id, a.kind, a.severity, a.team, a.project, a.job_id, a.node_id, a.message, a.details, a.created_at, a.dedupe_key
        FROM alert_deliveries d JOIN alerts a ON a.id = d.alert_id
        WHERE d.status = 'pending'
        ORDER BY a.created_at, d.id
        LIMIT ${opts.limit}`,
  );
  return r.map((x) => ({
    deliveryId: x.delivery_id,
    channel: x.channel,
    attempts: Number(x.attempts),
    alert: toStoredAlert(x),
  }));
}

function toStoredAlert(x: PendingRow): StoredAlert {
  return {
    id: x.id,
    kind: x.kind,
    severity: x.severity,
    team: x.team,
    ...(x.project !== null ? { project: x.project } : {}),
    ...(x.job_id !== null ? { jobId: x.job_id } : {}),
    ...(x.node_id !== null ? { nodeId: x.node_id } : {}),
    message: x.message,
    details: typeof x.details === "string" ? (JSON.parse(x.details) as Record<string, unknown>) : x.details,
    createdAt: new Date(x.created_at).toISOString(),
    ...(x.dedupe_key !== null ? { dedupeKey: x.dedupe_key } : {}),
  };
}

/** Dedupe keys already stored among `keys` (what was alerted before a restart). */
export async function existingAlertKeys(db: Db, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  // The keys travel as a JSON array: JSON string escapes (\n, \t, \uXXXX) are not text[] literal escapes.
  const r = await sqlRows<{ dedupe_key: string }>(
    db,
    sql`SELECT dedupe_key FROM alerts WHERE dedupe_key = ANY(ARRAY(SELECT jsonb_array_elements_text(${JSON.stringify(keys)}::jsonb)))`,
  );
  return new Set(r.map((x) => x.dedupe_key));
}

export interface AlertListItem extends StoredAlert {
  deliveries: { channel: string; status: string; attempts: number; lastError: string | null }[];
}

/** Newest first; `teamId` null = all teams. */
export async function listAlerts(db: Db, opts: { limit: number; team?: string | null; jobId?: string | null }): Promise<AlertListItem[]> {
  const r = await sqlRows<PendingRow & { deliveries: AlertListItem["deliveries"] | string }>(
    db,
    sql`SELECT a.id, a.kind, a.severity, a.team, a.project, a.job_id, a.node_id, a.message, a.details, a.created_at, a.dedupe_key,
          COALESCE((SELECT jsonb_agg(jsonb_build_object('channel', d.channel, 'status', d.status, 'attempts', d.attempts, 'lastError', d.last_error) ORDER BY d.channel)
                    FROM alert_deliveries d WHERE d.alert_id = a.id), '[]'::jsonb) AS deliveries
        FROM alerts a
        WHERE (${opts.team ?? null}::text IS NULL OR a.team = ${opts.team ?? null}::text)
          AND (${opts.jobId ?? null}::uuid IS NULL OR a.job_id = ${opts.jobId ?? null}::uuid)
        ORDER BY a.created_at DESC, a.id
        LIMIT ${opts.limit}`,
  );
  return r.map((x) => ({
    ...toStoredAlert(x),
    deliveries: typeof x.deliveries === "string" ? (JSON.parse(x.deliveries) as AlertListItem["deliveries"]) : x.deliveries,
  }));
}
