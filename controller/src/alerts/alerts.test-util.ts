import { type IncomingHttpHeaders, type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Alert } from "./alert.js";
import type { AlertStore, DeliveryAttemptRecord, DeliveryStatus, NewAlertDelivery, PendingDelivery } from "./alert-store.js";

/** Test-only AlertStore: the DB-backed one must behave the same (the dispatcher tests are its spec). */
export interface MemoryDelivery extends NewAlertDelivery {
  status: DeliveryStatus;
  attempts: DeliveryAttemptRecord[];
}

export class MemoryAlertStore implements AlertStore {
  readonly alerts = new Map<string, Alert>();
  readonly deliveries = new Map<string, MemoryDelivery>();
  /** Set to make recordAlert fail (a database outage). */
  failRecordAlert: Error | null = null;

  async recordAlert(alert: Alert, deliveries: readonly NewAlertDelivery[]): Promise<{ created: boolean }> {
    if (this.failRecordAlert) throw this.failRecordAlert;
    if (alert.dedupeKey && [...this.alerts.values()].some((a) => a.dedupeKey === alert.dedupeKey)) return { created: false };
    this.alerts.set(alert.id, structuredClone(alert));
    for (const d of deliveries) this.deliveries.set(d.deliveryId, { ...d, status: "pending", attempts: [] });
    return { created: true };
  }

  async recordDeliveryAttempt(record: DeliveryAttemptRecord): Promise<void> {
    const d = this.deliveries.get(record.deliveryId);
    if (!d) throw new Error(`unknown delivery ${record.deliveryId}`);
    const i = d.attempts.findIndex((a) => a.attempt === record.attempt);
    if (i >= 0) d.attempts[i] = { ...record };
    else d.attempts.push({ ...record });
    d.status = record.status;
  }

  async listPendingDeliveries(opts: { limit: number }): Promise<PendingDelivery[]> {
    const out: PendingDelivery[] = [];
    for (const d of this.deliveries.values()) {
      if (d.status !== "pending") continue;
      out.push({ deliveryId: d.deliveryId, channel: d.channel, alert: structuredClone(this.alerts.get(d.alertId)!), attempts: d.attempts.length });
      if (out.length >= opts.limit) break;
    }
    return out;
  }

  /** The deliveries of one alert, by channel name. */
  byChannel(alertId: string): Map<string, MemoryDelivery> {
    return new Map([...this.deliveries.values()].filter((d) => d.alertId === alertId).map((d) => [d.channel, d]));
  }
}

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What the receiver does with request number `n` (0-based): answer, or never answer ("hang"). */
export type Reply = { status: number; headers?: Record<string, string>; body?: string } | "hang";

/** A real HTTP server on 127.0.0.1:0 that records requests and answers as scripted. */
export interface Receiver {
  url: (path?: string) => string;
  requests: ReceivedRequest[];
  /** Replaces the script; default: 200 "ok". */
  reply: (fn: (n: number, req: ReceivedRequest) => Reply) => void;
  close: () => Promise<void>;
}

export async function startReceiver(): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  let script: (n: number, req: ReceivedRequest) => Reply = () => ({ status: 200, body: "ok" });
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const r: ReceivedRequest = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") };
      const n = requests.length;
      requests.push(r);
      const reply = script(n, r);
      if (reply === "hang") return;
      res.writeHead(reply.status, { "content-type": "text/plain", ...reply.headers });
      res.end(reply.body ?? "");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path = "/hook") => `http://127.0.0.1:${port}${path}`,
    requests,
    reply: (fn) => {
      script = fn;
    },
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections();
        server.close((err) => (err ? reject(err) : resolve()));
      }),
  };
}
