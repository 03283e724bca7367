import type { Logger } from "./logger.js";

/** The part of `process` the manager needs; tests pass an EventEmitter. */
export interface SignalSource {
  on(event: "SIGINT" | "SIGTERM", listener: () => void): unknown;
  off(event: "SIGINT" | "SIGTERM", listener: () => void): unknown;
}

export interface ShutdownManagerOptions {
  logger: Logger;
  /** Longest the whole stop sequence may take before exit code 1 is forced. Default 30 s. */
  timeoutMs?: number;
  /** Called exactly once with the exit code. Default: `process.exit`. */
  onDone?: (exitCode: number) => void;
  /** Monotonic milliseconds, for logged durations. Default: `performance.now`. */
  now?: () => number;
}

/**
 * - `running`: accepting components; no signal seen yet.
 * - `stopping`: a signal or `shutdown()` began the reverse-order stop; `signal` is aborted.
 * - `done`: `onDone` has been called.
 */
export type ShutdownState = "running" | "stopping" | "done";

interface Component {
  name: string;
  stop: () => Promise<void>;
}

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

/**
 * Stops what main.ts started, newest first, on the first SIGINT/SIGTERM; a
 * second signal or the overall timeout forces exit code 1 without waiting
 * for the components still stopping.
 */
export class ShutdownManager {
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly onDone: (exitCode: number) => void;
  private readonly now: () => number;
  private readonly controller = new AbortController();
  private readonly components: Component[] = [];
  private currentState: ShutdownState = "running";
  private stopping: Promise<number> | null = null;
  private resolveDone: (code: number) => void = () => {};
  private timer: ReturnType<typeof setTimeout> | null = null;
  private uninstallers: (() => void)[] = [];

  constructor(opts: ShutdownManagerOptions) {
    this.logger = opts.logger;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.onDone = opts.onDone ?? ((code) => process.exit(code));
    this.now = opts.now ?? (() => performance.now());
  }

  /** Aborted when shutdown begins; pass it to every long-lived loop. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get state(): ShutdownState {
    return this.currentState;
  }

  /**
   * Registers a started component. Call in start order. A component added
   * while stopping is stopped next (it is the newest); one added after the
   * end is stopped at once.
   */
  add(name: string, stop: () => Promise<void>): void {
    if (this.currentState === "done") {
      this.logger.warn({ component: name }, "component added after shutdown finished; stopping it now");
      stop().catch((err: unknown) => this.logger.error({ component: name, err }, "component failed to stop"));
      return;
    }
    this.components.push({ name, stop });
  }

  /** Hooks SIGINT and SIGTERM; returns a function that unhooks them. */
  install(proc: SignalSource = process): () => void {
    for (const sig of SIGNALS) {
      const listener = (): void => this.onSignal(sig);
      proc.on(sig, listener);
      this.uninstallers.push(() => proc.off(sig, listener));
    }
    return () => this.uninstall();
  }

  /**
   * Begins the stop sequence (idempotent) and resolves with the exit code
   * once `onDone` has been called: 0 when every component stopped cleanly,
   * 1 when one failed or the sequence was forced.
   */
  shutdown(reason: string): Promise<number> {
    if (this.stopping) return this.stopping;
    this.currentState = "stopping";
    this.stopping = new Promise<number>((resolve) => {
      this.resolveDone = resolve;
    });
    this.logger.info(
      { reason, components: this.components.map((c) => c.name).reverse() },
      "shutting down",
    );
    this.controller.abort(new DOMException(`shutting down: ${reason}`, "AbortError"));
    this.timer = setTimeout(() => {
      const pending = this.components.map((c) => c.name).reverse();
      this.logger.error({ timeoutMs: this.timeoutMs, pending }, "shutdown timed out; forcing exit");
      this.finish(1);
    }, this.timeoutMs);
    // The timer must not be what keeps a finished process alive.
    this.timer.unref?.();
    void this.stopAll();
    return this.stopping;
  }

  private onSignal(sig: string): void {
    if (this.currentState === "running") {
      this.logger.info({ signal: sig }, "signal received");
      void this.shutdown(sig);
    } else if (this.currentState === "stopping") {
      const pending = this.components.map((c) => c.name).reverse();
      this.logger.warn({ signal: sig, pending }, "second signal; forcing exit");
      this.finish(1);
    }
  }

  private async stopAll(): Promise<void> {
    let code = 0;
    for (let c = this.components.at(-1); c; c = this.components.at(-1)) {
      if (this.currentState === "done") return;
      const started = this.now();
      try {
        await c.stop();
        this.logger.info({ component: c.name, durationMs: round(this.now() - started) }, "component stopped");
      } catch (err) {
        code = 1;
        this.logger.error({ component: c.name, durationMs: round(this.now() - started), err }, "component failed to stop");
      }
      // Removed only after it stopped, so a forced exit can name it as pending.
      const i = this.components.indexOf(c);
      if (i >= 0) this.components.splice(i, 1);
    }
    if (this.currentState === "stopping") {
      this.logger.info({ exitCode: code }, "shutdown complete");
      this.finish(code);
    }
  }

  private finish(code: number): void {
    if (this.currentState === "done") return;
    this.currentState = "done";
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.uninstall();
    this.resolveDone(code);
    this.onDone(code);
  }

  private uninstall(): void {
    for (const u of this.uninstallers) u();
    this.uninstallers = [];
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
