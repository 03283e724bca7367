import { Worker } from "node:worker_threads";
import type { Logger } from "@gpuorch/runtime";
import { type ParseResult, parseJobSpec } from "@gpuorch/spec";
import { admissionKey } from "./admission-key.js";

export interface SpecParseRequest {
  id: number;
  yaml: string;
}

export interface SpecParseResponse {
  id: number;
  parsed: ParsedSpec;
}

/** parseJobSpec's result and, for a valid spec, its admission key (computed beside the parse, off the event loop too). */
export interface ParsedSpec {
  result: ParseResult;
  admissionKey: string | null;
}

export function parsedSpec(yaml: string): ParsedSpec {
  const result = parseJobSpec(yaml);
  return { result, admissionKey: result.ok ? admissionKey(result.spec) : null };
}

interface Pending {
  yaml: string;
  resolve: (r: ParsedSpec) => void;
}

/**
 * Parses and validates submitted specs on worker threads, so the event loop
 * that serves every RPC (submits, agent streams, heartbeats) neither spends
 * its time on YAML and schema checks nor stalls while a large or hostile
 * document (up to the spec's 10 MB limit) is taken apart. For typical
 * specs (~30 us each) it is throughput-neutral (bench/README.md, submit
 * throughput: `--spec-workers 0` vs `1`); it is there for the event loop's
 * responsiveness.
 *
 * Requests arriving in one event-loop turn travel as one message per worker
 * (round robin). Results are exactly parseJobSpec's, with the admission key.
 * Nothing is lost to a worker that dies: its pending specs are parsed on the
 * event loop instead, and a new worker takes its place. `workers: 0` parses
 * inline.
 */
export class SpecParserPool {
  private readonly workers: (Worker | null)[];
  /** Per worker: request id → what to answer. */
  private readonly pending: Map<number, Pending>[];
  /** Per worker: requests waiting for this turn's message. */
  private readonly queues: SpecParseRequest[][];
  private flushScheduled = false;
  private nextId = 1;
  private turn = 0;
  private closed = false;

  constructor(
    private readonly opts: {
      workers: number;
      logger: Logger;
      /** The built worker script; default spec-worker.js beside this module. */
      workerUrl?: URL;
    },
  ) {
    this.workers = Array.from({ length: opts.workers }, () => null);
    this.pending = Array.from({ length: opts.workers }, () => new Map());
    this.queues = Array.from({ length: opts.workers }, () => []);
    for (let i = 0; i < opts.workers; i++) this.spawn(i);
  }

  parse(yaml: string): Promise<ParsedSpec> {
    if (this.workers.length === 0 || this.closed) return Promise.resolve(parsedSpec(yaml));
    return new Promise((resolve) => {
      const id = this.nextId++;
      const slot = this.turn;
      this.turn = (this.turn + 1) % this.workers.length;
      this.pending[slot]!.set(id, { yaml, resolve });
      this.queues[slot]!.push({ id, yaml });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    this.queues.forEach((batch, slot) => {
      if (batch.length === 0) return;
      this.queues[slot] = [];
      const worker = this.workers[slot];
      // Between a worker's death and its replacement, or after close: parse here.
      if (!worker || this.closed) this.settleInline(slot, batch.map((r) => r.id));
      else worker.postMessage(batch);
    });
  }

  private spawn(slot: number): void {
    const worker = new Worker(this.opts.workerUrl ?? new URL("./spec-worker.js", import.meta.url));
    // The pool never keeps the process alive on its own.
    worker.unref();
    worker.on("message", (batch: SpecParseResponse[]) => {
      const pending = this.pending[slot]!;
      for (const { id, parsed } of batch) {
        const p = pending.get(id);
        if (!p) continue;
        pending.delete(id);
        p.resolve(parsed);
      }
    });
    worker.on("error", (err) => this.opts.logger.error({ err, worker: slot }, "spec parser worker failed"));
    worker.on("exit", (code) => {
      if (this.workers[slot] !== worker) return;
      this.workers[slot] = null;
      this.settleInline(slot, [...this.pending[slot]!.keys()]);
      if (this.closed) return;
      this.opts.logger.warn({ worker: slot, code }, "spec parser worker exited; its specs were parsed on the event loop; starting another");
      this.spawn(slot);
    });
    this.workers[slot] = worker;
  }

  private settleInline(slot: number, ids: readonly number[]): void {
    const pending = this.pending[slot]!;
    for (const id of ids) {
      const p = pending.get(id);
      if (!p) continue;
      pending.delete(id);
      p.resolve(parsedSpec(p.yaml));
    }
  }

  /** Stops the workers; specs still pending are parsed inline first, later ones inline too. */
  async close(): Promise<void> {
    this.closed = true;
    const workers = this.workers.splice(0);
    await Promise.all(
      workers.map(async (w, slot) => {
        this.settleInline(slot, [...this.pending[slot]!.keys()]);
        if (w) await w.terminate();
      }),
    );
  }
}
