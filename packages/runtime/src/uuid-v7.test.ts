import { describe, expect, it } from "vitest";
import { createIdSource, uuidV7Timestamp } from "./uuid-v7.js";

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe("createIdSource (UUIDv7)", () => {
  it("sets version 7 and the RFC 9562 variant bits", () => {
    const ids = createIdSource();
    for (let i = 0; i < 1000; i++) {
      const id = ids.newId();
      expect(id).toMatch(UUID_RE);
      expect(id[14]).toBe("7");
      expect(["8", "9", "a", "b"]).toContain(id[19]);
    }
  });

  it("embeds the clock's milliseconds in the first 48 bits", () => {
    const ids = createIdSource({ now: () => 1_700_000_000_123 });
    expect(uuidV7Timestamp(ids.newId())).toBe(1_700_000_000_123);
  });

  it("orders ids strictly within one millisecond and when the clock steps back", () => {
    let t = 1_700_000_000_000;
    const ids = createIdSource({ now: () => t });
    const out: string[] = [];
    for (let i = 0; i < 5000; i++) out.push(ids.newId());
    t -= 50; // NTP step backwards
    for (let i = 0; i < 100; i++) out.push(ids.newId());
    t += 1000;
    for (let i = 0; i < 100; i++) out.push(ids.newId());
    const sorted = [...out].sort();
    expect(sorted).toEqual(out);
    expect(new Set(out).size).toBe(out.length);
  });

  it("keeps version and variant bits intact when the counter's high bits are set", () => {
    // All-ones randomness seeds the counter at its largest start value (2^41 - 1).
    const random = (n: number): Uint8Array => new Uint8Array(n).fill(0xff);
    const ids = createIdSource({ now: () => 1000, random });
    const first = ids.newId();
    const second = ids.newId();
    for (const id of [first, second]) {
      expect(uuidV7Timestamp(id)).toBe(1000);
      expect(id[14]).toBe("7");
      expect(["8", "9", "a", "b"]).toContain(id[19]);
    }
    expect(second > first).toBe(true);
  });
});
