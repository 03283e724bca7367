import { randomUUID } from "node:crypto";
import type { TestDatabase } from "@gpuorch/testing";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { type NewDeliveryRow, type StoredAlert, existingAlertKeys, insertAlert, listAlerts, listPendingDeliveries, recordDeliveryAttempt } from "./alerts.js";
import type { Database, Db } from "./open.js";
import { contractDrivers } from "./contract-drivers.test-util.js";

const drivers = contractDrivers();

const t0 = new Date("2030-01-01T00:00:00.000Z");
const at = (s: number) => new Date(t0.getTime() + s * 1000);

function alert(over: Partial<StoredAlert> = {}): StoredAlert {
  return {
    id: randomUUID(),
    kind: "budget_threshold",
    severity: "warning",
    team: "research",
    message: "job train-llm has spent 80% of its budget",
    details: { budget_usd: "50.00", spent_usd: "40.000001", threshold_pct: 80 },
    createdAt: t0.toISOString(),
    ...over,
  };
}

const delivery = (alertId: string, channel: string, channelType = "webhook"): NewDeliveryRow => ({ deliveryId: randomUUID(), alertId, channel, channelType });

interface DeliveryRow {
  id: string;
  alert_id: string;
  channel: string;
  channel_type: string;
  status: string;
  attempts: number;
  last_http_status: number | null;
  last_error: string | null;
}

describe.each(drivers)("alerts store contract on $name", (driver) => {
  let database: Database;
  let testDb: TestDatabase | undefined;
  let db: Db;

  beforeAll(async () => {
    ({ database, testDb } = await driver.open());
    db = database.db;
  });

  beforeEach(async () => {
    await db.execute(sql`DELETE FROM alert_delivery_attempts`);
    await db.execute(sql`DELETE FROM alert_deliveries`);
    await db.execute(sql`DELETE FROM alerts`);
  });

  afterAll(async () => {
    await database.close();
    await testDb?.assertNoLeftoverConnections();
  });

  async function query<T>(q: ReturnType<typeof sql>): Promise<T[]> {
    return ((await db.execute(q)) as unknown as { rows: T[] }).rows;
  }

  const deliveriesOf = (alertId: string) =>
    query<DeliveryRow>(
      sql`SELECT id, alert_id, channel, channel_type, status, attempts, last_http_status, last_error FROM alert_deliveries WHERE alert_id = ${alertId}::uuid ORDER BY channel`,
    );
  const count = async (table: "alerts" | "alert_deliveries" | "alert_delivery_attempts") =>
    Number((await query<{ n: string | number }>(sql`SELECT count(*) AS n FROM ${sql.raw(table)}`))[0]!.n);

  describe("insertAlert", () => {
    it("records the alert with every field and one pending delivery per channel", async () => {
      const jobId = randomUUID();
      const nodeId = randomUUID();
      const a = alert({
        severity: "critical",
        project: "llm",
        jobId,
        nodeId,
        dedupeKey: `budget:${jobId}:80`,
        details: { nested: { list: [1, "two", null, true], money: "0.000001" }, text: "ünïcode \"quoted\" \\ back" },
        createdAt: "2030-01-02T03:04:05.678Z",
      });
      const ds = [delivery(a.id, "ops-webhook"), delivery(a.id, "alerts-slack", "slack")];
      expect(await insertAlert(db, a, ds)).toEqual({ created: true });

      const [row] = await query<Record<string, unknown>>(
        sql`SELECT id, dedupe_key, kind, severity, team, project, job_id, node_id, message, details, created_at FROM alerts`,
      );
      expect({ ...row, created_at: new Date(row!.created_at as string | Date).toISOString() }).toEqual({
        id: a.id,
        dedupe_key: a.dedupeKey,
        kind: "budget_threshold",
        severity: "critical",
        team: "research",
        project: "llm",
        job_id: jobId,
        node_id: nodeId,
        message: a.message,
        details: a.details,
        created_at: "2030-01-02T03:04:05.678Z",
      });
      expect(await deliveriesOf(a.id)).toEqual(
        [
          { id: ds[1]!.deliveryId, alert_id: a.id, channel: "alerts-slack", channel_type: "slack", status: "pending", attempts: 0, last_http_status: null, last_error: null },
          { id: ds[0]!.deliveryId, alert_id: a.id, channel: "ops-webhook", channel_type: "webhook", status: "pending", attempts: 0, last_http_status: null, last_error: null },
        ],
      );
    });

    it("records an alert with no channel and no optional fields", async () => {
      const a = alert();
      expect(await insertAlert(db, a, [])).toEqual({ created: true });
      expect(await listAlerts(db, { limit: 10 })).toEqual([{ ...a, deliveries: [] }]);
      expect(await count("alert_deliveries")).toBe(0);
    });

    it("stores at most one alert per dedupe key: a repeat writes neither the alert nor its deliveries", async () => {
      const first = alert({ dedupeKey: "budget:job-1:80" });
      const firstDeliveries = [delivery(first.id, "ops-webhook")];
      expect(await insertAlert(db, first, firstDeliveries)).toEqual({ created: true });

      const again = alert({ dedupeKey: "budget:job-1:80", team: "other", message: "again", createdAt: at(60).toISOString() });
      const againDeliveries = [delivery(again.id, "ops-webhook"), delivery(again.id, "alerts-slack", "slack")];
      expect(await insertAlert(db, again, againDeliveries)).toEqual({ created: false });

      expect(await query<{ id: string; message: string }>(sql`SELECT id, message FROM alerts`)).toEqual([{ id: first.id, message: first.message }]);
      expect((await query<{ id: string }>(sql`SELECT id FROM alert_deliveries`)).map((r) => r.id)).toEqual([firstDeliveries[0]!.deliveryId]);
      expect(await deliveriesOf(again.id)).toEqual([]);

      // Another key is another alert.
      expect(await insertAlert(db, alert({ dedupeKey: "budget:job-1:100" }), [])).toEqual({ created: true });
      expect(await count("alerts")).toBe(2);
    });

    it("never dedupes alerts without a key, even identical ones", async () => {
      const same = { kind: "node_lost", severity: "critical", team: "research", message: "node gpu-7 is lost", details: {} };
      for (let i = 0; i < 3; i++) {
        const a = alert(same);
        expect(await insertAlert(db, a, [delivery(a.id, "ops-webhook")])).toEqual({ created: true });
      }
      expect(await count("alerts")).toBe(3);
      expect(await count("alert_deliveries")).toBe(3);
      expect(await query<{ k: string | null }>(sql`SELECT DISTINCT dedupe_key AS k FROM alerts`)).toEqual([{ k: null }]);
    });

    it("treats an empty dedupe key as no key (the AlertStore contract dedupes only non-empty keys)", async () => {
      expect(await insertAlert(db, alert({ dedupeKey: "" }), [])).toEqual({ created: true });
      expect(await insertAlert(db, alert({ dedupeKey: "" }), [])).toEqual({ created: true });
      expect(await count("alerts")).toBe(2);
    });

    it("lets exactly one of many concurrent inserts of one key through", async () => {
      const results = await Promise.all(
        Array.from({ length: 6 }, () => {
          const a = alert({ dedupeKey: "pricing_stale:aws" });
          return insertAlert(db, a, [delivery(a.id, "ops-webhook")]);
        }),
      );
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect(await count("alerts")).toBe(1);
      expect(await count("alert_deliveries")).toBe(1);
    });
  });

  describe("deliveries", () => {
    it("recordDeliveryAttempt appends attempts, moves the delivery's status, and overwrites a replayed attempt", async () => {
      const a = alert();
      const [hook, slack] = [delivery(a.id, "ops-webhook"), delivery(a.id, "alerts-slack", "slack")];
      await insertAlert(db, a, [hook, slack]);

      await recordDeliveryAttempt(db, { deliveryId: hook.deliveryId, attempt: 1, status: "pending", httpStatus: 503, error: "HTTP 503 Service Unavailable", at: at(1) });
      let [s, h] = await deliveriesOf(a.id);
      expect(h).toMatchObject({ status: "pending", attempts: 1, last_http_status: 503, last_error: "HTTP 503 Service Unavailable" });
      expect(s).toMatchObject({ status: "pending", attempts: 0, last_http_status: null, last_error: null });

      await recordDeliveryAttempt(db, { deliveryId: hook.deliveryId, attempt: 2, status: "pending", error: "connect ECONNREFUSED", at: at(5) });
      await recordDeliveryAttempt(db, { deliveryId: hook.deliveryId, attempt: 3, status: "delivered", httpStatus: 204, at: at(20) });
      await recordDeliveryAttempt(db, { deliveryId: slack.deliveryId, attempt: 1, status: "failed", httpStatus: 404, error: "HTTP 404 (permanent)", at: at(2) });
      [s, h] = await deliveriesOf(a.id);
      expect(h).toMatchObject({ status: "delivered", attempts: 3, last_http_status: 204, last_error: null });
      expect(s).toMatchObject({ status: "failed", attempts: 1, last_http_status: 404, last_error: "HTTP 404 (permanent)" });
      const updated = await query<{ id: string; updated_at: Date | string }>(sql`SELECT id, updated_at FROM alert_deliveries ORDER BY updated_at`);
      expect(updated.map((r) => [r.id, new Date(r.updated_at).toISOString()])).toEqual([
        [slack.deliveryId, at(2).toISOString()],
        [hook.deliveryId, at(20).toISOString()],
      ]);

      const attemptsOf = async (id: string) =>
        (
          await query<{ at: Date | string }>(sql`SELECT attempt, status, http_status, error, at FROM alert_delivery_attempts WHERE delivery_id = ${id}::uuid ORDER BY attempt`)
        ).map((r) => ({ ...r, at: new Date(r.at) }));
      const hookAttempts = [
        { attempt: 1, status: "pending", http_status: 503, error: "HTTP 503 Service Unavailable", at: at(1) },
        { attempt: 2, status: "pending", http_status: null, error: "connect ECONNREFUSED", at: at(5) },
        { attempt: 3, status: "delivered", http_status: 204, error: null, at: at(20) },
      ];
      expect(await attemptsOf(hook.deliveryId)).toEqual(hookAttempts);
      expect(await attemptsOf(slack.deliveryId)).toEqual([{ attempt: 1, status: "failed", http_status: 404, error: "HTTP 404 (permanent)", at: at(2) }]);

      // A replay of the latest attempt overwrites it: no new row, the count stays.
      await recordDeliveryAttempt(db, { deliveryId: hook.deliveryId, attempt: 3, status: "delivered", httpStatus: 200, at: at(21) });
      expect(await attemptsOf(hook.deliveryId)).toEqual([...hookAttempts.slice(0, 2), { attempt: 3, status: "delivered", http_status: 200, error: null, at: at(21) }]);
      expect((await deliveriesOf(a.id))[1]).toMatchObject({ status: "delivered", attempts: 3, last_http_status: 200 });
      expect(await count("alert_delivery_attempts")).toBe(4);
    });

    it("listPendingDeliveries returns only pending deliveries, oldest alert first, up to the limit, with the alert as stored", async () => {
      const jobId = randomUUID();
      const newest = alert({ createdAt: at(30).toISOString(), project: "llm", jobId, dedupeKey: `budget:${jobId}:100`, severity: "critical", kind: "budget_exceeded" });
      const oldest = alert({ createdAt: at(10).toISOString(), nodeId: randomUUID(), kind: "node_lost", details: { hostname: "gpu-7", gpus: [0, 1] } });
      const middle = alert({ createdAt: at(20).toISOString(), team: "vision" });
      const dn = [delivery(newest.id, "a"), delivery(newest.id, "b")];
      const dO = [delivery(oldest.id, "a"), delivery(oldest.id, "b"), delivery(oldest.id, "c")];
      const dm = [delivery(middle.id, "a")];
      // Inserted out of order on purpose.
      await insertAlert(db, newest, dn);
      await insertAlert(db, middle, dm);
      await insertAlert(db, oldest, dO);
      await recordDeliveryAttempt(db, { deliveryId: dO[1]!.deliveryId, attempt: 1, status: "delivered", httpStatus: 200, at: at(11) });
      await recordDeliveryAttempt(db, { deliveryId: dO[2]!.deliveryId, attempt: 1, status: "failed", error: "gave up", at: at(11) });
      await recordDeliveryAttempt(db, { deliveryId: dn[0]!.deliveryId, attempt: 1, status: "pending", httpStatus: 500, error: "HTTP 500", at: at(31) });

      const byId = (x: NewDeliveryRow, y: NewDeliveryRow) => (x.deliveryId < y.deliveryId ? -1 : 1);
      const expected = [
        { deliveryId: dO[0]!.deliveryId, channel: "a", attempts: 0, alert: oldest },
        { deliveryId: dm[0]!.deliveryId, channel: "a", attempts: 0, alert: middle },
        // Two deliveries of one alert: by delivery id.
        ...[...dn].sort(byId).map((d) => ({ deliveryId: d.deliveryId, channel: d.channel, attempts: d === dn[0] ? 1 : 0, alert: newest })),
      ];
      expect(await listPendingDeliveries(db, { limit: 100 })).toEqual(expected);
      expect(await listPendingDeliveries(db, { limit: 2 })).toEqual(expected.slice(0, 2));
      expect(await listPendingDeliveries(db, { limit: 3 })).toEqual(expected.slice(0, 3));

      // Once delivered, gone from the list.
      await recordDeliveryAttempt(db, { deliveryId: dm[0]!.deliveryId, attempt: 1, status: "delivered", httpStatus: 200, at: at(40) });
      expect((await listPendingDeliveries(db, { limit: 100 })).map((p) => p.deliveryId)).toEqual([expected[0]!.deliveryId, expected[2]!.deliveryId, expected[3]!.deliveryId]);
    });
  });

  describe("reading alerts", () => {
    it("existingAlertKeys answers which of the asked keys are stored, whatever characters they hold", async () => {
      expect(await existingAlertKeys(db, [])).toEqual(new Set());
      const odd = ['budget:"quoted",{braced}\\back slash:80', "gpu_underutilized:a b:c", "multi\nline\tkey", "NULL", "ünï"];
      for (const k of [...odd, "budget:j1:80"]) await insertAlert(db, alert({ dedupeKey: k }), []);
      await insertAlert(db, alert(), []);
      expect(await existingAlertKeys(db, ["budget:j1:80", "budget:j1:100"])).toEqual(new Set(["budget:j1:80"]));
      expect(await existingAlertKeys(db, [...odd, "missing", ""])).toEqual(new Set(odd));
      expect(await existingAlertKeys(db, ["budget:j1:100"])).toEqual(new Set());
    });

    it("listAlerts returns newest first with each alert's deliveries, filtered by team and job, up to the limit", async () => {
      const job1 = randomUUID();
      const a1 = alert({ createdAt: at(1).toISOString(), jobId: job1, project: "llm" });
      const a2 = alert({ createdAt: at(2).toISOString(), team: "vision", kind: "gpu_underutilized", severity: "info", dedupeKey: "gpu_underutilized:x:y" });
      const a3 = alert({ createdAt: at(3).toISOString(), jobId: job1, kind: "budget_exceeded", severity: "critical" });
      const tieA = alert({ id: "00000000-0000-4000-8000-000000000001", createdAt: at(0).toISOString() });
      const tieB = alert({ id: "00000000-0000-4000-8000-000000000002", createdAt: at(0).toISOString() });
      const d3 = [delivery(a3.id, "zeta-hook"), delivery(a3.id, "alpha-slack", "slack")];
      await insertAlert(db, tieB, []);
      await insertAlert(db, a1, [delivery(a1.id, "ops-webhook")]);
      await insertAlert(db, a3, d3);
      await insertAlert(db, a2, []);
      await insertAlert(db, tieA, []);
      await recordDeliveryAttempt(db, { deliveryId: d3[0]!.deliveryId, attempt: 1, status: "pending", httpStatus: 502, error: "HTTP 502", at: at(4) });
      await recordDeliveryAttempt(db, { deliveryId: d3[1]!.deliveryId, attempt: 1, status: "delivered", httpStatus: 200, at: at(4) });

      const all = await listAlerts(db, { limit: 100 });
      expect(all.map((x) => x.id)).toEqual([a3.id, a2.id, a1.id, tieA.id, tieB.id]);
      expect(all[0]).toEqual({
        ...a3,
        deliveries: [
          { channel: "alpha-slack", status: "delivered", attempts: 1, lastError: null },
          { channel: "zeta-hook", status: "pending", attempts: 1, lastError: "HTTP 502" },
        ],
      });
      expect(all[1]).toEqual({ ...a2, deliveries: [] });
      expect(all[2]).toEqual({ ...a1, deliveries: [{ channel: "ops-webhook", status: "pending", attempts: 0, lastError: null }] });

      expect((await listAlerts(db, { limit: 2 })).map((x) => x.id)).toEqual([a3.id, a2.id]);
      expect((await listAlerts(db, { limit: 100, team: "vision" })).map((x) => x.id)).toEqual([a2.id]);
      expect((await listAlerts(db, { limit: 100, team: "research" })).map((x) => x.id)).toEqual([a3.id, a1.id, tieA.id, tieB.id]);
      expect((await listAlerts(db, { limit: 100, jobId: job1 })).map((x) => x.id)).toEqual([a3.id, a1.id]);
      expect((await listAlerts(db, { limit: 1, jobId: job1, team: "research" })).map((x) => x.id)).toEqual([a3.id]);
      expect(await listAlerts(db, { limit: 100, jobId: job1, team: "vision" })).toEqual([]);
      expect(await listAlerts(db, { limit: 100, team: null, jobId: null })).toEqual(all);
    });
  });
});
