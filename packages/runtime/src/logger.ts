import pino from "pino";

/**
 * The small logging surface every gpuorch component receives by injection.
 * Structured first: pass an object of fields and a message; `child` binds
 * fields (job id, node id, component) to every later line.
 */
export interface Logger {
  debug(obj: object | string, msg?: string): void;
  info(obj: object | string, msg?: string): void;
  warn(obj: object | string, msg?: string): void;
  error(obj: object | string, msg?: string): void;
  child(fields: Record<string, unknown>): Logger;
}

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface CreateLoggerOptions {
  /** Component or process name, written on every line as `name`. */
  name: string;
  /** Minimum level written; default "info". */
  level?: LogLevel;
  /** Where JSON lines go: a stream or a file descriptor. Default: stderr (fd 2), written synchronously. */
  destination?: NodeJS.WritableStream | number;
}

/** A pino-backed logger writing one JSON object per line. */
export function createLogger(opts: CreateLoggerOptions): Logger {
  const destination =
    opts.destination === undefined || typeof opts.destination === "number"
      ? // Synchronous writes so the last lines before an exit (a crash, a forced
        // shutdown) are not lost in a buffer.
        pino.destination({ dest: opts.destination ?? 2, sync: true })
      : opts.destination;
  const base = pino(
    {
      name: opts.name,
      level: opts.level ?? "info",
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  return wrapPino(base);
}

function wrapPino(p: pino.Logger): Logger {
  const write = (level: "debug" | "info" | "warn" | "error", obj: object | string, msg?: string): void => {
    if (typeof obj === "string") p[level](obj);
    else if (msg === undefined) p[level](obj);
    else p[level](obj, msg);
  };
  return {
    debug: (obj, msg) => write("debug", obj, msg),
    info: (obj, msg) => write("info", obj, msg),
    warn: (obj, msg) => write("warn", obj, msg),
    error: (obj, msg) => write("error", obj, msg),
    child: (fields) => wrapPino(p.child(fields)),
  };
}

/** A logger that drops everything (tests, library defaults). */
export function createNullLogger(): Logger {
  const nop = (): void => {};
  const logger: Logger = { debug: nop, info: nop, warn: nop, error: nop, child: () => logger };
  return logger;
}

/** One line captured by a memory logger. */
export interface LogRecord {
  level: "debug" | "info" | "warn" | "error";
  msg: string | undefined;
  /** Bound child fields merged with the line's own fields. */
  fields: Record<string, unknown>;
}

export interface MemoryLogger extends Logger {
  /** Every line written through this logger or any of its children, in order. */
  readonly records: LogRecord[];
}

/** A logger that keeps lines in memory, so tests can assert what was logged. */
export function createMemoryLogger(): MemoryLogger {
  const records: LogRecord[] = [];
  const make = (bound: Record<string, unknown>): Logger => {
    const write = (level: LogRecord["level"], obj: object | string, msg?: string): void => {
      if (typeof obj === "string") records.push({ level, msg: obj, fields: { ...bound } });
      else if (obj instanceof Error) records.push({ level, msg: msg ?? obj.message, fields: { ...bound, err: obj } });
      else records.push({ level, msg, fields: { ...bound, ...(obj as Record<string, unknown>) } });
    };
    return {
      debug: (obj, msg) => write("debug", obj, msg),
      info: (obj, msg) => write("info", obj, msg),
      warn: (obj, msg) => write("warn", obj, msg),
      error: (obj, msg) => write("error", obj, msg),
      child: (fields) => make({ ...bound, ...fields }),
    };
  };
  return Object.assign(make({}), { records });
}
