import type { Alert } from "./alert.js";
import type { AlertChannelType } from "./channel-config.js";

/**
 * A delivery's status after its latest attempt: `pending` (not yet tried,
 * or failed and to be retried, or interrupted by a shutdown), `delivered`,
 * `failed` (given up: permanent error or attempts exhausted). Only
 * `pending` deliveries are ever tried again.
 */
export type DeliveryStatus = "pending" | "delivered" | "failed";

/** One delivery row: an alert to one channel. */
export interface NewAlertDelivery {
  /** UUID; sent as X-Gpuorch-Delivery on every attempt. */
  deliveryId: string;
  alertId: string;
  /** The channel's stable name (`channelName`). */
  channel: string;
  channelType: AlertChannelType;
}

export interface DeliveryAttemptRecord {
  deliveryId: string;
  /** 1-based, consecutive per delivery. */
  attempt: number;
  /** The delivery's status after this attempt. */
  status: DeliveryStatus;
  httpStatus?: number;
  /** Why it was not delivered (no URL or secret in it). */
  error?: string;
  at: Date;
}

export interface PendingDelivery {
  deliveryId: string;
  channel: string;
  alert: Alert;
  /** Attempts recorded so far (0: never tried); the next one is attempts + 1. */
  attempts: number;
}

/**
 * Where the dispatcher keeps alerts and their deliveries. The controller's
 * implementation writes PostgreSQL; tests use an in-memory one.
 */
export interface AlertStore {
  /**
   * The alert and its delivery rows (status pending, 0 attempts), atomically.
   * `created: false` when an alert with the same non-empty `dedupeKey` is
   * already stored: then nothing is written.
   */
  recordAlert(alert: Alert, deliveries: readonly NewAlertDelivery[]): Promise<{ created: boolean }>;
  /**
   * Appends one attempt and sets the delivery's status, attempt count and
   * last error. Idempotent on (deliveryId, attempt): a replay overwrites.
   */
  recordDeliveryAttempt(record: DeliveryAttemptRecord): Promise<void>;
  /** Deliveries still `pending`, oldest alert first, at most `limit`: resumed at start and by the periodic sweep. */
  listPendingDeliveries(opts: { limit: number }): Promise<PendingDelivery[]>;
}
