import { createMemoryLogger } from "@gpuorch/runtime";
import { describe, expect, it, vi } from "vitest";
import { DEFAULT_INTERRUPTION_INTERVAL_MS, InterruptionWatcher, checkInterruption, type InterruptionCache, type InterruptionNotice } from "./interruption.js";
import {
  AWS_SPOT_P4D,
  AWS_TOKEN,
  GCP_A2_STANDARD,
  awsImds,
  azureImds,
  azureInstanceDocument,
  gcpMetadata,
  type AwsInstance,
  type GcpInstance,
  type RecordedRequest,
  type ScriptedImdsServer,
} from "@gpuorch/testing";
import { scriptedImdsPerTest, appErrorOf } from "./imds.test-util.js";

const serve = scriptedImdsPerTest();

const rejection = appErrorOf;

const seen = (s: ScriptedImdsServer): string[] => s.requests.map((r) => `${r.method} ${r.path}`);

const ACTION = "/latest/meta-data/spot/instance-action";
const REBALANCE = "/latest/meta-data/events/recommendations/rebalance";
const PREEMPTED = "/computeMetadata/v1/instance/preempted";
const EVENTS = "/metadata/scheduledevents?api-version=2020-07-01";
const INSTANCE = "/metadata/instance?api-version=2021-02-01";

function awsSpot(extra: Partial<AwsInstance> = {}): AwsInstance {
  return { ...AWS_SPOT_P4D, ...extra };
}

function expectAwsGet(r: RecordedRequest | undefined, path: string): void {
  expect(r?.method).toBe("GET");
  expect(r?.path).toBe(path);
  expect(r?.headers["x-aws-ec2-metadata-token"]).toBe(AWS_TOKEN);
}

function expectTokenPut(r: RecordedRequest | undefined): void {
  expect(r?.method).toBe("PUT");
  expect(r?.path).toBe("/latest/api/token");
  expect(r?.headers["x-aws-ec2-metadata-token-ttl-seconds"]).toBe("300");
  expect(r?.headers["x-aws-ec2-metadata-token"]).toBeUndefined();
}

describe("checkInterruption: aws (IMDSv2)", () => {
  it("gets a token, then finds neither an instance action nor a rebalance recommendation (404)", async () => {
    const s = await serve(awsImds(awsSpot()));
    expect(await checkInterruption("aws", { endpoint: s.url })).toBeNull();
    expect(seen(s)).toEqual(["PUT /latest/api/token", `GET ${ACTION}`, `GET ${REBALANCE}`]);
    expectTokenPut(s.requests[0]);
    expectAwsGet(s.requests[1], ACTION);
    expectAwsGet(s.requests[2], REBALANCE);
  });

  it("reports a terminate instance action at its time", async () => {
    const s = await serve(awsImds(awsSpot({ instanceAction: '{"action":"terminate","time":"2026-11-23T17:40:00Z"}' })));
    const notice = await checkInterruption("aws", { endpoint: s.url });
    expect(notice).toEqual({
      provider: "aws",
      kind: "terminate",
      at: new Date("2026-11-23T17:40:00Z"),
      detail: 'spot/instance-action: action "terminate" at 2026-11-23T17:40:00Z',
    });
    // The instance action outranks a rebalance recommendation, which is not asked for.
    expect(seen(s)).toEqual(["PUT /latest/api/token", `GET ${ACTION}`]);
  });

  it.each(["stop", "hibernate"] as const)("reports a %s instance action", async (action) => {
    const s = await serve(awsImds(awsSpot({ instanceAction: JSON.stringify({ action, time: "2026-11-23T17:40:00Z" }) })));
    expect((await checkInterruption("aws", { endpoint: s.url }))?.kind).toBe(action);
  });

  it("reports a rebalance recommendation, without a departure time", async () => {
    const s = await serve(awsImds(awsSpot({ rebalance: '{"noticeTime": "2026-11-23T17:31:00Z"}' })));
    expect(await checkInterruption("aws", { endpoint: s.url })).toEqual({
      provider: "aws",
      kind: "rebalance",
      at: null,
      detail: "rebalance recommendation issued 2026-11-23T17:31:00Z",
    });
  });

  it("keeps the token between polls and renews it before it expires", async () => {
    const s = await serve(awsImds(awsSpot()));
    const cache: InterruptionCache = {};
    let now = new Date("2026-11-23T17:00:00Z");
    const opts = { endpoint: s.url, cache, now: () => now };
    await checkInterruption("aws", opts);
    await checkInterruption("aws", opts);
    expect(seen(s).filter((r) => r.startsWith("PUT"))).toHaveLength(1);
    now = new Date(now.getTime() + 241_000); // TTL 300 s, renewed a minute early
    await checkInterruption("aws", opts);
    expect(seen(s)).toEqual([
      "PUT /latest/api/token",
      `GET ${ACTION}`,
      `GET ${REBALANCE}`,
      `GET ${ACTION}`,
      `GET ${REBALANCE}`,
      "PUT /latest/api/token",
      `GET ${ACTION}`,
      `GET ${REBALANCE}`,
    ]);
  });

  it("gets a new token and retries once when a GET answers 401", async () => {
    const base = awsImds(awsSpot({ instanceAction: '{"action":"terminate","time":"2026-11-23T17:40:00Z"}' }));
    let refused = false;
    const s = await serve((req) => {
      if (req.method === "GET" && !refused) {
        refused = true; // the IMDS forgot the token (expired, or restarted)
        return { status: 401 };
      }
      return base(req);
    });
    const cache: InterruptionCache = { awsToken: { value: "stale-token", renewAtMs: Number.MAX_SAFE_INTEGER } };
    expect((await checkInterruption("aws", { endpoint: s.url, cache }))?.kind).toBe("terminate");
    expect(seen(s)).toEqual([`GET ${ACTION}`, "PUT /latest/api/token", `GET ${ACTION}`]);
    expect(s.requests[0]?.headers["x-aws-ec2-metadata-token"]).toBe("stale-token");
    expectTokenPut(s.requests[1]);
    expectAwsGet(s.requests[2], ACTION);
    expect(cache.awsToken?.value).toBe(AWS_TOKEN);
  });

  it("fails with imds_refused when a fresh token is refused too", async () => {
    const s = await serve(awsImds(awsSpot(), { [`GET ${ACTION}`]: { status: 401 } }));
    const err = await rejection(checkInterruption("aws", { endpoint: s.url }));
    expect(err.reason).toBe("imds_refused");
    expect(seen(s)).toEqual(["PUT /latest/api/token", `GET ${ACTION}`, "PUT /latest/api/token", `GET ${ACTION}`]);
  });

  it("rejects an instance action that is not JSON", async () => {
    const s = await serve(awsImds(awsSpot({ instanceAction: "<html>captive portal</html>" })));
    const err = await rejection(checkInterruption("aws", { endpoint: s.url }));
    expect(err.reason).toBe("imds_invalid_response");
    expect(err.message).toContain("not JSON");
  });
});

describe("checkInterruption: gcp", () => {
  const gcp = (preempted: "TRUE" | "FALSE"): GcpInstance => ({ ...GCP_A2_STANDARD, preempted });

  it("reads instance/preempted with Metadata-Flavor: Google; FALSE is no notice", async () => {
    const s = await serve(gcpMetadata(gcp("FALSE")));
    expect(await checkInterruption("gcp", { endpoint: s.url })).toBeNull();
    expect(s.requests).toHaveLength(1);
    expect(s.requests[0]?.method).toBe("GET");
    expect(s.requests[0]?.path).toBe(PREEMPTED);
    expect(s.requests[0]?.headers["metadata-flavor"]).toBe("Google");
  });

  it("reports TRUE as preempt, with no departure time", async () => {
    const s = await serve(gcpMetadata(gcp("TRUE")));
    expect(await checkInterruption("gcp", { endpoint: s.url })).toEqual({
      provider: "gcp",
      kind: "preempt",
      at: null,
      detail: "instance/preempted is TRUE (the VM stops about 30 s later)",
    });
  });

  it("refuses an answer without the Metadata-Flavor: Google response header", async () => {
    const s = await serve(gcpMetadata(gcp("FALSE"), { [`GET ${PREEMPTED}`]: { body: "TRUE" } }));
    const err = await rejection(checkInterruption("gcp", { endpoint: s.url }));
    expect(err.reason).toBe("imds_invalid_response");
    expect(err.message).toContain("without Metadata-Flavor: Google");
  });

  it("rejects a value other than TRUE or FALSE", async () => {
    const s = await serve(gcpMetadata(gcp("FALSE"), { [`GET ${PREEMPTED}`]: { headers: { "Metadata-Flavor": "Google" }, body: "maybe" } }));
    expect((await rejection(checkInterruption("gcp", { endpoint: s.url }))).message).toContain("not TRUE or FALSE");
  });
});

describe("checkInterruption: azure scheduled events", () => {
  const DOC = azureInstanceDocument({ location: "westus2", zone: "1", vmSize: "Standard_NC24ads_A100_v4", priority: "Spot" }, "10.1.0.4");
  // Shaped like the sample in https://learn.microsoft.com/en-us/azure/virtual-machines/linux/scheduled-events
  const event = (EventType: string, vm: string, EventId = "602d9444-d2cd-49c7-8624-8643e7171297"): object => ({
    EventId,
    EventStatus: "Scheduled",
    EventType,
    ResourceType: "VirtualMachine",
    Resources: [vm],
    NotBefore: "Mon, 23 Nov 2026 17:40:30 GMT",
    Description: "",
    EventSource: "Platform",
    DurationInSeconds: -1,
  });
  const events = (...list: object[]) => () => ({ DocumentIncarnation: list.length, Events: list });

  it("reads the VM name once, then the scheduled events, both with Metadata: true; no events is no notice", async () => {
    const s = await serve(azureImds(DOC));
    const cache: InterruptionCache = {};
    expect(await checkInterruption("azure", { endpoint: s.url, cache })).toBeNull();
    expect(await checkInterruption("azure", { endpoint: s.url, cache })).toBeNull();
    expect(seen(s)).toEqual([`GET ${INSTANCE}`, `GET ${EVENTS}`, `GET ${EVENTS}`]);
    for (const r of s.requests) expect(r.headers["metadata"]).toBe("true");
    expect(cache.azureVmName).toBe("examplevmname");
  });

  it("reports a Preempt event for this VM with its NotBefore", async () => {
    const s = await serve(azureImds(DOC, {}, events(event("Preempt", "examplevmname"))));
    expect(await checkInterruption("azure", { endpoint: s.url })).toEqual({
      provider: "azure",
      kind: "preempt",
      at: new Date("2026-11-23T17:40:30Z"),
      detail: "scheduled event 602d9444-d2cd-49c7-8624-8643e7171297: Preempt for examplevmname",
    });
  });

  it("ignores Freeze and Reboot events, and Preempt events for another VM", async () => {
    const s = await serve(azureImds(DOC, {}, events(event("Freeze", "examplevmname"), event("Reboot", "examplevmname"), event("Preempt", "othervm"))));
    expect(await checkInterruption("azure", { endpoint: s.url })).toBeNull();
  });

  it("counts any VM's Preempt event when the name is unknown", async () => {
    const s = await serve(azureImds(DOC, {}, events(event("Preempt", "othervm"))));
    const notice = await checkInterruption("azure", { endpoint: s.url, azureVmName: null });
    expect(notice?.kind).toBe("preempt");
    expect(notice?.detail).toContain("VM name unknown");
    expect(seen(s)).toEqual([`GET ${EVENTS}`]);
  });

  it("uses a configured VM name without reading the instance document", async () => {
    const s = await serve(azureImds(DOC, {}, events(event("Preempt", "gpu-node-7"))));
    expect((await checkInterruption("azure", { endpoint: s.url, azureVmName: "gpu-node-7" }))?.kind).toBe("preempt");
    expect(seen(s)).toEqual([`GET ${EVENTS}`]);
  });
});

/** A sleep the test releases by hand, so each poll happens when the test says. */
function manualSleep() {
  const waiting: (() => void)[] = [];
  const intervals: number[] = [];
  const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      intervals.push(ms);
      const onAbort = (): void => reject(signal.reason as Error);
      signal.addEventListener("abort", onAbort, { once: true });
      waiting.push(() => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  return {
    sleep,
    intervals,
    /** Waits until the loop has finished poll number `n` and sleeps. */
    async asleepAfter(n: number): Promise<void> {
      await vi.waitFor(() => expect(intervals).toHaveLength(n), { timeout: 3000, interval: 5 });
    },
    wake(): void {
      waiting.shift()?.();
    },
  };
}

describe("InterruptionWatcher", () => {
  it("polls at once, then every interval, and fires once per distinct notice", async () => {
    const instance = awsSpot();
    const s = await serve(awsImds(instance));
    const clock = manualSleep();
    const notices: InterruptionNotice[] = [];
    const w = new InterruptionWatcher({ provider: "aws", endpoint: s.url, logger: createMemoryLogger(), sleep: clock.sleep, onNotice: (n) => void notices.push(n) });
    expect(w.state).toBe("idle");
    w.start();
    expect(w.state).toBe("running");
    await clock.asleepAfter(1);
    expect(notices).toEqual([]);

    instance.rebalance = '{"noticeTime": "2026-11-23T17:31:00Z"}';
    clock.wake();
    await clock.asleepAfter(2);
    clock.wake();
    await clock.asleepAfter(3);
    expect(notices.map((n) => n.kind)).toEqual(["rebalance"]);

    instance.instanceAction = '{"action":"terminate","time":"2026-11-23T17:40:00Z"}';
    clock.wake();
    await clock.asleepAfter(4);
    clock.wake();
    await clock.asleepAfter(5);
    expect(notices.map((n) => [n.kind, n.at])).toEqual([
      ["rebalance", null],
      ["terminate", new Date("2026-11-23T17:40:00Z")],
    ]);
    expect(clock.intervals).toEqual(Array(5).fill(DEFAULT_INTERRUPTION_INTERVAL_MS.aws));
    // One token for the whole run.
    expect(seen(s).filter((r) => r.startsWith("PUT"))).toHaveLength(1);

    await w.stop();
    expect(w.state).toBe("stopped");
  });

  it("survives a 500 and a timeout, logging the first failure of a run as a warning", async () => {
    const answers: ("500" | "hang" | "TRUE")[] = ["500", "hang", "TRUE"];
    const s = await serve((req) => {
      const next = answers.shift() ?? "TRUE";
      if (next === "hang") return "hang";
      const headers = { "Metadata-Flavor": "Google" };
      if (req.headers["metadata-flavor"] !== "Google") return { status: 403, headers };
      return next === "500" ? { status: 500, headers, body: "Internal error" } : { headers, body: next };
    });
    const clock = manualSleep();
    const logger = createMemoryLogger();
    const notices: InterruptionNotice[] = [];
    const w = new InterruptionWatcher({ provider: "gcp", endpoint: s.url, timeoutMs: 100, logger, sleep: clock.sleep, onNotice: (n) => void notices.push(n) });
    w.start();
    await clock.asleepAfter(1);
    clock.wake();
    await clock.asleepAfter(2);
    expect(notices).toEqual([]);
    clock.wake();
    await clock.asleepAfter(3);
    expect(notices.map((n) => n.kind)).toEqual(["preempt"]);
    expect(clock.intervals).toEqual([1000, 1000, 1000]);
    expect(seen(s)).toEqual([`GET ${PREEMPTED}`, `GET ${PREEMPTED}`, `GET ${PREEMPTED}`]);
    for (const r of s.requests) expect(r.headers["metadata-flavor"]).toBe("Google");

    const failures = logger.records.filter((r) => r.msg?.startsWith("reading interruption notices failed"));
    expect(failures.map((r) => [r.level, r.fields.reason])).toEqual([
      ["warn", "imds_invalid_response"],
      ["debug", "imds_timeout"],
    ]);
    expect(logger.records.some((r) => r.level === "info" && r.msg === "interruption notices readable again")).toBe(true);
    expect(w.state).toBe("running");
    await w.stop();
  });

  it("logs a failing notice handler and keeps polling", async () => {
    const s = await serve(gcpMetadata({ ...GCP_A2_STANDARD, preempted: "TRUE" }));
    const clock = manualSleep();
    const logger = createMemoryLogger();
    const w = new InterruptionWatcher({
      provider: "gcp",
      endpoint: s.url,
      logger,
      sleep: clock.sleep,
      onNotice: () => Promise.reject(new Error("checkpoint trigger failed")),
    });
    w.start();
    await clock.asleepAfter(1);
    clock.wake();
    await clock.asleepAfter(2);
    await vi.waitFor(() => expect(logger.records.some((r) => r.level === "error" && r.msg === "interruption notice handler failed")).toBe(true));
    expect(w.state).toBe("running");
    await w.stop();
  });

  it("stop() aborts a poll in progress at once", async () => {
    const s = await serve(() => "hang");
    const w = new InterruptionWatcher({ provider: "gcp", endpoint: s.url, timeoutMs: 30_000, logger: createMemoryLogger(), onNotice: () => undefined });
    w.start();
    await vi.waitFor(() => expect(s.requests).toHaveLength(1));
    const t0 = Date.now();
    await w.stop();
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(w.state).toBe("stopped");
  });

  it("stops when its signal aborts during the interval, with the real sleep", async () => {
    const s = await serve(gcpMetadata({ ...GCP_A2_STANDARD, preempted: "FALSE" }));
    const ac = new AbortController();
    const w = new InterruptionWatcher({ provider: "gcp", endpoint: s.url, intervalMs: 60_000, signal: ac.signal, logger: createMemoryLogger(), onNotice: () => undefined });
    w.start();
    await vi.waitFor(() => expect(s.requests).toHaveLength(1));
    ac.abort();
    await vi.waitFor(() => expect(w.state).toBe("stopped"), { timeout: 1000 });
    await w.stop();
    expect(s.requests).toHaveLength(1);
  });

  it("goes from idle straight to stopped, and does not start again", async () => {
    const w = new InterruptionWatcher({ provider: "aws", endpoint: "http://127.0.0.1:9", logger: createMemoryLogger(), onNotice: () => undefined });
    await w.stop();
    expect(w.state).toBe("stopped");
    w.start();
    expect(w.state).toBe("stopped");
  });
});
