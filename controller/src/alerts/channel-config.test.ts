import { describe, expect, it } from "vitest";
import { alertChannelsConfigSchema, redactUrl } from "./channel-config.js";
import { parseRetryAfter } from "./http-post.js";

describe("alert channel configuration", () => {
  it("parses the three channel types with defaults for timeout and attempts", () => {
    const cfg = alertChannelsConfigSchema.parse([
      { type: "log", min_severity: "warning" },
      { type: "webhook", url: "https://example.com/hook", secret: "k" },
      { type: "slack", name: "oncall", url: "https://hooks.slack.com/services/T/B/x", timeout_ms: "2500", kinds: ["node_lost"] },
    ]);
    expect(cfg).toEqual([
      { type: "log", min_severity: "warning" },
      { type: "webhook", url: "https://example.com/hook", secret: "k", timeout_ms: 10_000, max_attempts: 5 },
      { type: "slack", name: "oncall", url: "https://hooks.slack.com/services/T/B/x", timeout_ms: 2500, max_attempts: 5, kinds: ["node_lost"] },
    ]);
  });

  it("rejects non-http URLs, unknown keys, unknown kinds and out-of-range attempts", () => {
    const issues = (v: unknown) => alertChannelsConfigSchema.safeParse(v).error?.issues.map((i) => i.path.join(".")) ?? [];
    expect(issues([{ type: "webhook", url: "ftp://example.com/x" }])).toEqual(["0.url"]);
    expect(issues([{ type: "slack", url: "https://h/x", secret: "s" }])).toEqual(["0"]);
    expect(issues([{ type: "log", kinds: ["disk_full"] }])).toEqual(["0.kinds.0"]);
    expect(issues([{ type: "webhook", url: "https://h/x", max_attempts: 0 }])).toEqual(["0.max_attempts"]);
    expect(issues([{ type: "email", to: "a@b" }])).toEqual(["0.type"]);
  });

  it("rejects two channels with the same name, given or derived", () => {
    const res = alertChannelsConfigSchema.safeParse([
      { type: "webhook", url: "https://h/x" },
      { type: "webhook", url: "https://h/x", secret: "other" },
      { type: "log" },
      { type: "log", name: "log" },
    ]);
    expect(res.error?.issues.map((i) => [i.path.join("."), i.message])).toEqual([
      ["1.name", expect.stringMatching(/is also used by entry 0/) as unknown],
      ["3.name", "channel name 'log' is also used by entry 2; give one a distinct name"],
    ]);
  });

  it("never echoes the URL in validation messages", () => {
    const res = alertChannelsConfigSchema.safeParse([{ type: "slack", url: "notaurl/services/T/B/SECRET" }]);
    expect(JSON.stringify(res.error?.issues)).not.toContain("SECRET");
  });
});

describe("redactUrl", () => {
  it("keeps scheme, host and port; hides path, query and credentials", () => {
    expect(redactUrl("https://hooks.slack.com/services/T1/B2/abc")).toBe("https://hooks.slack.com/…");
    expect(redactUrl("http://user:pw@10.0.0.1:8080/h?token=x")).toBe("http://10.0.0.1:8080/…");
    expect(redactUrl("https://example.com/")).toBe("https://example.com");
    expect(redactUrl("not a url")).toBe("<invalid url>");
  });
});

describe("parseRetryAfter", () => {
  const now = new Date("2030-01-01T00:00:00Z");
  it("reads delta-seconds and HTTP dates, never negative, capped", () => {
    expect(parseRetryAfter("120", now, 300_000)).toBe(120_000);
    expect(parseRetryAfter("Tue, 01 Jan 2030 00:01:00 GMT", now, 300_000)).toBe(60_000);
    expect(parseRetryAfter("Mon, 31 Dec 2029 23:00:00 GMT", now, 300_000)).toBe(0);
    expect(parseRetryAfter("86400", now, 300_000)).toBe(300_000);
  });
  it("ignores a missing or unreadable value", () => {
    expect(parseRetryAfter(null, now, 1000)).toBeUndefined();
    expect(parseRetryAfter("soon", now, 1000)).toBeUndefined();
  });
});
