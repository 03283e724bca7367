import { randomFillSync } from "node:crypto";
import type { IdSource } from "@gpuorch/core";

export interface IdSourceOptions {
  /** Unix milliseconds; default `Date.now`. */
  now?: () => number;
  /** `n` random bytes; default `crypto.randomBytes`. */
  random?: (n: number) => Uint8Array;
}

const COUNTER_BITS = 42;
const COUNTER_MAX = 2 ** COUNTER_BITS - 1;
const TWO_24 = 2 ** 24;

/**
 * UUIDv7 ids (RFC 9562): 48-bit Unix milliseconds, version 7, then a 42-bit
 * counter spread over rand_a and the top of rand_b (method 1, "fixed-length
 * dedicated counter"), then 32 random bits. The counter starts at a random
 * value with its top bit clear each new millisecond and increments within
 * one, so ids from one source sort in creation order even when the clock
 * stalls or steps back; on the (theoretical) counter overflow the timestamp
 * moves one millisecond ahead.
 */
export function createIdSource(opts: IdSourceOptions = {}): IdSource {
  const now = opts.now ?? Date.now;
  const random = opts.random ?? pooledRandom();
  let lastMs = -1;
  let counter = 0;

  const seedCounter = (): number => {
    const b = random(6);
    // 41 random bits: leaves headroom for ~2^41 increments in one millisecond.
    return (((b[0] ?? 0) & 0x01) * 2 ** 40) + readUint(b, 1, 5);
  };

  return {
    newId(): string {
      const ms = Math.floor(now());
      if (ms > lastMs) {
        lastMs = ms;
        counter = seedCounter();
      } else if (counter < COUNTER_MAX) {
        counter++;
      } else {
        lastMs++;
        counter = seedCounter();
      }
      const tail = random(4);
      const hi = Math.floor(counter / TWO_24); // top 18 counter bits
      const lo = counter % TWO_24; // low 24 counter bits
      const bytes = new Uint8Array(16);
      const t = lastMs;
      bytes[0] = Math.floor(t / 2 ** 40) & 0xff;
      bytes[1] = Math.floor(t / 2 ** 32) & 0xff;
      bytes[2] = Math.floor(t / 2 ** 24) & 0xff;
      bytes[3] = Math.floor(t / 2 ** 16) & 0xff;
      bytes[4] = Math.floor(t / 2 ** 8) & 0xff;
      bytes[5] = t & 0xff;
      bytes[6] = 0x70 | ((hi >>> 14) & 0x0f); // version 7 + 4 counter bits
      bytes[7] = (hi >>> 6) & 0xff; // 8 counter bits
      bytes[8] = 0x80 | (hi & 0x3f); // variant 0b10 + 6 counter bits
      bytes[9] = (lo >>> 16) & 0xff;
      bytes[10] = (lo >>> 8) & 0xff;
      bytes[11] = lo & 0xff;
      bytes.set(tail.subarray(0, 4), 12);
      return format(bytes);
    },
  };
}

/**
 * `n` bytes from the system CSPRNG, drawn from a 4 KiB pool refilled in one
 * call when spent: one syscall-backed fill per ~400 ids instead of one or two
 * per id (ids are minted on every submit). Each returned view is handed out
 * once and is valid until the next call.
 */
function pooledRandom(): (n: number) => Uint8Array {
  const pool = new Uint8Array(4096);
  let at = pool.length;
  return (n) => {
    if (at + n > pool.length) {
      randomFillSync(pool);
      at = 0;
    }
    const out = pool.subarray(at, at + n);
    at += n;
    return out;
  };
}

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

function readUint(b: Uint8Array, start: number, len: number): number {
  let v = 0;
  for (let i = start; i < start + len; i++) v = v * 256 + (b[i] ?? 0);
  return v;
}

function format(b: Uint8Array): string {
  const h = (i: number): string => HEX[b[i] ?? 0]!;
  return (
    h(0) + h(1) + h(2) + h(3) + "-" + h(4) + h(5) + "-" + h(6) + h(7) + "-" + h(8) + h(9) + "-" +
    h(10) + h(11) + h(12) + h(13) + h(14) + h(15)
  );
}

/** The Unix-millisecond timestamp embedded in a UUIDv7. */
export function uuidV7Timestamp(id: string): number {
  return parseInt(id.replace(/-/g, "").slice(0, 12), 16);
}
