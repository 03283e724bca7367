export interface BatcherOptions {
  /** Most items handed to one flush. */
  maxBatch: number;
  /** Most flushes running at once (e.g. the database pool's useful parallelism). */
  maxInFlight: number;
  /** Defers the first flush so items arriving in the same event-loop turn share it. */
  defer?: (fn: () => void) => void;
}

export interface Batcher<I, O> {
  /** Queues one item; resolves with its own result or rejects with its batch's error. */
  submit(item: I): Promise<O>;
  /** Items waiting for a flush slot. */
  readonly queued: number;
  /** Resolves once nothing is queued or in flight. */
  drain(): Promise<void>;
}

interface Pending<I, O> {
  item: I;
  resolve: (o: O) => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit: callers submit one item each; items that arrive while a flush
 * is running (or within the same event-loop turn) go out together in the next
 * flush. Batches grow with load and stay at one item when idle, so latency at
 * low load is unchanged while the per-item cost under load is divided.
 * `flush` must return one result per item, in order.
 */
export function createBatcher<I, O>(flush: (items: I[]) => Promise<O[]>, opts: BatcherOptions): Batcher<I, O> {
  const defer = opts.defer ?? ((fn: () => void) => setImmediate(fn));
  const queue: Pending<I, O>[] = [];
  let inFlight = 0;
  let scheduled = false;
  let idleWaiters: (() => void)[] = [];

  const settleIdle = (): void => {
    if (queue.length === 0 && inFlight === 0 && idleWaiters.length > 0) {
      const ws = idleWaiters;
      idleWaiters = [];
      for (const w of ws) w();
    }
  };

  const pump = (): void => {
    while (inFlight < opts.maxInFlight && queue.length > 0) {
      const batch = queue.splice(0, opts.maxBatch);
      inFlight++;
      let run: Promise<O[]>;
      try {
        run = flush(batch.map((p) => p.item));
      } catch (e) {
        run = Promise.reject(e);
      }
      const settle = (fn: () => void): void => {
        // Free the slot and start the next batch before waking callers.
        inFlight--;
        pump();
        fn();
        settleIdle();
      };
      void run.then(
        (results) =>
          settle(() => {
            if (results.length !== batch.length) {
              const e = new Error(`batch flush returned ${results.length} results for ${batch.length} items`);
              for (const p of batch) p.reject(e);
              return;
            }
            batch.forEach((p, i) => p.resolve(results[i]!));
          }),
        (e: unknown) => settle(() => batch.forEach((p) => p.reject(e))),
      );
    }
  };

  return {
    submit(item) {
      return new Promise<O>((resolve, reject) => {
        queue.push({ item, resolve, reject });
        if (!scheduled) {
          scheduled = true;
          defer(() => {
            scheduled = false;
            pump();
          });
        }
      });
    },
    get queued() {
      return queue.length;
    },
    drain() {
      if (queue.length === 0 && inFlight === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
  };
}
