/**
 * Wakes WatchJob streams when a job changes. In-process only: watchers also
 * poll the database on an interval, which covers changes made by another
 * controller replica or a background loop that does not notify.
 */
export class JobNotifier {
  private readonly waiters = new Map<string, Set<() => void>>();

  notify(jobId: string): void {
    const set = this.waiters.get(jobId);
    if (!set) return;
    this.waiters.delete(jobId);
    for (const wake of set) wake();
  }

  /** Resolves on the next notify(jobId), after `timeoutMs`, or when `signal` aborts. */
  wait(jobId: string, timeoutMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      let set = this.waiters.get(jobId);
      if (!set) {
        set = new Set();
        this.waiters.set(jobId, set);
      }
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        this.waiters.get(jobId)?.delete(done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      signal.addEventListener("abort", done, { once: true });
      set.add(done);
    });
  }

  get watcherCount(): number {
    let n = 0;
    for (const s of this.waiters.values()) n += s.size;
    return n;
  }
}
