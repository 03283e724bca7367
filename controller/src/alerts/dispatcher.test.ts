import { createHmac } from "node:crypto";
import type { IdSource } from "@gpuorch/core";
import { type MemoryLogger, createMemoryLogger } from "@gpuorch/runtime";
import { waitFor } from "@gpuorch/testing";
import { afterEach, describe, expect, it } from "vitest";
import { type Alert, type NewAlert, createAlert } from "./alert.js";
import { MemoryAlertStore, type Receiver, startReceiver } from "./alerts.test-util.js";
import { type AlertChannelInput, alertChannelsConfigSchema, channelName } from "./channel-config.js";
import { type AlertDispatcher, type AlertDispatcherDeps, createAlertDispatcher } from "./dispatcher.js";

const NOW = new Date("2030-01-01T00:00:00Z");
const now = () => NOW;
const SECRET = "s3cret-signing-key";

function counterIds(prefix: string): IdSource {
  let n = 0;
  return { newId: () => `${prefix}-${String(++n).padStart(4, "0")}` };
}
const alertIds = counterIds("alert");

function alertOf(over: Partial<NewAlert> = {}): Alert {
  return createAlert(
    { kind: "budget_threshold", team: "ml", project: "llm", jobId: "job-1", message: "Job job-1 reached 80 % of its $100.00 budget", details: { threshold_pct: 80, spent_usd: "80.000000" }, ...over },
    { now, ids: alertIds },
  );
}

const receivers: Receiver[] = [];
const dispatchers: AlertDispatcher[] = [];
afterEach(async () => {
  for (const d of dispatchers.splice(0)) await d.stop();
  for (const r of receivers.splice(0)) await r.close();
});

async function receiver(): Promise<Receiver> {
  const r = await startReceiver();
  receivers.push(r);
  return r;
}

interface Setup {
  dispatcher: AlertDispatcher;
  store: MemoryAlertStore;
  logger: MemoryLogger;
  /** Every wait the dispatcher asked for between attempts (none is actually waited). */
  sleeps: number[];
}

function setup(channels: AlertChannelInput[], over: Partial<AlertDispatcherDeps> & { store?: MemoryAlertStore; start?: boolean } = {}): Setup {
  const store = over.store ?? new MemoryAlertStore();
  const logger = createMemoryLogger();
  const sleeps: number[] = [];
  const dispatcher = createAlertDispatcher({
    channels: alertChannelsConfigSchema.parse(channels),
    store,
    logger,
    now,
    random: () => 0.5,
    ids: counterIds("delivery"),
    sleep: async (ms, signal) => {
      sleeps.push(ms);
      signal.throwIfAborted();
    },
    resumeIntervalMs: 0,
    ...over,
  });
  dispatchers.push(dispatcher);
  if (over.start !== false) dispatcher.start();
  return { dispatcher, store, logger, sleeps };
}

async function dispatchAndDrain(s: Setup, alert: Alert) {
  const res = await s.dispatcher.dispatch(alert);
  await s.dispatcher.drain();
  return res;
}

const attemptsOf = (s: Setup, deliveryId: string) => s.store.deliveries.get(deliveryId)!.attempts.map((a) => ({ attempt: a.attempt, status: a.status, httpStatus: a.httpStatus }));

describe("webhook channel", () => {
  it("POSTs the alert as snake_case JSON, signed with HMAC-SHA256 of the exact body, with delivery, timestamp and attempt headers", async () => {
    const r = await receiver();
    const s = setup([{ type: "webhook", url: r.url("/alerts?token=abc"), secret: SECRET }]);
    const alert = alertOf();
    const { deliveries } = await dispatchAndDrain(s, alert);

    expect(r.requests).toHaveLength(1);
    const req = r.requests[0]!;
    expect(req.method).toBe("POST");
    expect(req.path).toBe("/alerts?token=abc");
    expect(req.body).toBe(
      `{"id":"${alert.id}","kind":"budget_threshold","severity":"warning","team":"ml","project":"llm","job_id":"job-1","node_id":null,` +
        `"message":"Job job-1 reached 80 % of its $100.00 budget","details":{"threshold_pct":80,"spent_usd":"80.000000"},"created_at":"2030-01-01T00:00:00.000Z"}`,
    );
    const expected = createHmac("sha256", SECRET).update(req.body).digest("hex");
    expect(req.headers["x-gpuorch-signature"]).toBe(`sha256=${expected}`);
    expect(req.headers["content-type"]).toBe("application/json");
    expect(req.headers["x-gpuorch-timestamp"]).toBe(String(NOW.getTime() / 1000));
    expect(req.headers["x-gpuorch-delivery"]).toBe(deliveries[0]!.deliveryId);
    expect(req.headers["x-gpuorch-attempt"]).toBe("1");
    expect(attemptsOf(s, deliveries[0]!.deliveryId)).toEqual([{ attempt: 1, status: "delivered", httpStatus: 200 }]);
    expect(s.store.alerts.get(alert.id)).toEqual(alert);
  });

  it("sends no signature header when the channel has no secret", async () => {
    const r = await receiver();
    const s = setup([{ type: "webhook", url: r.url() }]);
    await dispatchAndDrain(s, alertOf());
    expect(r.requests[0]!.headers["x-gpuorch-signature"]).toBeUndefined();
  });

  it("retries after a 500 with backoff, the same delivery id and byte-identical signed body, recording each attempt", async () => {
    const r = await receiver();
    r.reply((n) => (n < 2 ? { status: 500, body: "boom" } : { status: 204 }));
    const s = setup([{ type: "webhook", url: r.url(), secret: SECRET }], { backoff: { baseMs: 1000, maxMs: 60_000 } });
    const { deliveries } = await dispatchAndDrain(s, alertOf());
    const id = deliveries[0]!.deliveryId;

    expect(r.requests.map((q) => q.headers["x-gpuorch-delivery"])).toEqual([id, id, id]);
    expect(r.requests.map((q) => q.headers["x-gpuorch-attempt"])).toEqual(["1", "2", "3"]);
    expect(new Set(r.requests.map((q) => q.body)).size).toBe(1);
    expect(new Set(r.requests.map((q) => q.headers["x-gpuorch-signature"])).size).toBe(1);
    // Equal jitter with random 0.5: 3/4 of the ceiling (1 s, then 2 s).
    expect(s.sleeps).toEqual([750, 1500]);
    expect(attemptsOf(s, id)).toEqual([
      { attempt: 1, status: "pending", httpStatus: 500 },
      { attempt: 2, status: "pending", httpStatus: 500 },
      { attempt: 3, status: "delivered", httpStatus: 204 },
    ]);
    expect(s.store.deliveries.get(id)!.attempts[0]!.error).toBe("HTTP 500: boom");
  });

  it("honours Retry-After on a 429, in seconds or as an HTTP date", async () => {
    const r = await receiver();
    const date = new Date(NOW.getTime() + 30_000).toUTCString();
    r.reply((n) => (n === 0 ? { status: 429, headers: { "retry-after": "7" } } : n === 1 ? { status: 429, headers: { "retry-after": date } } : { status: 200 }));
    const s = setup([{ type: "webhook", url: r.url() }]);
    const { deliveries } = await dispatchAndDrain(s, alertOf());
    expect(s.sleeps).toEqual([7_000, 30_000]);
    expect(attemptsOf(s, deliveries[0]!.deliveryId).map((a) => a.httpStatus)).toEqual([429, 429, 200]);
  });

  it("retries 408 and 503 too, and gives up after max_attempts", async () => {
    const r = await receiver();
    r.reply((n) => ({ status: n === 0 ? 408 : 503 }));
    const s = setup([{ type: "webhook", url: r.url(), max_attempts: 3 }]);
    const { deliveries } = await dispatchAndDrain(s, alertOf());
    expect(r.requests).toHaveLength(3);
    expect(attemptsOf(s, deliveries[0]!.deliveryId)).toEqual([
      { attempt: 1, status: "pending", httpStatus: 408 },
      { attempt: 2, status: "pending", httpStatus: 503 },
      { attempt: 3, status: "failed", httpStatus: 503 },
    ]);
    expect(s.logger.records.some((l) => l.level === "error" && /after 3 attempts/.test(l.msg ?? ""))).toBe(true);
  });

  it("fails permanently on a 400 without retrying, keeping the receiver's explanation", async () => {
    const r = await receiver();
    r.reply(() => ({ status: 400, body: "bad payload" }));
    const s = setup([{ type: "webhook", url: r.url() }]);
    const { deliveries } = await dispatchAndDrain(s, alertOf());
    expect(r.requests).toHaveLength(1);
    expect(s.sleeps).toEqual([]);
    const d = s.store.deliveries.get(deliveries[0]!.deliveryId)!;
    expect(d.status).toBe("failed");
    expect(d.attempts).toMatchObject([{ attempt: 1, status: "failed", httpStatus: 400, error: "HTTP 400: bad payload" }]);
  });

  it("does not follow redirects (a POST must not turn into a GET)", async () => {
    const r = await receiver();
    r.reply(() => ({ status: 302, headers: { location: "/elsewhere" } }));
    const s = setup([{ type: "webhook", url: r.url() }]);
    const { deliveries } = await dispatchAndDrain(s, alertOf());
    expect(r.requests).toHaveLength(1);
    expect(s.store.deliveries.get(deliveries[0]!.deliveryId)!.attempts[0]).toMatchObject({ status: "failed", httpStatus: 302 });
  });

  it("times out an attempt the receiver never answers and retries it", async () => {
    const r = await receiver();
    r.reply((n) => (n === 0 ? "hang" : { status: 200 }));
    const s = setup([{ type: "webhook", url: r.url(), timeout_ms: 100 }]);
    const { deliveries } = await dispatchAndDrain(s, alertOf());
    const d = s.store.deliveries.get(deliveries[0]!.deliveryId)!;
    expect(d.attempts.map((a) => [a.status, a.error])).toEqual([
      ["pending", "timed out after 100 ms"],
      ["delivered", undefined],
    ]);
  });

  it("treats a refused connection as retryable, and never logs the URL's secret parts", async () => {
    const r = await receiver();
    const url = r.url("/hook/tok-SECRET-123?key=SECRET-456");
    await r.close();
    receivers.splice(receivers.indexOf(r), 1);
    const s = setup([{ type: "webhook", url, max_attempts: 2, secret: SECRET }]);
    const { deliveries } = await dispatchAndDrain(s, alertOf());
    const d = s.store.deliveries.get(deliveries[0]!.deliveryId)!;
    expect(d.attempts.map((a) => a.status)).toEqual(["pending", "failed"]);
    expect(d.attempts[0]!.error).toMatch(/^network error: .*ECONNREFUSED/);
    const logged = JSON.stringify(s.logger.records);
    expect(logged).not.toContain("SECRET");
    expect(logged).not.toContain(SECRET);
    expect(logged).toContain(`"target":"http://127.0.0.1:${new URL(url).port}/…"`);
  });
});

describe("slack channel", () => {
  it("POSTs an incoming-webhook message (text + blocks), unsigned, and keeps the URL's secret path out of the logs", async () => {
    const r = await receiver();
    const path = "/services/T0001/B0002/XXXXsecretXXXX";
    const s = setup([{ type: "slack", url: r.url(path) }]);
    await s.dispatcher.dispatch(alertOf({ kind: "budget_exceeded", message: "Job <job-1> spent $101.00 & more" }));
    await s.dispatcher.drain();
    const req = r.requests[0]!;
    expect(req.path).toBe(path);
    expect(req.headers["x-gpuorch-signature"]).toBeUndefined();
    const body = JSON.parse(req.body) as { text: string; blocks: { type: string; text?: { type: string; text: string }; elements?: { text: string }[] }[] };
    expect(body.text).toBe("[CRITICAL] Budget exceeded: Job <job-1> spent $101.00 & more");
    expect(body.blocks.map((b) => b.type)).toEqual(["section", "context"]);
    expect(body.blocks[0]!.text).toEqual({ type: "mrkdwn", text: "*[CRITICAL] Budget exceeded*\nJob &lt;job-1&gt; spent $101.00 &amp; more" });
    expect(body.blocks[1]!.elements![0]!.text).toMatch(/^team ml · project llm · job job-1 · 2030-01-01T00:00:00.000Z · alert /);
    const logged = JSON.stringify(s.logger.records);
    expect(logged).not.toContain("XXXXsecretXXXX");
    expect(logged).toContain("/…");
  });

  it("follows the same retry policy (500 then 200)", async () => {
    const r = await receiver();
    r.reply((n) => (n === 0 ? { status: 500 } : { status: 200, body: "ok" }));
    const s = setup([{ type: "slack", url: r.url("/services/a/b/c") }]);
    const { deliveries } = await dispatchAndDrain(s, alertOf());
    expect(attemptsOf(s, deliveries[0]!.deliveryId).map((a) => a.status)).toEqual(["pending", "delivered"]);
  });
});

describe("log channel", () => {
  it("writes one structured line at the level of the alert's severity", async () => {
    const s = setup([{ type: "log" }]);
    await dispatchAndDrain(s, alertOf({ kind: "node_lost", severity: "critical", nodeId: "node-7", message: "Node node-7 lost" }));
    await dispatchAndDrain(s, alertOf({ kind: "gpu_underutilized", message: "GPUs idle" }));
    const lines = s.logger.records.filter((l) => l.msg?.startsWith("alert: "));
    expect(lines.map((l) => [l.level, l.msg])).toEqual([
      ["error", "alert: Node node-7 lost"],
      ["info", "alert: GPUs idle"],
    ]);
    expect(lines[0]!.fields).toMatchObject({ component: "alerts", channel: "log", alert: { kind: "node_lost", severity: "critical", team: "ml", nodeId: "node-7" } });
    expect([...s.store.deliveries.values()].map((d) => d.status)).toEqual(["delivered", "delivered"]);
  });
});

describe("filters", () => {
  it("creates delivery rows only for channels whose severity, kind and team filters all pass", async () => {
    const r = await receiver();
    const s = setup([
      { type: "log" },
      { type: "webhook", name: "critical-only", url: r.url("/c"), min_severity: "critical" },
      { type: "webhook", name: "budget", url: r.url("/b"), kinds: ["budget_threshold", "budget_exceeded"] },
      { type: "slack", name: "ml-team", url: r.url("/s"), teams: ["ml"], min_severity: "warning" },
    ]);
    const warn = alertOf();
    const info = alertOf({ kind: "gpu_underutilized", team: "ml" });
    const critOther = alertOf({ kind: "node_lost", team: "infra" });
    for (const a of [warn, info, critOther]) await dispatchAndDrain(s, a);
    expect([...s.store.byChannel(warn.id).keys()].sort()).toEqual(["budget", "log", "ml-team"]);
    expect([...s.store.byChannel(info.id).keys()]).toEqual(["log"]);
    expect([...s.store.byChannel(critOther.id).keys()].sort()).toEqual(["critical-only", "log"]);
    expect(r.requests.map((q) => q.path).sort()).toEqual(["/b", "/c", "/s"]);
  });

  it("still records an alert that no channel accepts", async () => {
    const s = setup([{ type: "log", teams: ["other"] }]);
    const a = alertOf();
    expect(await s.dispatcher.dispatch(a)).toEqual({ alertId: a.id, duplicate: false, deliveries: [] });
    expect(s.store.alerts.has(a.id)).toBe(true);
    expect(s.store.deliveries.size).toBe(0);
  });
});

describe("durability", () => {
  it("records and sends an alert with a dedupe key once, however often it is raised (crash before the caller persisted it)", async () => {
    const r = await receiver();
    const s = setup([{ type: "webhook", url: r.url() }]);
    const first = await dispatchAndDrain(s, alertOf({ dedupeKey: "budget:job-1:80" }));
    const again = await dispatchAndDrain(s, alertOf({ dedupeKey: "budget:job-1:80" }));
    expect(first.duplicate).toBe(false);
    expect(again).toMatchObject({ duplicate: true, deliveries: [] });
    expect(s.store.alerts.size).toBe(1);
    expect(r.requests).toHaveLength(1);
  });

  it("rejects dispatch and sends nothing when the store cannot record the alert", async () => {
    const r = await receiver();
    const s = setup([{ type: "webhook", url: r.url() }]);
    s.store.failRecordAlert = new Error("database down");
    await expect(s.dispatcher.dispatch(alertOf())).rejects.toThrow("database down");
    await s.dispatcher.drain();
    expect(r.requests).toHaveLength(0);
  });

  it("on stop, cuts off an attempt in flight after the timeout and leaves it and the queued ones pending; the next start resumes them with the same delivery ids", async () => {
    const r = await receiver();
    r.reply(() => "hang");
    const channels: AlertChannelInput[] = [{ type: "webhook", url: r.url(), secret: SECRET }];
    const first = setup(channels, { concurrency: 1, stopTimeoutMs: 50 });
    const a1 = await first.dispatcher.dispatch(alertOf());
    const a2 = await first.dispatcher.dispatch(alertOf({ message: "second" }));
    await waitFor(() => r.requests.length === 1, { timeoutMs: 5_000, intervalMs: 5 });
    await first.dispatcher.stop();
    expect(first.dispatcher.state).toBe("stopped");
    const d1 = a1.deliveries[0]!.deliveryId;
    const d2 = a2.deliveries[0]!.deliveryId;
    expect(first.store.deliveries.get(d1)!.attempts).toMatchObject([{ attempt: 1, status: "pending", error: expect.stringMatching(/interrupted/) as unknown }]);
    expect(first.store.deliveries.get(d2)).toMatchObject({ status: "pending", attempts: [] });

    // A dispatch after stop is recorded, not sent: it too waits for the next start.
    const a3 = await first.dispatcher.dispatch(alertOf({ message: "third" }));
    expect(r.requests).toHaveLength(1);

    r.reply(() => ({ status: 200 }));
    const second = setup(channels, { store: first.store, start: false });
    second.dispatcher.start();
    await second.dispatcher.resumePending();
    await second.dispatcher.drain();
    const ids = [d1, d2, a3.deliveries[0]!.deliveryId];
    for (const id of ids) expect(second.store.deliveries.get(id)!.status).toBe("delivered");
    expect(attemptsOf(second, d1).map((a) => a.attempt)).toEqual([1, 2]);
    const resent = r.requests.slice(1);
    expect(resent.map((q) => q.headers["x-gpuorch-delivery"]).sort()).toEqual([...ids].sort());
    const d1Requests = r.requests.filter((q) => q.headers["x-gpuorch-delivery"] === d1);
    expect(d1Requests.map((q) => q.headers["x-gpuorch-attempt"])).toEqual(["1", "2"]);
    expect(d1Requests[0]!.body).toBe(d1Requests[1]!.body);
  });

  it("leaves a delivery waiting to retry pending when stopped during its backoff", async () => {
    const r = await receiver();
    r.reply(() => ({ status: 503 }));
    const s = setup([{ type: "webhook", url: r.url() }], { sleep: (_ms, signal) => new Promise((_resolve, reject) => signal.addEventListener("abort", () => reject(signal.reason as Error))) });
    const { deliveries } = await s.dispatcher.dispatch(alertOf());
    await waitFor(() => s.dispatcher.stats.retrying === 1, { timeoutMs: 5_000, intervalMs: 5 });
    await s.dispatcher.stop();
    const d = s.store.deliveries.get(deliveries[0]!.deliveryId)!;
    expect(d.status).toBe("pending");
    expect(await s.store.listPendingDeliveries({ limit: 10 })).toMatchObject([{ deliveryId: d.deliveryId, attempts: 1 }]);
  });

  it("holds at most maxQueue deliveries in memory; the rest stay pending and a sweep picks them up", async () => {
    const r = await receiver();
    const s = setup([{ type: "webhook", url: r.url() }], { start: false, maxQueue: 1 });
    await s.dispatcher.dispatch(alertOf());
    await s.dispatcher.dispatch(alertOf());
    expect(s.dispatcher.stats.queued).toBe(1);
    expect(s.logger.records.some((l) => /queue full/.test(l.msg ?? ""))).toBe(true);
    s.dispatcher.start();
    await s.dispatcher.drain();
    await s.dispatcher.resumePending();
    await s.dispatcher.drain();
    expect([...s.store.deliveries.values()].map((d) => d.status)).toEqual(["delivered", "delivered"]);
    expect(r.requests).toHaveLength(2);
  });

  it("never queues a delivery twice when a sweep reads it while this process holds it", async () => {
    const r = await receiver();
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const s = setup([{ type: "webhook", url: r.url() }], { sleep: () => gate });
    r.reply((n) => (n === 0 ? { status: 500 } : { status: 200 }));
    await s.dispatcher.dispatch(alertOf());
    await waitFor(() => s.dispatcher.stats.retrying === 1, { timeoutMs: 5_000, intervalMs: 5 });
    expect(await s.dispatcher.resumePending()).toBe(0);
    release();
    await s.dispatcher.drain();
    expect(r.requests).toHaveLength(2);
  });

  it("marks failed a pending delivery whose channel is no longer configured", async () => {
    const store = new MemoryAlertStore();
    const old = setup([{ type: "webhook", name: "old-hook", url: "http://127.0.0.1:9/x" }], { store, start: false });
    const { deliveries } = await old.dispatcher.dispatch(alertOf());
    const s = setup([{ type: "log" }], { store });
    await s.dispatcher.resumePending();
    await s.dispatcher.drain();
    expect(store.deliveries.get(deliveries[0]!.deliveryId)).toMatchObject({ status: "failed", attempts: [{ attempt: 1, error: "channel 'old-hook' is no longer configured" }] });
  });

  it("stops when the injected signal aborts", async () => {
    const ac = new AbortController();
    const s = setup([{ type: "log" }], { signal: ac.signal });
    expect(s.dispatcher.state).toBe("running");
    ac.abort();
    await waitFor(() => s.dispatcher.state === "stopped", { timeoutMs: 5_000, intervalMs: 5 });
  });

  it("derives stable channel names that do not reveal the URL", () => {
    const url = "https://hooks.slack.com/services/T1/B2/secret";
    expect(channelName({ type: "slack", url })).toBe(channelName({ type: "slack", url }));
    expect(channelName({ type: "slack", url })).toMatch(/^slack-[0-9a-f]{10}$/);
    expect(channelName({ type: "log" })).toBe("log");
  });
});
